//! The `gateway` command line: `serve`, `certs init`, `push`, `pull`, `keys`, `config`,
//! `backup`, `restore` and
//! the others below. This is the binary's edge, where errors become messages
//! and exit codes (`anyhow`).

use crate::client::{self, ClientTls, PushOptions};
use crate::config::{Config, DEV_CERTS_DIR};
use crate::pki::{self, IdentityName};
use crate::{Gateway, proto, tls};
use adapters::{Agency, Format};
use anyhow::{Context as _, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "gateway",
    version,
    about = "The agency <-> union exchange gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (dev mode by default: creates dev certificates, keys and the data directory).
    Serve(ServeArgs),
    /// Manage the dev PKI.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Push an agency export file as the agency named by the client certificate.
    Push(PushArgs),
    /// Pull policy-shaped records as a union consumer, as JSON Lines.
    Pull(PullArgs),
    /// Look up one applicant across all agencies for a case, as a union consumer.
    Lookup(LookupArgs),
    /// Write deterministic synthetic exports of all six agencies (demos, benchmarks).
    Simulate(crate::cli_simulate::SimulateArgs),
    /// Check and preview policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Compliance officers: query, report on a person, export and verify the audit log.
    Audit {
        #[command(subcommand)]
        command: crate::cli_audit::AuditCommand,
    },
    /// Operators: check a production configuration (`config check`).
    Config {
        #[command(subcommand)]
        command: crate::cli_config::ConfigCommand,
    },
    /// Operators: a consistent copy of the embedded store, taken while the gateway serves.
    Backup(crate::cli_store::BackupArgs),
    /// Operators: make a backup the store of a data directory (the gateway stopped).
    Restore(crate::cli_store::RestoreArgs),
    /// Operators: bring the store in line with a rotated key (the gateway must be stopped).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Re-index every stored record under the active index key (resumable;
    /// `serve` does the same at start-up before it serves).
    Reindex(StoreArgs),
    /// Bind one consumer's pseudonyms to the active pseudonym key: ALL of its
    /// pseudonyms change and the re-identification tokens it holds stop
    /// opening. Audited; takes effect at the next start. The auditors' domain
    /// is never re-pseudonymised.
    Repseudonymise {
        /// The consumer (its policy's `consumer`).
        #[arg(long)]
        consumer: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The store and key file a `keys`, `backup`, `restore` or `audit
/// verify-store` command works on, as `serve` finds them.
#[derive(Args)]
pub(crate) struct StoreArgs {
    /// Configuration file (TOML), as given to `serve`.
    #[arg(long, env = "GATEWAY_CONFIG")]
    pub(crate) config: Option<PathBuf>,
    /// Data directory of the embedded store (overrides the configuration).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
}

impl StoreArgs {
    /// The configuration, with the data directory given on the command line.
    pub(crate) fn config(&self) -> anyhow::Result<Config> {
        let mut config = Config::load(self.config.as_deref())?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        Ok(config)
    }
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Lint a policy directory: exits non-zero with `file:line: message` for each problem.
    Check {
        #[arg(default_value = "policies/shipped")]
        dir: PathBuf,
    },
    /// Show, field by field, what a consumer would receive for the rows of an
    /// agency export, without storing anything.
    Preview(PreviewArgs),
}

#[derive(Args)]
struct PreviewArgs {
    #[arg(long)]
    consumer: String,
    #[arg(long)]
    purpose: String,
    /// An agency export file (its rows go through that agency's adapter).
    #[arg(long)]
    input: PathBuf,
    /// The agency whose adapter reads the file (default: the file name's stem, e.g. hrss.csv → hrss).
    #[arg(long)]
    agency: Option<String>,
    #[arg(long, env = "GATEWAY_POLICIES_DIR", default_value = "policies/shipped")]
    policies_dir: PathBuf,
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    rows: usize,
}

#[derive(Args)]
struct ServeArgs {
    /// Configuration file (TOML); it must state `dev_mode`. Without one,
    /// documented defaults apply: dev mode, on 127.0.0.1:7443.
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the configuration). Dev mode listens
    /// only on a loopback address.
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// Data directory of the embedded store (overrides the configuration).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

#[derive(Subcommand)]
enum CertsCommand {
    /// Create a dev CA, a server certificate (localhost, 127.0.0.1) and client
    /// certificates for the six agencies, every consumer of the shipped policies and
    /// one auditor.
    Init(CertsInitArgs),
}

#[derive(Args)]
struct CertsInitArgs {
    #[arg(long, default_value = DEV_CERTS_DIR)]
    dir: PathBuf,
    #[arg(
        long,
        env = "GATEWAY_TRUST_DOMAIN",
        default_value = "exchange.wuhu.example"
    )]
    trust_domain: String,
    /// Policies whose consumers get a certificate.
    #[arg(long, env = "GATEWAY_POLICIES_DIR", default_value = "policies/shipped")]
    policies_dir: PathBuf,
    /// Replace an existing dev PKI.
    #[arg(long)]
    force: bool,
}

