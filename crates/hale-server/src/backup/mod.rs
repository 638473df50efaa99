//! Backups: `hale backup create` writes one compressed file (tar.gz) while Hale serves,
//! with a manifest of the versions of each resource type, a hash of them, and the size
//! and SHA-256 of every file. On SQLite it holds the signing and checkpoint keys and the
//! signed audit checkpoints (copied first, so every checkpoint is at or below the
//! snapshot's last audit entry) and a consistent snapshot of the database (`VACUUM
//! INTO`); on PostgreSQL, where all of these are in the database, a `pg_dump` (see
//! `backup/pg.rs`). `hale backup verify` unpacks one into scratch (a directory; on PostgreSQL a
//! scratch database too) and checks every file hash, the database's integrity, every
//! type's versions against their hash, that Hale opens it and counts the same, and the
//! audit trail's chain and signed checkpoints. `hale backup restore` verifies, then
//! unpacks into an empty data directory or restores into an empty database. With a key
//! file the backup is encrypted (see [`seal`]).
//!
//! A type's hash is the sum, lane by lane (four 64-bit lanes, wrapping), of the SHA-256
//! of each of its versions (type, id, version, lastUpdated, method and body): the same
//! whatever the order the versions are read in, and different when any one differs.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;

mod pg;
pub mod seal;

pub use seal::Key;

/// The format a manifest names.
pub const FORMAT: &str = "hale-backup/1";

const MANIFEST: &str = "manifest.json";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    /// When the snapshot was taken (FHIR instant).
    pub created: String,
    pub hale_version: String,
    pub store: String,
    /// Every version of every resource.
    pub versions: u64,
    pub per_type: BTreeMap<String, TypeDigest>,
    /// Every file but the manifest, by its path in the backup.
    pub files: BTreeMap<String, FileDigest>,
}

/// The versions of one resource type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeDigest {
    pub versions: u64,
    /// The lane-wise sum of the SHA-256 of each version (hex).
    pub hash: String,
}

/// One file of a backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    pub bytes: u64,
    pub sha256: String,
}

/// What a verification found.
#[derive(Debug)]
pub struct Verified {
    pub manifest: Manifest,
    /// Audit entries whose chain and checkpoints were checked.
    pub audit_entries: u64,
    pub seconds: f64,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", path.display())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The per-type digests of versions, added one at a time in any order.
#[derive(Default)]
struct Digests {
    lanes: BTreeMap<String, (u64, [u64; 4])>,
    total: u64,
}

impl Digests {
    fn add(
        &mut self,
        resource_type: &str,
        id: &str,
        version: i64,
        last_updated: i64,
        method: &str,
        body: Option<&str>,
    ) {
        let mut h = Sha256::new();
        for part in [resource_type.as_bytes(), id.as_bytes()] {
            h.update(part);
            h.update([0]);
        }
        h.update(version.to_string());
        h.update([0]);
        h.update(last_updated.to_string());
        h.update([0]);
        h.update(method);
        match body {
            Some(b) => {
                h.update([1]);
                h.update(b);
            }
            None => h.update([2]),
        }
        let d = h.finalize();
        let e = self.lanes.entry(resource_type.to_string()).or_insert((0, [0; 4]));
        e.0 += 1;
        for (i, lane) in e.1.iter_mut().enumerate() {
            let mut chunk = [0u8; 8];
            chunk.copy_from_slice(&d[i * 8..i * 8 + 8]);
            *lane = lane.wrapping_add(u64::from_be_bytes(chunk));
        }
        self.total += 1;
    }

