//! FHIR search (<https://hl7.org/fhir/R4/search.html>): the values search compares
//! (normalised strings, date ranges, numbers with their implicit precision), and the
//! parsing of a search request into a typed IR. Pure: no I/O.

pub mod access;
pub mod expr;
pub mod extract;
pub mod index;
pub mod parse;
pub mod shape;
pub mod values;
