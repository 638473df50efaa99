//! End-to-end tests: the real server over HTTP on port 0, and the `hale` binary.

mod accounts;
mod app;
mod audit;
mod browser;
mod bulk;
mod bundles;
mod cds_hooks;
mod cli;
mod conditional;
mod crud;
mod durability;
mod examples;
mod history;
mod hl7;
mod ips;
mod limits;
mod logs;
mod measures;
mod negotiation;
mod patch;
mod postgres;
mod search;
mod security;
mod shutdown;
mod smart;
mod upgrade;
mod validate;

use serde_json::Value;

/// Held by the tests whose `hale backup verify` or `hale check` makes scratch databases
/// (`hale_verify_*`) on the test server, so that one test's count of them sees no other
/// test's.
pub static PG_SCRATCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The manifest of a backup, read from its (decrypted) bytes.
pub fn backup_manifest(backup: impl std::io::Read) -> Value {
    let mut a = tar::Archive::new(flate2::read::GzDecoder::new(backup));
    let mut text = String::new();
    for e in a.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().to_str() == Some("manifest.json") {
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
        }
    }
    serde_json::from_str(&text).unwrap()
}

/// The first issue's `expression[0]` of an OperationOutcome.
pub fn first_expression(oo: &Value) -> Option<String> {
    oo["issue"][0]["expression"][0].as_str().map(str::to_string)
}

/// Asserts the body is an OperationOutcome that leaks no internals.
pub fn assert_outcome(oo: &Value) {
    assert_eq!(oo["resourceType"], "OperationOutcome", "{oo}");
    let text = oo.to_string().to_lowercase();
    for leak in ["sqlite", "select ", "insert ", "/tmp/", "panicked", "rusqlite", ".rs:"] {
        assert!(!text.contains(leak), "outcome leaks '{leak}': {oo}");
    }
}