    fn finish(self) -> (BTreeMap<String, TypeDigest>, u64) {
        let out = self
            .lanes
            .into_iter()
            .map(|(t, (n, l))| {
                let hash = l.iter().map(|x| format!("{x:016x}")).collect();
                (t, TypeDigest { versions: n, hash })
            })
            .collect();
        (out, self.total)
    }
}

/// The versions and hash of each resource type in the SQLite database `db`.
pub fn type_digests(db: &Path) -> Result<(BTreeMap<String, TypeDigest>, u64), String> {
    let mut d = Digests::default();
    hale_store_sqlite::snapshot::each_version(db, |v| {
        d.add(v.resource_type, v.id, v.version, v.last_updated, v.method, v.body)
    })
    .map_err(|e| format!("reading the versions: {e}"))?;
    Ok(d.finish())
}

fn file_digest(path: &Path) -> Result<FileDigest, String> {
    let mut f = std::fs::File::open(path).map_err(|e| io("reading", path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = f.read(&mut buf).map_err(|e| io("reading", path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        bytes += n as u64;
    }
    Ok(FileDigest { bytes, sha256: hex(&h.finalize()) })
}

/// Every file under `dir`, by its path relative to it (with `/`), sorted.
fn files_under(dir: &Path) -> Result<Vec<String>, String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) -> Result<(), String> {
        for e in std::fs::read_dir(dir).map_err(|e| io("listing", dir, e))? {
            let e = e.map_err(|e| io("listing", dir, e))?;
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                out.push(
                    rel.components()
                        .map(|c| c.as_os_str().to_string_lossy().into_owned())
                        .collect::<Vec<_>>()
                        .join("/"),
                );
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| io("creating", to, e))?;
    for name in files_under(from)? {
        let (src, dst) = (from.join(&name), to.join(&name));
        if let Some(parent) = dst.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::copy(&src, &dst).map_err(|e| io("copying", &src, e))?;
    }
    Ok(())
}

/// Copies the data directory of `cfg` into `into` as a backup holds it: `keys/` and
/// `audit/` first (so every signed checkpoint is at or below the snapshot's last audit
/// entry), then a consistent snapshot of the database as `hale.db`, integrity-checked.
fn snapshot_data_dir(cfg: &Config, db: &Path, into: &Path) -> Result<PathBuf, String> {
    for dir in ["keys", "audit"] {
        let from = cfg.data_dir.join(dir);
        if from.is_dir() {
            copy_tree(&from, &into.join(dir))?;
        }
    }
    let snap = into.join(SQLITE_FILE);
    hale_store_sqlite::snapshot::snapshot(db, &snap).map_err(|e| format!("taking the snapshot: {e}"))?;
    hale_store_sqlite::snapshot::integrity_check(&snap).map_err(|e| e.to_string())?;
    Ok(snap)
}

/// Opens the store `cfg` names as Hale would (migrations included) as `job`, and checks
/// its audit trail's chain and signed checkpoints; the repository and the number of
/// entries checked.
async fn open_and_verify_audit(cfg: &Config, job: &str) -> Result<(hale_repository::Repository, u64), String> {
    let repo = crate::system_repository(cfg, job).await.map_err(|e| format!("Hale cannot open it: {e}"))?;
    let checkpoints = crate::checkpoints(cfg, &repo).await.map_err(|e| e.to_string())?;
    repo.chain_audit(&checkpoints).await.map_err(|e| format!("the audit trail: {e}"))?;
    let v = repo.verify_audit(&checkpoints).await.map_err(|e| format!("the audit trail: {e}"))?;
    if let Some(p) = v.problem() {
        return Err(format!("the audit trail fails verification: {p}"));
    }
    Ok((repo, v.report.checked))
}

/// The store a backup is of, as its manifest names it.
const SQLITE: &str = "sqlite";
const POSTGRES: &str = "postgres";
/// The database in a backup of each store.
const SQLITE_FILE: &str = "hale.db";
const PG_FILE: &str = "hale.pgdump";

/// Writes a backup of the store `cfg` names to `out` (which must not exist) while Hale
/// may go on serving, encrypted with `key` if given; returns its manifest.
pub async fn create(cfg: &Config, out: &Path, key: Option<&Key>) -> Result<Manifest, String> {
    if out.exists() {
        return Err(format!("{} exists already; a backup is never written over another file", out.display()));
    }
    let db = cfg.sqlite_path();
    if !cfg.is_postgres() && !db.exists() {
        return Err(format!("there is no store at {}", db.display()));
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    std::fs::create_dir_all(&parent).map_err(|e| io("creating", &parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".hale-backup-")
        .tempdir_in(&parent)
        .map_err(|e| io("creating a working directory in", &parent, e))?;
    let created = hale_repository::Instant::now().to_fhir();
    let (store, (per_type, versions)) = if cfg.is_postgres() {
        (POSTGRES, pg::dump(&cfg.database_url, &staging.path().join(PG_FILE)).await?)
    } else {
        let (cfg, into) = (cfg.clone(), staging.path().to_path_buf());
        let digests = tokio::task::spawn_blocking(move || type_digests(&snapshot_data_dir(&cfg, &db, &into)?))
            .await
            .map_err(|e| format!("the snapshot stopped: {e}"))??;
        (SQLITE, digests)
    };
    let mut files = BTreeMap::new();
    for name in files_under(staging.path())? {
        files.insert(name.clone(), file_digest(&staging.path().join(&name))?);
    }
    let manifest = Manifest {
        format: FORMAT.into(),
        created,
        hale_version: env!("CARGO_PKG_VERSION").into(),
        store: store.into(),
        versions,
        per_type,
        files,
    };
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())?;
    std::fs::write(staging.path().join(MANIFEST), text).map_err(|e| io("writing", staging.path(), e))?;
    let partial = staging.path().join("backup.partial");
    write_archive(staging.path(), &manifest, &partial, key)?;
    std::fs::rename(&partial, out).map_err(|e| io("moving the backup to", out, e))?;
    Ok(manifest)
}

/// The file an archive is written to, encrypted or not.
enum Sink {
    Plain(std::fs::File),
    Sealed(seal::SealWriter<std::fs::File>),
}

impl std::io::Write for Sink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(f) => f.write(data),
            Sink::Sealed(w) => w.write(data),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(f) => f.flush(),
            Sink::Sealed(w) => w.flush(),
        }
    }
}

/// Writes the manifest and every file it lists, from `staging`, as a tar.gz at `to`
/// (encrypted with `key` if given), synced.
fn write_archive(staging: &Path, manifest: &Manifest, to: &Path, key: Option<&Key>) -> Result<(), String> {
    let w = |e| io("writing", to, e);
    let file = std::fs::File::create(to).map_err(w)?;
    let sink = match key {
        Some(k) => Sink::Sealed(seal::SealWriter::new(file, k).map_err(w)?),
        None => Sink::Plain(file),
    };
    let gz = flate2::write::GzEncoder::new(sink, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let mut names = vec![MANIFEST.to_string()];
    names.extend(manifest.files.keys().cloned());
    for name in &names {
        let path = staging.join(name);
        let mut f = std::fs::File::open(&path).map_err(|e| io("reading", &path, e))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(f.metadata().map_err(|e| io("reading", &path, e))?.len());
        header.set_mode(0o600);
        header.set_mtime(now);
        tar.append_data(&mut header, name, &mut f).map_err(w)?;
    }
    let file = match tar.into_inner().map_err(w)?.finish().map_err(w)? {
        Sink::Plain(f) => f,
        Sink::Sealed(s) => s.finish().map_err(w)?,
    };
    file.sync_all().map_err(w)
}

/// Opens backup `file` for reading: decrypted with `key` when it is encrypted.
fn open_backup(file: &Path, key: Option<&Key>) -> Result<Box<dyn Read>, String> {
    let mut f = std::fs::File::open(file).map_err(|e| io("reading", file, e))?;
    let mut magic = [0u8; 8];
    let sealed = f.read_exact(&mut magic).is_ok() && &magic == seal::MAGIC;
    let f = std::fs::File::open(file).map_err(|e| io("reading", file, e))?;
    match (sealed, key) {
        (false, _) => Ok(Box::new(f)),
        (true, Some(k)) => Ok(Box::new(seal::OpenReader::new(f, k).map_err(|e| format!("{}: {e}", file.display()))?)),
        (true, None) => Err(format!("{} is encrypted: give the key file with --key FILE", file.display())),
    }
}

/// Unpacks backup `file` into `dir` and reads its manifest.
fn unpack(file: &Path, key: Option<&Key>, dir: &Path) -> Result<Manifest, String> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(open_backup(file, key)?));
    let entries = archive.entries().map_err(|_| format!("{} is not a Hale backup", file.display()))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| format!("{} is damaged: {e}", file.display()))?;
        if !entry.unpack_in(dir).map_err(|e| format!("{} is damaged: {e}", file.display()))? {
            return Err(format!("{} names a file outside the backup", file.display()));
        }
    }
    let text = std::fs::read_to_string(dir.join(MANIFEST))
        .map_err(|_| format!("{} has no manifest: it is not a Hale backup", file.display()))?;
    let m: Manifest = serde_json::from_str(&text).map_err(|e| format!("the manifest cannot be read: {e}"))?;
    if m.format != FORMAT || ![SQLITE, POSTGRES].contains(&m.store.as_str()) {
        return Err(format!(
            "the backup is in format {} of store {}; this Hale reads {FORMAT} of sqlite or postgres",
            m.format, m.store
        ));
    }
    Ok(m)
}

