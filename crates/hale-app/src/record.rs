//! Recording vital signs: `GET /app/patient/{id}/vitals/new` (the form) and `POST
//! /app/patient/{id}/vitals` (the readings, checked for units and plausible ranges, then
//! written as one FHIR transaction of vital-sign Observations through the session's
//! repository: all or nothing, validated, access-checked and audited as any write).
//! A refused form comes back with a message next to each field at fault and every value
//! typed kept.

use std::collections::HashMap;
use std::str::FromStr;

use axum::Form;
use axum::extract::Path;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde_json::{Value, json};

use crate::chart::{Tab, allergies, header, open_patient};
use crate::layout::{page, respond};
use crate::{Session, failure, now_instant, same_secret as same};

/// A measurement the form takes: field name, label, LOINC code and display, UCUM unit
/// (code and how it is shown), the plausible range, and a hint.
#[derive(Debug)]
pub(crate) struct Field {
    pub name: &'static str,
    pub label: &'static str,
    pub loinc: &'static str,
    pub display: &'static str,
    pub ucum: &'static str,
    pub unit: &'static str,
    pub min: f64,
    pub max: f64,
}

pub(crate) const FIELDS: &[Field] = &[
    Field {
        name: "systolic",
        label: "Systolic",
        loinc: "8480-6",
        display: "Systolic blood pressure",
        ucum: "mm[Hg]",
        unit: "mmHg",
        min: 50.0,
        max: 300.0,
    },
    Field {
        name: "diastolic",
        label: "Diastolic",
        loinc: "8462-4",
        display: "Diastolic blood pressure",
        ucum: "mm[Hg]",
        unit: "mmHg",
        min: 20.0,
        max: 200.0,
    },
    Field {
        name: "pulse",
        label: "Heart rate",
        loinc: "8867-4",
        display: "Heart rate",
        ucum: "/min",
        unit: "/min",
        min: 20.0,
        max: 300.0,
    },
    Field {
        name: "resp",
        label: "Respiratory rate",
        loinc: "9279-1",
        display: "Respiratory rate",
        ucum: "/min",
        unit: "/min",
        min: 4.0,
        max: 80.0,
    },
    Field {
        name: "temp",
        label: "Temperature",
        loinc: "8310-5",
        display: "Body temperature",
        ucum: "Cel",
        unit: "°C",
        min: 25.0,
        max: 45.0,
    },
    Field {
        name: "spo2",
        label: "Oxygen saturation",
        loinc: "59408-5",
        display: "Oxygen saturation in Arterial blood by Pulse oximetry",
        ucum: "%",
        unit: "%",
        min: 50.0,
        max: 100.0,
    },
    Field {
        name: "weight",
        label: "Weight",
        loinc: "29463-7",
        display: "Body weight",
        ucum: "kg",
        unit: "kg",
        min: 0.3,
        max: 500.0,
    },
    Field {
        name: "height",
        label: "Height",
        loinc: "8302-2",
        display: "Body height",
        ucum: "cm",
        unit: "cm",
        min: 20.0,
        max: 250.0,
    },
];

