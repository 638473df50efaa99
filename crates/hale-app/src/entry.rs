//! Recording problems, allergies and immunizations from the chart, each from a table
//! shipped with Hale (`hale_cds::terms`) or as free text: `GET/POST
//! /app/patient/{id}/problems/new`, `/allergies/new`, `/immunizations/new`, and `POST
//! /app/patient/{id}/problem/{cid}/resolve`. Each form checks its fields (a message by
//! each field, what was typed kept), then writes one resource through the session's
//! repository (validated, access-checked, audited).

use std::collections::HashMap;

use axum::Form;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use hale_cds::terms::{self, ALLERGENS, PROBLEMS, VACCINES};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::layout::{page, problem, respond};
use crate::{Session, failure, now_instant, same_secret as same};

type Fields = HashMap<String, String>;
type Errors = Vec<(&'static str, String)>;

/// A date typed as `YYYY-MM-DD` (or `YYYY-MM`, `YYYY`), not after today; `Ok(None)`
/// when empty.
pub(crate) fn past_date(raw: &str, today: &str) -> Result<Option<String>, String> {
    let d = raw.trim();
    if d.is_empty() {
        return Ok(None);
    }
    let shape = match d.len() {
        4 => d.chars().all(|c| c.is_ascii_digit()),
        7 => d.as_bytes()[4] == b'-' && crate::svg::day_number(&format!("{d}-01")).is_some(),
        10 => {
            d.as_bytes()[4] == b'-'
                && d.as_bytes()[7] == b'-'
                && crate::svg::day_number(d).is_some()
                && crate::svg::date_of(crate::svg::day_number(d).unwrap_or(0)) == d
        }
        _ => false,
    };
    if !shape {
        return Err("Write the date as YYYY-MM-DD (or YYYY-MM, or YYYY).".into());
    }
    if d > today {
        return Err("The date is in the future.".into());
    }
    Ok(Some(d.to_string()))
}

fn field_row(name: &str, label: &str, value: &str, errors: &Errors, hint: Option<&str>) -> Markup {
    let error = errors.iter().find(|e| e.0 == name).map(|e| e.1.as_str());
    let hint_id = format!("{name}-hint");
    let err_id = format!("{name}-error");
    let described = match (hint.is_some(), error.is_some()) {
        (true, true) => Some(format!("{hint_id} {err_id}")),
        (true, false) => Some(hint_id.clone()),
        (false, true) => Some(err_id.clone()),
        (false, false) => None,
    };
    html! {
        div.field {
            label for=(name) { (label) }
            input id=(name) name=(name) type="text" value=(value) autocomplete="off"
                aria-invalid=[error.map(|_| "true")] aria-describedby=[described];
            @if let Some(h) = hint { p.hint id=(hint_id) { (h) } }
            @if let Some(e) = error { p.error.field-error id=(err_id) { (e) } }
        }
    }
}

fn select_row(name: &str, label: &str, options: &[(String, String)], chosen: &str, errors: &Errors) -> Markup {
    let error = errors.iter().find(|e| e.0 == name).map(|e| e.1.as_str());
    html! {
        div.field {
            label for=(name) { (label) }
            select id=(name) name=(name) aria-invalid=[error.map(|_| "true")] {
                @for (value, text) in options {
                    option value=(value) selected[value == chosen] { (text) }
                }
            }
            @if let Some(e) = error { p.error.field-error { (e) } }
        }
    }
}

/// The problems offered (all, or those matching `q`) with the one chosen: a single
/// match is chosen for the user.
fn problem_options(q: &str, term: &str) -> (Vec<(String, String)>, String) {
    let listed: Vec<(usize, &terms::Problem)> =
        if q.trim().is_empty() { PROBLEMS.iter().enumerate().collect() } else { terms::find_problems(q) };
    let mut options = vec![(String::new(), "— free text (below) —".to_string())];
    options.extend(
        listed
            .iter()
            .map(|(i, p)| (i.to_string(), format!("{} (ICD-10-CM {}, SNOMED CT {})", p.name, p.icd10, p.snomed))),
    );
    let chosen = if term.is_empty() && listed.len() == 1 { listed[0].0.to_string() } else { term.to_string() };
    (options, chosen)
}

fn allergen_options() -> Vec<(String, String)> {
    let mut options = vec![(String::new(), "— free text (below) —".to_string())];
    options.extend(
        ALLERGENS.iter().enumerate().map(|(i, a)| (i.to_string(), format!("{} ({})", a.name, a.kind.category()))),
    );
    options
}

/// What kind of entry a form records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Problem,
    Allergy,
    Immunization,
}

