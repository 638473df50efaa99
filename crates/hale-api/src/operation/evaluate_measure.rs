//! `Measure/[id]/$evaluate-measure`:
//! <https://hl7.org/fhir/R4/measure-operation-evaluate-measure.html>. One of Hale's
//! built-in quality measures (`hale_cds::measures::MEASURES`, by id) over a measurement
//! period (`periodStart`, `periodEnd`, required), for every patient the caller may see
//! or for one `subject`, answered as a MeasureReport: `summary` (the counts; `population`
//! is R4's name for it), `subject-list` (the counts, and each population's patients as a
//! contained List) or `subject` (one patient: an `individual` report). Patients and
//! their records are read through the caller's repository — searches the gate holds to
//! what the caller may see and audits —, only the types and codes the measure reads
//! (`hale_cds::measures::queries`), for [`CHUNK`] patients at a time. Nothing is stored.
//!
//! The built-in measures are not Measure resources of the store: the report's
//! `measure` names them by the canonical [`canonical`] gives.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use hale_cds::measures::{Group, Measure, Period, Tally, by_patient, measure, queries};
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::{Instant, Repository};
use serde_json::{Value, json};

use crate::{ApiError, ApiState, Call};

/// Patients evaluated at a time: their records are read (one search per type the
/// measure reads, naming these patients), evaluated and let go before the next ones, so
/// an evaluation holds the records of this many patients at most, whatever the
/// population.
pub const CHUNK: usize = 100;

/// The most resources of one type an evaluation reads for one [`CHUNK`] of patients; a
/// chunk beyond it is refused rather than counted in part.
pub const MAX_READ: usize = 50_000;

/// The canonical URL a built-in measure is named by in a MeasureReport.
pub fn canonical(id: &str) -> String {
    format!("urn:hale:measure:{id}")
}

fn invalid(at: &str, msg: impl Into<String>) -> ApiError {
    ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, msg.into()).at(at.to_string()))
}

/// What a report is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ReportType {
    Summary,
    SubjectList,
    Subject,
}

/// The operation's parameters: from the query, or on a POST from a `Parameters` body
/// (which wins where both name one).
struct Asked {
    start: Option<String>,
    end: Option<String>,
    report_type: Option<String>,
    subject: Option<String>,
    measure: Option<String>,
}

async fn parameters(st: &ApiState, method: &Method, call: &Call, body: Body) -> Result<Asked, ApiError> {
    let ctx = &call.ctx;
    ctx.check_params(&["periodStart", "periodEnd", "reportType", "subject", "measure"])?;
    let get = |k: &str| ctx.params.get(k).map(str::to_string);
    let mut asked = Asked {
        start: get("periodStart"),
        end: get("periodEnd"),
        report_type: get("reportType"),
        subject: get("subject"),
        measure: get("measure"),
    };
    for param in super::body_parameters(st, method, call, body, "evaluate-measure").await? {
        // a date, a code or a string: whichever value[x] it carries as text
        let value = ["valueDate", "valueDateTime", "valueCode", "valueString", "valueReference"].iter().find_map(|k| {
            match &param[*k] {
                Value::String(s) => Some(s.clone()),
                Value::Object(o) => o.get("reference").and_then(Value::as_str).map(str::to_string),
                _ => None,
            }
        });
        let name = param["name"].as_str().unwrap_or("");
        let slot = match name {
            "periodStart" => &mut asked.start,
            "periodEnd" => &mut asked.end,
            "reportType" => &mut asked.report_type,
            "subject" => &mut asked.subject,
            "measure" => &mut asked.measure,
            other => {
                let shown: String = other.chars().take(64).collect();
                return Err(ApiError::new(
                    Category::Invalid,
                    Issue::error(IssueType::NotSupported, format!("Parameter '{shown}' is not supported here"))
                        .at(format!("Parameters.parameter.where(name = '{shown}')")),
                ));
            }
        };
        match value {
            Some(v) => *slot = Some(v),
            None => return Err(invalid(name, format!("The parameter {name} has no value Hale reads"))),
        }
    }
    Ok(asked)
}

/// The period asked for: both ends required, each a date (a year or month widens to its
/// first or last day; a dateTime is read to its day), the end not before the start.
fn period(asked: &Asked) -> Result<Period, ApiError> {
    let one = |v: &Option<String>, name: &str| -> Result<String, ApiError> {
        let v = v.as_deref().map(str::trim).filter(|v| !v.is_empty());
        let v = v.ok_or_else(|| invalid(name, format!("{name} is required (a date, YYYY-MM-DD)")))?;
        // a dateTime is read to its day
        let d = if v.len() > 10 && v.as_bytes().get(10) == Some(&b'T') { &v[..10] } else { v };
        Period::new(d, d)
            .map(|_| d.to_string())
            .ok_or_else(|| invalid(name, format!("{name} is not a date (YYYY-MM-DD)")))
    };
    let (s, e) = (one(&asked.start, "periodStart")?, one(&asked.end, "periodEnd")?);
    Period::new(&s, &e).ok_or_else(|| invalid("periodEnd", "periodEnd is before periodStart"))
}