/// The readings of a form that passed every check: (field, value as typed, number).
#[derive(Debug)]
pub(crate) struct Readings {
    pub taken: String,
    pub values: Vec<(&'static Field, serde_json::Number, f64)>,
}

/// Checks a submitted form. `Err` maps field names (or `""` for the form as a whole)
/// to a message for the person who typed it. The time taken is read as the wall-clock
/// time in `zone` and kept with its offset; left empty, it is `now` (a FHIR instant).
pub(crate) fn check(
    form: &HashMap<String, String>,
    now: &str,
    zone: &crate::Zone,
) -> Result<Readings, Vec<(&'static str, String)>> {
    let mut errors: Vec<(&'static str, String)> = Vec::new();
    let mut values = Vec::new();
    for f in FIELDS {
        let raw = form.get(f.name).map(|s| s.trim()).unwrap_or("");
        if raw.is_empty() {
            continue;
        }
        let text = raw.replace(',', ".");
        let ok_chars =
            !text.is_empty() && text.chars().all(|c| c.is_ascii_digit() || c == '.') && text.matches('.').count() <= 1;
        let parsed = if ok_chars { text.parse::<f64>().ok() } else { None };
        match parsed {
            None => errors.push((
                f.name,
                format!("Write the {} as a number in {}, e.g. {}.", f.label.to_lowercase(), f.unit, fmt_example(f)),
            )),
            Some(v) if v < f.min || v > f.max => errors.push((
                f.name,
                format!(
                    "{} {} {} is outside what is plausible ({} to {} {}). Check the value and its unit.",
                    f.label, raw, f.unit, f.min, f.max, f.unit
                ),
            )),
            Some(v) => match serde_json::Number::from_str(&json_number(&text)) {
                Ok(n) => values.push((f, n, v)),
                Err(_) => errors.push((f.name, format!("Write the {} as a number.", f.label.to_lowercase()))),
            },
        }
    }
    let sys = values.iter().find(|v| v.0.name == "systolic").map(|v| v.2);
    let dia = values.iter().find(|v| v.0.name == "diastolic").map(|v| v.2);
    let bp_fields_ok = !errors.iter().any(|e| e.0 == "systolic" || e.0 == "diastolic");
    match (sys, dia) {
        (Some(s), Some(d)) if d >= s => {
            errors.push(("diastolic", "The diastolic pressure is lower than the systolic.".into()))
        }
        (Some(_), None) if bp_fields_ok => errors.push(("diastolic", "A blood pressure needs both numbers.".into())),
        (None, Some(_)) if bp_fields_ok => errors.push(("systolic", "A blood pressure needs both numbers.".into())),
        _ => {}
    }
    let taken = form.get("taken").map(|s| s.trim()).unwrap_or("");
    let taken = if taken.is_empty() {
        now.to_string()
    } else {
        let now_ms = crate::clock::instant(now).map(|t| t.as_millisecond()).unwrap_or(i64::MAX);
        match zone.read_local(taken) {
            Ok(t) if t.millis <= now_ms => t.fhir,
            Ok(_) => {
                errors.push(("taken", "The time is in the future.".into()));
                String::new()
            }
            Err(e) => {
                errors.push(("taken", e.message()));
                String::new()
            }
        }
    };
    if values.is_empty() && errors.is_empty() {
        errors.push(("", "Enter at least one measurement.".into()));
    }
    if errors.is_empty() { Ok(Readings { taken, values }) } else { Err(errors) }
}

/// Digits and at most one point as a JSON number: no leading zeros, a zero before a
/// leading point, no trailing point; the digits after the point kept as typed.
fn json_number(text: &str) -> String {
    let (int, frac) = match text.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (text, None),
    };
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    match frac {
        Some(f) if !f.is_empty() => format!("{int}.{f}"),
        _ => int.to_string(),
    }
}

fn fmt_example(f: &Field) -> String {
    match f.name {
        "temp" => "36.8".into(),
        "weight" => "72.5".into(),
        _ => format!("{}", ((f.min + f.max) / 2.0).round()),
    }
}

fn vital_category() -> Value {
    json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs", "display": "Vital Signs"}]}])
}

fn quantity(f: &Field, n: &serde_json::Number) -> Value {
    json!({"value": n, "unit": f.unit, "system": "http://unitsofmeasure.org", "code": f.ucum})
}

/// The transaction that records `r` for `patient`, performed by `performer`.
pub(crate) fn transaction(patient: &str, performer: Option<&str>, encounter: Option<&str>, r: &Readings) -> Value {
    let base = |code: &str, display: &str| {
        let mut o = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": vital_category(),
            "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": display}], "text": display},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": r.taken,
        });
        if let Some(p) = performer {
            o["performer"] = json!([{"reference": p}]);
        }
        if let Some(e) = encounter {
            o["encounter"] = json!({"reference": format!("Encounter/{e}")});
        }
        o
    };
    let mut entries = Vec::new();
    let get = |name: &str| r.values.iter().find(|v| v.0.name == name);
    if let (Some(s), Some(d)) = (get("systolic"), get("diastolic")) {
        let mut bp = base("85354-9", "Blood pressure panel with all children optional");
        bp["component"] = json!([
            {"code": {"coding": [{"system": "http://loinc.org", "code": s.0.loinc, "display": s.0.display}]}, "valueQuantity": quantity(s.0, &s.1)},
            {"code": {"coding": [{"system": "http://loinc.org", "code": d.0.loinc, "display": d.0.display}]}, "valueQuantity": quantity(d.0, &d.1)},
        ]);
        entries.push(bp);
    }
    for (f, n, _) in r.values.iter().filter(|v| v.0.name != "systolic" && v.0.name != "diastolic") {
        let mut o = base(f.loinc, f.display);
        o["valueQuantity"] = quantity(f, n);
        entries.push(o);
    }
    if let (Some(w), Some(h)) = (get("weight"), get("height")) {
        let bmi = w.2 / (h.2 / 100.0).powi(2);
        let rounded = (bmi * 10.0).round() / 10.0;
        if let Some(n) = serde_json::Number::from_f64(rounded) {
            let mut o = base("39156-5", "Body mass index (BMI) [Ratio]");
            o["valueQuantity"] =
                json!({"value": n, "unit": "kg/m2", "system": "http://unitsofmeasure.org", "code": "kg/m2"});
            entries.push(o);
        }
    }
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": entries.into_iter().map(|o| json!({"resource": o, "request": {"method": "POST", "url": "Observation"}})).collect::<Vec<_>>(),
    })
}

