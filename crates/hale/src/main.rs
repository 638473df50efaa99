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
        /// patient) or `ndjson` (Type.ndjson, as bulk export writes).
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
    /// The audit trail: `hale audit verify` checks the hash chain and the signed
    /// checkpoints and names the first bad entry.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
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
enum AuditCommand {
    /// Link pending entries, then verify every entry of the chain against its hash and
    /// the signed checkpoints in the data directory; exit 1 at the first problem.
    Verify(ServeArgs),
}

/// Links the audit entries a command wrote into the hash chain and signs a checkpoint.
async fn chain_audit(repo: &hale_server::SystemRepository, cfg: &Config) -> anyhow::Result<()> {
    repo.chain_audit(&hale_server::Checkpoints::new(&cfg.data_dir)).await?;
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
}

#[derive(Args, Clone, Default)]
struct ServeArgs {
    /// Address to listen on, e.g. 127.0.0.1:8080 (port 0 picks a free port).
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Directory for the embedded database and other state.
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Database URL (sqlite:PATH or postgres://user@host:port/db); default: hale.db in
    /// the data directory.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
}

impl ServeArgs {
    fn overrides(&self) -> Overrides {
        Overrides { listen: self.listen.clone(), data_dir: self.data_dir.clone(), database_url: self.database.clone() }
    }
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
                drop(repo);
                serve(&cfg).await
            })
        }
        Command::Audit { command: AuditCommand::Verify(args) } => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let started = std::time::Instant::now();
            let v = rt.block_on(async {
                let repo = hale_server::system_repository(&cfg, "audit-verify").await?;
                let checkpoints = hale_server::Checkpoints::new(&cfg.data_dir);
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
        Command::Serve(args) => {
            let cfg = Config::load(cli.config.as_deref(), &args.overrides())?;
            init_logging(&cfg);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            rt.block_on(serve(&cfg))
        }
    }
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

async fn serve(cfg: &Config) -> anyhow::Result<()> {
    {
        let server = hale_server::Server::bind(cfg).await?;
        let addr = server.local_addr();
        tracing::info!(%addr, store = %cfg.store_description(), "Hale is serving");
        // one line on stdout that scripts and tests can wait for
        println!("Hale listening on http://{addr}");
        server.serve(hale_server::shutdown_signal()).await?;
        Ok(())
    }
}