/// Every resource a search finds, page after page, through `repo` (each page a search
/// of the gate's); refused when there are more than [`MAX_READ`].
async fn read_all(
    repo: &Repository,
    page_size: usize,
    ty: &str,
    pairs: &[(&str, String)],
) -> Result<Vec<Value>, ApiError> {
    let mut out = Vec::new();
    read_pages(repo, page_size, ty, pairs, |page| {
        out.extend(page);
        if out.len() > MAX_READ {
            return Err(ApiError::new(
                Category::TooCostly,
                Issue::error(
                    IssueType::TooCostly,
                    format!("More than {MAX_READ} {ty} resources to read for {CHUNK} patients: evaluate the measure for one subject"),
                ),
            ));
        }
        Ok(())
    })
    .await?;
    Ok(out)
}

/// Each page a search finds through `repo`, handed to `each` as it comes.
async fn read_pages(
    repo: &Repository,
    page_size: usize,
    ty: &str,
    pairs: &[(&str, String)],
    mut each: impl FnMut(Vec<Value>) -> Result<(), ApiError>,
) -> Result<(), ApiError> {
    let rt = hale_repository::resource_type(ty)?;
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
    let mut request = hale_search::parse::parse(&rt, &pairs, false).map_err(hale_repository::Error::invalid)?;
    loop {
        let page = repo.search(&request, page_size, false).await?;
        let mut found = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            let Some(body) = &e.body else { continue };
            found.push(crate::stored_json(body)?);
        }
        each(found)?;
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => return Ok(()),
        }
    }
}

/// Where each of `patients` falls in `m` over `period`: their records read for them
/// alone (the searches [`queries`] names, with `patient=` these patients), evaluated,
/// and let go.
async fn evaluate_chunk(
    repo: &Repository,
    page_size: usize,
    m: &'static Measure,
    period: &Period,
    patients: &[Value],
) -> Result<Vec<(String, Group)>, ApiError> {
    let ids: Vec<String> = patients.iter().filter_map(|p| p["id"].as_str()).map(|id| format!("Patient/{id}")).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut records: Vec<Value> = Vec::new();
    for q in queries(&[m], &period.start) {
        let mut pairs: Vec<(&str, String)> = q.params.clone();
        pairs.push(("patient", ids.join(",")));
        records.extend(read_all(repo, page_size, q.resource_type, &pairs).await?);
    }
    let grouped = by_patient(&records);
    let tally = Tally::of(m, period, patients, &grouped);
    Ok(tally.places.iter().filter_map(|(p, place)| Some((p["id"].as_str()?.to_string(), place.group))).collect())
}

pub async fn handle(
    st: &ApiState,
    method: &Method,
    id: Option<&str>,
    call: &Call,
    body: Body,
) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let asked = parameters(st, method, call, body).await?;
    // the measure: the instance's id, or at the type level the `measure` parameter (an id
    // or the canonical a report names)
    let (named, at) = match (id, asked.measure.as_deref()) {
        (Some(id), _) => (id.to_string(), "id"),
        (None, Some(m)) => (m.strip_prefix("urn:hale:measure:").unwrap_or(m).to_string(), "measure"),
        (None, None) => {
            return Err(invalid("measure", "Name the measure: Measure/[id]/$evaluate-measure or measure=[id]"));
        }
    };
    let Some(m) = measure(&named) else {
        let shown: String = named.chars().take(64).collect();
        let known: Vec<&str> = hale_cds::measures::MEASURES.iter().map(|m| m.id).collect();
        return Err(ApiError::new(
            Category::NotFound,
            Issue::error(
                IssueType::NotFound,
                format!("There is no measure '{shown}'; Hale's are: {}", known.join(", ")),
            )
            .at(at.to_string()),
        ));
    };
    let period = period(&asked)?;
    let report_type = match (asked.report_type.as_deref(), asked.subject.is_some()) {
        (None, false) => ReportType::Summary,
        (None, true) => ReportType::Subject,
        (Some("summary" | "population"), _) => ReportType::Summary,
        (Some("subject-list"), _) => ReportType::SubjectList,
        (Some("subject"), _) => ReportType::Subject,
        (Some(other), _) => {
            let shown: String = other.chars().take(64).collect();
            return Err(invalid(
                "reportType",
                format!("reportType '{shown}' is not one of summary, subject-list, subject"),
            ));
        }
    };
    let subject = match asked.subject.as_deref().map(str::trim) {
        None => None,
        Some(s) => {
            let raw = s.strip_prefix("Patient/").unwrap_or(s);
            if raw.contains('/') {
                return Err(invalid("subject", "subject is a patient: Patient/[id]"));
            }
            Some(
                hale_repository::resource_id(raw)
                    .map_err(|_| invalid("subject", "subject is a patient: Patient/[id]"))?,
            )
        }
    };
    if report_type == ReportType::Subject && subject.is_none() {
        return Err(invalid("subject", "reportType subject needs subject=Patient/[id]"));
    }
    let page_size = st.limits.max_page_size.max(1);
    // the population: one patient (read as the caller: not found when not theirs to see),
    // or every patient the caller may see, a chunk at a time
    let mut places: Vec<(String, Group)> = Vec::new();
    match &subject {
        Some(sid) => {
            let stored = call.repo.read(&hale_repository::resource_type("Patient")?, sid).await?;
            let patient: Vec<Value> =
                stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).into_iter().collect();
            places = evaluate_chunk(&call.repo, page_size, m, &period, &patient).await?;
        }
        None => {
            let mut waiting: Vec<Value> = Vec::new();
            let mut chunks: Vec<Vec<Value>> = Vec::new();
            // no more than a page of patients at a time either
            let chunk = CHUNK.min(page_size);
            read_pages(&call.repo, page_size, "Patient", &[], |page| {
                waiting.extend(page);
                while waiting.len() >= chunk {
                    chunks.push(waiting.drain(..chunk).collect());
                }
                Ok(())
            })
            .await?;
            chunks.push(waiting);
            for chunk in chunks {
                places.extend(evaluate_chunk(&call.repo, page_size, m, &period, &chunk).await?);
            }
        }
    }
    let report = measure_report(m, &period, &places, report_type, subject.as_ref().map(|s| s.as_str()));
    Ok(ctx.respond_json(StatusCode::OK, &report))
}

