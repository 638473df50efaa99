//! Nothing a caller sends that may be health information or a secret reaches the log:
//! canary values planted in resources, search parameters, headers, a password and the
//! access token itself are searched for in everything the server logged (at `debug`,
//! more than an operator would run with).

use std::process::Stdio;

use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn the_log_holds_no_health_information_and_no_secret() {
    if hale_test_support::skip_unless_sqlite("the log canary scan") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("hale.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let data = dir.path().join("data");
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_hale"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir", data.to_str().unwrap()])
        .env("HALE_LOG__LEVEL", "debug")
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next_line().await.unwrap().expect("hale printed its address");
        if let Some(url) = line.strip_prefix("Hale listening on ") {
            break url.trim().to_string();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let token = hale_test_support::system_token(&data);
    let client = hale_test_support::client_with_token(&token);
    let fhir = |p: &str| format!("{base}/fhir{p}");
    let canaries = [
        "CanaryFamily7731",
        "CanaryMrn5521",
        "CanaryNote9911",
        "CanaryQuery4410",
        "CanaryHeader3307",
        "CanaryBadDate6602",
        "CanaryPassword8813",
        "CanaryPatch2290",
    ];
    let patient = json!({"resourceType":"Patient","name":[{"family":"CanaryFamily7731"}],
        "identifier":[{"system":"urn:mrn","value":"CanaryMrn5521"}],"text":{"status":"generated","div":"<div xmlns=\"http://www.w3.org/1999/xhtml\">CanaryNote9911</div>"}});
    let r = client
        .post(fhir("/Patient"))
        .header("content-type", "application/fhir+json")
        .header("x-canary", "CanaryHeader3307")
        .body(patient.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.headers()["location"].to_str().unwrap().split('/').rev().nth(2).unwrap().to_string();
    for q in [
        "/Patient?name=CanaryQuery4410",
        "/Patient?identifier=urn:mrn%7CCanaryMrn5521",
        "/Patient?birthdate=CanaryBadDate6602",
    ] {
        let r = client.get(fhir(q)).send().await.unwrap();
        assert!(r.status() == 200 || r.status() == 400, "{q}: {}", r.status());
    }
    // a refused write that names the value, a patch, a bad token, a wrong password
    let bad = json!({"resourceType":"Patient","birthDate":"CanaryBadDate6602"});
    let r = client
        .post(fhir("/Patient"))
        .header("content-type", "application/fhir+json")
        .body(bad.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let patch = json!([{"op":"replace","path":"/name/0/family","value":"CanaryPatch2290"}]);
    let r = client
        .patch(fhir(&format!("/Patient/{id}")))
        .header("content-type", "application/json-patch+json")
        .body(patch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let forged = format!("{token}x");
    let r = reqwest::Client::new().get(fhir("/Patient")).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = reqwest::Client::new()
        .post(format!("{base}/auth/login"))
        .form(&[("username", "admin"), ("password", "CanaryPassword8813")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error() || r.status().is_success(), "{}", r.status());
    // stop, so everything is written out
    let pid = child.id().unwrap();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid.to_string()]).status().unwrap().success());
    let _ = child.wait().await;
    let text = std::fs::read_to_string(&log_path).unwrap();
    assert!(text.lines().count() > 10 && text.contains("request"), "the server logged: {text}");
    let signature = token.rsplit('.').next().unwrap();
    for secret in canaries.iter().copied().chain([token.as_str(), signature, forged.as_str()]) {
        assert!(
            !text.contains(secret),
            "{secret} is in the log:\n{}",
            text.lines().filter(|l| l.contains(secret)).collect::<Vec<_>>().join("\n")
        );
    }
    println!(
        "log canary scan: {} lines logged at debug, {} canaries and the token absent",
        text.lines().count(),
        canaries.len()
    );
}
