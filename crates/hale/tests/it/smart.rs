//! SMART App Launch against the running server: discovery, sign-in (password, TOTP,
//! throttling), consent with a patient picker, authorization codes with PKCE, tokens
//! that work on the FHIR API, refresh rotation with reuse detection, revocation and
//! introspection, Backend Services (client assertions signed RS384 and ES384 with the
//! TEST-ONLY keys of `tests/fixtures/smart`), the EHR launch, and each refusal the
//! specification asks for.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hale_server::users::{NewUser, add_user, enroll_mfa};
use hale_test_support::{TestServer, json};
use serde_json::{Value, json};
use sha2::Digest;

pub(crate) const REDIRECT: &str = "http://127.0.0.1:9/callback";

pub(crate) fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

pub(crate) fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The value of a hidden or visible form field in a page.
pub(crate) fn field(html: &str, name: &str) -> Option<String> {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle)? + needle.len();
    let end = html[start..].find('"')?;
    Some(html[start..start + end].replace("&amp;", "&").replace("&quot;", "\"").replace("&#39;", "'"))
}

/// The cookie a response sets (`name=value`).
pub(crate) fn set_cookie(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).find_map(|c| {
        let first = c.split(';').next()?;
        first.starts_with(&format!("{name}=")).then(|| first.to_string())
    })
}

pub(crate) fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").map(|l| l.to_str().unwrap().to_string()).unwrap_or_default()
}

pub(crate) fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    url::form_urlencoded::parse(q.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.to_string())
}

pub(crate) struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

pub(crate) fn pkce(seed: &str) -> Pkce {
    let verifier = format!("{seed}-verifier-0123456789abcdefghijklmnopqrstuvwxyz");
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    Pkce { verifier, challenge }
}

pub(crate) fn authorize_url(ts: &TestServer, client: &str, scope: &str, p: &Pkce) -> String {
    format!(
        "{}/auth/authorize?response_type=code&client_id={client}&redirect_uri={}&scope={}&state=st8&aud={}&code_challenge={}&code_challenge_method=S256&nonce=n1",
        ts.base,
        enc(REDIRECT),
        enc(scope),
        enc(&format!("{}/fhir", ts.base)),
        p.challenge
    )
}

/// Signs in through the login page; returns the session cookie, or the refused page.
pub(crate) async fn sign_in(
    ts: &TestServer,
    next: &str,
    user: &str,
    password: &str,
    code: &str,
) -> Result<String, (u16, String)> {
    sign_in_at(&ts.base, next, user, password, code).await
}

/// [`sign_in`] at the server at `base`.
pub(crate) async fn sign_in_at(
    base: &str,
    next: &str,
    user: &str,
    password: &str,
    code: &str,
) -> Result<String, (u16, String)> {
    let c = no_redirects();
    let r = c.get(format!("{base}/auth/login?next={}", enc(next))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login_cookie = set_cookie(&r, "hale_login").unwrap();
    let page = r.text().await.unwrap();
    let csrf = field(&page, "login_csrf").unwrap();
    let form =
        [("username", user), ("password", password), ("code", code), ("next", next), ("login_csrf", csrf.as_str())];
    let r = c.post(format!("{base}/auth/login")).header("cookie", login_cookie).form(&form).send().await.unwrap();
    if r.status() != 303 {
        let status = r.status().as_u16();
        return Err((status, r.text().await.unwrap()));
    }
    assert_eq!(location(&r), next);
    let session = set_cookie(&r, "hale_session").unwrap();
    let full = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_string()).collect::<Vec<_>>();
    assert!(
        full.iter().any(|c| c.contains("hale_session=") && c.contains("HttpOnly") && c.contains("SameSite=Lax")),
        "{full:?}"
    );
    Ok(session)
}

/// The hidden fields of a consent page's form.
fn consent_form(page: &str) -> Vec<(String, String)> {
    let keys = [
        "response_type",
        "client_id",
        "redirect_uri",
        "scope",
        "state",
        "aud",
        "code_challenge",
        "code_challenge_method",
        "nonce",
        "launch",
        "csrf",
    ];
    keys.iter().filter_map(|k| field(page, k).map(|v| (k.to_string(), v))).collect()
}

/// From the consent page to the code: approves (with `patient` when given).
async fn approve(ts: &TestServer, url: &str, session: &str, patient: Option<&str>) -> (String, String) {
    let c = no_redirects();
    let r = c.get(url).header("cookie", session).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    let mut form = consent_form(&page);
    form.push(("decision".into(), "approve".into()));
    if let Some(p) = patient {
        form.push(("patient".into(), p.into()));
    }
    let r = c.post(format!("{}/auth/authorize", ts.base)).header("cookie", session).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 303, "{}", r.text().await.unwrap());
    let to = location(&r);
    assert!(to.starts_with(REDIRECT), "{to}");
    assert_eq!(query_param(&to, "state").as_deref(), Some("st8"));
    (query_param(&to, "code").unwrap_or_else(|| panic!("no code: {to}")), page)
}

pub(crate) async fn token(ts: &TestServer, form: &[(&str, &str)]) -> (u16, Value) {
    let r = reqwest::Client::new().post(format!("{}/auth/token", ts.base)).form(form).send().await.unwrap();
    let status = r.status().as_u16();
    assert_eq!(r.headers().get("cache-control").map(|v| v.to_str().unwrap()), Some("no-store"));
    (status, json(r).await)
}

pub(crate) async fn setup(ts: &TestServer) {
    for r in [
        json!({"resourceType":"Organization","id":"org-a","name":"Clinic A"}),
        json!({"resourceType":"Organization","id":"org-b","name":"Clinic B"}),
        json!({"resourceType":"Practitioner","id":"prac-j","name":[{"family":"Jones"}]}),
        json!({"resourceType":"Patient","id":"pat-a","name":[{"family":"Alvarez","given":["Ana"]}],"birthDate":"1980-02-03","managingOrganization":{"reference":"Organization/org-a"}}),
        json!({"resourceType":"Patient","id":"pat-b","name":[{"family":"Brown","given":["Ben"]}],"managingOrganization":{"reference":"Organization/org-b"}}),
        json!({"resourceType":"Observation","id":"obs-a","status":"final","code":{"text":"pulse"},"subject":{"reference":"Patient/pat-a"}}),
        json!({"resourceType":"Observation","id":"obs-b","status":"final","code":{"text":"pulse"},"subject":{"reference":"Patient/pat-b"}}),
    ] {
        let path = format!("/{}/{}", r["resourceType"].as_str().unwrap(), r["id"].as_str().unwrap());
        assert!(ts.put(&path, &r).await.status().is_success());
    }
    let repo = ts.system_repository("test-setup").await;
    let add = |u: &str, role: &str, org: Option<&str>, prac: Option<&str>, pats: Vec<String>| NewUser {
        username: u.into(),
        role: role.into(),
        organization: org.map(str::to_string),
        practitioner: prac.map(str::to_string),
        patients: pats,
        password: Some("correct horse battery staple".into()),
        ..NewUser::default()
    };
    add_user(&repo, add("ana", "patient", None, None, vec!["pat-a".into()])).await.unwrap();
    add_user(&repo, add("dr.jones", "clinician", Some("org-a"), Some("prac-j"), vec![])).await.unwrap();
    add_user(&repo, add("dr.nofactor", "clinician", Some("org-a"), None, vec![])).await.unwrap();
    hale_auth::register_client(&repo, "app1", "Health Diary", &[REDIRECT.to_string()], false).await.unwrap();
}

