//! The pages of the authorization server: sign-in, password change, consent. Plain
//! server-rendered HTML, every dynamic value escaped, no script.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Form;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use hale_access::{Level, Perm, Principal, PurposeOfUse, RequestContext, Role, Scopes, UserGrant};
use hale_identity::{Account, password, totp};

use crate::launch::Launch;
use crate::{
    AuthState, CODE_LIFETIME_MS, Client, LOGIN_COOKIE, MAX_FAILURES_PER_ACCOUNT, MAX_FAILURES_PER_ADDRESS,
    SESSION_COOKIE, St, client, cookie, hash_secret, now_ms, random_secret, same, session, set_cookie, start_session,
};

type Params = HashMap<String, String>;

/// Escapes text for HTML content and attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "
:root{color-scheme:light;--ink:#1d2733;--muted:#5b6673;--line:#d5dbe1;--accent:#1f5f8b;--bad:#a12c2c;--bg:#f4f6f8}
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:var(--ink);background:var(--bg)}
main{max-width:30rem;margin:8vh auto;padding:2rem;background:#fff;border:1px solid var(--line);border-radius:8px}
h1{font-size:1.35rem;margin:0 0 .25rem}p.sub{margin:0 0 1.5rem;color:var(--muted)}
label{display:block;font-weight:600;margin:1rem 0 .3rem}input,select{width:100%;font:inherit;padding:.55rem .65rem;border:1px solid var(--line);border-radius:6px}
input:focus,select:focus,button:focus{outline:3px solid #9cc3e0;outline-offset:1px}
.row{display:flex;gap:.75rem;margin-top:1.5rem}button{flex:1;font:inherit;font-weight:600;padding:.65rem 1rem;border-radius:6px;border:1px solid var(--accent);background:var(--accent);color:#fff;cursor:pointer}
button.secondary{background:#fff;color:var(--accent)}.error{color:var(--bad);background:#fbeaea;border:1px solid #efc4c4;padding:.6rem .8rem;border-radius:6px;margin:0 0 1rem}
ul.scopes{padding-left:1.2rem;margin:.5rem 0}ul.scopes li{margin:.2rem 0}.brand{font-weight:700;color:var(--accent);letter-spacing:.02em;margin-bottom:1rem}
small{color:var(--muted);font-weight:400}@media (max-width:34rem){main{margin:0;border:0;border-radius:0;min-height:100vh;padding:1.25rem}}
";

fn page(title: &str, body: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · Hale</title><style>{STYLE}</style></head><body><main><div class=\"brand\">Hale</div>{body}</main></body></html>",
        esc(title)
    )
}

fn html(status: StatusCode, title: &str, body: &str) -> Response {
    let mut r = (status, Html(page(title, body))).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self' http: https:; frame-ancestors 'none'",
        ),
    );
    r
}

fn refusal_page(message: &str) -> Response {
    html(
        StatusCode::BAD_REQUEST,
        "Request refused",
        &format!(
            "<h1>This sign-in request cannot be used</h1><p class=\"error\" role=\"alert\">{}</p><p><small>Return to the application and try again, or tell its developer.</small></p>",
            esc(message)
        ),
    )
}

/// An error sent back to the application (RFC 6749 4.1.2.1).
fn redirect_error(redirect_uri: &str, error: &str, description: &str, state: Option<&str>) -> Response {
    let mut url = format!("{redirect_uri}{}error={error}", if redirect_uri.contains('?') { '&' } else { '?' });
    url.push_str(&format!("&error_description={}", form_encode(description)));
    if let Some(s) = state {
        url.push_str(&format!("&state={}", form_encode(s)));
    }
    Redirect::to(&url).into_response()
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A checked authorization request.
pub(crate) struct Checked {
    pub client: Client,
    pub redirect_uri: String,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub challenge: String,
    pub nonce: Option<String>,
    /// An EHR launch (scope `launch` with its `launch` value): the key of its record
    /// and the record, for this client (its user is checked once someone is signed in).
    pub launch: Option<(String, Launch)>,
}

enum Refused {
    /// The client or redirect URI cannot be trusted: shown here, never redirected.
    Page(String),
    /// Sent back to the verified redirect URI.
    Redirect { uri: String, error: &'static str, description: String, state: Option<String> },
}

impl Refused {
    fn into_response(self) -> Response {
        match self {
            Refused::Page(m) => refusal_page(&m),
            Refused::Redirect { uri, error, description, state } => {
                redirect_error(&uri, error, &description, state.as_deref())
            }
        }
    }
}

async fn check(st: &AuthState, headers: &HeaderMap, p: &Params) -> Result<Checked, Refused> {
    let Some(client_id) = p.get("client_id") else {
        return Err(Refused::Page("The request names no client (client_id).".into()));
    };
    let Some(client) = client(st, client_id).await else {
        return Err(Refused::Page("The application is not registered with this server.".into()));
    };
    let Some(redirect_uri) = p.get("redirect_uri") else {
        return Err(Refused::Page("The request has no redirect_uri.".into()));
    };
    if !client.redirect_uris.iter().any(|u| u == redirect_uri) {
        return Err(Refused::Page("The redirect URI is not one registered for this application.".into()));
    }
    let state = p.get("state").cloned();
    let back = |error: &'static str, description: &str| Refused::Redirect {
        uri: redirect_uri.clone(),
        error,
        description: description.to_string(),
        state: state.clone(),
    };
    if p.get("response_type").map(String::as_str) != Some("code") {
        return Err(back("unsupported_response_type", "response_type must be code"));
    }
    if p.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(back("invalid_request", "PKCE is required, with code_challenge_method S256"));
    }
    let challenge = p.get("code_challenge").cloned().unwrap_or_default();
    if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Err(back("invalid_request", "code_challenge must be the base64url SHA-256 of the verifier"));
    }
    let expected_aud = format!("{}/fhir", st.base(headers));
    match p.get("aud") {
        Some(a) if a.trim_end_matches('/') == expected_aud => {}
        Some(_) => return Err(back("invalid_request", "aud is not this server's FHIR base URL")),
        None => return Err(back("invalid_request", "aud (this server's FHIR base URL) is required")),
    }
    let scopes = Scopes::parse(p.get("scope").map(String::as_str).unwrap_or(""), false)
        .map_err(|e| back("invalid_scope", &e.to_string()))?;
    let launch = match (p.get("launch").filter(|l| !l.is_empty()), scopes.has("launch")) {
        (None, false) => None,
        (None, true) => {
            return Err(back(
                "invalid_request",
                "the scope launch needs the launch parameter the EHR gave the app (a standalone launch asks for launch/patient)",
            ));
        }
        (Some(_), false) => return Err(back("invalid_scope", "a launch parameter needs the scope launch")),
        (Some(l), true) => {
            let key = hash_secret(l);
            let record = st.system().auth_record("launch", &key).await.ok().flatten();
            let Some(launch) = record.as_ref().and_then(Launch::from_record) else {
                return Err(Refused::Page(
                    "The launch is unknown, used or expired. Open the app again from the patient's record.".into(),
                ));
            };
            if launch.client_id != client.id {
                return Err(Refused::Page("The launch was made for another application.".into()));
            }
            Some((key, launch))
        }
    };
    if scopes.resources.is_empty() && !scopes.has("openid") {
        return Err(back("invalid_scope", "the request asks for no scope this server grants"));
    }
    if scopes.resources.iter().any(|r| r.level == Level::System) {
        return Err(back("invalid_scope", "system/ scopes are for backend services, not for a user's sign-in"));
    }
    Ok(Checked {
        client,
        redirect_uri: redirect_uri.clone(),
        scopes,
        state,
        challenge,
        nonce: p.get("nonce").cloned(),
        launch,
    })
}

