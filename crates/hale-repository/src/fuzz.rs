//! Bounded fuzzing that runs as ordinary tests: inputs made by mutating seeds (the
//! official R4 examples, search queries, FHIRPath expressions, patches) are fed to the
//! parsers and validators a request reaches, and none may panic (each must answer Ok or
//! an error). Deterministic: the same seed gives the same inputs.
//!
//! `cargo test -p hale-repository fuzz` runs `HALE_FUZZ_ITERS` inputs a target (default
//! 1,500) from `HALE_FUZZ_SEED` (default 1); a longer run:
//! `HALE_FUZZ_ITERS=200000 HALE_FUZZ_SEED=$RANDOM cargo test --release -p hale-repository fuzz`.
//! An input that panics is printed (escaped) with the seed and iteration that made it;
//! it becomes a named regression test beside the code it broke.

use std::panic::{AssertUnwindSafe, catch_unwind};

use serde_json::{Value, json};

/// A small deterministic generator (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 { 0 } else { (self.next() % n as u64) as usize }
    }
}

/// Bytes a mutation likes to insert: structure, escapes, digits, signs, multi-byte and
/// control characters.
const INTERESTING: &[&str] = &[
    "\"",
    "\\",
    "{",
    "}",
    "[",
    "]",
    ":",
    ",",
    "0",
    "9",
    "-",
    "+",
    ".",
    "e",
    "Z",
    "T",
    "|",
    "$",
    "&",
    "=",
    "%",
    "é",
    "\u{0}",
    "\u{1f}",
    "\u{fffd}",
    "𝄞",
    " ",
    "null",
    "true",
    "1e999",
    "-0",
    "9999999999999999999999",
    "'",
    "(",
    ")",
    "/",
    "*",
    "\\u0000",
    "\\ud800",
    "2020-02-30",
    "T25:61:61",
    ":missing",
    ".where(",
    "$gt",
];

fn mutate(rng: &mut Rng, seeds: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seeds[rng.below(seeds.len())].clone();
    for _ in 0..=rng.below(4) {
        let at = rng.below(b.len() + 1);
        match rng.below(7) {
            0 if !b.is_empty() => {
                let i = rng.below(b.len());
                b[i] ^= 1 << rng.below(8);
            }
            1 => {
                let s = INTERESTING[rng.below(INTERESTING.len())].as_bytes();
                b.splice(at..at, s.iter().copied());
            }
            2 if !b.is_empty() => {
                let end = (at + 1 + rng.below(16)).min(b.len());
                let start = at.min(end);
                b.drain(start..end);
            }
            3 if !b.is_empty() => {
                let start = rng.below(b.len());
                let end = (start + 1 + rng.below(32)).min(b.len());
                let piece = b[start..end].to_vec();
                b.splice(at..at, piece);
            }
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                let piece = other[from..(from + rng.below(64)).min(other.len())].to_vec();
                b.splice(at..at, piece);
            }
            5 => b.truncate(at),
            _ => b.insert(at, rng.next() as u8),
        }
    }
    b
}

