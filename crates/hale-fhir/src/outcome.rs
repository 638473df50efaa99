//! OperationOutcome (<https://hl7.org/fhir/R4/operationoutcome.html>) and the error
//! [`Category`] that every crate's error maps to. Only `hale-api` turns a category into
//! an HTTP status.

use serde_json::{Value, json};

/// What kind of failure an error is, independent of transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// The request is malformed or the resource is structurally invalid.
    Invalid,
    /// The resource is well formed but breaks a business rule.
    BusinessRule,
    /// The resource or version does not exist.
    NotFound,
    /// The resource existed and was deleted.
    Gone,
    /// The resource type or interaction is not supported.
    NotSupported,
    /// A version conflict (`If-Match`) or an ambiguous conditional match.
    PreconditionFailed,
    /// A conflicting concurrent change.
    Conflict,
    /// The input is larger than a configured limit.
    TooLarge,
    /// The requested representation is not available.
    NotAcceptable,
    /// The request body's media type is not supported.
    UnsupportedMediaType,
    /// The operation is not allowed here.
    MethodNotAllowed,
    /// No credentials, or credentials that are not valid (expired, bad signature,
    /// revoked): the caller must authenticate.
    Unauthorized,
    /// The caller is known but may not do this.
    Forbidden,
    /// The server is at its limit of requests in progress; the caller may retry.
    Busy,
    /// The caller sent more requests than its rate allows; it may retry later.
    RateLimited,
    /// The request ran longer than the server allows a statement and was stopped.
    TooCostly,
    /// Something failed inside the server; details are logged, never sent.
    Internal,
}

impl Category {
    /// The OperationOutcome `issue.code` that best describes this category.
    pub fn issue_type(self) -> IssueType {
        match self {
            Category::Invalid => IssueType::Invalid,
            Category::BusinessRule => IssueType::BusinessRule,
            Category::NotFound => IssueType::NotFound,
            Category::Gone => IssueType::Deleted,
            Category::NotSupported | Category::MethodNotAllowed => IssueType::NotSupported,
            Category::PreconditionFailed | Category::Conflict => IssueType::Conflict,
            Category::TooLarge => IssueType::TooLong,
            Category::NotAcceptable | Category::UnsupportedMediaType => IssueType::NotSupported,
            Category::Unauthorized => IssueType::Login,
            Category::Forbidden => IssueType::Forbidden,
            Category::Busy | Category::RateLimited => IssueType::Throttled,
            Category::TooCostly => IssueType::TooCostly,
            Category::Internal => IssueType::Exception,
        }
    }
}

/// `OperationOutcome.issue.severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    pub fn code(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (the subset Hale emits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueType {
    Invalid,
    Structure,
    Required,
    Value,
    CodeInvalid,
    BusinessRule,
    NotFound,
    Deleted,
    NotSupported,
    Conflict,
    TooLong,
    Exception,
    Informational,
    Duplicate,
    Processing,
    /// `login`: the user needs to authenticate.
    Login,
    /// `forbidden`: the user may not do this.
    Forbidden,
    /// `throttled`: not handled now, because of load management.
    Throttled,
    /// `too-costly`: stopped to protect the server's resources.
    TooCostly,
    /// `invariant`: a rule of the specification (a FHIRPath constraint) is broken.
    Invariant,
}

impl IssueType {
    pub fn code(self) -> &'static str {
        match self {
            IssueType::Invalid => "invalid",
            IssueType::Structure => "structure",
            IssueType::Required => "required",
            IssueType::Value => "value",
            IssueType::Invariant => "invariant",
            IssueType::CodeInvalid => "code-invalid",
            IssueType::BusinessRule => "business-rule",
            IssueType::NotFound => "not-found",
            IssueType::Deleted => "deleted",
            IssueType::NotSupported => "not-supported",
            IssueType::Conflict => "conflict",
            IssueType::TooLong => "too-long",
            IssueType::Exception => "exception",
            IssueType::Informational => "informational",
            IssueType::Duplicate => "duplicate",
            IssueType::Processing => "processing",
            IssueType::Login => "login",
            IssueType::Throttled => "throttled",
            IssueType::Forbidden => "forbidden",
            IssueType::TooCostly => "too-costly",
        }
    }
}

/// One `OperationOutcome.issue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueType,
    pub diagnostics: String,
    /// FHIRPath-like location, e.g. `Patient.name[0].given[1]`.
    pub expression: Option<String>,
}

impl Issue {
    pub fn error(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Error, code, diagnostics: diagnostics.into(), expression: None }
    }
    pub fn at(mut self, expression: impl Into<String>) -> Self {
        self.expression = Some(expression.into());
        self
    }
    pub fn warning(code: IssueType, diagnostics: impl Into<String>) -> Self {
        Issue { severity: Severity::Warning, code, diagnostics: diagnostics.into(), expression: None }
    }
    pub fn information(diagnostics: impl Into<String>) -> Self {
        Issue {
            severity: Severity::Information,
            code: IssueType::Informational,
            diagnostics: diagnostics.into(),
            expression: None,
        }
    }
    pub fn is_error(&self) -> bool {
        matches!(self.severity, Severity::Error | Severity::Fatal)
    }
}

/// An OperationOutcome resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OperationOutcome {
    pub issues: Vec<Issue>,
}

impl OperationOutcome {
    pub fn new(issues: Vec<Issue>) -> Self {
        OperationOutcome { issues }
    }
    pub fn single(issue: Issue) -> Self {
        OperationOutcome { issues: vec![issue] }
    }
    /// The resource as FHIR JSON.
    pub fn to_json(&self) -> Value {
        let issues: Vec<Value> = if self.issues.is_empty() {
            vec![json!({"severity": "information", "code": "informational", "diagnostics": "All OK"})]
        } else {
            self.issues
                .iter()
                .map(|i| {
                    let mut v = json!({
                        "severity": i.severity.code(),
                        "code": i.code.code(),
                        "diagnostics": i.diagnostics,
                    });
                    if let Some(e) = &i.expression {
                        v["expression"] = json!([e]);
                    }
                    v
                })
                .collect()
        };
        json!({"resourceType": "OperationOutcome", "issue": issues})
    }
}
