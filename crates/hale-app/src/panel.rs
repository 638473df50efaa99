//! `GET /app/due`: preventive care due across the user's patients ("my patients"), the
//! patients with the most due first; `?rule=` narrows it to the patients due for one rule. Four searches over all of them at once (problems,
//! immunizations, the observations the rules read), grouped by patient, then
//! `hale_cds::preventive::due` for each.

use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use crate::fhir::{day, person_name};
use crate::find::my_patients;
use crate::layout::{page, respond};
use crate::{Session, failure, search};

/// The most results one search of the panel reads.
const PANEL_ROWS: usize = 20_000;

/// The most patients a panel page counts.
const PANEL_PATIENTS: usize = 5000;

/// The LOINC and SNOMED CT codes the preventive rules read, for the observations search.
pub(crate) fn observation_codes() -> String {
    let loinc = hale_cds::preventive::loinc_codes().into_iter().map(|c| format!("http://loinc.org|{c}"));
    let snomed =
        hale_cds::preventive::snomed_observation_codes().into_iter().map(|c| format!("http://snomed.info/sct|{c}"));
    loinc.chain(snomed).collect::<Vec<_>>().join(",")
}

/// The SNOMED CT codes of the procedures the preventive rules read (ways of screening
/// and exclusions).
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

/// Who of "my patients" is due for what: the panel's title, each patient with the care
/// due (only `rule`'s when given, and then only the patients due for it), the patients
/// with the most due first, and whether a list was too long to read whole.
struct DueRows {
    title: &'static str,
    rows: Vec<(Value, Vec<hale_cds::preventive::Due>)>,
    truncated: bool,
}

/// An age range asked for (years, both ends included).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Ages {
    from: Option<u32>,
    to: Option<u32>,
}

impl Ages {
    /// From a request's `age_from` and `age_to`: `Err` with the field and what is wrong.
    fn asked(get: impl Fn(&str) -> Option<String>) -> Result<Ages, (&'static str, &'static str)> {
        let read = |k: &'static str| -> Result<Option<u32>, (&'static str, &'static str)> {
            match get(k).map(|v| v.trim().to_string()).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= 130)
                    .map(Some)
                    .ok_or((k, "An age is a whole number of years, 0 to 130.")),
            }
        };
        let ages = Ages { from: read("age_from")?, to: read("age_to")? };
        match (ages.from, ages.to) {
            (Some(f), Some(t)) if f > t => Err(("age_to", "The range ends before it starts.")),
            _ => Ok(ages),
        }
    }

    fn admits(&self, patient: &Value, today: &str) -> bool {
        if self.from.is_none() && self.to.is_none() {
            return true;
        }
        let Some(age) = patient["birthDate"].as_str().and_then(|b| hale_cds::preventive::years_between(b, today))
        else {
            return false;
        };
        self.from.is_none_or(|f| age >= f) && self.to.is_none_or(|t| age <= t)
    }
}

async fn due_rows(session: &Session, rule: Option<&RuleName>, ages: Ages) -> Result<DueRows, hale_repository::Error> {
    let (title, mine) = my_patients(session).await;
    let today = session.zone.today_text();
    let patients: Vec<Value> = mine?.into_iter().filter(|p| ages.admits(p, &today)).collect();
    let ids: Vec<&str> = patients.iter().filter_map(|p| p["id"].as_str()).collect();
    let mut rows: Vec<(Value, Vec<hale_cds::preventive::Due>)> = Vec::new();
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
            (conditions?, immunizations?, observations?, procedures?);
        truncated = [conditions.len(), immunizations.len(), observations.len(), procedures.len()].contains(&PANEL_ROWS);
        observations.extend(procedures);
        for p in &patients {
            let id = p["id"].as_str().unwrap_or("");
            let due = hale_cds::preventive::due(
                p,
                &today,
                &of(&conditions, "subject", id),
                &of(&immunizations, "patient", id),
                &of(&observations, "subject", id),
            );
            rows.push((p.clone(), due));
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
    Ok(DueRows { title, rows, truncated })
}

/// A preventive rule (or childhood series) the worklist can be narrowed to.
struct RuleName {
    id: &'static str,
    title: std::borrow::Cow<'static, str>,
}

/// Every rule the worklist can be narrowed to: the preventive rules, then the childhood
/// and adolescent series.
fn rule_names() -> Vec<RuleName> {
    hale_cds::preventive::rule_titles().into_iter().map(|(id, title)| RuleName { id, title }).collect()
}

/// A rule by its id, from a request's `rule` field: `Ok(None)` when none is asked for,
/// `Err` with the id asked when there is no such rule.
fn asked_rule(asked: Option<&str>) -> Result<Option<RuleName>, String> {
    match asked.map(str::trim).filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(r) => rule_names().into_iter().find(|x| x.id == r).map(Some).ok_or_else(|| r.to_string()),
    }
}

