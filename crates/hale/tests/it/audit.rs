//! The audit trail, against the real binary: every interaction over HTTP leaves an
//! AuditEvent (who, from where, which patient, what, outcome), writes to AuditEvent are
//! refused, and `hale audit verify` detects each kind of tampering and names the first
//! bad entry.

use std::process::Command;

use hale_test_support::spawn_binary;
use serde_json::{Value, json};

fn hale() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hale"));
    c.env_remove("HALE_LISTEN").env_remove("HALE_DATA_DIR").env_remove("HALE_CONFIG").env_remove("HALE_DATABASE_URL");
    c
}

fn verify(dir: &std::path::Path) -> (bool, String) {
    let out = hale().args(["audit", "verify", "--data-dir"]).arg(dir).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// One entry of the SQLite store's audit trail as stored.
#[derive(Debug)]
pub(crate) struct Stored {
    pub seq: i64,
    pub action: String,
    pub agent: String,
    pub outcome: String,
    pub patients: Vec<String>,
    /// The stored (coded) AuditEvent.
    pub body: String,
}

/// Every entry of the SQLite store's audit trail, in sequence order: the rows of
/// `audit_log` and the entries of the segments the chainer wrote reads into.
pub(crate) fn stored_entries(dir: &std::path::Path) -> Vec<Stored> {
    let c = rusqlite::Connection::open(dir.join("hale.db")).unwrap();
    let mut out: Vec<Stored> = {
        let mut s = c.prepare("SELECT seq, action, agent, outcome, body FROM audit_log").unwrap();
        s.query_map([], |r| {
            Ok(Stored {
                seq: r.get(0)?,
                action: r.get(1)?,
                agent: r.get(2)?,
                outcome: r.get(3)?,
                patients: Vec::new(),
                body: r.get(4)?,
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    for e in out.iter_mut() {
        let mut s = c.prepare("SELECT patient FROM audit_patient WHERE seq = ?1 ORDER BY patient").unwrap();
        e.patients = s.query_map([e.seq], |r| r.get(0)).unwrap().map(Result::unwrap).collect();
    }
    let mut s = c.prepare("SELECT first_seq, lines FROM audit_segment").unwrap();
    let segments: Vec<(i64, Vec<u8>)> =
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(Result::unwrap).collect();
    for (first, lines) in segments {
        // a journal line: its columns as JSON, then a tab and the body (or the body in "b")
        for (i, line) in String::from_utf8(lines).unwrap().lines().enumerate() {
            let (head, raw) = match line.split_once('\t') {
                Some((h, b)) => (h, Some(b.to_string())),
                None => (line, None),
            };
            let h: Value = serde_json::from_str(head).unwrap();
            let text = |k: &str| h[k].as_str().unwrap().to_string();
            out.push(Stored {
                seq: first + i as i64,
                action: text("a"),
                agent: text("g"),
                outcome: text("o"),
                patients: h["p"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect(),
                body: raw.unwrap_or_else(|| text("b")),
            });
        }
    }
    out.sort_by_key(|e| e.seq);
    out
}

/// The audit trail's entries: (action, agent, outcome, the AuditEvent).
fn rows(dir: &std::path::Path) -> Vec<(String, String, String, Value)> {
    stored_entries(dir)
        .into_iter()
        .map(|e| {
            let ev = serde_json::from_str(&hale_repository::audit_event_text(&e.body)).unwrap();
            (e.action, e.agent, e.outcome, ev)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_http_interaction_is_audited_and_the_trail_cannot_be_written() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut server = spawn_binary(exe, dir.path()).await;
    let base = server.base.clone();
    let client = server.client.clone();
    let fhir = |p: &str| format!("{base}/fhir{p}");
    let put = client
        .put(fhir("/Patient/aud-1"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType":"Patient","id":"aud-1","name":[{"family":"Audit"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let obs = client
        .post(fhir("/Observation"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"Patient/aud-1"}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(obs.status(), 201);
    assert_eq!(client.get(fhir("/Patient/aud-1")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(fhir("/Observation?subject=Patient/aud-1")).send().await.unwrap().status(), 200);
    assert_eq!(client.get(fhir("/Patient/nobody")).send().await.unwrap().status(), 404);
    let forged = client
        .post(fhir("/AuditEvent"))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType":"AuditEvent","type":{"code":"rest"},"recorded":"2020-01-01T00:00:00Z","agent":[{"requestor":true}],"source":{"observer":{"display":"x"}}}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    // a caller without a token, and one with a forged token, are refused and audited
    let anonymous = reqwest::Client::new();
    let r = anonymous.get(fhir("/Patient?name=Audit")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let r = anonymous.get(fhir("/Patient/aud-1")).bearer_auth("eyJhbGciOiJub25lIn0.e30.").send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
    let _ = server.child.kill().await;

    // killed: the entries of reads are still in the journal beside the database; the
    // next opening of the store (here by `hale audit verify`) moves them into the log
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    assert!(text.contains("audit trail verified: 9 entries"), "{text}");
    let all = rows(dir.path());
    // the first start created the administrator
    assert_eq!((all[0].0.as_str(), all[0].1.as_str()), ("account-create", "system:first-start"), "{all:?}");
    let log = &all[1..];
    let actions: Vec<&str> = log.iter().map(|r| r.0.as_str()).collect();
    assert_eq!(
        actions,
        vec!["update", "create", "read", "search-type", "read", "create", "search-type", "authenticate"],
        "{log:?}"
    );
    for (i, (action, agent, _, ev)) in log.iter().enumerate() {
        let expected = if i < 6 { "client:hale-tests" } else { "anonymous" };
        assert_eq!(agent, expected, "{action}");
        assert_eq!(ev["agent"][0]["network"]["address"], "127.0.0.1", "{action}: {ev}");
        assert_eq!(ev["resourceType"], "AuditEvent");
    }
    assert_eq!((log[6].2.as_str(), log[7].2.as_str()), ("4", "4"), "refusals are failures");
    assert!(log[7].3["outcomeDesc"].as_str().unwrap().contains("malformed"), "{}", log[7].3);
    // the search names its query and the patient whose data it returned
    let search = &log[3].3;
    let entities = search["entity"].as_array().unwrap();
    assert!(entities.iter().any(|e| e["what"]["reference"] == "Patient/aud-1"), "{search}");
    assert!(entities.iter().any(|e| e["description"] == "Observation?subject=Patient/aud-1"), "{search}");
    // the missing read and the refused AuditEvent are failures, with their reason
    assert_eq!(log[4].2, "4");
    assert_eq!(log[4].3["entity"][1]["what"]["reference"], "Patient/nobody");
    assert_eq!(log[5].2, "4");
    assert!(log[5].3["outcomeDesc"].as_str().unwrap().contains("audit trail cannot be changed"));
    // the patient's entries are found by patient
    let n = stored_entries(dir.path()).iter().filter(|e| e.patients.iter().any(|p| p == "aud-1")).count();
    assert_eq!(n, 4, "the update, the create of its Observation, the read and the search");
    let c = rusqlite::Connection::open(dir.path().join("hale.db")).unwrap();
    // nothing deletes or edits an entry through SQL either
    assert!(c.execute("DELETE FROM audit_log", []).is_err());
    assert!(c.execute("UPDATE audit_log SET body = '{}'", []).is_err());
    drop(c);
    assert_eq!(std::fs::read_dir(dir.path().join("hale.db-audit")).unwrap().count(), 0, "the journal was moved");
}

/// On SQLite the entries of reads go to a journal beside the database first. A command
/// that opens the store while the server runs (here `hale audit verify`) must not take
/// the file the server is appending to: every read answered before and after it is in
/// the log once the server is gone.
#[tokio::test(flavor = "multi_thread")]
async fn a_command_beside_a_running_server_loses_no_read_entry() {
    if std::env::var("HALE_TEST_STORE").as_deref() == Ok("postgres") {
        eprintln!("SKIP the read-audit journal: it is the SQLite store's (the PostgreSQL run commits each entry)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut server = spawn_binary(exe, dir.path()).await;
    let client = server.client.clone();
    let url = format!("{}/fhir/Patient/journal-1", server.base);
    let put = client
        .put(&url)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType":"Patient","id":"journal-1"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 201);
    let mut reads = 0;
    for _ in 0..3 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        reads += 1;
    }
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    for _ in 0..4 {
        assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
        reads += 1;
    }
    let _ = server.child.kill().await;
    let _ = server.child.wait().await;
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    let logged = rows(dir.path()).iter().filter(|r| r.0 == "read").count();
    assert_eq!(logged, reads, "every answered read has its entry");
}

/// The reads the running server's chainer moved into a segment are checked entry by
/// entry: an edited entry inside a segment is named.
#[tokio::test(flavor = "multi_thread")]
async fn verify_names_an_edited_entry_inside_a_segment() {
    if hale_test_support::skip_unless_sqlite("verify_names_an_edited_entry_inside_a_segment") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut server = spawn_binary(exe, dir.path()).await;
    let url = format!("{}/fhir/Patient/seg-1", server.base);
    let body = json!({"resourceType":"Patient","id":"seg-1"}).to_string();
    let put = server.client.put(&url).header("content-type", "application/fhir+json").body(body).send().await.unwrap();
    assert_eq!(put.status(), 201);
    for _ in 0..5 {
        assert_eq!(server.client.get(&url).send().await.unwrap().status(), 200);
    }
    // the chainer runs every second
    let segments = || -> i64 {
        let c = rusqlite::Connection::open(dir.path().join("hale.db")).unwrap();
        c.query_row("SELECT COUNT(*) FROM audit_segment", [], |r| r.get(0)).unwrap()
    };
    for _ in 0..50 {
        if segments() > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(segments() > 0, "the chainer wrote the reads into a segment");
    let _ = server.child.kill().await;
    let _ = server.child.wait().await;
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");

    // the third entry of the first segment, edited by an attacker with the file
    let c = rusqlite::Connection::open(dir.path().join("hale.db")).unwrap();
    let (first, lines): (i64, Vec<u8>) = c
        .query_row("SELECT first_pos, lines FROM audit_segment ORDER BY first_pos LIMIT 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let mut text_lines: Vec<String> = String::from_utf8(lines).unwrap().lines().map(str::to_string).collect();
    assert!(text_lines.len() >= 3, "{text_lines:?}");
    assert!(text_lines[2].contains("seg-1"));
    text_lines[2] = text_lines[2].replace("seg-1", "seg-2");
    let edited = text_lines.iter().map(|l| format!("{l}\n")).collect::<String>().into_bytes();
    c.execute_batch("DROP TRIGGER audit_segment_no_update;").unwrap();
    c.execute("UPDATE audit_segment SET lines = ?1 WHERE first_pos = ?2", rusqlite::params![edited, first]).unwrap();
    drop(c);
    let (ok, text) = verify(dir.path());
    assert!(!ok, "an edited entry went unnoticed: {text}");
    assert!(text.contains(&format!("entry {} of the chain", first + 2)), "{text}");
}

/// A store with a verified, checkpointed chain of entries (a synthesized population).
fn chained_store() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let out = hale().args(["synth", "--patients", "3", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (ok, text) = verify(dir.path());
    assert!(ok, "{text}");
    dir
}

/// Runs SQL on the store with its append-only triggers removed, as an attacker with
/// the database file would.
fn tamper(dir: &std::path::Path, sql: &str) {
    let c = rusqlite::Connection::open(dir.join("hale.db")).unwrap();
    c.execute_batch("DROP TRIGGER audit_log_no_update; DROP TRIGGER audit_log_no_delete;").unwrap();
    c.execute_batch(sql).unwrap();
}

#[test]
fn verify_detects_each_kind_of_tampering_and_names_the_first_bad_entry() {
    let cases: [(&str, &str); 5] = [
        ("a flipped byte", "UPDATE audit_log SET body = replace(body, 'Z\"', 'Y\"') WHERE chain_pos = 5"),
        ("a deleted entry", "DELETE FROM audit_log WHERE chain_pos = 7"),
        ("a cut-off tail", "DELETE FROM audit_log WHERE chain_pos > 10"),
        (
            "two entries swapped",
            "UPDATE audit_log SET chain_pos = -1 WHERE chain_pos = 3;
             UPDATE audit_log SET chain_pos = 3 WHERE chain_pos = 4;
             UPDATE audit_log SET chain_pos = 4 WHERE chain_pos = -1;",
        ),
        (
            "an inserted entry",
            "INSERT INTO audit_log (recorded, action, agent, outcome, body, chain_pos, chain_hash)
             SELECT recorded, action, agent, outcome, body, 100000, chain_hash FROM audit_log WHERE chain_pos = 2;
             UPDATE audit_log SET chain_pos = -(chain_pos + 1) WHERE chain_pos >= 2 AND chain_pos < 100000;
             UPDATE audit_log SET chain_pos = -chain_pos WHERE chain_pos < 0;
             UPDATE audit_log SET chain_pos = 2 WHERE chain_pos = 100000;",
        ),
    ];
    let expected = [
        "entry 5 of the chain",
        "entry 7 of the chain is missing",
        "entries were cut off",
        "entry 3 of the chain",
        "entry 2 of the chain",
    ];
    for ((what, sql), want) in cases.iter().zip(expected) {
        let dir = chained_store();
        tamper(dir.path(), sql);
        let (ok, text) = verify(dir.path());
        assert!(!ok, "{what} went unnoticed: {text}");
        assert!(text.contains(want), "{what}: {text}");
        assert_eq!(text.trim().lines().count(), 1, "one line: {text}");
    }
}

#[test]
fn verify_detects_a_rewritten_chain_and_a_forged_checkpoint() {
    // every hash recomputed from entry 2 on: consistent, but not what was signed
    let dir = chained_store();
    let c = rusqlite::Connection::open(dir.path().join("hale.db")).unwrap();
    c.execute_batch("DROP TRIGGER audit_log_no_update;").unwrap();
    c.execute("UPDATE audit_log SET body = replace(body, 'synth', 'sYnth') WHERE chain_pos = 2", []).unwrap();
    let mut prev: Vec<u8> =
        c.query_row("SELECT chain_hash FROM audit_log WHERE chain_pos = 1", [], |r| r.get(0)).unwrap();
    let entries: Vec<(i64, i64, String)> = {
        let mut s =
            c.prepare("SELECT chain_pos, seq, body FROM audit_log WHERE chain_pos >= 2 ORDER BY chain_pos").unwrap();
        s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap().map(Result::unwrap).collect()
    };
    for (pos, seq, body) in entries {
        let h = sha256(&[prev.as_slice(), &pos.to_be_bytes(), &seq.to_be_bytes(), body.as_bytes()].concat());
        c.execute("UPDATE audit_log SET chain_hash = ?1 WHERE chain_pos = ?2", rusqlite::params![h, pos]).unwrap();
        prev = h;
    }
    drop(c);
    let (ok, text) = verify(dir.path());
    assert!(!ok && text.contains("rewritten"), "{text}");

    // a checkpoint line edited by hand fails its signature
    let dir = chained_store();
    let file = dir.path().join("audit/checkpoints.jsonl");
    let cp = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, cp.replacen("\"pos\":", "\"pos\":1", 1)).unwrap();
    let (ok, text) = verify(dir.path());
    assert!(!ok && text.contains("checkpoint file"), "{text}");
}

/// SHA-256, through the same crate the binary uses (via the `sha256sum` tool to keep
/// the test independent of it).
fn sha256(data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut child = Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(data).unwrap();
    let out = child.wait_with_output().unwrap();
    let hex = String::from_utf8(out.stdout).unwrap();
    (0..64).step_by(2).map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap()).collect()
}

/// On PostgreSQL: writers insert unchained entries, the server's chainer links them
/// under its advisory lock, and `hale audit verify` checks the chain there too.
#[tokio::test(flavor = "multi_thread")]
async fn the_chain_is_kept_and_verified_on_postgres() {
    if !hale_test_support::store_is_postgres() {
        eprintln!(
            "SKIP the audit chain on PostgreSQL: set HALE_TEST_STORE=postgres (the PostgreSQL run of .ci/run does)"
        );
        return;
    }
    let db = hale_test_support::TestDatabase::create().await;
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "serve".to_string(),
        "--data-dir".to_string(),
        dir.path().display().to_string(),
        "--database".to_string(),
        db.url.clone(),
    ];
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let mut server = hale_test_support::spawn_binary_with(exe, &args).await;
    let client = server.client.clone();
    for i in 0..20 {
        let r = client
            .put(format!("{}/fhir/Patient/pg-{i}", server.base))
            .header("content-type", "application/fhir+json")
            .body(json!({"resourceType":"Patient","id":format!("pg-{i}")}).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        assert_eq!(client.get(format!("{}/fhir/Patient/pg-{i}", server.base)).send().await.unwrap().status(), 200);
    }
    // the chainer runs every second
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let _ = server.child.kill().await;
    let out =
        hale().args(["audit", "verify", "--data-dir"]).arg(dir.path()).args(["--database", &db.url]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    // the first start's administrator, then a write and a read each
    assert!(text.contains("audit trail verified: 41 entries"), "{text}");
    assert!(!text.contains(", 0 signed checkpoints"), "the server signed checkpoints: {text}");
}