/// Checks that the files unpacked into `dir` are those the manifest lists, each matching
/// its hash.
fn check_files(m: &Manifest, dir: &Path) -> Result<(), String> {
    let found: Vec<String> = files_under(dir)?.into_iter().filter(|n| n != MANIFEST).collect();
    let listed: Vec<String> = m.files.keys().cloned().collect();
    if found != listed {
        return Err(format!(
            "the backup's files ({}) are not those its manifest lists ({})",
            found.join(", "),
            listed.join(", ")
        ));
    }
    for (name, want) in &m.files {
        if &file_digest(&dir.join(name))? != want {
            return Err(format!("{name} does not match its hash in the manifest"));
        }
    }
    Ok(())
}

/// Compares the digests read from a restored database with the manifest's.
fn check_digests(m: &Manifest, per_type: &BTreeMap<String, TypeDigest>, versions: u64) -> Result<(), String> {
    if versions != m.versions {
        return Err(format!("the backup holds {versions} versions; its manifest says {}", m.versions));
    }
    for (t, want) in &m.per_type {
        match per_type.get(t) {
            Some(got) if got == want => {}
            Some(got) => {
                return Err(format!(
                    "{t}: {} versions with hash {}, the manifest says {} with {}",
                    got.versions, got.hash, want.versions, want.hash
                ));
            }
            None => return Err(format!("{t}: no version in the backup, the manifest says {}", want.versions)),
        }
    }
    if let Some(t) = per_type.keys().find(|t| !m.per_type.contains_key(*t)) {
        return Err(format!("{t}: versions the manifest does not list"));
    }
    Ok(())
}

