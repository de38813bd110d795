//! `gateway backup` and `gateway restore`: the operators' copies of the
//! embedded store (see `store::sqlite::backup` for what a backup holds and
//! why the key file is not in it). This is the binary's edge (`anyhow`).

use crate::cmd::keys::{StoreArgs, lock_data_dir};
use anyhow::Context as _;
use clap::Args;
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