impl Kind {
    fn title(self) -> &'static str {
        match self {
            Kind::Problem => "Add a problem",
            Kind::Allergy => "Record an allergy or intolerance",
            Kind::Immunization => "Record an immunization",
        }
    }

    fn path(self) -> &'static str {
        match self {
            Kind::Problem => "problems",
            Kind::Allergy => "allergies",
            Kind::Immunization => "immunizations",
        }
    }
}

fn form_page(session: &Session, patient: &Value, all: &[Value], kind: Kind, typed: &Fields, errors: &Errors) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let value = |n: &str| typed.get(n).cloned().unwrap_or_default();
    let general = errors.iter().find(|e| e.0.is_empty()).map(|e| e.1.clone());
    let body = html! {
        (header(session, patient, all, Tab::Summary))
        section.card.form-card aria-labelledby="entry-h" {
            h1 #entry-h { (kind.title()) }
            @if let Some(e) = &general { p.error role="alert" { (e) } }
            @if !errors.is_empty() && general.is_none() { p.error role="alert" { "Nothing was saved. Check the fields marked below." } }
            @match kind {
                Kind::Problem => {
                    form.find method="get" action={ "/app/patient/" (id) "/problems/new" } role="search" {
                        label for="q" { "Find in Hale's table" }
                        div.row {
                            input #q type="search" name="q" value=(value("q")) autocomplete="off" aria-describedby="q-hint";
                            button.secondary type="submit" { "Search" }
                        }
                        p.hint #q-hint { "A name, an ICD-10-CM or a SNOMED CT code: “diab”, “I10”." }
                    }
                }
                _ => {}
            }
            form method="post" action={ "/app/patient/" (id) "/" (kind.path()) "/new" } novalidate {
                input type="hidden" name="csrf" value=(session.csrf);
                @match kind {
                    Kind::Problem => {
                        @let (options, chosen) = problem_options(&value("q"), &value("term"));
                        (select_row("term", "Problem", &options, &chosen, errors))
                        (field_row("text", "Or in words", &value("text"), errors, Some("When the problem is not in the table.")))
                        (field_row("onset", "Since (date)", &value("onset"), errors, Some("YYYY-MM-DD, YYYY-MM or YYYY; may be left empty.")))
                    }
                    Kind::Allergy => {
                        @let options = allergen_options();
                        (select_row("term", "Substance", &options, &value("term"), errors))
                        (field_row("text", "Or in words", &value("text"), errors, Some("When the substance is not in the list.")))
                        @let crit = vec![("low".to_string(), "Low risk".to_string()), ("high".to_string(), "High risk (a severe or life-threatening reaction)".to_string()), ("unable-to-assess".to_string(), "Unable to assess".to_string())];
                        (select_row("criticality", "Criticality", &crit, &value("criticality"), errors))
                        (field_row("reaction", "Reaction", &value("reaction"), errors, Some("What happened, e.g. “hives”, “anaphylaxis”; may be left empty.")))
                    }
                    Kind::Immunization => {
                        @let options: Vec<(String, String)> = VACCINES.iter().enumerate().map(|(i, v)| (i.to_string(), format!("{} (CVX {})", v.name, v.cvx))).collect();
                        (select_row("term", "Vaccine", &options, &value("term"), errors))
                        (field_row("given", "Given on", &value("given"), errors, Some("YYYY-MM-DD.")))
                        (field_row("lot", "Lot number", &value("lot"), errors, Some("May be left empty.")))
                    }
                }
                div.actions {
                    button.primary type="submit" { "Save" }
                    a href={ "/app/patient/" (id) } { "Cancel" }
                }
            }
        }
    };
    page(kind.title(), Some(session), body)
}