/// A request context for `account` with `scopes`, as a token would give.
pub fn user_context(account: &Account, scopes: Scopes, launch: Option<String>, client: &str) -> Option<RequestContext> {
    let role = account.role().ok()?;
    let grant = UserGrant {
        account: account.id.clone(),
        username: account.username.clone(),
        role,
        fhir_user: account.fhir_user.clone(),
        organization: account.organization.clone(),
        patients: account.patients.clone(),
        scopes,
        launch_patient: launch,
        client_id: client.to_string(),
    };
    let mut ctx = RequestContext::system("auth");
    ctx.principal = Principal::User(Box::new(grant));
    ctx.purpose_of_use =
        Some(if role == Role::Patient { PurposeOfUse::PatientRequest } else { PurposeOfUse::Treatment });
    Some(ctx)
}

fn describe(scopes: &Scopes, role: Role, launched: bool) -> Vec<String> {
    let mut out = Vec::new();
    for r in &scopes.resources {
        let what = match &r.resource_type {
            None => "all kinds of health information".to_string(),
            Some(t) => format!("{t} records"),
        };
        let whose = match (r.level, role) {
            (Level::Patient, Role::Patient) => "in your record",
            (Level::Patient, _) if launched => "of this patient",
            (Level::Patient, _) => "of the patient you choose",
            (_, Role::Patient) => "in the records you may see",
            _ => "of the patients you may see",
        };
        let mut verbs = Vec::new();
        for (p, v) in [
            (Perm::Read, "read"),
            (Perm::Search, "search"),
            (Perm::Create, "add"),
            (Perm::Update, "change"),
            (Perm::Delete, "delete"),
        ] {
            if r.perms.contains(p) {
                verbs.push(v);
            }
        }
        let granular = r.query.as_ref().map(|q| format!(" (only {q})")).unwrap_or_default();
        out.push(format!("{} {what} {whose}{granular}", capitalize(&verbs.join(", "))));
    }
    if scopes.has("openid") || scopes.has("fhirUser") {
        out.push("Know who you are (your name and account)".into());
    }
    if scopes.has("offline_access") {
        out.push("Stay connected when you are not using it, until you revoke it".into());
    }
    out
}

fn capitalize(s: &str) -> String {
    let mut c = s.chars();
    c.next().map(|f| f.to_uppercase().collect::<String>() + c.as_str()).unwrap_or_default()
}

fn hidden(p: &Params) -> String {
    let mut out = String::new();
    for k in [
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
    ] {
        if let Some(v) = p.get(k) {
            out.push_str(&format!("<input type=\"hidden\" name=\"{k}\" value=\"{}\">", esc(v)));
        }
    }
    out
}

fn authorize_url(p: &Params) -> String {
    let mut q = Vec::new();
    let mut keys: Vec<&String> = p.keys().collect();
    keys.sort();
    for k in keys {
        if !matches!(k.as_str(), "csrf" | "decision" | "patient") {
            q.push(format!("{}={}", form_encode(k), form_encode(&p[k])));
        }
    }
    format!("/auth/authorize?{}", q.join("&"))
}

