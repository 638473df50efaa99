//! The public specification data kept beside the checkout (`../shared/data`, or the
//! folder `HALE_SHARED_DATA` names), for the tests that read it: the official R4
//! examples, the FHIRPath suite. Absent, such a test skips with a message, or fails
//! under `CI=true` so that CI can never pass by skipping.

use std::path::PathBuf;

/// The shared data folder.
pub fn root() -> PathBuf {
    match std::env::var_os("HALE_SHARED_DATA") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data")),
    }
}

/// Says that `what`, which a test needs, is absent: a failure under `CI=true`,
/// elsewhere a message (the caller skips).
pub fn missing(what: &str) {
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "{what} is absent: under CI=true a test fails rather than skips"
    );
    println!("SKIPPED: {what} is absent (set HALE_SHARED_DATA to the shared data folder)");
}

/// The files of the official R4 examples (`fhir-r4-examples`), in name order; `None`
/// (see [`missing`]) when the folder is absent.
pub fn r4_examples() -> Option<Vec<PathBuf>> {
    let dir = root().join("fhir-r4-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        missing(&dir.display().to_string());
        return None;
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    Some(files)
}
