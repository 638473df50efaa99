//! `hale import` and `hale export`: bundles and NDJSON in and out of the store, through
//! the repository (validated, indexed, versioned like any other write).
//!
//! Import reads transaction or batch bundle files (`.json`, `.json.gz`, `.json.bz2`),
//! NDJSON files (`.ndjson`, also compressed; one resource a line) and directories of
//! them (sorted by name). NDJSON is streamed line by line in groups, so memory does not
//! grow with the file; a bad line is reported with its position and skipped; a bad
//! bundle is rejected whole. Export writes one `Type.ndjson` per resource type.

use hale_search::extract::INDEX_VERSION;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use hale_fhir::{Issue, ResourceType};
use hale_repository::Repository;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

/// Resources per transaction when importing NDJSON.
const NDJSON_GROUP: usize = 500;

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct ImportSummary {
    /// Files read (none when bundles come from memory, as from `hale synth`).
    pub files: usize,
    pub resources: usize,
    /// One line per problem: `file:line: message`.
    pub errors: Vec<String>,
    pub seconds: f64,
}

fn open(path: &Path) -> std::io::Result<Box<dyn Read>> {
    let f = std::fs::File::open(path)?;
    let name = path.to_string_lossy();
    Ok(if name.ends_with(".gz") {
        Box::new(flate2::read::MultiGzDecoder::new(f))
    } else if name.ends_with(".bz2") {
        Box::new(bzip2::read::MultiBzDecoder::new(f))
    } else {
        Box::new(f)
    })
}

fn is_ndjson(path: &Path) -> bool {
    let n = path.to_string_lossy();
    n.ends_with(".ndjson") || n.ends_with(".ndjson.gz") || n.ends_with(".ndjson.bz2")
}

fn is_importable(path: &Path) -> bool {
    let n = path.to_string_lossy();
    is_ndjson(path) || n.ends_with(".json") || n.ends_with(".json.gz") || n.ends_with(".json.bz2")
}

/// Files to import from the given paths (directories expanded, sorted).
pub fn collect_files(paths: &[PathBuf]) -> std::io::Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(p)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.is_file() && is_importable(f))
                .collect();
            files.sort();
            out.extend(files);
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(std::io::Error::new(std::io::ErrorKind::NotFound, format!("{} does not exist", p.display())));
        }
    }
    Ok(out)
}

pub(crate) fn first_issue(e: &hale_repository::Error) -> String {
    let o = e.outcome();
    match o.issues.first() {
        Some(Issue { diagnostics, expression: Some(x), .. }) => format!("{x}: {diagnostics}"),
        Some(i) => i.diagnostics.clone(),
        None => e.to_string(),
    }
}

/// Imports files into the store behind `repo`.
/// Transaction bundles processed at once: their validation and indexing overlap each
/// other's writes (the store has one writer).
const BUNDLES_IN_FLIGHT: usize = 4;

