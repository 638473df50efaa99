//! The audit trail: one AuditEvent per interaction with health information, shaped as
//! IHE Basic Audit Log Patterns (BALP) shape them (who, which patient, what, what query,
//! when, from where, outcome, purpose of use), written by the gate (`hale-repository`)
//! through the store in the same transaction as a write, or durably before a read is
//! answered.
//!
//! [`chain`] links the entries into a hash chain, signs checkpoints kept outside the
//! database and verifies both. No I/O here except the checkpoint file and its key.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod chain;

use hale_access::{Interaction, Principal, RequestContext};
use hale_store::{AuditRow, Instant, StoredResource};

/// How an interaction ended (AuditEvent.outcome).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `0`
    Success,
    /// `4`: refused or invalid (the caller's request failed).
    MinorFailure,
    /// `8`: the server failed.
    SeriousFailure,
}

impl Outcome {
    pub fn code(self) -> &'static str {
        match self {
            Outcome::Success => "0",
            Outcome::MinorFailure => "4",
            Outcome::SeriousFailure => "8",
        }
    }
}

/// AuditEvent.action for an interaction: C, R, U, D or E.
pub fn action(interaction: Interaction) -> &'static str {
    match interaction {
        Interaction::Create => "C",
        Interaction::Read
        | Interaction::Vread
        | Interaction::Search
        | Interaction::History
        | Interaction::HistoryInstance => "R",
        Interaction::Update => "U",
        Interaction::Delete => "D",
        Interaction::Everything
        | Interaction::Validate
        | Interaction::Reindex
        | Interaction::Maintenance
        | Interaction::Ping
        | Interaction::ManageAccounts
        | Interaction::IssueToken => "E",
    }
}

/// One audited interaction, before the store knows what it touched.
#[derive(Debug, Clone)]
pub struct Event {
    /// The RESTful interaction or operation code, as AuditEvent.subtype and the log's
    /// `action` column: `read`, `vread`, `search-type`, `history-instance`, `create`,
    /// `update`, `patch`, `delete`, `transaction`, `batch`, `$everything`, `import`...
    pub subtype: String,
    /// C, R, U, D or E ([`action`]).
    pub action: &'static str,
    pub outcome: Outcome,
    /// Why it failed or was refused.
    pub detail: Option<String>,
    /// The query as asked (a search's parameters), BALP's query entity.
    pub query: Option<String>,
    /// The resource the interaction named, when nothing was returned (a refused read).
    pub target: Option<String>,
    /// Patients the interaction concerns beyond those of the resources it touched (the
    /// patient of `$everything`, of a compartment search).
    pub patients: Vec<String>,
}

impl Event {
    pub fn new(subtype: impl Into<String>, interaction: Interaction) -> Self {
        Event {
            subtype: subtype.into(),
            action: action(interaction),
            outcome: Outcome::Success,
            detail: None,
            query: None,
            target: None,
            patients: Vec::new(),
        }
    }

    pub fn failed(mut self, outcome: Outcome, detail: impl Into<String>) -> Self {
        self.outcome = outcome;
        self.detail = Some(detail.into());
        self
    }

    pub fn query(mut self, q: impl Into<String>) -> Self {
        self.query = Some(q.into());
        self
    }

    pub fn target(mut self, t: impl Into<String>) -> Self {
        self.target = Some(t.into());
        self
    }

    pub fn patient(mut self, id: impl Into<String>) -> Self {
        self.patients.push(id.into());
        self
    }

    /// The stored entry of this event by `ctx`, listing every resource it `touched`.
    pub fn row(self, ctx: &RequestContext, touched: &[&StoredResource]) -> AuditRow {
        let recorded = Instant::now();
        let mut patients = self.patients.clone();
        for s in touched {
            patients.extend(patients_of(s));
        }
        patients.sort();
        patients.dedup();
        let body = self.body(ctx, recorded, touched, &patients);
        AuditRow {
            recorded,
            action: self.subtype,
            agent: agent_key(&ctx.principal),
            outcome: self.outcome.code().to_string(),
            patients,
            body,
        }
    }

