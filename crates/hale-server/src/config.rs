//! The one configuration tree. Precedence: defaults < `hale.toml` < `HALE_*`
//! environment variables (nested keys joined by `__`, e.g. `HALE_LIMITS__MAX_BODY_BYTES`)
//! < command-line flags.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Effective configuration of a Hale node.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on (`HALE_LISTEN`, `--listen`).
    pub listen: String,
    /// Directory holding the SQLite database, keys and audit checkpoints
    /// (`HALE_DATA_DIR`, `--data-dir`).
    pub data_dir: PathBuf,
    /// Database URL; empty means the embedded SQLite file `hale.db` in `data_dir`
    /// (`HALE_DATABASE_URL`, `--database`): `sqlite:PATH` or
    /// `postgres://user@host:5432/db` (several nodes may share one PostgreSQL database).
    pub database_url: String,
    /// Most connections this node keeps open to PostgreSQL (`HALE_DATABASE_POOL_SIZE`);
    /// ignored for SQLite. Nodes x pool size must stay below the server's `max_connections`.
    pub database_pool_size: usize,
    /// Public base URL of the FHIR endpoint (e.g. `https://ehr.example.org/fhir`) when
    /// Hale runs behind a proxy; empty means it is derived from the `Host` header.
    pub public_base_url: String,
    /// PEM certificate chain: HTTPS on `listen` (with `tls_key`; then `public_base_url`
    /// must be the https:// address clients use). Empty: plain HTTP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// After SIGTERM or Ctrl-C, how long in-flight requests may take to finish before
    /// the server stops anyway (`HALE_SHUTDOWN_TIMEOUT_SECS`); new connections are
    /// refused at once.
    pub shutdown_timeout_secs: u64,
    /// Refuse a type search naming a parameter Hale does not support, with 400, unless
    /// the client sends `Prefer: handling=lenient` (`HALE_STRICT_SEARCH`). By default such
    /// a parameter is ignored, as R4 recommends, left out of the `self` link and named in
    /// an OperationOutcome entry of the searchset; a client sending
    /// `Prefer: handling=strict` gets the 400 either way.
    pub strict_search: bool,
    /// The installation's time zone, an IANA name such as `America/New_York` or
    /// `Europe/Paris` (`HALE_TIME_ZONE`; default `UTC`): the clinician pages and the
    /// portal show dates and times in it, "today" is its today, and a time typed in a
    /// form is read in it. Stored data does not depend on it (FHIR times carry their
    /// offset). An unknown name stops the server at start-up.
    pub time_zone: String,
    /// Limits on every input.
    pub limits: Limits,
    /// Logging.
    pub log: Log,
    /// HL7 v2 interfaces.
    pub hl7: Hl7,
    /// The patient portal.
    pub portal: Portal,
    /// Scheduled backups.
    pub backup: Backup,
}

/// Scheduled backups while serving (`hale backup create` on a schedule).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Backup {
    /// Where scheduled backups are written (`hale-<instant>.tar.gz`); empty: `backups`
    /// in the data directory.
    pub dir: String,
    /// Seconds between scheduled backups; 0 (the default) takes none.
    pub interval_secs: u64,
    /// How many scheduled backups are kept; older ones are deleted.
    pub keep: usize,
    /// A key file (`hale backup keygen`): scheduled backups are encrypted with it. Empty:
    /// not encrypted.
    pub key_file: String,
}

impl Default for Backup {
    fn default() -> Self {
        Backup { dir: String::new(), interval_secs: 0, keep: 7, key_file: String::new() }
    }
}

impl Backup {
    /// The directory scheduled backups go to.
    pub fn directory(&self, data_dir: &std::path::Path) -> PathBuf {
        if self.dir.is_empty() { data_dir.join("backups") } else { PathBuf::from(&self.dir) }
    }
}

