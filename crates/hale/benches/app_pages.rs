//! The clinician application's and the portal's pages on the embedded store with a few
//! hundred thousand resources: `hale synth`'s population of `HALE_BENCH_PATIENTS`
//! patients (default 600, about 300,000 resources) loaded into a fresh data directory,
//! then the real binary serving it. A clinician of the practice of the patient with the
//! most resources signs in (password and authenticator code, over HTTP) and requests
//! that patient's chart summary, vital-signs charts and results, the "find a patient"
//! page with a name query and the home page; then the patient signs in to the portal
//! and requests their record and their results. Each page is requested sequentially
//! (a warm-up of 20, then `HALE_BENCH_REQUESTS`, default 200): p50/p99/max of the time
//! from request to the last byte over loopback, which bounds the server's time.
//!
//! `cargo bench -p hale --bench app_pages`

use std::time::{Duration, Instant};

use hale_server::users::{Enrolment, NewUser, add_user, enroll_mfa};
use serde_json::Value;

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i].as_secs_f64() * 1000.0
}

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()
}

/// The patient of the population with the most resources: (bundle index, entries,
/// MRN, managing organization id, family name).
fn biggest(cfg: &hale_synth::Config) -> (usize, usize, String, String, String) {
    (0..cfg.patients)
        .map(|i| {
            let b = hale_synth::patient_bundle(cfg, i);
            let entries = b["entry"].as_array().unwrap();
            let p = entries.iter().map(|e| &e["resource"]).find(|r| r["resourceType"] == "Patient").unwrap();
            let mrn = p["identifier"][0]["value"].as_str().unwrap().to_string();
            let org = p["managingOrganization"]["reference"]
                .as_str()
                .unwrap()
                .trim_start_matches("Organization/")
                .to_string();
            let family = p["name"][0]["family"].as_str().unwrap().to_string();
            (i, entries.len(), mrn, org, family)
        })
        .max_by_key(|b| b.1)
        .unwrap()
}

fn field(html: &str, name: &str) -> String {
    let needle = format!("name=\"{name}\" value=\"");
    let start = html.find(&needle).unwrap() + needle.len();
    html[start..start + html[start..].find('"').unwrap()].to_string()
}

fn cookie(r: &reqwest::Response, name: &str) -> String {
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next().filter(|f| f.starts_with(&format!("{name}="))).map(str::to_string))
        .unwrap()
}