    /// The AuditEvent as stored: JSON text written directly (no value tree: it is built
    /// for every read, so its cost is on every read's latency), with each of its fixed
    /// parts ([`LITERALS`]) written as one control character, which JSON text never holds
    /// raw: an entry is a fifth of the AuditEvent's size in the journal, the log and the
    /// chain's hashing. [`expand`] gives back the AuditEvent text.
    fn body(
        &self,
        ctx: &RequestContext,
        recorded: Instant,
        touched: &[&StoredResource],
        patients: &[String],
    ) -> String {
        let mut o = String::with_capacity(256 + 64 * (patients.len() + touched.len()));
        lit(&mut o, Lit::Head);
        string(&mut o, &self.subtype);
        lit(&mut o, Lit::Action);
        string(&mut o, self.action);
        lit(&mut o, Lit::Recorded);
        string(&mut o, &recorded.to_fhir());
        lit(&mut o, Lit::Outcome);
        string(&mut o, self.outcome.code());
        if let Some(d) = &self.detail {
            lit(&mut o, Lit::OutcomeDesc);
            string(&mut o, d);
        }
        // an access to a patient under a break-the-glass grant is flagged as such
        let glass = ctx.break_glass.as_ref().filter(|g| patients.iter().any(|p| g.patients.contains(p)));
        let purpose =
            if glass.is_some() { Some(hale_access::PurposeOfUse::EmergencyTreatment) } else { ctx.purpose_of_use };
        if let Some(p) = purpose {
            lit(&mut o, Lit::PurposeOfEvent);
            string(&mut o, p.code());
            o.push_str("}]}]");
        }
        lit(&mut o, Lit::Agent);
        who(&mut o, &ctx.principal);
        lit(&mut o, Lit::Requestor);
        if let Some(ip) = ctx.client {
            lit(&mut o, Lit::Network);
            string(&mut o, &ip.to_string());
            o.push_str(r#","type":"2"}"#);
        }
        if let Some(bg) = glass {
            lit(&mut o, Lit::BreakTheGlass);
            string(&mut o, &bg.reason);
            o.push('}');
            o.push(']');
        }
        lit(&mut o, Lit::Source);
        string(&mut o, &ctx.request_id);
        lit(&mut o, Lit::RequestIdType);
        for p in patients {
            lit(&mut o, Lit::What);
            string(&mut o, &format!("Patient/{p}"));
            lit(&mut o, Lit::PatientRole);
        }
        if let Some(t) = &self.target {
            lit(&mut o, Lit::What);
            string(&mut o, t);
            lit(&mut o, Lit::ObjectRole);
        }
        for s in touched {
            lit(&mut o, Lit::What);
            string(&mut o, &format!("{}/{}/_history/{}", s.resource_type, s.id, s.version));
            lit(&mut o, Lit::ObjectRole);
        }
        if let Some(q) = &self.query {
            use base64::Engine as _;
            lit(&mut o, Lit::Query);
            string(&mut o, &base64::engine::general_purpose::STANDARD.encode(q.as_bytes()));
            o.push_str(r#","description":"#);
            string(&mut o, q);
            o.push('}');
        }
        o.push_str("]}");
        o
    }
}

/// The fixed parts of every AuditEvent, in [`LITERALS`]' order.
#[derive(Clone, Copy)]
enum Lit {
    Head,
    Action,
    Recorded,
    Outcome,
    OutcomeDesc,
    PurposeOfEvent,
    Agent,
    Requestor,
    Network,
    BreakTheGlass,
    Source,
    RequestIdType,
    What,
    PatientRole,
    ObjectRole,
    Query,
    UserId,
    ClientId,
}

/// The text of each fixed part of an AuditEvent. In a stored entry part `k` is the
/// one character `CODES[k]`: control characters other than tab, line feed and
/// carriage return (the journal's separators), which JSON text never holds raw
/// (`string` escapes them in values). Append only: entries already stored name their
/// parts by position.
pub const LITERALS: [&str; 18] = [
    r#"{"resourceType":"AuditEvent","type":{"system":"http://terminology.hl7.org/CodeSystem/audit-event-type","code":"rest","display":"RESTful Operation"},"subtype":[{"system":"http://hl7.org/fhir/restful-interaction","code":"#,
    r#"}],"action":"#,
    r#","recorded":"#,
    r#","outcome":"#,
    r#","outcomeDesc":"#,
    r#","purposeOfEvent":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"#,
    r#","agent":[{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ParticipationType","code":"IRCP","display":"information recipient"}]},"who":"#,
    r#","requestor":true"#,
    r#","network":{"address":"#,
    r#","purposeOfUse":[{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"BTG","display":"break the glass"},{"system":"http://terminology.hl7.org/CodeSystem/v3-ActReason","code":"ETREAT"}],"text":"#,
    r#"}],"source":{"observer":{"display":"Hale"},"type":[{"system":"http://terminology.hl7.org/CodeSystem/security-source-type","code":"4","display":"Application Server"}]},"entity":[{"what":{"identifier":{"value":"#,
    r#"}},"type":{"system":"https://profiles.ihe.net/ITI/BALP/CodeSystem/BasicAuditEntityType","code":"XrequestId"}}"#,
    r#",{"what":{"reference":"#,
    r#"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"1","display":"Person"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"1","display":"Patient"}}"#,
    r#"},"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"4","display":"Domain Resource"}}"#,
    r#",{"type":{"system":"http://terminology.hl7.org/CodeSystem/audit-entity-type","code":"2","display":"System Object"},"role":{"system":"http://terminology.hl7.org/CodeSystem/object-role","code":"24","display":"Query"},"query":"#,
    r#"{"identifier":{"system":"urn:hale:user","value":"#,
    r#"{"identifier":{"system":"urn:hale:client","value":"#,
];

/// The character standing for each of [`LITERALS`] in a stored entry.
const CODES: [u8; 18] = [1, 2, 3, 4, 5, 6, 7, 8, 11, 12, 14, 15, 16, 17, 18, 19, 20, 21];

fn lit(o: &mut String, l: Lit) {
    o.push(char::from(CODES[l as usize]));
}

/// The AuditEvent (JSON text) of a stored entry: each code of a fixed part replaced by
/// its text. Text without codes (entries stored before parts were coded) is returned
/// as it is.
pub fn expand(stored: &str) -> std::borrow::Cow<'_, str> {
    let part = |b: u8| PART_OF.get(usize::from(b)).copied().flatten();
    if !stored.bytes().any(|b| part(b).is_some()) {
        return std::borrow::Cow::Borrowed(stored);
    }
    let mut o = String::with_capacity(stored.len() * 6);
    let mut from = 0;
    for (i, b) in stored.bytes().enumerate() {
        if let Some(k) = part(b) {
            o.push_str(&stored[from..i]);
            o.push_str(LITERALS[k]);
            from = i + 1;
        }
    }
    o.push_str(&stored[from..]);
    std::borrow::Cow::Owned(o)
}

/// For each control character, the fixed part it stands for ([`CODES`] inverted).
const PART_OF: [Option<usize>; 32] = {
    let mut t = [None; 32];
    let mut k = 0;
    while k < CODES.len() {
        t[CODES[k] as usize] = Some(k);
        k += 1;
    }
    t
};

/// Appends `s` as a JSON string (RFC 8259 escapes).
fn string(o: &mut String, s: &str) {
    o.push('"');
    let mut from = 0;
    for (i, b) in s.bytes().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0..=0x1f => "",
            _ => continue,
        };
        o.push_str(&s[from..i]);
        if esc.is_empty() {
            o.push_str(&format!("\\u{b:04x}"));
        } else {
            o.push_str(esc);
        }
        from = i + 1;
    }
    o.push_str(&s[from..]);
    o.push('"');
}

