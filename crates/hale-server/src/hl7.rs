//! `hale hl7 send FILE...`: HL7 v2 result messages (ORU^R01) from files, each parsed,
//! mapped to FHIR and written as one transaction through a system repository (the
//! principal `system:hl7`, audited), with its acknowledgement.

use std::path::Path;

use hale_hl7v2::{AckCode, AckError, Message, ack};
use hale_repository::Repository;

/// What became of one message: its acknowledgement code, the ACK text, and a line for
/// the operator.
#[derive(Debug)]
pub struct Sent {
    pub code: AckCode,
    pub ack: String,
    pub summary: String,
}

/// Now as an HL7 DTM in UTC (`YYYYMMDDHHMMSS+0000`).
fn now_dtm() -> String {
    let fhir = hale_repository::Instant::now().to_fhir();
    let digits: String = fhir.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("{digits}+0000")
}

/// Receives one message: `AR` when it cannot be read or is not a result message, `AE`
/// when it cannot be stored (nothing is), else `AA` (OBX that could not be mapped are
/// named in ERR segments beside it).
pub async fn receive(repo: &Repository, bytes: &[u8]) -> Sent {
    let control = format!("HALE{}", uuid::Uuid::now_v7().simple());
    let msg = match Message::parse(bytes) {
        Ok(m) => m,
        Err(e) => {
            // no header to answer to: an ACK of what could be read
            let text = format!(
                "MSH|^~\\&|HALE||||{}||ACK|{control}|P|2.5.1\rMSA|AR|\rERR||{}|100^{}^HL70357|E||||{}\r",
                now_dtm(),
                e.location,
                hale_hl7v2::table_0357("100"),
                e.reason
            );
            return Sent { code: AckCode::Ar, ack: text, summary: format!("AR: {e}") };
        }
    };
    let (kind, trigger, _) = msg.message_type();
    if (kind.as_str(), trigger.as_str()) != ("ORU", "R01") {
        let e = AckError {
            location: "MSH^1^9".into(),
            code: "200",
            text: format!("Hale receives ORU^R01 here, not {kind}^{trigger}"),
        };
        let a = ack(&msg, AckCode::Ar, &control, &now_dtm(), std::slice::from_ref(&e));
        return Sent { code: AckCode::Ar, ack: a, summary: format!("AR: {}", e.text) };
    }
    let mapped = match hale_hl7v2::oru::map_oru(&msg) {
        Ok(m) => m,
        Err(errors) => {
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), &errors);
            let why: Vec<String> = errors.iter().map(|e| format!("{} ({})", e.text, e.location)).collect();
            return Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", why.join("; ")) };
        }
    };
    let refused: Vec<AckError> = mapped
        .obx
        .iter()
        .filter_map(|o| match o {
            hale_hl7v2::oru::ObxOutcome::Refused(e) => Some(e.clone()),
            hale_hl7v2::oru::ObxOutcome::Mapped(_) => None,
        })
        .collect();
    let stored = mapped.obx.len() - refused.len();
    match repo.process_bundle(mapped.bundle).await {
        Ok((_, results)) if results.iter().all(|r| r.is_ok()) => {
            let a = ack(&msg, AckCode::Aa, &control, &now_dtm(), &refused);
            let summary = format!(
                "AA: {stored} observations stored{}",
                if refused.is_empty() { String::new() } else { format!(", {} OBX named in ERR", refused.len()) }
            );
            Sent { code: AckCode::Aa, ack: a, summary }
        }
        Ok((_, results)) => {
            let first = results.iter().find_map(|r| r.as_ref().err()).map(|e| e.to_string()).unwrap_or_default();
            let e = AckError { location: "MSH".into(), code: "207", text: format!("not stored: {first}") };
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), std::slice::from_ref(&e));
            Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", e.text) }
        }
        Err(err) => {
            let e = AckError { location: "MSH".into(), code: "207", text: format!("not stored: {err}") };
            let a = ack(&msg, AckCode::Ae, &control, &now_dtm(), std::slice::from_ref(&e));
            Sent { code: AckCode::Ae, ack: a, summary: format!("AE: {}", e.text) }
        }
    }
}

/// Receives each file (one message a file).
pub async fn send_files(repo: &Repository, paths: &[std::path::PathBuf]) -> Vec<(String, Sent)> {
    let mut out = Vec::new();
    for p in paths {
        let name = p.display().to_string();
        match std::fs::read(Path::new(p)) {
            Ok(bytes) => out.push((name, receive(repo, &bytes).await)),
            Err(e) => out.push((
                name,
                Sent { code: AckCode::Ar, ack: String::new(), summary: format!("AR: the file cannot be read: {e}") },
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_ack_time_is_an_hl7_timestamp() {
        let t = super::now_dtm();
        assert_eq!(t.len(), 19, "{t}");
        assert!(hale_hl7v2::timestamp(&t).is_ok_and(|f| f.ends_with("+00:00")), "{t}");
    }
}
