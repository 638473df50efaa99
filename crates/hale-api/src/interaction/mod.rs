//! One module per FHIR interaction.

pub mod audit;
pub mod capabilities;
pub mod create;
pub mod delete;
pub mod history;
pub mod patch;
pub mod read;
pub mod search;
pub mod transaction;
pub mod update;
pub mod vread;