#[derive(Args, Clone)]
pub(crate) struct ClientArgs {
    /// Gateway address.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:7443")]
    pub(crate) addr: String,
    /// A dev identity from the dev certificate directory, e.g. agency/hrss or union/assistance.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    identity: Option<String>,
    /// Client certificate (PEM); with --key and --ca instead of --identity.
    #[arg(long, requires = "key")]
    cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    key: Option<PathBuf>,
    /// CA certificate the server's certificate must chain to.
    #[arg(long)]
    ca: Option<PathBuf>,
    /// Where dev identities are looked up.
    #[arg(long, env = "GATEWAY_CERTS_DIR", default_value = DEV_CERTS_DIR)]
    certs_dir: PathBuf,
    /// Name on the server's certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
}

impl ClientArgs {
    pub(crate) fn tls(&self, default_identity: &str) -> anyhow::Result<ClientTls> {
        let mut tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => ClientTls {
                ca: self.certs_dir.join("ca.pem"),
                identity: Some((cert.clone(), key.clone())),
                server_name: String::new(),
            },
            _ => ClientTls::dev(
                &self.certs_dir,
                self.identity.as_deref().unwrap_or(default_identity),
            )?,
        };
        if let Some(ca) = &self.ca {
            tls.ca = ca.clone();
        }
        tls.server_name = self.server_name.clone();
        Ok(tls)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum FormatArg {
    JsonLines,
    CsvGbk,
    CsvUtf8Bom,
}

#[derive(Args)]
struct PushArgs {
    /// The export file, exactly as the agency's system wrote it.
    #[arg(long)]
    file: PathBuf,
    /// Native format; guessed from the file name and byte-order mark by default.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Rows per batch.
    #[arg(long, default_value_t = 2000)]
    batch_rows: usize,
    /// Batch id prefix (default: derived from the file's content, so a re-push is idempotent).
    #[arg(long)]
    batch_prefix: Option<String>,
    /// CSV report of the rejected rows (row, field, code, message); default `<file>.rejections.csv`.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct LookupArgs {
    /// The applicant's identity number, as typed from the application form.
    #[arg(long)]
    id_number: String,
    /// The case this look-up is for (recorded in the audit log), of the gateway's
    /// configured form: by default ASCII letters, digits, `-`, `/`, `.`, 1–64 of them.
    #[arg(long)]
    case: String,
    #[arg(long)]
    purpose: String,
    /// Print JSON instead of the readable summary.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
struct PullArgs {
    /// Record kind(s) to pull, e.g. social_insurance (repeatable; default: all the policy releases).
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// The purpose of this pull; must be in the consumer's policy.
    #[arg(long)]
    purpose: String,
    /// Write here instead of standard output (appended to when resuming from --cursor-file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// jsonl or csv (default: csv for a .csv --out, else jsonl). CSV takes one --kind.
    #[arg(long, value_enum)]
    format: Option<crate::cli_pull::OutputFormat>,
    /// Resume from the cursor saved in this file, and keep it up to date.
    #[arg(long)]
    cursor_file: Option<PathBuf>,
    /// Start after this cursor (0 = from the beginning).
    #[arg(long, default_value_t = 0)]
    cursor: u64,
    /// Stop after this many events (0 = no limit).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Keep following new changes.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

/// Entry point of the `gateway` binary.
pub fn main() {
    tls::install_crypto_provider();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(cli)) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => serve(args).await,
        Command::Certs {
            command: CertsCommand::Init(args),
        } => certs_init(args),
        Command::Push(args) => push(args).await,
        Command::Pull(args) => pull(args).await,
        Command::Simulate(args) => crate::cli_simulate::run(args),
        Command::Lookup(args) => {
            let tls = args.client.tls("union/assistance")?;
            let channel = client::connect(&args.client.addr, &tls).await?;
            let answer =
                crate::cli_lookup::lookup(channel, &args.id_number, &args.case, &args.purpose)
                    .await?;
            if args.json {
                writeln!(
                    std::io::stdout().lock(),
                    "{}",
                    serde_json::to_string_pretty(&crate::cli_lookup::json(&answer))?
                )?;
            } else {
                write!(
                    std::io::stdout().lock(),
                    "{}",
                    crate::cli_lookup::summary(&answer, &args.case, &args.purpose)
                )?;
            }
            Ok(())
        }
        Command::Audit { command } => crate::cli_audit::run(command).await,
        Command::Keys { command } => keys_command(command),
        Command::Backup(args) => crate::cli_store::backup(args),
        Command::Restore(args) => crate::cli_store::restore(args),
        Command::Config { command } => crate::cli_config::run(command),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => policy_check(&dir),
        Command::Policy {
            command: PolicyCommand::Preview(args),
        } => policy_preview(args),
    }
}

/// Identities `certs init` issues: the six agencies, each policy's consumer, one auditor.
fn dev_identities(policies_dir: &Path) -> Vec<IdentityName> {
    let mut ids: Vec<IdentityName> = Agency::ALL
        .iter()
        .map(|a| IdentityName {
            role: "agency".into(),
            name: a.id().into(),
        })
        .collect();
    match policies::PolicySet::load_dir(policies_dir) {
        Ok(set) => ids.extend(set.consumers().map(|c| IdentityName {
            role: "union".into(),
            name: c.into(),
        })),
        Err(e) => eprintln!("warning: no consumer certificates: {e}"),
    }
    ids.push(IdentityName {
        role: "auditor".into(),
        name: "compliance".into(),
    });
    ids
}

fn certs_init(args: CertsInitArgs) -> anyhow::Result<()> {
    if args.dir.join("ca.pem").exists() && !args.force {
        bail!(
            "{} already holds a dev PKI; pass --force to replace it",
            args.dir.display()
        );
    }
    let ids = dev_identities(&args.policies_dir);
    let pki = pki::init_dev_pki(&args.dir, &args.trust_domain, &ids)?;
    writeln!(
        std::io::stdout().lock(),
        "dev PKI written to {}:",
        pki.dir.display()
    )?;
    writeln!(
        std::io::stdout().lock(),
        "  ca.pem, server.pem/.key (localhost, 127.0.0.1, ::1), crl.pem"
    )?;
    for id in &pki.identities {
        writeln!(
            std::io::stdout().lock(),
            "  {}.pem/.key  {}",
            id.stem(),
            id.uri(&args.trust_domain)
        )?;
    }
    Ok(())
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    config.check_dev_mode()?;
    let _telemetry = crate::telemetry::init(&config.telemetry)?;
    config.telemetry.check(config.dev_mode)?;
    if config.dev_mode {
        tracing::warn!("==================================================================");
        tracing::warn!("DEV MODE: dev certificates and generated keys; NOT FOR PRODUCTION.");
        tracing::warn!("Set dev_mode = false in the configuration file for real data.");
        tracing::warn!("==================================================================");
        if !config.tls.ca.exists() {
            let dir = config.tls.ca.parent().unwrap_or(Path::new(DEV_CERTS_DIR));
            let ids = dev_identities(&config.policies_dir);
            pki::init_dev_pki(dir, &config.trust_domain, &ids)?;
            tracing::warn!(dir = %dir.display(), "DEV MODE: created a dev PKI");
        }
    }
    config.check_revocation()?;
    if config.tls.revocation == crate::config::Revocation::None {
        tracing::warn!(
            "REVOCATION NOT CHECKED ([tls] revocation = \"none\"): a revoked client certificate keeps its access until it expires"
        );
    } else if config.tls.crls.is_empty() {
        tracing::warn!(
            "DEV MODE: no CRL in [tls] crls; revocation not checked (the dev PKI's crl.pem can be listed)"
        );
    }
    let _lock = lock_data_dir(&config.data_dir)?;
    let gateway = Arc::new(Gateway::open(&config)?);
    let server_tls = tls::ServerTls::load(config.tls.files())?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    tracing::info!(
        listen = %listener.local_addr()?,
        data_dir = %config.data_dir.display(),
        trust_domain = %config.trust_domain,
        consumers = ?gateway.policies().consumers().collect::<Vec<_>>(),
        "gateway serving (mutual TLS 1.3)"
    );
    #[cfg(unix)]
    {
        // SIGHUP reloads the policies and the TLS material (certificate, key,
        // CA, CRLs) without dropping connections (but those whose certificate
        // the new CRLs revoke). Each part that fails keeps its previous state.
        let gateway = gateway.clone();
        let server_tls = server_tls.clone();
        let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let (gw, tls) = (gateway.clone(), server_tls.clone());
                let _ = tokio::task::spawn_blocking(move || {
                    let _ = gw.reload_policies();
                    let _ = crate::reload_tls(&gw, &tls);
                })
                .await;
            }
        });
    }
    let metrics = gateway.metrics.clone();
    let scrape = crate::metrics::start_scrape(config.telemetry.metrics_listen, metrics.clone())
        .await
        .with_context(|| "cannot serve [telemetry] metrics_listen")?;
    crate::serve(
        listener,
        gateway,
        server_tls,
        std::time::Duration::from_secs(config.tls.handshake_timeout_secs),
        shutdown_signal(),
    )
    .await?;
    if let Some(scrape) = scrape {
        scrape.abort();
    }
    // The last export over OTLP.
    let _ = tokio::task::spawn_blocking(move || metrics.shutdown()).await;
    Ok(())
}

