//! `gateway config check [--config FILE] [--online]`: the production
//! checklist, offline, before a deployment rather than at its first start.
//!
//! Why it exists: `serve` stops at the first problem it meets, and some
//! problems it does not stop at (a private key any local user can read, dev
//! mode left on). An operator wants every problem at once, each named by the
//! file and setting to fix. Everything is read, nothing is written (with
//! `--online` the data directory is probed with a file created and removed).

use clap::{Args, Subcommand};
use gateway::config::Config;
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum ConfigCommand {
    /// List every problem of a production configuration, one line each
    /// (`file: setting: problem`); exits non-zero if there is one, prints
    /// `ok` otherwise.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// Configuration file (TOML), as given to `serve`; the `GATEWAY_*`
    /// environment applies on top, as it does for `serve`.
    #[arg(long, env = "GATEWAY_CONFIG")]
    config: Option<PathBuf>,
    /// Also check that the store can be reached (the embedded store: its
    /// data directory exists or can be created, is writable, and its database
    /// opens).
    #[arg(long)]
    online: bool,
}

/// One problem: where (the configuration's file and setting) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub file: String,
    pub setting: String,
    pub problem: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}", self.file, self.setting, self.problem)
    }
}

pub fn run(command: ConfigCommand) -> anyhow::Result<()> {
    use std::io::Write as _;
    let ConfigCommand::Check(args) = command;
    let problems = check_file(args.config.as_deref(), args.online);
    let mut out = std::io::stdout().lock();
    if problems.is_empty() {
        writeln!(out, "ok")?;
        return Ok(());
    }
    for p in &problems {
        writeln!(out, "{p}")?;
    }
    anyhow::bail!(
        "{} problem{} in the configuration",
        problems.len(),
        if problems.len() == 1 { "" } else { "s" }
    )
}

/// Loads the configuration as `serve` would and checks it.
pub fn check_file(file: Option<&Path>, online: bool) -> Vec<Problem> {
    let source = file.map_or_else(
        || "(defaults and environment)".to_string(),
        |f| f.display().to_string(),
    );
    match Config::load(file) {
        Ok(config) => check(&config, &source, online),
        Err(e) => vec![Problem {
            file: source,
            setting: "(file)".into(),
            problem: e.to_string(),
        }],
    }
}

/// Every problem `config` (read from `source`) has for production.
pub fn check(config: &Config, source: &str, online: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    let mut problem = |setting: &str, problem: String| {
        problems.push(Problem {
            file: source.to_string(),
            setting: setting.to_string(),
            problem,
        })
    };
    if config.dev_mode {
        problem(
            "dev_mode",
            "is true (generated certificates and keys, loopback only): set dev_mode = false".into(),
        );
    }
    // Present, and (private keys) readable by the gateway's user only.
    let keys_from_env = std::env::var_os("GATEWAY_KEYS").is_some();
    let mut files: Vec<(String, &Path, bool)> = vec![
        ("[tls] ca".into(), &config.tls.ca, false),
        ("[tls] cert".into(), &config.tls.cert, false),
        ("[tls] key".into(), &config.tls.key, true),
    ];
    if !keys_from_env {
        files.push(("keys_file".into(), &config.keys_file, true));
    }
    for (i, crl) in config.tls.crls.iter().enumerate() {
        files.push((format!("[tls] crls[{i}]"), crl, false));
    }
    let mut all_present = true;
    for (setting, path, private) in &files {
        match std::fs::metadata(path) {
            Err(e) => {
                all_present = false;
                problem(setting, format!("{}: cannot read: {e}", path.display()));
            }
            Ok(meta) if *private => {
                if let Some(mode) = readable_by_others(&meta) {
                    problem(
                        setting,
                        format!(
                            "{} is readable by others (mode {mode:04o}): chmod 600 it",
                            path.display()
                        ),
                    );
                }
            }
            Ok(_) => {}
        }
    }
    // The files there: do they load as `serve` would load them?
    if all_present {
        if let Err(e) = gateway::tls::ServerTls::load(config.tls.files()) {
            problem("[tls]", e.to_string());
        }
        if let Err(e) = gateway::keys::Keys::load(&config.keys_file, false) {
            problem("keys_file", e.to_string());
        }
    }
    // Revocation as a production gateway requires it, whatever dev_mode says.
    let production = Config {
        dev_mode: false,
        ..config.clone()
    };
    if let Err(e) = production.check_revocation() {
        problem("[tls] crls", e.to_string());
    }
    if let Err(e) = policies::PolicySet::load_dir(&config.policies_dir) {
        for line in e.to_string().lines() {
            problem("policies_dir", line.to_string());
        }
    }
    if online {
        match &config.store.url {
            // The database server's store: reachable, and a schema this build serves.
            Some(url) => {
                if let Err(e) =
                    gateway::store::postgres::probe(url, config.store.ca_file.as_deref())
                {
                    problem("[store] url", e.to_string());
                }
            }
            None => {
                if let Err(e) = probe_data_dir(&config.data_dir) {
                    problem("data_dir", format!("{}: {e}", config.data_dir.display()));
                }
            }
        }
    }
    problems
}

/// The permission bits a user other than the owner has, if any.
#[cfg(unix)]
fn readable_by_others(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = meta.permissions().mode() & 0o777;
    (mode & 0o077 != 0).then_some(mode)
}

#[cfg(not(unix))]
fn readable_by_others(_: &std::fs::Metadata) -> Option<u32> {
    None
}

/// The embedded store can be reached: its directory exists (or can be
/// created), takes a new file, and its database (if there is one yet) opens,
/// reads, and has a schema this build can serve (the same or older: older
/// ones are migrated at start-up). Read-only on the database: a serving
/// gateway may hold it.
fn probe_data_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create: {e}"))?;
    let probe = dir.join(format!(".config-check-{}", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| format!("not writable: {e}"))?;
    let _ = std::fs::remove_file(&probe);
    gateway::store::sqlite::stored_schema_version(dir)
        .map_err(|e| format!("{}: {e}", dir.join("gateway.db").display()))?;
    Ok(())
}