/// The patient portal.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Portal {
    /// When laboratory results reach the portal (`HALE_PORTAL__RELEASE_RESULTS`):
    /// `after_review` (the default: once the clinician's review task for the report is
    /// done) or `immediately`.
    pub release_results: String,
    /// The rule for the reports of a category (DiagnosticReport.category codes of
    /// v2-0074: `LAB`, `RAD`, `PAT` ...), overriding `release_results` for them:
    /// `after_review` or `immediately` (`HALE_PORTAL__RELEASE_BY_CATEGORY__RAD`).
    pub release_by_category: std::collections::BTreeMap<String, String>,
}

impl Default for Portal {
    fn default() -> Self {
        Portal { release_results: "after_review".into(), release_by_category: Default::default() }
    }
}

/// HL7 v2 over MLLP.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Hl7 {
    /// Address the MLLP listener binds, e.g. `0.0.0.0:2575` (`HALE_HL7__MLLP_LISTEN`,
    /// `hale serve --mllp ADDR`); empty (the default) means no listener.
    pub mllp_listen: String,
    /// Largest message (one MLLP frame) accepted, in bytes; a larger one is answered `AR`
    /// and nothing of it is kept.
    pub max_frame_bytes: usize,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout_secs: u64,
    /// Most connections open at once; more are closed as they arrive.
    pub max_connections: usize,
    /// PEM certificate chain for MLLP over TLS (with `tls_key`); empty: plain TCP.
    pub tls_cert: String,
    /// PEM private key of `tls_cert`.
    pub tls_key: String,
    /// The laboratory's MLLP address (`host:port`) to which laboratory orders are sent
    /// as ORM^O01 (`HALE_HL7__ORDERS_TO`); empty (the default) sends none.
    pub orders_to: String,
    /// How long to wait for the laboratory's acknowledgement before sending the
    /// message once more.
    pub ack_timeout_secs: u64,
    /// MSH-4 of the orders sent.
    pub sending_facility: String,
    /// MSH-5 and MSH-6 of the orders sent.
    pub receiving_application: String,
    pub receiving_facility: String,
}

impl Default for Hl7 {
    fn default() -> Self {
        Hl7 {
            mllp_listen: String::new(),
            max_frame_bytes: 1024 * 1024,
            idle_timeout_secs: 300,
            max_connections: 64,
            tls_cert: String::new(),
            tls_key: String::new(),
            orders_to: String::new(),
            ack_timeout_secs: 30,
            sending_facility: "HALE".into(),
            receiving_application: "LAB".into(),
            receiving_facility: String::new(),
        }
    }
}

/// Limits on requests.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest Binary sent in its own media type (an image, a scanned PDF), in bytes.
    pub max_binary_bytes: usize,
    /// Deepest JSON nesting accepted (objects and arrays).
    pub max_json_depth: usize,
    /// Longest JSON string accepted, in bytes.
    pub max_string_bytes: usize,
    /// Page size when the client gives no `_count`.
    pub default_page_size: usize,
    /// Largest page size a client may ask for.
    pub max_page_size: usize,
    /// Most requests in progress at once; beyond it a request gets 503 with
    /// `Retry-After` at once (`/healthz` and `/readyz` are never refused).
    pub max_concurrent_requests: usize,
    /// Requests a second each client address may send (bursts up to as many at once);
    /// beyond it 429 with `Retry-After`. 0 turns the limit off (the default: behind a
    /// proxy every client has the proxy's address).
    pub requests_per_second_per_client: u32,
    /// Free space (MiB) on the data directory's file system below which `/readyz`
    /// answers 503.
    pub min_free_disk_mb: u64,
    /// Longest a statement may run, in milliseconds, before it is stopped and the
    /// request answered 503 `too-costly` (0: no limit). On SQLite it stops reads
    /// (searches, `$everything`, history); on PostgreSQL every statement but migrations.
    pub statement_timeout_ms: u64,
    /// Most TLS handshakes in progress at once (HTTPS); a connection beyond it is closed
    /// at once.
    pub max_tls_handshakes: usize,
}

