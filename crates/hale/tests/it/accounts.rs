//! Accounts and tokens from the command line, end to end against the binary: `hale
//! user add|list|enroll-mfa|disable|enable|reset-password` and `hale token`, and a
//! clinician's token reaching the patients of their organization only.

use std::process::{Command, Output};

fn hale(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hale"))
        .env_remove("HALE_LISTEN")
        .env_remove("HALE_DATA_DIR")
        .env_remove("HALE_CONFIG")
        .env_remove("HALE_DATABASE_URL")
        .args(args)
        .arg("--data-dir")
        .arg(dir)
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

/// A refusal: exit 1 and one line on stderr.
fn refused(o: &Output, needle: &str) {
    assert!(!o.status.success(), "{}", stdout(o));
    let err = stderr(o);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains(needle), "{err}");
}

fn query(dir: &std::path::Path, sql: &str) -> Vec<String> {
    let c = rusqlite::Connection::open(dir.join("hale.db")).unwrap();
    let mut s = c.prepare(sql).unwrap();
    s.query_map([], |r| r.get::<_, String>(0)).unwrap().map(Result::unwrap).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn accounts_and_tokens_from_the_command_line() {
    if hale_test_support::skip_unless_sqlite("accounts_and_tokens_from_the_command_line") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let out = hale(d, &["synth", "--patients", "6", "--seed", "5", "--reference-date", "2025-01-01"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let orgs = query(
        d,
        "SELECT target_id FROM search_reference WHERE res_type = 'Patient' AND param = 'organization' \
         GROUP BY target_id ORDER BY COUNT(*) DESC",
    );
    let org = orgs[0].clone();
    let managed = query(
        d,
        &format!(
            "SELECT res_id FROM search_reference WHERE res_type = 'Patient' AND param = 'organization' AND target_id = '{org}'"
        ),
    );
    let others: Vec<String> = query(d, "SELECT res_id FROM resources WHERE res_type = 'Patient' AND deleted = 0")
        .into_iter()
        .filter(|p| !managed.contains(p))
        .collect();

    // bad input: one line, nothing created
    refused(&hale(d, &["user", "add", "dr.x", "--role", "surgeon"]), "is not a role");
    refused(&hale(d, &["user", "add", "dr.x", "--role", "clinician"]), "--organization");
    refused(&hale(d, &["user", "add", "dr.x", "--role", "clinician", "--organization", "nope"]), "does not exist");
    refused(&hale(d, &["user", "add", "a b", "--role", "admin"]), "user name");
    refused(&hale(d, &["user", "add", "pat", "--role", "patient"]), "--patient");
    assert!(query(d, "SELECT username FROM account").is_empty());

    let out =
        hale(d, &["user", "add", "Dr.Smith", "--role", "clinician", "--organization", &org, "--name", "Dr Smith"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("created dr.smith (clinician)"), "{text}");
    let password = text.lines().find_map(|l| l.split(": ").nth(1).filter(|_| l.contains("one-time password"))).unwrap();
    assert_eq!(password.len(), 20);
    assert!(text.contains("enroll-mfa"), "a clinician is told to enrol a second factor: {text}");
    // the name is taken whatever its case or width
    refused(&hale(d, &["user", "add", "ＤＲ.SMITH", "--role", "nurse", "--organization", &org]), "taken");
    // only a hash is stored
    let body = query(d, "SELECT body FROM account WHERE username = 'dr.smith'").remove(0);
    assert!(body.contains("$argon2id$") && !body.contains(password), "{body}");

    let list = stdout(&hale(d, &["user", "list"]));
    assert!(list.contains("dr.smith") && list.contains("clinician") && list.contains("active"), "{list}");
    assert!(!list.contains("argon2"), "{list}");

    // TOTP enrolment: the URI, then the first code confirms it, once
    let out = hale(d, &["user", "enroll-mfa", "dr.smith"]);
    let uri = stdout(&out).lines().find(|l| l.starts_with("otpauth://")).unwrap().to_string();
    let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_string();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = hale_identity::totp::code_at(&secret, now).unwrap();
    refused(&hale(d, &["user", "enroll-mfa", "dr.smith", "--code", "000000"]), "not correct");
    let out = hale(d, &["user", "enroll-mfa", "dr.smith", "--code", &code]);
    assert!(out.status.success(), "{}", stderr(&out));
    refused(&hale(d, &["user", "enroll-mfa", "dr.smith", "--code", &code]), "not correct");
    assert!(stdout(&hale(d, &["user", "list"])).contains("yes"), "MFA shows as on");

    // a token for the clinician, used against the server
    refused(&hale(d, &["token", "--user", "dr.smith", "--scope", "system/*.rs"]), "for clients");
    refused(&hale(d, &["token", "--client", "ops", "--scope", "user/*.rs"]), "system/ scopes only");
    refused(&hale(d, &["token", "--user", "nobody", "--scope", "user/*.rs"]), "no user 'nobody'");
    refused(&hale(d, &["token", "--user", "dr.smith", "--scope", "user/observation.rs"]), "not a valid SMART scope");
    let out = hale(d, &["token", "--user", "dr.smith", "--scope", "user/*.rs"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = stdout(&out).trim().to_string();
    let server = hale_test_support::spawn_binary(std::path::Path::new(env!("CARGO_BIN_EXE_hale")), d).await;
    let c = hale_test_support::client_with_token(&token);
    let r = c.get(format!("{}/fhir/Patient?_total=accurate&_count=100", server.base)).send().await.unwrap();
    let bundle = hale_test_support::json(r).await;
    assert_eq!(bundle["total"].as_u64().unwrap() as usize, managed.len(), "{bundle}");
    for p in &others {
        let r = c.get(format!("{}/fhir/Patient/{p}", server.base)).send().await.unwrap();
        assert_eq!(r.status(), 404, "a patient of another organization");
        let r =
            c.get(format!("{}/fhir/Observation?subject=Patient/{p}&_summary=count", server.base)).send().await.unwrap();
        assert_eq!(hale_test_support::json(r).await["total"], 0);
    }
    let r = c.get(format!("{}/fhir/Patient/{}/$everything", server.base, managed[0])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // read-only scopes: no writes
    let r = c
        .post(format!("{}/fhir/Observation", server.base))
        .header("content-type", "application/fhir+json")
        .body(format!(
            r#"{{"resourceType":"Observation","status":"final","code":{{"text":"x"}},"subject":{{"reference":"Patient/{}"}}}}"#,
            managed[0]
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    drop(server);

    // disabled: no more tokens; a reset gives a new one-time password
    assert!(hale(d, &["user", "disable", "dr.smith"]).status.success());
    refused(&hale(d, &["token", "--user", "dr.smith", "--scope", "user/*.rs"]), "disabled");
    assert!(hale(d, &["user", "enable", "dr.smith"]).status.success());
    let out = hale(d, &["user", "reset-password", "dr.smith"]);
    assert!(stdout(&out).contains("one-time password"), "{}", stdout(&out));
    let after = query(d, "SELECT body FROM account WHERE username = 'dr.smith'").remove(0);
    assert_ne!(after, body);
    refused(&hale(d, &["user", "disable", "nobody"]), "no user");

    // every change and every token is in the verified audit trail
    let actions: Vec<String> = crate::audit::stored_entries(d)
        .into_iter()
        .filter(|e| ["system:user", "system:token"].contains(&e.agent.as_str()))
        .map(|e| e.action)
        .collect();
    for a in [
        "account-create",
        "account-enroll-mfa",
        "account-confirm-mfa",
        "issue-token",
        "account-disable",
        "account-enable",
        "account-reset-password",
    ] {
        assert!(actions.iter().any(|x| x == a), "{a} in {actions:?}");
    }
    let out = hale(d, &["audit", "verify"]);
    assert!(out.status.success(), "{}", stderr(&out));
}

/// `hale ARGS` against the store of a test server (its data directory, and its
/// PostgreSQL database when it runs on one).
fn hale_at(ts: &hale_test_support::TestServer, args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hale"));
    c.env_remove("HALE_LISTEN").env_remove("HALE_DATA_DIR").env_remove("HALE_CONFIG").env_remove("HALE_DATABASE_URL");
    c.env("HALE_LOG__LEVEL", "warn").args(args).arg("--data-dir").arg(ts.data_dir.path());
    if let Some(url) = ts.postgres_database_url() {
        c.args(["--database", url]);
    }
    c.output().unwrap()
}

/// Disabling an account, or resetting its password, voids the tokens it was issued
/// before: within about a second every request with one is a 401 (audited); enabling
/// the account again does not bring them back; tokens issued afterwards work.
#[tokio::test(flavor = "multi_thread")]
async fn a_disabled_account_or_a_reset_password_ends_its_tokens_within_a_second() {
    let ts = hale_test_support::TestServer::spawn().await;
    let r = ts
        .put(
            "/Organization/org-void",
            &serde_json::json!({"resourceType":"Organization","id":"org-void","name":"Void"}),
        )
        .await;
    assert_eq!(r.status(), 201);
    let out = hale_at(&ts, &["user", "add", "dr.void", "--role", "clinician", "--organization", "org-void"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let token = |ts: &hale_test_support::TestServer| {
        let out = hale_at(ts, &["token", "--user", "dr.void", "--scope", "user/*.rs"]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).trim().to_string()
    };
    let status = |t: String| {
        let url = ts.fhir("/Patient");
        async move { hale_test_support::client_with_token(&t).get(url).send().await.unwrap() }
    };
    let first = token(&ts);
    assert_eq!(status(first.clone()).await.status(), 200);

    assert!(hale_at(&ts, &["user", "disable", "dr.void"]).status.success());
    let started = std::time::Instant::now();
    let refused = loop {
        let r = status(first.clone()).await;
        if r.status() == 401 || started.elapsed() > std::time::Duration::from_millis(1500) {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(refused.status(), 401, "refused within 1.5 s");
    let challenge = refused.headers()["www-authenticate"].to_str().unwrap().to_string();
    assert!(challenge.contains("invalid_token") && challenge.contains("disabled"), "{challenge}");

    // enabled again: the old token stays void, a new one works
    assert!(hale_at(&ts, &["user", "enable", "dr.void"]).status.success());
    let second = token(&ts);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(status(first.clone()).await.status(), 401);
    assert_eq!(status(second.clone()).await.status(), 200);

    // a password reset voids the tokens issued before it too
    assert!(hale_at(&ts, &["user", "reset-password", "dr.void"]).status.success());
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(status(second).await.status(), 401);

    // each refusal is audited
    let r = ts.get("/AuditEvent?outcome=4&_count=100").await;
    let bundle = hale_test_support::json(r).await.to_string();
    assert!(bundle.contains("disabled or its password changed"), "{bundle}");
}