/// Checks a form and builds its resource; `Err` lists the messages by field. `now` is
/// the instant recorded; `today` the installation's date, after which no typed date
/// may be.
pub(crate) fn build(
    kind: Kind,
    patient: &str,
    recorder: Option<&str>,
    typed: &Fields,
    now: &str,
    today: &str,
) -> Result<Value, Errors> {
    let mut errors: Errors = Vec::new();
    let value = |n: &str| typed.get(n).map(|s| s.trim().to_string()).unwrap_or_default();
    let text = value("text");
    if text.chars().count() > 200 {
        errors.push(("text", "At most 200 characters.".into()));
    }
    let subject = json!({"reference": format!("Patient/{patient}")});
    let mut resource = match kind {
        Kind::Problem => {
            let term = value("term").parse::<usize>().ok().and_then(|i| PROBLEMS.get(i));
            if !value("term").is_empty() && term.is_none() {
                errors.push(("term", "Choose a problem from the list.".into()));
            }
            let code = match (term, text.is_empty()) {
                (Some(p), _) => json!({"coding": [
                    {"system": terms::SNOMED, "code": p.snomed, "display": p.name},
                    {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": p.icd10}
                ], "text": p.name}),
                (None, false) => json!({"text": text}),
                (None, true) => {
                    if value("term").is_empty() {
                        errors.push(("term", "Choose a problem, or describe it in words.".into()));
                    }
                    Value::Null
                }
            };
            let onset = past_date(&value("onset"), today).unwrap_or_else(|e| {
                errors.push(("onset", e));
                None
            });
            let mut c = json!({
                "resourceType": "Condition",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item", "display": "Problem List Item"}]}],
                "code": code,
                "subject": subject,
                "recordedDate": now,
            });
            if let Some(o) = onset {
                c["onsetDateTime"] = json!(o);
            }
            if let Some(r) = recorder {
                c["recorder"] = json!({"reference": r});
            }
            c
        }
        Kind::Allergy => {
            let term = value("term").parse::<usize>().ok().and_then(|i| ALLERGENS.get(i));
            if !value("term").is_empty() && term.is_none() {
                errors.push(("term", "Choose a substance from the list.".into()));
            }
            let (code, category) = match (term, text.is_empty()) {
                (Some(a), _) if a.system.is_empty() => (json!({"text": a.name}), Some(a.kind.category())),
                (Some(a), _) => (
                    json!({"coding": [{"system": a.system, "code": a.code, "display": a.name}], "text": a.name}),
                    Some(a.kind.category()),
                ),
                (None, false) => (json!({"text": text}), None),
                (None, true) => {
                    if value("term").is_empty() {
                        errors.push(("term", "Choose a substance, or name it in words.".into()));
                    }
                    (Value::Null, None)
                }
            };
            let criticality = value("criticality");
            if !matches!(criticality.as_str(), "low" | "high" | "unable-to-assess") {
                errors.push(("criticality", "Choose the criticality.".into()));
            }
            let reaction = value("reaction");
            if reaction.chars().count() > 200 {
                errors.push(("reaction", "At most 200 characters.".into()));
            }
            let mut a = json!({
                "resourceType": "AllergyIntolerance",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "code": "confirmed"}]},
                "code": code,
                "patient": subject,
                "recordedDate": now,
                "criticality": criticality,
            });
            if let Some(c) = category {
                a["category"] = json!([c]);
            }
            if !reaction.is_empty() {
                a["reaction"] = json!([{"manifestation": [{"text": reaction}]}]);
            }
            if let Some(r) = recorder {
                a["recorder"] = json!({"reference": r});
            }
            a
        }
        Kind::Immunization => {
            let vaccine = value("term").parse::<usize>().ok().and_then(|i| VACCINES.get(i));
            if vaccine.is_none() {
                errors.push(("term", "Choose the vaccine.".into()));
            }
            let given = match past_date(&value("given"), today) {
                Ok(Some(d)) if d.len() == 10 => Some(d),
                Ok(_) => {
                    errors.push(("given", "Give the day it was given, as YYYY-MM-DD.".into()));
                    None
                }
                Err(e) => {
                    errors.push(("given", e));
                    None
                }
            };
            let lot = value("lot");
            if lot.chars().count() > 40 {
                errors.push(("lot", "At most 40 characters.".into()));
            }
            let mut i = json!({
                "resourceType": "Immunization",
                "status": "completed",
                "vaccineCode": vaccine.map(|v| json!({"coding": [{"system": terms::CVX, "code": v.cvx, "display": v.name}], "text": v.name})).unwrap_or(Value::Null),
                "patient": subject,
                "occurrenceDateTime": given,
                "recorded": now,
                "primarySource": true,
            });
            if !lot.is_empty() {
                i["lotNumber"] = json!(lot);
            }
            if let Some(r) = recorder {
                i["performer"] = json!([{"actor": {"reference": r}}]);
            }
            i
        }
    };
    if errors.is_empty() {
        // drop what was not given
        if let Some(o) = resource.as_object_mut() {
            o.retain(|_, v| !v.is_null());
        }
        Ok(resource)
    } else {
        Err(errors)
    }
}

