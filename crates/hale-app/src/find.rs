//! `GET /app`: find a patient by name, birth date or medical record number; with no
//! query, the patients viewed recently and "my patients" (the user's own as general
//! practitioner, else their organization's).

use std::collections::HashMap;

use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use crate::fhir::{age, day, mrns, person_name};
use crate::layout::{page, respond};
use crate::{Session, failure, recent_patients, search};

const RESULTS: usize = 50;

/// What a query in the one search box asks for.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// `YYYY-MM-DD` (or `YYYY-MM`, `YYYY`): a birth date.
    BirthDate(String),
    /// A single word with a digit in it: an identifier (any system).
    Identifier(String),
    /// Words: each must begin a part of the name.
    Name(Vec<String>),
}

/// Reads the search box; `Err` is a message for the person who typed it.
pub(crate) fn wanted(q: &str) -> Result<Wanted, String> {
    let q = q.trim();
    if q.is_empty() {
        return Err("Type a name, a birth date or a medical record number.".into());
    }
    if q.chars().count() > 100 {
        return Err("That is too long for a name, a date or a record number.".into());
    }
    let datelike = q.chars().all(|c| c.is_ascii_digit() || c == '-') && q.starts_with(|c: char| c.is_ascii_digit());
    if datelike && q.contains('-') {
        let parts: Vec<&str> = q.split('-').collect();
        let ok = match parts.as_slice() {
            [y, m, d] => y.len() == 4 && m.len() == 2 && d.len() == 2 && valid(y, m, Some(d)),
            [y, m] => y.len() == 4 && m.len() == 2 && valid(y, m, None),
            _ => false,
        };
        return if ok {
            Ok(Wanted::BirthDate(q.to_string()))
        } else {
            Err(format!("'{q}' is not a date: write a birth date as YYYY-MM-DD, e.g. 1980-02-03."))
        };
    }
    if q.len() == 4 && q.chars().all(|c| c.is_ascii_digit()) && (1850..=2200).contains(&q.parse::<u32>().unwrap_or(0)) {
        return Ok(Wanted::BirthDate(q.to_string()));
    }
    if !q.contains(char::is_whitespace) && q.chars().any(|c| c.is_ascii_digit()) {
        return Ok(Wanted::Identifier(q.to_string()));
    }
    let words: Vec<String> =
        q.split(|c: char| c.is_whitespace() || c == ',').filter(|w| !w.is_empty()).map(str::to_string).collect();
    if words.iter().any(|w| w.contains(['$', '|', '\\'])) {
        return Err("A name has letters, spaces, hyphens and apostrophes.".into());
    }
    Ok(Wanted::Name(words))
}

fn valid(y: &str, m: &str, d: Option<&str>) -> bool {
    let (Ok(_), Ok(m)) = (y.parse::<u32>(), m.parse::<u32>()) else { return false };
    let d_ok = d.is_none_or(|d| d.parse::<u32>().is_ok_and(|d| (1..=31).contains(&d)));
    (1..=12).contains(&m) && d_ok
}