/// `GET /app/patient/{id}/vitals/new`.
pub(crate) async fn form(
    session: Session,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<HashMap<String, String>>,
) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let mut typed = HashMap::new();
    typed.insert("taken".to_string(), session.zone.now_input());
    if let Some(e) = q.get("encounter") {
        typed.insert("encounter".to_string(), e.clone());
    }
    respond(StatusCode::OK, form_page(&session, &patient, &all, &typed, &[]))
}

fn form_page(
    session: &Session,
    patient: &Value,
    all: &[Value],
    typed: &HashMap<String, String>,
    errors: &[(&str, String)],
) -> Markup {
    let id = patient["id"].as_str().unwrap_or("");
    let error_of = |name: &str| errors.iter().find(|e| e.0 == name).map(|e| e.1.clone());
    let value_of = |name: &str| typed.get(name).cloned().unwrap_or_default();
    let body = html! {
        (header(session, patient, all, Tab::Vitals))
        section.card.form-card aria-labelledby="rec-h" {
            h1 #rec-h { "Record vital signs" }
            @if let Some(e) = error_of("") { p.error role="alert" { (e) } }
            @if !errors.is_empty() && error_of("").is_none() {
                p.error role="alert" { "Nothing was saved. Check the fields marked below." }
            }
            form method="post" action={ "/app/patient/" (id) "/vitals" } novalidate {
                input type="hidden" name="csrf" value=(session.csrf);
                @if let Some(e) = typed.get("encounter").filter(|e| !e.is_empty()) { input type="hidden" name="encounter" value=(e); }
                div.fields {
                    (field_row("taken", &format!("Taken at ({})", session.zone.name()), "datetime-local", &value_of("taken"), error_of("taken"), ""))
                    @for f in FIELDS {
                        (field_row(f.name, f.label, "text", &value_of(f.name), error_of(f.name), f.unit))
                    }
                }
                p.hint { "Leave empty what was not measured. With weight and height, the BMI is recorded too." }
                div.actions {
                    button.primary type="submit" { "Save" }
                    a href={ "/app/patient/" (id) "/vitals" } { "Cancel" }
                }
            }
        }
    };
    page("Record vital signs", Some(session), body)
}

fn field_row(name: &str, label: &str, kind: &str, value: &str, error: Option<String>, unit: &str) -> Markup {
    let err_id = format!("{name}-error");
    html! {
        div.field {
            label for=(name) { (label) @if !unit.is_empty() { " " small { "(" (unit) ")" } } }
            @if kind == "text" {
                input id=(name) name=(name) type="text" inputmode="decimal" autocomplete="off" value=(value)
                    aria-invalid=[error.as_ref().map(|_| "true")] aria-describedby=[error.as_ref().map(|_| err_id.as_str())];
            } @else {
                input id=(name) name=(name) type=(kind) value=(value)
                    aria-invalid=[error.as_ref().map(|_| "true")] aria-describedby=[error.as_ref().map(|_| err_id.as_str())];
            }
            @if let Some(e) = &error { p.error.field-error id=(err_id) { (e) } }
        }
    }
}

