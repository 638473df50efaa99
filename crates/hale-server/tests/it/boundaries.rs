//! Only the gate holds a store (ARCHITECTURE.md, invariant 1), and every HTTP route
//! declares who may reach it. These fail when a crate takes a dependency it must not
//! have, or when a route is added outside `hale_api::Routes`.

use std::path::{Path, PathBuf};

use hale_api::RoutePolicy;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// (crate, dependency, kind) of every workspace crate's dependencies on workspace
/// crates; kind is "normal", "dev" or "build".
fn workspace_dependencies() -> Vec<(String, String, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = std::process::Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace())
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut deps = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        for d in p["dependencies"].as_array().unwrap() {
            let dep = d["name"].as_str().unwrap();
            if dep.starts_with("hale") {
                let kind = d["kind"].as_str().unwrap_or("normal");
                deps.push((name.to_string(), dep.to_string(), kind.to_string()));
            }
        }
    }
    deps
}

/// Who may depend on what: `hale-store` only the gate, the backends, the composition
/// root and `hale-audit` (which builds the store's audit rows and checks chained
/// entries, and is itself used by the gate only); a backend only the composition root. Dev-dependencies are allowed
/// where a crate's own tests or benchmarks work below the gate: the gate's unit tests
/// open a SQLite store, and the `hale` crate's ingest benchmark times the store without
/// the gate.
fn allowed(krate: &str, dep: &str, kind: &str) -> bool {
    let backends = ["hale-store-sqlite", "hale-store-postgres"];
    let may_hold_the_contract = krate == "hale-repository" || krate == "hale-audit" || backends.contains(&krate);
    match (dep, kind) {
        _ if krate == "hale-server" => true,
        ("hale-audit", _) => krate == "hale-repository",
        ("hale-store", "normal" | "build") => may_hold_the_contract,
        (d, "normal" | "build") if backends.contains(&d) => false,
        ("hale-store", _) => may_hold_the_contract || krate == "hale",
        (d, _) if backends.contains(&d) => krate == "hale-repository" || krate == "hale",
        _ => true,
    }
}

#[test]
fn only_the_gate_and_the_composition_root_depend_on_a_store() {
    let deps = workspace_dependencies();
    assert!(deps.iter().any(|(k, d, _)| k == "hale-repository" && d == "hale-store"), "metadata read: {deps:?}");
    let wrong: Vec<_> = deps.iter().filter(|(k, d, kind)| !allowed(k, d, kind)).collect();
    assert!(wrong.is_empty(), "dependencies below the gate outside it: {wrong:?}");
}

#[test]
fn the_rule_refuses_what_it_must() {
    assert!(!allowed("hale-api", "hale-store", "normal"));
    assert!(!allowed("hale-api", "hale-store-sqlite", "normal"));
    assert!(!allowed("hale-repository", "hale-store-postgres", "normal"));
    assert!(!allowed("hale-test-support", "hale-store", "normal"));
    assert!(!allowed("hale", "hale-store", "normal"));
    assert!(!allowed("hale-api", "hale-audit", "normal"));
    assert!(allowed("hale-server", "hale-store-postgres", "normal"));
    assert!(allowed("hale-repository", "hale-store", "normal"));
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            if p.file_name().is_some_and(|n| n != "target") {
                rust_files(&p, out);
            }
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn every_route_is_added_with_a_declared_policy() {
    // a route added to an axum Router directly has no policy: only routes.rs may
    let mut files = Vec::new();
    rust_files(&workspace().join("crates"), &mut files);
    let mut direct = Vec::new();
    for f in &files {
        if f.ends_with("hale-api/src/routes.rs") || f.ends_with("hale-server/tests/it/boundaries.rs") {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if [".route(", ".route_service(", ".nest(", ".nest_service("].iter().any(|m| line.contains(m)) {
                direct.push(format!("{}:{}: {}", f.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(files.len() > 50, "the sources were read: {} files", files.len());
    assert!(direct.is_empty(), "routes added outside hale_api::Routes:\n{}", direct.join("\n"));

    let routes = hale_server::declared_routes();
    let public: Vec<&str> = routes.iter().filter(|r| r.1 == RoutePolicy::Public).map(|r| r.0).collect();
    // the CapabilityStatement, CDS Hooks discovery (the services' names), health, and the
    // metrics (counts by route template: no path, id or query)
    assert_eq!(
        public,
        ["/fhir/metadata", "/cds-services", "/healthz", "/readyz", "/metrics"],
        "only these serve no health information"
    );
    assert!(routes.iter().any(|r| r.0 == "/cds-services/{id}" && r.1 == RoutePolicy::Gated));
    assert!(routes.iter().any(|r| r.0 == "/fhir/{type}/{id}" && r.1 == RoutePolicy::Gated));
    // the authorization server's routes authenticate their callers themselves
    let auth: Vec<&str> = routes.iter().filter(|r| r.1 == RoutePolicy::Authorization).map(|r| r.0).collect();
    assert!(auth.contains(&"/auth/token") && auth.contains(&"/auth/authorize"), "{auth:?}");
    assert!(
        auth.iter().all(|p| p.starts_with("/auth/") || p.ends_with("/.well-known/smart-configuration")),
        "{auth:?}"
    );
    let mut paths: Vec<&str> = routes.iter().map(|r| r.0).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), routes.len(), "a path declared twice: {routes:?}");
}
