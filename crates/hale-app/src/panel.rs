//! `GET /app/due`: preventive care due across the user's patients ("my patients"), the
//! patients with the most due first; `?rule=` narrows it to the patients due for one rule. Four searches over all of them at once (problems,
//! immunizations, the observations the rules read), grouped by patient, then
//! `hale_cds::preventive::due` for each.

use axum::http::StatusCode;
use axum::response::Response;
use maud::html;
use serde_json::Value;

use crate::fhir::{day, person_name};
use crate::find::my_patients;
use crate::layout::{page, respond};
use crate::{Session, failure, search};

/// The most results one search of the panel reads.
const PANEL_ROWS: usize = 20_000;

/// The most patients a panel page counts.
const PANEL_PATIENTS: usize = 5000;

/// The day a year before `today` (`YYYY-MM-DD`; 29 February becomes the 28th).
fn year_ago(today: &str) -> String {
    let y: i32 = today.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(1970);
    let md = today.get(5..10).unwrap_or("01-01");
    let md = if md == "02-29" { "02-28" } else { md };
    format!("{:04}-{md}", y - 1)
}

/// The LOINC codes the preventive rules read, for the observations search.
pub(crate) fn observation_codes() -> String {
    hale_cds::preventive::loinc_codes().iter().map(|c| format!("http://loinc.org|{c}")).collect::<Vec<_>>().join(",")
}

/// The SNOMED CT codes of the procedures the preventive rules read.
pub(crate) fn procedure_codes() -> String {
    hale_cds::preventive::procedure_codes()
        .iter()
        .map(|c| format!("http://snomed.info/sct|{c}"))
        .collect::<Vec<_>>()
        .join(",")
}

fn of(all: &[Value], field: &str, patient: &str) -> Vec<Value> {
    let want = format!("Patient/{patient}");
    all.iter().filter(|r| r[field]["reference"].as_str() == Some(want.as_str())).cloned().collect()
}

