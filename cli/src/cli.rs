//! The `gateway` command line: its parser and the dispatch to one module per
//! command (`crate::cmd`), plus the client flags the calling commands share.
//! This is the binary's edge, where errors become messages and exit codes
//! (`anyhow`).

use crate::cmd::{self, certs::CertsCommand, keys::KeysCommand, policy::PolicyCommand};
use clap::{Args, Parser, Subcommand};
use gateway::client::ClientTls;
use gateway::config::DEV_CERTS_DIR;
use std::path::PathBuf;

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
    Serve(cmd::serve::ServeArgs),
    /// Manage the dev PKI.
    Certs {
        #[command(subcommand)]
        command: CertsCommand,
    },
    /// Push an agency export file as the agency named by the client certificate.
    Push(cmd::push::PushArgs),
    /// Pull policy-shaped records as a union consumer, as JSON Lines or CSV.
    Pull(cmd::pull::PullArgs),
    /// Look up one applicant across all agencies for a case, as a union consumer.
    Lookup(cmd::lookup::LookupArgs),
    /// Write deterministic synthetic exports of all six agencies (demos, benchmarks).
    Simulate(cmd::simulate::SimulateArgs),
    /// Check and preview policy files.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Compliance officers: query, report on a person, export and verify the audit log.
    Audit {
        #[command(subcommand)]
        command: cmd::audit::AuditCommand,
    },
    /// Operators: check a production configuration (`config check`).
    Config {
        #[command(subcommand)]
        command: cmd::config::ConfigCommand,
    },
    /// Operators: a consistent copy of the embedded store, taken while the gateway serves.
    Backup(cmd::store::BackupArgs),
    /// Operators: make a backup the store of a data directory (the gateway stopped).
    Restore(cmd::store::RestoreArgs),
    /// Operators: move the store to another backend (`store copy`).
    Store {
        #[command(subcommand)]
        command: cmd::store::StoreCommand,
    },
    /// Operators: bring the store in line with a rotated key (the gateway must be stopped).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Compliance officers: the web console over the audit log, on loopback, as one auditor.
    Console(compliance_console::ConsoleArgs),
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

/// Entry point of the `gateway` binary.
pub fn main() {
    gateway::tls::install_crypto_provider();
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
        Command::Serve(args) => cmd::serve::run(args).await,
        Command::Certs {
            command: CertsCommand::Init(args),
        } => cmd::certs::init(args),
        Command::Push(args) => cmd::push::run(args).await,
        Command::Pull(args) => cmd::pull::run(args).await,
        Command::Simulate(args) => cmd::simulate::run(args),
        Command::Lookup(args) => cmd::lookup::run(args).await,
        Command::Audit { command } => cmd::audit::run(command).await,
        Command::Keys { command } => cmd::keys::run(command),
        Command::Backup(args) => cmd::store::backup(args),
        Command::Restore(args) => cmd::store::restore(args),
        Command::Store { command } => cmd::store::run(command),
        Command::Config { command } => cmd::config::run(command),
        Command::Policy {
            command: PolicyCommand::Check { dir },
        } => cmd::policy::check(&dir),
        Command::Policy {
            command: PolicyCommand::Preview(args),
        } => cmd::policy::preview(args),
        Command::Console(args) => cmd::console::run(args).await,
    }
}
