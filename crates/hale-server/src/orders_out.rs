//! Laboratory orders out (`hl7.orders_to`): every active ServiceRequest with a Hale
//! placer number (a laboratory order placed in the clinician application) is sent once as
//! an HL7 v2 ORM^O01 to the laboratory's MLLP address.
//!
//! - **Queued once, durably.** A new order is found by a search of the store (the
//!   principal `system:hl7-orders`); a claim (`hl7-order-queued`, by the order's id) makes
//!   it queued once however many nodes look; the message, with its control id, is kept
//!   in the outbox (`hl7-outbox`, by the time it was queued) until its answer arrives, so
//!   a restart resends it with the same MSH-10.
//! - **FIFO**: the head of the outbox is sent, and the next only after the head is
//!   answered.
//! - **Only its own answer counts**: an acknowledgement whose MSA-2 is not the message's
//!   control id is ignored (logged).
//! - **No flood**: when no answer comes within `hl7.ack_timeout_secs`, the message is
//!   sent once more on the same connection; when that too goes unanswered the connection
//!   is closed and the interface waits (doubling, up to five minutes) before it connects
//!   and sends again.
//! - **The order follows the answer**: accepted (`AA`/`CA`), the order gets a note that
//!   the laboratory received it; refused (`AE`/`AR`/`CE`/`CR`), it is put `on-hold` with
//!   the laboratory's reason, and a task goes to the clinician who ordered it.

use std::time::Duration;

use hale_repository::Repository;
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::config::Hl7;
use crate::mllp::{Decoder, Frame, frame};

/// Orders queued once (by ServiceRequest id).
pub const QUEUED: &str = "hl7-order-queued";
/// Messages waiting for their answer (by the time they were queued).
pub const OUTBOX: &str = "hl7-outbox";

/// How often the store is searched for new orders.
const POLL: Duration = Duration::from_secs(1);

/// A message in the outbox.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq)]
pub struct Outgoing {
    pub order: String,
    pub control: String,
    pub message: String,
    pub queued: String,
    /// How many times it was written to the laboratory.
    pub sends: u32,
}

fn hl7_now() -> String {
    crate::hl7::now_dtm()
}

fn esc(s: &str) -> String {
    hale_hl7v2::escape(s, &hale_hl7v2::Separators::default())
}

async fn read(repo: &Repository, reference: &str) -> Option<Value> {
    let (ty, id) = reference.split_once('/')?;
    let ty = hale_repository::resource_type(ty).ok()?;
    let id = hale_fhir::ResourceId::parse(id)?;
    let stored = repo.read(&ty, &id).await.ok()?;
    serde_json::from_str(stored.body.as_deref()?).ok()
}

