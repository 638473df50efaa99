use std::process::Command;

fn hale() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hale"));
    c.env_remove("HALE_LISTEN").env_remove("HALE_DATA_DIR").env_remove("HALE_CONFIG");
    c
}

#[test]
fn version_and_help() {
    let out = hale().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("hale "));
    let out = hale().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve") && help.contains("config"), "{help}");
}

#[test]
fn migrate_creates_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let out = hale().args(["migrate", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path().join("hale.db").is_file());
}

#[test]
fn config_shows_the_layers() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hale.toml"), "listen = \"127.0.0.1:9999\"\ndata_dir = \"/file\"\n").unwrap();
    let out = hale()
        .current_dir(dir.path())
        .arg("config")
        .env("HALE_DATA_DIR", "/env")
        .env("HALE_DATABASE_URL", "sqlite:/env/x.db")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("listen = \"127.0.0.1:9999\""), "{text}");
    assert!(text.contains("data_dir = \"/env\""), "{text}");
    let out = hale()
        .current_dir(dir.path())
        .args(["config", "--data-dir", "/flag"])
        .env("HALE_DATA_DIR", "/env")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("data_dir = \"/flag\""));
}

#[test]
fn bad_configuration_is_one_line_and_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let out = hale().current_dir(dir.path()).args(["config", "--listen", "nowhere"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert!(err.contains("listen"), "{err}");
    let out = hale().current_dir(dir.path()).args(["--config", "missing.toml", "config"]).output().unwrap();
    assert!(!out.status.success());
    let out =
        hale().current_dir(dir.path()).args(["serve", "--database", "postgres://u:secret@h/db"]).output().unwrap();
    assert!(!out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains("secret"));
}

#[test]
fn an_unknown_time_zone_stops_the_server_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for args in
        [vec!["serve", "--listen", "127.0.0.1:0", "--data-dir"], vec!["demo", "--listen", "127.0.0.1:0", "--data-dir"]]
    {
        let out = hale()
            .current_dir(dir.path())
            .args(&args)
            .arg(&data)
            .env("HALE_TIME_ZONE", "America/New_Yrok")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            err.trim(),
            "hale: configuration: time_zone: 'America/New_Yrok' is not a time zone of the IANA database \
             (such as America/New_York, Europe/Paris or UTC)",
            "{args:?}"
        );
        assert!(!data.exists(), "nothing was started: {args:?}");
    }
    // from hale.toml too; a good one is taken as the database spells it
    std::fs::write(dir.path().join("hale.toml"), "time_zone = \"Mars/Olympus\"\n").unwrap();
    let out = hale().current_dir(dir.path()).arg("config").output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("'Mars/Olympus' is not a time zone"));
    std::fs::write(dir.path().join("hale.toml"), "time_zone = \"America/New_York\"\n").unwrap();
    let out = hale().current_dir(dir.path()).arg("config").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("time_zone = \"America/New_York\""));
}

