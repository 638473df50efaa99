//! `hale hl7 send FILE...`: HL7 v2 result messages (ORU^R01) from files, each parsed,
//! mapped to FHIR and written as one transaction through a system repository (the
//! principal `system:hl7`, audited), with its acknowledgement.

use std::path::Path;

use hale_hl7v2::{AckCode, AckError, Message, mode_code};

/// The acknowledgement of `msg` in the mode it asked for: original (`AA`, `AE`, `AR`),
/// or enhanced (`CA`, `CE`, `CR`) when MSH-15 is valued.
fn ack(msg: &Message, code: AckCode, control: &str, time: &str, errors: &[AckError]) -> String {
    hale_hl7v2::ack(msg, mode_code(msg, code), control, time, errors)
}
use hale_repository::Repository;
use serde_json::{Value, json};

/// What became of one message: its acknowledgement code, the ACK text, and a line for
/// the operator.
#[derive(Debug)]
pub struct Sent {
    pub code: AckCode,
    pub ack: String,
    pub summary: String,
}

/// Now as an HL7 DTM in UTC (`YYYYMMDDHHMMSS+0000`).
pub(crate) fn now_dtm() -> String {
    let fhir = hale_repository::Instant::now().to_fhir();
    let digits: String = fhir.chars().take(19).filter(char::is_ascii_digit).collect();
    format!("{digits}+0000")
}

/// The raw-message store (records of `auth_record`): a message answered `AA`, kept
/// with its acknowledgement in the transaction that wrote its resources.
pub const ACCEPTED: &str = "hl7-accepted";
/// A message answered `AE` or `AR` (nothing of it written): the dead-letter list.
pub const REFUSED: &str = "hl7-refused";

/// A message as kept: when it came, who sent it, its control id, what it was about,
/// the answer and the message itself (base64: its bytes as received).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Kept {
    pub received: String,
    pub sender: String,
    pub facility: String,
    pub control: String,
    /// MSH-9 (`ORU^R01`).
    pub message_type: String,
    /// PID-3's first identifier.
    pub patient: String,
    pub code: String,
    pub summary: String,
    pub ack: String,
    pub message: String,
}

impl Kept {
    /// The message's bytes as received.
    pub fn bytes(&self) -> Vec<u8> {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD.decode(&self.message).unwrap_or_default()
    }
}

/// The idempotency key of a message: sending application, sending facility, control id
/// (MSH-3, MSH-4, MSH-10, as written).
fn message_key(msg: &Message) -> String {
    let raw = |n| msg.segment("MSH").map(|m| m.raw(n).to_string()).unwrap_or_default();
    serde_json::to_string(&[raw(3), raw(4), raw(10)]).unwrap_or_default()
}

fn kept(msg: Option<&Message>, bytes: &[u8], received: &str, code: AckCode, ack: &str, summary: &str) -> Kept {
    use base64::Engine;
    let get = |a: &str| msg.map(|m| m.get(a)).unwrap_or_default();
    let (kind, trigger, _) = msg.map(Message::message_type).unwrap_or_default();
    Kept {
        received: received.into(),
        sender: get("MSH-3.1"),
        facility: get("MSH-4.1"),
        control: get("MSH-10"),
        message_type: if kind.is_empty() { String::new() } else { format!("{kind}^{trigger}") },
        patient: get("PID-3.1"),
        code: code.code().into(),
        summary: summary.into(),
        ack: ack.into(),
        message: base64::engine::general_purpose::STANDARD.encode(bytes),
    }
}

fn code_of(s: &str) -> AckCode {
    match s {
        "AA" => AckCode::Aa,
        "AE" => AckCode::Ae,
        "CA" => AckCode::Ca,
        "CE" => AckCode::Ce,
        "CR" => AckCode::Cr,
        _ => AckCode::Ar,
    }
}