const POPULATION: &str = "http://terminology.hl7.org/CodeSystem/measure-population";

/// The MeasureReport of the patients counted (`places`: each one's id and group).
fn measure_report(
    m: &Measure,
    period: &Period,
    places: &[(String, Group)],
    report_type: ReportType,
    subject: Option<&str>,
) -> Value {
    let ids = |g: Option<Group>| -> Vec<String> {
        places
            .iter()
            .filter(|(_, group)| g.is_none_or(|g| *group == g))
            .map(|(id, _)| format!("Patient/{id}"))
            .collect()
    };
    // (code, display, who): the denominator is the initial population; its exclusions
    // are counted apart, and the numerator is drawn from what remains
    let populations = [
        ("initial-population", "Initial Population", ids(None)),
        ("denominator", "Denominator", ids(None)),
        ("denominator-exclusion", "Denominator Exclusion", ids(Some(Group::Excluded))),
        ("numerator", "Numerator", ids(Some(Group::Met))),
    ];
    let mut contained = Vec::new();
    let population: Vec<Value> = populations
        .iter()
        .map(|(code, display, who)| {
            let mut p = json!({
                "code": {"coding": [{"system": POPULATION, "code": code, "display": display}]},
                "count": who.len(),
            });
            if report_type == ReportType::SubjectList {
                let mut list = json!({
                    "resourceType": "List",
                    "id": code,
                    "status": "current",
                    "mode": "snapshot",
                    "title": format!("{display}: {}", m.title),
                });
                if !who.is_empty() {
                    list["entry"] = who.iter().map(|r| json!({"item": {"reference": r}})).collect();
                }
                contained.push(list);
                p["subjectResults"] = json!({"reference": format!("#{code}")});
            }
            p
        })
        .collect();
    let mut group = json!({
        "id": m.id,
        "code": {"text": m.title},
        "population": population,
    });
    // the rate: the numerator over the denominator less its exclusions (`Tally::rate`)
    let count = |g: Group| places.iter().filter(|(_, group)| *group == g).count();
    let denominator = places.len() - count(Group::Excluded);
    if denominator > 0 {
        let rate = 100.0 * count(Group::Met) as f64 / denominator as f64;
        // a proportion, from 0 to 1
        let score = (rate / 100.0 * 10_000.0).round() / 10_000.0;
        group["measureScore"] = json!({"value": score});
    }
    let mut report = json!({"resourceType": "MeasureReport"});
    if !contained.is_empty() {
        report["contained"] = Value::Array(contained);
    }
    report["status"] = json!("complete");
    report["type"] = json!(match report_type {
        ReportType::Summary => "summary",
        ReportType::SubjectList => "subject-list",
        ReportType::Subject => "individual",
    });
    report["measure"] = json!(canonical(m.id));
    if let Some(s) = subject {
        report["subject"] = json!({"reference": format!("Patient/{s}")});
    }
    report["date"] = json!(Instant::now().to_fhir());
    report["period"] = json!({"start": period.start, "end": period.end});
    report["improvementNotation"] = json!({"coding": [{
        "system": "http://terminology.hl7.org/CodeSystem/measure-improvement-notation",
        "code": if m.inverse() { "decrease" } else { "increase" },
        "display": if m.inverse() { "Decreased score indicates improvement" } else { "Increased score indicates improvement" },
    }]});
    report["group"] = json!([group]);
    report
}
