//! `gateway backup` and `gateway restore`: the operators' copies of the
//! embedded store (see `store::sqlite::backup` for what a backup holds and
//! why the key file is not in it); `gateway store copy`: moving a
//! deployment from the embedded store to PostgreSQL (`store::dump`). This is
//! the binary's edge (`anyhow`).

use crate::cmd::keys::{StoreArgs, lock_data_dir};
use anyhow::Context as _;
use anyhow::bail;
use clap::{Args, Subcommand};
use gateway::audit::report::format_ms;
use gateway::store::sqlite::backup::{self, BackupSummary};
use std::io::Write as _;
use std::path::PathBuf;

#[derive(Args)]
pub struct BackupArgs {
    /// Where to write the backup: a new file (never overwritten).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Args)]
pub struct RestoreArgs {
    /// A file written by `gateway backup`.
    #[arg(long)]
    from: PathBuf,
    /// Replace the store the data directory holds (refused otherwise).
    #[arg(long)]
    replace: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Copy a stopped gateway's embedded store (records with their earlier
    /// versions, batch receipts, re-identification windows, key ids and
    /// pseudonym bindings, the whole audit log and its checkpoints) into a new,
    /// empty PostgreSQL database, in one transaction, and check that the
    /// copied audit tree has the root of every stored checkpoint.
    Copy(CopyArgs),
}

#[derive(Args)]
pub struct CopyArgs {
    /// The data directory of the embedded store (its gateway stopped).
    #[arg(long)]
    from: PathBuf,
    /// The destination database: `postgres://…`, as `[store] url` will name it.
    #[arg(long)]
    to: String,
    /// PEM roots that sign the database server's certificate (as `[store]
    /// ca_file`), when the url asks for TLS.
    #[arg(long)]
    ca_file: Option<PathBuf>,
}

pub fn run(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Copy(a) => copy(a),
    }
}

/// Copies the embedded store of `--from` into the database `--to`. The data
/// directory's lock is held throughout, so the source cannot change under
/// the copy (and no gateway starts on it meanwhile).
fn copy(a: CopyArgs) -> anyhow::Result<()> {
    use gateway::store::{postgres::PgStore, sqlite};
    let _lock = lock_data_dir(&a.from)?;
    match sqlite::stored_schema_version(&a.from)
        .with_context(|| format!("reading the store in {}", a.from.display()))?
    {
        None => bail!("{} holds no gateway store", a.from.display()),
        Some(v) if v != sqlite::SCHEMA_VERSION => bail!(
            "the store in {} has schema version {v}, this gateway {}: start this release's \
             gateway on it once (it migrates the store), stop it, then copy",
            a.from.display(),
            sqlite::SCHEMA_VERSION
        ),
        Some(_) => {}
    }
    let source = sqlite::SqliteStore::open(&a.from)
        .with_context(|| format!("opening the store in {}", a.from.display()))?;
    let destination = PgStore::open(&a.to, a.ca_file.as_deref())
        .context("connecting to the destination database")?;
    let summary = destination
        .import(|sink| source.export(sink))
        .context("copying the store")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "copied {} records ({} earlier versions), {} batch receipts, {} re-identifications, \
         {} meta entries, {} audit entries ({} notes), {} checkpoints",
        summary.records,
        summary.record_versions,
        summary.batches,
        summary.reidentifications,
        summary.meta,
        summary.audit_entries,
        summary.notes,
        summary.checkpoints,
    )?;
    writeln!(
        out,
        "The copied audit tree has {} leaves and the root of each of the {} stored \
         checkpoints.\nSet [store] url (or GATEWAY_STORE_URL) to the database and start the \
         gateway with the same key file and data directory ({} keeps the log's public key).",
        summary.audit_size,
        summary.checkpoints,
        a.from.join("audit-log.vkey").display()
    )?;
    Ok(())
}

fn describe(s: &BackupSummary) -> String {
    format!(
        "schema version {}, {} records, {} audit entries, latest signed checkpoint {}",
        s.schema_version,
        s.records,
        s.audit_entries,
        s.latest_checkpoint
            .map_or("none".to_string(), |size| format!("of size {size}"))
    )
}

/// Copies the store of a running (or stopped) gateway; takes no lock, so
/// the gateway goes on serving.
pub fn backup(a: BackupArgs) -> anyhow::Result<()> {
    let config = a.store.config()?;
    let vkey_path = config.data_dir.join("audit-log.vkey");
    let vkey = match std::fs::read_to_string(&vkey_path) {
        Ok(v) => Some(v),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "warning: no {}: the backup will not carry the log's public key",
                vkey_path.display()
            );
            None
        }
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", vkey_path.display())),
    };
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64);
    let summary = backup::backup(&config.data_dir, &a.out, vkey.as_deref(), now_ms)
        .with_context(|| format!("backing up {}", config.data_dir.display()))?;
    writeln!(
        std::io::stdout().lock(),
        "{}: {}\nThe key file ({}) is not in the backup: keep a copy of it apart, as securely \
         as the key file itself; without it the records cannot be read.",
        a.out.display(),
        describe(&summary),
        config.keys_file.display()
    )?;
    Ok(())
}

/// Restores a backup into a data directory no gateway is using.
pub fn restore(a: RestoreArgs) -> anyhow::Result<()> {
    let config = a.store.config()?;
    let _lock = lock_data_dir(&config.data_dir)?;
    let summary = backup::restore(&a.from, &config.data_dir, a.replace).with_context(|| {
        format!(
            "restoring {} into {}",
            a.from.display(),
            config.data_dir.display()
        )
    })?;
    writeln!(
        std::io::stdout().lock(),
        "{} restored into {}: {}{}\nCheck it with `gateway audit verify-store` (and a checkpoint \
         saved before the backup), then start the gateway with the key file that was in use \
         when the backup was taken.",
        a.from.display(),
        config.data_dir.display(),
        describe(&summary),
        summary
            .taken_ms
            .map_or(String::new(), |ms| format!(", taken {}", format_ms(ms)))
    )?;
    Ok(())
}