/// The ORM^O01 of an order: MSH, PID (the patient's first identifier, name, birth date,
/// sex), ORC (new order, placer number, ordering provider), OBR (the test by LOINC).
pub async fn message(repo: &Repository, cfg: &Hl7, order: &Value, control: &str) -> String {
    let patient = match order["subject"]["reference"].as_str() {
        Some(r) => read(repo, r).await.unwrap_or(Value::Null),
        None => Value::Null,
    };
    let requester = match order["requester"]["reference"].as_str() {
        Some(r) => read(repo, r).await.unwrap_or(Value::Null),
        None => Value::Null,
    };
    let placer = order["identifier"]
        .as_array()
        .and_then(|ids| ids.iter().find(|i| i["system"] == hale_app::orders::PLACER_SYSTEM))
        .and_then(|i| i["value"].as_str())
        .unwrap_or("");
    let id0 = &patient["identifier"][0];
    let mrn = format!(
        "{}^^^{}^MR",
        esc(id0["value"].as_str().unwrap_or(patient["id"].as_str().unwrap_or(""))),
        esc(id0["system"].as_str().unwrap_or("HALE"))
    );
    let name = &patient["name"][0];
    let given = name["given"][0].as_str().unwrap_or("");
    let birth: String = patient["birthDate"].as_str().unwrap_or("").chars().filter(char::is_ascii_digit).collect();
    let sex = match patient["gender"].as_str() {
        Some("male") => "M",
        Some("female") => "F",
        Some("other") => "O",
        _ => "U",
    };
    let who = |r: &Value| {
        let npi = r["identifier"]
            .as_array()
            .and_then(|ids| ids.iter().find_map(|i| i["value"].as_str()))
            .unwrap_or(r["id"].as_str().unwrap_or(""))
            .to_string();
        let n = &r["name"][0];
        format!(
            "{}^{}^{}",
            esc(&npi),
            esc(n["family"].as_str().unwrap_or("")),
            esc(n["given"][0].as_str().unwrap_or(""))
        )
    };
    let provider = if requester.is_null() { String::new() } else { who(&requester) };
    let coding = order["code"]["coding"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["system"] == "http://loinc.org").or(c.first()))
        .cloned()
        .unwrap_or(Value::Null);
    let test = format!(
        "{}^{}^LN",
        esc(coding["code"].as_str().unwrap_or("")),
        esc(coding["display"].as_str().or(order["code"]["text"].as_str()).unwrap_or(""))
    );
    let when: String =
        order["authoredOn"].as_str().unwrap_or("").chars().take(19).filter(char::is_ascii_digit).collect();
    let priority = match order["priority"].as_str() {
        Some("urgent" | "asap") => "A",
        Some("stat") => "S",
        _ => "R",
    };
    let mut obr = vec![String::new(); 28];
    obr[0] = "OBR".into();
    obr[1] = "1".into();
    obr[2] = format!("{}^HALE", esc(placer));
    obr[4] = test;
    obr[5] = priority.into();
    obr[6] = when.clone();
    obr[16] = provider.clone();
    obr[27] = format!("^^^^^{priority}");
    format!(
        "MSH|^~\\&|HALE|{}|{}|{}|{}||ORM^O01^ORM_O01|{}|P|2.5.1\r\
         PID|1||{mrn}||{}^{}||{birth}|{sex}\r\
         ORC|NW|{}^HALE|||||||{when}|||{provider}\r\
         {}\r",
        esc(&cfg.sending_facility),
        esc(&cfg.receiving_application),
        esc(&cfg.receiving_facility),
        hl7_now(),
        esc(control),
        esc(name["family"].as_str().unwrap_or("")),
        esc(given),
        esc(placer),
        obr.join("|"),
    )
}

/// Queues the orders placed since `since` (a FHIR instant; `None`: every active one):
/// each claimed once, its message put in the outbox. Returns the latest `lastUpdated`
/// seen.
pub async fn queue_new(
    repo: &Repository,
    cfg: &Hl7,
    since: Option<&str>,
) -> Result<Option<String>, hale_repository::Error> {
    let ty = hale_repository::resource_type("ServiceRequest")?;
    let mut pairs = vec![
        ("identifier".to_string(), format!("{}|", hale_app::orders::PLACER_SYSTEM)),
        ("status".to_string(), "active".to_string()),
        ("_sort".to_string(), "_lastUpdated".to_string()),
    ];
    if let Some(s) = since {
        pairs.push(("_lastUpdated".to_string(), format!("ge{s}")));
    }
    let req = hale_search::parse::parse(&ty, &pairs, false).map_err(hale_repository::Error::invalid)?;
    let page = repo.search(&req, 200, false).await?;
    let mut latest = since.map(str::to_string);
    for stored in page.entries {
        let Some(order) = stored.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else { continue };
        latest = Some(stored.last_updated.to_fhir());
        let id = stored.id.to_string();
        let queued = hale_repository::Instant::now();
        if !repo.claim_auth_record(QUEUED, &id, &json!({"queued": queued.to_fhir()}), None).await? {
            continue;
        }
        let control = format!("HALE{}", uuid::Uuid::now_v7().simple());
        let text = message(repo, cfg, &order, &control).await;
        let out = Outgoing { order: id.clone(), control, message: text, queued: queued.to_fhir(), sends: 0 };
        let key = format!("{:020}-{id}", queued.millis());
        repo.put_auth_record(OUTBOX, &key, &json!(out), None, None).await?;
        tracing::info!(order = %id, "a laboratory order was queued for the laboratory");
    }
    Ok(latest)
}