/// `GET /app/due`, with `rule` (a rule's id) to show who is due for that one only.
pub(crate) async fn due(
    session: Session,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let asked = q.get("rule").map(|r| r.trim()).filter(|r| !r.is_empty());
    let rule = asked.and_then(|r| hale_cds::preventive::RULES.iter().find(|x| x.id == r));
    let unknown = asked.filter(|_| rule.is_none());
    let (title, mine) = my_patients(&session).await;
    let patients = match mine {
        Ok(p) => p,
        Err(e) => return failure(&session, &e),
    };
    let ids: Vec<&str> = patients.iter().filter_map(|p| p["id"].as_str()).collect();
    let mut rows: Vec<(&Value, Vec<hale_cds::preventive::Due>)> = Vec::new();
    let mut truncated = false;
    if !ids.is_empty() {
        let list = ids.join(",");
        let codes = observation_codes();
        let q_cond = [("patient", list.as_str()), ("clinical-status", "active,recurrence,relapse")];
        let q_imm = [("patient", list.as_str())];
        let q_obs = [("patient", list.as_str()), ("code", codes.as_str())];
        let procs = procedure_codes();
        let q_proc = [("patient", list.as_str()), ("code", procs.as_str())];
        let repo = &session.repo;
        let (conditions, immunizations, observations, procedures) = tokio::join!(
            search(repo, "Condition", &q_cond, PANEL_ROWS),
            search(repo, "Immunization", &q_imm, PANEL_ROWS),
            search(repo, "Observation", &q_obs, PANEL_ROWS),
            search(repo, "Procedure", &q_proc, PANEL_ROWS),
        );
        let (conditions, immunizations, mut observations, procedures) =
            match (conditions, immunizations, observations, procedures) {
                (Ok(c), Ok(i), Ok(o), Ok(p)) => (c, i, o, p),
                (Err(e), _, _, _) | (_, Err(e), _, _) | (_, _, Err(e), _) | (_, _, _, Err(e)) => {
                    return failure(&session, &e);
                }
            };
        truncated = [conditions.len(), immunizations.len(), observations.len(), procedures.len()].contains(&PANEL_ROWS);
        observations.extend(procedures);
        let today = session.zone.today_text();
        for p in &patients {
            let id = p["id"].as_str().unwrap_or("");
            let due = hale_cds::preventive::due(
                p,
                &today,
                &of(&conditions, "subject", id),
                &of(&immunizations, "patient", id),
                &of(&observations, "subject", id),
            );
            rows.push((p, due));
        }
        if let Some(r) = rule {
            // one rule: the patients due for it, and only it
            for (_, due) in rows.iter_mut() {
                due.retain(|d| d.rule == r.id);
            }
            rows.retain(|(_, due)| !due.is_empty());
        }
        rows.sort_by_key(|(p, d)| (std::cmp::Reverse(d.len()), person_name(p)));
    }
    let total: usize = rows.iter().map(|r| r.1.len()).sum();
    let status = if unknown.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = html! {
        section.card aria-labelledby="due-h" {
            h1 #due-h {
                "Preventive care due · " (title) " (" (rows.len()) ")"
                @if let Some(r) = rule { " · " (r.title) }
            }
            form.filters method="get" action="/app/due" {
                label for="rule" { "Show who is due for" }
                div.row {
                    select #rule name="rule" aria-describedby=[unknown.map(|_| "rule-error")] {
                        option value="" selected[rule.is_none()] { "Any rule" }
                        @for r in hale_cds::preventive::RULES {
                            option value=(r.id) selected[rule.is_some_and(|x| x.id == r.id)] { (r.title) }
                        }
                    }
                    button.primary type="submit" { "Show" }
                }
                @if let Some(u) = unknown {
                    p.error #rule-error role="alert" { "There is no rule “" (u) "”; every rule is shown." }
                }
            }
            p.hint { (total) @if total == 1 { " item due." } @else { " items due." } " Each rule's source is on the patient's chart; " code { "hale cds list" } " lists them all." }
            @if truncated { p.error role="alert" { "Some lists were too long to read whole; open each chart for the full picture." } }
            @if rows.is_empty() {
                p.empty {
                    @if rule.is_some() { "None of your patients is due for this." } @else { "No patient is linked to you yet." }
                }
            } @else {
                table.due {
                    thead { tr { th { "Patient" } th { "Born" } th { "Due" } } }
                    tbody {
                        @for (p, due) in &rows {
                            tr {
                                td { a href={ "/app/patient/" (p["id"].as_str().unwrap_or("")) } { (person_name(p)) } }
                                td.date { (day(&p["birthDate"])) }
                                td {
                                    @if due.is_empty() { span.muted { "nothing" } } @else {
                                        (due.iter().map(|d| d.title).collect::<Vec<_>>().join("; "))
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(status, page("Preventive care due", Some(&session), body))
}

/// `GET /app/measures`: quality measures over "my patients" — each measure's rate, and
/// the patients to act on with what their chart shows. Four searches over the panel.
pub(crate) async fn measures(session: Session) -> Response {
    use hale_cds::measures::{MEASURES, Tally, evaluate};
    let (title, mine) = crate::find::my_patients_up_to(&session, PANEL_PATIENTS).await;
    let patients = match mine {
        Ok(p) => p,
        Err(e) => return failure(&session, &e),
    };
    let ids: Vec<&str> = patients.iter().filter_map(|p| p["id"].as_str()).collect();
    let (mut conditions, mut immunizations, mut observations) = (Vec::new(), Vec::new(), Vec::new());
    let mut truncated = false;
    if !ids.is_empty() {
        let list = ids.join(",");
        let codes = ["4548-4", "17856-6", "85354-9", "55284-4"]
            .iter()
            .map(|c| format!("http://loinc.org|{c}"))
            .collect::<Vec<_>>()
            .join(",");
        // the measures read the year up to today: nothing older is fetched
        let since = format!("ge{}", year_ago(&session.zone.today_text()));
        let q_cond = [("patient", list.as_str()), ("clinical-status", "active,recurrence,relapse")];
        let q_imm = [("patient", list.as_str()), ("date", since.as_str())];
        let q_obs = [("patient", list.as_str()), ("code", codes.as_str()), ("date", since.as_str())];
        let repo = &session.repo;
        let (c, i, o) = tokio::join!(
            search(repo, "Condition", &q_cond, PANEL_ROWS),
            search(repo, "Immunization", &q_imm, PANEL_ROWS),
            search(repo, "Observation", &q_obs, PANEL_ROWS),
        );
        (conditions, immunizations, observations) = match (c, i, o) {
            (Ok(c), Ok(i), Ok(o)) => (c, i, o),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => return failure(&session, &e),
        };
        truncated = [conditions.len(), immunizations.len(), observations.len()].contains(&PANEL_ROWS)
            || patients.len() == PANEL_PATIENTS;
    }
    let today = session.zone.today_text();
    let tallies: Vec<Tally> = MEASURES
        .iter()
        .map(|m| {
            let mut places: Vec<_> = patients
                .iter()
                .filter_map(|p| {
                    let id = p["id"].as_str().unwrap_or("");
                    evaluate(
                        m,
                        p,
                        &today,
                        &of(&conditions, "subject", id),
                        &of(&observations, "subject", id),
                        &of(&immunizations, "patient", id),
                    )
                    .map(|place| (p, place))
                })
                .collect();
            places.sort_by_key(|(p, _)| person_name(p));
            Tally { measure: m, places }
        })
        .collect();
    let body = html! {
        section.card aria-labelledby="m-h" {
            h1 #m-h { "Quality measures · " (title) " (" (patients.len()) @if patients.len() == 1 { " patient)" } @else { " patients)" } }
            p.hint { "The year up to " (today) ". Exclusions the chart cannot know (hospice, palliative care) are not applied." }
            @if truncated { p.error role="alert" { "The panel or its records were too many to read whole (at most " (PANEL_PATIENTS) " patients); the figures cover those read." } }
            table {
                thead { tr { th { "Measure" } th.num { "Counted" } th.num { "Met" } th.num { "Rate" } th.hide-narrow { "Better" } } }
                tbody {
                    @for t in &tallies {
                        tr {
                            td { a href={ "#" (t.measure.id) } { (t.measure.title) } }
                            td.num { (t.denominator()) }
                            td.num { (t.numerator()) }
                            td.num { @match t.rate() { Some(r) => { (format!("{r:.0}%")) }, None => { "–" } } }
                            td.hide-narrow { @if t.measure.inverse { "lower" } @else { "higher" } }
                        }
                    }
                }
            }
        }
        @for t in &tallies {
            section.card id=(t.measure.id) aria-labelledby={ (t.measure.id) "-h" } {
                h2 id={ (t.measure.id) "-h" } { (t.measure.title) }
                p.muted { (t.measure.denominator) "; met: " (t.measure.numerator) ". Source: " (t.measure.source) "." }
                @let gaps: Vec<_> = t.gaps().collect();
                @if gaps.is_empty() {
                    p.empty { "No patient to act on." }
                } @else {
                    table {
                        thead { tr { th { "To act on (" (gaps.len()) ")" } th { "Born" } th { "The chart shows" } } }
                        tbody {
                            @for (p, place) in gaps {
                                tr {
                                    td { a href={ "/app/patient/" (p["id"].as_str().unwrap_or("")) } { (person_name(p)) } }
                                    td.date { (day(&p["birthDate"])) }
                                    td { (place.why) }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    respond(StatusCode::OK, page("Quality measures", Some(&session), body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_year_ago() {
        assert_eq!(super::year_ago("2026-12-07"), "2025-12-07");
        assert_eq!(super::year_ago("2028-02-29"), "2027-02-28");
    }
}