/// The message kept under `key`, accepted or refused.
pub async fn lookup(repo: &Repository, key: &str) -> Option<Kept> {
    for kind in [ACCEPTED, REFUSED] {
        if let Ok(Some(v)) = repo.auth_record(kind, key).await
            && let Ok(k) = serde_json::from_value::<Kept>(v)
        {
            return Some(k);
        }
    }
    None
}

/// The stored answer to a message sent again.
fn resent(k: Kept) -> Sent {
    Sent {
        code: code_of(&k.code),
        summary: format!(
            "{}: a resend of {}; the acknowledgement first sent, nothing written again",
            k.code, k.control
        ),
        ack: k.ack,
    }
}

/// What the processing of a message came to.
enum Processed {
    /// The transaction to write, and the answer once it is written.
    Store { bundle: Value, ack: String, summary: String },
    /// Refused; `keep` unless the cause may pass (the store busy or failing: not kept,
    /// the sender sends again).
    Refused { code: AckCode, ack: String, summary: String, keep: bool },
}

/// Receives one message and answers it. `AR` when it cannot be read, is not a result
/// message or has no control id; `AE` when it cannot be stored (nothing is); else `AA`
/// (OBX that could not be mapped are named in ERR segments beside it); in enhanced mode
/// (MSH-15 valued) `CA`, `CE`, `CR`. The message and its answer are kept under its
/// sender, facility and control id: an `AA` in the same transaction as what it wrote,
/// so an acknowledged message is never lost; a refusal in the dead-letter list. A
/// message sent again gets the first answer back, byte for byte, and writes nothing.
pub async fn receive(repo: &Repository, bytes: &[u8]) -> Sent {
    receive_as(repo, bytes, None).await
}

