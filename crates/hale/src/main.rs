//! The `hale` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use hale_server::config::{Config, Overrides};

/// Hale: an open-source electronic health record whose data model is FHIR R4.
///
/// Start with `hale serve`, then open http://127.0.0.1:8080/fhir/metadata.
#[derive(Parser)]
#[command(name = "hale", version, about, long_about = None)]
struct Cli {
    /// Configuration file (TOML). Default: ./hale.toml if it exists.
    #[arg(long, global = true, env = "HALE_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: FHIR R4 REST API at /fhir, health at /healthz and /readyz.
    Serve(ServeArgs),
    /// Create or upgrade the store's schema and exit (`serve` does this too; run it
    /// once before rolling out new nodes on a shared PostgreSQL database).
    Migrate(ServeArgs),
    /// Copy every version of every resource (history intact) from one store into an
    /// empty other, e.g. from SQLite to PostgreSQL, then verify per-type counts and a
    /// content hash of every version. Stop writes to the source first.
    MigrateStore {
        /// The source store: sqlite:PATH or postgres://...
        #[arg(long, value_name = "URL")]
        from: String,
        /// The empty target store: sqlite:PATH or postgres://...
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Print the effective configuration (defaults < hale.toml < HALE_* < flags),
    /// secrets redacted.
    Config(ServeArgs),
    /// Load transaction or batch bundles (.json, .json.gz, .json.bz2), NDJSON files
    /// (.ndjson[.gz|.bz2], one resource a line) or directories of them into the store.
    Import {
        /// Files or directories (directories are read in name order).
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Rebuild the search index of every current resource from its stored JSON.
    Reindex {
        /// Only these resource types (comma-separated).
        #[arg(long = "type", value_name = "TYPES", value_delimiter = ',')]
        types: Vec<String>,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Generate a synthetic population (patients with years of encounters, conditions,
    /// medications, allergies, immunizations, vitals, labs and notes): into the store, or
    /// as files with --out. The same seed, count and reference date give the same data.
    Synth {
        #[command(flatten)]
        population: PopulationArgs,
        /// Write files into this directory instead of loading the store.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
        /// File format with --out: `bundles` (0-shared.json, then one transaction a
        /// patient), `ndjson` (Type.ndjson, as bulk export writes) or `hl7` (an
        /// interface feed: ADT^A04 a patient, ORU^R01 a laboratory report).
        #[arg(long, value_enum, default_value_t = SynthFormat::Bundles)]
        format: SynthFormat,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Run the server with a synthetic demo population: when the store holds no patient,
    /// synthesize one first (then the same as `hale serve`).
    Demo {
        #[command(flatten)]
        population: PopulationArgs,
        #[command(flatten)]
        args: ServeArgs,
    },
    /// HL7 v2: `hale hl7 send FILE...` receives result messages (ORU^R01) from files,
    /// one message a file, and prints each acknowledgement.
    Hl7 {
        #[command(subcommand)]
        command: Hl7Command,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Decision support: `hale cds list` prints the rules (with their sources and the
    /// date each was last reviewed) and the drug-drug interactions checked; `hale cds
    /// install-measures` writes the quality measures into the store.
    Cds {
        #[command(subcommand)]
        command: CdsCommand,
    },
    /// Check a store without changing it (on a copy; Hale may be serving): its
    /// integrity (SQLite's check; on PostgreSQL a pg_dump restored into a scratch
    /// database), the schema version, current versions, the search index against a
    /// rebuild, and the audit trail. Exit 1 with the first problem.
    Check(ServeArgs),
    /// Backups: create one while Hale serves (encrypted with a key file if asked), verify
    /// one (every hash, the database's integrity, the audit trail), restore one into an
    /// empty data directory or database.
    Backup {
        #[command(subcommand)]
        command: BackupCommand,
    },
    /// The audit trail: `hale audit verify` checks the hash chain and the signed
    /// checkpoints and names the first bad entry.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// User accounts: add, list, disable, enable, reset-password, enroll-mfa.
    User {
        #[command(subcommand)]
        command: UserCommand,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// SMART applications allowed to ask users for access: add, list.
    Client {
        #[command(subcommand)]
        command: ClientCommand,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Print a short-lived access token for a user or a client (for operators and
    /// scripts: it needs the data directory, and is audited). Use it as
    /// `Authorization: Bearer <token>`.
    Token {
        /// The user the token acts for.
        #[arg(long, value_name = "USERNAME", conflicts_with = "client", required_unless_present = "client")]
        user: Option<String>,
        /// A client acting for no user (with system/ scopes).
        #[arg(long, value_name = "CLIENT_ID")]
        client: Option<String>,
        /// SMART scopes, e.g. "user/*.rs" or "system/*.cruds".
        #[arg(long)]
        scope: String,
        /// The patient in context, for patient/ scopes.
        #[arg(long, value_name = "PATIENT_ID")]
        patient: Option<String>,
        /// Lifetime in seconds (at most 3600).
        #[arg(long, default_value_t = 3600)]
        lifetime: i64,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Write every current resource as NDJSON, one file per resource type.
    Export {
        /// Directory to write Type.ndjson files into.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Only these resource types (comma-separated).
        #[arg(long = "type", value_name = "TYPES", value_delimiter = ',')]
        types: Vec<String>,
        #[command(flatten)]
        store: ServeArgs,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. Without --password-stdin a one-time password is printed,
    /// to be changed at the first sign-in.
    Add {
        username: String,
        /// admin, security-admin, clinician, nurse, front-desk or patient.
        #[arg(long)]
        role: String,
        /// The name shown for the user.
        #[arg(long)]
        name: Option<String>,
        /// The Organization id a staff member works for (required for clinician,
        /// nurse and front-desk).
        #[arg(long, value_name = "ORGANIZATION_ID")]
        organization: Option<String>,
        /// The Practitioner id the user is.
        #[arg(long, value_name = "PRACTITIONER_ID")]
        practitioner: Option<String>,
        /// For patient accounts: the Patient id whose record it is (repeat for a proxy
        /// of several patients).
        #[arg(long = "patient", value_name = "PATIENT_ID")]
        patients: Vec<String>,
        /// For a proxy (a parent or guardian): the RelatedPerson id the user is.
        #[arg(long, value_name = "RELATED_PERSON_ID")]
        related_person: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List the accounts (no secret is shown).
    List,
    /// Disable an account: it can no longer sign in or get tokens.
    Disable { username: String },
    /// Enable a disabled account.
    Enable { username: String },
    /// Replace the password with a printed one-time password.
    ResetPassword { username: String },
    /// Start TOTP enrolment (prints an otpauth:// URI for an authenticator app), or
    /// confirm it with --code.
    EnrollMfa {
        username: String,
        /// The first code from the authenticator app.
        #[arg(long)]
        code: Option<String>,
    },
}

#[derive(Subcommand)]
enum ClientCommand {
    /// Register an application. A confidential one gets a secret, printed once. A
    /// backend service (SMART Backend Services) is registered with `--jwks` and
    /// `--scope` instead of redirect URIs.
    Add {
        client_id: String,
        /// The name users see on the consent page.
        #[arg(long)]
        name: String,
        /// An exact redirect URI (repeat for several).
        #[arg(long = "redirect-uri", required_unless_present = "jwks")]
        redirect_uris: Vec<String>,
        /// The client keeps a secret (a server-side application).
        #[arg(long, conflicts_with = "jwks")]
        confidential: bool,
        /// A backend service: the JSON file of its public keys (a JWK Set: RSA keys for
        /// RS384, EC P-384 keys for ES384); it authenticates with signed assertions.
        #[arg(long, value_name = "FILE", conflicts_with = "redirect_uris", requires = "scope")]
        jwks: Option<std::path::PathBuf>,
        /// The system/ scopes the backend service may be granted (e.g. 'system/*.rs').
        #[arg(long, requires = "jwks")]
        scope: Option<String>,
    },
    /// List the registered applications.
    List,
}

#[derive(Subcommand)]
enum Hl7Command {
    /// Receive each file as one message: parse it, map it to FHIR, store it through the
    /// gate (audited as system:hl7); print the ACK code and what happened; exit 1 when
    /// any message was refused.
    Send {
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
        /// Print each acknowledgement message too (segments on their own lines).
        #[arg(long)]
        acks: bool,
    },
    /// List the messages received (over MLLP or by `hl7 send`), oldest first: when, the
    /// answer, the type, the sender and control id, the patient, what happened.
    List {
        #[command(flatten)]
        filter: Hl7Filter,
        /// Print each message too (segments on their own lines).
        #[arg(long)]
        messages: bool,
    },
    /// Counts by interface (sending application/facility), message type and answer, and
    /// the laboratory orders queued and still waiting for the laboratory's answer.
    Stats,
    /// Process the refused messages the filter selects again (after the cause was
    /// fixed): each is stored now and leaves the dead-letter list, or is refused again
    /// with the reason. A message once accepted is never written twice.
    Replay {
        #[command(flatten)]
        filter: Hl7Filter,
    },
}

#[derive(Args, Clone, Default)]
struct Hl7Filter {
    /// Only the refused messages (the dead-letter list).
    #[arg(long)]
    refused: bool,
    /// Only the message with this control id (MSH-10).
    #[arg(long, value_name = "ID")]
    control: Option<String>,
    /// Only messages about this patient identifier (PID-3).
    #[arg(long, value_name = "ID")]
    patient: Option<String>,
    /// Received at or after this time (UTC, e.g. 2026-12-01 or 2026-12-01T08:00:00Z).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Received before this time.
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only messages answered so (AA, AE, AR, CA, CE, CR).
    #[arg(long, value_name = "CODE")]
    code: Option<String>,
}

impl Hl7Filter {
    fn filter(&self) -> hale_server::hl7::Filter {
        hale_server::hl7::Filter {
            refused: self.refused,
            control: self.control.clone(),
            patient: self.patient.clone(),
            since: self.since.clone(),
            until: self.until.clone(),
            code: self.code.clone(),
        }
    }
}

#[derive(Subcommand)]
enum CdsCommand {
    /// Print every rule and interaction, with its source.
    List,
    /// Write the built-in quality measures into the store as Measure resources
    /// (`Measure/[id]`, each only when missing or different; the demo does this on every
    /// start), so that clients find them and the `urn:hale:measure:[id]` a MeasureReport
    /// names resolves.
    InstallMeasures(ServeArgs),
}

#[derive(Subcommand)]
enum BackupCommand {
    /// Write a backup file (tar.gz: a consistent snapshot of the database — on SQLite
    /// with the keys and the signed audit checkpoints beside it, on PostgreSQL a pg_dump
    /// — and a manifest of counts and hashes) while Hale may go on serving.
    Create {
        /// The file to write (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Encrypt the backup with the key in this file (`hale backup keygen`).
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Unpack a backup into scratch and check it: every file's hash, the database's
    /// integrity, every resource type's versions against their hash, that Hale opens it
    /// and counts the same, and the audit trail. A PostgreSQL backup is restored into a
    /// scratch database on the server `--database` names, dropped afterwards.
    Verify {
        /// The backup file.
        file: PathBuf,
        /// The key file of an encrypted backup.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        #[command(flatten)]
        store: ServeArgs,
    },
    /// Verify a backup, then restore it: a SQLite backup into a data directory that holds
    /// no store (--data-dir), a PostgreSQL backup into an empty database (--database).
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The key file of an encrypted backup.
        #[arg(long, value_name = "FILE")]
        key: Option<PathBuf>,
        /// The data directory to restore a SQLite backup into (created if missing; it
        /// must hold no hale.db).
        #[arg(long, value_name = "DIR", required_unless_present = "database", conflicts_with = "database")]
        data_dir: Option<PathBuf>,
        /// The empty PostgreSQL database to restore a PostgreSQL backup into.
        #[arg(long, value_name = "URL")]
        database: Option<String>,
    },
    /// Write a new random key for encrypted backups to a file (readable by its owner
    /// only). Keep it apart from the backups: without it they cannot be read.
    Keygen {
        /// The key file to write (it must not exist).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Link pending entries, then verify every entry of the chain against its hash and
    /// the signed checkpoints in the data directory; exit 1 at the first problem.
    Verify(ServeArgs),
}

/// Links the audit entries a command wrote into the hash chain and signs a checkpoint.
async fn chain_audit(repo: &hale_server::SystemRepository, cfg: &Config) -> anyhow::Result<()> {
    repo.chain_audit(&hale_server::checkpoints(cfg, repo).await?).await?;
    Ok(())
}

#[derive(Args, Clone)]
struct PopulationArgs {
    /// Number of patients.
    #[arg(long, default_value_t = 50)]
    patients: usize,
    /// Seed of the generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Years of history before the reference date.
    #[arg(long, default_value_t = 10)]
    years: u32,
    /// "Today" of the population (YYYY-MM-DD); default: today.
    #[arg(long, value_name = "DATE")]
    reference_date: Option<chrono::NaiveDate>,
}

impl PopulationArgs {
    fn config(&self) -> hale_synth::Config {
        hale_synth::Config {
            patients: self.patients,
            seed: self.seed,
            years: self.years,
            reference_date: self.reference_date.unwrap_or_else(|| chrono::Utc::now().date_naive()),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum SynthFormat {
    Bundles,
    Ndjson,
    /// HL7 v2 messages: an ADT^A04 a patient and an ORU^R01 a laboratory report.
    Hl7,
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", global = true)]
    listen: Option<String>,
    /// Directory for the embedded database and other state.
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite:PATH or postgres://user@host:port/db); default: hale.db in
    /// the data directory.
    #[arg(long, value_name = "URL", global = true)]
    database: Option<String>,
    /// Receive HL7 v2 messages over MLLP on this address, e.g. 0.0.0.0:2575 (off by
    /// default; `serve` and `demo` only).
    #[arg(long, value_name = "ADDR", global = true)]
    mllp: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides {
            listen: self.listen.clone(),
            data_dir: self.data_dir.clone(),
            database_url: self.database.clone(),
            mllp_listen: self.mllp.clone(),
        }
    }
}

/// The backup key in the key file `path`, if one is given.
fn backup_key(path: Option<&std::path::Path>) -> anyhow::Result<Option<hale_server::backup::Key>> {
    path.map(hale_server::backup::Key::read).transpose().map_err(anyhow::Error::msg)
}

fn init_logging(cfg: &Config) {
    let filter = tracing_subscriber::EnvFilter::try_new(&cfg.log.level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let b = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if cfg.log.format == "json" {
        b.json().init();
    } else {
        b.init();
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hale: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Config(args) => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            print!("{}", cfg.to_redacted_toml());
            Ok(())
        }
        Command::Migrate(args) => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async { anyhow::Ok(hale_server::system_repository(&cfg, "migrate").await?.ping().await?) })?;
            println!("the store at {} is migrated to the schema this Hale knows", cfg.store_description());
            Ok(())
        }
        Command::MigrateStore { from, to } => {
            let open = |url: &str| {
                let o = Overrides { database_url: Some(url.to_string()), ..Overrides::default() };
                Config::load(cli.config.as_deref(), &o)
            };
            let (from_cfg, to_cfg) = (open(&from)?, open(&to)?);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let summary = rt.block_on(async {
                let source = hale_server::system_repository(&from_cfg, "migrate-store").await?;
                let target = hale_server::system_repository(&to_cfg, "migrate-store").await?;
                let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
                // the copy's audit entries are chained by the next `serve` or `audit verify`
                // of each store, run with its data directory
                hale_server::bulk::copy_store(&source, &target, show).await.map_err(anyhow::Error::msg)
            })?;
            for (t, n) in &summary.per_type {
                println!("{t}\t{n}");
            }
            println!(
                "copied {} versions from {} to {} in {:.1} s; verified: the same versions per type and content hash {}",
                summary.versions,
                from_cfg.store_description(),
                to_cfg.store_description(),
                summary.seconds,
                summary.hash
            );
            Ok(())
        }
        Command::Import { paths, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let summary = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "import").await?;
                let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let summary = hale_server::bulk::import(&repo, &paths, show).await?;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(summary)
            })?;
            report_load(&summary, "imported")
        }
        Command::Reindex { types, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let started = std::time::Instant::now();
            let total = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "reindex").await?;
                let n = hale_server::bulk::reindex(&repo, &types, std::io::IsTerminal::is_terminal(&std::io::stderr()))
                    .await?;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(n)
            })?;
            println!("reindexed {total} resources in {:.1} s", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Check(args) => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let r = rt.block_on(hale_server::backup::check(&cfg)).map_err(anyhow::Error::msg)?;
            let integrity = if cfg.is_postgres() {
                "a copy restored into a scratch database (pg_dump, pg_restore) ok"
            } else {
                "SQLite integrity ok"
            };
            println!(
                "store checked: schema {} (this Hale knows {}); {integrity}; {} versions of {} resource types consistent; the search index ({} rows) equals a rebuild; audit trail verified ({} entries) in {:.1} s",
                r.schema.0, r.schema.1, r.versions, r.types, r.index_rows, r.audit_entries, r.seconds
            );
            Ok(())
        }
        Command::Backup { command: BackupCommand::Create { out, key, store } } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let key = backup_key(key.as_deref())?;
            let started = std::time::Instant::now();
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let m = rt.block_on(hale_server::backup::create(&cfg, &out, key.as_ref())).map_err(anyhow::Error::msg)?;
            let bytes = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0);
            println!(
                "backup written: {} ({} versions of {} resource types, {} bytes{}) in {:.1} s",
                out.display(),
                m.versions,
                m.per_type.len(),
                bytes,
                if key.is_some() { ", encrypted" } else { "" },
                started.elapsed().as_secs_f64()
            );
            Ok(())
        }
        Command::Backup { command: BackupCommand::Verify { file, key, store } } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let key = backup_key(key.as_deref())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let v = rt.block_on(hale_server::backup::verify(&file, key.as_ref(), &cfg)).map_err(anyhow::Error::msg)?;
            println!(
                "backup verified: {} ({} versions of {} resource types match their hashes; {} ok; audit trail verified, {} entries; taken {} by Hale {}) in {:.1} s",
                file.display(),
                v.manifest.versions,
                v.manifest.per_type.len(),
                if v.manifest.store == "postgres" { "pg_restore into a scratch database" } else { "SQLite integrity" },
                v.audit_entries,
                v.manifest.created,
                v.manifest.hale_version,
                v.seconds
            );
            Ok(())
        }
        Command::Backup { command: BackupCommand::Restore { file, key, data_dir, database } } => {
            let key = backup_key(key.as_deref())?;
            let target = match (&data_dir, &database) {
                (Some(dir), _) => hale_server::backup::Target::DataDir(dir),
                (None, Some(url)) => hale_server::backup::Target::Database(url),
                (None, None) => anyhow::bail!("give --data-dir DIR or --database URL"),
            };
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let v =
                rt.block_on(hale_server::backup::restore(&file, key.as_ref(), target)).map_err(anyhow::Error::msg)?;
            let start = match (&data_dir, &database) {
                (Some(dir), _) => format!("--data-dir {}", dir.display()),
                _ => "--database and the URL restored into".to_string(),
            };
            println!(
                "restored {} ({} versions of {} resource types, verified); start Hale with {start}",
                file.display(),
                v.manifest.versions,
                v.manifest.per_type.len(),
            );
            Ok(())
        }
        Command::Backup { command: BackupCommand::Keygen { out } } => {
            hale_server::backup::Key::generate(&out).map_err(anyhow::Error::msg)?;
            println!("backup key written: {} (keep it apart from the backups)", out.display());
            Ok(())
        }
        Command::Export { out, types, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let counts = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "export").await?;
                let t = (!types.is_empty()).then_some(types.as_slice());
                let counts = hale_server::bulk::export(&repo, &out, t).await?;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(counts)
            })?;
            let total: usize = counts.iter().map(|c| c.1).sum();
            for (t, n) in &counts {
                println!("{t}\t{n}");
            }
            println!("exported {total} resources of {} types to {}", counts.len(), out.display());
            Ok(())
        }
        Command::Synth { population, out, format, store } => {
            let pop = population.config();
            match out {
                Some(dir) if format == SynthFormat::Hl7 => {
                    let n = hale_server::synth::write_hl7(&pop, &dir)?;
                    println!(
                        "wrote {n} HL7 v2 messages to {} (each patient's ADT^A04 first: `hale hl7 send DIR/*` in name order)",
                        dir.display()
                    );
                }
                Some(dir) if format == SynthFormat::Ndjson => {
                    let counts = hale_server::synth::write_ndjson(&pop, &dir)?;
                    let total: usize = counts.iter().map(|c| c.1).sum();
                    for (t, n) in &counts {
                        println!("{t}\t{n}");
                    }
                    println!("wrote {total} resources of {} types to {}", counts.len(), dir.display());
                }
                Some(dir) => {
                    let files = hale_server::synth::write_bundles(&pop, &dir)?;
                    println!(
                        "wrote {files} bundles to {} (0-shared.json first: `hale import DIR` loads them in order)",
                        dir.display()
                    );
                }
                None => {
                    let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
                    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
                    let summary = rt.block_on(async {
                        let repo = hale_server::system_repository(&cfg, "synth").await?;
                        let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
                        let summary = hale_server::synth::load(&repo, &pop, show).await;
                        chain_audit(&repo, &cfg).await?;
                        anyhow::Ok(summary)
                    })?;
                    report_load(&summary, "synthesized")?;
                }
            }
            Ok(())
        }
        Command::Demo { population, args } => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "demo").await?;
                if hale_server::synth::patient_count(&repo).await? == 0 {
                    let pop = population.config();
                    println!("Hale demo: synthesizing {} patients (seed {})...", pop.patients, pop.seed);
                    let show = std::io::IsTerminal::is_terminal(&std::io::stderr());
                    let summary = hale_server::synth::load(&repo, &pop, show).await;
                    chain_audit(&repo, &cfg).await?;
                    report_load(&summary, "synthesized")?;
                }
                // the quality measures as Measure resources (written only when they differ)
                if !hale_server::measures::install(&repo).await?.written.is_empty() {
                    chain_audit(&repo, &cfg).await?;
                }
                if let Some(accounts) = hale_server::demo::create_accounts(&repo).await? {
                    chain_audit(&repo, &cfg).await?;
                    print_demo_accounts(&accounts);
                }
                drop(repo);
                // the demo keeps the configured zone (UTC unless set): the same pages on every machine
                println!(
                    "Dates and times on the pages are in {} (time_zone in hale.toml or HALE_TIME_ZONE, e.g. America/New_York).",
                    cfg.time_zone
                );
                serve(&cfg).await
            })
        }
        Command::Hl7 { command: Hl7Command::Send { files, acks }, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let sent = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "hl7").await?;
                let sent = hale_server::hl7::send_files(&repo, &files).await;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(sent)
            })?;
            let mut refused = 0;
            for (name, s) in &sent {
                println!("{name}: {}", s.summary);
                if acks && !s.ack.is_empty() {
                    println!("{}", s.ack.replace('\r', "\n"));
                }
                if !s.code.accepted() {
                    refused += 1;
                }
            }
            if refused > 0 {
                anyhow::bail!("{refused} of {} messages were not accepted", sent.len());
            }
            Ok(())
        }
        Command::Hl7 { command: Hl7Command::List { filter, messages }, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let kept = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "hl7").await?;
                anyhow::Ok(hale_server::hl7::list(&repo, &filter.filter()).await?)
            })?;
            for (_, refused, k) in &kept {
                println!(
                    "{}  {}  {}  {}{}  {}  patient {}  {}{}",
                    k.received,
                    k.code,
                    if k.message_type.is_empty() { "?" } else { &k.message_type },
                    k.sender,
                    if k.facility.is_empty() { String::new() } else { format!("/{}", k.facility) },
                    if k.control.is_empty() { "-" } else { &k.control },
                    if k.patient.is_empty() { "-" } else { &k.patient },
                    k.summary,
                    if *refused { "  [refused]" } else { "" }
                );
                if messages {
                    println!("{}", String::from_utf8_lossy(&k.bytes()).replace('\r', "\n"));
                }
            }
            eprintln!("{} messages", kept.len());
            Ok(())
        }
        Command::Hl7 { command: Hl7Command::Stats, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let stats = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "hl7").await?;
                anyhow::Ok(hale_server::hl7::stats(&repo).await?)
            })?;
            println!("{:<40} {:<10} {:<7} {:>8}", "interface", "type", "answer", "messages");
            for ((sender, ty, code), n) in &stats.received {
                println!("{sender:<40} {ty:<10} {code:<7} {n:>8}");
            }
            println!(
                "laboratory orders queued: {}, waiting for the laboratory: {}",
                stats.orders_queued, stats.orders_waiting
            );
            Ok(())
        }
        Command::Hl7 { command: Hl7Command::Replay { filter }, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let done = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "hl7").await?;
                let done = hale_server::hl7::replay(&repo, &filter.filter()).await?;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(done)
            })?;
            let stored = done.iter().filter(|(_, s)| s.code.accepted()).count();
            for (k, s) in &done {
                println!("{} {}: {}", k.received, if k.control.is_empty() { "-" } else { &k.control }, s.summary);
            }
            println!("{stored} of {} refused messages stored now", done.len());
            if stored < done.len() {
                anyhow::bail!("{} messages are still refused", done.len() - stored);
            }
            Ok(())
        }
        Command::Cds { command: CdsCommand::InstallMeasures(args) } => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let done = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "measures").await?;
                let done = hale_server::measures::install(&repo).await?;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(done)
            })?;
            let written = if done.written.is_empty() { "none".to_string() } else { done.written.join(", ") };
            println!("Measures written: {written}; already as described: {}", done.unchanged);
            Ok(())
        }
        Command::Cds { command: CdsCommand::List } => {
            println!("Rules (id, last reviewed, what it checks, source):");
            for r in hale_cds::RULES {
                println!("  {:<26} {}  {}\n  {:<26}             source: {}", r.id, r.reviewed, r.summary, "", r.source);
            }
            println!("Drug-drug interactions ({}):", hale_cds::medications::INTERACTIONS.len());
            let mut last = "";
            for x in hale_cds::medications::INTERACTIONS {
                println!("  {} + {} [{}]: {}", x.a.name(), x.b.name(), x.severity.code(), x.effect);
                let source = if x.source == last { "as above" } else { x.source };
                println!("      what to do: {}\n      source: {source}", x.action);
                last = x.source;
            }
            println!("  The groups and classes of these pairs:");
            for g in hale_cds::medications::GROUPS {
                let members: Vec<&str> = g.members.iter().map(|i| i.name).collect();
                println!("    {}: {}", g.name, members.join(", "));
            }
            let mut classes: Vec<(&str, Vec<String>)> = Vec::new();
            for x in hale_cds::medications::INTERACTIONS {
                for side in [x.a, x.b] {
                    if let hale_cds::medications::Side::Class(c) = side
                        && !classes.iter().any(|(n, _)| *n == c.name())
                    {
                        let members = hale_cds::drugs::INGREDIENTS.iter().filter(|i| i.classes.contains(&c));
                        // an ingredient without a confirmed RxNorm code is matched by name
                        let shown = |i: &&hale_cds::drugs::Ingredient| match i.rxcui {
                            "" => format!("{} (by name)", i.name),
                            _ => i.name.to_string(),
                        };
                        classes.push((c.name(), members.map(shown).collect()));
                    }
                }
            }
            for (name, members) in classes {
                println!("    {name}: {}", members.join(", "));
            }
            println!("Preventive care ({}):", hale_cds::preventive::RULES.len());
            for r in hale_cds::preventive::RULES {
                println!("  {:<20} {} (source: {}, {}; reviewed {})", r.id, r.title, r.source, r.link, r.reviewed);
            }
            let series = hale_cds::childhood::SERIES;
            println!(
                "Childhood and adolescent series ({}; source: {}, {}; reviewed {}):",
                series.len(),
                hale_cds::childhood::SOURCE,
                hale_cds::childhood::LINK,
                hale_cds::childhood::REVIEWED
            );
            for s in series {
                let doses: Vec<String> = s
                    .doses
                    .iter()
                    .map(|d| {
                        let after = d.after.map(|a| format!(", {} after", a.words())).unwrap_or_default();
                        let first = d.after_first.map(|a| format!(", {} after dose 1", a.words())).unwrap_or_default();
                        format!("{} (from {}{after}{first})", d.due.words(), d.min_age.words())
                    })
                    .collect();
                println!("  {:<20} {}: {}; until {}", s.id, s.name, doses.join(", "), s.until.words());
            }
            println!("Critical limits ({}):", hale_cds::results::CRITICAL_SOURCE);
            for l in hale_cds::results::CRITICAL_LIMITS {
                let bound = |b: Option<f64>| b.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
                println!("  LOINC {:<8} below {:<6} above {}", l.loinc, bound(l.low), bound(l.high));
            }
            let name = |rxcui: &str| hale_cds::drugs::ingredient(rxcui).map(|i| i.name).unwrap_or("?");
            println!("Daily dose maxima ({}):", hale_cds::dosing::LIMITS.len());
            for l in hale_cds::dosing::LIMITS {
                let child = l.child_mg_kg_day.map(|c| format!(", a child {c} mg/kg")).unwrap_or_default();
                println!("  {:<18} adult {} mg{child} (source: {})", name(l.rxcui), l.adult_mg_day, l.source);
            }
            println!("Age:");
            for (rxcui, age, why, source) in hale_cds::dosing::AGE_LIMITS {
                println!("  {:<18} under {age}: {why} (source: {source})", name(rxcui));
            }
            println!("Kidney function (eGFR, mL/min/1.73 m2):");
            for r in hale_cds::dosing::RENAL {
                let what =
                    r.rxcui.map(|x| name(x).to_string()).or(r.class.map(|c| c.name().to_string())).unwrap_or_default();
                println!("  {what:<18} below {} [{}]: {} (source: {})", r.below, r.severity.code(), r.what, r.source);
            }
            println!("Pregnancy:");
            for r in hale_cds::dosing::PREGNANCY {
                let what =
                    r.rxcui.map(|x| name(x).to_string()).or(r.class.map(|c| c.name().to_string())).unwrap_or_default();
                println!("  {what:<30} [{}]: {} (source: {})", r.severity.code(), r.why, r.source);
            }
            println!("Quality measures ({}):", hale_cds::measures::MEASURES.len());
            for m in hale_cds::measures::MEASURES {
                println!(
                    "  {:<36} {}; excluded: {}; met: {} (source: {}; not applied: {})",
                    m.id, m.initial_population, m.exclusions, m.numerator, m.source, m.not_applied
                );
            }
            println!(
                "Drug table: {} products, {} ingredients.",
                hale_cds::drugs::DRUGS.len(),
                hale_cds::drugs::INGREDIENTS.len()
            );
            Ok(())
        }
        Command::Audit { command: AuditCommand::Verify(args) } => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let started = std::time::Instant::now();
            let v = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "audit-verify").await?;
                let checkpoints = hale_server::checkpoints(&cfg, &repo).await?;
                repo.chain_audit(&checkpoints).await?;
                anyhow::Ok(repo.verify_audit(&checkpoints).await?)
            })?;
            let secs = started.elapsed().as_secs_f64();
            if let Some(p) = v.problem() {
                anyhow::bail!("the audit trail fails verification: {p}");
            }
            println!(
                "audit trail verified: {} entries in {:.2} s ({:.0} entries/s), {} signed checkpoints (the last at entry {}), {} entries not yet chained",
                v.report.checked,
                secs,
                v.report.checked as f64 / secs.max(1e-9),
                v.report.checkpoints,
                v.report.covered_to,
                v.unchained
            );
            Ok(())
        }
        Command::User { command, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "user").await?;
                let r = user_command(&repo, command).await;
                chain_audit(&repo, &cfg).await?;
                r
            })
        }
        Command::Client { command, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "client").await?;
                let r = match command {
                    ClientCommand::Add { client_id, name, jwks: Some(file), scope, .. } => {
                        let text =
                            std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
                        let scope = scope.unwrap_or_default();
                        hale_server::register_backend_client(&repo, &client_id, &name, &text, &scope)
                            .await
                            .map_err(anyhow::Error::msg)?;
                        println!("registered {client_id} (backend service, {scope})");
                        anyhow::Ok(())
                    }
                    ClientCommand::Add { client_id, name, redirect_uris, confidential, jwks: None, .. } => {
                        let secret =
                            hale_server::register_client(&repo, &client_id, &name, &redirect_uris, confidential)
                                .await
                                .map_err(anyhow::Error::msg)?;
                        println!("registered {client_id} ({})", if confidential { "confidential" } else { "public" });
                        if let Some(s) = secret {
                            println!("client secret (shown once): {s}");
                        }
                        anyhow::Ok(())
                    }
                    ClientCommand::List => {
                        for c in hale_server::clients(&repo).await.map_err(anyhow::Error::msg)? {
                            let kind = match (c.is_backend(), c.confidential) {
                                (true, _) => "backend",
                                (false, true) => "confidential",
                                (false, false) => "public",
                            };
                            let what = c.scope.clone().unwrap_or_else(|| c.redirect_uris.join(" "));
                            println!("{}\t{kind}\t{}\t{what}", c.id, c.name);
                        }
                        Ok(())
                    }
                };
                chain_audit(&repo, &cfg).await?;
                r
            })
        }
        Command::Token { user, client, scope, patient, lifetime, store } => {
            let cfg = Config::load(cli.config.as_deref(), &store.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let token = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "token").await?;
                let keys = hale_server::token_keys(&cfg, &repo).await?;
                let subject = match (user, client) {
                    (Some(u), _) => hale_server::users::TokenSubject::User(u),
                    (None, Some(c)) => hale_server::users::TokenSubject::Client(c),
                    (None, None) => anyhow::bail!("--user or --client is needed"),
                };
                let t = hale_server::users::issue_token(&repo, &keys, &subject, &scope, patient.as_deref(), lifetime)
                    .await?;
                chain_audit(&repo, &cfg).await?;
                anyhow::Ok(t)
            })?;
            println!("{token}");
            Ok(())
        }
        Command::Serve(args) => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(serve(&cfg))
        }
    }
}