fn synth_ndjson(dir: &std::path::Path) -> std::process::Output {
    hale()
        .args([
            "synth",
            "--patients",
            "3",
            "--seed",
            "7",
            "--reference-date",
            "2025-01-01",
            "--format",
            "ndjson",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap()
}

#[test]
fn synth_is_deterministic_and_loads_what_it_writes() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let out = synth_ndjson(a.path());
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(synth_ndjson(b.path()).status.success());
    let mut files: Vec<_> = std::fs::read_dir(a.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    files.sort();
    assert!(files.iter().any(|f| f == "Observation.ndjson") && files.iter().any(|f| f == "Patient.ndjson"));
    for f in &files {
        let x = std::fs::read(a.path().join(f)).unwrap();
        assert_eq!(x, std::fs::read(b.path().join(f)).unwrap(), "{f:?} differs between two runs with one seed");
    }
    let patients = std::fs::read_to_string(a.path().join("Patient.ndjson")).unwrap();
    assert_eq!(patients.lines().count(), 3);
    // straight into a store, then exported: the same resources per type
    let data = tempfile::tempdir().unwrap();
    let out = hale()
        .args(["synth", "--patients", "3", "--seed", "7", "--reference-date", "2025-01-01", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains(", 0 errors"));
    let exported = tempfile::tempdir().unwrap();
    let out =
        hale().args(["export", "--out"]).arg(exported.path()).arg("--data-dir").arg(data.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for f in &files {
        let lines = |d: &std::path::Path| std::fs::read_to_string(d.join(f)).map(|t| t.lines().count()).unwrap_or(0);
        assert_eq!(lines(a.path()), lines(exported.path()), "{f:?}");
    }
    // as bundle files, loaded in name order (the shared batch first)
    let files = tempfile::tempdir().unwrap();
    let out = hale()
        .args(["synth", "--patients", "2", "--seed", "7", "--reference-date", "2025-01-01", "--out"])
        .arg(files.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut names: Vec<_> = std::fs::read_dir(files.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names.first().map(|n| n.to_string_lossy().to_string()).as_deref(), Some("0-shared.json"));
    let loaded = tempfile::tempdir().unwrap();
    let out = hale().arg("import").arg(files.path()).arg("--data-dir").arg(loaded.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 files"), "{}", String::from_utf8_lossy(&out.stdout));
    // the NDJSON loads too, with every reference resolving
    let again = tempfile::tempdir().unwrap();
    let out = hale().arg("import").arg(a.path()).arg("--data-dir").arg(again.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = hale().args(["synth", "--reference-date", "yesterday"]).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reference-date"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_synthesizes_once_then_serves() {
    let data = tempfile::tempdir().unwrap();
    let args: Vec<String> =
        ["demo", "--patients", "2", "--data-dir", &data.path().display().to_string()].map(String::from).to_vec();
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let count = |client: reqwest::Client, base: String| async move {
        let r = client.get(format!("{base}/fhir/Patient?_summary=count")).send().await.unwrap();
        hale_test_support::json(r).await["total"].as_u64().unwrap()
    };
    let server = hale_test_support::spawn_binary_with(exe, &args).await;
    // the demo's accounts are printed once, with what it takes to sign in
    let banner = server.banner.join("\n");
    let printed = |user: &str| -> (String, Option<String>) {
        let lines: Vec<&str> = banner.lines().collect();
        let i = lines
            .iter()
            .position(|l| l.split_whitespace().nth(1) == Some(user))
            .unwrap_or_else(|| panic!("{user}: {banner}"));
        let password = lines[i].split_whitespace().nth(3).unwrap().to_string();
        let secret = lines
            .get(i + 1)
            .filter(|l| l.contains("authenticator secret"))
            .map(|l| l.split_whitespace().nth(2).unwrap().to_string());
        (password, secret)
    };
    for user in ["admin", "dr.demo", "nurse.demo"] {
        assert!(printed(user).1.is_some(), "{user} has an authenticator: {banner}");
    }
    assert_eq!(printed("patient.demo").1, None);
    assert_eq!(count(server.client.clone(), server.base.clone()).await, 2);
    // a newcomer signs in as the clinician with the printed password and a code of the
    // printed secret, and opens the chart of one of their patients
    let (password, secret) = printed("dr.demo");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let code = hale_identity::totp::code_at(&secret.unwrap(), now + 30).unwrap();
    let session = crate::smart::sign_in_at(&server.base, "/app", "dr.demo", &password, &code).await.unwrap();
    let get = |path: String| {
        let session = session.clone();
        async move {
            let r = crate::smart::no_redirects().get(path).header("cookie", session).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    let (status, home) = get(format!("{}/app", server.base)).await;
    assert_eq!(status, 200, "{home}");
    let link = home.split("href=\"/app/patient/").nth(1).map(|s| s.split('"').next().unwrap().to_string());
    let link = link.unwrap_or_else(|| panic!("the clinician has patients: {home}"));
    let (status, chart) = get(format!("{}/app/patient/{link}", server.base)).await;
    assert_eq!(status, 200, "{chart}");
    assert!(chart.contains("Latest vital signs"), "{chart}");
    let r = server
        .client
        .get(format!("{}/fhir/Observation?category=vital-signs&_count=1", server.base))
        .send()
        .await
        .unwrap();
    assert!(hale_test_support::json(r).await["total"].as_u64().unwrap() > 0, "vital signs to chart");
    // the quality measures are there as Measure resources
    let r = server.client.get(format!("{}/fhir/Measure?_summary=count", server.base)).send().await.unwrap();
    assert_eq!(hale_test_support::json(r).await["total"].as_u64(), Some(hale_cds::measures::MEASURES.len() as u64));
    drop(server);
    // a store that has patients is served as it is
    let server = hale_test_support::spawn_binary_with(exe, &args).await;
    assert!(server.banner.iter().all(|l| !l.contains("password")), "only on the first start: {:?}", server.banner);
    assert_eq!(count(server.client.clone(), server.base.clone()).await, 2);
}

/// `hale cds install-measures` writes each built-in measure as `Measure/[id]` once: a
/// second run writes nothing, one changed by hand is written back; the Measure is valid
/// R4, found by the canonical its reports name, and evaluated by its id.
#[tokio::test(flavor = "multi_thread")]
async fn the_measures_are_installed_as_measure_resources_once() {
    let data = tempfile::tempdir().unwrap();
    let dir = data.path().display().to_string();
    let install = || {
        let out = hale().args(["cds", "install-measures", "--data-dir", &dir]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let all = hale_cds::measures::MEASURES.len();
    let first = install();
    assert!(first.starts_with("Measures written: cms122-hba1c-poor-control, "), "{first}");
    assert!(first.ends_with("already as described: 0"), "{first}");
    assert_eq!(install(), format!("Measures written: none; already as described: {all}"));
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let server = hale_test_support::spawn_binary(exe, data.path()).await;
    let fhir = |path: &str| format!("{}/fhir/{path}", server.base);
    let get = |path: String| {
        let client = server.client.clone();
        async move { hale_test_support::json(client.get(path).send().await.unwrap()).await }
    };
    let measure = get(fhir("Measure/cms125-breast-cancer-screening")).await;
    assert_eq!(measure["url"], "urn:hale:measure:cms125-breast-cancer-screening", "{measure}");
    assert_eq!(measure["scoring"]["coding"][0]["code"], "proportion");
    assert_eq!(measure["group"][0]["population"].as_array().unwrap().len(), 4, "{measure}");
    // valid R4, by Hale's own validation
    let r = server.client.post(fhir("Measure/$validate")).json(&measure).send().await.unwrap();
    let outcome = hale_test_support::json(r).await;
    assert!(outcome["issue"].as_array().unwrap().iter().all(|i| i["severity"] != "error"), "{outcome}");
    // found by the canonical a report names
    let report = get(fhir(
        "Measure/cms125-breast-cancer-screening/$evaluate-measure?periodStart=2024-01-01&periodEnd=2024-12-31",
    ))
    .await;
    let found = get(fhir(&format!("Measure?url={}", report["measure"].as_str().unwrap()))).await;
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["entry"][0]["resource"]["id"], "cms125-breast-cancer-screening");
    // one changed by hand is written back, the others left alone
    let mut changed = measure.clone();
    changed["title"] = serde_json::json!("Something else");
    let r = server.client.put(fhir("Measure/cms125-breast-cancer-screening")).json(&changed).send().await.unwrap();
    assert!(r.status().is_success());
    drop(server);
    assert_eq!(
        install(),
        format!("Measures written: cms125-breast-cancer-screening; already as described: {}", all - 1)
    );
}

/// The content of a scanned document: two parts as stored.
fn scan() -> Vec<u8> {
    (0..700_001u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8).collect()
}

/// `hale migrate-store` copies a store with its history into another and verifies it:
/// SQLite to SQLite always, and SQLite to PostgreSQL and back when a server is given.
#[tokio::test(flavor = "multi_thread")]
async fn migrate_store_copies_every_version_and_verifies() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let src = tempfile::tempdir().unwrap();
    let out = hale()
        .args(["synth", "--patients", "2", "--seed", "3", "--reference-date", "2025-01-01", "--data-dir"])
        .arg(src.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // some history: an update and a deletion
    {
        let server = hale_test_support::spawn_binary(exe, src.path()).await;
        let client = server.client.clone();
        let put = |body: serde_json::Value| {
            client
                .put(format!("{}/fhir/Patient/hist", server.base))
                .header("content-type", "application/fhir+json")
                .body(body.to_string())
                .send()
        };
        assert!(
            put(serde_json::json!({"resourceType":"Patient","id":"hist","active":true}))
                .await
                .unwrap()
                .status()
                .is_success()
        );
        assert!(
            put(serde_json::json!({"resourceType":"Patient","id":"hist","active":false}))
                .await
                .unwrap()
                .status()
                .is_success()
        );
        let r = client.delete(format!("{}/fhir/Patient/hist", server.base)).send().await.unwrap();
        assert!(r.status().is_success());
        // a Binary whose content (two parts) is kept apart from its JSON
        let r = client
            .put(format!("{}/fhir/Binary/scan", server.base))
            .header("content-type", "application/pdf")
            .body(scan())
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
    }
    // the store is consistent, its Binary content too
    let out = hale().arg("check").arg("--data-dir").arg(src.path()).output().unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let from = format!("sqlite:{}", src.path().join("hale.db").display());
    let migrate = |from: &str, to: &str| hale().args(["migrate-store", "--from", from, "--to", to]).output().unwrap();
    let dst = tempfile::tempdir().unwrap();
    let to = format!("sqlite:{}", dst.path().join("copy.db").display());
    let out = migrate(&from, &to);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(text.contains("verified"), "{text}");
    let hash = text.rsplit(' ').next().unwrap().trim().to_string();
    // the copy serves the same history and the same search results
    let data = tempfile::tempdir().unwrap();
    let args = ["serve", "--database", &to, "--data-dir", &data.path().display().to_string()].map(String::from);
    let copy = hale_test_support::spawn_binary_with(exe, &args).await;
    let h = hale_test_support::json(
        copy.client.get(format!("{}/fhir/Patient/hist/_history", copy.base)).send().await.unwrap(),
    )
    .await;
    assert_eq!(h["total"], 3, "two versions and the deletion");
    let r = copy.client.get(format!("{}/fhir/Patient/hist", copy.base)).send().await.unwrap();
    assert_eq!(r.status(), 410);
    let r = copy
        .client
        .get(format!("{}/fhir/Observation?category=vital-signs&_summary=count", copy.base))
        .send()
        .await
        .unwrap();
    assert!(hale_test_support::json(r).await["total"].as_u64().unwrap() > 0, "the index was rebuilt");
    let r = copy.client.get(format!("{}/fhir/Binary/scan", copy.base)).send().await.unwrap();
    assert_eq!(r.bytes().await.unwrap().to_vec(), scan(), "the Binary's content was copied");
    drop(copy);
    // a target that is not empty is refused
    let out = migrate(&from, &to);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not empty"));
    // through PostgreSQL and back: the same content hash
    if hale_test_support::require_postgres().is_none() {
        return;
    }
    let pg = hale_test_support::TestDatabase::create().await;
    let out = migrate(&from, &pg.url);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let back = format!("sqlite:{}", dst.path().join("back.db").display());
    let out = migrate(&pg.url, &back);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert_eq!(text.rsplit(' ').next().unwrap().trim(), hash, "SQLite -> PostgreSQL -> SQLite keeps every version");
}

#[test]
fn cds_list_prints_every_rule_with_its_source() {
    let out = hale().args(["cds", "list"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    for expected in [
        "allergy-class",
        "drug-interaction",
        "duplicate-class",
        "critical-value",
        "influenza-vaccine",
        "child-dtap",
        "2026-12-07",
        "warfarin + NSAIDs [high]",
        "SSRIs + MAO inhibitors [high]",
        "QT-prolonging drugs + QT-prolonging drugs [high]",
        "CYP3A4 inhibitors: clarithromycin, erythromycin",
        "MAO inhibitors: phenelzine, tranylcypromine, isocarboxazid, selegiline",
        "ergot alkaloids + strong CYP3A4 inhibitors [high]",
        "diabetes-35-70",
        "reviewed 2026-12-08",
        "ergot alkaloids: ergotamine (by name), dihydroergotamine (by name)",
        "Table 2 (ONC high-priority list)",
        "LOINC 2823-3",
        "https://www.uspreventiveservicestaskforce.org/uspstf/recommendation/colorectal-cancer-screening",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
}

/// `hale hl7 send`: a result message from the shared corpus is stored through the gate
/// and acknowledged AA; a message that is not one is refused AR with the reason.
#[test]
fn hl7_send_stores_results_and_refuses_what_it_cannot_read() {
    let Some(dir) = hale_test_support::shared_data("hl7v2") else { return };
    let data = tempfile::tempdir().unwrap();
    let oru = dir.join("v2-to-fhir/ORU_R01.hl7");
    let adt = dir.join("v2-to-fhir/SIU_S12.hl7");
    let empty = dir.join("cdc-trusted-intermediary/Test_Message_empty.hl7");
    let out = hale().args(["hl7", "send", "--acks"]).arg(&oru).arg("--data-dir").arg(data.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("ORU_R01.hl7: CA: ") && text.contains("observations stored"),
        "enhanced mode (MSH-15 AL): {text}"
    );
    assert!(text.contains("MSA|CA|20251014154001-425"), "the ACK echoes MSH-10: {text}");
    // the observations are in the store
    let export = tempfile::tempdir().unwrap();
    let out = hale()
        .args(["export", "--type", "Observation,DiagnosticReport,Patient", "--out"])
        .arg(export.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let obs = std::fs::read_to_string(export.path().join("Observation.ndjson")).unwrap();
    assert!(obs.lines().count() >= 3 && obs.contains("6153-1"), "{obs}");
    // the same patient again: not a second Patient
    let out = hale().args(["hl7", "send"]).arg(&oru).arg("--data-dir").arg(data.path()).output().unwrap();
    assert!(out.status.success());
    let export = tempfile::tempdir().unwrap();
    hale()
        .args(["export", "--type", "Patient", "--out"])
        .arg(export.path())
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .unwrap();
    assert_eq!(std::fs::read_to_string(export.path().join("Patient.ndjson")).unwrap().lines().count(), 1);
    // refused, with the reason: not a result message, an empty one
    let out = hale().args(["hl7", "send"]).arg(&adt).arg(&empty).arg("--data-dir").arg(data.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success());
    assert!(
        text.contains("SIU_S12.hl7: CR: Hale receives ORU^R01 and ADT^A01/") && text.contains("here, not SIU^S12"),
        "a commit reject in enhanced mode: {text}"
    );
    assert!(text.contains("Test_Message_empty.hl7: AR: the message is empty"), "{text}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 of 2 messages were not accepted"), "{err}");
    // the dead-letter list, and a replay that cannot store them either
    let out = hale().args(["hl7", "list", "--refused", "--data-dir"]).arg(data.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.ends_with("[refused]")).count(), 2, "{text}");
    assert!(text.contains("CR  SIU^S12  SndApp/SndFac  48907-45"), "{text}");
    let out = hale().args(["hl7", "list", "--data-dir"]).arg(data.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(text.lines().count(), 3, "one accepted (sent twice, kept once), two refused: {text}");
    // a synthetic feed from `hale synth`, received whole
    let feed = tempfile::tempdir().unwrap();
    let out = hale()
        .args(["synth", "--patients", "2", "--years", "3", "--format", "hl7", "--out"])
        .arg(feed.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut files: Vec<_> = std::fs::read_dir(feed.path()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    let out = hale().args(["hl7", "send"]).args(&files).arg("--data-dir").arg(data.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(text.lines().filter(|l| l.contains(": AA: ")).count(), files.len(), "{text}");
    let out = hale().args(["hl7", "stats", "--data-dir"]).arg(data.path()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("SYNTHLAB/SYNTH") && text.contains("ORU^R01    AA"), "{text}");
    assert!(text.contains("SndApp/SndFac") && text.contains("SIU^S12    CR             1"), "{text}");
    assert!(text.contains("laboratory orders queued: 0"), "{text}");
    let out = hale().args(["hl7", "replay", "--data-dir"]).arg(data.path()).output().unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 2 refused messages stored now"));
    assert!(String::from_utf8_lossy(&out.stderr).contains("2 messages are still refused"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_under_write_load_verifies_and_restores_with_equal_counts() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("live");
    let out = hale()
        .args(["synth", "--patients", "3", "--seed", "5", "--reference-date", "2025-01-01", "--data-dir"])
        .arg(&live)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let server = hale_test_support::spawn_binary(exe, &live).await;
    // writers keep writing while the backup is taken
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for w in 0..3 {
        let (client, base, stop) = (server.client.clone(), server.base.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut n = 0u32;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let body = serde_json::json!({"resourceType": "Observation", "status": "final",
                    "code": {"text": format!("load {w}-{n}")}, "valueQuantity": {"value": n}});
                let r = client
                    .post(format!("{base}/fhir/Observation"))
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string())
                    .send()
                    .await
                    .unwrap();
                assert!(r.status().is_success());
                n += 1;
            }
            n
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let file = dir.path().join("backups/one.tar.gz");
    let out = hale().args(["backup", "create", "--out"]).arg(&file).arg("--data-dir").arg(&live).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = 0;
    for w in writers {
        written += w.await.unwrap();
    }
    assert!(written > 10, "the writers wrote during the backup ({written})");
    let created = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(created.starts_with("backup written:"), "{created}");
    drop(server);

    let out = hale().args(["backup", "verify"]).arg(&file).output().unwrap();
    let verified = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(verified.contains("match their hashes") && verified.contains("audit trail verified"), "{verified}");

    // restored, Hale serves what the manifest counts
    let restored = dir.path().join("restored");
    let out = hale().args(["backup", "restore"]).arg(&file).arg("--data-dir").arg(&restored).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest = crate::backup_manifest(std::fs::File::open(&file).unwrap());
    let copy = hale_test_support::spawn_binary(exe, &restored).await;
    let h = hale_test_support::json(
        copy.client.get(format!("{}/fhir/Observation?_summary=count", copy.base)).send().await.unwrap(),
    )
    .await;
    // no Observation was updated or deleted: one version each
    assert_eq!(h["total"], manifest["per_type"]["Observation"]["versions"], "{h}");
    let p = hale_test_support::json(
        copy.client.get(format!("{}/fhir/Patient?_summary=count", copy.base)).send().await.unwrap(),
    )
    .await;
    assert_eq!(p["total"], 3);
    drop(copy);

    // refused, one line, non-zero: into a data directory with a store, a backup that was
    // changed, a file that is none, over an existing file
    let refused = |args: &[&std::ffi::OsStr]| {
        let out = hale().args(args).output().unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        err
    };
    let os = |s: &str| std::ffi::OsString::from(s);
    let err = refused(&[&os("backup"), &os("restore"), file.as_os_str(), &os("--data-dir"), restored.as_os_str()]);
    assert!(err.contains("holds a store already"), "{err}");
    // the same archive with one version's body changed inside the database
    let tampered = dir.path().join("tampered.tar.gz");
    {
        let f = std::fs::File::open(&file).unwrap();
        let mut a = tar::Archive::new(flate2::read::GzDecoder::new(f));
        let w = flate2::write::GzEncoder::new(std::fs::File::create(&tampered).unwrap(), flate2::Compression::fast());
        let mut b = tar::Builder::new(w);
        for e in a.entries().unwrap() {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_path_buf();
            let mut bytes = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut bytes).unwrap();
            if name.to_str() == Some("hale.db") {
                let at = bytes.windows(7).position(|w| w == b"load 0-").expect("a body in the file");
                bytes[at] = b'L';
            }
            let mut header = e.header().clone();
            b.append_data(&mut header, &name, bytes.as_slice()).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap();
    }
    let err = refused(&[&os("backup"), &os("verify"), tampered.as_os_str()]);
    assert!(err.contains("does not match its hash"), "{err}");
    let not_one = dir.path().join("not-a-backup.tar.gz");
    std::fs::write(&not_one, b"hello").unwrap();
    let err = refused(&[&os("backup"), &os("verify"), not_one.as_os_str()]);
    assert!(err.contains("not a Hale backup") || err.contains("damaged"), "{err}");
    let err =
        refused(&[&os("backup"), &os("create"), &os("--out"), file.as_os_str(), &os("--data-dir"), live.as_os_str()]);
    assert!(err.contains("exists already"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn scheduled_backups_are_taken_while_serving_and_the_oldest_deleted() {
    let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // encrypted with a key file
    let key = dir.path().join("backup.key");
    let out = hale().args(["backup", "keygen", "--out"]).arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let args = ["serve".to_string(), "--data-dir".to_string(), data.display().to_string()];
    let key_file = key.display().to_string();
    let server = hale_test_support::spawn_binary_env(
        exe,
        &args,
        &[("HALE_BACKUP__INTERVAL_SECS", "1"), ("HALE_BACKUP__KEEP", "2"), ("HALE_BACKUP__KEY_FILE", &key_file)],
    )
    .await;
    let backups = data.join("backups");
    let list = || {
        let mut v: Vec<std::path::PathBuf> = std::fs::read_dir(&backups)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.to_string_lossy().ends_with(".tar.gz"))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    // four rounds: two kept (a third only for the moment between a backup and the pruning)
    let mut seen = std::collections::BTreeSet::new();
    let (mut most, mut settled) = (0, false);
    for _ in 0..200 {
        let now = list();
        most = most.max(now.len());
        seen.extend(now.iter().cloned());
        if seen.len() >= 4 && now.len() == 2 {
            settled = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(seen.len() >= 4 && settled, "backups were taken and the oldest deleted: {seen:?}");
    assert!(most <= 3, "at most one more than kept, for a moment ({most})");
    drop(server);
    let newest = list().pop().unwrap();
    let out = hale().args(["backup", "verify"]).arg(&newest).arg("--key").arg(&key).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // encrypted: nothing of the store readable without the key
    let bytes = std::fs::read(&newest).unwrap();
    assert!(bytes.starts_with(b"HALEENC1") && !bytes.windows(2).take(64).any(|w| w == [0x1f, 0x8b]));
    let out = hale().args(["backup", "verify"]).arg(&newest).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("is encrypted: give the key file"), "{err}");
    // a key file that cannot be read keeps the server from starting
    let out = hale()
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data)
        .env("HALE_BACKUP__INTERVAL_SECS", "1")
        .env("HALE_BACKUP__KEY_FILE", dir.path().join("missing.key"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("backup.key_file"), "{err}");
}

#[test]
fn check_finds_an_index_that_is_not_its_rebuild_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = hale()
        .args(["synth", "--patients", "2", "--seed", "9", "--reference-date", "2025-01-01", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let check = || hale().arg("check").arg("--data-dir").arg(dir.path()).output().unwrap();
    let out = check();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        text.contains("SQLite integrity ok")
            && text.contains("equals a rebuild")
            && text.contains("audit trail verified"),
        "{text}"
    );
    let db = dir.path().join("hale.db");
    let c = rusqlite::Connection::open(&db).unwrap();
    let rows = |c: &rusqlite::Connection| -> i64 {
        c.query_row("SELECT COUNT(*) FROM search_token", [], |r| r.get(0)).unwrap()
    };
    // a lost index row: found, and the store is left as it was
    c.execute("DELETE FROM search_token WHERE rowid IN (SELECT rowid FROM search_token LIMIT 1)", []).unwrap();
    let n = rows(&c);
    let out = check();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(err.contains("differs from a rebuild") && err.contains("search_token"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    assert_eq!(rows(&c), n, "hale check changes nothing");
    // an index row of a resource that is not there
    let out = hale().args(["reindex", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert!(out.status.success());
    assert!(check().status.success(), "reindexed, it checks again");
    c.execute("UPDATE search_token SET res_id = 'nobody' WHERE rowid IN (SELECT rowid FROM search_token LIMIT 1)", [])
        .unwrap();
    let err = String::from_utf8_lossy(&check().stderr).to_string();
    assert!(err.contains("rows of deleted or unknown resources"), "{err}");
    // Binary content of no stored Binary, and a gap in a Binary's content
    c.execute("DELETE FROM search_token WHERE res_id = 'nobody'", []).unwrap();
    assert!(hale().args(["reindex", "--data-dir"]).arg(dir.path()).output().unwrap().status.success());
    assert!(check().status.success(), "{}", String::from_utf8_lossy(&check().stderr));
    c.execute("INSERT INTO binary_content (res_id, version, at, bytes) VALUES ('nobody', 1, 0, x'00')", []).unwrap();
    let err = String::from_utf8_lossy(&check().stderr).to_string();
    assert!(err.contains("parts of Binary content belong to no stored Binary"), "{err}");
    c.execute("DELETE FROM binary_content", []).unwrap();
    c.execute(
        "INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body) \
         VALUES ('Binary', 'gap', 1, 0, 'PUT', '{\"resourceType\":\"Binary\",\"id\":\"gap\"}')",
        [],
    )
    .unwrap();
    c.execute(
        "INSERT INTO resources (res_type, res_id, version, seq, deleted) VALUES ('Binary', 'gap', 1, last_insert_rowid(), 0)",
        [],
    )
    .unwrap();
    c.execute("INSERT INTO binary_content (res_id, version, at, bytes) VALUES ('gap', 1, 0, x'0001')", []).unwrap();
    assert!(check().status.success(), "{}", String::from_utf8_lossy(&check().stderr));
    c.execute("INSERT INTO binary_content (res_id, version, at, bytes) VALUES ('gap', 1, 3, x'02')", []).unwrap();
    let err = String::from_utf8_lossy(&check().stderr).to_string();
    assert!(err.contains("do not follow the part before them"), "{err}");
}
