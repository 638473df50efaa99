//! The boundaries of the gate, checked over the workspace itself.

mod boundaries;