fn iterations() -> usize {
    std::env::var("HALE_FUZZ_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1500)
}

fn seed() -> u64 {
    std::env::var("HALE_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(1).max(1)
}

/// Feeds `iterations()` mutated inputs to `target`; fails on the first panic, naming it.
fn run(name: &str, seeds: &[Vec<u8>], target: impl Fn(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(seed().wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ name.len() as u64);
    // the seeds themselves first
    let inputs = seeds.iter().cloned().chain((0..iterations()).map(|_| mutate(&mut rng, seeds)));
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut failure = None;
    for (i, input) in inputs.enumerate() {
        if catch_unwind(AssertUnwindSafe(|| target(&input))).is_err() {
            failure = Some((i, input));
            break;
        }
    }
    std::panic::set_hook(hook);
    if let Some((i, input)) = failure {
        // again, with the panic message shown
        let shown = String::from_utf8_lossy(&input).escape_debug().to_string();
        eprintln!("{name}: input {i} of seed {} panics: \"{shown}\"", seed());
        target(&input);
    }
}

/// The official R4 examples (a spread of types), or none when `../shared/data` is absent.
fn examples() -> Vec<Vec<u8>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fhir-r4-examples");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{} is missing (CI=true)", dir.display());
        eprintln!("SKIP the R4 example seeds: {} is missing", dir.display());
        return Vec::new();
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    files.iter().step_by(97).filter_map(|f| std::fs::read(f).ok()).filter(|b| b.len() < 64 * 1024).collect()
}

fn texts(list: &[&str]) -> Vec<Vec<u8>> {
    list.iter().map(|s| s.as_bytes().to_vec()).collect()
}

#[test]
fn fuzz_json_parser_and_validator() {
    let mut seeds = examples();
    seeds.extend(texts(&[
        r#"{"resourceType":"Patient","id":"p1","name":[{"family":"Ñandú","given":["A"]}],"birthDate":"1970-01-01"}"#,
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":1.5,"unit":"mg"},"effectiveDateTime":"2020-01-01T10:00:00+01:00"}"#,
        r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:1","resource":{"resourceType":"Patient"},"request":{"method":"POST","url":"Patient"}}]}"#,
    ]));
    let limits = hale_fhir::json::JsonLimits::default();
    run("json", &seeds, |input| {
        if let Ok(v) = hale_fhir::json::parse(input, &limits) {
            let _ = hale_fhir::validate::validate_resource(&v);
            let _ = hale_fhirpath::invariants::check(&v);
            let _ = hale_search::extract::extract(&v);
        }
    });
}

#[test]
fn fuzz_search_parser() {
    let seeds = texts(&[
        "name=smith&birthdate=ge2020-01-01&_count=10",
        "subject:Patient.name=x&_sort=-date,_id",
        "_has:Observation:patient:code=http://loinc.org|1234-5",
        "code-value-quantity=http://loinc.org|8480-6$gt140",
        "value-quantity=ap5.4|http://unitsofmeasure.org|mg&_total=accurate",
        "date=2020-01-01T10:00:00Z&date=lt2021&_lastUpdated=gt2019-12-31T23:59:59.999+14:00",
        "_include=Observation:subject:Patient&_revinclude:iterate=Provenance:target&_elements=id,code",
        "family:exact=O\\,Brien,Smith&gender:not=male&identifier=http://mrn|123&_summary=count",
        "patient=Patient/p1&category=vital-signs&status:missing=false&_id=a,b",
        "name=x&_cursor=eyJrIjpbIm9sZCJdLCJpIjoiYSIsImIiOmZhbHNlfQ",
        "_cursor=00ff&_count=0",
    ]);
    let types: Vec<hale_fhir::ResourceType> =
        ["Patient", "Observation", "Encounter"].iter().filter_map(|t| hale_fhir::ResourceType::parse(t)).collect();
    run("search", &seeds, |input| {
        let text = String::from_utf8_lossy(input);
        let pairs: Vec<(String, String)> = text
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (p.to_string(), String::new()),
            })
            .collect();
        for ty in &types {
            for lenient in [false, true] {
                if let Ok(req) = hale_search::parse::parse(ty, &pairs, lenient) {
                    // and the statements it becomes
                    let _ = hale_store::sql::SearchSql::build(&hale_store::sql::SQLITE, &req, 10, true);
                }
            }
        }
    });
}

#[test]
fn fuzz_fhirpath() {
    let seeds = texts(&[
        "Patient.name.where(use = 'official').given.first()",
        "name.given | name.family",
        "(1 + 2 * 3 / 4 div 5 mod 6).toString().length() > 2",
        "Observation.value.as(Quantity).value >= 10 'mg'",
        "birthDate < @2020-01-01T10:00:00.000+01:00 and today() - 1 year > @1970",
        "telecom.exists(system = 'phone') implies telecom.value.matches('^[0-9]+$')",
        "identifier.select(value & '|' & system).join(',').substring(1, 5).upper()",
        "iif(active, 'yes', 'no').replaceMatches('y(e)s', '$1') ~ 'e'",
        "descendants().ofType(HumanName).count() = 1 xor %resource.id.empty()",
        "extension('http://x').value.ofType(string).trace('t') != {}",
    ]);
    let patient = json!({"resourceType":"Patient","id":"p","active":true,"birthDate":"1970-05-06",
        "name":[{"use":"official","family":"Ñandú","given":["Ana","B"]}],
        "telecom":[{"system":"phone","value":"555"}],"identifier":[{"system":"http://mrn","value":"7"}],
        "extension":[{"url":"http://x","valueString":"v"}]});
    run("fhirpath", &seeds, |input| {
        let text = String::from_utf8_lossy(input);
        if let Ok(e) = hale_fhirpath::Expression::parse(&text) {
            let ctx = hale_fhirpath::Context::new().with_work_limit(100_000);
            let _ = e.evaluate(&patient, &ctx);
        }
    });
}