pub async fn import(repo: &Repository, paths: &[PathBuf], show_progress: bool) -> std::io::Result<ImportSummary> {
    let files = collect_files(paths)?;
    let bar = progress_bar(show_progress);
    let started = Instant::now();
    let mut summary = ImportSummary::default();
    let mut in_flight = InFlight::default();
    for file in &files {
        summary.files += 1;
        bar.set_message(file.file_name().map(|f| f.to_string_lossy().to_string()).unwrap_or_default());
        if is_ndjson(file) {
            in_flight.drain(&mut summary).await;
            import_ndjson(repo, file, &bar, &mut summary).await;
            continue;
        }
        let path = file.clone();
        match tokio::task::spawn_blocking(move || read_bundle(&path)).await {
            Ok(Ok(bundle)) => in_flight.load(repo, file.clone(), bundle, &bar, &mut summary).await,
            Ok(Err(message)) => summary.errors.push(message),
            Err(_) => summary.errors.push(format!("{}: could not be read; nothing of it was loaded", file.display())),
        }
    }
    in_flight.drain(&mut summary).await;
    bar.finish_and_clear();
    if let Err(e) = repo.optimize().await {
        summary.errors.push(format!("the store's statistics could not be refreshed: {}", first_issue(&e)));
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// Bundles being loaded: transactions up to [`BUNDLES_IN_FLIGHT`] at once; a batch (shared
/// practitioners, organizations... that later transactions may refer to) runs alone, after
/// everything before it.
#[derive(Default)]
struct InFlight {
    tasks: tokio::task::JoinSet<ImportSummary>,
}

impl InFlight {
    async fn load(
        &mut self,
        repo: &Repository,
        label: PathBuf,
        bundle: Value,
        bar: &ProgressBar,
        summary: &mut ImportSummary,
    ) {
        if bundle.get("type").and_then(Value::as_str) == Some("transaction") {
            while self.tasks.len() >= BUNDLES_IN_FLIGHT {
                self.join_one(summary).await;
            }
            let (repo, bar) = (repo.clone(), bar.clone());
            self.tasks.spawn(async move { import_bundle(&repo, &label, bundle, &bar).await });
        } else {
            self.drain(summary).await;
            summary.merge(import_bundle(repo, &label, bundle, bar).await);
        }
    }

    async fn join_one(&mut self, summary: &mut ImportSummary) {
        match self.tasks.join_next().await {
            Some(Ok(part)) => summary.merge(part),
            Some(Err(_)) => summary.errors.push("an import task failed; its file may be partly loaded".into()),
            None => {}
        }
    }

    async fn drain(&mut self, summary: &mut ImportSummary) {
        while !self.tasks.is_empty() {
            self.join_one(summary).await;
        }
    }
}

/// Loads a stream of bundles (`label` names each in error lines) as `hale import` does.
pub async fn load_bundles(
    repo: &Repository,
    bundles: impl Iterator<Item = (String, Value)>,
    bar: &ProgressBar,
) -> ImportSummary {
    let mut summary = ImportSummary::default();
    let mut in_flight = InFlight::default();
    for (label, bundle) in bundles {
        in_flight.load(repo, PathBuf::from(label), bundle, bar, &mut summary).await;
    }
    in_flight.drain(&mut summary).await;
    summary
}

/// A progress bar of resources and resources/s (hidden unless `show`).
pub fn progress_bar(show: bool) -> ProgressBar {
    let bar = if show { ProgressBar::new_spinner() } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {elapsed_precise} {pos} resources ({per_sec}) {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar
}

impl ImportSummary {
    fn merge(&mut self, part: ImportSummary) {
        self.resources += part.resources;
        self.errors.extend(part.errors);
    }
}

/// Reads, decompresses and parses a bundle file; a single resource, a collection or a
/// searchset becomes a batch of its resources. The error is the line to report.
fn read_bundle(file: &Path) -> Result<Value, String> {
    let mut text = String::new();
    if let Err(e) = open(file).and_then(|mut r| r.read_to_string(&mut text)) {
        return Err(format!(
            "{}: cannot read: {e} (after {} bytes); nothing of it was loaded",
            file.display(),
            text.len()
        ));
    }
    let value: Value = serde_json::from_str(&text).map_err(|e| {
        format!("{}:{}:{}: not valid JSON ({e}); nothing of it was loaded", file.display(), e.line(), e.column())
    })?;
    drop(text);
    if value.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(value.get("type").and_then(Value::as_str), Some("transaction" | "batch"))
    {
        return Ok(value);
    }
    let resources: Vec<Value> = match value.get("resourceType").and_then(Value::as_str) {
        Some("Bundle") => {
            value["entry"].as_array().into_iter().flatten().filter_map(|e| e.get("resource").cloned()).collect()
        }
        _ => vec![value],
    };
    Ok(
        json!({"resourceType": "Bundle", "type": "batch", "entry": resources.into_iter().map(entry_for).collect::<Vec<_>>()}),
    )
}

async fn import_bundle(repo: &Repository, file: &Path, bundle: Value, bar: &ProgressBar) -> ImportSummary {
    let mut summary = ImportSummary::default();
    match repo.process_bundle(bundle).await {
        Ok((_, answers)) => {
            for (i, a) in answers.iter().enumerate() {
                match a {
                    Ok(_) => {
                        summary.resources += 1;
                        bar.inc(1);
                    }
                    Err(e) => summary.errors.push(format!("{}: Bundle.entry[{i}]: {}", file.display(), first_issue(e))),
                }
            }
        }
        Err(e) => summary.errors.push(format!("{}: rejected whole: {}", file.display(), first_issue(&e))),
    }
    summary
}

/// A batch or transaction entry that stores `resource`: PUT with its id, else POST.
fn entry_for(resource: Value) -> Value {
    let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or("").to_string();
    match resource.get("id").and_then(Value::as_str) {
        Some(id) => {
            let url = format!("{ty}/{id}");
            json!({"resource": resource, "request": {"method": "PUT", "url": url}})
        }
        None => json!({"resource": resource, "request": {"method": "POST", "url": ty}}),
    }
}

async fn import_ndjson(repo: &Repository, file: &Path, bar: &ProgressBar, summary: &mut ImportSummary) {
    let reader = match open(file) {
        Ok(r) => BufReader::with_capacity(1 << 20, r),
        Err(e) => {
            summary.errors.push(format!("{}: cannot read: {e}", file.display()));
            return;
        }
    };
    let mut group: Vec<(usize, Value)> = Vec::with_capacity(NDJSON_GROUP);
    for (n, line) in reader.lines().enumerate() {
        let lineno = n + 1;
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                summary.errors.push(format!(
                    "{}:{lineno}: cannot read further: {e}; the lines before were loaded",
                    file.display()
                ));
                break;
            }
        };
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(&line) {
            Ok(v) => group.push((lineno, v)),
            Err(e) => summary.errors.push(format!("{}:{lineno}:{}: not valid JSON ({e})", file.display(), e.column())),
        }
        if group.len() == NDJSON_GROUP {
            flush(repo, file, &mut group, bar, summary).await;
        }
    }
    flush(repo, file, &mut group, bar, summary).await;
}

/// Loads a group of NDJSON resources as one transaction; if it fails, entry by entry,
/// so one bad line costs only itself.
async fn flush(
    repo: &Repository,
    file: &Path,
    group: &mut Vec<(usize, Value)>,
    bar: &ProgressBar,
    summary: &mut ImportSummary,
) {
    if group.is_empty() {
        return;
    }
    let (linenos, lines): (Vec<usize>, Vec<Value>) = std::mem::take(group).into_iter().unzip();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": lines.iter().map(|v| entry_for(v.clone())).collect::<Vec<_>>()});
    if repo.process_bundle(bundle).await.is_ok() {
        summary.resources += lines.len();
        bar.inc(lines.len() as u64);
        return;
    }
    let batch = json!({"resourceType": "Bundle", "type": "batch",
        "entry": lines.into_iter().map(entry_for).collect::<Vec<_>>()});
    match repo.process_bundle(batch).await {
        Ok((_, answers)) => {
            for (lineno, a) in linenos.iter().zip(answers) {
                match a {
                    Ok(_) => {
                        summary.resources += 1;
                        bar.inc(1);
                    }
                    Err(e) => {
                        let msg =
                            first_issue(&e).replace("Bundle.entry[0].resource", "").replace("Bundle.entry[0]", "");
                        summary.errors.push(format!(
                            "{}:{lineno}: {}",
                            file.display(),
                            msg.trim_start_matches([':', ' ', '.'])
                        ));
                    }
                }
            }
        }
        Err(e) => summary.errors.push(format!("{}: {}", file.display(), first_issue(&e))),
    }
}

/// Writes every current resource as `DIR/Type.ndjson`; returns (type, count) pairs.
pub async fn export(repo: &Repository, dir: &Path, types: Option<&[String]>) -> std::io::Result<Vec<(String, usize)>> {
    std::fs::create_dir_all(dir)?;
    let all: Vec<String> = match types {
        Some(t) => t.to_vec(),
        None => hale_fhir::Definitions::get().resource_types().into_iter().map(str::to_string).collect(),
    };
    let mut counts = Vec::new();
    for t in all {
        let ty = ResourceType::parse(&t).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("'{t}' is not a resource type"))
        })?;
        let mut req = hale_search::parse::parse(&ty, &[], false).map_err(|i| std::io::Error::other(i.diagnostics))?;
        let mut out: Option<std::io::BufWriter<std::fs::File>> = None;
        let mut n = 0;
        loop {
            let page = repo.search(&req, 1000, false).await.map_err(|e| std::io::Error::other(e.to_string()))?;
            for e in &page.entries {
                if let Some(body) = &e.body {
                    let w = match &mut out {
                        Some(w) => w,
                        None => {
                            out.insert(std::io::BufWriter::new(std::fs::File::create(dir.join(format!("{t}.ndjson")))?))
                        }
                    };
                    w.write_all(body.as_bytes())?;
                    w.write_all(b"\n")?;
                    n += 1;
                }
            }
            match page.next {
                Some(c) => req.cursor = Some(c),
                None => break,
            }
        }
        if let Some(mut w) = out {
            w.flush()?;
            counts.push((t, n));
        }
    }
    Ok(counts)
}