/// What sending the head of the outbox came to.
#[derive(Debug, PartialEq)]
pub enum Delivery {
    /// The laboratory's answer (MSA-1, MSA-3 or ERR text).
    Answered { code: String, text: String },
    /// Nothing (or only others' answers) came, after one resend.
    Stalled,
}

/// MSA-1 and MSA-2 of an answer, and the text of its first ERR (or MSA-3).
fn answer(bytes: &[u8]) -> Option<(String, String, String)> {
    let m = hale_hl7v2::Message::parse(bytes).ok()?;
    let why = {
        let e = m.get("ERR-8");
        if e.is_empty() { m.get("MSA-3") } else { e }
    };
    Some((m.get("MSA-1"), m.get("MSA-2"), why))
}

/// Writes `out` (once more at most when unanswered) and waits for its own answer; the
/// count of sends kept in the outbox under `key` as it goes.
pub async fn deliver(
    conn: &mut Option<(TcpStream, Decoder)>,
    cfg: &Hl7,
    out: &mut Outgoing,
    repo: &Repository,
    key: &str,
) -> Delivery {
    let wait = Duration::from_secs(cfg.ack_timeout_secs);
    for attempt in 0..2 {
        if conn.is_none() {
            match tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(&cfg.orders_to)).await {
                Ok(Ok(s)) => {
                    let _ = s.set_nodelay(true);
                    *conn = Some((s, Decoder::new(cfg.max_frame_bytes)));
                }
                _ => return Delivery::Stalled,
            }
        }
        let Some((stream, decoder)) = conn.as_mut() else { return Delivery::Stalled };
        out.sends += 1;
        if let Err(e) = repo.put_auth_record(OUTBOX, key, &json!(out), None, None).await {
            tracing::error!(error = %e, "the outbox could not be updated");
        }
        if stream.write_all(&frame(out.message.as_bytes())).await.is_err() {
            *conn = None;
            return Delivery::Stalled;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                break;
            }
            match decoder.next(stream, left).await {
                Ok(Some(Frame::Message(bytes))) => match answer(&bytes) {
                    Some((code, to, text)) if to == out.control => return Delivery::Answered { code, text },
                    other => {
                        tracing::warn!(expected = %out.control, got = ?other.map(|o| o.1), "an acknowledgement for another message was ignored");
                    }
                },
                Ok(Some(Frame::TooLarge(_))) => {}
                Ok(None) => break,
                Ok(Some(Frame::Closed)) | Err(_) => {
                    *conn = None;
                    return Delivery::Stalled;
                }
            }
        }
        tracing::warn!(control = %out.control, attempt, "the laboratory did not answer in time");
    }
    // after one resend: no more on this connection
    *conn = None;
    Delivery::Stalled
}