/// `GET /auth/authorize`.
pub async fn authorize(State(st): St, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    let checked = match check(&st, &headers, &p).await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some((account, csrf)) = session(&st, &headers).await else {
        return Redirect::to(&format!("/auth/login?next={}", form_encode(&authorize_url(&p)))).into_response();
    };
    if let Some(refused) = launch_of_another(&st, &account, &checked).await {
        return refused;
    }
    consent(&st, &account, &csrf, &checked, &p, None).await
}

/// A refusal when the request carries an EHR launch made by someone else than the
/// signed-in user (audited).
async fn launch_of_another(st: &AuthState, account: &Account, c: &Checked) -> Option<Response> {
    let (_, launch) = c.launch.as_ref()?;
    if launch.account == account.id {
        return None;
    }
    let who = format!("user:{}", account.username);
    let _ = st.system().audit_auth_event("authorize", &who, Some("a launch made by another user")).await;
    Some(refusal_page("The launch was made for another user. Open the app again from the patient's record."))
}

/// How a patient is named to `account` (name and birth date), read through a
/// repository made for them: `None` when they may not see the patient.
async fn patient_label(st: &AuthState, account: &Account, client: &str, id: &str) -> Option<String> {
    let ctx = user_context(account, Scopes::parse("user/Patient.rs", true).ok()?, None, client)?;
    let repo = st.gate.repository(ctx);
    let (ty, rid) = (hale_repository::resource_type("Patient").ok()?, hale_repository::resource_id(id).ok()?);
    let r = repo.read(&ty, &rid).await.ok()?;
    let v: serde_json::Value = serde_json::from_str(r.body.as_deref()?).ok()?;
    Some(label(&v))
}

fn label(v: &serde_json::Value) -> String {
    let name = &v["name"][0];
    let given: Vec<&str> = name["given"].as_array().into_iter().flatten().filter_map(|g| g.as_str()).collect();
    format!(
        "{}, {} — born {}",
        name["family"].as_str().unwrap_or("(no name)"),
        given.join(" "),
        v["birthDate"].as_str().unwrap_or("?")
    )
}

async fn consent(
    st: &AuthState,
    account: &Account,
    csrf: &str,
    c: &Checked,
    p: &Params,
    error: Option<&str>,
) -> Response {
    let Ok(role) = account.role() else { return refusal_page("Your account has no valid role.") };
    let items: String =
        describe(&c.scopes, role, c.launch.is_some()).iter().map(|d| format!("<li>{}</li>", esc(d))).collect();
    let mut picker = String::new();
    if let Some((_, launch)) = &c.launch {
        let Some(name) = patient_label(st, account, &c.client.id, &launch.patient).await else {
            return refusal_page("You may not open the record of the patient this launch names.");
        };
        picker = format!("<p>For the patient <strong>{}</strong>, opened from their record.</p>", esc(&name));
    } else if c.scopes.has("launch/patient") {
        let options = patient_options(st, account, &c.client.id).await;
        if options.is_empty() {
            picker = "<p class=\"error\" role=\"alert\">There is no patient you may open.</p>".into();
        } else {
            let opts: String = options
                .iter()
                .map(|(id, label)| format!("<option value=\"{}\">{}</option>", esc(id), esc(label)))
                .collect();
            let label = if role == Role::Patient { "Whose record" } else { "Patient" };
            picker = format!(
                "<label for=\"patient\">{label}</label><select id=\"patient\" name=\"patient\" required>{opts}</select>"
            );
        }
    }
    let err = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<h1>Allow {app}?</h1><p class=\"sub\">Signed in as {user}</p>{err}\
         <p><strong>{app}</strong> asks to:</p><ul class=\"scopes\">{items}</ul>\
         <form method=\"post\" action=\"/auth/authorize\">{hidden}<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">{picker}\
         <div class=\"row\"><button type=\"submit\" name=\"decision\" value=\"approve\" autofocus>Allow</button>\
         <button type=\"submit\" name=\"decision\" value=\"deny\" class=\"secondary\">Deny</button></div></form>\
         <p><small>Access lasts an hour at a time; an app allowed to stay connected keeps it for up to 30 days unless it is revoked.</small></p>",
        app = esc(&c.client.name),
        user = esc(&account.display_name),
        hidden = hidden(p),
        csrf = esc(csrf),
    );
    html(StatusCode::OK, "Allow access", &body)
}

/// The patients `account` may choose for a launch: a patient's own (or a proxy's
/// linked) patients; for staff, the patients their organization manages (the first
/// 100 by name), found through a repository made for the user.
async fn patient_options(st: &AuthState, account: &Account, client: &str) -> Vec<(String, String)> {
    let Some(ctx) = user_context(account, Scopes::parse("user/Patient.rs", true).unwrap_or_default(), None, client)
    else {
        return Vec::new();
    };
    let repo = st.gate.repository(ctx);
    let Ok(ty) = hale_repository::resource_type("Patient") else { return Vec::new() };
    let pairs = [("_count".to_string(), "100".to_string()), ("_sort".to_string(), "family".to_string())];
    let Ok(req) = hale_search::parse::parse(&ty, &pairs, false) else { return Vec::new() };
    let Ok(page) = repo.search(&req, 100, false).await else { return Vec::new() };
    page.entries
        .iter()
        .filter_map(|e| {
            let v: serde_json::Value = serde_json::from_str(e.body.as_deref()?).ok()?;
            Some((e.id.to_string(), label(&v)))
        })
        .collect()
}

