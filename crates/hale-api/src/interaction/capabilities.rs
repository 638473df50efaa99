//! capabilities: <https://hl7.org/fhir/R4/http.html#capabilities>. The
//! CapabilityStatement lists exactly what this server does.

use axum::http::StatusCode;
use axum::response::Response;
use hale_fhir::Definitions;
use hale_search::parse::ParamType;
use serde_json::{Value, json};

use crate::{ApiError, ApiState, Call};

/// Search parameters of a type that the index serves (composite ones are not yet).
fn search_params(ty: &str) -> Vec<Value> {
    let mut out = vec![
        json!({"name": "_id", "type": "token", "definition": "http://hl7.org/fhir/SearchParameter/Resource-id"}),
        json!({"name": "_lastUpdated", "type": "date", "definition": "http://hl7.org/fhir/SearchParameter/Resource-lastUpdated"}),
    ];
    let mut seen = std::collections::HashSet::new();
    for p in Definitions::get().search_parameters_for(ty) {
        if matches!(p.code.as_str(), "_id" | "_lastUpdated")
            || p.expression.is_none()
            || ParamType::of(p) == ParamType::Special
            || hale_search::parse::component_types(p).is_none()
            || hale_search::parse::find_param(ty, &p.code).map(|d| d.url.as_str()) != Some(p.url.as_str())
            || !seen.insert(p.code.clone())
        {
            continue;
        }
        out.push(json!({"name": p.code, "type": p.kind, "definition": p.url}));
    }
    out
}

pub fn handle(st: &ApiState, call: &Call) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    ctx.check_params(&["mode"]).map_err(|e| e.pretty(ctx.pretty))?;
    let interactions = json!([
        {"code": "read"}, {"code": "vread"}, {"code": "update"}, {"code": "patch"}, {"code": "delete"},
        {"code": "history-instance"}, {"code": "history-type"}, {"code": "create"}, {"code": "search-type"}
    ]);
    let compartment = Definitions::get().patient_compartment();
    let resources: Vec<Value> = Definitions::get()
        .resource_types()
        .into_iter()
        .map(|t| {
            let mut ops = vec![json!({"name": "validate", "definition": "http://hl7.org/fhir/OperationDefinition/Resource-validate"})];
            if t == "Patient" {
                ops.push(json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}));
                ops.push(json!({"name": "summary", "definition": "http://hl7.org/fhir/uv/ips/OperationDefinition/summary"}));
            }
            if t == "Measure" {
                ops.push(json!({"name": "evaluate-measure", "definition": "http://hl7.org/fhir/OperationDefinition/Measure-evaluate-measure",
                    "documentation": "Hale's built-in quality measures by id (hale cds list): periodStart and periodEnd required; reportType summary, subject-list or subject."}));
            }
            let mut r = json!({
                "type": t,
                "interaction": interactions,
                "versioning": "versioned-update",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalRead": "not-match",
                "conditionalUpdate": true,
                "conditionalDelete": "single",
                "searchInclude": ["*"],
                "searchRevInclude": ["*"],
                "searchParam": search_params(t),
                "operation": ops,
            });
            if t != "Patient" && !compartment.contains_key(t) {
                r["documentation"] = json!("Not in the Patient compartment.");
            }
            r
        })
        .collect();
    // the SMART security extension (SMART App Launch 2, conformance): where to authorize
    let server = ctx.base.trim_end_matches('/').trim_end_matches("/fhir").to_string();
    let security = json!({
        "cors": false,
        "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see http://docs.smarthealthit.org)"}],
        "extension": [{
            "url": "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris",
            "extension": [
                {"url": "authorize", "valueUri": format!("{server}/auth/authorize")},
                {"url": "token", "valueUri": format!("{server}/auth/token")},
                {"url": "revoke", "valueUri": format!("{server}/auth/revoke")},
                {"url": "introspect", "valueUri": format!("{server}/auth/introspect")}
            ]
        }],
        "description": "Every interaction needs a Bearer access token from /auth (SMART App Launch) or `hale token`; see /.well-known/smart-configuration."
    });
    let cs = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-22",
        "publisher": "Hale",
        "kind": "instance",
        "software": {"name": "Hale", "version": st.software_version},
        "implementation": {"description": "Hale FHIR R4 server", "url": ctx.base},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "application/json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [{
            "mode": "server",
            "security": security,
            "documentation": "Search: every R4 search parameter, composite ones included; chains, _has, _include/_revinclude (:iterate), _sort, _count, _summary, _elements, _total, cursor paging with next and previous links; Patient compartment searches; system search with _type (matches type by type). Conditional operations resolve through search.",
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}, {"code": "history-system"}, {"code": "search-system"}],
            "searchParam": [
                {"name": "_sort", "type": "special"}, {"name": "_count", "type": "number"}, {"name": "_summary", "type": "token"},
                {"name": "_elements", "type": "token"}, {"name": "_total", "type": "token"}
            ],
        }],
    });
    Ok(ctx.respond_json(StatusCode::OK, &cs))
}
