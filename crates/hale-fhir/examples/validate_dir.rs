//! Validates every JSON file in a directory and prints the ones rejected:
//! `cargo run -p hale-fhir --example validate_dir -- ../shared/data/fhir-r4-examples`
fn main() {
    let dir = std::env::args().nth(1).unwrap_or_else(|| "../shared/data/fhir-r4-examples".into());
    let mut paths: Vec<_> =
        std::fs::read_dir(&dir).expect("readable dir").filter_map(|e| e.ok()).map(|e| e.path()).collect();
    paths.sort();
    let (mut ok, mut bad) = (0, 0);
    for p in paths {
        let bytes = std::fs::read(&p).expect("readable file");
        let limits = hale_fhir::json::JsonLimits { max_depth: 128, max_string_bytes: usize::MAX };
        let v = match hale_fhir::json::parse(&bytes, &limits) {
            Ok(v) => v,
            Err(e) => {
                println!("{}: {:?}", p.display(), e);
                bad += 1;
                continue;
            }
        };
        let issues = hale_fhir::validate::validate_resource(&v);
        if issues.is_empty() {
            ok += 1
        } else {
            bad += 1;
            for i in issues.iter().take(3) {
                println!(
                    "{}\t{}\t{}",
                    p.file_name().unwrap().to_string_lossy(),
                    i.expression.as_deref().unwrap_or(""),
                    i.diagnostics
                );
            }
        }
    }
    println!("{ok} accepted, {bad} rejected");
}