/// Logging.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Log {
    /// Filter in `tracing` syntax, e.g. `info` or `hale=debug,info`.
    pub level: String,
    /// `text` or `json`.
    pub format: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./hale-data"),
            database_url: String::new(),
            database_pool_size: 16,
            public_base_url: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            shutdown_timeout_secs: 30,
            strict_search: false,
            time_zone: "UTC".into(),
            limits: Limits::default(),
            log: Log::default(),
            hl7: Hl7::default(),
            portal: Portal::default(),
            backup: Backup::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 16 * 1024 * 1024,
            max_binary_bytes: 64 * 1024 * 1024,
            max_json_depth: 64,
            max_string_bytes: 8 * 1024 * 1024,
            default_page_size: 50,
            max_page_size: 1000,
            max_concurrent_requests: 512,
            requests_per_second_per_client: 0,
            min_free_disk_mb: 256,
            statement_timeout_ms: 30_000,
            max_tls_handshakes: 256,
        }
    }
}

impl Default for Log {
    fn default() -> Self {
        Log { level: "info".into(), format: "text".into() }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration: {0}")]
    Load(String),
    #[error("configuration: {0}")]
    Invalid(String),
}

/// Command-line values that override everything else.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<String>,
    pub data_dir: Option<PathBuf>,
    pub database_url: Option<String>,
    pub mllp_listen: Option<String>,
}

