//! HL7 v2 over a real MLLP socket against the running binary (`hale serve --mllp`):
//! answers, idempotency (a resend storm writes once and gets the first answer back byte
//! for byte), refusals that change nothing, the frame limit, and SIGKILL during a feed
//! with every acknowledged message checked. On PostgreSQL when `HALE_TEST_STORE=postgres`.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use hale_test_support::{BinaryServer, TestDatabase, spawn_binary_env};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A synthetic result message: one report (filler number `filler`) of three analytes
/// for the patient `mrn`, in original acknowledgement mode.
pub fn oru(control: &str, mrn: &str, filler: &str) -> String {
    format!(
        "MSH|^~\\&|LABSYS|NORTHLAB|HALE|CLINIC|20261201083000||ORU^R01^ORU_R01|{control}|P|2.5.1\r\
         PID|1||{mrn}^^^NORTHLAB&2.16.840.1.113883.3.9999&ISO^MR||Tester^Pat||19800101|F\r\
         OBR|1||{filler}^NORTHLAB|24323-8^Comprehensive metabolic panel^LN|||20261201080000|||||||||||||||20261201083000|||F\r\
         OBX|1|NM|2823-3^Potassium^LN||4.1|mmol/L^^UCUM|3.5-5.1|N|||F\r\
         OBX|2|NM|2951-2^Sodium^LN||140|mmol/L^^UCUM|135-145|N|||F\r\
         OBX|3|NM|2345-7^Glucose^LN||98|mg/dL^^UCUM|70-99|N|||F\r"
    )
}

/// Sends one framed message and reads the framed answer (`None`: the connection ended
/// first, or nothing came within 20 s).
pub async fn exchange(stream: &mut TcpStream, message: &[u8]) -> Option<Vec<u8>> {
    let mut framed = vec![0x0b];
    framed.extend_from_slice(message);
    framed.extend_from_slice(&[0x1c, 0x0d]);
    stream.write_all(&framed).await.ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
            let start = buf.iter().position(|b| *b == 0x0b)?;
            return Some(buf[start + 1..end].to_vec());
        }
        let n = tokio::time::timeout(Duration::from_secs(20), stream.read(&mut chunk)).await.ok()?.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).replace('\r', "\n")
}

/// MSA-1 and MSA-2 of an answer.
fn msa(ack: &[u8]) -> (String, String) {
    let t = String::from_utf8_lossy(ack);
    let line = t.split('\r').find(|l| l.starts_with("MSA|")).unwrap_or_default();
    let mut f = line.split('|').skip(1);
    (f.next().unwrap_or_default().to_string(), f.next().unwrap_or_default().to_string())
}

struct Node {
    server: BinaryServer,
    mllp: String,
}

async fn start(dir: &Path, db: Option<&TestDatabase>, env: &[(&str, &str)]) -> Node {
    let exe = Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut args = vec![
        "serve".to_string(),
        "--data-dir".to_string(),
        dir.display().to_string(),
        "--mllp".to_string(),
        "127.0.0.1:0".to_string(),
    ];
    if let Some(db) = db {
        args.extend(["--database".to_string(), db.url.clone()]);
    }
    let server = spawn_binary_env(exe, &args, env).await;
    let mllp = server
        .banner
        .iter()
        .find_map(|l| l.strip_prefix("Hale MLLP listening on "))
        .expect("the MLLP address is printed")
        .trim()
        .to_string();
    Node { server, mllp }
}

async fn database() -> Option<TestDatabase> {
    if hale_test_support::store_is_postgres() { Some(TestDatabase::create().await) } else { None }
}