/// Opens the restored store `cfg` names as Hale would, checks its audit trail and that
/// Hale counts the versions the manifest lists; the audit entries checked.
async fn check_hale_reads(m: &Manifest, cfg: &Config) -> Result<u64, String> {
    let (repo, audit_entries) = open_and_verify_audit(cfg, "backup-verify").await?;
    let (counts, _) = crate::bulk::fingerprint(&repo).await.map_err(|e| format!("Hale cannot read the backup: {e}"))?;
    let expected: BTreeMap<String, usize> = m.per_type.iter().map(|(t, d)| (t.clone(), d.versions as usize)).collect();
    if counts != expected {
        return Err("Hale reads other counts of versions than the manifest lists".into());
    }
    Ok(audit_entries)
}

/// Checks backup `file` (decrypted with `key` if it is encrypted): every file against
/// its hash, the database's integrity, every type's versions against their hash, Hale's
/// own reading of it, and the audit trail. A backup of PostgreSQL is restored into a
/// scratch database on the server `cfg` names, dropped afterwards.
pub async fn verify(file: &Path, key: Option<&Key>, cfg: &Config) -> Result<Verified, String> {
    Ok(verify_in_scratch(file, key, cfg).await?.1)
}

/// As [`verify`]; also the scratch directory the backup was unpacked into (its
/// PostgreSQL dump as it was; its SQLite database opened, so migrated and audited).
async fn verify_in_scratch(
    file: &Path,
    key: Option<&Key>,
    cfg: &Config,
) -> Result<(tempfile::TempDir, Verified), String> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().map_err(|e| format!("creating a scratch directory: {e}"))?;
    let m = unpack(file, key, scratch.path())?;
    check_files(&m, scratch.path())?;
    let audit_entries = if m.store == POSTGRES {
        if !cfg.is_postgres() {
            return Err(format!(
                "{} is a backup of PostgreSQL: give --database postgres://... (a server where Hale may create a scratch database to restore it into)",
                file.display()
            ));
        }
        let db = pg::Scratch::create(&cfg.database_url).await?;
        let checked = verify_postgres(&m, &scratch.path().join(PG_FILE), &db.url).await;
        db.drop_database().await;
        checked?
    } else {
        let db = scratch.path().join(SQLITE_FILE);
        hale_store_sqlite::snapshot::integrity_check(&db).map_err(|e| e.to_string())?;
        let (per_type, versions) = type_digests(&db)?;
        check_digests(&m, &per_type, versions)?;
        let cfg = Config { data_dir: scratch.path().to_path_buf(), ..Config::default() };
        check_hale_reads(&m, &cfg).await?
    };
    Ok((scratch, Verified { manifest: m, audit_entries, seconds: started.elapsed().as_secs_f64() }))
}