impl Config {
    /// Loads defaults < `file` (or `hale.toml` in the working directory if present) <
    /// environment < overrides.
    /// A `HALE_` variable that names no setting is ignored (it may be another program's),
    /// with a warning on stderr when it looks like a misspelled one.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        for (var, meant) in misspelled_env(std::env::vars()) {
            eprintln!("warning: {var} is not a Hale setting and is ignored; did you mean {meant}?");
        }
        Self::load_with_env(file, overrides, std::env::vars())
    }

    /// As [`Config::load`], with the environment given (for tests).
    pub fn load_with_env(
        file: Option<&Path>,
        overrides: &Overrides,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let defaults = config::Config::try_from(&Config::default()).map_err(|e| ConfigError::Load(e.to_string()))?;
        let mut b = config::Config::builder().add_source(defaults);
        match file {
            Some(f) => {
                if !f.is_file() {
                    return Err(ConfigError::Load(format!("config file {} does not exist", f.display())));
                }
                b = b.add_source(config::File::from(f).format(config::FileFormat::Toml));
            }
            None => {
                b = b.add_source(config::File::with_name("hale.toml").format(config::FileFormat::Toml).required(false));
            }
        }
        // only the variables that name a setting: an operator's shell or a CI system may
        // hold other HALE_ variables (a misspelled key in hale.toml is still refused)
        let known = env_keys();
        let env: config::Map<String, String> = env.into_iter().filter(|(k, _)| known.contains(k)).collect();
        b = b.add_source(
            config::Environment::with_prefix("HALE")
                .prefix_separator("_")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        );
        if let Some(l) = &overrides.listen {
            b = b.set_override("listen", l.clone()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        if let Some(d) = &overrides.data_dir {
            b = b
                .set_override("data_dir", d.to_string_lossy().to_string())
                .map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        if let Some(u) = &overrides.database_url {
            b = b.set_override("database_url", u.clone()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        if let Some(m) = &overrides.mllp_listen {
            b = b.set_override("hl7.mllp_listen", m.clone()).map_err(|e| ConfigError::Load(e.to_string()))?;
        }
        let built = b.build().map_err(|e| ConfigError::Load(e.to_string()))?;
        let cfg: Config = built.try_deserialize().map_err(|e| ConfigError::Load(e.to_string()))?;
        cfg.check()?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), ConfigError> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "listen = '{}' is not an address such as 127.0.0.1:8080",
                self.listen
            )));
        }
        if !self.database_url.is_empty() && !self.database_url.starts_with("sqlite:") && !self.is_postgres() {
            return Err(ConfigError::Invalid(
                "database_url: use sqlite:PATH or postgres://user@host:port/database".into(),
            ));
        }
        if self.database_pool_size == 0 {
            return Err(ConfigError::Invalid("database_pool_size must be greater than zero".into()));
        }
        let l = &self.limits;
        if l.max_body_bytes == 0
            || l.max_binary_bytes == 0
            || l.max_json_depth == 0
            || l.max_string_bytes == 0
            || l.max_page_size == 0
            || l.max_concurrent_requests == 0
            || l.max_tls_handshakes == 0
        {
            return Err(ConfigError::Invalid("limits must be greater than zero".into()));
        }
        if l.max_json_depth > 120 {
            return Err(ConfigError::Invalid("limits.max_json_depth must be at most 120".into()));
        }
        if l.default_page_size > l.max_page_size {
            return Err(ConfigError::Invalid("limits.default_page_size must not exceed limits.max_page_size".into()));
        }
        if !self.hl7.mllp_listen.is_empty() && self.hl7.mllp_listen.parse::<std::net::SocketAddr>().is_err() {
            return Err(ConfigError::Invalid(format!(
                "hl7.mllp_listen = '{}' is not an address such as 0.0.0.0:2575",
                self.hl7.mllp_listen
            )));
        }
        if self.hl7.max_frame_bytes == 0
            || self.hl7.max_connections == 0
            || self.hl7.idle_timeout_secs == 0
            || self.hl7.ack_timeout_secs == 0
        {
            return Err(ConfigError::Invalid("hl7 limits must be greater than zero".into()));
        }
        if self.tls_cert.is_empty() != self.tls_key.is_empty() {
            return Err(ConfigError::Invalid("tls_cert and tls_key go together".into()));
        }
        if !self.tls_cert.is_empty() && !self.public_base_url.starts_with("https://") {
            return Err(ConfigError::Invalid(
                "tls_cert: set public_base_url to the https:// address clients use (links, tokens and cookies name it)"
                    .into(),
            ));
        }
        if self.backup.keep == 0 {
            return Err(ConfigError::Invalid("backup.keep must be at least 1".into()));
        }
        if !matches!(self.portal.release_results.as_str(), "after_review" | "immediately") {
            return Err(ConfigError::Invalid("portal.release_results must be after_review or immediately".into()));
        }
        if let Some((k, _)) =
            self.portal.release_by_category.iter().find(|(_, v)| !matches!(v.as_str(), "after_review" | "immediately"))
        {
            return Err(ConfigError::Invalid(format!(
                "portal.release_by_category.{k} must be after_review or immediately"
            )));
        }
        if !matches!(self.log.format.as_str(), "text" | "json") {
            return Err(ConfigError::Invalid("log.format must be text or json".into()));
        }
        self.zone()?;
        Ok(())
    }

    /// The time zone `time_zone` names, from the IANA database compiled into Hale.
    pub fn zone(&self) -> Result<hale_app::Zone, ConfigError> {
        hale_app::Zone::named(&self.time_zone).map_err(|e| ConfigError::Invalid(format!("time_zone: {e}")))
    }

    /// True when `database_url` names a PostgreSQL database.
    pub fn is_postgres(&self) -> bool {
        self.database_url.starts_with("postgres://") || self.database_url.starts_with("postgresql://")
    }

    /// The store for logs: the SQLite path or the PostgreSQL URL without its password.
    pub fn store_description(&self) -> String {
        if self.is_postgres() { redact_url(&self.database_url) } else { self.sqlite_path().display().to_string() }
    }

    /// The SQLite file this configuration uses.
    pub fn sqlite_path(&self) -> PathBuf {
        match self.database_url.strip_prefix("sqlite:") {
            Some(p) if !p.is_empty() => PathBuf::from(p.trim_start_matches("//")),
            _ => self.data_dir.join("hale.db"),
        }
    }

    /// The configuration as TOML, with secrets (passwords in URLs) redacted.
    pub fn to_redacted_toml(&self) -> String {
        let mut c = self.clone();
        c.database_url = redact_url(&c.database_url);
        toml::to_string(&c).unwrap_or_default()
    }
}