async fn user_command(repo: &hale_server::SystemRepository, command: UserCommand) -> anyhow::Result<()> {
    use hale_server::users;
    match command {
        UserCommand::Add {
            username,
            role,
            name,
            organization,
            practitioner,
            patients,
            related_person,
            password_stdin,
        } => {
            let password = if password_stdin {
                let mut line = String::new();
                std::io::stdin().read_line(&mut line)?;
                Some(line.trim_end_matches(['\r', '\n']).to_string())
            } else {
                None
            };
            let new = users::NewUser {
                username,
                display_name: name,
                role,
                organization,
                practitioner,
                patients,
                related_person,
                password,
            };
            let (account, one_time) = users::add_user(repo, new).await?;
            println!("created {} ({})", account.username, account.role);
            if let Some(p) = one_time {
                println!("one-time password (change it at the first sign-in): {p}");
            }
            if account.role().map(|r| r.needs_mfa()).unwrap_or(false) {
                println!("this role signs in with a second factor: hale user enroll-mfa {}", account.username);
            }
        }
        UserCommand::List => {
            println!("{:<24} {:<15} {:<24} {:<4} STATE", "USERNAME", "ROLE", "LINKED TO", "MFA");
            for a in repo.accounts().await? {
                let linked =
                    a.fhir_user.clone().or_else(|| a.organization.clone().map(|o| format!("Organization/{o}")));
                println!(
                    "{:<24} {:<15} {:<24} {:<4} {}",
                    a.username,
                    a.role,
                    linked.unwrap_or_else(|| "-".into()),
                    if a.totp_confirmed { "yes" } else { "no" },
                    if a.disabled { "disabled" } else { "active" }
                );
            }
        }
        UserCommand::Disable { username } => {
            let a = users::set_disabled(repo, &username, true).await?;
            println!("disabled {}", a.username);
        }
        UserCommand::Enable { username } => {
            let a = users::set_disabled(repo, &username, false).await?;
            println!("enabled {}", a.username);
        }
        UserCommand::ResetPassword { username } => {
            let p = users::reset_password(repo, &username).await?;
            println!("one-time password (change it at the next sign-in): {p}");
        }
        UserCommand::EnrollMfa { username, code } => match users::enroll_mfa(repo, &username, code.as_deref()).await? {
            users::Enrolment::Started(uri) => {
                println!("add this to the authenticator app, then confirm with --code:");
                println!("{uri}");
            }
            users::Enrolment::Confirmed => println!("the second factor is in force for {username}"),
        },
    }
    Ok(())
}