/// `GET /app?q=...`.
pub(crate) async fn home(session: Session, Query(params): Query<HashMap<String, String>>) -> Response {
    let q = params.get("q").map(String::as_str).unwrap_or("").trim().to_string();
    if q.is_empty() {
        return lists(&session).await;
    }
    let (results, error) = match wanted(&q) {
        Err(message) => (None, Some(message)),
        Ok(w) => {
            let pairs: Vec<(&str, String)> = match &w {
                Wanted::BirthDate(d) => vec![("birthdate", d.clone())],
                Wanted::Identifier(i) => vec![("identifier", escape_token(i))],
                Wanted::Name(words) => words.iter().map(|w| ("name", escape_token(w))).collect(),
            };
            let mut pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
            pairs.push(("_sort", "family,given"));
            match search(&session.repo, "Patient", &pairs, RESULTS).await {
                Ok(r) => (Some(r), None),
                Err(e) => return failure(&session, &e),
            }
        }
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = html! {
        (find_form(&q, error.as_deref()))
        @if let Some(r) = &results {
            section.card aria-labelledby="results-h" {
                h2 #results-h { "Patients matching “" (q) "” (" (r.len()) @if r.len() == RESULTS { "+" } ")" }
                @if r.is_empty() {
                    p.empty { "No patient in your care matches. Check the spelling, or search by birth date or record number." }
                } @else {
                    (patient_table(session.zone.today(), r))
                }
            }
        }
    };
    respond(status, page("Find a patient", Some(&session), body))
}

/// A search value with FHIR's search escapes (`\`, `,`, `$`, `|`).
fn escape_token(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '$' | '|') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn find_form(q: &str, error: Option<&str>) -> Markup {
    html! {
        form.find method="get" action="/app" role="search" {
            label for="q" { "Find a patient" }
            div.row {
                input #q type="search" name="q" value=(q) autofocus autocomplete="off"
                    aria-describedby=(if error.is_some() { "q-hint q-error" } else { "q-hint" });
                button.primary type="submit" { "Search" }
            }
            p.hint #q-hint { "Name (e.g. “Alvarez Ana”), birth date (YYYY-MM-DD) or medical record number." }
            @if let Some(e) = error {
                p.error #q-error role="alert" { (e) }
            }
        }
    }
}

/// Patients as a table, their ages on `today` (the installation's).
pub(crate) fn patient_table(today: (i64, u32, u32), patients: &[Value]) -> Markup {
    let now = today;
    html! {
        table {
            thead { tr { th { "Name" } th { "Born" } th.hide-narrow { "Sex" } th { "MRN" } } }
            tbody {
                @for p in patients {
                    @let id = p["id"].as_str().unwrap_or("");
                    @let birth = day(&p["birthDate"]);
                    tr {
                        td { a href={ "/app/patient/" (id) } { (person_name(p)) } }
                        td.date { (birth) @if let Some(a) = age(&birth, now) { " (" (a) ")" } }
                        td.hide-narrow { (p["gender"].as_str().unwrap_or("")) }
                        td.num { (mrns(p).join(", ")) }
                    }
                }
            }
        }
    }
}

/// "My patients": those whose general practitioner the user is or whose care team they
/// are in (else their organization's), with the list's title.
pub(crate) async fn my_patients(session: &Session) -> (&'static str, Result<Vec<Value>, hale_repository::Error>) {
    my_patients_up_to(session, RESULTS).await
}

/// As [`my_patients`], at most `limit` of them (a panel page reads more than a list
/// shows).
pub(crate) async fn my_patients_up_to(
    session: &Session,
    limit: usize,
) -> (&'static str, Result<Vec<Value>, hale_repository::Error>) {
    match (session.account.fhir_user.as_deref(), session.account.organization.as_deref()) {
        (Some(pr), _) if pr.starts_with("Practitioner/") => {
            // those whose general practitioner they are, and those whose care team they are in
            let gp = [("general-practitioner", pr), ("_sort", "family,given")];
            let team = [("_has:CareTeam:patient:participant", pr), ("_sort", "family,given")];
            let (gp, team) = tokio::join!(
                search(&session.repo, "Patient", &gp, limit),
                search(&session.repo, "Patient", &team, limit)
            );
            let both = gp.and_then(|mut g| {
                for p in team? {
                    if !g.iter().any(|x| x["id"] == p["id"]) {
                        g.push(p);
                    }
                }
                g.sort_by_key(crate::fhir::person_name);
                g.truncate(limit);
                Ok(g)
            });
            ("My patients", both)
        }
        (_, Some(org)) => (
            "Patients of my organization",
            search(
                &session.repo,
                "Patient",
                &[("organization", &format!("Organization/{org}")), ("_sort", "family,given")],
                limit,
            )
            .await,
        ),
        _ => ("My patients", Ok(Vec::new())),
    }
}

/// The page with no query: recently viewed patients and my patients.
async fn lists(session: &Session) -> Response {
    let recent_ids = recent_patients(&session.gate, &session.account).await;
    let recent = if recent_ids.is_empty() {
        Vec::new()
    } else {
        match search(&session.repo, "Patient", &[("_id", &recent_ids.join(","))], recent_ids.len()).await {
            // in the order viewed
            Ok(found) => recent_ids
                .iter()
                .filter_map(|id| found.iter().find(|p| p["id"].as_str() == Some(id.as_str())).cloned())
                .collect(),
            Err(e) => return failure(session, &e),
        }
    };
    let (mine_title, mine) = my_patients(session).await;
    let mine = match mine {
        Ok(m) => m,
        Err(e) => return failure(session, &e),
    };
    let body = html! {
        (find_form("", None))
        div.lists {
            section.card aria-labelledby="recent-h" {
                h2 #recent-h { "Recently viewed" }
                @if recent.is_empty() { p.empty { "No chart opened yet." } } @else { (patient_table(session.zone.today(), &recent)) }
            }
            section.card aria-labelledby="mine-h" {
                h2 #mine-h { (mine_title) " (" (mine.len()) @if mine.len() == RESULTS { "+" } ")" }
                @if mine.is_empty() { p.empty { "No patient is linked to you yet." } } @else { (patient_table(session.zone.today(), &mine)) }
            }
        }
    };
    respond(StatusCode::OK, page("Find a patient", Some(session), body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_search_box_tells_dates_identifiers_and_names_apart() {
        assert_eq!(wanted("1980-02-03"), Ok(Wanted::BirthDate("1980-02-03".into())));
        assert_eq!(wanted("1980"), Ok(Wanted::BirthDate("1980".into())));
        assert_eq!(wanted("MRN-000123"), Ok(Wanted::Identifier("MRN-000123".into())));
        assert_eq!(wanted("  Alvarez,  Ana "), Ok(Wanted::Name(vec!["Alvarez".into(), "Ana".into()])));
        assert_eq!(wanted("O'Brien"), Ok(Wanted::Name(vec!["O'Brien".into()])));
        assert!(wanted("1980-13-01").is_err());
        assert!(wanted("1980-02-3").is_err());
        assert!(wanted("").is_err());
        assert!(wanted(&"a".repeat(101)).is_err());
        assert_eq!(escape_token("a,b$c|d\\"), "a\\,b\\$c\\|d\\\\");
    }
}