/// `POST /auth/authorize`: the user's decision.
pub async fn decide(State(st): St, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    let c = match check(&st, &headers, &p).await {
        Ok(c) => c,
        Err(r) => return r.into_response(),
    };
    let Some((account, csrf)) = session(&st, &headers).await else {
        return Redirect::to(&format!("/auth/login?next={}", form_encode(&authorize_url(&p)))).into_response();
    };
    if !p.get("csrf").is_some_and(|t| same(t, &csrf)) {
        return refusal_page("The form expired or did not come from this server. Start again from the application.");
    }
    if let Some(refused) = launch_of_another(&st, &account, &c).await {
        return refused;
    }
    let audit = st.system();
    if p.get("decision").map(String::as_str) != Some("approve") {
        let _ = audit
            .audit_auth_event("authorize", &format!("user:{}", account.username), Some("the user denied access"))
            .await;
        return redirect_error(&c.redirect_uri, "access_denied", "The user denied access", c.state.as_deref());
    }
    let Ok(role) = account.role() else { return refusal_page("Your account has no valid role.") };
    let mut patient = None;
    let mut encounter = None;
    if let Some((key, _)) = &c.launch {
        // single use: taken now, whether or not the rest succeeds
        let taken = audit.take_auth_record("launch", key).await.ok().flatten();
        let Some(launch) = taken
            .as_ref()
            .and_then(Launch::from_record)
            .filter(|l| l.client_id == c.client.id && l.account == account.id)
        else {
            return refusal_page("The launch is used or expired. Open the app again from the patient's record.");
        };
        if patient_label(&st, &account, &c.client.id, &launch.patient).await.is_none() {
            return refusal_page("You may not open the record of the patient this launch names.");
        }
        patient = Some(launch.patient);
        encounter = launch.encounter;
    } else if c.scopes.has("launch/patient") {
        let chosen = p.get("patient").filter(|s| !s.is_empty()).cloned();
        let chosen = match (role, chosen) {
            (Role::Patient, None) => account.patients.first().cloned(),
            (_, c) => c,
        };
        let allowed = match &chosen {
            Some(id) => patient_options(&st, &account, &c.client.id).await.iter().any(|(o, _)| o == id),
            None => false,
        };
        if !allowed {
            return consent(&st, &account, &csrf, &c, &p, Some("Choose a patient you may open.")).await;
        }
        patient = chosen;
    } else if role == Role::Patient && c.scopes.is_patient_level() {
        // a patient's own app asking for patient/ scopes: the patient is the user
        patient = account.patients.first().cloned();
    }
    let code = random_secret();
    let body = serde_json::json!({
        "client_id": c.client.id,
        "redirect_uri": c.redirect_uri,
        "account": account.id,
        "scope": c.scopes.to_string(),
        "patient": patient,
        "encounter": encounter,
        "code_challenge": c.challenge,
        "nonce": c.nonce,
    });
    let who = format!("user:{}", account.username);
    if let Err(e) = audit
        .put_auth_record(
            "code",
            &hash_secret(&code),
            &body,
            Some(now_ms() + CODE_LIFETIME_MS),
            Some(("authorize", &who)),
        )
        .await
    {
        tracing::error!(error = %e, "an authorization code could not be stored");
        return refusal_page("The server could not complete the request; try again.");
    }
    let mut url = format!("{}{}code={code}", c.redirect_uri, if c.redirect_uri.contains('?') { '&' } else { '?' });
    if let Some(s) = &c.state {
        url.push_str(&format!("&state={}", form_encode(s)));
    }
    Redirect::to(&url).into_response()
}

/// Where a sign-in may lead: an authorization request, or a page of the clinician
/// application or the patient portal (a path of this server, never another origin).
fn safe_next(next: Option<&String>) -> Option<String> {
    next.filter(|n| {
        let app = ["/app", "/portal"]
            .iter()
            .any(|p| *n == *p || n.starts_with(&format!("{p}/")) || n.starts_with(&format!("{p}?")));
        (n.starts_with("/auth/authorize?") || app) && !n.contains("//") && !n.contains('\\') && !n.contains("/..")
    })
    .cloned()
}