/// As [`receive`]; when `replaying` names a refused message's key, that refusal is not
/// the answer: the message is processed again, and its record replaced by the outcome
/// (moved to the accepted ones when it is stored now).
async fn receive_as(repo: &Repository, bytes: &[u8], replaying: Option<&str>) -> Sent {
    let received = hale_repository::Instant::now().to_fhir();
    let control = format!("HALE{}", uuid::Uuid::now_v7().simple());
    let unread_key = replaying.map(str::to_string).unwrap_or_else(|| format!("unread {control}"));
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
            let summary = format!("AR: {e}");
            let k = kept(None, bytes, &received, AckCode::Ar, &text, &summary);
            keep_refused(repo, &unread_key, &k, replaying.is_some()).await;
            return Sent { code: AckCode::Ar, ack: text, summary };
        }
    };
    if msg.control_id().trim().is_empty() {
        let e = AckError {
            location: "MSH^1^10".into(),
            code: "101",
            text: "MSH-10, the message control id, is required: without it a resend cannot be told from a new message"
                .into(),
        };
        let a = ack(&msg, AckCode::Ar, &control, &now_dtm(), std::slice::from_ref(&e));
        let code = mode_code(&msg, AckCode::Ar);
        let summary = format!("{}: {}", code.code(), e.text);
        let k = kept(Some(&msg), bytes, &received, code, &a, &summary);
        keep_refused(repo, &unread_key, &k, replaying.is_some()).await;
        return Sent { code, ack: a, summary };
    }
    let key = message_key(&msg);
    match replaying {
        None => {
            if let Some(k) = lookup(repo, &key).await {
                if Message::parse(&k.bytes()).is_ok_and(|first| first.same_content(&msg)) {
                    return resent(k);
                }
                // another message under a control id this sender used already: refused
                // loudly, kept, never taken for a resend
                let e = AckError {
                    location: "MSH^1^10".into(),
                    code: "205",
                    text: format!(
                        "control id {} was already used by another message from this sender ({}); nothing was written: send it with a control id of its own",
                        msg.control_id(),
                        k.received
                    ),
                };
                let a = ack(&msg, AckCode::Ar, &control, &now_dtm(), std::slice::from_ref(&e));
                let code = mode_code(&msg, AckCode::Ar);
                let summary = format!("{}: {}", code.code(), e.text);
                let kept = kept(Some(&msg), bytes, &received, code, &a, &summary);
                keep_refused(repo, &format!("reused {control}"), &kept, false).await;
                return Sent { code, ack: a, summary };
            }
        }
        Some(old) => {
            if let Ok(Some(v)) = repo.auth_record(ACCEPTED, &key).await
                && let Ok(k) = serde_json::from_value::<Kept>(v)
            {
                if Message::parse(&k.bytes()).is_ok_and(|first| first.same_content(&msg)) {
                    // stored since: the refusal is only history
                    let _ = repo.take_auth_record(REFUSED, old).await;
                    return resent(k);
                }
                // its control id is another message's: only the sender can fix that
                if let Ok(Some(v)) = repo.auth_record(REFUSED, old).await
                    && let Ok(r) = serde_json::from_value::<Kept>(v)
                {
                    return Sent { code: code_of(&r.code), summary: r.summary, ack: r.ack };
                }
            }
        }
    }
    let keep_key = replaying.unwrap_or(&key).to_string();
    match process(repo, &msg, &control).await {
        Processed::Refused { code, ack, summary, keep } => {
            if keep {
                let k = kept(Some(&msg), bytes, &received, code, &ack, &summary);
                if replaying.is_some() {
                    keep_refused(repo, &keep_key, &k, true).await;
                } else {
                    match repo.claim_auth_record(REFUSED, &key, &json!(k), None).await {
                        Ok(true) => {}
                        Ok(false) => {
                            if let Some(k) = lookup(repo, &key).await {
                                return resent(k);
                            }
                        }
                        Err(e) => tracing::error!(error = %e, "a refused HL7 v2 message could not be kept"),
                    }
                }
            }
            Sent { code, ack, summary }
        }
        Processed::Store { bundle, ack: a, summary } => {
            let code = mode_code(&msg, AckCode::Aa);
            let k = kept(Some(&msg), bytes, &received, code, &a, &summary);
            match repo.process_transaction_recorded(bundle, ACCEPTED, &key, &json!(k)).await {
                Ok(_) => {
                    if let Some(old) = replaying
                        && let Err(e) = repo.take_auth_record(REFUSED, old).await
                    {
                        tracing::error!(error = %e, "a replayed HL7 v2 message's refusal could not be removed");
                    }
                    Sent { code, ack: a, summary }
                }
                Err(hale_repository::Error::Store(conflict @ hale_store::Error::Conflict(_))) => {
                    // the same message, sent again while the first was being written
                    match lookup(repo, &key).await {
                        Some(k) => resent(k),
                        None => not_stored(&msg, &control, &hale_repository::Error::Store(conflict)),
                    }
                }
                Err(err) => {
                    let sent = not_stored(&msg, &control, &err);
                    if !passing(&err) {
                        let k = kept(Some(&msg), bytes, &received, sent.code, &sent.ack, &sent.summary);
                        keep_refused(repo, &keep_key, &k, replaying.is_some()).await;
                    }
                    sent
                }
            }
        }
    }
}

/// Which kept messages to list or replay.
#[derive(Debug, Default, Clone)]
pub struct Filter {
    /// Only the refused (the dead-letter list).
    pub refused: bool,
    /// MSH-10.
    pub control: Option<String>,
    /// PID-3's first identifier.
    pub patient: Option<String>,
    /// Received at or after (a FHIR date or instant, UTC).
    pub since: Option<String>,
    /// Received before.
    pub until: Option<String>,
    /// The answer (`AA`, `AE`, `AR`, `CA`, `CE`, `CR`).
    pub code: Option<String>,
}

impl Filter {
    fn matches(&self, k: &Kept) -> bool {
        self.control.as_ref().is_none_or(|c| &k.control == c)
            && self.patient.as_ref().is_none_or(|p| &k.patient == p)
            && self.since.as_ref().is_none_or(|s| k.received.as_str() >= s.as_str())
            && self.until.as_ref().is_none_or(|u| k.received.as_str() < u.as_str())
            && self.code.as_ref().is_none_or(|c| k.code.eq_ignore_ascii_case(c))
    }
}