/// `GET /app/due`, with `rule` (a rule's id) to show who is due for that one only.
pub(crate) async fn due(
    session: Session,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let (rule, unknown) = match asked_rule(q.get("rule").map(String::as_str)) {
        Ok(r) => (r, None),
        Err(u) => (None, Some(u)),
    };
    let (ages, bad_age) = match Ages::asked(|k| q.get(k).cloned()) {
        Ok(a) => (a, None),
        Err(e) => (Ages::default(), Some(e)),
    };
    let found = match due_rows(&session, rule.as_ref(), ages).await {
        Ok(f) => f,
        Err(e) => return failure(&session, &e),
    };
    let status = if unknown.is_some() || bad_age.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let asked = Asked { rule, unknown: unknown.as_deref(), ages, typed: &q, bad_age };
    respond(status, page("Preventive care due", Some(&session), due_page(&session, &found, &asked, None)))
}

/// What the worklist was asked for: the rule (or an unknown one), the ages, the fields
/// as typed (shown again), and what is wrong with the ages.
struct Asked<'a> {
    rule: Option<RuleName>,
    unknown: Option<&'a str>,
    ages: Ages,
    typed: &'a std::collections::HashMap<String, String>,
    bad_age: Option<(&'static str, &'static str)>,
}

/// The worklist: the filter by rule, then the patients due with a box each, ticked, for
/// the reminders sent from it; `sent` is what the last sending did.
fn due_page(session: &Session, found: &DueRows, asked: &Asked<'_>, sent: Option<&Markup>) -> Markup {
    let (rule, unknown) = (asked.rule.as_ref(), asked.unknown);
    let typed = |k: &str| asked.typed.get(k).map(String::as_str).unwrap_or("");
    let age_error = |k: &str| asked.bad_age.filter(|(f, _)| *f == k).map(|(_, m)| m);
    let rows = &found.rows;
    let total: usize = rows.iter().map(|r| r.1.len()).sum();
    let due_count = rows.iter().filter(|r| !r.1.is_empty()).count();
    html! {
        section.card aria-labelledby="due-h" {
            h1 #due-h {
                "Preventive care due · " (found.title) " (" (rows.len()) ")"
                @if let Some(r) = rule { " · " (r.title) }
            }
            @if let Some(m) = sent { (m) }
            form.filters method="get" action="/app/due" {
                label for="rule" { "Show who is due for" }
                div.row {
                    select #rule name="rule" aria-describedby=[unknown.map(|_| "rule-error")] {
                        option value="" selected[rule.is_none()] { "Any rule" }
                        @for r in rule_names() {
                            option value=(r.id) selected[rule.is_some_and(|x| x.id == r.id)] { (r.title) }
                        }
                    }
                }
                @if let Some(u) = unknown {
                    p.error #rule-error role="alert" { "There is no rule “" (u) "”; every rule is shown." }
                }
                div.row.ages {
                    label for="age_from" { "Aged from" }
                    input #age_from type="number" name="age_from" min="0" max="130" inputmode="numeric" value=(typed("age_from"))
                        aria-invalid=[age_error("age_from").map(|_| "true")] aria-describedby=[age_error("age_from").map(|_| "age_from-error")];
                    label for="age_to" { "to" }
                    input #age_to type="number" name="age_to" min="0" max="130" inputmode="numeric" value=(typed("age_to"))
                        aria-invalid=[age_error("age_to").map(|_| "true")] aria-describedby=[age_error("age_to").map(|_| "age_to-error")];
                    span.muted { "years" }
                    button.primary type="submit" { "Show" }
                }
                @for k in ["age_from", "age_to"] {
                    @if let Some(m) = age_error(k) {
                        p.error id={ (k) "-error" } role="alert" { (m) " Every age is shown." }
                    }
                }
            }
            p.hint { (total) @if total == 1 { " item due." } @else { " items due." } " Each rule's source is on the patient's chart; " code { "hale cds list" } " lists them all." }
            @if found.truncated { p.error role="alert" { "Some lists were too long to read whole; open each chart for the full picture." } }
            @if rows.is_empty() {
                p.empty {
                    @if rule.is_some() || asked.ages != Ages::default() { "None of your patients is due for this." } @else { "No patient is linked to you yet." }
                }
            } @else {
                form method="post" action="/app/due/remind" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @if let Some(r) = rule { input type="hidden" name="rule" value=(r.id); }
                    @if let Some(a) = asked.ages.from { input type="hidden" name="age_from" value=(a); }
                    @if let Some(a) = asked.ages.to { input type="hidden" name="age_to" value=(a); }
                    table.due {
                        thead { tr { th.pick { span.sr-only { "Remind" } } th { "Patient" } th { "Born" } th { "Due" } } }
                        tbody {
                            @for (p, due) in rows {
                                @let id = p["id"].as_str().unwrap_or("");
                                tr {
                                    td.pick {
                                        @if !due.is_empty() {
                                            input type="checkbox" name="patient" value=(id) checked
                                                aria-label={ "Remind " (person_name(p)) };
                                        }
                                    }
                                    td { a href={ "/app/patient/" (id) } { (person_name(p)) } }
                                    td.date { (day(&p["birthDate"])) }
                                    td {
                                        @if due.is_empty() { span.muted { "nothing" } } @else {
                                            (due.iter().map(|d| d.title.as_ref()).collect::<Vec<_>>().join("; "))
                                        }
                                    }
                                }
                            }
                        }
                    }
                    @if due_count > 0 {
                        div.actions {
                            button.primary type="submit" { "Send a reminder to the patients ticked" }
                            p.hint {
                                "Each patient ticked gets a message in the patient portal listing, in plain words, the care "
                                @if rule.is_some() { "chosen above" } @else { "they are due for" }
                                ". Care a patient was reminded of in the last " (REMINDED_DAYS) " days is left out of theirs."
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Care a patient was reminded of this recently is not reminded of again.
const REMINDED_DAYS: i64 = 30;

/// The code system naming a preventive care rule in a reminder's `reasonCode`.
const RULE_SYSTEM: &str = "urn:hale:cds:preventive-rule";

/// `POST /app/due/remind`: a reminder to each patient ticked, as a portal message (a
/// Communication of category `reminder`, its `reasonCode` the rules it names) about the
/// care they are due for — that rule's only when the worklist was narrowed to one —,
/// leaving out what they were reminded of in the last [`REMINDED_DAYS`] days. Each is
/// written through the user's repository, so each is audited; the worklist comes back
/// saying what was sent.
pub(crate) async fn remind(session: Session, axum::Form(fields): axum::Form<Vec<(String, String)>>) -> Response {
    let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if !get("csrf").is_some_and(|t| crate::same_secret(t, &session.csrf)) {
        return crate::layout::problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "No reminder was sent. Open the page again.",
        );
    }
    let typed: std::collections::HashMap<String, String> =
        fields.iter().filter(|(n, _)| n != "patient" && n != "csrf").cloned().collect();
    let (rule, ages) = match (asked_rule(get("rule")), Ages::asked(|k| get(k).map(str::to_string))) {
        (Ok(r), Ok(a)) => (r, a),
        (r, a) => {
            let (rule, unknown) = match r {
                Ok(r) => (r, None),
                Err(u) => (None, Some(u)),
            };
            let found = match due_rows(&session, rule.as_ref(), Ages::default()).await {
                Ok(f) => f,
                Err(e) => return failure(&session, &e),
            };
            let asked =
                Asked { rule, unknown: unknown.as_deref(), ages: Ages::default(), typed: &typed, bad_age: a.err() };
            let body = due_page(&session, &found, &asked, None);
            return respond(StatusCode::BAD_REQUEST, page("Preventive care due", Some(&session), body));
        }
    };
    let ticked: std::collections::BTreeSet<&str> =
        fields.iter().filter(|(n, _)| n == "patient").map(|(_, v)| v.as_str()).collect();
    let found = match due_rows(&session, rule.as_ref(), ages).await {
        Ok(f) => f,
        Err(e) => return failure(&session, &e),
    };
    // what each patient ticked was reminded of lately
    let chosen: Vec<&(Value, Vec<hale_cds::preventive::Due>)> = found
        .rows
        .iter()
        .filter(|(p, due)| !due.is_empty() && p["id"].as_str().is_some_and(|id| ticked.contains(id)))
        .collect();
    let mut lately: std::collections::HashMap<String, std::collections::HashSet<String>> = Default::default();
    if !chosen.is_empty() {
        let list = chosen.iter().filter_map(|(p, _)| p["id"].as_str()).collect::<Vec<_>>().join(",");
        let today = session.zone.today_text();
        let since = hale_cds::measures::add_days(&today, -REMINDED_DAYS).unwrap_or(today);
        let since = format!("ge{since}");
        let q = [("patient", list.as_str()), ("category", "reminder"), ("sent", since.as_str())];
        match search(&session.repo, "Communication", &q, PANEL_ROWS).await {
            Ok(sent) => {
                for c in sent {
                    let Some(pid) = c["subject"]["reference"].as_str().and_then(|r| r.strip_prefix("Patient/")) else {
                        continue;
                    };
                    let rules = c["reasonCode"].as_array().into_iter().flatten().flat_map(|r| {
                        r["coding"].as_array().into_iter().flatten().filter(|k| k["system"] == RULE_SYSTEM)
                    });
                    let entry = lately.entry(pid.to_string()).or_default();
                    entry.extend(rules.filter_map(|k| k["code"].as_str().map(str::to_string)));
                }
            }
            Err(e) => return failure(&session, &e),
        }
    }
    let sender = session
        .account
        .fhir_user
        .clone()
        .filter(|u| u.starts_with("Practitioner/"))
        .or_else(|| session.account.organization.as_ref().map(|o| format!("Organization/{o}")));
    let (mut sent, mut already, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    let ty = match hale_repository::resource_type("Communication") {
        Ok(t) => t,
        Err(e) => return failure(&session, &e),
    };
    for (p, due) in chosen {
        let id = p["id"].as_str().unwrap_or("");
        let recent = lately.get(id);
        let items: Vec<&hale_cds::preventive::Due> =
            due.iter().filter(|d| recent.is_none_or(|r| !r.contains(d.rule))).collect();
        if items.is_empty() {
            already.push(person_name(p));
            continue;
        }
        let c = reminder(id, sender.as_deref(), &session.account.display_name, &items);
        match session.repo.create(&ty, c, None).await {
            Ok(_) => sent.push(person_name(p)),
            Err(e) => {
                tracing::warn!(error = %e, "a reminder could not be sent");
                failed.push(person_name(p));
            }
        }
    }
    let report = html! {
        div.notice role="status" {
            @if sent.is_empty() && already.is_empty() && failed.is_empty() {
                p { "No patient was ticked who is due: no reminder was sent." }
            }
            @if !sent.is_empty() {
                p { strong { "Reminder sent to " (sent.len()) @if sent.len() == 1 { " patient" } @else { " patients" } } ": " (sent.join(", ")) "." }
            }
            @if !already.is_empty() {
                p { "Not sent (reminded of the same care in the last " (REMINDED_DAYS) " days): " (already.join(", ")) "." }
            }
            @if !failed.is_empty() {
                p.error role="alert" { "Could not be sent, try again: " (failed.join(", ")) "." }
            }
        }
    };
    let status = if failed.is_empty() { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let asked = Asked { rule, unknown: None, ages, typed: &typed, bad_age: None };
    respond(status, page("Preventive care due", Some(&session), due_page(&session, &found, &asked, Some(&report))))
}

/// A reminder to `patient` about `items`, as a Communication the portal shows as a
/// message from the care team, in plain words.
fn reminder(patient: &str, sender: Option<&str>, sender_name: &str, items: &[&hale_cds::preventive::Due]) -> Value {
    let mut text = String::from("Our records show that you are due for:\n");
    for d in items {
        text.push_str(&format!("- {}\n", d.for_patient));
    }
    text.push_str(
        "\nPlease book a visit, or reply to this message. If you had this done elsewhere, reply and tell us when, so we can update your record.",
    );
    let mut c = serde_json::json!({
        "resourceType": "Communication",
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category", "code": "reminder", "display": "Reminder"}], "text": "Reminder"}],
        "subject": {"reference": format!("Patient/{patient}")},
        "recipient": [{"reference": format!("Patient/{patient}")}],
        "sent": crate::now_instant(),
        "topic": {"text": "Reminder: care you are due for"},
        "reasonCode": items.iter().map(|d| serde_json::json!({"coding": [{"system": RULE_SYSTEM, "code": d.rule, "display": d.title}]})).collect::<Vec<_>>(),
        "payload": [{"contentString": text}],
    });
    if let Some(s) = sender {
        c["sender"] = serde_json::json!({"reference": s, "display": sender_name});
    }
    c
}

/// The ends of the four quarters before `end` (`YYYY-MM-DD`), oldest first: the ends of
/// the twelve-month periods the dashboard compares with the one shown.
fn quarter_ends_before(end: &str) -> Vec<String> {
    let y: i32 = end.get(0..4).and_then(|y| y.parse().ok()).unwrap_or(1970);
    let m: u32 = end.get(5..7).and_then(|m| m.parse().ok()).unwrap_or(1);
    let mut out = Vec::new();
    // the last quarter end strictly before `end`
    let (mut qy, mut q) = (y, (m - 1) / 3);
    let ends = ["03-31", "06-30", "09-30", "12-31"];
    while out.len() < 4 {
        let candidate =
            if q == 0 { format!("{:04}-12-31", qy - 1) } else { format!("{qy:04}-{}", ends[q as usize - 1]) };
        if candidate.as_str() < end {
            out.push(candidate);
        }
        if q == 0 {
            qy -= 1;
            q = 3;
        } else {
            q -= 1;
        }
    }
    out.reverse();
    out
}

/// The period a request asks for: `start` and `end` (dates), `end` alone (the twelve
/// months ending then), or neither (the twelve months up to `today`); `Err` with what
/// is wrong.
fn asked_period(
    q: &std::collections::HashMap<String, String>,
    today: &str,
) -> Result<hale_cds::measures::Period, &'static str> {
    use hale_cds::measures::Period;
    let field = |k: &str| q.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    match (field("start"), field("end")) {
        (None, None) => Period::year_ending(today).ok_or("Today is not a date."),
        (None, Some(e)) => Period::year_ending(e).ok_or("The end is not a date (YYYY-MM-DD)."),
        (Some(s), e) => {
            let e = e.unwrap_or(today);
            match (Period::new(s, "9999"), Period::new(e, e)) {
                (None, _) => Err("The start is not a date (YYYY-MM-DD)."),
                (_, None) => Err("The end is not a date (YYYY-MM-DD)."),
                _ => Period::new(s, e).ok_or("The period ends before it starts."),
            }
        }
    }
}

/// `GET /app/measures`: quality measures over "my patients" and a measurement period
/// (`start`, `end`; by default the twelve months up to today) — each measure's rate for
/// that period and for the twelve months ending at each of the four quarter ends before
/// it (a table and, per measure, a chart), and the patients of each group (met, not
/// met, excluded) with what their chart shows. One search per type the measures read.
pub(crate) async fn measures(
    session: Session,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    use hale_cds::measures::{Group, MEASURES, Measure, Period, Tally, by_patient, queries};
    let today = session.zone.today_text();
    let asked = asked_period(&q, &today);
    let error = asked.as_ref().err().copied();
    let Some(period) = asked.ok().or_else(|| Period::year_ending(&today)) else {
        return respond(
            StatusCode::BAD_REQUEST,
            page("Quality measures", Some(&session), html! { p.error { "Today is not a date." } }),
        );
    };
    let trend: Vec<Period> = quarter_ends_before(&period.end)
        .iter()
        .filter_map(|e| Period::year_ending(e))
        .chain(std::iter::once(period.clone()))
        .collect();
    let (title, mine) = crate::find::my_patients_up_to(&session, PANEL_PATIENTS).await;
    let patients = match mine {
        Ok(p) => p,
        Err(e) => return failure(&session, &e),
    };
    let ids: Vec<&str> = patients.iter().filter_map(|p| p["id"].as_str()).collect();
    let mut records: Vec<Value> = Vec::new();
    let mut truncated = patients.len() == PANEL_PATIENTS;
    if !ids.is_empty() {
        let list = ids.join(",");
        let all: Vec<&Measure> = MEASURES.iter().collect();
        let earliest = trend.iter().map(|p| p.start.as_str()).min().unwrap_or(period.start.as_str()).to_string();
        for query in queries(&all, &earliest) {
            let mut pairs: Vec<(&str, &str)> = query.params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            pairs.push(("patient", list.as_str()));
            match search(&session.repo, query.resource_type, &pairs, PANEL_ROWS).await {
                Ok(found) => {
                    truncated |= found.len() == PANEL_ROWS;
                    records.extend(found);
                }
                Err(e) => return failure(&session, &e),
            }
        }
    }
    let grouped = by_patient(&records);
    // per measure: its tally for each period of the trend, the asked one last
    let tallies: Vec<Vec<Tally>> = MEASURES
        .iter()
        .map(|m| {
            trend
                .iter()
                .map(|p| {
                    let mut t = Tally::of(m, p, &patients, &grouped);
                    t.places.sort_by_key(|(p, _)| person_name(p));
                    t
                })
                .collect()
        })
        .collect();
    let rate = |t: &Tally| match t.rate() {
        Some(r) => format!("{r:.0}%"),
        None => "–".to_string(),
    };
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = html! {
        section.card aria-labelledby="m-h" {
            h1 #m-h { "Quality measures · " (title) " (" (patients.len()) @if patients.len() == 1 { " patient)" } @else { " patients)" } }
            form.filters method="get" action="/app/measures" {
                div.row {
                    label for="m-start" { "From" }
                    input #m-start type="date" name="start" value=(period.start) aria-describedby=[error.map(|_| "m-error")];
                    label for="m-end" { "to" }
                    input #m-end type="date" name="end" value=(period.end) aria-describedby=[error.map(|_| "m-error")];
                    button.primary type="submit" { "Measure" }
                }
                @if let Some(e) = error {
                    p.error #m-error role="alert" { (e) " The twelve months up to today are shown." }
                }
            }
            p.hint {
                "From " (period.start) " to " (period.end) ". Each earlier column is the twelve months ending at a quarter's end. "
                "Exclusions the chart cannot know (hospice, palliative care, frailty) are not applied; each measure says what else is left out."
            }
            @if truncated { p.error role="alert" { "The panel or its records were too many to read whole (at most " (PANEL_PATIENTS) " patients); the figures cover those read." } }
            div.table-scroll {
                table.measures {
                    caption.sr-only { "Each measure's rate for the twelve months ending at each date" }
                    thead {
                        tr {
                            th scope="col" { "Measure" }
                            @for (i, p) in trend.iter().enumerate() {
                                @if i + 1 < trend.len() {
                                    th.num.hide-narrow scope="col" { span.muted { "to " } (p.end) }
                                } @else {
                                    th.num scope="col" { "This period" }
                                }
                            }
                            th.num scope="col" { "Met / counted" }
                            th.hide-narrow scope="col" { "Better" }
                        }
                    }
                    tbody {
                        @for (m, ts) in MEASURES.iter().zip(&tallies) {
                            @let now = &ts[ts.len() - 1];
                            tr {
                                th scope="row" { a href={ "#" (m.id) } { (m.title) } }
                                @for (i, t) in ts.iter().enumerate() {
                                    @if i + 1 < ts.len() { td.num.hide-narrow { (rate(t)) } } @else { td.num { strong { (rate(t)) } } }
                                }
                                td.num { (now.numerator()) " / " (now.denominator()) }
                                td.hide-narrow { @if m.inverse() { "lower" } @else { "higher" } }
                            }
                        }
                    }
                }
            }
            p.hint { "The same as a FHIR MeasureReport: " code { "GET /fhir/Measure/[id]/$evaluate-measure?periodStart=" (period.start) "&periodEnd=" (period.end) } "." }
        }
        @for (m, ts) in MEASURES.iter().zip(&tallies) {
            @let now = &ts[ts.len() - 1];
            section.card id=(m.id) aria-labelledby={ (m.id) "-h" } {
                h2 id={ (m.id) "-h" } { (m.title) }
                p.muted {
                    "Counted: " (m.initial_population) ". Excluded: " (m.exclusions) ". Met: " (m.numerator) ". "
                    "Source: " (m.source) ". Not applied: " (m.not_applied) "."
                }
                @let points: Vec<(i64, f64)> = ts.iter().filter_map(|t| Some((crate::svg::day_number(&t.period.end)?, t.rate()?))).collect();
                @if points.is_empty() {
                    p.empty { "Nobody is counted in these periods." }
                } @else {
                    (crate::svg::chart(&crate::svg::Chart {
                        title: &format!("{}, rate over the twelve months ending at each date", m.title),
                        unit: "%",
                        series: vec![crate::svg::Series { label: m.title.to_string(), class: "s1", points }],
                        band: None,
                        height: 200.0,
                        scale: Some((0.0, 100.0)),
                        guides: vec![],
                    }))
                }
                p.hint {
                    (now.initial_population()) " counted, " (now.excluded()) " excluded, " (now.numerator()) " of " (now.denominator()) " met"
                    @if let Some(r) = now.rate() { " (" (format!("{r:.0}%")) ")" } "."
                }
                @let groups = [
                    (Group::Met, if m.inverse() { "In the numerator (to act on)" } else { "Met" }, "met"),
                    (Group::NotMet, if m.inverse() { "Not in the numerator" } else { "Not met (to act on)" }, "not-met"),
                    (Group::Excluded, "Excluded", "excluded"),
                ];
                @for (g, label, key) in groups {
                    @let rows: Vec<_> = now.group(g).collect();
                    details.group id={ (m.id) "-" (key) } open[(g == Group::Met) == m.inverse() && g != Group::Excluded && !rows.is_empty()] {
                        summary { (label) " (" (rows.len()) ")" }
                        @if rows.is_empty() {
                            p.empty { "Nobody." }
                        } @else {
                            table {
                                thead { tr { th { "Patient" } th { "Born" } th { "The chart shows" } } }
                                tbody {
                                    @for (p, place) in rows {
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
            }
        }
    };
    respond(status, page("Quality measures", Some(&session), body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_trend_ends_at_the_four_quarter_ends_before() {
        assert_eq!(super::quarter_ends_before("2026-05-15"), ["2025-06-30", "2025-09-30", "2025-12-31", "2026-03-31"]);
        assert_eq!(super::quarter_ends_before("2026-03-31"), ["2025-03-31", "2025-06-30", "2025-09-30", "2025-12-31"]);
        assert_eq!(super::quarter_ends_before("2026-01-01"), ["2025-03-31", "2025-06-30", "2025-09-30", "2025-12-31"]);
    }

    #[test]
    fn the_period_asked_for() {
        let q = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let p = super::asked_period(&q(&[]), "2026-05-15").unwrap();
        assert_eq!((p.start.as_str(), p.end.as_str()), ("2025-05-16", "2026-05-15"));
        let p = super::asked_period(&q(&[("end", "2025-12-31")]), "2026-05-15").unwrap();
        assert_eq!(p.start, "2025-01-01");
        let p = super::asked_period(&q(&[("start", "2026-01-01"), ("end", "2026-03-31")]), "2026-05-15").unwrap();
        assert_eq!((p.start.as_str(), p.end.as_str()), ("2026-01-01", "2026-03-31"));
        assert!(super::asked_period(&q(&[("start", "2026-13-01")]), "2026-05-15").is_err());
        assert!(super::asked_period(&q(&[("start", "2026-04-01"), ("end", "2026-03-31")]), "2026-05-15").is_err());
        assert!(super::asked_period(&q(&[("end", "soon")]), "2026-05-15").is_err());
    }
}