/// Holds `<data_dir>/gateway.lock` for as long as the returned file lives,
/// so that a `keys` command never rewrites the store under a serving
/// gateway (nor two gateways share one store).
pub(crate) fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    let path = data_dir.join("gateway.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{} is in use by a running gateway (or another `gateway keys` command); stop it first",
            data_dir.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// `gateway keys …`: opens the store and key file `serve` would, with the
/// gateway stopped, and calls [`crate::rotation`].
fn keys_command(command: KeysCommand) -> anyhow::Result<()> {
    let args = match &command {
        KeysCommand::Reindex(args) | KeysCommand::Repseudonymise { store: args, .. } => args,
    };
    let config = args.config()?;
    let _telemetry = crate::telemetry::init(&config.telemetry)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let keys = crate::keys::Keys::load(&config.keys_file, false)?;
    let store = crate::store::sqlite::SqliteStore::open(&config.data_dir)?;
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Reindex(_) => match crate::rotation::reindex(&store, &keys)? {
            Some(done) => writeln!(
                out,
                "re-indexed {} records from index key {} to {} ({} merged with a newer version)",
                done.records, done.old_key_id, done.new_key_id, done.merged
            )?,
            None => writeln!(
                out,
                "every record is indexed under the active index key {} already",
                keys.active_index_id()
            )?,
        },
        KeysCommand::Repseudonymise { consumer, .. } => {
            let policies =
                policies::PolicySet::load_dir(&config.policies_dir).with_context(|| {
                    format!("loading policies from {}", config.policies_dir.display())
                })?;
            match crate::rotation::repseudonymise(&store, &keys, &policies, &consumer)? {
                Some((old, new)) => writeln!(
                    out,
                    "consumer {consumer}: pseudonym key {old} -> {new} from the next start; \
                     all its pseudonyms change and its re-identification tokens no longer open"
                )?,
                None => writeln!(
                    out,
                    "consumer {consumer} uses the active pseudonym key {} already",
                    keys.active_pseudonym_id()
                )?,
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
    tracing::info!("shutting down: draining connections");
}

async fn push(args: PushArgs) -> anyhow::Result<()> {
    let tls = args.client.tls("agency/hrss")?;
    let channel = client::connect(&args.client.addr, &tls).await?;
    let bytes_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let opts = PushOptions {
        batch_rows: args.batch_rows,
        batch_prefix: args.batch_prefix,
        format: args.format.map(|f| match f {
            FormatArg::JsonLines => Format::JsonLines,
            FormatArg::CsvGbk => Format::CsvGbk,
            FormatArg::CsvUtf8Bom => Format::CsvUtf8Bom,
        }),
        bytes_read: Some(bytes_read.clone()),
    };
    let total = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    // Progress in bytes of the file read (drawn on standard error, only on a terminal).
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = {
        let (bar, bytes_read) = (bar.clone(), bytes_read.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tick.tick().await;
                bar.set_position(bytes_read.load(std::sync::atomic::Ordering::Relaxed));
            }
        })
    };
    let (mut acknowledged, mut accepted) = (0u64, 0u64);
    let started = std::time::Instant::now();
    let result = client::push_file(channel, &args.file, &opts, |r| {
        acknowledged += r.rows_received;
        accepted += r.accepted;
        bar.set_message(format!("{acknowledged} rows, {accepted} accepted"));
    })
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let summary = result?;
    // The report first: it is the complete record, the lines below are a digest.
    let report = args.report.unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".rejections.csv");
        PathBuf::from(name)
    });
    client::write_rejection_report(&report, &summary.rejections)?;
    let rejected = summary.rows - summary.accepted;
    writeln!(
        std::io::stdout().lock(),
        "{}: {} rows in {} batches in {:.1} s: {} accepted ({} superseded by newer versions), {} rejected{}",
        args.file.display(),
        summary.rows,
        summary.batches,
        started.elapsed().as_secs_f64(),
        summary.accepted,
        summary.superseded,
        rejected,
        if summary.duplicates > 0 {
            format!(", {} batches already pushed before", summary.duplicates)
        } else {
            String::new()
        }
    )?;
    // Rejected rows by code (a row may break several rules: counted once per code).
    let mut by_code = std::collections::BTreeMap::<&str, std::collections::BTreeSet<u64>>::new();
    for r in &summary.rejections {
        by_code.entry(r.code.as_str()).or_default().insert(r.row);
    }
    for (code, rows) in &by_code {
        writeln!(std::io::stdout().lock(), "  {code}: {} rows", rows.len())?;
    }
    if summary.unlisted_rejections > 0 {
        writeln!(
            std::io::stdout().lock(),
            "  {} more rejections not listed (a receipt lists the first of its batch)",
            summary.unlisted_rejections
        )?;
    }
    for (id, code, message) in &summary.rejected_batches {
        writeln!(
            std::io::stdout().lock(),
            "  batch {id} rejected: {code}: {message}"
        )?;
    }
    const SHOWN: usize = 20;
    for r in summary.rejections.iter().take(SHOWN) {
        writeln!(
            std::io::stdout().lock(),
            "  row {}: {} {}: {}",
            r.row,
            r.field,
            r.code,
            r.message
        )?;
    }
    if summary.rejections.len() > SHOWN {
        writeln!(
            std::io::stdout().lock(),
            "  … and {} more",
            summary.rejections.len() - SHOWN
        )?;
    }
    writeln!(
        std::io::stdout().lock(),
        "report of the rejected rows: {}",
        report.display()
    )?;
    if !summary.rejected_batches.is_empty() {
        bail!("{} batches were rejected", summary.rejected_batches.len());
    }
    Ok(())
}