/// How the log's `agent` column names a principal (searched by `AuditEvent?agent=`).
pub fn agent_key(p: &Principal) -> String {
    p.display_name()
}

fn who(o: &mut String, p: &Principal) {
    match p {
        Principal::User(u) => {
            lit(o, Lit::UserId);
            string(o, &u.username);
            o.push_str("},");
        }
        Principal::Client(c) => {
            lit(o, Lit::ClientId);
            string(o, &c.client_id);
            o.push_str("},");
        }
        _ => o.push('{'),
    }
    o.push_str(r#""display":"#);
    string(o, &p.display_name());
    if let Principal::User(u) = p
        && let Some(r) = &u.fhir_user
    {
        o.push_str(r#","reference":"#);
        string(o, r);
    }
    o.push('}');
}

/// The patients a stored version concerns: a Patient itself, or every patient it
/// references (`"reference":"Patient/…"`), found in the JSON text without parsing it.
pub fn patients_of(s: &StoredResource) -> Vec<String> {
    let mut out = Vec::new();
    if s.resource_type.as_str() == "Patient" {
        out.push(s.id.to_string());
    }
    if let Some(body) = &s.body {
        const NEEDLE: &str = "\"reference\":\"Patient/";
        let mut rest = body.as_str();
        while let Some(i) = rest.find(NEEDLE) {
            rest = &rest[i + NEEDLE.len()..];
            let end = rest.find(['"', '/']).unwrap_or(rest.len());
            let id = &rest[..end];
            if hale_fhir::ResourceId::parse(id).is_some() {
                out.push(id.to_string());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hale_fhir::{ResourceId, ResourceType, VersionId};
    use hale_store::Method;
    use serde_json::{Map, Value, json};

    /// The AuditEvent served for a stored entry: its body with `id` (the entry's sequence
    /// number) after `resourceType`.
    fn with_id(seq: i64, body: &str) -> Value {
        let mut v: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        if let Some(obj) = v.as_object_mut() {
            let rt = obj.shift_remove("resourceType");
            let mut out = Map::with_capacity(obj.len() + 2);
            out.insert("resourceType".into(), rt.unwrap_or_else(|| json!("AuditEvent")));
            out.insert("id".into(), json!(seq.to_string()));
            for (k, val) in std::mem::take(obj) {
                out.insert(k, val);
            }
            *obj = out;
        }
        v
    }

    fn stored(ty: &str, id: &str, body: &str) -> StoredResource {
        StoredResource {
            resource_type: ResourceType::parse(ty).unwrap(),
            id: ResourceId::parse(id).unwrap(),
            version: VersionId::new(3),
            last_updated: Instant::from_millis(0),
            method: Method::Put,
            body: Some(body.to_string()),
        }
    }

    #[test]
    fn patients_are_found_in_references() {
        let o = stored(
            "Observation",
            "o1",
            r#"{"resourceType":"Observation","subject":{"reference":"Patient/p-1"},"performer":[{"reference":"Patient/p2/_history/1"},{"reference":"Practitioner/x"}]}"#,
        );
        assert_eq!(patients_of(&o), vec!["p-1", "p2"]);
        assert_eq!(patients_of(&stored("Patient", "me", r#"{"resourceType":"Patient"}"#)), vec!["me"]);
    }

    #[test]
    fn an_event_is_a_balp_shaped_audit_event() {
        let ctx = RequestContext::anonymous("req-1", Some("10.0.0.9".parse().unwrap()));
        let o = stored("Observation", "o1", r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#);
        let row = Event::new("read", Interaction::Read).row(&ctx, &[&o]);
        assert_eq!(row.action, "read");
        assert_eq!(row.agent, "anonymous");
        assert_eq!(row.patients, vec!["p1"]);
        let ev = with_id(7, &expand(&row.body));
        assert_eq!(ev["id"], "7");
        assert_eq!(ev["action"], "R");
        assert_eq!(ev["outcome"], "0");
        assert_eq!(ev["agent"][0]["network"]["address"], "10.0.0.9");
        let refs: Vec<&str> =
            ev["entity"].as_array().unwrap().iter().filter_map(|e| e["what"]["reference"].as_str()).collect();
        assert_eq!(refs, vec!["Patient/p1", "Observation/o1/_history/3"]);
        // the event validates as an R4 AuditEvent
        let issues = hale_fhir::validate::validate_resource(&ev);
        assert!(issues.iter().all(|i| !i.is_error()), "{issues:?}");
    }

    #[test]
    fn a_refusal_names_its_target_and_reason() {
        let ctx = RequestContext::system("import");
        let row = Event::new("delete", Interaction::Delete)
            .target("Patient/p9")
            .patient("p9")
            .failed(Outcome::MinorFailure, "forbidden")
            .row(&ctx, &[]);
        let ev = with_id(1, &expand(&row.body));
        assert_eq!(ev["outcome"], "4");
        assert_eq!(ev["outcomeDesc"], "forbidden");
        assert_eq!(ev["purposeOfEvent"][0]["coding"][0]["code"], "HOPERAT");
        assert_eq!(row.agent, "system:import");
    }

    #[test]
    fn every_value_is_escaped_and_a_user_under_break_the_glass_is_flagged() {
        let nasty = "a\"b\\c\nd\re\tf\u{1}g\u{1f}h é 漢 </script>";
        let grant = hale_access::UserGrant {
            account: "acc-1".into(),
            username: nasty.into(),
            role: hale_access::Role::Clinician,
            fhir_user: Some("Practitioner/dr-1".into()),
            organization: None,
            patients: vec![],
            scopes: hale_access::Scopes::parse("user/*.rs", true).unwrap(),
            launch_patient: None,
            client_id: "app".into(),
        };
        let mut ctx = RequestContext::anonymous(nasty, Some("::1".parse().unwrap()));
        ctx.principal = Principal::User(Box::new(grant));
        ctx.purpose_of_use = Some(hale_access::PurposeOfUse::Treatment);
        ctx.break_glass =
            Some(hale_access::BreakGlass { reason: nasty.into(), expires_at: 0, patients: vec!["p1".into()] });
        let o = stored("Observation", "o1", r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#);
        let row = Event::new("search-type", Interaction::Search)
            .query(nasty)
            .target("Observation")
            .failed(Outcome::MinorFailure, nasty)
            .row(&ctx, &[&o]);
        let ev: Value = serde_json::from_str(&expand(&row.body)).expect("the body is JSON");
        assert_eq!(ev["outcomeDesc"], nasty);
        assert_eq!(ev["entity"][0]["what"]["identifier"]["value"], nasty);
        assert_eq!(ev["agent"][0]["who"]["identifier"]["value"], nasty);
        assert_eq!(ev["agent"][0]["who"]["reference"], "Practitioner/dr-1");
        assert_eq!(ev["agent"][0]["network"]["address"], "::1");
        assert_eq!(ev["agent"][0]["purposeOfUse"][0]["coding"][0]["code"], "BTG");
        assert_eq!(ev["agent"][0]["purposeOfUse"][0]["text"], nasty);
        assert_eq!(ev["purposeOfEvent"][0]["coding"][0]["code"], "ETREAT");
        let q = ev["entity"].as_array().unwrap().last().unwrap();
        assert_eq!(q["description"], nasty);
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD.decode(q["query"].as_str().unwrap()).unwrap();
        assert_eq!(raw, nasty.as_bytes());
        let issues = hale_fhir::validate::validate_resource(&ev);
        assert!(issues.iter().all(|i| !i.is_error()), "{issues:?}");
    }

    #[test]
    fn an_entry_is_stored_with_its_fixed_parts_coded_and_expands_to_the_audit_event() {
        let ctx = RequestContext::anonymous("req-1", Some("10.0.0.9".parse().unwrap()));
        let o = stored("Observation", "o1", r#"{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}"#);
        let row = Event::new("read", Interaction::Read).row(&ctx, &[&o]);
        let full = expand(&row.body);
        assert!(row.body.len() * 4 < full.len(), "{} stored bytes for {}", row.body.len(), full.len());
        assert!(!row.body.contains(['\n', '\r', '\t']), "the journal's separators never appear");
        assert!(!full.bytes().any(|b| b < 0x20), "no code is left: {full}");
        assert!(full.starts_with(r#"{"resourceType":"AuditEvent","type":{"#), "{full}");
        // an entry stored before parts were coded is its own AuditEvent
        assert_eq!(expand(&full), full);
        // each code stands for one fixed part
        for (k, c) in CODES.iter().enumerate() {
            assert_eq!(expand(&char::from(*c).to_string()), LITERALS[k]);
            assert!(!LITERALS[k].bytes().any(|b| b < 0x20));
        }
    }
}