/// The order after the laboratory's answer: a note (accepted), or `on-hold` with the
/// reason and a task for the clinician who ordered it (refused).
pub async fn follow(repo: &Repository, out: &Outgoing, code: &str, text: &str) -> Result<(), hale_repository::Error> {
    let Some(order) = read(repo, &format!("ServiceRequest/{}", out.order)).await else { return Ok(()) };
    if order["note"]
        .as_array()
        .is_some_and(|n| n.iter().any(|n| n["text"].as_str().is_some_and(|t| t.contains(&out.control))))
    {
        // answered before a restart: already followed
        return Ok(());
    }
    let version = order["meta"]["versionId"].as_str().unwrap_or("1").to_string();
    let mut body = order.clone();
    if let Some(o) = body.as_object_mut() {
        o.remove("meta");
    }
    let accepted = matches!(code, "AA" | "CA");
    let now = hale_repository::Instant::now().to_fhir();
    let mut notes = body["note"].as_array().cloned().unwrap_or_default();
    let mut entries = Vec::new();
    if accepted {
        notes.push(
            json!({"time": now, "text": format!("Received by the laboratory ({code}, message {}).", out.control)}),
        );
    } else {
        let reason = if text.is_empty() { "no reason given".to_string() } else { text.to_string() };
        notes.push(json!({"time": now, "text": format!("Refused by the laboratory ({code}, message {}): {reason}", out.control)}));
        body["status"] = json!("on-hold");
        if let Some(requester) = order["requester"]["reference"].as_str().filter(|r| r.starts_with("Practitioner/")) {
            let test = order["code"]["text"].as_str().unwrap_or("a laboratory order");
            entries.push(json!({"resource": {
                "resourceType": "Task",
                "status": "requested",
                "intent": "order",
                "priority": "urgent",
                "code": {"coding": [{"system": "http://hl7.org/fhir/CodeSystem/task-code", "code": "fulfill"}]},
                "description": format!("The laboratory refused the order for {test}: {reason}"),
                "focus": {"reference": format!("ServiceRequest/{}", out.order)},
                "for": order["subject"],
                "authoredOn": now,
                "owner": {"reference": requester},
            }, "request": {"method": "POST", "url": "Task"}}));
        }
    }
    body["note"] = json!(notes);
    entries.insert(
        0,
        json!({"resource": body, "request": {"method": "PUT", "url": format!("ServiceRequest/{}", out.order), "ifMatch": format!("W/\"{version}\"")}}),
    );
    repo.process_bundle(json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})).await?;
    Ok(())
}

/// Sends orders until the task is dropped.
pub async fn run(repo: Repository, cfg: Hl7) {
    let mut since: Option<String> = None;
    let mut conn: Option<(TcpStream, Decoder)> = None;
    let mut backoff = Duration::from_secs(cfg.ack_timeout_secs.max(1));
    let mut resume_at = tokio::time::Instant::now();
    loop {
        // a little before the latest seen: orders committed out of order are not missed
        let look_from = since
            .as_deref()
            .and_then(hale_repository::Instant::parse)
            .map(|i| hale_repository::Instant::from_millis(i.millis() - 5_000).to_fhir());
        match queue_new(&repo, &cfg, look_from.as_deref()).await {
            Ok(latest) => since = latest.or(since),
            Err(e) => tracing::error!(error = %e, "new laboratory orders could not be looked up"),
        }
        if tokio::time::Instant::now() >= resume_at {
            match send_pending(&repo, &cfg, &mut conn).await {
                Ok(true) => backoff = Duration::from_secs(cfg.ack_timeout_secs.max(1)),
                Ok(false) => {
                    resume_at = tokio::time::Instant::now() + backoff;
                    tracing::warn!(
                        seconds = backoff.as_secs(),
                        "the laboratory is not answering; waiting before sending again"
                    );
                    backoff = (backoff * 2).min(Duration::from_secs(300));
                }
                Err(e) => tracing::error!(error = %e, "the outbox could not be read"),
            }
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Sends the outbox in order until it is empty (`true`) or the laboratory stalls
/// (`false`).
async fn send_pending(
    repo: &Repository,
    cfg: &Hl7,
    conn: &mut Option<(TcpStream, Decoder)>,
) -> Result<bool, hale_repository::Error> {
    for (key, body) in repo.auth_records(OUTBOX).await? {
        let Ok(mut out) = serde_json::from_value::<Outgoing>(body) else { continue };
        match deliver(conn, cfg, &mut out, repo, &key).await {
            Delivery::Answered { code, text } => {
                tracing::info!(order = %out.order, %code, "the laboratory answered an order");
                follow(repo, &out, &code, &text).await?;
                repo.take_auth_record(OUTBOX, &key).await?;
            }
            Delivery::Stalled => return Ok(false),
        }
    }
    Ok(true)
}
