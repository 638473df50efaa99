//! $validate: <https://hl7.org/fhir/R4/resource-operation-validate.html>. The
//! answer is 200 with an OperationOutcome whether or not the resource is valid; a 4xx
//! means validation itself could not run.

use axum::body::Body;
use axum::http::StatusCode;
use axum::response::Response;
use hale_fhir::{Category, Issue, IssueType};
use hale_repository::ValidateMode;
use serde_json::Value;

use crate::{ApiError, ApiState, Call, read_json};

fn mode(s: &str) -> Result<ValidateMode, ApiError> {
    match s {
        "create" => Ok(ValidateMode::Create),
        "update" => Ok(ValidateMode::Update),
        "delete" => Ok(ValidateMode::Delete),
        _ => Err(ApiError::new(
            Category::Invalid,
            Issue::error(IssueType::Value, "mode must be create, update or delete").at("mode"),
        )),
    }
}

pub async fn handle(st: &ApiState, ty: &str, id: Option<&str>, call: &Call, body: Body) -> Result<Response, ApiError> {
    let ctx = &call.ctx;
    let headers = &call.headers;
    let pretty = ctx.pretty;
    ctx.check_params(&["mode", "profile"])?;
    let ty = hale_repository::resource_type(ty)?;
    let id = id.map(hale_repository::resource_id).transpose()?;
    let mut m = ctx.params.get("mode").map(mode).transpose()?;
    let input = read_json(st, headers, body, pretty).await?;
    // either the resource itself, or Parameters with "resource" (and "mode")
    let resource =
        if input.get("resourceType").and_then(Value::as_str) == Some("Parameters") && ty.as_str() != "Parameters" {
            let mut resource = None;
            for p in input.get("parameter").and_then(Value::as_array).into_iter().flatten() {
                match p.get("name").and_then(Value::as_str) {
                    Some("resource") => resource = p.get("resource").cloned(),
                    Some("mode") => m = Some(mode(p.get("valueCode").and_then(Value::as_str).unwrap_or(""))?),
                    _ => {}
                }
            }
            resource
        } else {
            Some(input)
        };
    let m = m.unwrap_or(if id.is_some() { ValidateMode::Update } else { ValidateMode::General });
    let outcome = call.repo.validate(&ty, id.as_ref(), resource.as_ref(), m).await?;
    Ok(ctx.respond_json(StatusCode::OK, &outcome.to_json()))
}