/// `postgres://user:secret@host/db` -> `postgres://user:***@host/db`
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((creds, host)) = rest.split_once('@')
        && let Some((user, _)) = creds.split_once(':')
    {
        return format!("{scheme}://{user}:***@{host}");
    }
    url.to_string()
}

/// The environment variable of every setting: `HALE_LISTEN`, `HALE_LIMITS__MAX_BODY_BYTES`...
pub fn env_keys() -> Vec<String> {
    fn walk(prefix: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v.as_object() {
            Some(o) => {
                for (k, child) in o {
                    let name = if prefix.is_empty() { k.clone() } else { format!("{prefix}__{k}") };
                    walk(&name, child, out);
                }
            }
            None => out.push(format!("HALE_{}", prefix.to_ascii_uppercase())),
        }
    }
    let mut out = Vec::new();
    walk("", &serde_json::to_value(Config::default()).unwrap_or_default(), &mut out);
    out
}

/// The `HALE_` variables of `env` that name no setting but look like a misspelling of one
/// (at most two edits away, case aside), each with the setting's variable.
pub fn misspelled_env(env: impl IntoIterator<Item = (String, String)>) -> Vec<(String, String)> {
    let known = env_keys();
    let mut out = Vec::new();
    for (k, _) in env {
        let upper = k.to_ascii_uppercase();
        if !upper.starts_with("HALE_") || known.contains(&k) || k == "HALE_CONFIG" || upper.starts_with("HALE_TEST") {
            continue;
        }
        if let Some(meant) = known.iter().map(|n| (edits(&upper, n), n)).filter(|(d, _)| *d <= 2).min() {
            out.push((k, meant.1.clone()));
        }
    }
    out
}