/// `POST /app/patient/{id}/vitals`.
pub(crate) async fn save(
    session: Session,
    Path(id): Path<String>,
    Form(typed): Form<HashMap<String, String>>,
) -> Response {
    if !typed.get("csrf").is_some_and(|t| same(t, &session.csrf)) {
        return crate::layout::problem(
            StatusCode::FORBIDDEN,
            Some(&session),
            "The form expired",
            "Nothing was saved: the form came from an earlier sign-in. Open it again and re-enter the values.",
        );
    }
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let all = match allergies(&session, &id).await {
        Ok(a) => a,
        Err(r) => return r,
    };
    let readings = match check(&typed, &now_instant(), &session.zone) {
        Ok(r) => r,
        Err(errors) => return respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, &typed, &errors)),
    };
    let performer = session.account.fhir_user.as_deref().filter(|u| u.starts_with("Practitioner/"));
    // readings taken at a visit are tied to it: an encounter of this patient
    let encounter = typed.get("encounter").map(|e| e.trim()).filter(|e| !e.is_empty());
    if let Some(e) = encounter {
        let of_patient = match (hale_repository::resource_type("Encounter"), hale_repository::resource_id(e)) {
            (Ok(t), Ok(i)) => session
                .repo
                .read(&t, &i)
                .await
                .ok()
                .and_then(|r| r.body)
                .and_then(|b| serde_json::from_str::<Value>(&b).ok())
                .is_some_and(|enc| enc["subject"]["reference"].as_str() == Some(&format!("Patient/{id}"))),
            _ => false,
        };
        if !of_patient {
            let msg = "Nothing was saved: the visit these readings belong to is not one of this patient's.".to_string();
            return respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, &typed, &[("", msg)]));
        }
    }
    let bundle = transaction(&id, performer, encounter, &readings);
    match session.repo.process_bundle(bundle).await {
        Ok((_, entries)) => {
            if let Some(Err(e)) = entries.iter().find(|e| e.is_err()) {
                let msg = format!("Nothing was saved: {}", plain(e));
                return respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, &typed, &[("", msg)]));
            }
            let to = match encounter {
                Some(e) => format!("/app/patient/{id}/visit/{e}"),
                None => format!("/app/patient/{id}/vitals?recorded={}", entries.len()),
            };
            Redirect::to(&to).into_response()
        }
        Err(e) if matches!(e.category(), hale_fhir::Category::Forbidden | hale_fhir::Category::Unauthorized) => {
            let msg = "Nothing was saved: your role does not allow recording vital signs for this patient.".to_string();
            respond(StatusCode::FORBIDDEN, form_page(&session, &patient, &all, &typed, &[("", msg)]))
        }
        Err(e) if e.category() == hale_fhir::Category::Invalid => {
            let msg = format!("Nothing was saved: {}", plain(&e));
            respond(StatusCode::BAD_REQUEST, form_page(&session, &patient, &all, &typed, &[("", msg)]))
        }
        Err(e) => failure(&session, &e),
    }
}