/// Rebuilds the search index of every current resource (of `types`, or all), with a
/// progress bar.
pub async fn reindex(repo: &Repository, types: &[String], show_progress: bool) -> std::io::Result<usize> {
    let all: Vec<String> = if types.is_empty() {
        hale_fhir::Definitions::get().resource_types().into_iter().map(str::to_string).collect()
    } else {
        types.to_vec()
    };
    let bar = progress_bar(show_progress);
    let mut total = 0;
    for t in all {
        let ty = ResourceType::parse(&t).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("'{t}' is not a resource type"))
        })?;
        bar.set_message(t.clone());
        let base = total;
        let n = repo
            .reindex_type(&ty, |done| bar.set_position((base + done) as u64))
            .await
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        total += n;
    }
    bar.finish_and_clear();
    repo.optimize().await.map_err(|e| std::io::Error::other(first_issue(&e)))?;
    if types.is_empty() {
        note_index_version(repo, INDEX_VERSION).await.map_err(|e| std::io::Error::other(first_issue(&e)))?;
    }
    Ok(total)
}

/// Where a store notes which [`INDEX_VERSION`] wrote its search index rows.
const INDEX_NOTE: (&str, &str) = ("hale-state", "search-index");

/// The [`INDEX_VERSION`] that wrote the store's search index rows, as the store notes
/// it. A store without the note is noted now: this build's version when it holds no
/// resource yet, else 0 (an older Hale indexed it before stores noted it).
pub async fn index_version(repo: &Repository) -> Result<u32, hale_repository::Error> {
    if let Some(note) = repo.auth_record(INDEX_NOTE.0, INDEX_NOTE.1).await? {
        return Ok(note["version"].as_u64().and_then(|v| u32::try_from(v).ok()).unwrap_or(0));
    }
    let version = if repo.holds_no_resource().await? { INDEX_VERSION } else { 0 };
    note_index_version(repo, version).await?;
    Ok(version)
}

