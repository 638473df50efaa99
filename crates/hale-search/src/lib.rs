//! FHIR search (<https://hl7.org/fhir/R4/search.html>): the values search compares
//! (normalised strings, date ranges, numbers with their implicit precision), and the
//! parsing of a search request into a typed IR. Pure: no I/O.

// No unwrap or expect on the request path (clippy.toml allows them in tests); the
// few justified exceptions carry an #[allow] with the reason.
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod access;
pub mod expr;
pub mod extract;
pub mod index;
pub mod parse;
pub mod shape;
pub mod values;