pub(crate) fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_app_launch_from_sign_in_to_refresh() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let anonymous = reqwest::Client::new();
    let conf = json(anonymous.get(ts.fhir("/.well-known/smart-configuration")).send().await.unwrap()).await;
    assert_eq!(conf["authorization_endpoint"], format!("{}/auth/authorize", ts.base));
    assert_eq!(conf["code_challenge_methods_supported"], json!(["S256"]));
    let cs = json(anonymous.get(ts.fhir("/metadata")).send().await.unwrap()).await;
    let security = &cs["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let uris = security["extension"][0]["extension"].as_array().unwrap();
    assert!(
        uris.iter().any(|u| u["url"] == "authorize" && u["valueUri"] == format!("{}/auth/authorize", ts.base)),
        "{security}"
    );
    assert!(uris.iter().any(|u| u["url"] == "token" && u["valueUri"] == format!("{}/auth/token", ts.base)));
    let issues = hale_fhir::validate::validate_resource(&cs);
    assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
    let jwks = json(anonymous.get(format!("{}/auth/jwks", ts.base)).send().await.unwrap()).await;
    assert_eq!(jwks["keys"][0]["alg"], "ES256");

    let p = pkce("ana");
    let url = authorize_url(&ts, "app1", "patient/*.rs launch/patient openid fhirUser offline_access", &p);
    // no session yet: to the sign-in page
    let r = no_redirects().get(&url).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to_login = location(&r);
    assert!(to_login.starts_with("/auth/login?next="), "{to_login}");
    let next = query_param(&to_login, "next").unwrap();
    // a wrong password is refused, the same words as an unknown user
    let (status, page) = sign_in(&ts, &next, "ana", "wrong password here", "").await.unwrap_err();
    assert_eq!(status, 401);
    assert!(page.contains("not correct"), "{page}");
    let (_, page2) = sign_in(&ts, &next, "nobody", "wrong password here", "").await.unwrap_err();
    assert!(page2.contains("The user name, password or code is not correct."));
    let session = sign_in(&ts, &next, "ANA", "correct horse battery staple", "").await.unwrap();
    let (code, consent) = approve(&ts, &next_abs(&ts, &next), &session, None).await;
    assert!(consent.contains("Health Diary") && consent.contains("in your record"), "{consent}");
    // the code, with the verifier
    let form = |code: &str, verifier: &str| {
        vec![
            ("grant_type", "authorization_code".to_string()),
            ("code", code.to_string()),
            ("redirect_uri", REDIRECT.to_string()),
            ("client_id", "app1".to_string()),
            ("code_verifier", verifier.to_string()),
        ]
    };
    let f = form(&code, &p.verifier);
    let f: Vec<(&str, &str)> = f.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, t) = token(&ts, &f).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["patient"], "pat-a");
    assert_eq!(t["token_type"], "Bearer");
    assert!(t["id_token"].is_string() && t["refresh_token"].is_string(), "{t}");
    let id_claims: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD.decode(t["id_token"].as_str().unwrap().split('.').nth(1).unwrap()).unwrap(),
    )
    .unwrap();
    assert_eq!(id_claims["fhirUser"], format!("{}/fhir/Patient/pat-a", ts.base));
    assert_eq!(id_claims["nonce"], "n1");
    // the token works on the FHIR API, for the patient's own record only
    let at = t["access_token"].as_str().unwrap();
    let b = json(anonymous.get(ts.fhir("/Observation")).bearer_auth(at).send().await.unwrap()).await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["entry"][0]["resource"]["id"], "obs-a");
    assert_eq!(anonymous.get(ts.fhir("/Patient/pat-b")).bearer_auth(at).send().await.unwrap().status(), 404);
    // a code works once
    let (status, e) = token(&ts, &f).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    // patient/ scopes without launch/patient: a patient's own app gets the patient anyway
    let p2 = pkce("ana-own");
    let url2 = authorize_url(&ts, "app1", "patient/Observation.rs", &p2);
    let (code2, _) = approve(&ts, &url2, &session, None).await;
    let f2 = form(&code2, &p2.verifier);
    let f2: Vec<(&str, &str)> = f2.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (status, t2) = token(&ts, &f2).await;
    assert_eq!((status, t2["patient"].as_str()), (200, Some("pat-a")), "{t2}");
    let own = t2["access_token"].as_str().unwrap();
    let b = json(anonymous.get(ts.fhir("/Observation")).bearer_auth(own).send().await.unwrap()).await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(1), "{b}");

    // refresh: rotated; the old token used again revokes the grant
    let r1 = t["refresh_token"].as_str().unwrap().to_string();
    let refresh = |rt: String| {
        vec![("grant_type", "refresh_token".to_string()), ("refresh_token", rt), ("client_id", "app1".to_string())]
    };
    let f1 = refresh(r1.clone());
    let (status, t2) = token(&ts, &f1.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    assert_eq!(status, 200, "{t2}");
    let r2 = t2["refresh_token"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    let (status, e) = token(&ts, &f1.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "reuse");
    let f2 = refresh(r2);
    let (status, _) = token(&ts, &f2.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>()).await;
    assert_eq!(status, 400, "the reuse revoked the newer token of the grant too");

    // revoking an access token ends it on the API within a second
    let at2 = t2["access_token"].as_str().unwrap();
    assert_eq!(anonymous.get(ts.fhir("/Observation")).bearer_auth(at2).send().await.unwrap().status(), 200);
    let r = anonymous
        .post(format!("{}/auth/revoke", ts.base))
        .form(&[("token", at2), ("client_id", "app1")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let r = anonymous.get(ts.fhir("/Observation")).bearer_auth(at2).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
}

fn next_abs(ts: &TestServer, next: &str) -> String {
    format!("{}{next}", ts.base)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_clinician_signs_in_with_a_second_factor_and_picks_a_patient() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let repo = ts.system_repository("test-setup").await;
    let hale_server::users::Enrolment::Started(uri) = enroll_mfa(&repo, "dr.jones", None).await.unwrap() else {
        panic!()
    };
    let secret = query_param(&uri, "secret").unwrap();
    let first = hale_identity::totp::code_at(&secret, now()).unwrap();
    enroll_mfa(&repo, "dr.jones", Some(&first)).await.unwrap();
    let p = pkce("jones");
    let url = authorize_url(&ts, "app1", "launch/patient patient/Observation.rs patient/Patient.rs", &p);
    let next = url.strip_prefix(&ts.base).unwrap().to_string();
    // a clinician without a second factor cannot sign in; nor with a missing or reused code
    let (status, page) = sign_in(&ts, &next, "dr.nofactor", "correct horse battery staple", "").await.unwrap_err();
    assert_eq!(status, 403);
    assert!(page.contains("authenticator"), "{page}");
    let (status, _) = sign_in(&ts, &next, "dr.jones", "correct horse battery staple", "").await.unwrap_err();
    assert_eq!(status, 401);
    let (status, _) = sign_in(&ts, &next, "dr.jones", "correct horse battery staple", &first).await.unwrap_err();
    assert_eq!(status, 401, "the enrolment's code is used");
    let code = hale_identity::totp::code_at(&secret, now() + 30).unwrap();
    let session = sign_in(&ts, &next, "dr.jones", "correct horse battery staple", &code).await.unwrap();
    // the picker offers the organization's patients only
    let c = no_redirects();
    let page = c.get(&url).header("cookie", &session).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("Alvarez, Ana") && !page.contains("Brown"), "{page}");
    let (code, _) = approve(&ts, &url, &session, Some("pat-a")).await;
    let f = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "app1"),
        ("code_verifier", p.verifier.as_str()),
    ];
    let (status, t) = token(&ts, &f).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!(t["patient"], "pat-a");
    assert!(t.get("refresh_token").is_none(), "no offline_access asked");
    let at = t["access_token"].as_str().unwrap();
    let anonymous = reqwest::Client::new();
    let b = json(anonymous.get(ts.fhir("/Observation?_total=accurate")).bearer_auth(at).send().await.unwrap()).await;
    assert_eq!(b["total"], 1, "{b}");
    // the launch is held to the patient chosen; and to the scopes (no Condition)
    assert_eq!(anonymous.get(ts.fhir("/Condition")).bearer_auth(at).send().await.unwrap().status(), 403);
    // a patient the clinician may not open cannot be chosen
    let p2 = pkce("jones2");
    let url2 = authorize_url(&ts, "app1", "launch/patient patient/Observation.rs", &p2);
    let page = c.get(&url2).header("cookie", &session).send().await.unwrap().text().await.unwrap();
    let mut form = consent_form(&page);
    form.push(("decision".into(), "approve".into()));
    form.push(("patient".into(), "pat-b".into()));
    let r = c.post(format!("{}/auth/authorize", ts.base)).header("cookie", &session).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200, "the consent page again");
    assert!(r.text().await.unwrap().contains("Choose a patient you may open"));
    // a forged decision without the session's CSRF token
    let forged: Vec<(String, String)> =
        form.iter().filter(|(k, _)| k != "csrf").cloned().chain([("csrf".into(), "x".into())]).collect();
    let r =
        c.post(format!("{}/auth/authorize", ts.base)).header("cookie", &session).form(&forged).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(location(&r).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_requests_are_refused_and_nothing_is_granted() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let c = no_redirects();
    let p = pkce("bad");
    let good = authorize_url(&ts, "app1", "patient/*.rs", &p);
    // an untrusted client or redirect URI: answered here, never redirected
    for (what, url) in [
        ("unknown client", good.replace("client_id=app1", "client_id=app2")),
        ("redirect URI one character off", good.replace("callback", "callbacc")),
        ("redirect URI with a suffix", good.replace(&enc(REDIRECT), &enc(&format!("{REDIRECT}x")))),
        ("no redirect URI", good.replace(&format!("&redirect_uri={}", enc(REDIRECT)), "")),
    ] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 400, "{what}");
        assert!(location(&r).is_empty(), "{what}: redirected");
        assert!(r.text().await.unwrap().contains("cannot be used"), "{what}");
    }
    // a trusted redirect URI gets the error
    for (what, url, error) in [
        ("no PKCE", good.replace(&format!("&code_challenge={}", p.challenge), ""), "invalid_request"),
        ("plain PKCE", good.replace("code_challenge_method=S256", "code_challenge_method=plain"), "invalid_request"),
        ("implicit flow", good.replace("response_type=code", "response_type=token"), "unsupported_response_type"),
        ("malformed scope", good.replace(&enc("patient/*.rs"), &enc("patient/observation.rs")), "invalid_scope"),
        ("system scope", good.replace(&enc("patient/*.rs"), &enc("system/*.rs")), "invalid_scope"),
        (
            "another audience",
            good.replace(&enc(&format!("{}/fhir", ts.base)), &enc("https://other.example/fhir")),
            "invalid_request",
        ),
    ] {
        let r = c.get(&url).send().await.unwrap();
        assert_eq!(r.status(), 303, "{what}");
        let to = location(&r);
        assert!(to.starts_with(REDIRECT), "{what}: {to}");
        assert_eq!(query_param(&to, "error").as_deref(), Some(error), "{what}: {to}");
        assert_eq!(query_param(&to, "state").as_deref(), Some("st8"), "{what}");
    }
    // PKCE failures at the token endpoint: each 400, and the code is spent
    let next = good.strip_prefix(&ts.base).unwrap().to_string();
    let session = sign_in(&ts, &next, "ana", "correct horse battery staple", "").await.unwrap();
    for verifier in [None, Some("too-short"), Some("bad-verifier-0123456789abcdefghijklmnopqrstuvwxyz-nope")] {
        let (code, _) = approve(&ts, &good, &session, None).await;
        let mut f = vec![
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("client_id", "app1"),
        ];
        if let Some(v) = verifier {
            f.push(("code_verifier", v));
        }
        let (status, e) = token(&ts, &f).await;
        assert_eq!(status, 400, "{verifier:?}: {e}");
        f.retain(|(k, _)| *k != "code_verifier");
        f.push(("code_verifier", p.verifier.as_str()));
        let (status, _) = token(&ts, &f).await;
        assert_eq!(status, 400, "a code that failed once is spent");
    }
    // the redirect URI must match at the token endpoint too; another client cannot use the code
    let (code, _) = approve(&ts, &good, &session, None).await;
    let (status, e) = token(
        &ts,
        &[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://127.0.0.1:9/callbacc"),
            ("client_id", "app1"),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")));
    let (status, e) = token(
        &ts,
        &[
            ("grant_type", "authorization_code"),
            ("code", "forged"),
            ("client_id", "nope"),
            ("code_verifier", &p.verifier),
        ],
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (401, Some("invalid_client")));
    let (status, e) = token(&ts, &[("grant_type", "password"), ("client_id", "app1")]).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("unsupported_grant_type")));
    // throttling: five failures lock the account, whatever the password afterwards
    let c2 = pkce("lock");
    let url = authorize_url(&ts, "app1", "patient/*.rs", &c2);
    let next = url.strip_prefix(&ts.base).unwrap().to_string();
    for _ in 0..5 {
        assert_eq!(sign_in(&ts, &next, "ana", "not the password", "").await.unwrap_err().0, 401);
    }
    let (status, page) = sign_in(&ts, &next, "ana", "correct horse battery staple", "").await.unwrap_err();
    assert_eq!(status, 429);
    assert!(page.contains("Too many failed attempts"));
    // a login form without its cookie (cross-site) is refused
    let r = no_redirects()
        .post(format!("{}/auth/login", ts.base))
        .form(&[("username", "ana"), ("password", "x"), ("login_csrf", "forged")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

/// A password reset ends the grants begun before it: their refresh tokens are refused at
/// once, their access tokens within a second.
/// Ana signs in, lets app1 act for her with `offline_access`, and the app exchanges
/// the code: her session cookie and the token answer.
async fn offline_grant(ts: &TestServer, seed: &str) -> (String, Value) {
    let p = pkce(seed);
    let url = authorize_url(ts, "app1", "patient/*.rs launch/patient offline_access", &p);
    let next = url.strip_prefix(&ts.base).unwrap().to_string();
    let session = sign_in(ts, &next, "ana", "correct horse battery staple", "").await.unwrap();
    let (code, _) = approve(ts, &url, &session, None).await;
    let form = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "app1"),
        ("code_verifier", p.verifier.as_str()),
    ];
    let (status, t) = token(ts, &form).await;
    assert_eq!(status, 200, "{t}");
    (session, t)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_ends_the_grants_begun_before_it() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let (_, t) = offline_grant(&ts, "reset").await;
    let ts = &ts;
    let refresh = |rt: String| async move {
        token(ts, &[("grant_type", "refresh_token"), ("refresh_token", rt.as_str()), ("client_id", "app1")]).await
    };
    let (status, t2) = refresh(t["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!(status, 200, "a refresh before the reset works: {t2}");
    let at = t2["access_token"].as_str().unwrap().to_string();
    let anonymous = reqwest::Client::new();
    assert_eq!(anonymous.get(ts.fhir("/Observation")).bearer_auth(&at).send().await.unwrap().status(), 200);
    let repo = ts.system_repository("test-setup").await;
    hale_server::users::reset_password(&repo, "ana").await.unwrap();
    let (status, e) = refresh(t2["refresh_token"].as_str().unwrap().to_string()).await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    assert_eq!(anonymous.get(ts.fhir("/Observation")).bearer_auth(&at).send().await.unwrap().status(), 401);
}

/// Failed sign-ins are counted in the store: two servers on one PostgreSQL database
/// lock an account after five failures made on either.
#[tokio::test(flavor = "multi_thread")]
async fn failed_sign_ins_are_counted_by_every_node() {
    if !hale_test_support::store_is_postgres() {
        eprintln!(
            "SKIP failed_sign_ins_are_counted_by_every_node: two nodes need HALE_TEST_STORE=postgres \
             (on SQLite bad_requests_are_refused_and_nothing_is_granted throttles one server)"
        );
        return;
    }
    let a = TestServer::spawn().await;
    setup(&a).await;
    let url = a.postgres_database_url().unwrap().to_string();
    let b = TestServer::spawn_with(|c| c.database_url = url).await;
    let next_of = |ts: &TestServer| {
        let u = authorize_url(ts, "app1", "patient/*.rs", &pkce("nodes"));
        u.strip_prefix(&ts.base).unwrap().to_string()
    };
    let (next_a, next_b) = (next_of(&a), next_of(&b));
    // a success forgets the failures before it, on every node
    assert_eq!(sign_in(&a, &next_a, "ana", "wrong", "").await.unwrap_err().0, 401);
    assert_eq!(sign_in(&b, &next_b, "ana", "wrong", "").await.unwrap_err().0, 401);
    assert!(sign_in(&b, &next_b, "ana", "correct horse battery staple", "").await.is_ok());
    for (ts, next) in [(&a, &next_a), (&b, &next_b), (&a, &next_a), (&b, &next_b), (&a, &next_a)] {
        assert_eq!(sign_in(ts, next, "ana", "not the password", "").await.unwrap_err().0, 401);
    }
    for (ts, next) in [(&b, &next_b), (&a, &next_a)] {
        let (status, page) = sign_in(ts, next, "ana", "correct horse battery staple", "").await.unwrap_err();
        assert_eq!(status, 429);
        assert!(page.contains("Too many failed attempts"));
    }
    // another account of the same address is not locked (20 failures lock an address)
    assert_eq!(sign_in(&b, &next_b, "dr.nofactor", "correct horse battery staple", "").await.unwrap_err().0, 403);
}

// ---- SMART Backend Services ----

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/smart").join(name)
}

/// A client assertion signed with the TEST-ONLY key in `pem` (a fixture file).
fn assertion(alg: jsonwebtoken::Algorithm, pem: &str, kid: Option<&str>, claims: &Value) -> String {
    // the PEM's DER: PKCS#1 for the RSA keys, PKCS#8 for the P-384 key
    let text = std::fs::read_to_string(fixture(pem)).unwrap();
    let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD.decode(b64).unwrap();
    let key = match alg {
        jsonwebtoken::Algorithm::ES384 => jsonwebtoken::EncodingKey::from_ec_der(&der),
        _ => jsonwebtoken::EncodingKey::from_rsa_der(&der),
    };
    let mut header = jsonwebtoken::Header::new(alg);
    header.kid = kid.map(str::to_string);
    jsonwebtoken::encode(&header, claims, &key).unwrap()
}

/// The claims of a good assertion of `client` at `ts`'s token endpoint.
fn assertion_claims(ts: &TestServer, client: &str, jti: &str) -> Value {
    json!({"iss": client, "sub": client, "aud": format!("{}/auth/token", ts.base), "exp": now() + 240, "jti": jti})
}

async fn backend_token(ts: &TestServer, assertion: &str, scope: &str) -> (u16, Value) {
    token(
        ts,
        &[
            ("grant_type", "client_credentials"),
            ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
            ("client_assertion", assertion),
            ("scope", scope),
        ],
    )
    .await
}

async fn register_backend(ts: &TestServer, id: &str, scope: &str) {
    let repo = ts.system_repository("test-setup").await;
    let jwks = std::fs::read_to_string(fixture("test-only-jwks.json")).unwrap();
    hale_auth::register_backend_client(&repo, id, "Nightly export", &jwks, scope).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backend_service_gets_a_token_with_a_signed_assertion() {
    use jsonwebtoken::Algorithm::{ES384, RS384};
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    register_backend(&ts, "bulk1", "system/*.rs").await;
    let anonymous = reqwest::Client::new();
    let conf = json(anonymous.get(format!("{}/.well-known/smart-configuration", ts.base)).send().await.unwrap()).await;
    for (field, value) in [
        ("grant_types_supported", "client_credentials"),
        ("token_endpoint_auth_methods_supported", "private_key_jwt"),
        ("capabilities", "client-confidential-asymmetric"),
        ("capabilities", "launch-ehr"),
        ("capabilities", "context-ehr-patient"),
        ("scopes_supported", "system/*.rs"),
        ("scopes_supported", "launch"),
    ] {
        assert!(conf[field].as_array().unwrap().iter().any(|v| v == value), "{field} {value}: {conf}");
    }
    assert_eq!(conf["token_endpoint_auth_signing_alg_values_supported"], json!(["RS384", "ES384"]));

    // RS384, the key chosen by kid
    let a = assertion(RS384, "test-only-rsa.pem", Some("test-rsa-1"), &assertion_claims(&ts, "bulk1", "rs-1"));
    let (status, t) = backend_token(&ts, &a, "system/*.rs").await;
    assert_eq!(status, 200, "{t}");
    assert_eq!((t["token_type"].as_str(), t["scope"].as_str()), (Some("Bearer"), Some("system/*.rs")));
    assert!(t["expires_in"].as_i64().unwrap() <= 300, "{t}");
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none(), "{t}");
    let at = t["access_token"].as_str().unwrap();
    let b = json(anonymous.get(ts.fhir("/Patient?_total=accurate")).bearer_auth(at).send().await.unwrap()).await;
    assert_eq!(b["total"], 2, "a backend service reads every patient: {b}");
    let r = anonymous
        .post(ts.fhir("/Patient"))
        .bearer_auth(at)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "system/*.rs does not write");
    // ES384, the key found without a kid; a narrower scope than registered
    let a = assertion(ES384, "test-only-ec384.pem", None, &assertion_claims(&ts, "bulk1", "es-1"));
    let (status, t) = backend_token(&ts, &a, "system/Patient.rs").await;
    assert_eq!((status, t["scope"].as_str()), (200, Some("system/Patient.rs")), "{t}");
    let at = t["access_token"].as_str().unwrap();
    assert_eq!(anonymous.get(ts.fhir("/Patient/pat-a")).bearer_auth(at).send().await.unwrap().status(), 200);
    assert_eq!(anonymous.get(ts.fhir("/Observation")).bearer_auth(at).send().await.unwrap().status(), 403);
    // the kid given must be the key that signed
    let a = assertion(ES384, "test-only-ec384.pem", Some("test-ec-1"), &assertion_claims(&ts, "bulk1", "es-2"));
    assert_eq!(backend_token(&ts, &a, "system/*.rs").await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn backend_refusals_grant_nothing_and_are_audited() {
    use jsonwebtoken::Algorithm::{ES384, HS256, RS384};
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    register_backend(&ts, "bulk1", "system/Patient.rs system/Observation.rs").await;
    let good = |jti: &str| assertion_claims(&ts, "bulk1", jti);
    let with = |jti: &str, k: &str, v: Value| {
        let mut c = good(jti);
        if v.is_null() {
            c.as_object_mut().unwrap().remove(k);
        } else {
            c[k] = v;
        }
        c
    };
    let rsa = |c: &Value| assertion(RS384, "test-only-rsa.pem", Some("test-rsa-1"), c);
    // a first use of jti "once" is fine; its second is a replay
    let once = rsa(&good("once"));
    assert_eq!(backend_token(&ts, &once, "system/Patient.rs").await.0, 200);
    let hs256 = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(HS256),
        &good("hs"),
        &jsonwebtoken::EncodingKey::from_secret(b"the public modulus or any secret").unwrap(),
    )
    .unwrap();
    let none = format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(good("none").to_string())
    );
    let cases: Vec<(&str, String, &str, u16, &str, &str)> = vec![
        (
            "wrong aud",
            rsa(&with("aud", "aud", json!("https://other.example/auth/token"))),
            "system/Patient.rs",
            401,
            "invalid_client",
            "aud is not this token endpoint",
        ),
        ("expired", rsa(&with("exp", "exp", json!(now() - 60))), "system/Patient.rs", 401, "invalid_client", "expired"),
        (
            "exp an hour ahead",
            rsa(&with("long", "exp", json!(now() + 3600))),
            "system/Patient.rs",
            401,
            "invalid_client",
            "five minutes",
        ),
        ("no exp", rsa(&with("noexp", "exp", Value::Null)), "system/Patient.rs", 401, "invalid_client", "missing"),
        (
            "nbf a minute ahead",
            rsa(&with("nbf", "nbf", json!(now() + 60))),
            "system/Patient.rs",
            401,
            "invalid_client",
            "nbf is in the future",
        ),
        (
            "iat a minute ahead",
            rsa(&with("iat", "iat", json!(now() + 60))),
            "system/Patient.rs",
            401,
            "invalid_client",
            "iat is in the future",
        ),
        ("no jti", rsa(&with("x", "jti", Value::Null)), "system/Patient.rs", 401, "invalid_client", "jti"),
        ("reused jti", once.clone(), "system/Patient.rs", 401, "invalid_client", "used already"),
        (
            "an unregistered key",
            assertion(RS384, "test-only-rsa-unregistered.pem", Some("test-rsa-1"), &good("unreg")),
            "system/Patient.rs",
            401,
            "invalid_client",
            "signature",
        ),
        (
            "an unregistered kid",
            assertion(ES384, "test-only-ec384.pem", Some("other-kid"), &good("kid")),
            "system/Patient.rs",
            401,
            "invalid_client",
            "no key",
        ),
        ("wrong sub", rsa(&with("sub", "sub", json!("app1"))), "system/Patient.rs", 401, "invalid_client", "sub"),
        ("wrong iss", rsa(&with("iss", "iss", json!("bulk2"))), "system/Patient.rs", 401, "invalid_client", "unknown"),
        ("HS256", hs256, "system/Patient.rs", 401, "invalid_client", "RS384 or ES384"),
        ("alg none", none, "system/Patient.rs", 401, "invalid_client", "RS384 or ES384"),
        ("beyond the client's scopes", rsa(&good("wide")), "system/*.rs", 400, "invalid_scope", "beyond"),
        ("more permissions", rsa(&good("cruds")), "system/Patient.cruds", 400, "invalid_scope", "beyond"),
        ("a user scope", rsa(&good("user")), "user/*.rs", 400, "invalid_scope", "system/"),
        (
            "unknown client",
            rsa(&json!({"iss": "nobody", "sub": "nobody", "aud": format!("{}/auth/token", ts.base),
                "exp": now() + 60, "jti": "u"})),
            "system/Patient.rs",
            401,
            "invalid_client",
            "unknown",
        ),
        (
            "an app that signs users in",
            rsa(&json!({"iss": "app1", "sub": "app1", "aud": format!("{}/auth/token", ts.base),
                "exp": now() + 60, "jti": "app"})),
            "system/Patient.rs",
            401,
            "invalid_client",
            "not a backend service",
        ),
    ];
    for (what, a, scope, status, error, words) in &cases {
        let (s, e) = backend_token(&ts, a, scope).await;
        assert_eq!((s, e["error"].as_str()), (*status, Some(*error)), "{what}: {e}");
        assert!(e["error_description"].as_str().unwrap().contains(words), "{what}: {e}");
        assert!(e.get("access_token").is_none(), "{what}");
    }
    // no assertion type; and the backend client cannot pass as a public app by its id
    let (s, e) = token(&ts, &[("grant_type", "client_credentials"), ("client_assertion", &rsa(&good("t")))]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")), "{e}");
    let (s, e) = token(&ts, &[("grant_type", "authorization_code"), ("client_id", "bulk1"), ("code", "x")]).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_client")), "{e}");
    // each refusal is in the audit trail, with its reason
    let auditor = hale_test_support::client_with_token(&hale_test_support::user_token(
        ts.data_dir.path(),
        "sec",
        &hale_test_support::UserGrant { role: "security-admin", scope: "user/AuditEvent.rs", ..Default::default() },
    ));
    let b = json(auditor.get(ts.fhir("/AuditEvent?subtype=token&outcome=4&_count=100")).send().await.unwrap()).await;
    let reasons: Vec<String> = b["entry"]
        .as_array()
        .unwrap_or_else(|| panic!("{b}"))
        .iter()
        .map(|e| e["resource"]["outcomeDesc"].as_str().unwrap_or("").to_string())
        .collect();
    assert!(reasons.len() >= cases.len() + 2, "{reasons:?}");
    for (what, _, _, _, _, words) in &cases {
        assert!(reasons.iter().any(|r| r.contains(words)), "{what} not audited: {reasons:?}");
    }
    let ok = json(auditor.get(ts.fhir("/AuditEvent?subtype=token&outcome=0")).send().await.unwrap()).await;
    assert_eq!(ok["entry"].as_array().map(Vec::len), Some(1), "the one token issued: {ok}");
}

#[test]
fn a_backend_client_is_registered_with_a_checked_jwks() {
    let dir = tempfile::tempdir().unwrap();
    let hale = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_hale"));
        c.env_remove("HALE_LISTEN").env_remove("HALE_DATA_DIR").env_remove("HALE_CONFIG");
        c.env_remove("HALE_DATABASE_URL");
        c.arg("client").arg("--data-dir").arg(dir.path());
        c
    };
    let bad = dir.path().join("bad.json");
    for (what, text) in [
        ("not JSON", "{\"keys\": [".to_string()),
        ("a private key", r#"{"keys":[{"kty":"RSA","n":"AQAB","e":"AQAB","d":"AQAB"}]}"#.to_string()),
        ("a symmetric key", r#"{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}"#.to_string()),
        ("a P-256 key", r#"{"keys":[{"kty":"EC","crv":"P-256","x":"AQAB","y":"AQAB"}]}"#.to_string()),
    ] {
        std::fs::write(&bad, text).unwrap();
        let out = hale()
            .args(["add", "bulk1", "--name", "Export", "--scope", "system/*.rs", "--jwks"])
            .arg(&bad)
            .output()
            .unwrap();
        assert!(!out.status.success(), "{what}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
        assert!(err.contains("JWKS"), "{what}: {err}");
    }
    // a user scope is refused; the fixture's keys with a system scope are registered
    let good = fixture("test-only-jwks.json");
    let out = hale()
        .args(["add", "bulk1", "--name", "Export", "--scope", "user/*.rs", "--jwks"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1);
    let list = hale().arg("list").output().unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains("bulk1"), "nothing was stored");
    let out = hale()
        .args(["add", "bulk1", "--name", "Export", "--scope", "system/*.rs", "--jwks"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let list = String::from_utf8_lossy(&hale().arg("list").output().unwrap().stdout).to_string();
    assert!(list.contains("bulk1\tbackend\tExport\tsystem/*.rs"), "{list}");
}

// ---- EHR launch ----

/// Enrols `user`'s second factor; returns a code for their next sign-in.
pub(crate) async fn enrolled(ts: &TestServer, user: &str) -> String {
    let repo = ts.system_repository("test-setup").await;
    let hale_server::users::Enrolment::Started(uri) = enroll_mfa(&repo, user, None).await.unwrap() else { panic!() };
    let secret = query_param(&uri, "secret").unwrap();
    enroll_mfa(&repo, user, Some(&hale_identity::totp::code_at(&secret, now()).unwrap())).await.unwrap();
    hale_identity::totp::code_at(&secret, now() + 30).unwrap()
}

/// An access token of the account `user` (as `hale token --user` prints).
async fn token_of(ts: &TestServer, user: &str, scope: &str) -> String {
    let repo = ts.system_repository("test-setup").await;
    let keys = hale_server::TokenKeys::open(ts.data_dir.path()).unwrap();
    let subject = hale_server::users::TokenSubject::User(user.into());
    hale_server::users::issue_token(&repo, &keys, &subject, scope, None, 600).await.unwrap()
}

async fn launch(ts: &TestServer, bearer: Option<&str>, form: &[(&str, &str)]) -> (u16, Value) {
    let mut r = reqwest::Client::new().post(format!("{}/auth/launch", ts.base)).form(form);
    if let Some(t) = bearer {
        r = r.bearer_auth(t);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    (status, json(r).await)
}

fn with_launch(url: &str, l: &str) -> String {
    format!("{url}&launch={}", enc(l))
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ehr_launch_opens_the_app_on_the_patient() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let enc_a = json!({"resourceType":"Encounter","id":"enc-a","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient/pat-a"}});
    assert!(ts.put("/Encounter/enc-a", &enc_a).await.status().is_success());
    let repo = ts.system_repository("test-setup").await;
    hale_auth::register_client(&repo, "app2", "Other app", &[REDIRECT.to_string()], false).await.unwrap();
    let user = |name: &str| NewUser {
        username: name.into(),
        role: "clinician".into(),
        organization: Some("org-a".into()),
        password: Some("correct horse battery staple".into()),
        ..NewUser::default()
    };
    add_user(&repo, user("dr.smith")).await.unwrap();
    let jones_code = enrolled(&ts, "dr.jones").await;
    let smith_code = enrolled(&ts, "dr.smith").await;
    let jones = token_of(&ts, "dr.jones", "user/*.rs").await;

    // the EHR side: refusals first
    let (s, e) = launch(&ts, None, &[("patient", "pat-a"), ("client_id", "app1")]).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_token")), "{e}");
    let (s, _) = launch(&ts, Some("forged.token.here"), &[("patient", "pat-a"), ("client_id", "app1")]).await;
    assert_eq!(s, 401);
    let (s, e) = launch(&ts, Some(&jones), &[("patient", "pat-b"), ("client_id", "app1")]).await;
    assert_eq!(s, 404, "a patient of another organization is out of reach: {e}");
    assert!(e.get("launch").is_none());
    let (s, _) = launch(&ts, Some(&jones), &[("patient", "nobody"), ("client_id", "app1")]).await;
    assert_eq!(s, 404);
    let (s, e) = launch(&ts, Some(&jones), &[("patient", "pat-a"), ("client_id", "nope")]).await;
    assert_eq!((s, e["error"].as_str()), (400, Some("invalid_request")), "{e}");
    let ana = token_of(&ts, "ana", "patient/*.rs").await;
    let (s, _) = launch(&ts, Some(&ana), &[("patient", "pat-a"), ("client_id", "app1")]).await;
    assert_eq!(s, 403, "a patient does not launch apps");
    let narrow = token_of(&ts, "dr.jones", "user/Observation.rs").await;
    let (s, _) = launch(&ts, Some(&narrow), &[("patient", "pat-a"), ("client_id", "app1")]).await;
    assert_eq!(s, 403, "a token that cannot read the Patient");
    let (s, e) = launch(&ts, Some(&jones), &[("patient", "pat-a"), ("encounter", "nope"), ("client_id", "app1")]).await;
    assert_eq!(s, 404, "{e}");

    // a launch for pat-a and its encounter
    let (s, l) =
        launch(&ts, Some(&jones), &[("patient", "pat-a"), ("encounter", "enc-a"), ("client_id", "app1")]).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!((l["iss"].as_str(), l["expires_in"].as_i64()), (Some(format!("{}/fhir", ts.base).as_str()), Some(300)));
    let l = l["launch"].as_str().unwrap().to_string();
    let p = pkce("ehr");
    let url = with_launch(&authorize_url(&ts, "app1", "launch patient/*.rs openid fhirUser", &p), &l);
    let next = url.strip_prefix(&ts.base).unwrap().to_string();
    // another clinician signed in cannot take dr.jones's launch
    let smith = sign_in(&ts, &next, "dr.smith", "correct horse battery staple", &smith_code).await.unwrap();
    let r = no_redirects().get(&url).header("cookie", &smith).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(location(&r).is_empty());
    assert!(r.text().await.unwrap().contains("another user"));
    // the launch for another app is refused on the page, never redirected
    let (_, other) = launch(&ts, Some(&jones), &[("patient", "pat-a"), ("client_id", "app2")]).await;
    let other = other["launch"].as_str().unwrap().to_string();
    let r =
        no_redirects().get(with_launch(&authorize_url(&ts, "app1", "launch patient/*.rs", &p), &other)).send().await;
    let r = r.unwrap();
    assert_eq!(r.status(), 400);
    assert!(location(&r).is_empty());
    assert!(r.text().await.unwrap().contains("another application"));

    // dr.jones: the consent page names the patient, no picker; the token carries the context
    let session = sign_in(&ts, &next, "dr.jones", "correct horse battery staple", &jones_code).await.unwrap();
    let (code, page) = approve(&ts, &url, &session, None).await;
    assert!(page.contains("Alvarez, Ana") && !page.contains("<select"), "{page}");
    let f = [
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", REDIRECT),
        ("client_id", "app1"),
        ("code_verifier", p.verifier.as_str()),
    ];
    let (status, t) = token(&ts, &f).await;
    assert_eq!(status, 200, "{t}");
    assert_eq!((t["patient"].as_str(), t["encounter"].as_str()), (Some("pat-a"), Some("enc-a")), "{t}");
    let at = t["access_token"].as_str().unwrap();
    let anonymous = reqwest::Client::new();
    let b = json(anonymous.get(ts.fhir("/Observation")).bearer_auth(at).send().await.unwrap()).await;
    assert_eq!(b["entry"].as_array().map(Vec::len), Some(1), "{b}");
    assert_eq!(b["entry"][0]["resource"]["id"], "obs-a");
    // used once
    let r = no_redirects().get(&url).header("cookie", &session).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("unknown, used or expired"));
    // an expired launch is refused
    let expired = "an-expired-launch-value";
    let record = json!({"account": "x", "client_id": "app1", "patient": "pat-a"});
    let past = hale_repository::Instant::now().millis() - 1000;
    repo.put_auth_record("launch", &hale_auth::hash_secret(expired), &record, Some(past), None).await.unwrap();
    let r = no_redirects()
        .get(with_launch(&authorize_url(&ts, "app1", "launch patient/*.rs", &p), expired))
        .header("cookie", &session)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    // scope launch without a launch: sent back to the app with the reason
    let r = no_redirects().get(authorize_url(&ts, "app1", "launch patient/*.rs", &p)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(query_param(&to, "error").as_deref(), Some("invalid_request"), "{to}");
    assert!(query_param(&to, "error_description").unwrap().contains("launch parameter"), "{to}");
}

/// A password change ends the user's other sign-in sessions: a session cookie taken
/// before the change is sent back to sign-in and approves nothing, while the session the
/// change began works.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_change_ends_the_other_sessions() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let p = pkce("sessions");
    let url = authorize_url(&ts, "app1", "patient/*.rs launch/patient", &p);
    let next = url.strip_prefix(&ts.base).unwrap().to_string();
    // the first browser (say, a stolen cookie): signed in, its consent page open
    let stolen = sign_in(&ts, &next, "ana", "correct horse battery staple", "").await.unwrap();
    let c = no_redirects();
    let r = c.get(&url).header("cookie", &stolen).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let mut form = consent_form(&r.text().await.unwrap());
    form.push(("decision".into(), "approve".into()));
    // the user is asked to choose a new password at their next sign-in (the hash stays,
    // so this alone voids nothing)
    let repo = ts.system_repository("test-setup").await;
    let mut a = repo.account_by_username("ana").await.unwrap().unwrap();
    a.must_change_password = true;
    repo.put_account(&a, false, "account-test-require-change").await.unwrap();
    assert_eq!(c.get(&url).header("cookie", &stolen).send().await.unwrap().status(), 200);
    // the second browser signs in and changes the password
    let r = c.get(format!("{}/auth/login?next={}", ts.base, enc(&next))).send().await.unwrap();
    let login_cookie = set_cookie(&r, "hale_login").unwrap();
    let csrf = field(&r.text().await.unwrap(), "login_csrf").unwrap();
    let login = [
        ("username", "ana"),
        ("password", "correct horse battery staple"),
        ("code", ""),
        ("next", next.as_str()),
        ("login_csrf", csrf.as_str()),
    ];
    let r = c.post(format!("{}/auth/login", ts.base)).header("cookie", login_cookie).form(&login).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let pending = field(&r.text().await.unwrap(), "pending").unwrap();
    let new = "a brand new passphrase for ana";
    let change = [("pending", pending.as_str()), ("new", new), ("confirm", new)];
    let r = c.post(format!("{}/auth/password", ts.base)).form(&change).send().await.unwrap();
    assert_eq!((r.status().as_u16(), location(&r)), (303, next.clone()));
    let fresh = set_cookie(&r, "hale_session").unwrap();
    // the first session is over: back to sign-in, and its approval grants no code
    let r = c.get(&url).header("cookie", &stolen).send().await.unwrap();
    assert_eq!(r.status(), 303);
    assert!(location(&r).starts_with("/auth/login?"), "{}", location(&r));
    let r = c.post(format!("{}/auth/authorize", ts.base)).header("cookie", &stolen).form(&form).send().await.unwrap();
    assert!(!location(&r).starts_with(REDIRECT), "an old session approved: {}", location(&r));
    assert!(location(&r).starts_with("/auth/login?"), "{}", location(&r));
    // the session the change began approves
    let (code, _) = approve(&ts, &url, &fresh, None).await;
    assert!(!code.is_empty());
}

/// A password reset voids the access tokens issued before it for introspection and for
/// the EHR launch too, at once.
#[tokio::test(flavor = "multi_thread")]
async fn a_password_reset_voids_tokens_for_introspection_and_launch() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let repo = ts.system_repository("test-setup").await;
    let secret =
        hale_auth::register_client(&repo, "conf1", "Reviewer", &[REDIRECT.to_string()], true).await.unwrap().unwrap();
    let jones = token_of(&ts, "dr.jones", "user/*.rs").await;
    let introspect = |t: String| {
        let base = ts.base.clone();
        let secret = secret.clone();
        async move {
            let r = reqwest::Client::new()
                .post(format!("{base}/auth/introspect"))
                .basic_auth("conf1", Some(secret))
                .form(&[("token", t.as_str())])
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            json(r).await
        }
    };
    let form = [("patient", "pat-a"), ("client_id", "app1")];
    assert_eq!(introspect(jones.clone()).await["active"], true);
    let (s, l) = launch(&ts, Some(&jones), &form).await;
    assert_eq!(s, 200, "{l}");
    hale_server::users::reset_password(&repo, "dr.jones").await.unwrap();
    let i = introspect(jones.clone()).await;
    assert_eq!(i, json!({"active": false}), "an access token issued before the reset: {i}");
    let (s, e) = launch(&ts, Some(&jones), &form).await;
    assert_eq!((s, e["error"].as_str()), (401, Some("invalid_token")), "{e}");
    // a token issued after the reset is in force
    let after = token_of(&ts, "dr.jones", "user/*.rs").await;
    assert_eq!(introspect(after.clone()).await["active"], true);
    assert_eq!(launch(&ts, Some(&after), &form).await.0, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_patient_sees_their_connected_apps_and_disconnects_one() {
    let ts = TestServer::spawn().await;
    setup(&ts).await;
    let (session, t) = offline_grant(&ts, "apps").await;
    let at = t["access_token"].as_str().unwrap().to_string();
    let anonymous = reqwest::Client::new();
    assert_eq!(anonymous.get(ts.fhir("/Observation")).bearer_auth(&at).send().await.unwrap().status(), 200);

    // the portal lists the app in words
    let page = |path: &'static str| {
        let session = session.clone();
        let base = ts.base.clone();
        async move {
            let r = no_redirects().get(format!("{base}{path}")).header("cookie", session).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, apps) = page("/portal/apps").await;
    assert_eq!(status, 200, "{apps}");
    assert!(
        apps.contains("Health Diary")
            && apps.contains("See everything in your record, even when you are not signed in"),
        "{apps}"
    );
    let csrf = field(&apps, "csrf").unwrap();
    let grant = field(&apps, "grant").unwrap();
    let post = |form: Vec<(&'static str, String)>| {
        let session = session.clone();
        let base = ts.base.clone();
        async move {
            let r = no_redirects()
                .post(format!("{base}/portal/apps/disconnect"))
                .header("cookie", session)
                .form(&form)
                .send()
                .await
                .unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // refused: a stale form, a grant that is not the account's
    assert_eq!(post(vec![("csrf", "x".into()), ("grant", grant.clone())]).await.0, 403);
    assert_eq!(post(vec![("csrf", csrf.clone()), ("grant", "someone-elses".into())]).await.0, 404);
    // disconnected: the refresh token and the access token stop working, the list is empty
    let (status, after) = post(vec![("csrf", csrf.clone()), ("grant", grant.clone())]).await;
    assert_eq!(status, 200, "{after}");
    assert!(after.contains("The app is disconnected.") && after.contains("No app is connected"), "{after}");
    let (status, e) = token(
        &ts,
        &[
            ("grant_type", "refresh_token"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
            ("client_id", "app1"),
        ],
    )
    .await;
    assert_eq!((status, e["error"].as_str()), (400, Some("invalid_grant")), "{e}");
    let mut refused = false;
    for _ in 0..30 {
        if anonymous.get(ts.fhir("/Observation")).bearer_auth(&at).send().await.unwrap().status() == 401 {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert!(refused, "the app's access token is revoked");
    // the disconnection is in the audit trail
    let trail = json(ts.get("/AuditEvent?_count=500").await).await.to_string();
    assert!(trail.contains("app-disconnected"), "audited");
}