fn report_load(summary: &hale_server::bulk::ImportSummary, verb: &str) -> anyhow::Result<()> {
    for e in &summary.errors {
        eprintln!("{e}");
    }
    let from = if summary.files > 0 { format!(" from {} files", summary.files) } else { String::new() };
    println!(
        "{verb} {} resources{from} in {:.1} s ({:.0} resources/s), {} errors",
        summary.resources,
        summary.seconds,
        summary.resources as f64 / summary.seconds.max(1e-9),
        summary.errors.len()
    );
    if summary.errors.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("{} problems while loading (listed above)", summary.errors.len())
    }
}

/// The demo's accounts, on the terminal only (never in the logs).
fn print_demo_accounts(accounts: &[hale_server::demo::DemoAccount]) {
    println!("Demo accounts (synthetic data only; the passwords are shown this once):");
    for a in accounts {
        println!("  {:<14} {:<13} password {}", a.role, a.username, a.password);
        if let (Some(secret), Some(code)) = (&a.totp_secret, a.current_code()) {
            println!("  {:<14} {:<13} authenticator secret {secret} (code now: {code})", "", "");
        }
    }
    println!("Staff sign in with an authenticator code: add the secret to an authenticator app, or run");
    println!("  oathtool --totp -b SECRET   (Debian package oathtool) for a current code.");
    println!("The administrator chooses a new password at the first sign-in. Lost one? hale user reset-password NAME");
    println!("The clinician application is at /app on the address below.");
}

async fn serve(cfg: &Config) -> anyhow::Result<()> {
    {
        let server = hale_server::Server::bind(cfg).await?;
        let addr = server.local_addr();
        if let Some((user, password)) = server.first_admin() {
            // shown once, on the terminal, never in the logs
            println!("First start: created the administrator '{user}' with the one-time password {password}");
            println!("Change it at the first sign-in. Tokens for scripts: hale token --help");
        }
        tracing::info!(%addr, store = %cfg.store_description(), time_zone = %cfg.time_zone, "Hale is serving");
        // one line on stdout that scripts and tests can wait for
        if let Some(m) = server.mllp_addr() {
            println!("Hale MLLP listening on {m}");
        }
        let scheme = if cfg.tls_cert.is_empty() { "http" } else { "https" };
        println!("Hale listening on {scheme}://{addr}");
        server.serve(hale_server::shutdown_signal()).await?;
        Ok(())
    }
}