fn login_form(st: &AuthState, next: Option<&str>, error: Option<&str>, username: &str, status: StatusCode) -> Response {
    let token = random_secret();
    let err = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let next_field =
        next.map(|n| format!("<input type=\"hidden\" name=\"next\" value=\"{}\">", esc(n))).unwrap_or_default();
    let body = format!(
        "<h1>Sign in</h1><p class=\"sub\">Use your Hale account.</p>{err}\
         <form method=\"post\" action=\"/auth/login\">{next_field}<input type=\"hidden\" name=\"login_csrf\" value=\"{token}\">\
         <label for=\"username\">User name</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required{focus_user} value=\"{user}\">\
         <label for=\"password\">Password</label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"current-password\" required{focus_password}>\
         <label for=\"code\">Authenticator code <small>(if your account has one)</small></label>\
         <input id=\"code\" name=\"code\" inputmode=\"numeric\" autocomplete=\"one-time-code\" pattern=\"[0-9]{{6}}\" maxlength=\"6\">\
         <div class=\"row\"><button type=\"submit\">Sign in</button></div></form>",
        user = esc(username),
        // after a refusal the name is kept and the password is typed again
        focus_user = if username.is_empty() { " autofocus" } else { "" },
        focus_password = if username.is_empty() { "" } else { " autofocus" },
    );
    let mut r = html(status, "Sign in", &body);
    if let Ok(v) = set_cookie(st, LOGIN_COOKIE, &token, Some(600)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /auth/login`.
pub async fn login_page(State(st): St, headers: HeaderMap, Query(p): Query<Params>) -> Response {
    let next = safe_next(p.get("next"));
    if let Some(n) = next.as_deref().filter(|n| n.starts_with("/app") || n.starts_with("/portal"))
        && session(&st, &headers).await.is_some()
    {
        // signed in already: straight to the page asked for
        return Redirect::to(n).into_response();
    }
    if next.is_none()
        && let Some((account, csrf)) = session(&st, &headers).await
    {
        let body = format!(
            "<h1>Signed in</h1><p class=\"sub\">as {} ({})</p><form method=\"post\" action=\"/auth/logout\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{}\"><div class=\"row\"><button type=\"submit\" class=\"secondary\">Sign out</button></div></form>",
            esc(&account.display_name),
            esc(&account.role),
            esc(&csrf)
        );
        return html(StatusCode::OK, "Signed in", &body);
    }
    login_form(&st, next.as_deref(), None, "", StatusCode::OK)
}

const BAD_LOGIN: &str = "The user name, password or code is not correct.";

/// `POST /auth/login`.
pub async fn login(
    State(st): St,
    headers: HeaderMap,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    Form(p): Form<Params>,
) -> Response {
    let next = safe_next(p.get("next"));
    let typed = p.get("username").cloned().unwrap_or_default();
    let refuse = |msg: &str, status: StatusCode| login_form(&st, next.as_deref(), Some(msg), &typed, status);
    match (cookie(&headers, LOGIN_COOKIE), p.get("login_csrf")) {
        (Some(a), Some(b)) if same(&a, b) => {}
        _ => return refuse("The sign-in form expired. Please try again.", StatusCode::BAD_REQUEST),
    }
    let ip = addr.ip().to_string();
    let username = hale_identity::fold_username(&typed).unwrap_or_default();
    let (ip_key, user_key) = (format!("ip:{ip}"), format!("user:{username}"));
    let repo = st.system();
    let who = format!("user:{}", if username.is_empty() { "(invalid)" } else { &username });
    let locked = match (
        st.locked(&ip_key, MAX_FAILURES_PER_ADDRESS).await,
        st.locked(&user_key, MAX_FAILURES_PER_ACCOUNT).await,
    ) {
        (Ok(by_ip), Ok(by_user)) => by_ip || by_user,
        (Err(e), _) | (_, Err(e)) => {
            tracing::error!(error = %e, "the failed sign-ins could not be counted");
            return refuse("The server could not complete the sign-in; try again.", StatusCode::SERVICE_UNAVAILABLE);
        }
    };
    if locked {
        let _ = repo.audit_auth_event("login", &who, Some("locked after repeated failures")).await;
        return refuse("Too many failed attempts. Try again in 15 minutes.", StatusCode::TOO_MANY_REQUESTS);
    }
    let account = repo.account_by_username(&username).await.ok().flatten();
    let pw = p.get("password").map(String::as_str).unwrap_or("");
    // a missing account costs the same hash as a wrong password
    let hash = account.as_ref().map(|a| a.password_hash.as_str()).unwrap_or(password::decoy_hash());
    let password_ok = password::verify(pw, hash);
    let failure = match &account {
        None => Some("no such account"),
        Some(_) if !password_ok => Some("wrong password"),
        Some(a) if a.disabled => Some("the account is disabled"),
        _ => None,
    };
    if let Some(reason) = failure {
        st.failed(&ip_key).await;
        st.failed(&user_key).await;
        let _ = repo.audit_auth_event("login", &who, Some(reason)).await;
        return refuse(BAD_LOGIN, StatusCode::UNAUTHORIZED);
    }
    let Some(mut account) = account else { return refuse(BAD_LOGIN, StatusCode::UNAUTHORIZED) };
    let needs_mfa = account.role().map(Role::needs_mfa).unwrap_or(true);
    if needs_mfa && !account.totp_confirmed {
        let _ = repo.audit_auth_event("login", &who, Some("no second factor enrolled")).await;
        return refuse(
            "Your role signs in with an authenticator app, and none is set up yet. Ask an administrator to enrol one.",
            StatusCode::FORBIDDEN,
        );
    }
    if account.totp_confirmed {
        let code = p.get("code").map(String::as_str).unwrap_or("");
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let secret = account.totp_secret.clone().unwrap_or_default();
        match totp::check(&secret, code, now, account.totp_last_step) {
            Ok(step) => {
                account.totp_last_step = step;
                if repo.put_account(&account, false, "account-totp-used").await.is_err() {
                    return refuse(
                        "The server could not complete the sign-in; try again.",
                        StatusCode::SERVICE_UNAVAILABLE,
                    );
                }
            }
            Err(_) => {
                st.failed(&ip_key).await;
                st.failed(&user_key).await;
                let _ = repo.audit_auth_event("login", &who, Some("wrong or reused authenticator code")).await;
                return refuse(BAD_LOGIN, StatusCode::UNAUTHORIZED);
            }
        }
    }
    st.succeeded(&user_key).await;
    if account.must_change_password {
        let pending = random_secret();
        let body = serde_json::json!({"account": account.id, "next": next});
        if repo.put_auth_record("pending", &hash_secret(&pending), &body, Some(now_ms() + 600_000), None).await.is_err()
        {
            return refuse("The server could not complete the sign-in; try again.", StatusCode::SERVICE_UNAVAILABLE);
        }
        let _ = repo.audit_auth_event("login", &who, None).await;
        return password_form(&pending, None);
    }
    let _ = repo.audit_auth_event("login", &who, None).await;
    signed_in(&st, &account, next).await
}

async fn signed_in(st: &AuthState, account: &Account, next: Option<String>) -> Response {
    let cookie = match start_session(st, account).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "a session could not be stored");
            return refusal_page("The server could not complete the sign-in; try again.");
        }
    };
    let mut r = Redirect::to(next.as_deref().unwrap_or("/auth/login")).into_response();
    if let Ok(v) = cookie.parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    if let Ok(v) = set_cookie(st, LOGIN_COOKIE, "", Some(0)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn password_form(pending: &str, error: Option<&str>) -> Response {
    let err = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<h1>Choose a new password</h1><p class=\"sub\">Your password was set by an administrator. Choose your own: at least {} characters.</p>{err}\
         <form method=\"post\" action=\"/auth/password\"><input type=\"hidden\" name=\"pending\" value=\"{}\">\
         <label for=\"new\">New password</label><input id=\"new\" name=\"new\" type=\"password\" autocomplete=\"new-password\" required autofocus>\
         <label for=\"confirm\">New password again</label><input id=\"confirm\" name=\"confirm\" type=\"password\" autocomplete=\"new-password\" required>\
         <div class=\"row\"><button type=\"submit\">Save and continue</button></div></form>",
        password::MIN_LENGTH,
        esc(pending)
    );
    html(StatusCode::OK, "New password", &body)
}

/// `POST /auth/password`: the new password after a one-time one.
pub async fn change_password(State(st): St, Form(p): Form<Params>) -> Response {
    let pending = p.get("pending").cloned().unwrap_or_default();
    let repo = st.system();
    let Ok(Some(rec)) = repo.auth_record("pending", &hash_secret(&pending)).await else {
        return login_form(&st, None, Some("That step expired. Sign in again."), "", StatusCode::BAD_REQUEST);
    };
    let (new, confirm) = (p.get("new").cloned().unwrap_or_default(), p.get("confirm").cloned().unwrap_or_default());
    if new != confirm {
        return password_form(&pending, Some("The two passwords differ."));
    }
    if let Err(e) = password::check_rule(&new) {
        return password_form(&pending, Some(&format!("{}.", capitalize(&e.to_string()))));
    }
    let Some(mut account) = repo.account_by_id(rec["account"].as_str().unwrap_or("")).await.ok().flatten() else {
        return login_form(&st, None, Some("That step expired. Sign in again."), "", StatusCode::BAD_REQUEST);
    };
    if password::verify(&new, &account.password_hash) {
        return password_form(&pending, Some("Choose a password other than the one you were given."));
    }
    let Ok(hash) = password::hash(&new) else { return refusal_page("The server could not save the password.") };
    account.password_hash = hash;
    account.must_change_password = false;
    account.updated = now_ms();
    if repo.put_account(&account, false, "account-change-password").await.is_err()
        || repo.take_auth_record("pending", &hash_secret(&pending)).await.is_err()
    {
        return refusal_page("The server could not save the password.");
    }
    let next = safe_next(rec["next"].as_str().map(str::to_string).as_ref());
    signed_in(&st, &account, next).await
}

/// `POST /auth/logout`.
pub async fn logout(State(st): St, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    if let Some((account, csrf)) = session(&st, &headers).await
        && p.get("csrf").is_some_and(|t| same(t, &csrf))
        && let Some(sid) = cookie(&headers, SESSION_COOKIE)
    {
        let repo = st.system();
        let _ = repo.take_auth_record("session", &hash_secret(&sid)).await;
        let _ = repo.audit_auth_event("logout", &format!("user:{}", account.username), None).await;
    }
    // back to the sign-in page, which leads to the page signed out of when signed in again
    let to = match safe_next(p.get("next")) {
        Some(n) => format!("/auth/login?next={}", form_encode(&n)),
        None => "/auth/login".to_string(),
    };
    let mut r = Redirect::to(&to).into_response();
    if let Ok(v) = set_cookie(&st, SESSION_COOKIE, "", Some(0)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// The kind of the records of portal invitations (by the hash of their code).
pub const INVITATION: &str = "invitation";

/// An invitation's record, when its code is live.
async fn invitation(st: &AuthState, code: &str) -> Option<serde_json::Value> {
    if code.is_empty() || code.len() > 100 {
        return None;
    }
    st.system().auth_record(INVITATION, &hash_secret(code)).await.ok().flatten()
}

const BAD_INVITATION: &str = "This invitation is not valid: it was used already, it expired, or the link is incomplete. Ask your care team for a new one.";

fn activate_form(
    st: &AuthState,
    code: &str,
    name: &str,
    error: Option<&str>,
    typed: &str,
    status: StatusCode,
) -> Response {
    let token = random_secret();
    let err = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<h1>Your patient portal account</h1><p class=\"sub\">for {name}: choose the name and password you will sign in with</p>{err}\
         <form method=\"post\" action=\"/auth/activate\"><input type=\"hidden\" name=\"code\" value=\"{code}\"><input type=\"hidden\" name=\"login_csrf\" value=\"{token}\">\
         <label for=\"username\">User name</label><input id=\"username\" name=\"username\" autocomplete=\"username\" required autofocus value=\"{typed}\">\
         <label for=\"password\">Password <small>(at least 12 characters)</small></label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required>\
         <label for=\"again\">The password again</label><input id=\"again\" name=\"again\" type=\"password\" autocomplete=\"new-password\" required>\
         <div class=\"row\"><button type=\"submit\">Create my account</button></div></form>",
        name = esc(name),
        code = esc(code),
        typed = esc(typed),
    );
    let mut r = html(status, "Your portal account", &body);
    if let Ok(v) = set_cookie(st, LOGIN_COOKIE, &token, Some(1800)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

/// `GET /auth/activate?code=...`: the form to open the portal account an invitation
/// promises.
pub async fn activate_page(State(st): St, Query(p): Query<Params>) -> Response {
    let code = p.get("code").cloned().unwrap_or_default();
    match invitation(&st, &code).await {
        Some(inv) => activate_form(&st, &code, inv["name"].as_str().unwrap_or("you"), None, "", StatusCode::OK),
        None => html(
            StatusCode::NOT_FOUND,
            "Invitation not valid",
            &format!("<h1>Invitation not valid</h1><p class=\"error\" role=\"alert\">{}</p>", esc(BAD_INVITATION)),
        ),
    }
}

/// `POST /auth/activate`: the account made from the invitation (once: the invitation is
/// taken as the account is made), signed in, to the portal.
pub async fn activate(State(st): St, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    let code = p.get("code").cloned().unwrap_or_default();
    let typed = p.get("username").cloned().unwrap_or_default();
    let Some(inv) = invitation(&st, &code).await else {
        return html(
            StatusCode::NOT_FOUND,
            "Invitation not valid",
            &format!("<h1>Invitation not valid</h1><p class=\"error\" role=\"alert\">{}</p>", esc(BAD_INVITATION)),
        );
    };
    let name = inv["name"].as_str().unwrap_or("you").to_string();
    let refuse = |msg: &str| activate_form(&st, &code, &name, Some(msg), &typed, StatusCode::BAD_REQUEST);
    match (cookie(&headers, LOGIN_COOKIE), p.get("login_csrf")) {
        (Some(a), Some(b)) if same(&a, b) => {}
        _ => return refuse("The form expired. Please try again."),
    }
    let username = match hale_identity::fold_username(&typed) {
        Ok(u) => u,
        Err(e) => return refuse(&e.to_string()),
    };
    let pw = p.get("password").cloned().unwrap_or_default();
    if let Err(e) = password::check_rule(&pw) {
        return refuse(&e.to_string());
    }
    if p.get("again").map(String::as_str) != Some(pw.as_str()) {
        return refuse("The two passwords are not the same.");
    }
    let repo = st.system();
    match repo.account_by_username(&username).await {
        Ok(None) => {}
        Ok(Some(_)) => return refuse("That user name is taken; choose another."),
        Err(_) => return refuse("The server could not complete this; try again."),
    }
    let Some(patient) = inv["patient"].as_str().map(str::to_string) else { return refuse(BAD_INVITATION) };
    let Ok(hash) = password::hash(&pw) else { return refuse("The server could not complete this; try again.") };
    // the invitation is used once: of two forms sent at once, one gets it
    let key = hash_secret(&code);
    match repo.take_auth_record(INVITATION, &key).await {
        Ok(Some(_)) => {}
        _ => return refuse(BAD_INVITATION),
    }
    let now = now_ms();
    let account = Account {
        id: uuid::Uuid::now_v7().to_string(),
        username: username.clone(),
        display_name: name.clone(),
        role: Role::Patient.code().to_string(),
        fhir_user: Some(format!("Patient/{patient}")),
        organization: None,
        patients: vec![patient],
        password_hash: hash,
        must_change_password: false,
        totp_secret: None,
        totp_confirmed: false,
        totp_last_step: 0,
        disabled: false,
        created: now,
        updated: now,
    };
    if let Err(e) = repo.put_account(&account, true, "account-activate").await {
        tracing::warn!(error = %e, "a portal account could not be made from an invitation");
        // the invitation is given back: nothing was made
        let expires = inv["expires"].as_i64();
        let _ = repo.put_auth_record(INVITATION, &key, &inv, expires, None).await;
        return refuse("The account could not be made; try again, or choose another user name.");
    }
    let _ = repo.audit_auth_event("login", &format!("user:{username}"), None).await;
    signed_in(&st, &account, Some("/portal".to_string())).await
}

/// The kind of the records of staff-issued password-reset links (by the hash of their
/// code).
pub const RESET: &str = "password-reset";

const BAD_RESET: &str =
    "This link is not valid: it was used already, it expired, or it is incomplete. Ask your care team for a new one.";

fn reset_form(st: &AuthState, code: &str, who: &str, error: Option<&str>, status: StatusCode) -> Response {
    let token = random_secret();
    let err = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))).unwrap_or_default();
    let body = format!(
        "<h1>A new password</h1><p class=\"sub\">for the account {who}</p>{err}\
         <form method=\"post\" action=\"/auth/reset\"><input type=\"hidden\" name=\"code\" value=\"{code}\"><input type=\"hidden\" name=\"login_csrf\" value=\"{token}\">\
         <label for=\"password\">New password <small>(at least 12 characters)</small></label><input id=\"password\" name=\"password\" type=\"password\" autocomplete=\"new-password\" required autofocus>\
         <label for=\"again\">The password again</label><input id=\"again\" name=\"again\" type=\"password\" autocomplete=\"new-password\" required>\
         <div class=\"row\"><button type=\"submit\">Set the password</button></div></form>",
        who = esc(who),
        code = esc(code),
    );
    let mut r = html(status, "A new password", &body);
    if let Ok(v) = set_cookie(st, LOGIN_COOKIE, &token, Some(1800)).parse() {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

fn bad_reset() -> Response {
    html(
        StatusCode::NOT_FOUND,
        "Link not valid",
        &format!("<h1>Link not valid</h1><p class=\"error\" role=\"alert\">{}</p>", esc(BAD_RESET)),
    )
}

/// The account a live reset code is for.
async fn reset_account(st: &AuthState, code: &str) -> Option<Account> {
    if code.is_empty() || code.len() > 100 {
        return None;
    }
    let repo = st.system();
    let rec = repo.auth_record(RESET, &hash_secret(code)).await.ok().flatten()?;
    repo.account_by_id(rec["account"].as_str()?).await.ok().flatten().filter(|a| !a.disabled)
}

/// `GET /auth/reset?code=...`: the form for a new password.
pub async fn reset_page(State(st): St, Query(p): Query<Params>) -> Response {
    let code = p.get("code").cloned().unwrap_or_default();
    match reset_account(&st, &code).await {
        Some(a) => reset_form(&st, &code, &a.username, None, StatusCode::OK),
        None => bad_reset(),
    }
}

/// `POST /auth/reset`: the new password set (the account's tokens and other sessions
/// end, as with every password change), the link used up, signed in to the portal.
pub async fn reset(State(st): St, headers: HeaderMap, Form(p): Form<Params>) -> Response {
    let code = p.get("code").cloned().unwrap_or_default();
    let Some(mut account) = reset_account(&st, &code).await else { return bad_reset() };
    let refuse = |msg: &str| reset_form(&st, &code, &account.username, Some(msg), StatusCode::BAD_REQUEST);
    match (cookie(&headers, LOGIN_COOKIE), p.get("login_csrf")) {
        (Some(a), Some(b)) if same(&a, b) => {}
        _ => return refuse("The form expired. Please try again."),
    }
    let pw = p.get("password").cloned().unwrap_or_default();
    if let Err(e) = password::check_rule(&pw) {
        return refuse(&e.to_string());
    }
    if p.get("again").map(String::as_str) != Some(pw.as_str()) {
        return refuse("The two passwords are not the same.");
    }
    let Ok(hash) = password::hash(&pw) else { return refuse("The server could not complete this; try again.") };
    let repo = st.system();
    match repo.take_auth_record(RESET, &hash_secret(&code)).await {
        Ok(Some(_)) => {}
        _ => return bad_reset(),
    }
    account.password_hash = hash;
    account.must_change_password = false;
    account.updated = now_ms();
    if repo.put_account(&account, false, "account-password-reset").await.is_err() {
        return refuse("The password could not be set; ask your care team for a new link.");
    }
    let _ = repo.audit_auth_event("login", &format!("user:{}", account.username), None).await;
    let next = if account.role == Role::Patient.code() { "/portal" } else { "/auth/login" };
    signed_in(&st, &account, Some(next.to_string())).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(esc("<b a=\"x\">&'"), "&lt;b a=&quot;x&quot;&gt;&amp;&#39;");
    }

    #[test]
    fn only_authorize_urls_are_followed_after_sign_in() {
        assert!(safe_next(Some(&"/auth/authorize?client_id=x".to_string())).is_some());
        for bad in
            ["https://evil.example/", "//evil.example/auth/authorize?", "/auth/authorize?x=//evil", "/fhir/Patient"]
        {
            assert!(safe_next(Some(&bad.to_string())).is_none(), "{bad}");
        }
    }

    #[test]
    fn scopes_are_described_in_plain_words() {
        let s = Scopes::parse("patient/Observation.rs openid fhirUser offline_access", true).unwrap();
        let d = describe(&s, Role::Patient, false);
        assert_eq!(d[0], "Read, search Observation records in your record");
        assert!(d.iter().any(|x| x.starts_with("Know who you are")));
        assert!(d.iter().any(|x| x.starts_with("Stay connected")));
        let staff = Scopes::parse("launch patient/Observation.rs", true).unwrap();
        assert_eq!(describe(&staff, Role::Clinician, true)[0], "Read, search Observation records of this patient");
        assert_eq!(
            describe(&staff, Role::Clinician, false)[0],
            "Read, search Observation records of the patient you choose"
        );
    }
}