/// The first issue of an error, for a person.
pub(crate) fn plain(e: &hale_repository::Error) -> String {
    e.outcome()
        .issues
        .first()
        .map(|i| i.diagnostics.clone())
        .unwrap_or_else(|| "the record refused the readings.".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    const NOW: &str = "2026-12-07T10:00:00Z";

    #[test]
    fn plausible_readings_pass_and_keep_their_digits() {
        let r = check(
            &form(&[("systolic", "128"), ("diastolic", "84"), ("temp", "36,80"), ("taken", "2026-12-07T09:30")]),
            NOW,
            &crate::Zone::utc(),
        )
        .unwrap();
        assert_eq!(r.taken, "2026-12-07T09:30:00Z");
        assert_eq!(r.values.len(), 3);
        assert_eq!(r.values.iter().find(|v| v.0.name == "temp").unwrap().1.to_string(), "36.80");
        let b = transaction("p1", Some("Practitioner/x"), None, &r);
        let entries = b["entry"].as_array().unwrap();
        assert_eq!(entries.len(), 2, "a blood pressure panel and a temperature");
        assert_eq!(entries[0]["resource"]["component"][1]["valueQuantity"]["value"].to_string(), "84");
        assert_eq!(entries[1]["resource"]["valueQuantity"]["code"], "Cel");
        for e in entries {
            let issues = hale_fhir::validate::validate_resource(&e["resource"]);
            assert!(!issues.iter().any(hale_fhir::Issue::is_error), "{issues:?}");
        }
    }

    #[test]
    fn the_time_taken_is_read_in_the_installations_zone() {
        let ny = crate::Zone::named("America/New_York").unwrap();
        let at = |taken: &str, now: &str| check(&form(&[("pulse", "70"), ("taken", taken)]), now, &ny);
        // winter and summer: the offset of the day
        assert_eq!(at("2026-01-05T08:15", NOW).unwrap().taken, "2026-01-05T08:15:00-05:00");
        assert_eq!(at("2026-07-15T09:00", NOW).unwrap().taken, "2026-07-15T09:00:00-04:00");
        // the future is judged by the instant: 09:30 in New York is 14:30 UTC
        assert!(at("2026-12-07T04:59", NOW).is_ok());
        let e = at("2026-12-07T09:30", NOW).unwrap_err();
        assert_eq!(e, vec![("taken", "The time is in the future.".to_string())]);
        assert!(at("2026-12-07T09:30", "2026-12-07T14:30:00Z").is_ok());
        // the skipped hour is refused with the time the clock showed
        let e = at("2026-03-08T02:30", NOW).unwrap_err();
        assert_eq!(e[0].0, "taken");
        assert!(
            e[0].1.contains("There was no 2026-03-08 02:30 in America/New_York") && e[0].1.contains("03:30"),
            "{e:?}"
        );
        // the repeated hour is its first occurrence (daylight time)
        assert_eq!(at("2026-11-01T01:30", NOW).unwrap().taken, "2026-11-01T01:30:00-04:00");
        // left empty: now, as Hale stamps it
        assert_eq!(check(&form(&[("pulse", "70")]), NOW, &ny).unwrap().taken, NOW);
    }

    #[test]
    fn weight_and_height_give_a_bmi() {
        let r = check(&form(&[("weight", "80"), ("height", "180")]), NOW, &crate::Zone::utc()).unwrap();
        assert_eq!(r.taken, NOW);
        let b = transaction("p1", None, Some("e1"), &r);
        let bmi = b["entry"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["resource"]["code"]["coding"][0]["code"] == "39156-5")
            .unwrap();
        assert_eq!(bmi["resource"]["valueQuantity"]["value"].to_string(), "24.7");
    }

    #[test]
    fn implausible_or_malformed_readings_are_refused_by_field() {
        let e = check(
            &form(&[("pulse", "720"), ("temp", "98.6"), ("weight", "7o"), ("systolic", "120")]),
            NOW,
            &crate::Zone::utc(),
        )
        .unwrap_err();
        let fields: Vec<&str> = e.iter().map(|e| e.0).collect();
        assert_eq!(fields, ["pulse", "temp", "weight", "diastolic"], "{e:?}");
        assert!(e[1].1.contains("outside what is plausible") && e[1].1.contains("°C"), "{e:?}");
        let e = check(&form(&[("systolic", "80"), ("diastolic", "120")]), NOW, &crate::Zone::utc()).unwrap_err();
        assert_eq!(e[0].0, "diastolic");
        let e = check(&form(&[]), NOW, &crate::Zone::utc()).unwrap_err();
        assert_eq!(e, vec![("", "Enter at least one measurement.".to_string())]);
        for bad in ["2026-12-08T10:00", "yesterday", "2026-13-01T10:00", "2026-12-07T25:00"] {
            let e = check(&form(&[("pulse", "70"), ("taken", bad)]), NOW, &crate::Zone::utc()).unwrap_err();
            assert_eq!(e[0].0, "taken", "{bad}");
        }
        assert_eq!(json_number("072"), "72");
        assert_eq!(json_number(".5"), "0.5");
        assert_eq!(json_number("70."), "70");
        for bad in ["-5", "1e2", "7.2.1", "NaN", "inf", "."] {
            assert!(check(&form(&[("pulse", bad)]), NOW, &crate::Zone::utc()).is_err(), "{bad}");
        }
    }
}