/// The kept messages `filter` selects, oldest first, each with its key and whether it
/// was refused.
pub async fn list(repo: &Repository, filter: &Filter) -> Result<Vec<(String, bool, Kept)>, hale_repository::Error> {
    let mut out = Vec::new();
    let kinds: &[&str] = if filter.refused { &[REFUSED] } else { &[ACCEPTED, REFUSED] };
    for kind in kinds {
        for (key, body) in repo.auth_records(kind).await? {
            if let Ok(k) = serde_json::from_value::<Kept>(body)
                && filter.matches(&k)
            {
                out.push((key, *kind == REFUSED, k));
            }
        }
    }
    out.sort_by(|a, b| a.2.received.cmp(&b.2.received));
    Ok(out)
}

/// Counts of the messages received, by interface (sending application and facility),
/// message type and answer, and of the laboratory orders queued and still waiting for
/// the laboratory's answer.
#[derive(Debug, Default, PartialEq)]
pub struct Stats {
    /// ((sender, message type, answer), count), sorted.
    pub received: Vec<((String, String, String), usize)>,
    pub orders_queued: usize,
    pub orders_waiting: usize,
}

pub async fn stats(repo: &Repository) -> Result<Stats, hale_repository::Error> {
    let mut counts: std::collections::BTreeMap<(String, String, String), usize> = Default::default();
    for (_, _, k) in list(repo, &Filter::default()).await? {
        let sender = match (k.sender.as_str(), k.facility.as_str()) {
            ("", _) => "(unread)".to_string(),
            (s, "") => s.to_string(),
            (s, f) => format!("{s}/{f}"),
        };
        let ty = if k.message_type.is_empty() { "?".to_string() } else { k.message_type };
        *counts.entry((sender, ty, k.code)).or_default() += 1;
    }
    Ok(Stats {
        received: counts.into_iter().collect(),
        orders_queued: repo.count_auth_records(crate::orders_out::QUEUED, "").await? as usize,
        orders_waiting: repo.count_auth_records(crate::orders_out::OUTBOX, "").await? as usize,
    })
}

/// Processes the refused messages `filter` selects again (after a mapping was fixed or
/// the order they answer was placed): each is stored now (and leaves the dead-letter
/// list) or refused again with the new reason. Accepted messages are never written
/// twice.
pub async fn replay(repo: &Repository, filter: &Filter) -> Result<Vec<(Kept, Sent)>, hale_repository::Error> {
    let refused = Filter { refused: true, ..filter.clone() };
    let mut out = Vec::new();
    for (key, _, k) in list(repo, &refused).await? {
        let sent = receive_as(repo, &k.bytes(), Some(&key)).await;
        out.push((k, sent));
    }
    Ok(out)
}

/// Whether a failure may pass if the message is sent again (the store busy, failing or
/// a concurrent change): such a message is answered `AE` and not kept.
fn passing(err: &hale_repository::Error) -> bool {
    use hale_fhir::Category;
    matches!(
        err.category(),
        Category::Internal | Category::Busy | Category::TooCostly | Category::Conflict | Category::PreconditionFailed
    )
}

/// `AE`: the message could not be stored, with the reason a person can act on (no
/// internal detail).
fn not_stored(msg: &Message, control: &str, err: &hale_repository::Error) -> Sent {
    let why = err.outcome().issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default();
    let text = if passing(err) { format!("not stored, send it again: {why}") } else { format!("not stored: {why}") };
    let e = AckError { location: "MSH".into(), code: "207", text };
    let a = ack(msg, AckCode::Ae, control, &now_dtm(), std::slice::from_ref(&e));
    let code = mode_code(msg, AckCode::Ae);
    Sent { code, ack: a, summary: format!("{}: {}", code.code(), e.text) }
}

