//! The official R4 examples go through the API and read back semantically identical
//! (server meta aside). The files the server rejects are listed, with the reason, in
//! `r4-examples-rejected.txt`; each is a real invalidity of the example or a documented
//! limitation, and the test fails if the set changes either way.

use std::collections::BTreeMap;
use std::sync::Arc;

use hale_test_support::{TestServer, shared_data};
use serde_json::Value;

fn strip_server_meta(v: &mut Value) {
    if let Some(meta) = v.get_mut("meta").and_then(Value::as_object_mut) {
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
        if meta.is_empty() {
            v.as_object_mut().unwrap().shift_remove("meta");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn official_r4_examples_round_trip() {
    let Some(dir) = shared_data("fhir-r4-examples") else {
        eprintln!("SKIP official_r4_examples_round_trip: ../shared/data/fhir-r4-examples is absent");
        return;
    };
    let s = Arc::new(TestServer::spawn().await);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    // examples that share a type and id go through POST, so concurrent writes never
    // overwrite one another
    let mut seen = std::collections::HashMap::new();
    for path in &files {
        if let Ok(v) = serde_json::from_str::<Value>(&std::fs::read_to_string(path).unwrap()) {
            let key = format!("{}/{}", v["resourceType"].as_str().unwrap_or(""), v["id"].as_str().unwrap_or(""));
            *seen.entry(key).or_insert(0) += 1;
        }
    }
    let shared_ids =
        Arc::new(seen.into_iter().filter(|(_, n)| *n > 1).map(|(k, _)| k).collect::<std::collections::HashSet<_>>());
    let sem = Arc::new(tokio::sync::Semaphore::new(4));
    let mut tasks = Vec::new();
    for path in files {
        let (s, sem, shared_ids) = (s.clone(), sem.clone(), shared_ids.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = sem.acquire().await.unwrap();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            let text = std::fs::read_to_string(&path).unwrap();
            let original: Value = serde_json::from_str(&text).unwrap();
            let ty = original["resourceType"].as_str().unwrap_or("").to_string();
            let id = original["id"].as_str().map(str::to_string).filter(|i| !shared_ids.contains(&format!("{ty}/{i}")));
            let req = match (&id, ty.is_empty()) {
                (_, true) => s.client.post(s.fhir("/Patient")),
                (Some(id), false)
                    if !id.is_empty()
                        && id.len() <= 64
                        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
                {
                    s.client.put(s.fhir(&format!("/{ty}/{id}")))
                }
                _ => s.client.post(s.fhir(&format!("/{ty}"))),
            };
            let r = req.header("content-type", "application/fhir+json").body(text).send().await.unwrap();
            let status = r.status();
            let body: Value = r.json().await.unwrap();
            if ty == "AuditEvent" {
                // the audit trail is Hale's own: no client writes an AuditEvent
                return (
                    name,
                    if status == 403 { Ok(true) } else { Err(format!("{} for an AuditEvent", status.as_u16())) },
                );
            }
            if !status.is_success() {
                let reason = body["issue"][0]["expression"][0].as_str().unwrap_or("").to_string()
                    + ": "
                    + body["issue"][0]["diagnostics"].as_str().unwrap_or("");
                return (name, Err(format!("{} {reason}", status.as_u16())));
            }
            let stored_id = body["id"].as_str().unwrap().to_string();
            let read: Value = s
                .client
                .get(s.fhir(&format!("/{ty}/{stored_id}")))
                .header("accept", "application/fhir+json")
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let mut expected = original.clone();
            strip_server_meta(&mut expected);
            expected["id"] = Value::String(stored_id);
            let mut got = read;
            strip_server_meta(&mut got);
            if got != expected {
                return (name, Err("read back differs".to_string()));
            }
            (name, Ok(false))
        }));
    }
    let mut rejected = BTreeMap::new();
    let (mut accepted, mut audit_refused) = (0, 0);
    for t in tasks {
        match t.await.unwrap() {
            (_, Ok(false)) => accepted += 1,
            (_, Ok(true)) => audit_refused += 1,
            (name, Err(reason)) => {
                rejected.insert(name, reason);
            }
        }
    }
    println!("r4 examples: {accepted} accepted, {} rejected, {audit_refused} AuditEvents refused", rejected.len());
    assert!(audit_refused > 0, "the R4 examples hold AuditEvents, each refused with 403");
    for (name, reason) in &rejected {
        println!("  rejected {name}: {reason}");
    }
    let expected: BTreeMap<String, String> = include_str!("r4-examples-rejected.txt")
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (n, why) = l.split_once('\t').unwrap_or((l, ""));
            (n.to_string(), why.to_string())
        })
        .collect();
    let newly: Vec<&String> = rejected.keys().filter(|k| !expected.contains_key(*k)).collect();
    let no_longer: Vec<&String> = expected.keys().filter(|k| !rejected.contains_key(*k)).collect();
    assert!(newly.is_empty() && no_longer.is_empty(), "newly rejected: {newly:?}; no longer rejected: {no_longer:?}");
    assert!(rejected.values().all(|r| !r.contains("differs")), "a read-back differs");
}
