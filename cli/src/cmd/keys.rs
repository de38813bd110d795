//! `gateway keys …`: bringing the store in line with a rotated key file,
//! with the gateway stopped (the data directory's lock says so).

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use gateway::config::Config;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum KeysCommand {
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
pub struct StoreArgs {
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
/// gateway stopped, and calls [`gateway::rotation`].
pub fn run(command: KeysCommand) -> anyhow::Result<()> {
    let args = match &command {
        KeysCommand::Reindex(args) | KeysCommand::Repseudonymise { store: args, .. } => args,
    };
    let config = args.config()?;
    let _telemetry = gateway::telemetry::init(&config.telemetry)?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let keys = gateway::keys::Keys::load(&config.keys_file, false)?;
    let store = gateway::store::open(&config.store, &config.data_dir)?;
    // Replicas on other machines share only the database.
    store
        .claim_maintenance()
        .context("the store is not free for maintenance")?;
    let mut out = std::io::stdout().lock();
    match command {
        KeysCommand::Reindex(_) => match gateway::rotation::reindex(&*store, &keys)? {
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
            match gateway::rotation::repseudonymise(&*store, &keys, &policies, &consumer)? {
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