async fn open(session: &Session, id: &str) -> Result<(Value, Vec<Value>), Response> {
    let patient = open_patient(session, id).await?;
    let all = allergies(session, id).await?;
    Ok((patient, all))
}

/// `GET /app/patient/{id}/{problems|allergies|immunizations}/new`.
pub(crate) async fn form(kind: Kind, session: Session, id: String, typed: Fields) -> Response {
    let (patient, all) = match open(&session, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let mut typed = typed;
    if kind == Kind::Allergy {
        typed.entry("criticality".into()).or_insert_with(|| "low".into());
    }
    respond(StatusCode::OK, form_page(&session, &patient, &all, kind, &typed, &Vec::new()))
}

/// `POST /app/patient/{id}/{problems|allergies|immunizations}/new`.
pub(crate) async fn save(kind: Kind, session: Session, id: String, typed: Fields) -> Response {
    if !typed.get("csrf").is_some_and(|t| same(t, &session.csrf)) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was saved. Open the form again.",
        );
    }
    let (patient, all) = match open(&session, &id).await {
        Ok(x) => x,
        Err(r) => return r,
    };
    let recorder = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/"));
    let resource = match build(kind, &id, recorder, &typed, &now_instant(), &session.zone.today_text()) {
        Ok(r) => r,
        Err(errors) => {
            return respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, kind, &typed, &errors));
        }
    };
    let ty_name = resource["resourceType"].as_str().unwrap_or("").to_string();
    let ty = match hale_repository::resource_type(&ty_name) {
        Ok(t) => t,
        Err(e) => return failure(&session, &e),
    };
    match session.repo.create(&ty, resource, None).await {
        Ok(_) => Redirect::to(&format!("/app/patient/{id}")).into_response(),
        Err(e) if matches!(e.category(), hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized) => {
            let errors = vec![("", "Nothing was saved: your role does not allow this for this patient.".to_string())];
            respond(StatusCode::FORBIDDEN, form_page(&session, &patient, &all, kind, &typed, &errors))
        }
        Err(e) if e.category() == hale_fhir::Category::Invalid => {
            let msg = format!(
                "Nothing was saved: {}",
                e.outcome().issues.first().map(|i| i.diagnostics.as_str()).unwrap_or("refused")
            );
            respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, kind, &typed, &vec![("", msg)]))
        }
        Err(e) => failure(&session, &e),
    }
}

macro_rules! routes_for {
    ($get:ident, $post:ident, $kind:expr) => {
        pub(crate) async fn $get(session: Session, Path(id): Path<String>, Query(q): Query<Fields>) -> Response {
            form($kind, session, id, q).await
        }
        pub(crate) async fn $post(session: Session, Path(id): Path<String>, Form(f): Form<Fields>) -> Response {
            save($kind, session, id, f).await
        }
    };
}

routes_for!(problem_form, problem_save, Kind::Problem);
routes_for!(allergy_form, allergy_save, Kind::Allergy);
routes_for!(immunization_form, immunization_save, Kind::Immunization);