async fn measure(client: &reqwest::Client, url: &str, session: &str, requests: usize, expect: &str) -> Vec<Duration> {
    for _ in 0..20 {
        client.get(url).header("cookie", session).send().await.unwrap().bytes().await.unwrap();
    }
    let mut lat = Vec::with_capacity(requests);
    for _ in 0..requests {
        let t = Instant::now();
        let r = client.get(url).header("cookie", session).send().await.unwrap();
        assert_eq!(r.status(), 200, "{url}");
        let body = r.text().await.unwrap();
        lat.push(t.elapsed());
        assert!(body.contains(expect), "{url} shows {expect}");
    }
    lat.sort();
    lat
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let patients = env("HALE_BENCH_PATIENTS", 600);
    let requests = env("HALE_BENCH_REQUESTS", 200);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let data = tempfile::tempdir().unwrap();
    let cfg = hale_server::Config { data_dir: data.path().to_path_buf(), ..Default::default() };
    let pop = hale_synth::Config { patients, ..Default::default() };
    let (index, resources, mrn, org, family) = biggest(&pop);
    let password = "correct horse battery staple";
    let secret = rt.block_on(async {
        let repo = hale_server::system_repository(&cfg, "bench").await.unwrap();
        let t = Instant::now();
        let summary = hale_server::synth::load(&repo, &pop, false).await;
        assert!(summary.errors.is_empty(), "{:?}", summary.errors);
        println!(
            "loaded {} patients, {} resources in {:.1} s; the chart's patient (#{index}) has {resources} resources",
            patients,
            summary.resources,
            t.elapsed().as_secs_f64()
        );
        let new = NewUser {
            username: "dr.bench".into(),
            role: "clinician".into(),
            organization: Some(org.clone()),
            password: Some(password.into()),
            ..NewUser::default()
        };
        add_user(&repo, new).await.unwrap();
        // the patient, for the portal's pages
        let ty = hale_fhir::ResourceType::parse("Patient").unwrap();
        let pairs = vec![("identifier".to_string(), mrn.clone())];
        let req = hale_search::parse::parse(&ty, &pairs, false).unwrap();
        let found = repo.search(&req, 1, false).await.unwrap();
        let patient_id = found.entries[0].id.as_str().to_string();
        let portal_user = NewUser {
            username: "pat.bench".into(),
            role: "patient".into(),
            patients: vec![patient_id],
            password: Some(password.into()),
            ..NewUser::default()
        };
        add_user(&repo, portal_user).await.unwrap();
        let Enrolment::Started(uri) = enroll_mfa(&repo, "dr.bench", None).await.unwrap() else { panic!() };
        let secret = uri.split("secret=").nth(1).unwrap().split('&').next().unwrap().to_string();
        let first = hale_identity::totp::code_at(&secret, now()).unwrap();
        enroll_mfa(&repo, "dr.bench", Some(&first)).await.unwrap();
        repo.chain_audit(&hale_server::checkpoints(&cfg, &repo).await.unwrap()).await.unwrap();
        secret
    });
    rt.block_on(async {
        let exe = std::path::Path::new(env!("CARGO_BIN_EXE_hale"));
        let server = hale_test_support::spawn_binary(exe, data.path()).await;
        let base = server.base.clone();
        // the patient's id, by MRN
        let r = server.client.get(format!("{base}/fhir/Patient?identifier={mrn}")).send().await.unwrap();
        let bundle: Value = hale_test_support::json(r).await;
        let id = bundle["entry"][0]["resource"]["id"].as_str().unwrap().to_string();
        // sign in
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = client.get(format!("{base}/auth/login?next=/app")).send().await.unwrap();
        let login = cookie(&r, "hale_login");
        let csrf = field(&r.text().await.unwrap(), "login_csrf");
        let code = hale_identity::totp::code_at(&secret, now() + 30).unwrap();
        let form = [
            ("username", "dr.bench"),
            ("password", password),
            ("code", code.as_str()),
            ("next", "/app"),
            ("login_csrf", csrf.as_str()),
        ];
        let r = client.post(format!("{base}/auth/login")).header("cookie", login).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 303, "signed in");
        let session = cookie(&r, "hale_session");

        println!("sequential requests, {requests} after a warm-up of 20 (ms: p50 / p99 / max)");
        // the order check: ibuprofen for the chart's patient (allergies, medications,
        // dose, kidneys, pregnancy, age checked as the page opens)
        let ibuprofen = hale_cds::drugs::find("ibuprofen 400", 1)[0].0;
        let pages = [
            ("chart summary", format!("{base}/app/patient/{id}"), "Latest results".to_string()),
            ("vital signs charts", format!("{base}/app/patient/{id}/vitals"), "Blood pressure".to_string()),
            ("results and trends", format!("{base}/app/patient/{id}/results"), "Hemoglobin".to_string()),
            ("documents and reports", format!("{base}/app/patient/{id}/documents"), "Notes and documents".to_string()),
            ("find by name", format!("{base}/app?q={family}"), format!("/app/patient/{id}")),
            ("home (recent, my patients)", format!("{base}/app"), "Recently viewed".to_string()),
            (
                "order check (prescribe)",
                format!("{base}/app/patient/{id}/prescribe?drug={ibuprofen}&dose=1&frequency=tid"),
                "Sign prescription".to_string(),
            ),
        ];
        for (name, url, expect) in pages {
            let lat = measure(&client, &url, &session, requests, &expect).await;
            println!(
                "  {name:<28} {:>7.2} / {:>7.2} / {:>7.2}",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                lat.last().unwrap().as_secs_f64() * 1000.0
            );
        }
        // quality measures over the clinician's panel (the organization's patients)
        let panel = requests.min(30);
        let lat = measure(&client, &format!("{base}/app/measures"), &session, panel, "Quality measures").await;
        let html = client
            .get(format!("{base}/app/measures"))
            .header("cookie", &session)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let counted =
            html.split("patients)").next().and_then(|h| h.rsplit('(').next()).unwrap_or("?").trim().to_string();
        println!(
            "  {:<28} {:>7.2} / {:>7.2} / {:>7.2}   ({counted} patients, {panel} requests)",
            "quality measures (panel)",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().unwrap().as_secs_f64() * 1000.0
        );
        // the same patient in the portal
        let r = client.get(format!("{base}/auth/login?next=/portal")).send().await.unwrap();
        let login = cookie(&r, "hale_login");
        let csrf = field(&r.text().await.unwrap(), "login_csrf");
        let form =
            [("username", "pat.bench"), ("password", password), ("next", "/portal"), ("login_csrf", csrf.as_str())];
        let r = client.post(format!("{base}/auth/login")).header("cookie", login).form(&form).send().await.unwrap();
        assert_eq!(r.status(), 303, "the patient signed in");
        let portal = cookie(&r, "hale_session");
        for (name, url, expect) in [
            ("portal: my record", format!("{base}/portal"), "Medicines"),
            ("portal: my results", format!("{base}/portal/results"), "My results"),
            ("portal: my documents", format!("{base}/portal/documents"), "My documents"),
            ("portal: health summary", format!("{base}/portal/summary"), "Health summary"),
            ("portal: IPS download", format!("{base}/portal/download/summary"), "60591-5"),
        ] {
            let lat = measure(&client, &url, &portal, requests, expect).await;
            println!(
                "  {name:<28} {:>7.2} / {:>7.2} / {:>7.2}",
                pct(&lat, 0.5),
                pct(&lat, 0.99),
                lat.last().unwrap().as_secs_f64() * 1000.0
            );
        }
        // the same summary over the FHIR API, as a system client
        let url = format!("{base}/fhir/Patient/{id}/$summary");
        let lat = measure(&server.client, &url, "", requests, "60591-5").await;
        println!(
            "  {:<28} {:>7.2} / {:>7.2} / {:>7.2}",
            "API: Patient/$summary",
            pct(&lat, 0.5),
            pct(&lat, 0.99),
            lat.last().unwrap().as_secs_f64() * 1000.0
        );
    });
}
