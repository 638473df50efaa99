//! The authorization server's pages in a real headless Chromium (Debian's
//! `/usr/bin/chromium`, driven by npm `playwright-core`, `tests/browser/*.mjs`): sign-in
//! with a wrong then a right password by keyboard, consent, and the code back at the
//! application, at laptop and phone sizes, with screenshots in
//! `target/browser-screenshots/`. Skips with a message where Chromium or the npm
//! packages are missing; fails instead under `CI=true`.

use std::path::{Path, PathBuf};

use crate::smart::{REDIRECT, authorize_url, pkce, setup, token};
use hale_test_support::TestServer;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Whether the browser tests can run here; panics under `CI=true` when they cannot.
pub(crate) fn browser_available(test: &str) -> bool {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = if !Path::new(&chromium).exists() {
        Some(format!("{chromium} is missing (apt-get install chromium)"))
    } else if !root().join("node_modules/playwright-core").is_dir() {
        Some("node_modules/playwright-core is missing (npm ci)".to_string())
    } else if std::process::Command::new("node").arg("--version").output().is_err() {
        Some("node is missing".to_string())
    } else {
        None
    };
    match missing {
        None => true,
        Some(why) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{test} cannot run under CI: {why}"),
        Some(why) => {
            eprintln!("SKIP {test}: {why} — THE BROWSER TESTS DID NOT RUN");
            false
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_in_and_consent_work_in_a_real_browser() {
    if !browser_available("sign_in_and_consent_work_in_a_real_browser") {
        return;
    }
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let p = pkce("browser");
    let url = authorize_url(&ts, "app1", "patient/*.rs launch/patient openid fhirUser", &p);
    let shots = root().join("target/browser-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(root().join("tests/browser/signin.mjs"))
        .args([url.as_str(), "ana", "correct horse battery staple"])
        .arg(&shots)
        .current_dir(root())
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let result: serde_json::Value = serde_json::from_str(stdout.trim().lines().last().unwrap()).unwrap();
    assert_eq!(result["checks"].as_array().unwrap().len(), 20, "{result}");
    // the codes the browser brought back are good for tokens
    for code in result["codes"].as_array().unwrap() {
        let f = [
            ("grant_type", "authorization_code"),
            ("code", code.as_str().unwrap()),
            ("redirect_uri", REDIRECT),
            ("client_id", "app1"),
            ("code_verifier", p.verifier.as_str()),
        ];
        let (status, t) = token(&ts, &f).await;
        assert_eq!(status, 200, "{t}");
        assert_eq!(t["patient"], "pat-a");
    }
    for f in ["signin-laptop.png", "signin-phone.png", "consent-laptop.png", "consent-phone.png"] {
        assert!(shots.join(f).metadata().unwrap().len() > 1000, "{f}");
    }
}