/// `POST /app/patient/{id}/problem/{cid}/resolve`: the problem is resolved today.
pub(crate) async fn resolve(
    session: Session,
    Path((id, cid)): Path<(String, String)>,
    Form(f): Form<Fields>,
) -> Response {
    if !f.get("csrf").is_some_and(|t| same(t, &session.csrf)) {
        return problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was changed. Open the chart again.",
        );
    }
    if let Err(r) = open_patient(&session, &id).await {
        return r;
    }
    let not_found =
        || problem(StatusCode::NOT_FOUND, Some(&session), "Not found", "There is no such problem for this patient.");
    let (Ok(ty), Ok(rid)) = (hale_repository::resource_type("Condition"), hale_repository::resource_id(&cid)) else {
        return not_found();
    };
    let stored = match session.repo.read(&ty, &rid).await {
        Ok(s) => s,
        Err(e) => return failure(&session, &e),
    };
    let Some(mut c) = stored.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) else {
        return not_found();
    };
    if c["subject"]["reference"].as_str() != Some(&format!("Patient/{id}")) {
        return not_found();
    }
    c["clinicalStatus"] =
        json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "resolved"}]});
    c["abatementDateTime"] = json!(now_instant());
    match session.repo.update(&ty, &rid, c, Some(stored.version)).await {
        Ok(_) => Redirect::to(&format!("/app/patient/{id}")).into_response(),
        Err(e) => failure(&session, &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const NOW: &str = "2026-12-07T10:00:00Z";
    const TODAY: &str = "2026-12-07";

    fn valid(r: &Value) {
        let issues = hale_fhir::validate::validate_resource(r);
        assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}\n{r}");
    }

    #[test]
    fn each_form_makes_a_valid_resource() {
        let diabetes = PROBLEMS.iter().position(|p| p.icd10 == "E11.9").unwrap().to_string();
        let c = build(
            Kind::Problem,
            "p1",
            Some("Practitioner/x"),
            &fields(&[("term", &diabetes), ("onset", "2019-04")]),
            NOW,
            TODAY,
        )
        .unwrap();
        valid(&c);
        assert_eq!(c["code"]["coding"][1]["code"], "E11.9");
        assert_eq!(c["onsetDateTime"], "2019-04");
        let free =
            build(Kind::Problem, "p1", None, &fields(&[("term", ""), ("text", "Chronic cough")]), NOW, TODAY).unwrap();
        valid(&free);
        assert_eq!(free["code"]["text"], "Chronic cough");
        let pen = ALLERGENS.iter().position(|a| a.code == "91936005").unwrap().to_string();
        let a = build(
            Kind::Allergy,
            "p1",
            None,
            &fields(&[("term", &pen), ("criticality", "high"), ("reaction", "hives")]),
            NOW,
            TODAY,
        )
        .unwrap();
        valid(&a);
        // the allergy check reads what the form records
        let amox = hale_cds::drugs::DRUGS.iter().find(|d| d.name.starts_with("amoxicillin 500")).unwrap();
        assert_eq!(hale_cds::allergy_alerts(amox, &[a])[0].severity, hale_cds::Severity::High);
        for (i, al) in ALLERGENS.iter().enumerate() {
            let r = build(
                Kind::Allergy,
                "p1",
                None,
                &fields(&[("term", &i.to_string()), ("criticality", "low")]),
                NOW,
                TODAY,
            )
            .unwrap();
            valid(&r);
            assert_eq!(r["code"]["text"], al.name);
        }
        let i = build(
            Kind::Immunization,
            "p1",
            Some("Practitioner/x"),
            &fields(&[("term", "0"), ("given", "2026-10-01"), ("lot", "AB12")]),
            NOW,
            TODAY,
        )
        .unwrap();
        valid(&i);
        assert_eq!(i["vaccineCode"]["coding"][0]["code"], "140");
    }

    #[test]
    fn bad_forms_are_refused_by_field() {
        let e = build(Kind::Problem, "p1", None, &fields(&[("term", ""), ("onset", "2030-01-01")]), NOW, TODAY)
            .unwrap_err();
        assert_eq!(e.iter().map(|e| e.0).collect::<Vec<_>>(), ["term", "onset"], "{e:?}");
        let e = build(Kind::Allergy, "p1", None, &fields(&[("term", "999"), ("criticality", "extreme")]), NOW, TODAY)
            .unwrap_err();
        assert_eq!(e.iter().map(|e| e.0).collect::<Vec<_>>(), ["term", "criticality"], "{e:?}");
        let e = build(Kind::Immunization, "p1", None, &fields(&[("given", "2026-02-30")]), NOW, TODAY).unwrap_err();
        assert_eq!(e.iter().map(|e| e.0).collect::<Vec<_>>(), ["term", "given"], "{e:?}");
        assert!(past_date("2026-12-08", "2026-12-07").is_err());
        assert_eq!(past_date("", "2026-12-07"), Ok(None));
        assert!(past_date("20-1-1", "2026-12-07").is_err());
    }

    #[test]
    fn the_future_begins_after_the_installations_today_not_utcs() {
        // 21:00 on the 7th in New York is already the 8th in UTC: the 8th is not yet
        let (now, today) = ("2026-12-08T02:00:00Z", "2026-12-07");
        let given = fields(&[("term", "0"), ("given", "2026-12-08")]);
        let e = build(Kind::Immunization, "p1", None, &given, now, today).unwrap_err();
        assert_eq!(e, vec![("given", "The date is in the future.".to_string())]);
        let ok = fields(&[("term", "0"), ("given", "2026-12-07")]);
        assert_eq!(build(Kind::Immunization, "p1", None, &ok, now, today).unwrap()["occurrenceDateTime"], "2026-12-07");
        // and the other way round: the 8th already in Tokyo while UTC is on the 7th
        let given = fields(&[("term", "0"), ("given", "2026-12-08")]);
        assert!(build(Kind::Immunization, "p1", None, &given, "2026-12-07T16:00:00Z", "2026-12-08").is_ok());
    }
}