async fn pull(args: PullArgs) -> anyhow::Result<()> {
    let tls = args.client.tls("union/assistance")?;
    let channel = client::connect(&args.client.addr, &tls).await?;
    crate::cli_pull::run(
        channel,
        crate::cli_pull::PullJob {
            request: proto::PullRequest {
                kinds: args.kinds,
                purpose: args.purpose,
                cursor: args.cursor,
                limit: args.limit,
                follow: args.follow,
            },
            out: args.out,
            format: args.format,
            cursor_file: args.cursor_file,
        },
    )
    .await
}

fn policy_check(dir: &Path) -> anyhow::Result<()> {
    match policies::PolicySet::load_dir(dir) {
        Ok(set) => {
            for p in set.policies.values() {
                writeln!(
                    std::io::stdout().lock(),
                    "{}: ok: consumer {}, purposes {}, kinds {}, {}",
                    p.source.display(),
                    p.consumer,
                    p.purposes
                        .iter()
                        .map(|purpose| format!(
                            "{purpose} ({})",
                            p.grants[purpose]
                                .iter()
                                .map(|o| o.id())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.kinds
                        .keys()
                        .map(|k| k.id())
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.version
                )?;
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            bail!("policy check failed")
        }
    }
}

fn policy_preview(args: PreviewArgs) -> anyhow::Result<()> {
    let set = policies::PolicySet::load_dir(&args.policies_dir)?;
    let policy = set
        .get(&args.consumer)
        .with_context(|| format!("no policy for consumer {}", args.consumer))?;
    if !policy.allows_purpose(&args.purpose) {
        bail!(
            "purpose `{}` is not in the policy of {} (allowed: {})",
            args.purpose,
            args.consumer,
            policy.purposes.join(", ")
        );
    }
    let agency_id = match &args.agency {
        Some(a) => a.clone(),
        None => args
            .input
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string(),
    };
    let agency = Agency::from_id(&agency_id)
        .with_context(|| format!("unknown agency `{agency_id}`; pass --agency"))?;
    let adapter = adapters::adapter_for(agency)
        .with_context(|| format!("no adapter for agency {agency} yet"))?;
    let format = adapter.format();
    let mut rows = client::RowReader::new(std::fs::File::open(&args.input)?, format.is_csv());
    let header = if format.is_csv() {
        rows.next_row()?
    } else {
        None
    };
    let parser = adapter.open_batch(format, header.as_deref())?;
    // Preview keys are random: tokens look like real ones but match nothing stored.
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let keys = policies::ConsumerKeys::derive(&secret, &policy.consumer);
    writeln!(
        std::io::stdout().lock(),
        "policy {} ({}), purpose {}, {} rows of {} (preview keys: tokens differ from production)",
        policy.consumer,
        policy.version,
        args.purpose,
        args.rows,
        args.input.display()
    )?;
    let mut n = 0;
    while let Some(row) = rows.next_row()? {
        n += 1;
        if n > args.rows {
            break;
        }
        writeln!(std::io::stdout().lock(), "\n── row {n}")?;
        let record = match parser.parse_row(&row) {
            Ok(r) => r,
            Err(errors) => {
                for e in errors {
                    writeln!(
                        std::io::stdout().lock(),
                        "   rejected: {} {}: {}",
                        e.field,
                        e.code,
                        e.message
                    )?;
                }
                continue;
            }
        };
        if !policy.releases_kind(record.kind) {
            writeln!(
                std::io::stdout().lock(),
                "   kind {} is not released to {}",
                record.kind,
                policy.consumer
            )?;
            continue;
        }
        if !policy.admits(&record) {
            writeln!(
                std::io::stdout().lock(),
                "   filtered out by the policy's row filter"
            )?;
            continue;
        }
        let shaped = policy.shape(&record, &keys);
        for spec in record.kind.schema() {
            let before = record
                .fields
                .get(spec.name)
                .map(|v| v.render())
                .unwrap_or_default();
            match shaped.iter().find(|f| f.name == spec.name) {
                Some(f) => writeln!(
                    std::io::stdout().lock(),
                    "   {:<24} {:<28} → {} ({})",
                    spec.name,
                    before,
                    f.value,
                    f.form.as_str()
                )?,
                None => writeln!(
                    std::io::stdout().lock(),
                    "   {:<24} {:<28} → (not delivered)",
                    spec.name,
                    before
                )?,
            }
        }
    }
    Ok(())
}
