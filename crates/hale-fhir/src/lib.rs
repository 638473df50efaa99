//! FHIR R4 (4.0.1) as data: the official definitions compiled into tables
//! ([`definitions`]), JSON parsing under limits that keeps decimals exact ([`json`]),
//! structural validation against the definitions ([`validate`], with the entry rules of
//! a Bundle in [`bundle`] and a narrative's XHTML in [`narrative`]), identifiers
//! ([`ids`]) and the OperationOutcome model with the error [`Category`] ([`outcome`]).
//!
//! This crate is pure: it does no I/O.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod bundle;
pub mod definitions;
pub mod ids;
pub mod json;
pub mod narrative;
pub mod outcome;
pub mod shared_data;
pub mod validate;

pub use definitions::Definitions;
pub use ids::{ResourceId, ResourceType, VersionId};
pub use outcome::{Category, Issue, IssueType, OperationOutcome, Severity};
