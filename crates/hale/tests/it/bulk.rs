//! `hale import` and `hale export` as a user runs them.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::Command;

use serde_json::Value;

fn hale() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hale"));
    c.env_remove("HALE_DATA_DIR").env_remove("HALE_CONFIG").env("HALE_LOG__LEVEL", "warn");
    c
}

fn count_exported(dir: &std::path::Path) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for f in std::fs::read_dir(dir).unwrap() {
        let p = f.unwrap().path();
        let ty = p.file_stem().unwrap().to_string_lossy().to_string();
        let n = std::fs::read_to_string(&p).unwrap().lines().count();
        out.insert(ty, n);
    }
    out
}

#[test]
fn synthea_120_imports_completely_and_exports_the_same_counts() {
    if hale_test_support::skip_unless_sqlite("synthea_120_imports_completely_and_exports_the_same_counts") {
        return;
    }
    let Some(dir) = hale_test_support::shared_data("synthea-120") else {
        eprintln!("SKIP synthea import: ../shared/data/synthea-120 is absent");
        return;
    };
    // expected per-type counts from the files
    let mut expected: BTreeMap<String, usize> = BTreeMap::new();
    for f in std::fs::read_dir(&dir).unwrap() {
        let text = hale_test_support::read_bz2(&f.unwrap().path());
        let b: Value = serde_json::from_str(&text).unwrap();
        for e in b["entry"].as_array().unwrap() {
            *expected.entry(e["resource"]["resourceType"].as_str().unwrap().to_string()).or_default() += 1;
        }
    }
    let data = tempfile::tempdir().unwrap();
    let out = hale().args(["import", "--data-dir"]).arg(data.path()).arg(&dir).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    println!("{stdout}");
    assert!(stdout.contains("imported 92114 resources from 122 files"), "{stdout}");
    let exp = tempfile::tempdir().unwrap();
    let out = hale().args(["export", "--data-dir"]).arg(data.path()).arg("--out").arg(exp.path()).output().unwrap();
    assert!(out.status.success());
    assert_eq!(count_exported(exp.path()), expected);
    // NDJSON round trip: the export loads into a fresh store with the same counts
    let again = tempfile::tempdir().unwrap();
    let out = hale().args(["import", "--data-dir"]).arg(again.path()).arg(exp.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exp2 = tempfile::tempdir().unwrap();
    hale().args(["export", "--data-dir"]).arg(again.path()).arg("--out").arg(exp2.path()).output().unwrap();
    assert_eq!(count_exported(exp2.path()), expected);
}

#[test]
fn bad_lines_and_truncated_files_are_reported_and_the_rest_loads() {
    if hale_test_support::skip_unless_sqlite("bad_lines_and_truncated_files_are_reported_and_the_rest_loads") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir(&input).unwrap();
    // NDJSON with a bad JSON line and an invalid resource
    let mut f = std::fs::File::create(input.join("a.ndjson")).unwrap();
    writeln!(f, r#"{{"resourceType":"Patient","id":"a1"}}"#).unwrap();
    writeln!(f, r#"{{"resourceType":"Patient","id":"a2""#).unwrap();
    writeln!(f, r#"{{"resourceType":"Patient","id":"a3","gender":"x"}}"#).unwrap();
    writeln!(f, r#"{{"resourceType":"Patient","id":"a4"}}"#).unwrap();
    drop(f);
    // a gzip NDJSON cut off in the middle
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    for i in 0..2000 {
        writeln!(gz, r#"{{"resourceType":"Observation","id":"o{i}","status":"final","code":{{"text":"line {i}"}}}}"#)
            .unwrap();
    }
    let bytes = gz.finish().unwrap();
    std::fs::write(input.join("b.ndjson.gz"), &bytes[..bytes.len() / 2]).unwrap();
    // a transaction bundle with a bad entry: rejected whole
    std::fs::write(
        input.join("c.json"),
        r#"{"resourceType":"Bundle","type":"transaction","entry":[
            {"resource":{"resourceType":"Patient","id":"c1"},"request":{"method":"PUT","url":"Patient/c1"}},
            {"resource":{"resourceType":"Patient","id":"c2","birthDate":"nope"},"request":{"method":"PUT","url":"Patient/c2"}}]}"#,
    )
    .unwrap();
    std::fs::write(input.join("d.json"), r#"{"resourceType":"Bundle","#).unwrap();
    let data = dir.path().join("data");
    let out = hale().args(["import", "--data-dir"]).arg(&data).arg(&input).output().unwrap();
    assert!(!out.status.success(), "problems make a non-zero exit");
    let err = String::from_utf8_lossy(&out.stderr);
    println!("{err}");
    assert!(err.contains("a.ndjson:2:"), "{err}");
    assert!(err.contains("a.ndjson:3:") && err.contains("gender"), "{err}");
    assert!(err.contains("b.ndjson.gz:") && err.contains("the lines before were loaded"), "{err}");
    assert!(err.contains("c.json: rejected whole") && err.contains("Bundle.entry[1]"), "{err}");
    assert!(err.contains("d.json:1:"), "{err}");
    let exp = dir.path().join("exp");
    hale().args(["export", "--data-dir"]).arg(&data).arg("--out").arg(&exp).output().unwrap();
    let counts = count_exported(&exp);
    assert_eq!(counts.get("Patient"), Some(&2), "a1 and a4");
    let obs = counts.get("Observation").copied().unwrap_or(0);
    assert!(obs > 100 && obs < 2000, "the readable part of the truncated file loaded: {obs}");
}