#[test]
fn fuzz_patches() {
    let patient = json!({"resourceType":"Patient","id":"p","gender":"female","active":true,
        "name":[{"family":"Old","given":["A","B"]}],"identifier":[{"system":"http://mrn","value":"1"}]});
    let op = |kind: &str, path: &str, extra: Value| {
        let mut part = vec![json!({"name":"type","valueCode":kind}), json!({"name":"path","valueString":path})];
        part.extend(extra.as_array().cloned().unwrap_or_default());
        json!({"name":"operation","part":part})
    };
    let fhirpath_patch = json!({"resourceType":"Parameters","parameter":[
        op("replace", "Patient.name.family", json!([{"name":"value","valueString":"New"}])),
        op("add", "Patient", json!([{"name":"name","valueString":"birthDate"},{"name":"value","valueDate":"1980-05-06"}])),
        op("delete", "Patient.identifier.where(system = 'http://mrn')", json!([])),
        op("insert", "Patient.name.given", json!([{"name":"index","valueInteger":0},{"name":"value","valueString":"Z"}])),
        op("move", "Patient.name.given", json!([{"name":"source","valueInteger":1},{"name":"destination","valueInteger":0}])),
    ]});
    let json_patch = json!([{"op":"replace","path":"/name/0/family","value":"X"},{"op":"add","path":"/active","value":false},
        {"op":"remove","path":"/identifier/0"},{"op":"move","from":"/gender","path":"/x"},{"op":"test","path":"/id","value":"p"}]);
    let seeds = vec![fhirpath_patch.to_string().into_bytes(), json_patch.to_string().into_bytes()];
    let stored = hale_store::StoredResource {
        resource_type: hale_fhir::ResourceType::parse("Patient").unwrap(),
        id: hale_fhir::ResourceId::parse("p").unwrap(),
        version: hale_fhir::VersionId::FIRST,
        last_updated: hale_store::Instant::from_millis(0),
        method: hale_store::Method::Put,
        body: Some(patient.to_string()),
    };
    run("patch", &seeds, |input| {
        if let Ok(patch) = serde_json::from_slice::<Value>(input) {
            let _ = crate::fhirpath_patch::apply(&patient, &patch);
            let _ = crate::apply_json_patch(&stored, &patch);
        }
    });
}

#[test]
fn fuzz_bundles() {
    // transactions and batches of every kind of entry, processed by a real store
    let seeds = texts(&[
        r#"{"resourceType":"Bundle","type":"transaction","entry":[{"fullUrl":"urn:uuid:00000000-0000-4000-8000-000000000001","resource":{"resourceType":"Patient","identifier":[{"system":"urn:s","value":"1"}]},"request":{"method":"POST","url":"Patient","ifNoneExist":"identifier=urn:s|1"}},{"resource":{"resourceType":"Observation","status":"final","code":{"text":"x"},"subject":{"reference":"urn:uuid:00000000-0000-4000-8000-000000000001"}},"request":{"method":"POST","url":"Observation"}}]}"#,
        r#"{"resourceType":"Bundle","type":"batch","entry":[{"request":{"method":"GET","url":"Patient?identifier=urn:s|1"}},{"resource":{"resourceType":"Patient","id":"b1","active":true},"request":{"method":"PUT","url":"Patient/b1"}},{"request":{"method":"DELETE","url":"Patient/b1"}},{"request":{"method":"GET","url":"Patient/b1/_history"}}]}"#,
        r#"{"resourceType":"Bundle","type":"transaction","entry":[{"resource":{"resourceType":"Patient","id":"t1","gender":"male"},"request":{"method":"PUT","url":"Patient/t1"}},{"resource":{"resourceType":"Binary","contentType":"application/json-patch+json","data":"W3sib3AiOiJyZXBsYWNlIiwicGF0aCI6Ii9nZW5kZXIiLCJ2YWx1ZSI6ImZlbWFsZSJ9XQ=="},"request":{"method":"PATCH","url":"Patient/t1"}},{"resource":{"resourceType":"Encounter","status":"finished","class":{"code":"AMB"},"subject":{"reference":"Patient?identifier=urn:s|1"}},"request":{"method":"POST","url":"Encounter"}},{"resource":{"resourceType":"Patient","active":false},"request":{"method":"PUT","url":"Patient?identifier=urn:s|1","ifMatch":"W/\"1\""}}]}"#,
    ]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = hale_store_sqlite::SqliteStore::open(&dir.path().join("fuzz.db")).unwrap();
    let repo = crate::Gate::new(std::sync::Arc::new(store)).system("fuzz");
    run("bundle", &seeds, |input| {
        if let Ok(v) = serde_json::from_slice::<Value>(input) {
            let _ = rt.block_on(repo.process_bundle(v));
        }
    });
}

/// The generator itself: deterministic, and it does change its inputs.
#[test]
fn the_mutator_is_deterministic_and_mutates() {
    let seeds = texts(&["name=smith"]);
    let made = |s: u64| -> Vec<Vec<u8>> {
        let mut rng = Rng(s);
        (0..50).map(|_| mutate(&mut rng, &seeds)).collect()
    };
    assert_eq!(made(7), made(7));
    assert_ne!(made(7), made(8));
    assert!(made(7).iter().filter(|m| **m != seeds[0]).count() > 40);
}