/// Restores the dump into the scratch database `url` and checks it; the audit entries
/// checked.
async fn verify_postgres(m: &Manifest, dump: &Path, url: &str) -> Result<u64, String> {
    pg::restore_into(url, dump).await?;
    let (per_type, versions) = pg::digests_of(url).await?;
    check_digests(m, &per_type, versions)?;
    let dir = tempfile::tempdir().map_err(|e| format!("creating a scratch directory: {e}"))?;
    let cfg = Config {
        data_dir: dir.path().to_path_buf(),
        database_url: url.to_string(),
        database_pool_size: 2,
        ..Config::default()
    };
    check_hale_reads(m, &cfg).await
}

/// Where a backup is restored to: an empty data directory (SQLite) or an empty
/// database (PostgreSQL).
pub enum Target<'a> {
    DataDir(&'a Path),
    Database(&'a str),
}

/// Verifies backup `file`, then restores it into `target`, which must hold no store.
pub async fn restore(file: &Path, key: Option<&Key>, target: Target<'_>) -> Result<Verified, String> {
    match target {
        Target::Database(url) => {
            let cfg = Config { database_url: url.to_string(), ..Config::default() };
            if !cfg.is_postgres() {
                return Err("--database must be a postgres:// URL: SQLite backups are restored with --data-dir".into());
            }
            // refused before the verification, which takes a while
            pg::ensure_empty(url).await?;
            let (scratch, v) = verify_in_scratch(file, key, &cfg).await?;
            if v.manifest.store != POSTGRES {
                return Err(format!("{} is a backup of SQLite: restore it with --data-dir DIR", file.display()));
            }
            // the dump verified, unchanged by the verification
            pg::restore_into(url, &scratch.path().join(PG_FILE)).await?;
            Ok(v)
        }
        Target::DataDir(data_dir) => {
            if data_dir.join(SQLITE_FILE).exists() {
                return Err(format!(
                    "{} holds a store already; restore into an empty data directory, then point Hale at it",
                    data_dir.display()
                ));
            }
            let v = verify(file, key, &Config::default()).await?;
            if v.manifest.store != SQLITE {
                return Err(format!(
                    "{} is a backup of PostgreSQL: restore it with --database postgres://... (an empty database)",
                    file.display()
                ));
            }
            std::fs::create_dir_all(data_dir).map_err(|e| io("creating", data_dir, e))?;
            // unpacked again: the verified copy was opened by Hale (migrated, audited)
            unpack(file, key, data_dir)?;
            std::fs::remove_file(data_dir.join(MANIFEST)).map_err(|e| io("removing", data_dir, e))?;
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                for name in v.manifest.files.keys() {
                    let p = data_dir.join(name);
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                        .map_err(|e| io("securing", &p, e))?;
                }
            }
            let db = data_dir.join(SQLITE_FILE);
            std::fs::File::open(&db).and_then(|f| f.sync_all()).map_err(|e| io("writing", &db, e))?;
            Ok(v)
        }
    }
}