async fn get(node: &Node, path: &str) -> Value {
    let r = node.server.client.get(format!("{}/fhir/{path}", node.server.base)).send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

async fn total(node: &Node, query: &str) -> u64 {
    get(node, &format!("{query}&_summary=count")).await["total"].as_u64().unwrap_or(u64::MAX)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mllp_results_are_stored_once_however_often_they_are_sent() {
    let dir = tempfile::tempdir().unwrap();
    let db = database().await;
    let node = start(dir.path(), db.as_ref(), &[("HALE_HL7__MAX_FRAME_BYTES", "65536")]).await;
    let mut c = TcpStream::connect(&node.mllp).await.unwrap();

    // a result: AA echoing the control id, after it is stored
    let msg = oru("CTRL-1", "MRN-1", "FIL-1");
    let first = exchange(&mut c, msg.as_bytes()).await.expect("an answer");
    assert_eq!(msa(&first), ("AA".into(), "CTRL-1".into()), "{}", text(&first));
    assert!(text(&first).starts_with("MSH|^~\\&|HALE|CLINIC|LABSYS|NORTHLAB|"), "{}", text(&first));
    assert_eq!(total(&node, "DiagnosticReport?identifier=FIL-1").await, 1);
    let report = get(&node, "DiagnosticReport?identifier=FIL-1").await;
    let report_id = report["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let patient = report["entry"][0]["resource"]["subject"]["reference"].as_str().unwrap().to_string();
    assert_eq!(total(&node, &format!("Observation?subject={patient}")).await, 3);
    // the sending system and the message named for what it wrote
    let prov = get(&node, &format!("Provenance?target=DiagnosticReport/{report_id}")).await;
    assert_eq!(prov["entry"].as_array().map(Vec::len), Some(1), "{prov}");
    let p = &prov["entry"][0]["resource"];
    assert_eq!(p["entity"][0]["what"]["identifier"]["value"], "LABSYS|NORTHLAB|CTRL-1", "{p}");
    assert_eq!(p["agent"][0]["who"]["identifier"]["value"], "LABSYS", "{p}");

    // a resend storm: 100 more times, on four connections at once; one result, and the
    // first answer every time, byte for byte
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (addr, msg) = (node.mllp.clone(), msg.clone());
        tasks.push(tokio::spawn(async move {
            let mut c = TcpStream::connect(&addr).await.unwrap();
            let mut answers = Vec::new();
            for _ in 0..25 {
                answers.push(exchange(&mut c, msg.as_bytes()).await.expect("an answer"));
            }
            answers
        }));
    }
    for t in tasks {
        for a in t.await.unwrap() {
            assert_eq!(a, first, "a resend gets the first answer: {}", text(&a));
        }
    }
    assert_eq!(total(&node, "DiagnosticReport?identifier=FIL-1").await, 1);
    assert_eq!(total(&node, &format!("Observation?subject={patient}")).await, 3);

    // refusals, each with where and why, and nothing written
    let before = total(&node, "DiagnosticReport?_lastUpdated=gt2000-01-01").await;
    let adt = "MSH|^~\\&|REG|NORTH|HALE|CLINIC|20261201083000||ORM^O01^ORM_O01|CTRL-ADT|P|2.5.1\rPID|1||MRN-9^^^NORTH^MR||Doe^Jo\r";
    let a = exchange(&mut c, adt.as_bytes()).await.unwrap();
    assert_eq!(msa(&a), ("AR".into(), "CTRL-ADT".into()), "{}", text(&a));
    assert!(text(&a).contains("ERR||MSH^1^9|200^"), "{}", text(&a));
    let no_id = oru("", "MRN-2", "FIL-2");
    let a = exchange(&mut c, no_id.as_bytes()).await.unwrap();
    assert_eq!(msa(&a).0, "AR", "{}", text(&a));
    assert!(text(&a).contains("ERR||MSH-10|") && text(&a).contains("control id"), "{}", text(&a));
    let a = exchange(&mut c, b"hello, this is not HL7").await.unwrap();
    assert_eq!(msa(&a).0, "AR", "{}", text(&a));
    assert!(text(&a).contains("|100^"), "{}", text(&a));
    let v3 = oru("CTRL-V", "MRN-3", "FIL-3").replace("|CTRL-V|P|2.5.1", "|CTRL-V|P|3.0");
    let a = exchange(&mut c, v3.as_bytes()).await.unwrap();
    assert_eq!(msa(&a), ("AR".into(), "CTRL-V".into()), "{}", text(&a));
    assert!(text(&a).contains("MSH^1^12|203^"), "{}", text(&a));
    let wrong_processing = oru("CTRL-X", "MRN-3", "FIL-3").replace("|CTRL-X|P|", "|CTRL-X|Q|");
    let a = exchange(&mut c, wrong_processing.as_bytes()).await.unwrap();
    assert_eq!(msa(&a), ("AR".into(), "CTRL-X".into()), "{}", text(&a));
    assert!(text(&a).contains("MSH^1^11|202^"), "{}", text(&a));
    // beyond the frame limit: AR to its header, and the connection goes on
    let mut big = oru("CTRL-BIG", "MRN-4", "FIL-4");
    for i in 0..2000 {
        big.push_str(&format!("NTE|{i}||padding padding padding padding\r"));
    }
    assert!(big.len() > 65536);
    let a = exchange(&mut c, big.as_bytes()).await.unwrap();
    assert_eq!(msa(&a), ("AR".into(), "CTRL-BIG".into()), "{}", text(&a));
    assert!(text(&a).contains("larger than the 65536 bytes"), "{}", text(&a));
    assert_eq!(total(&node, "DiagnosticReport?_lastUpdated=gt2000-01-01").await, before, "refusals write nothing");
    assert_eq!(total(&node, "DiagnosticReport?identifier=FIL-4").await, 0);
    let a = exchange(&mut c, oru("CTRL-5", "MRN-5", "FIL-5").as_bytes()).await.unwrap();
    assert_eq!(msa(&a), ("AA".into(), "CTRL-5".into()), "{}", text(&a));

    // the same control id from another sending application is another message
    let other = oru("CTRL-1", "MRN-6", "FIL-6").replace("|LABSYS|NORTHLAB|", "|OTHERLAB|SOUTH|");
    let a = exchange(&mut c, other.as_bytes()).await.unwrap();
    assert_eq!(msa(&a), ("AA".into(), "CTRL-1".into()), "{}", text(&a));
    assert_eq!(total(&node, "DiagnosticReport?identifier=FIL-6").await, 1);

    // enhanced mode (MSH-15 AL): a commit acknowledgement
    if let Some(data) = hale_test_support::shared_data("hl7v2") {
        let bytes = std::fs::read(data.join("v2-to-fhir/ORU_R01.hl7")).unwrap();
        let a = exchange(&mut c, &bytes).await.unwrap();
        assert_eq!(msa(&a), ("CA".into(), "20251014154001-425".into()), "{}", text(&a));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_during_an_mllp_feed_loses_no_acknowledged_message() {
    let cycles: usize = std::env::var("HALE_CRASH_CYCLES").ok().and_then(|c| c.parse().ok()).unwrap_or(6);
    let n = 60 * cycles + 40;
    let messages: Vec<String> =
        (0..n).map(|i| oru(&format!("K{i}"), &format!("KMRN-{}", i % 7), &format!("KFIL-{i}"))).collect();
    let dir = tempfile::tempdir().unwrap();
    let db = database().await;
    let mut acks: HashMap<usize, Vec<u8>> = HashMap::new();
    let mut next = 0;
    let mut seed: u64 = std::env::var("HALE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7);
    eprintln!("HALE_CRASH_SEED={seed}");
    for cycle in 0..cycles {
        let mut node = start(dir.path(), db.as_ref(), &[]).await;
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let after = Duration::from_millis(100 + (seed >> 33) % 500);
        let addr = node.mllp.clone();
        let feed = messages.clone();
        let sender = tokio::spawn(async move {
            let mut got = Vec::new();
            let Ok(mut c) = TcpStream::connect(&addr).await else { return (got, next) };
            let mut i = next;
            while i < feed.len() {
                match exchange(&mut c, feed[i].as_bytes()).await {
                    Some(a) => {
                        got.push((i, a));
                        i += 1;
                    }
                    // killed: this one's fate is unknown, so it is sent again
                    None => break,
                }
            }
            (got, i)
        });
        tokio::time::sleep(after).await;
        node.server.child.start_kill().expect("SIGKILL");
        node.server.child.wait().await.unwrap();
        let (got, stopped) = sender.await.unwrap();
        for (i, a) in got {
            assert_eq!(msa(&a), ("AA".into(), format!("K{i}")), "cycle {cycle}: {}", text(&a));
            acks.insert(i, a);
        }
        next = stopped;
        eprintln!("cycle {cycle}: killed after {after:?}; {} acknowledged so far", acks.len());
    }
    // a last start: the rest of the feed, then every acknowledged message checked
    let node = start(dir.path(), db.as_ref(), &[]).await;
    let mut c = TcpStream::connect(&node.mllp).await.unwrap();
    for (i, m) in messages.iter().enumerate().skip(next) {
        let a = exchange(&mut c, m.as_bytes()).await.unwrap();
        assert_eq!(msa(&a), ("AA".into(), format!("K{i}")), "{}", text(&a));
        acks.insert(i, a);
    }
    assert!(acks.len() == n, "{} of {n} acknowledged", acks.len());
    // each report exactly once: none lost, none doubled by a resend after a crash
    let mut seen = HashSet::new();
    let mut page = get(&node, "DiagnosticReport?_count=500&_elements=identifier").await;
    loop {
        for e in page["entry"].as_array().cloned().unwrap_or_default() {
            let id = e["resource"]["identifier"]
                .as_array()
                .and_then(|ids| ids.iter().find_map(|i| i["value"].as_str().filter(|v| v.starts_with("KFIL-"))))
                .unwrap_or_default()
                .to_string();
            assert!(seen.insert(id.clone()), "{id} stored twice");
        }
        let next = page["link"]
            .as_array()
            .and_then(|l| l.iter().find(|l| l["relation"] == "next"))
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
        match next {
            Some(u) => {
                let r = node.server.client.get(u).send().await.unwrap();
                page = r.json().await.unwrap();
            }
            None => break,
        }
    }
    let expected: HashSet<String> = (0..n).map(|i| format!("KFIL-{i}")).collect();
    assert_eq!(seen, expected, "every acknowledged report is there, once");
    // an acknowledged message sent again after the crashes: its first answer, byte for byte
    for i in [0, n / 3, n / 2] {
        let again = exchange(&mut c, messages[i].as_bytes()).await.unwrap();
        assert_eq!(again, acks[&i], "message {i}");
    }
}

#[tokio::test]
async fn refused_messages_are_listed_and_replayed_into_the_record() {
    use hale_server::hl7::{self, Filter, Kept};
    let server = hale_test_support::TestServer::spawn().await;
    let repo = server.system_repository("hl7").await;
    let adt = "MSH|^~\\&|REG|NORTH|HALE|CLINIC|20261201083000||ORM^O01^ORM_O01|CTRL-ADT|P|2.5.1\rPID|1||MRN-9^^^NORTH^MR||Doe^Jo\r";
    assert_eq!(hl7::receive(&repo, adt.as_bytes()).await.code, hale_hl7v2::AckCode::Ar);
    let ok = hl7::receive(&repo, oru("CTRL-OK", "MRN-R", "FIL-OK").as_bytes()).await;
    assert_eq!(ok.code, hale_hl7v2::AckCode::Aa, "{}", ok.summary);

    // a result refused by an earlier version of the mapping, in the dead-letter list
    let late = oru("CTRL-R", "MRN-R", "FIL-R");
    let refused = Kept {
        received: "2026-12-01T08:30:00Z".into(),
        sender: "LABSYS".into(),
        facility: "NORTHLAB".into(),
        control: "CTRL-R".into(),
        message_type: "ORU^R01".into(),
        patient: "MRN-R".into(),
        code: "AE".into(),
        summary: "AE: refused by an earlier mapping".into(),
        ack: "MSH|^~\\&|HALE|CLINIC|LABSYS|NORTHLAB|20261201083000||ACK^R01^ACK|X1|P|2.5.1\rMSA|AE|CTRL-R\r".into(),
        message: {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.encode(late.as_bytes())
        },
    };
    repo.put_auth_record(hl7::REFUSED, r#"["LABSYS","NORTHLAB","CTRL-R"]"#, &serde_json::json!(refused), None, None)
        .await
        .unwrap();
    // sent again, it gets its first answer: nothing is written behind the operator's back
    let again = hl7::receive(&repo, late.as_bytes()).await;
    assert_eq!(again.ack, refused.ack);
    assert_eq!(
        hale_test_support::json(server.get("/DiagnosticReport?identifier=FIL-R&_summary=count").await).await["total"],
        0
    );

    let all = hl7::list(&repo, &Filter::default()).await.unwrap();
    assert_eq!(all.len(), 3, "{all:?}");
    assert_eq!(all[0].2.control, "CTRL-R", "oldest first");
    let dead = hl7::list(&repo, &Filter { refused: true, ..Filter::default() }).await.unwrap();
    let controls: Vec<&str> = dead.iter().map(|d| d.2.control.as_str()).collect();
    assert_eq!(controls, ["CTRL-R", "CTRL-ADT"]);
    let ar = hl7::list(&repo, &Filter { code: Some("ar".into()), ..Filter::default() }).await.unwrap();
    assert_eq!(ar.iter().map(|d| d.2.control.as_str()).collect::<Vec<_>>(), ["CTRL-ADT"]);
    let one = hl7::list(&repo, &Filter { control: Some("CTRL-OK".into()), ..Filter::default() }).await.unwrap();
    assert_eq!(one.len(), 1);
    assert_eq!(one[0].2.patient, "MRN-R");
    assert_eq!(
        hl7::list(&repo, &Filter { since: Some("2026-12-02".into()), refused: true, ..Filter::default() })
            .await
            .unwrap()
            .len(),
        1
    );

    // replayed: the result is stored now and leaves the list; the ADT is refused again
    let done = hl7::replay(&repo, &Filter::default()).await.unwrap();
    let outcome: Vec<(String, &str)> = done.iter().map(|(k, s)| (k.control.clone(), s.code.code())).collect();
    assert_eq!(outcome, [("CTRL-R".to_string(), "AA"), ("CTRL-ADT".to_string(), "AR")]);
    let dead = hl7::list(&repo, &Filter { refused: true, ..Filter::default() }).await.unwrap();
    assert_eq!(dead.iter().map(|d| d.2.control.as_str()).collect::<Vec<_>>(), ["CTRL-ADT"]);
    assert_eq!(
        hale_test_support::json(server.get("/DiagnosticReport?identifier=FIL-R&_summary=count").await).await["total"],
        1
    );
    // replayed again: nothing written twice
    hl7::replay(&repo, &Filter::default()).await.unwrap();
    assert_eq!(
        hale_test_support::json(server.get("/DiagnosticReport?identifier=FIL-R&_summary=count").await).await["total"],
        1
    );
    let resend = hl7::receive(&repo, late.as_bytes()).await;
    assert_eq!(resend.code, hale_hl7v2::AckCode::Aa, "{}", resend.summary);

    // another message under a control id already used: refused out loud, never taken for
    // a resend, and a replay cannot store it either
    let reused = oru("CTRL-R", "MRN-R", "FIL-OTHER");
    let sent = hl7::receive(&repo, reused.as_bytes()).await;
    assert_eq!(sent.code, hale_hl7v2::AckCode::Ar, "{}", sent.summary);
    assert!(sent.ack.contains("ERR||MSH^1^10|205^"), "{}", sent.ack);
    assert!(sent.summary.contains("already used by another message"), "{}", sent.summary);
    let done = hl7::replay(&repo, &Filter { control: Some("CTRL-R".into()), ..Filter::default() }).await.unwrap();
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].1.code, hale_hl7v2::AckCode::Ar, "{}", done[0].1.summary);
    assert_eq!(
        hale_test_support::json(server.get("/DiagnosticReport?identifier=FIL-OTHER&_summary=count").await).await["total"],
        0
    );
    let dead =
        hl7::list(&repo, &Filter { refused: true, control: Some("CTRL-R".into()), ..Filter::default() }).await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
}

/// A synthetic ADT message: `event` for patient `mrn` (family `family`), visit `visit`
/// (none when empty) in bed `bed` of ward W1, attended by practitioner 123.
pub fn adt(event: &str, control: &str, mrn: &str, family: &str, visit: &str, bed: &str) -> String {
    let mut pv1 = vec![""; 46];
    pv1[0] = "PV1";
    pv1[1] = "1";
    pv1[2] = "I";
    let loc = format!("W1^10^{bed}^NORTH HOSP");
    pv1[3] = &loc;
    pv1[7] = "123^Attend^Ann^^^Dr^^^^^^^NPI";
    let v = format!("{visit}^^^NORTH&1.2.3&ISO^VN");
    if !visit.is_empty() {
        pv1[19] = &v;
    }
    pv1[44] = "20261201080000";
    if event == "A03" {
        pv1[45] = "20261203100000";
    }
    format!(
        "MSH|^~\\&|REG|NORTH|HALE|CLINIC|20261201083000||ADT^{event}|{control}|P|2.5.1\r\
         EVN|{event}|20261201083000\r\
         PID|1||{mrn}^^^NORTH&1.2.3&ISO^MR||{family}^Jo||19700101|F|||1 Elm St^^Springfield^IL^62701\r\
         {}\r",
        pv1.join("|")
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn adt_keeps_the_patient_and_the_visit_by_their_identifiers_and_merges() {
    let dir = tempfile::tempdir().unwrap();
    let db = database().await;
    let node = start(dir.path(), db.as_ref(), &[]).await;
    let mut c = TcpStream::connect(&node.mllp).await.unwrap();
    let mut send = async |m: String| {
        let a = exchange(&mut c, m.as_bytes()).await.expect("an answer");
        (msa(&a).0, text(&a))
    };
    let enc =
        async |visit: &str| get(&node, &format!("Encounter?identifier={visit}")).await["entry"][0]["resource"].clone();

    // admitted: the patient, the visit, its bed and its doctor
    let (code, a) = send(adt("A01", "A-1", "MRN-A", "Ames", "V-1", "1")).await;
    assert_eq!(code, "AA", "{a}");
    let p = get(&node, "Patient?identifier=MRN-A").await;
    assert_eq!(p["entry"].as_array().map(Vec::len), Some(1), "{p}");
    let pid = p["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
    let e = enc("V-1").await;
    assert_eq!(e["status"], "in-progress", "{e}");
    assert_eq!(e["class"]["code"], "IMP");
    assert_eq!(e["subject"]["reference"], format!("Patient/{pid}"));
    assert!(e["period"]["start"].as_str().unwrap().starts_with("2026-12-01"));
    assert!(e["participant"][0]["individual"]["reference"].as_str().unwrap().starts_with("Practitioner/"), "{e}");
    assert!(e["location"][0]["location"]["reference"].as_str().unwrap().starts_with("Location/"), "{e}");

    // a second visit: the same doctor, not a second Practitioner
    assert_eq!(send(adt("A01", "A-2", "MRN-A", "Ames", "V-2", "2")).await.0, "AA");
    assert_eq!(total(&node, "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|123").await, 1);
    assert_eq!(total(&node, &format!("Encounter?subject=Patient/{pid}")).await, 2);

    // the chart's own facts survive a demographics update
    let mut chart = get(&node, &format!("Patient/{pid}")).await;
    chart["generalPractitioner"] = serde_json::json!([{"display": "Dr Own"}]);
    let r = node
        .server
        .client
        .put(format!("{}/fhir/Patient/{pid}", node.server.base))
        .header("content-type", "application/fhir+json")
        .body(chart.to_string())
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert_eq!(send(adt("A08", "A-3", "MRN-A", "Ames-Baker", "V-1", "1")).await.0, "AA");
    let after = get(&node, &format!("Patient/{pid}")).await;
    assert_eq!(after["name"][0]["family"], "Ames-Baker");
    assert_eq!(after["generalPractitioner"][0]["display"], "Dr Own", "{after}");

    // transfer, discharge, cancelled discharge; a cancelled admission
    assert_eq!(send(adt("A02", "A-4", "MRN-A", "Ames-Baker", "V-1", "7")).await.0, "AA");
    let e = enc("V-1").await;
    assert_eq!(e["location"].as_array().map(Vec::len), Some(2), "{e}");
    assert_eq!(e["location"][0]["status"], "completed");
    assert_eq!(e["location"][1]["status"], "active");
    let (code, a03) = send(adt("A03", "A-5", "MRN-A", "Ames-Baker", "V-1", "7")).await;
    assert_eq!(code, "AA");
    let e = enc("V-1").await;
    assert_eq!(e["status"], "finished");
    assert!(e["period"]["end"].as_str().unwrap().starts_with("2026-12-03"), "{e}");
    assert_eq!(send(adt("A13", "A-6", "MRN-A", "Ames-Baker", "V-1", "7")).await.0, "AA");
    let e = enc("V-1").await;
    assert_eq!(e["status"], "in-progress");
    assert!(e["period"].get("end").is_none(), "{e}");
    // the discharge sent again: its first answer, and the visit stays open
    assert_eq!(send(adt("A03", "A-5", "MRN-A", "Ames-Baker", "V-1", "7")).await.1, a03);
    assert_eq!(enc("V-1").await["status"], "in-progress");
    assert_eq!(send(adt("A11", "A-7", "MRN-A", "Ames-Baker", "V-2", "2")).await.0, "AA");
    assert_eq!(enc("V-2").await["status"], "cancelled");

    // another patient's visit number: refused, nothing changed
    let (code, a) = send(adt("A01", "A-8", "MRN-B", "Burns", "V-1", "3")).await;
    assert_eq!(code, "AE", "{a}");
    assert!(a.contains("PV1^1^19") && a.contains("another patient"), "{a}");
    assert_eq!(total(&node, "Patient?identifier=MRN-B").await, 0);

    // a merge: MRN-B (registered) into MRN-A
    assert_eq!(send(adt("A04", "A-9", "MRN-B", "Burns", "V-9", "4")).await.0, "AA");
    let b = get(&node, "Patient?identifier=MRN-B").await["entry"][0]["resource"].clone();
    let bid = b["id"].as_str().unwrap().to_string();
    let a40 = |control: &str, survivor: &str, prior: &str| {
        format!(
            "MSH|^~\\&|REG|NORTH|HALE|CLINIC|20261201083000||ADT^A40^ADT_A39|{control}|P|2.5.1\rEVN|A40|20261201083000\rPID|1||{survivor}^^^NORTH&1.2.3&ISO^MR||Ames-Baker^Jo\rMRG|{prior}^^^NORTH&1.2.3&ISO^MR\r"
        )
    };
    let (code, a) = send(a40("A-10", "MRN-A", "MRN-A")).await;
    assert_eq!(code, "AE", "{a}");
    assert!(a.contains("MRG^1^1") && a.contains("itself"), "{a}");
    let (code, a) = send(a40("A-11", "MRN-A", "MRN-NOBODY")).await;
    assert_eq!(code, "AE", "{a}");
    assert!(a.contains("|204^"), "{a}");
    let (code, a) = send(a40("A-12", "MRN-A", "MRN-B")).await;
    assert_eq!(code, "AA", "{a}");
    let b = get(&node, &format!("Patient/{bid}")).await;
    assert_eq!(b["active"], false);
    assert_eq!(b["link"][0]["type"], "replaced-by");
    assert_eq!(b["link"][0]["other"]["reference"], format!("Patient/{pid}"));
    let a = get(&node, &format!("Patient/{pid}")).await;
    assert_eq!(a["link"][0]["type"], "replaces");
    assert_eq!(a["link"][0]["other"]["reference"], format!("Patient/{bid}"));
    assert_eq!(a["generalPractitioner"][0]["display"], "Dr Own", "the survivor's record intact");
    assert_eq!(total(&node, &format!("Encounter?subject=Patient/{pid}")).await, 2);

    // the corpus's admissions: accepted, each saying what it did
    if let Some(data) = hale_test_support::shared_data("hl7v2") {
        for f in [
            "v2-to-fhir/ADT_A01.hl7",
            "cdc-trusted-intermediary/MN_005_MN_ADT_A01.hl7",
            "cdc-trusted-intermediary/Other_001_ADT_A01.hl7",
        ] {
            let bytes = std::fs::read(data.join(f)).unwrap();
            let a = exchange(&mut c, &bytes).await.unwrap();
            assert!(matches!(msa(&a).0.as_str(), "AA" | "CA"), "{f}: {}", text(&a));
        }
    }
}

/// What the fake laboratory saw: (MSH-10, ORC-2's placer number, the whole message).
type Seen = (String, String, String);

/// A laboratory order as the clinician application places it.
fn lab_order(patient: &str, practitioner: &str, placer: &str, loinc: &str, name: &str) -> Value {
    serde_json::json!({
        "resourceType": "ServiceRequest", "status": "active", "intent": "order",
        "category": [{"coding": [{"system": "http://snomed.info/sct", "code": "108252007"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": loinc, "display": name}], "text": name},
        "subject": {"reference": format!("Patient/{patient}")},
        "requester": {"reference": format!("Practitioner/{practitioner}")},
        "authoredOn": "2026-12-07T09:00:00Z",
        "identifier": [{"system": "urn:hale:placer-order", "value": placer}]
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lab_orders_go_out_in_order_once_each_and_follow_the_answer() {
    use tokio::net::TcpListener;
    // the laboratory: a wrong ACK then silence for the first message (so it is sent once
    // more), AR for the second, AA for the rest; silence for everything after "L-STALL"
    let lab = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lab_addr = lab.local_addr().unwrap().to_string();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Seen)>();
    tokio::spawn(async move {
        let mut conn_no = 0;
        loop {
            let Ok((mut s, _)) = lab.accept().await else { return };
            conn_no += 1;
            let tx = tx.clone();
            let mut buf: Vec<u8> = Vec::new();
            let mut n = 0;
            let mut chunk = [0u8; 8192];
            let mut stalled = false;
            while let Ok(got) = s.read(&mut chunk).await {
                if got == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..got]);
                while let Some(end) = buf.windows(2).position(|w| w == [0x1c, 0x0d]) {
                    let start = buf.iter().position(|b| *b == 0x0b).unwrap_or(0);
                    let msg = String::from_utf8_lossy(&buf[start + 1..end]).to_string();
                    buf.drain(..end + 2);
                    let m = hale_hl7v2::Message::parse(msg.as_bytes()).unwrap();
                    let (control, placer) = (m.control_id(), m.get("ORC-2.1"));
                    n += 1;
                    let _ = tx.send((conn_no, (control.clone(), placer.clone(), msg)));
                    let reply = |code: &str, to: &str, err: &str| {
                        let mut a =
                            format!("MSH|^~\\&|LAB||HALE||20261207||ACK^O01^ACK|L{n}|P|2.5.1\rMSA|{code}|{to}\r");
                        if !err.is_empty() {
                            a.push_str(&format!("ERR||OBR^1^4|103^Table value not found^HL70357|E||||{err}\r"));
                        }
                        let mut f = vec![0x0b];
                        f.extend_from_slice(a.as_bytes());
                        f.extend_from_slice(&[0x1c, 0x0d]);
                        f
                    };
                    if placer == "L-STALL" {
                        stalled = true;
                    }
                    let answer = match placer.as_str() {
                        _ if stalled => None,
                        "L-1" if n == 1 => Some(reply("AA", "SOMEONE-ELSE", "")),
                        "L-1" if n == 2 => Some(reply("AA", &control, "")),
                        "L-2" => Some(reply("AR", &control, "specimen type not supported")),
                        _ => Some(reply("AA", &control, "")),
                    };
                    if let Some(a) = answer {
                        s.write_all(&a).await.unwrap();
                    }
                }
            }
        }
    });

    let dir = tempfile::tempdir().unwrap();
    let db = database().await;
    let node = start(
        dir.path(),
        db.as_ref(),
        &[("HALE_HL7__ORDERS_TO", lab_addr.as_str()), ("HALE_HL7__ACK_TIMEOUT_SECS", "1")],
    )
    .await;
    let post = async |ty: &str, body: Value| -> String {
        let r = node
            .server
            .client
            .post(format!("{}/fhir/{ty}", node.server.base))
            .header("content-type", "application/fhir+json")
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
        r.json::<Value>().await.unwrap()["id"].as_str().unwrap().to_string()
    };
    let doc = post("Practitioner", serde_json::json!({"resourceType": "Practitioner", "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}], "name": [{"family": "Order", "given": ["Olga"]}]})).await;
    let pat = post("Patient", serde_json::json!({"resourceType": "Patient", "identifier": [{"system": "urn:oid:1.2.3", "value": "MRN-O"}], "name": [{"family": "Orr", "given": ["Pat"]}], "birthDate": "1970-05-06", "gender": "female"})).await;
    let sr1 = post("ServiceRequest", lab_order(&pat, &doc, "L-1", "4548-4", "Hemoglobin A1c")).await;
    let sr2 = post("ServiceRequest", lab_order(&pat, &doc, "L-2", "2093-3", "Cholesterol")).await;
    let sr3 = post("ServiceRequest", lab_order(&pat, &doc, "L-3", "2160-0", "Creatinine")).await;

    let mut seen: Vec<(usize, Seen)> = Vec::new();
    while seen.len() < 4 {
        let got =
            tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.expect("the laboratory got the orders");
        seen.push(got.unwrap());
    }
    let placers: Vec<&str> = seen.iter().map(|s| s.1.1.as_str()).collect();
    assert_eq!(placers, ["L-1", "L-1", "L-2", "L-3"], "in order, the first once more after a wrong ACK");
    assert_eq!(seen[0].1.0, seen[1].1.0, "sent again with the same MSH-10");
    assert_eq!(seen[0].0, seen[1].0, "on the same connection");
    let m = hale_hl7v2::Message::parse(seen[2].1.2.as_bytes()).unwrap();
    assert_eq!(m.message_type().0, "ORM");
    assert_eq!(m.get("ORC-1"), "NW");
    assert_eq!(m.get("PID-3.1"), "MRN-O");
    assert_eq!(m.get("PID-5.1"), "Orr");
    assert_eq!(m.get("OBR-4.1"), "2093-3");
    assert_eq!(m.get("OBR-16.1"), "1234567893");

    // the orders follow the answers
    let wait_for = async |path: String, ok: &dyn Fn(&Value) -> bool| -> Value {
        for _ in 0..100 {
            let v = get(&node, &path).await;
            if ok(&v) {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{path} never became as expected: {}", get(&node, &path).await);
    };
    let has_note = |v: &Value, text: &str| {
        v["note"].as_array().is_some_and(|n| n.iter().any(|n| n["text"].as_str().is_some_and(|t| t.contains(text))))
    };
    let o1 = wait_for(format!("ServiceRequest/{sr1}"), &|v| has_note(v, "Received by the laboratory")).await;
    assert_eq!(o1["status"], "active");
    let o2 = wait_for(format!("ServiceRequest/{sr2}"), &|v| v["status"] == "on-hold").await;
    assert!(has_note(&o2, "specimen type not supported"), "{o2}");
    wait_for(format!("ServiceRequest/{sr3}"), &|v| has_note(v, "Received by the laboratory")).await;
    let tasks = get(&node, &format!("Task?focus=ServiceRequest/{sr2}&owner=Practitioner/{doc}")).await;
    assert_eq!(tasks["entry"].as_array().map(Vec::len), Some(1), "{tasks}");
    assert!(tasks["entry"][0]["resource"]["description"].as_str().unwrap().contains("specimen type not supported"));

    // a laboratory that stops answering gets the message once more, not a flood
    post("ServiceRequest", lab_order(&pat, &doc, "L-STALL", "2345-7", "Glucose")).await;
    let first = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    assert_eq!(first.1.1, "L-STALL");
    let again = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await.unwrap().unwrap();
    assert_eq!((again.0, again.1.0.as_str()), (first.0, first.1.0.as_str()), "once more, same connection and MSH-10");
    // nothing more on that connection; the next try comes on a new one, after a pause
    let later = tokio::time::timeout(Duration::from_millis(1500), rx.recv()).await;
    if let Ok(Some(l)) = later {
        assert_ne!(l.0, first.0, "not a third time on the stalled connection");
    }
    // no order was sent twice but the one that was not answered in time
    assert_eq!(seen.iter().filter(|s| s.1.1 == "L-3").count(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_synthetic_feed_is_received_whole() {
    use hale_server::hl7;
    let server = hale_test_support::TestServer::spawn().await;
    let repo = server.system_repository("hl7").await;
    let cfg = hale_synth::Config { patients: 6, years: 4, ..hale_synth::Config::default() };
    let feed = hale_server::synth::hl7_feed(&cfg);
    let (mut adt, mut oru, mut obx) = (0u64, 0u64, 0u64);
    for (name, msg) in &feed {
        let sent = hl7::receive(&repo, msg.as_bytes()).await;
        assert_eq!(sent.code, hale_hl7v2::AckCode::Aa, "{name}: {}", sent.summary);
        assert!(!sent.summary.contains("named in ERR"), "{name}: {}", sent.summary);
        if name.ends_with("-adt.hl7") {
            adt += 1;
        } else {
            oru += 1;
            obx += msg.matches("\rOBX|").count() as u64;
        }
    }
    assert_eq!(adt, 6);
    assert!(oru >= 6, "{oru} lab reports");
    let count = async |q: &str| {
        hale_test_support::json(server.get(&format!("/{q}?_summary=count")).await).await["total"].as_u64()
    };
    assert_eq!(count("Patient").await, Some(6), "one patient each, ADT and ORU matched by PID-3");
    assert_eq!(count("Encounter").await, Some(6));
    assert_eq!(count("DiagnosticReport").await, Some(oru));
    assert_eq!(count("Observation").await, Some(obx));
    // the whole feed again: nothing new
    for (_, msg) in &feed {
        hl7::receive(&repo, msg.as_bytes()).await;
    }
    assert_eq!(count("Observation").await, Some(obx));
}

#[tokio::test(flavor = "multi_thread")]
async fn every_corpus_message_is_stored_or_refused_with_where_and_why() {
    use hale_server::hl7;
    let Some(dir) = hale_test_support::shared_data("hl7v2") else { return };
    let server = hale_test_support::TestServer::spawn().await;
    let repo = server.system_repository("hl7").await;
    let mut files: Vec<std::path::PathBuf> = Vec::new();
    for sub in ["v2-to-fhir", "cdc-trusted-intermediary"] {
        for e in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "hl7") {
                files.push(p);
            }
        }
    }
    files.sort();
    assert!(files.len() >= 130, "{}", files.len());
    let mut codes: HashMap<String, usize> = HashMap::new();
    for f in &files {
        let sent = hl7::receive(&repo, &std::fs::read(f).unwrap()).await;
        *codes.entry(sent.code.code().to_string()).or_default() += 1;
        if !sent.code.accepted() {
            // a refusal says where and why, in the ACK and to the operator
            let err = sent.ack.split('\r').find(|l| l.starts_with("ERR|")).unwrap_or_default().to_string();
            let fields: Vec<&str> = err.split('|').collect();
            assert!(
                fields.len() > 8 && !fields[2].is_empty() && !fields[8].is_empty(),
                "{}: {}",
                f.display(),
                sent.ack
            );
            assert!(sent.summary.len() > 10, "{}", sent.summary);
        }
    }
    eprintln!("corpus answers: {codes:?}");
    assert!(codes.get("AA").copied().unwrap_or(0) + codes.get("CA").copied().unwrap_or(0) >= 30, "{codes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mllp_over_tls_with_the_configured_certificate() {
    use tokio_rustls::rustls;
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("mllp.crt"), dir.path().join("mllp.key"));
    std::fs::write(&cert_path, cert.cert.pem()).unwrap();
    std::fs::write(&key_path, cert.key_pair.serialize_pem()).unwrap();
    let data = tempfile::tempdir().unwrap();
    let db = database().await;
    let (c, k) = (cert_path.display().to_string(), key_path.display().to_string());
    let node =
        start(data.path(), db.as_ref(), &[("HALE_HL7__TLS_CERT", c.as_str()), ("HALE_HL7__TLS_KEY", k.as_str())]).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.cert.der().clone()).unwrap();
    let config =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config));
    let tcp = TcpStream::connect(&node.mllp).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("the TLS handshake");
    let msg = oru("TLS-1", "MRN-T", "FIL-T");
    let mut framed = vec![0x0b];
    framed.extend_from_slice(msg.as_bytes());
    framed.extend_from_slice(&[0x1c, 0x0d]);
    tls.write_all(&framed).await.unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    while !buf.windows(2).any(|w| w == [0x1c, 0x0d]) {
        let n = tokio::time::timeout(Duration::from_secs(20), tls.read(&mut chunk)).await.unwrap().unwrap();
        assert!(n > 0, "the connection ended before the answer");
        buf.extend_from_slice(&chunk[..n]);
    }
    assert!(String::from_utf8_lossy(&buf).contains("MSA|AA|TLS-1"), "{}", text(&buf));
    assert_eq!(total(&node, "DiagnosticReport?identifier=FIL-T").await, 1);
    // plain MLLP to the TLS listener gets no answer and writes nothing
    let mut plain = TcpStream::connect(&node.mllp).await.unwrap();
    assert!(exchange(&mut plain, oru("TLS-2", "MRN-T", "FIL-T2").as_bytes()).await.is_none());
    assert_eq!(total(&node, "DiagnosticReport?identifier=FIL-T2").await, 0);
}
