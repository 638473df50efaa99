//! CDS Hooks 2.0 services (<https://cds-hooks.hl7.org/2.0/>): Hale's decision support for
//! other EHR front ends, with the same rules as its own pages (`hale-cds`).
//!
//! - `GET /cds-services`: discovery (public: it names services, no health information).
//! - `POST /cds-services/hale-order-select` (`order-select`) and `.../hale-order-sign`
//!   (`order-sign`): each draft MedicationRequest of `context.draftOrders` checked
//!   against the patient's allergies, active medications, age, weight, latest eGFR and a
//!   recorded pregnancy — a card per alert.
//! - `POST /cds-services/hale-preventive-care` (`patient-view`): a card per preventive
//!   care item due.
//!
//! The patient's data is read through the gate as the caller (the bearer token of the
//! request, audited as every read), never from the request's `prefetch`: Hale is the
//! FHIR server, and what the caller may not read gives no card.

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::Repository;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::{Call, S, method_not_allowed, read_json};

/// `GET /cds-services`.
pub(crate) async fn discovery(method: Method) -> Response {
    if method != Method::GET {
        return method_not_allowed(&method, "GET");
    }
    Json(json!({"services": [
        {
            "hook": "order-select",
            "id": "hale-order-select",
            "title": "Hale medication safety (order select)",
            "description": "Checks a draft medication order against the patient's allergies (ingredient, class, cross-sensitivity), active medications (interactions, duplicate therapy), dose (adult and per kg for children), kidney function (latest eGFR), a recorded pregnancy and age. Every card names its source."
        },
        {
            "hook": "order-sign",
            "id": "hale-order-sign",
            "title": "Hale medication safety (order sign)",
            "description": "The same checks as hale-order-select, at signing."
        },
        {
            "hook": "patient-view",
            "id": "hale-preventive-care",
            "title": "Hale preventive care due",
            "description": "The preventive care due for the patient (CDC ACIP immunization schedules, USPSTF screening), each with what to do and its source."
        }
    ]}))
    .into_response()
}

fn invalid(text: impl Into<String>, at: &str) -> ApiError {
    ApiError::new(Category::Invalid, Issue::error(IssueType::Invalid, text.into()).at(at))
}

async fn search(repo: &Repository, ty: &str, pairs: Vec<(&str, &str)>, count: usize) -> Result<Vec<Value>, ApiError> {
    let t = hale_repository::resource_type(ty).map_err(ApiError::from)?;
    let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let req = hale_search::parse::parse(&t, &pairs, false).map_err(|i| ApiError::new(Category::Invalid, i))?;
    let page = repo.search(&req, count, false).await.map_err(ApiError::from)?;
    Ok(page.entries.iter().filter_map(|e| e.body.as_deref().and_then(|b| serde_json::from_str(b).ok())).collect())
}

fn today() -> String {
    hale_repository::Instant::now().to_fhir().chars().take(10).collect()
}

/// A card of an alert.
fn alert_card(a: &hale_cds::Alert, drug: &str) -> Value {
    let summary: String = a.title.chars().take(139).collect();
    json!({
        "uuid": uuid::Uuid::now_v7().to_string(),
        "summary": summary,
        "detail": format!("{} **What to do:** {} (rule `{}`, order: {drug})", a.detail, a.action, a.rule),
        "indicator": match a.severity { hale_cds::Severity::High => "critical", hale_cds::Severity::Moderate => "warning" },
        "source": {"label": a.source},
    })
}