/// Takes a backup of the store `cfg` names into `cfg.backup`'s directory every
/// `interval_secs`, keeping the newest `keep`, encrypted with `key` if given; failures are
/// logged and tried again at the next round. Runs until aborted.
pub async fn scheduled(cfg: Config, key: Option<Key>) {
    let dir = cfg.backup.directory(&cfg.data_dir);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(cfg.backup.interval_secs.max(1)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // the first tick is at once: the first backup waits one interval
    tick.tick().await;
    loop {
        tick.tick().await;
        let name: String = hale_repository::Instant::now()
            .to_fhir()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == 'T' || *c == 'Z')
            .collect();
        let out = dir.join(format!("hale-{name}.tar.gz"));
        let done = match create(&cfg, &out, key.as_ref()).await {
            Ok(m) => prune(&dir, cfg.backup.keep).map(|_| (out, m.versions)),
            Err(e) => Err(e),
        };
        match done {
            Ok((out, versions)) => {
                metrics::counter!("hale_backups_total", "outcome" => "written").increment(1);
                let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64());
                metrics::gauge!("hale_backup_last_success_timestamp_seconds").set(now.unwrap_or(0.0));
                tracing::info!(file = %out.display(), versions, "scheduled backup written");
            }
            Err(e) => {
                metrics::counter!("hale_backups_total", "outcome" => "failed").increment(1);
                tracing::error!(error = %e, "the scheduled backup failed; trying again at the next interval");
            }
        }
    }
}

/// Deletes all but the newest `keep` scheduled backups (`hale-*.tar.gz`, named by time)
/// in `dir`.
fn prune(dir: &Path, keep: usize) -> Result<(), String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| io("listing", dir, e))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("hale-") && n.ends_with(".tar.gz"))
        .collect();
    names.sort();
    let extra = names.len().saturating_sub(keep);
    for n in &names[..extra] {
        let p = dir.join(n);
        std::fs::remove_file(&p).map_err(|e| io("deleting", &p, e))?;
    }
    Ok(())
}

/// What `hale check` found.
#[derive(Debug)]
pub struct CheckReport {
    /// The store's schema version and the newest this build knows.
    pub schema: (i64, i64),
    pub versions: u64,
    pub types: usize,
    pub index_rows: u64,
    pub audit_entries: u64,
    pub seconds: f64,
}

