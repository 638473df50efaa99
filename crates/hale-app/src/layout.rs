//! The page shell every page of the application shares: the top bar (who is signed in,
//! sign out), one stylesheet, and the headers that keep a page private and inert
//! (no caching, no framing, no script or style from anywhere but this server).

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, html};

use crate::Session;

/// The stylesheet, compiled in.
pub(crate) const CSS: &str = include_str!("../assets/app.css");

/// The address of the stylesheet; the version makes a new binary's stylesheet a new URL.
pub(crate) const CSS_PATH: &str = concat!("/app/static/app.css?v=", env!("CARGO_PKG_VERSION"));

/// The script (the idle-timeout warning), compiled in.
pub(crate) const JS: &str = include_str!("../assets/app.js");

/// The address of the script.
pub(crate) const JS_PATH: &str = concat!("/app/static/app.js?v=", env!("CARGO_PKG_VERSION"));

/// A whole page: the shell around `body`, titled `title`.
pub(crate) fn page(title: &str, session: Option<&Session>, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width,initial-scale=1";
                title { (title) " · Hale" }
                link rel="stylesheet" href=(CSS_PATH);
                @if session.is_some() { script src=(JS_PATH) defer {} }
            }
            body data-idle-seconds=[session.map(|_| hale_auth::SESSION_IDLE.as_secs())] {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/app" { "Hale" }
                    @if let Some(s) = session {
                        nav aria-label="Main" {
                            a href="/app" { "Find patient" }
                            a href="/app/inbox" { "Inbox" }
                            a href="/app/due" { "Due" }
                            a href="/app/measures" { "Measures" }
                        }
                        div.who {
                            span { (s.account.display_name) } " "
                            span.role { (s.role_label()) }
                            form.signout method="post" action="/auth/logout" {
                                input type="hidden" name="csrf" value=(s.csrf);
                                input type="hidden" name="next" value="/app";
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main #main { (body) }
                @if let Some(s) = session {
                    footer.zone { (s.zone.note()) }
                    footer.print-only { "Printed from Hale on " (s.zone.today_text()) " by " (s.account.display_name) ". Confidential health information." }
                }
            }
        }
    }
}

/// A page as a response with the headers every page carries.
pub(crate) fn respond(status: StatusCode, markup: Markup) -> Response {
    let mut r = (status, Html(markup.into_string())).into_response();
    let h = r.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-frame-options", HeaderValue::from_static("DENY"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    h.insert("referrer-policy", HeaderValue::from_static("same-origin"));
    h.insert(
        "content-security-policy",
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; script-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    r
}

/// A page that says why nothing else is shown (no such patient, not in your care,
/// the store is unavailable).
pub(crate) fn problem(status: StatusCode, session: Option<&Session>, title: &str, message: &str) -> Response {
    respond(
        status,
        page(
            title,
            session,
            html! {
                section.card.narrow {
                    h1 { (title) }
                    p role="alert" { (message) }
                    p { a href="/app" { "Find a patient" } }
                }
            },
        ),
    )
}

/// `GET /app/static/app.css`.
pub(crate) async fn stylesheet() -> Response {
    asset(CSS, "text/css; charset=utf-8")
}

/// `GET /app/static/app.js`.
pub(crate) async fn script() -> Response {
    asset(JS, "text/javascript; charset=utf-8")
}

/// `GET /app/keepalive`: a page's script keeps the session from its idle timeout (the
/// session extractor restarts it).
pub(crate) async fn keepalive(_session: Session) -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn asset(text: &'static str, content_type: &'static str) -> Response {
    let mut r = text.into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=86400"));
    h.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    r
}
