//! The chart's pages over time: `GET /app/patient/{id}/vitals` (blood pressure,
//! weight, BMI, heart rate and the other vital signs as charts, with a table of the
//! readings) and `GET /app/patient/{id}/results` (every laboratory test: its latest
//! value and flag, its trend over the years against its reference range, and every
//! value). Server-drawn SVG (`svg.rs`); each page is a read of the Patient and two
//! searches through the session's repository.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::Value;

use crate::chart::{Tab, allergies, header, open_patient};
use crate::fhir::{Flag, LOINC, code_in, concept, flag, has_code, number, observation_value, reference_range};
use crate::layout::{page, respond};
use crate::svg::{Chart, Series, chart};
use crate::{Session, failure, search};

/// The most observations a trend page reads.
const MAX_OBSERVATIONS: usize = 2000;

/// A vital sign charted: LOINC codes (the first is the panel or the value's own), the
/// title and the unit shown.
struct Vital {
    codes: &'static [&'static str],
    title: &'static str,
    unit: &'static str,
}

const CHARTED: &[Vital] = &[
    Vital { codes: &["85354-9", "55284-4"], title: "Blood pressure", unit: "mmHg" },
    Vital { codes: &["29463-7", "3141-9"], title: "Body weight", unit: "kg" },
    Vital { codes: &["39156-5"], title: "BMI", unit: "kg/m²" },
    Vital { codes: &["8867-4"], title: "Heart rate", unit: "/min" },
    Vital { codes: &["8302-2", "8306-3"], title: "Body height", unit: "cm" },
    Vital { codes: &["9279-1"], title: "Respiratory rate", unit: "/min" },
    Vital { codes: &["8310-5"], title: "Body temperature", unit: "°C" },
    Vital { codes: &["59408-5", "2708-6"], title: "Oxygen saturation", unit: "%" },
];

/// The day (number) an observation was made, in the installation's time zone.
fn when(zone: &crate::Zone, o: &Value) -> Option<i64> {
    o["effectiveDateTime"].as_str().or_else(|| o["effectivePeriod"]["start"].as_str()).and_then(|s| zone.day_number(s))
}

fn component(o: &Value, code: &str) -> Option<f64> {
    o["component"].as_array()?.iter().find(|c| has_code(&c["code"], code)).and_then(|c| number(&c["valueQuantity"]))
}

/// `GET /app/patient/{id}/vitals`.
pub(crate) async fn vitals(
    session: Session,
    Path(id): Path<String>,
    Query(params): Query<std::collections::HashMap<String, String>>,
) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = [("patient", id.as_str()), ("category", "vital-signs"), ("_sort", "-date")];
    let (all, found) =
        tokio::join!(allergies(&session, &id), search(&session.repo, "Observation", &q, MAX_OBSERVATIONS));
    let all = match all {
        Ok(a) => a,
        Err(r) => return r,
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return failure(&session, &e),
    };
    let zone = &session.zone;
    let charts: Vec<(Chart, Vec<&Value>, Option<Growth>)> = CHARTED
        .iter()
        .map(|v| {
            let obs: Vec<&Value> = found
                .iter()
                .filter(|o| code_in(&o["code"], LOINC).is_some_and(|c| v.codes.contains(&c.as_str())))
                .collect();
            let series = if v.title == "Blood pressure" {
                let sys = obs.iter().filter_map(|o| Some((when(zone, o)?, component(o, "8480-6")?))).collect();
                let dia = obs.iter().filter_map(|o| Some((when(zone, o)?, component(o, "8462-4")?))).collect();
                vec![
                    Series { label: "Systolic".into(), class: "s1", points: sys },
                    Series { label: "Diastolic".into(), class: "s2", points: dia },
                ]
            } else {
                let pts = obs.iter().filter_map(|o| Some((when(zone, o)?, number(&o["valueQuantity"])?))).collect();
                vec![Series { label: v.title.into(), class: "s1", points: pts }]
            };
            let growth = growth_of(&patient, v.title, &series);
            let guides = growth.as_ref().map(|g| g.guides.clone()).unwrap_or_default();
            (
                Chart { title: v.title, unit: v.unit, series, band: None, height: 200.0, scale: None, guides },
                obs,
                growth,
            )
        })
        .filter(|(_, obs, _)| !obs.is_empty())
        .collect();
    let body = html! {
        (header(&session, &patient, &all, Tab::Vitals))
        @if let Some(n) = params.get("recorded").and_then(|n| n.parse::<usize>().ok()) {
            p.notice role="status" { "Recorded " (n) @if n == 1 { " reading." } @else { " readings." } }
        }
        p.actions { a.button href={ "/app/patient/" (id) "/vitals/new" } { "Record vital signs" } }
        @if charts.is_empty() {
            section.card { p.empty { "No vital sign recorded." } }
        } @else {
            div.charts {
                @for (c, obs, growth) in &charts {
                    section.card aria-labelledby={ "v-" (slug(c.title)) } {
                        h2 id={ "v-" (slug(c.title)) } { (c.title) " (" (c.unit) ")" }
                        (chart(c))
                        @if let Some(g) = growth {
                            p.hint { "Dashed lines: the 3rd, 15th, 50th, 85th and 97th percentiles for age and sex (" (g.source) ")." }
                        }
                        (readings(&session.zone, obs, growth.as_ref()))
                    }
                }
            }
        }
    };
    respond(
        StatusCode::OK,
        page(&format!("Vital signs · {}", crate::fhir::person_name(&patient)), Some(&session), body),
    )
}

