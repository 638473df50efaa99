//! `Measure/[id]/$evaluate-measure`:
//! <https://hl7.org/fhir/R4/measure-operation-evaluate-measure.html>. One of Hale's
//! built-in quality measures (`hale_cds::measures::MEASURES`, by id) over a measurement
//! period (`periodStart`, `periodEnd`, required), for every patient the caller may see
//! or for one `subject`, answered as a MeasureReport: `summary` (the counts; `population`
//! is R4's name for it), `subject-list` (the counts, and each population's patients as a
//! contained List) or `subject` (one patient: an `individual` report). Patients and
//! their records are read through the caller's repository — searches the gate holds to
//! what the caller may see and audits —, only the types and codes the measure reads
//! (`hale_cds::measures::queries`), one patient at a time. Nothing is stored.
//!
//! The measure is evaluated by Hale's built-in logic, whatever the store holds; its
//! report's `measure` is the canonical `Measure::canonical` gives, the `url` of the
//! Measure resource `hale cds install-measures` (and the demo) writes for it.

use axum::body::Body;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use hale_cds::measures::{Group, Measure, Period, Tally, by_patient, measure, queries};
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::{Instant, Repository};
use serde_json::{Value, json};

use crate::{ApiError, ApiState, Call};

/// The most resources of one type an evaluation reads for one patient; a patient with
/// more is refused rather than counted in part.
pub const MAX_READ: usize = 50_000;

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

/// The pages of one search through `repo` (each page a search of the gate's), one at a
/// time.
struct Pages<'a> {
    repo: &'a Repository,
    page_size: usize,
    request: Option<hale_search::parse::SearchRequest>,
}

impl<'a> Pages<'a> {
    fn new(repo: &'a Repository, page_size: usize, ty: &str, pairs: &[(&str, String)]) -> Result<Self, ApiError> {
        let rt = hale_repository::resource_type(ty)?;
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect();
        let request = hale_search::parse::parse(&rt, &pairs, false).map_err(hale_repository::Error::invalid)?;
        Ok(Pages { repo, page_size, request: Some(request) })
    }

    /// The next page's resources, or `None` after the last.
    async fn next(&mut self) -> Result<Option<Vec<Value>>, ApiError> {
        let Some(request) = &mut self.request else { return Ok(None) };
        let page = self.repo.search(request, self.page_size, false).await?;
        let mut found = Vec::with_capacity(page.entries.len());
        for e in &page.entries {
            let Some(body) = &e.body else { continue };
            found.push(crate::stored_json(body)?);
        }
        match page.next {
            Some(next) => request.cursor = Some(next),
            None => self.request = None,
        }
        Ok(Some(found))
    }
}

/// Every resource a search finds; refused when there are more than [`MAX_READ`].
async fn read_all(
    repo: &Repository,
    page_size: usize,
    ty: &str,
    pairs: &[(&str, String)],
) -> Result<Vec<Value>, ApiError> {
    let mut pages = Pages::new(repo, page_size, ty, pairs)?;
    let mut out = Vec::new();
    while let Some(page) = pages.next().await? {
        out.extend(page);
        if out.len() > MAX_READ {
            return Err(ApiError::new(
                Category::TooCostly,
                Issue::error(
                    IssueType::TooCostly,
                    format!("More than {MAX_READ} {ty} resources to read for one patient"),
                ),
            ));
        }
    }
    Ok(out)
}

/// Where `patient` falls in `m` over `period` (`None`: outside the initial population):
/// the records [`queries`] names read for this patient alone — one search per type, each
/// listed by the patient's key in the index —, evaluated and let go.
async fn place_of(
    repo: &Repository,
    page_size: usize,
    m: &'static Measure,
    period: &Period,
    patient: &Value,
) -> Result<Option<(String, Group)>, ApiError> {
    let Some(id) = patient["id"].as_str() else { return Ok(None) };
    let mut records: Vec<Value> = Vec::new();
    for q in queries(&[m], &period.start) {
        let mut pairs: Vec<(&str, String)> = q.params.clone();
        pairs.push(("patient", format!("Patient/{id}")));
        records.extend(read_all(repo, page_size, q.resource_type, &pairs).await?);
    }
    let grouped = by_patient(&records);
    let tally = Tally::of(m, period, std::slice::from_ref(patient), &grouped);
    Ok(tally.places.first().map(|(_, place)| (id.to_string(), place.group)))
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
    // or every patient the caller may see, a page at a time, each patient evaluated with
    // their own records (a search per patient stays on the index's patient key, where
    // one naming many patients would not) and let go
    let mut places: Vec<(String, Group)> = Vec::new();
    match &subject {
        Some(sid) => {
            let stored = call.repo.read(&hale_repository::resource_type("Patient")?, sid).await?;
            if let Some(patient) = stored.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()) {
                places.extend(place_of(&call.repo, page_size, m, &period, &patient).await?);
            }
        }
        None => {
            let mut pages = Pages::new(&call.repo, page_size, "Patient", &[])?;
            while let Some(page) = pages.next().await? {
                for patient in &page {
                    places.extend(place_of(&call.repo, page_size, m, &period, patient).await?);
                }
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
    if let Some(rate) = hale_cds::measures::rate(places.iter().map(|(_, g)| *g)) {
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
    report["measure"] = json!(m.canonical());
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