/// Keeps a refused message under `key` (replacing what is there when `replace`).
async fn keep_refused(repo: &Repository, key: &str, k: &Kept, replace: bool) {
    let kept = if replace {
        repo.put_auth_record(REFUSED, key, &json!(k), None, None).await
    } else {
        repo.claim_auth_record(REFUSED, key, &json!(k), None).await.map(|_| ())
    };
    if let Err(e) = kept {
        tracing::error!(error = %e, "a refused HL7 v2 message could not be kept");
    }
}

/// Checks, maps and routes a message; what to write, or why not.
async fn process(repo: &Repository, msg: &Message, control: &str) -> Processed {
    let refuse = |code: AckCode, errors: &[AckError], keep: bool| {
        let a = ack(msg, code, control, &now_dtm(), errors);
        let code = mode_code(msg, code);
        let why: Vec<String> = errors.iter().map(|e| format!("{} ({})", e.text, e.location)).collect();
        Processed::Refused { code, ack: a, summary: format!("{}: {}", code.code(), why.join("; ")), keep }
    };
    let (kind, trigger, _) = msg.message_type();
    let adt = kind == "ADT" && hale_hl7v2::adt::EVENTS.contains(&trigger.as_str());
    if (kind.as_str(), trigger.as_str()) != ("ORU", "R01") && !adt {
        let e = AckError {
            location: "MSH^1^9".into(),
            code: "200",
            text: format!(
                "Hale receives ORU^R01 and ADT^{} here, not {kind}^{trigger}",
                hale_hl7v2::adt::EVENTS.join("/")
            ),
        };
        return refuse(AckCode::Ar, &[e], true);
    }
    let version = msg.get("MSH-12.1");
    if !version.is_empty() && !version.starts_with("2.") && version != "2" {
        let e = AckError {
            location: "MSH^1^12".into(),
            code: "203",
            text: format!("version '{version}' is not an HL7 version 2 (Hale receives 2.1 to 2.9)"),
        };
        return refuse(AckCode::Ar, &[e], true);
    }
    let processing = msg.get("MSH-11.1");
    if !processing.is_empty() && processing != "P" && processing != "T" && processing != "D" {
        let e = AckError {
            location: "MSH^1^11".into(),
            code: "202",
            text: format!("processing id '{processing}' is not P (production), T (training) or D (debugging)"),
        };
        return refuse(AckCode::Ar, &[e], true);
    }
    if adt {
        let mapped = match hale_hl7v2::adt::map_adt(msg) {
            Ok(m) => m,
            Err(errors) => return refuse(AckCode::Ae, &errors, true),
        };
        let (mut bundle, what) = match crate::adt::transaction(repo, &mapped).await {
            Ok(t) => t,
            // a failed look-up may pass; a merge or a visit that cannot be is kept
            Err(r) => return refuse(AckCode::Ae, &[r.error], !r.passing),
        };
        add_provenance(msg, &mut bundle);
        let a = ack(msg, AckCode::Aa, control, &now_dtm(), &mapped.warnings);
        let summary = format!(
            "{}: {} {what}{}",
            mode_code(msg, AckCode::Aa).code(),
            mapped.event,
            if mapped.warnings.is_empty() {
                String::new()
            } else {
                format!(" ({})", mapped.warnings.iter().map(|w| w.text.clone()).collect::<Vec<_>>().join("; "))
            }
        );
        return Processed::Store { bundle, ack: a, summary };
    }
    let mapped = match hale_hl7v2::oru::map_oru(msg) {
        Ok(m) => m,
        Err(errors) => return refuse(AckCode::Ae, &errors, true),
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
    let mut bundle = mapped.bundle;
    let routed = match route_to_orders(repo, &mut bundle, &patient_name(msg)).await {
        Ok(n) => n,
        Err(err) => {
            let e = AckError {
                location: "OBR^1^2".into(),
                code: "207",
                text: format!(
                    "the order could not be looked up, send it again: {}",
                    err.outcome().issues.first().map(|i| i.diagnostics.clone()).unwrap_or_default()
                ),
            };
            return refuse(AckCode::Ae, &[e], false);
        }
    };
    add_provenance(msg, &mut bundle);
    let a = ack(msg, AckCode::Aa, control, &now_dtm(), &refused);
    let summary = format!(
        "{}: {stored} observations stored{}{}",
        mode_code(msg, AckCode::Aa).code(),
        if routed > 0 { format!(", {routed} matched to their order (in the orderer's inbox)") } else { String::new() },
        if refused.is_empty() { String::new() } else { format!(", {} OBX named in ERR", refused.len()) }
    );
    Processed::Store { bundle, ack: a, summary }
}

/// A Provenance naming the sending system and the message for every resource the
/// message creates or changes.
fn add_provenance(msg: &Message, bundle: &mut Value) {
    let Some(entries) = bundle["entry"].as_array_mut() else { return };
    for e in entries.iter_mut() {
        if e["request"]["method"] == "POST" && e.get("fullUrl").is_none() {
            e["fullUrl"] = json!(format!("urn:uuid:{}", uuid::Uuid::now_v7()));
        }
    }
    let targets: Vec<Value> = entries
        .iter()
        .filter_map(|e| match e["request"]["method"].as_str() {
            Some("POST") => e["fullUrl"].as_str().map(|u| json!({"reference": u})),
            Some("PUT") => e["request"]["url"].as_str().map(|u| json!({"reference": u})),
            _ => None,
        })
        .collect();
    if targets.is_empty() {
        return;
    }
    let (sender, facility, control) = (msg.get("MSH-3.1"), msg.get("MSH-4.1"), msg.control_id());
    let (kind, trigger, _) = msg.message_type();
    let who = if facility.is_empty() { sender.clone() } else { format!("{sender} at {facility}") };
    let mut provenance = json!({
        "resourceType": "Provenance",
        "target": targets,
        "recorded": hale_repository::Instant::now().to_fhir(),
                "agent": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author", "display": "Author"}]},
            "who": {"identifier": {"system": "urn:hale:hl7v2:sending-application", "value": if sender.is_empty() { "unnamed".to_string() } else { sender.clone() }}, "display": who}
        }],
        "entity": [{
            "role": "source",
            "what": {
                "identifier": {"system": "urn:hale:hl7v2:message", "value": format!("{sender}|{facility}|{control}")},
                "display": format!("HL7 v2 {kind}^{trigger} message {control} from {who}")
            }
        }]
    });
    if who.is_empty() {
        provenance["agent"][0]["who"]["display"] = json!("the sending system");
    }
    entries.push(json!({"resource": provenance, "request": {"method": "POST", "url": "Provenance"}}));
}