/// A child's growth chart: the measure, the child's sex and birth day, and the
/// percentile lines over the days of its readings.
struct Growth {
    measure: crate::growth::Measure,
    sex: String,
    birth: i64,
    source: &'static str,
    guides: Vec<(String, Vec<(i64, f64)>)>,
}

/// The growth chart of vital sign `title` for `patient` when they are a child the WHO
/// tables cover on some day of `series` (weight to 5 years, height and BMI to 19) and
/// their sex is recorded: percentile lines over those days.
fn growth_of(patient: &Value, title: &str, series: &[Series]) -> Option<Growth> {
    use crate::growth::{Measure, curves, lms, months, ordinal};
    let measure = Measure::of_chart(title)?;
    let sex = patient["gender"].as_str().filter(|g| matches!(*g, "male" | "female"))?.to_string();
    let birth = patient["birthDate"].as_str().and_then(crate::svg::day_number)?;
    let days: Vec<i64> = series.iter().flat_map(|s| s.points.iter().map(|p| p.0)).collect();
    let source = match measure {
        Measure::Weight => "WHO Child Growth Standards",
        _ => "WHO Child Growth Standards to 5 years, WHO Growth Reference 2007 to 19",
    };
    if !days.iter().any(|d| lms(measure, &sex, months(birth, *d)).is_some()) {
        return None;
    }
    let (x0, x1) = (days.iter().min().copied()?, days.iter().max().copied()?);
    let (x0, x1) = if x1 - x0 < 30 { (x0 - 15, x1 + 15) } else { (x0, x1) };
    let guides = curves(measure, &sex, birth, x0, x1)
        .into_iter()
        .map(|(p, pts)| (format!("{} percentile", ordinal(p)), pts))
        .collect();
    Some(Growth { measure, sex, birth, source, guides })
}