/// Checks the store `cfg` names without changing it, on a copy, so Hale may be serving:
/// the copy's integrity (SQLite's integrity check; on PostgreSQL, that `pg_dump` reads
/// every row and `pg_restore` rebuilds every index and constraint in a scratch database,
/// dropped after), the schema version, that every resource's current version is its
/// newest, that no index row belongs to a deleted or unknown resource, that the search
/// index equals a rebuild from the stored JSON, and the audit trail.
pub async fn check(cfg: &Config) -> Result<CheckReport, String> {
    let started = Instant::now();
    let scratch = tempfile::tempdir().map_err(|e| format!("creating a scratch directory: {e}"))?;
    if cfg.is_postgres() {
        let db = pg::Scratch::create(&cfg.database_url).await?;
        let checked = check_postgres(cfg, &db.url, scratch.path()).await;
        db.drop_database().await;
        return checked.map(|r| CheckReport { seconds: started.elapsed().as_secs_f64(), ..r });
    }
    use hale_store_sqlite::snapshot;
    let db = cfg.sqlite_path();
    if !db.exists() {
        return Err(format!("there is no store at {}", db.display()));
    }
    let copy = snapshot_data_dir(cfg, &db, scratch.path())?;
    let schema = snapshot::schema_versions(&copy).map_err(|e| e.to_string())?;
    check_schema(schema)?;
    check_consistency(snapshot::consistency(&copy).map_err(|e| e.to_string())?)?;
    let (per_type, versions) = type_digests(&copy)?;
    let scratch_cfg = Config { data_dir: scratch.path().to_path_buf(), ..Config::default() };
    let digests = || -> Result<Vec<(String, u64, String)>, String> {
        let d = snapshot::index_digests(&copy).map_err(|e| e.to_string())?;
        Ok(d.into_iter().map(|(t, n, h)| (t, n, format!("{h:016x}"))).collect())
    };
    let (audit_entries, index_rows) = check_index_and_audit(&scratch_cfg, async || digests()).await?;
    Ok(CheckReport {
        schema,
        versions,
        types: per_type.len(),
        index_rows,
        audit_entries,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// `hale check` of a PostgreSQL store, on a copy in the scratch database `scratch_url`.
async fn check_postgres(cfg: &Config, scratch_url: &str, dir: &Path) -> Result<CheckReport, String> {
    let dump = dir.join(PG_FILE);
    let (per_type, versions) = pg::dump(&cfg.database_url, &dump).await?;
    pg::restore_into(scratch_url, &dump).await?;
    std::fs::remove_file(&dump).map_err(|e| io("removing", &dump, e))?;
    let schema = pg::schema_versions(scratch_url).await?;
    check_schema(schema)?;
    check_consistency(pg::consistency(scratch_url).await?)?;
    let scratch_cfg = Config {
        data_dir: dir.to_path_buf(),
        database_url: scratch_url.to_string(),
        database_pool_size: 2,
        ..Config::default()
    };
    let (audit_entries, index_rows) =
        check_index_and_audit(&scratch_cfg, async || pg::index_digests(scratch_url).await).await?;
    Ok(CheckReport { schema, versions, types: per_type.len(), index_rows, audit_entries, seconds: 0.0 })
}

fn check_schema(schema: (i64, i64)) -> Result<(), String> {
    if schema.0 > schema.1 {
        return Err(format!("the store's schema ({}) is newer than this Hale knows ({})", schema.0, schema.1));
    }
    Ok(())
}

fn check_consistency(problems: Vec<String>) -> Result<(), String> {
    if !problems.is_empty() {
        return Err(format!("the store is inconsistent: {}", problems.join("; ")));
    }
    Ok(())
}

/// Opens the copy `cfg` names as Hale would, checks its audit trail, and compares each
/// search index table's digest (`digests`: table, rows, hash) before and after a
/// rebuild of the index on the copy; the audit entries checked and the index rows.
async fn check_index_and_audit(
    cfg: &Config,
    digests: impl AsyncFn() -> Result<Vec<(String, u64, String)>, String>,
) -> Result<(u64, u64), String> {
    let (repo, audit_entries) = open_and_verify_audit(cfg, "check").await?;
    let before = digests().await?;
    crate::bulk::reindex(&repo, &[], false).await.map_err(|e| format!("rebuilding the index to compare: {e}"))?;
    drop(repo);
    let after = digests().await?;
    let differ: Vec<String> = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| {
            format!(
                "{}: {} rows, a rebuild has {}{}",
                b.0,
                b.1,
                a.1,
                if b.1 == a.1 { " with other values" } else { "" }
            )
        })
        .collect();
    if !differ.is_empty() {
        return Err(format!("the search index differs from a rebuild (run hale reindex): {}", differ.join("; ")));
    }
    Ok((audit_entries, before.iter().map(|t| t.1).sum()))
}