fn patient_name(msg: &Message) -> String {
    let (family, given) = (msg.get("PID-5.1"), msg.get("PID-5.2"));
    match (family.is_empty(), given.is_empty()) {
        (false, false) => format!("{family}, {given}"),
        (false, true) => family,
        _ => "the patient".into(),
    }
}

/// Matches each report to the laboratory order it answers (OBR-2, the placer order
/// number Hale gave the ServiceRequest): the report and its observations are then
/// `basedOn` the order and about its patient, the order is completed (under `If-Match`),
/// and a review task goes to the clinician who ordered it, as for a result entered by
/// hand. Returns how many reports were matched.
async fn route_to_orders(
    repo: &Repository,
    bundle: &mut Value,
    patient_name: &str,
) -> Result<usize, hale_repository::Error> {
    let ty = hale_repository::resource_type("ServiceRequest")?;
    let Some(entries) = bundle["entry"].as_array_mut() else { return Ok(0) };
    let mut extra = Vec::new();
    let mut routed = 0;
    let now = hale_repository::Instant::now().to_fhir();
    for i in 0..entries.len() {
        if entries[i]["resource"]["resourceType"] != "DiagnosticReport" {
            continue;
        }
        let placer = entries[i]["resource"]["identifier"].as_array().and_then(|ids| {
            ids.iter()
                .find(|id| id["type"]["coding"][0]["code"] == "PLAC")
                .and_then(|id| id["value"].as_str().map(str::to_string))
        });
        let Some(placer) = placer else { continue };
        let pairs = vec![("identifier".to_string(), format!("{}|{placer}", hale_app::orders::PLACER_SYSTEM))];
        let Ok(req) = hale_search::parse::parse(&ty, &pairs, false) else { continue };
        let page = repo.search(&req, 1, false).await?;
        let Some(order) =
            page.entries.first().and_then(|r| r.body.as_deref()).and_then(|b| serde_json::from_str::<Value>(b).ok())
        else {
            continue;
        };
        if order["status"] != "active" {
            continue;
        }
        let sr = order["id"].as_str().unwrap_or("").to_string();
        let report_url = format!("urn:uuid:00000000-0000-4000-9000-{:012}", i);
        entries[i]["fullUrl"] = json!(report_url);
        let based_on = json!([{"reference": format!("ServiceRequest/{sr}")}]);
        entries[i]["resource"]["basedOn"] = based_on.clone();
        entries[i]["resource"]["subject"] = order["subject"].clone();
        let results: Vec<String> = entries[i]["resource"]["result"]
            .as_array()
            .map(|r| r.iter().filter_map(|x| x["reference"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        let (mut flagged, mut critical) = (0, Vec::new());
        for e in entries.iter_mut().filter(|e| e["fullUrl"].as_str().is_some_and(|u| results.iter().any(|r| r == u))) {
            e["resource"]["basedOn"] = based_on.clone();
            e["resource"]["subject"] = order["subject"].clone();
            let code = e["resource"]["interpretation"][0]["coding"][0]["code"].as_str().unwrap_or("N").to_string();
            if code != "N" {
                flagged += 1;
            }
            if matches!(code.as_str(), "HH" | "LL" | "AA") {
                let name = e["resource"]["code"]["coding"][0]["display"].as_str().unwrap_or("a result").to_string();
                let value = e["resource"]["valueQuantity"]["value"].to_string();
                critical.push(
                    format!("{name} {value} {}", e["resource"]["valueQuantity"]["unit"].as_str().unwrap_or(""))
                        .trim()
                        .to_string(),
                );
            }
        }
        let mut done = order.clone();
        let version = order["meta"]["versionId"].as_str().unwrap_or("1").to_string();
        if let Some(o) = done.as_object_mut() {
            o.remove("meta");
        }
        done["status"] = json!("completed");
        extra.push(json!({"resource": done, "request": {"method": "PUT", "url": format!("ServiceRequest/{sr}"), "ifMatch": format!("W/\"{version}\"")}}));
        let test = entries[i]["resource"]["code"]["text"]
            .as_str()
            .or_else(|| entries[i]["resource"]["code"]["coding"][0]["display"].as_str())
            .unwrap_or("a result")
            .to_string();
        let review = hale_app::orders::Review { test: &test, patient_name, flagged, critical: &critical, now: &now };
        if let Some(task) = hale_app::orders::review_task(&order, &report_url, &review) {
            extra.push(json!({"resource": task, "request": {"method": "POST", "url": "Task"}}));
        }
        routed += 1;
    }
    entries.extend(extra);
    // a patient record nothing refers to any more (every report matched its order) is not created
    let patient_url = entries.first().and_then(|e| e["fullUrl"].as_str()).unwrap_or("").to_string();
    let text = entries.get(1..).map(|rest| serde_json::to_string(rest).unwrap_or_default()).unwrap_or_default();
    if routed > 0 && !text.contains(&patient_url) {
        entries.remove(0);
    }
    Ok(routed)
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