/// The latest readings under a chart (the chart holds them all), with a child's
/// percentile of each when it is a growth chart.
fn readings(zone: &crate::Zone, obs: &[&Value], growth: Option<&Growth>) -> Markup {
    let percentile = |o: &Value| -> Option<String> {
        let g = growth?;
        let day = when(zone, o)?;
        crate::growth::percentile_words(
            g.measure,
            &g.sex,
            crate::growth::months(g.birth, day),
            number(&o["valueQuantity"])?,
        )
    };
    let with_percentiles = growth.is_some() && obs.iter().take(5).any(|o| percentile(o).is_some());
    html! {
        table.readings {
            thead { tr { th { "Date" } th { "Value" } @if with_percentiles { th { "For age (WHO)" } } } }
            tbody {
                @for o in obs.iter().take(5) {
                    tr {
                        td.date { (zone.when(&o["effectiveDateTime"])) }
                        td.num { (observation_value(o)) }
                        @if with_percentiles { td { (percentile(o).unwrap_or_else(|| "–".into())) } }
                    }
                }
            }
        }
        @if obs.len() > 5 { p.hint { "The latest 5 of " (obs.len()) " readings; the chart shows them all." } }
    }
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// `GET /app/patient/{id}/results`.
pub(crate) async fn results(session: Session, Path(id): Path<String>) -> Response {
    let patient = match open_patient(&session, &id).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let q = [("patient", id.as_str()), ("category", "laboratory"), ("_sort", "-date")];
    let (all, found) =
        tokio::join!(allergies(&session, &id), search(&session.repo, "Observation", &q, MAX_OBSERVATIONS));
    let all = match all {
        Ok(a) => a,
        Err(r) => return r,
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return failure(&session, &e),
    };
    let groups = by_test(&found);
    let body = html! {
        (header(&session, &patient, &all, Tab::Results))
        @if groups.is_empty() {
            section.card { p.empty { "No laboratory result recorded." } }
        } @else {
            nav.card.analytes aria-label="Tests" {
                @for (i, (_, obs)) in groups.iter().enumerate() {
                    @let f = flag(obs[0]);
                    a href={ "#t" (i) } {
                        (concept(&obs[0]["code"]))
                        @if f != Flag::Normal { " " span class={ "flag " (f.label()) } title=(f.words()) { (f.label()) span.sr { " " (f.words()) } } }
                    }
                }
            }
            @for (i, (_, obs)) in groups.iter().enumerate() {
                (analyte(&session.zone, i, obs))
            }
        }
    };
    respond(StatusCode::OK, page(&format!("Results · {}", crate::fhir::person_name(&patient)), Some(&session), body))
}

/// Results by test (LOINC code, else the code's text), newest first within each; tests
/// in the order of their latest result (`found` is newest first).
pub(crate) fn by_test(found: &[Value]) -> Vec<(String, Vec<&Value>)> {
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for o in found {
        let key = code_in(&o["code"], LOINC).unwrap_or_else(|| concept(&o["code"]));
        match groups.iter_mut().find(|g| g.0 == key) {
            Some(g) => g.1.push(o),
            None => groups.push((key, vec![o])),
        }
    }
    groups
}

/// One test: its latest value, its trend against the reference range, every value.
pub(crate) fn analyte(zone: &crate::Zone, i: usize, obs: &[&Value]) -> Markup {
    let latest = obs[0];
    let unit = latest["valueQuantity"]["unit"].as_str().unwrap_or("");
    let rr = latest["referenceRange"].as_array().and_then(|r| r.first());
    let band = rr.map(|r| (number(&r["low"]), number(&r["high"]))).filter(|b| b.0.is_some() || b.1.is_some());
    let points: Vec<(i64, f64)> =
        obs.iter().filter_map(|o| Some((when(zone, o)?, number(&o["valueQuantity"])?))).collect();
    let title = concept(&latest["code"]);
    let c = Chart {
        title: &title,
        unit,
        series: vec![Series { label: title.clone(), class: "s1", points }],
        band,
        height: 150.0,
        scale: None,
        guides: vec![],
    };
    let f = flag(latest);
    html! {
        section.card.analyte id={ "t" (i) } aria-labelledby={ "t" (i) "-h" } {
            h3 id={ "t" (i) "-h" } { (title) }
            p.latest {
                "Latest " strong { (observation_value(latest)) } " on " (zone.day(&latest["effectiveDateTime"]))
                @if f != Flag::Normal { " " span class={ "flag " (f.label()) } title=(f.words()) { (f.label()) span.sr { " " (f.words()) } } }
                @let range = reference_range(latest);
                @if !range.is_empty() { " · reference " (range) }
            }
            @if obs.len() > 1 { (chart(&c)) }
            table {
                thead { tr { th { "Date" } th { "Value" } th { "Flag" } th.hide-narrow { "Reference range" } } }
                tbody {
                    @for o in obs {
                        @let f = flag(o);
                        tr class=(crate::chart::row_class(f)) {
                            td.date { (zone.when(&o["effectiveDateTime"])) }
                            td.num { (observation_value(o)) }
                            td { @if f != Flag::Normal { span class={ "flag " (f.label()) } title=(f.words()) { (f.label()) span.sr { " " (f.words()) } } } }
                            td.num.hide-narrow { (reference_range(o)) }
                        }
                    }
                }
            }
        }
    }
}