async fn note_index_version(repo: &Repository, version: u32) -> Result<(), hale_repository::Error> {
    let body = serde_json::json!({ "version": version });
    repo.put_auth_record(INDEX_NOTE.0, INDEX_NOTE.1, &body, None, None).await
}

/// What `hale migrate-store` copied and checked.
#[derive(Debug, Default)]
pub struct CopySummary {
    pub versions: usize,
    pub seconds: f64,
    /// Versions per resource type, the same in both stores.
    pub per_type: std::collections::BTreeMap<String, usize>,
    /// The content hash both stores agree on.
    pub hash: String,
}

/// Per-type version counts and an order-independent hash of every version's type, id,
/// version, lastUpdated, method and body.
pub async fn fingerprint(
    repo: &Repository,
) -> Result<(std::collections::BTreeMap<String, usize>, u128), hale_repository::Error> {
    fn fnv(seed: u64, parts: &[&[u8]]) -> u64 {
        let mut h = seed;
        for p in parts {
            for b in p.iter().chain(std::iter::once(&0xffu8)) {
                h ^= *b as u64;
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        }
        h
    }
    let mut per_type = std::collections::BTreeMap::new();
    let (mut a, mut b) = (0u64, 0u64);
    let mut after = 0;
    loop {
        let page = repo.versions_after(after, 2000).await?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, v) in &page {
            *per_type.entry(v.resource_type.to_string()).or_insert(0) += 1;
            let version = v.version.to_string();
            let at = v.last_updated.millis().to_string();
            let parts: [&[u8]; 6] = [
                v.resource_type.as_str().as_bytes(),
                v.id.as_str().as_bytes(),
                version.as_bytes(),
                at.as_bytes(),
                v.method.as_str().as_bytes(),
                v.body.as_deref().unwrap_or("").as_bytes(),
            ];
            a = a.wrapping_add(fnv(0xcbf2_9ce4_8422_2325, &parts));
            b = b.wrapping_add(fnv(0x8422_2325_cbf2_9ce4, &parts));
        }
    }
    Ok((per_type, ((a as u128) << 64) | b as u128))
}

/// Copies every version of every resource from `from` into the empty store behind `to`,
/// history intact (ids, version ids, lastUpdated, deletions), rebuilding the search
/// index of the current versions; then checks that both stores hold the same versions.
/// Both repositories run as the system principal (the gate refuses anyone else).
pub async fn copy_store(from: &Repository, to: &Repository, show_progress: bool) -> Result<CopySummary, String> {
    let started = Instant::now();
    let failed = |side: &str, e: hale_repository::Error| format!("the {side} store: {e}");
    if !to.versions_after(0, 1).await.map_err(|e| failed("target", e))?.is_empty() {
        return Err("the target store is not empty; migrate-store copies into an empty store only".into());
    }
    let bar = progress_bar(show_progress);
    bar.set_message("versions copied");
    let mut after = 0;
    let mut versions = 0;
    loop {
        let page = from.versions_after(after, 1000).await.map_err(|e| failed("source", e))?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        versions += page.len();
        bar.inc(page.len() as u64);
        to.restore(page.into_iter().map(|(_, v)| v).collect()).await.map_err(|e| failed("target", e))?;
    }
    bar.finish_and_clear();
    to.optimize().await.map_err(|e| failed("target", e))?;
    let (src_types, src_hash) = fingerprint(from).await.map_err(|e| failed("source", e))?;
    let (dst_types, dst_hash) = fingerprint(to).await.map_err(|e| failed("target", e))?;
    if src_types != dst_types {
        return Err(format!("verification failed: versions per type differ ({src_types:?} against {dst_types:?})"));
    }
    if src_hash != dst_hash {
        return Err("verification failed: the content hashes differ".into());
    }
    Ok(CopySummary {
        versions,
        seconds: started.elapsed().as_secs_f64(),
        per_type: src_types,
        hash: format!("{src_hash:032x}"),
    })
}