/// `POST /cds-services/{id}`.
pub(crate) async fn service(State(st): S, Path(id): Path<String>, method: Method, call: Call, body: Body) -> Response {
    if method != Method::POST {
        return method_not_allowed(&method, "POST");
    }
    let expected = match id.as_str() {
        "hale-order-select" => "order-select",
        "hale-order-sign" => "order-sign",
        "hale-preventive-care" => "patient-view",
        _ => {
            return ApiError::new(
                Category::NotFound,
                Issue::error(IssueType::NotFound, format!("There is no CDS service '{id}'")),
            )
            .into_response();
        }
    };
    let result = async {
        let req = read_json(&st, &call.headers, body, call.ctx.pretty).await?;
        if req["hook"].as_str() != Some(expected) {
            return Err(invalid(format!("service {id} answers the {expected} hook"), "hook"));
        }
        if req["hookInstance"].as_str().is_none_or(str::is_empty) {
            return Err(invalid("hookInstance is required", "hookInstance"));
        }
        let Some(patient_id) = req["context"]["patientId"].as_str().filter(|p| !p.is_empty()) else {
            return Err(invalid("context.patientId is required", "context.patientId"));
        };
        let ty = hale_repository::resource_type("Patient").map_err(ApiError::from)?;
        let pid = hale_repository::resource_id(patient_id).map_err(ApiError::from)?;
        let stored = call.repo.read(&ty, &pid).await.map_err(ApiError::from)?;
        let patient: Value = stored.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        let repo = &call.repo;
        let cards = if expected == "patient-view" {
            let codes = hale_cds::preventive::loinc_codes()
                .iter()
                .map(|c| format!("http://loinc.org|{c}"))
                .chain(
                    hale_cds::preventive::snomed_observation_codes()
                        .iter()
                        .map(|c| format!("http://snomed.info/sct|{c}")),
                )
                .collect::<Vec<_>>()
                .join(",");
            let procs = hale_cds::preventive::procedure_codes()
                .iter()
                .map(|c| format!("http://snomed.info/sct|{c}"))
                .collect::<Vec<_>>()
                .join(",");
            let (conditions, immunizations, observations, procedures) = tokio::join!(
                search(
                    repo,
                    "Condition",
                    vec![("patient", patient_id), ("clinical-status", "active,recurrence,relapse")],
                    200
                ),
                search(repo, "Immunization", vec![("patient", patient_id)], 500),
                search(repo, "Observation", vec![("patient", patient_id), ("code", codes.as_str())], 500),
                search(repo, "Procedure", vec![("patient", patient_id), ("code", procs.as_str())], 500),
            );
            let mut records = observations?;
            records.extend(procedures?);
            hale_cds::preventive::due(&patient, &today(), &conditions?, &immunizations?, &records)
                .iter()
                .map(|d| {
                    json!({
                        "uuid": uuid::Uuid::now_v7().to_string(),
                        "summary": d.title,
                        "detail": format!("{} Last done: {}.", d.action, d.last.as_deref().unwrap_or("never recorded")),
                        "indicator": "info",
                        "source": {"label": d.source, "url": d.link},
                    })
                })
                .collect::<Vec<_>>()
        } else {
            let drafts: Vec<Value> = req["context"]["draftOrders"]["entry"]
                .as_array()
                .map(|e| e.iter().map(|x| x["resource"].clone()).collect())
                .unwrap_or_default();
            if req["context"]["draftOrders"]["resourceType"] != "Bundle" {
                return Err(invalid("context.draftOrders must be a Bundle of the draft orders", "context.draftOrders"));
            }
            let (obs_codes, problem_codes) = hale_cds::dosing::fact_queries();
            let (allergies, meds, observations, conditions) = tokio::join!(
                search(repo, "AllergyIntolerance", vec![("patient", patient_id)], 200),
                search(repo, "MedicationRequest", vec![("patient", patient_id), ("status", "active,on-hold")], 200),
                search(
                    repo,
                    "Observation",
                    vec![("patient", patient_id), ("code", obs_codes.as_str()), ("_sort", "-date")],
                    200
                ),
                search(repo, "Condition", vec![("patient", patient_id), ("code", problem_codes.as_str())], 20),
            );
            let (allergies, meds) = (allergies?, meds?);
            let facts = hale_cds::dosing::facts(&patient, &observations?, &conditions?, &today());
            let mut cards = Vec::new();
            for mr in drafts.iter().filter(|r| r["resourceType"] == "MedicationRequest") {
                let rxcui = mr["medicationCodeableConcept"]["coding"].as_array().and_then(|cs| {
                    cs.iter()
                        .find(|c| c["system"] == "http://www.nlm.nih.gov/research/umls/rxnorm")
                        .and_then(|c| c["code"].as_str())
                });
                let Some(drug) = rxcui.and_then(hale_cds::drugs::by_code) else {
                    cards.push(json!({
                        "uuid": uuid::Uuid::now_v7().to_string(),
                        "summary": "Not checked: the drug is not in Hale's table",
                        "detail": "Hale checks drugs coded with RxNorm codes of its table (`hale cds list`).",
                        "indicator": "info",
                        "source": {"label": "Hale drug table"},
                    }));
                    continue;
                };
                let others: Vec<Value> = meds.iter().filter(|m| m["id"] != mr["id"]).cloned().collect();
                let dose = hale_cds::dosing::dose_of_request(mr);
                for a in hale_cds::check_prescription(drug, &allergies, &others, &facts, dose) {
                    cards.push(alert_card(&a, drug.name));
                }
            }
            cards
        };
        Ok(Json(json!({"cards": cards})).into_response())
    }
    .await;
    call.finish(result)
}
