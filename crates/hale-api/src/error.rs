//! The one table from error [`Category`] to HTTP status, and the OperationOutcome wire
//! shape of every error response. Internal detail is logged with the request id,
//! never sent.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use hale_fhir::{Category, Issue, OperationOutcome};

/// The HTTP status of each category.
pub fn status(category: Category) -> StatusCode {
    match category {
        Category::Invalid => StatusCode::BAD_REQUEST,
        Category::BusinessRule => StatusCode::UNPROCESSABLE_ENTITY,
        Category::NotFound => StatusCode::NOT_FOUND,
        Category::Gone => StatusCode::GONE,
        Category::NotSupported => StatusCode::NOT_IMPLEMENTED,
        Category::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
        Category::Conflict => StatusCode::CONFLICT,
        Category::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        Category::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
        Category::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        Category::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        Category::Unauthorized => StatusCode::UNAUTHORIZED,
        Category::Forbidden => StatusCode::FORBIDDEN,
        Category::Busy => StatusCode::SERVICE_UNAVAILABLE,
        Category::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        Category::TooCostly => StatusCode::SERVICE_UNAVAILABLE,
        Category::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// An error on its way to the client.
#[derive(Debug)]
pub struct ApiError {
    pub category: Category,
    pub outcome: OperationOutcome,
    /// Extra headers (ETag of a deleted resource, Allow...).
    pub headers: Vec<(&'static str, String)>,
    pub pretty: bool,
}

impl ApiError {
    pub fn new(category: Category, issue: Issue) -> Self {
        ApiError { category, outcome: OperationOutcome::single(issue), headers: Vec::new(), pretty: false }
    }
    pub fn from_outcome(category: Category, outcome: OperationOutcome) -> Self {
        ApiError { category, outcome, headers: Vec::new(), pretty: false }
    }
    pub fn with_header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }
    pub fn pretty(mut self, pretty: bool) -> Self {
        self.pretty = pretty;
        self
    }
}

impl From<hale_repository::Error> for ApiError {
    fn from(e: hale_repository::Error) -> Self {
        let category = e.category();
        if category == Category::Internal {
            tracing::error!(error = %e, "request failed inside the server");
        }
        let mut api = ApiError::from_outcome(category, e.outcome());
        if let hale_repository::Error::Gone(_, stored) = &e {
            api.headers.push(("etag", format!("W/\"{}\"", stored.version)));
            api.headers.push(("last-modified", stored.last_updated.to_http_date()));
        }
        api
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = if self.pretty {
            hale_fhir::json::to_string_pretty(&self.outcome.to_json())
        } else {
            hale_fhir::json::to_string(&self.outcome.to_json())
        };
        let mut resp = (status(self.category), body).into_response();
        let h = resp.headers_mut();
        h.insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/fhir+json; charset=utf-8"),
        );
        if self.category == Category::Unauthorized && !self.headers.iter().any(|(n, _)| *n == "www-authenticate") {
            h.insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer realm=\"hale\""),
            );
        }
        for (name, value) in self.headers {
            if let Ok(v) = axum::http::HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        }
        resp
    }
}