/// Levenshtein distance between two ASCII-ish strings (by bytes).
fn edits(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_hale_variables_are_ignored_and_misspelled_ones_named() {
        let env = vec![
            ("HALE_BENCH_REQUESTS".to_string(), "20".to_string()),
            ("HALE_SOMETHING_ELSE".to_string(), "x".to_string()),
            ("HALE_LIMTS__MAX_BODY_BYTES".to_string(), "1".to_string()),
            ("HALE_LISTEN".to_string(), "127.0.0.1:9".to_string()),
        ];
        let c = Config::load_with_env(None, &Overrides::default(), env.clone()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:9");
        assert_eq!(c.limits.max_body_bytes, Limits::default().max_body_bytes, "the misspelled one is not taken");
        assert_eq!(
            misspelled_env(env),
            vec![("HALE_LIMTS__MAX_BODY_BYTES".to_string(), "HALE_LIMITS__MAX_BODY_BYTES".to_string())]
        );
        assert!(env_keys().contains(&"HALE_LOG__LEVEL".to_string()));
        assert!(env_keys().contains(&"HALE_DATABASE_POOL_SIZE".to_string()));
    }

    #[test]
    fn precedence_is_defaults_file_env_flags() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hale.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:1111\"\ndata_dir = \"/from/file\"\n[limits]\nmax_json_depth = 10\n")
            .unwrap();
        let env = vec![
            ("HALE_DATA_DIR".to_string(), "/from/env".to_string()),
            ("HALE_LIMITS__MAX_BODY_BYTES".to_string(), "1234".to_string()),
        ];
        let c = Config::load_with_env(Some(&f), &Overrides::default(), env.clone()).unwrap();
        assert_eq!(c.listen, "127.0.0.1:1111");
        assert_eq!(c.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.limits.max_body_bytes, 1234);
        assert_eq!(c.limits.max_json_depth, 10);
        assert_eq!(c.limits.max_page_size, 1000);
        let o = Overrides { data_dir: Some("/from/flag".into()), ..Default::default() };
        let c = Config::load_with_env(Some(&f), &o, env).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/flag"));
    }

    #[test]
    fn scheduled_backups_keep_at_least_one() {
        let load = |pairs: &[(&str, &str)]| {
            let env: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::load_with_env(None, &Overrides::default(), env)
        };
        let c = load(&[("HALE_BACKUP__INTERVAL_SECS", "3600")]).unwrap();
        assert_eq!((c.backup.interval_secs, c.backup.keep), (3600, 7));
        assert_eq!(c.backup.directory(&c.data_dir), c.data_dir.join("backups"));
        let c = load(&[("HALE_BACKUP__INTERVAL_SECS", "60"), ("HALE_DATABASE_URL", "postgres://u@h:5432/d")]).unwrap();
        assert!(c.is_postgres() && c.backup.key_file.is_empty());
        assert!(load(&[("HALE_BACKUP__KEEP", "0")]).unwrap_err().to_string().contains("backup.keep"));
    }

    #[test]
    fn bad_values_are_refused() {
        let env = vec![("HALE_LISTEN".to_string(), "nowhere".to_string())];
        assert!(Config::load_with_env(None, &Overrides::default(), env).is_err());
        let env = vec![("HALE_LIMITS__MAX_BODY_BYTES".to_string(), "lots".to_string())];
        assert!(Config::load_with_env(None, &Overrides::default(), env).is_err());
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("x.toml");
        std::fs::write(&f, "lisen = \"typo\"\n").unwrap();
        assert!(Config::load_with_env(Some(&f), &Overrides::default(), vec![]).is_err());
    }

    #[test]
    fn postgres_urls_and_pool_size_are_taken() {
        let env = vec![
            ("HALE_DATABASE_URL".to_string(), "postgres://hale:pw@db:5432/hale".to_string()),
            ("HALE_DATABASE_POOL_SIZE".to_string(), "4".to_string()),
        ];
        let c = Config::load_with_env(None, &Overrides::default(), env).unwrap();
        assert!(c.is_postgres());
        assert_eq!(c.database_pool_size, 4);
        assert_eq!(c.store_description(), "postgres://hale:***@db:5432/hale");
        assert_eq!(Config::default().database_pool_size, 16);
        let env = vec![("HALE_DATABASE_URL".to_string(), "mysql://db/hale".to_string())];
        assert!(Config::load_with_env(None, &Overrides::default(), env).is_err());
        let env = vec![("HALE_DATABASE_POOL_SIZE".to_string(), "0".to_string())];
        assert!(Config::load_with_env(None, &Overrides::default(), env).is_err());
    }

    #[test]
    fn the_time_zone_is_an_iana_name_utc_by_default() {
        let load = |pairs: &[(&str, &str)]| {
            let env: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            Config::load_with_env(None, &Overrides::default(), env)
        };
        let c = load(&[]).unwrap();
        assert_eq!((c.time_zone.as_str(), c.zone().unwrap().name()), ("UTC", "UTC"));
        assert!(env_keys().contains(&"HALE_TIME_ZONE".to_string()));
        let c = load(&[("HALE_TIME_ZONE", "America/New_York")]).unwrap();
        assert_eq!(c.zone().unwrap().name(), "America/New_York");
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("hale.toml");
        std::fs::write(&f, "time_zone = \"Europe/Paris\"\n").unwrap();
        let c = Config::load_with_env(Some(&f), &Overrides::default(), vec![]).unwrap();
        assert_eq!(c.zone().unwrap().name(), "Europe/Paris");
        let e = load(&[("HALE_TIME_ZONE", "America/New_Yrok")]).unwrap_err().to_string();
        assert_eq!(
            e,
            "configuration: time_zone: 'America/New_Yrok' is not a time zone of the IANA database \
             (such as America/New_York, Europe/Paris or UTC)"
        );
        assert!(!e.contains('\n'));
        assert!(load(&[("HALE_TIME_ZONE", "")]).is_err());
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact_url("postgres://u:pw@h:5432/db"), "postgres://u:***@h:5432/db");
        let c = Config { database_url: "sqlite:/x/y.db".into(), ..Config::default() };
        assert!(c.to_redacted_toml().contains("sqlite:/x/y.db"));
    }
}
