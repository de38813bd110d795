//! The console's command-line flags, as one `clap::Args` struct that a
//! `gateway console` subcommand can flatten as is. They name the gateway and
//! the auditor's identity the same way the `gateway audit` commands do
//! (`--identity auditor/<name>` from the dev certificate directory, or
//! `--cert`, `--key` and `--ca`), plus where the console listens, the pinned
//! log key and its state file.

use crate::{Config, ServeError};
use clap::Args;
use gateway::client::ClientTls;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

#[derive(Args, Debug, Clone)]
pub struct ConsoleArgs {
    /// Gateway address.
    #[arg(long, env = "GATEWAY_ADDR", default_value = "127.0.0.1:7443")]
    pub addr: String,
    /// The auditor the console reads the log as: a dev identity from the dev
    /// certificate directory, e.g. auditor/compliance.
    #[arg(long, conflicts_with_all = ["cert", "key"])]
    pub identity: Option<String>,
    /// Client certificate (PEM); with --key and --ca instead of --identity.
    #[arg(long, requires = "key")]
    pub cert: Option<PathBuf>,
    #[arg(long, requires = "cert")]
    pub key: Option<PathBuf>,
    /// CA certificate the gateway's certificate must chain to.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// Where dev identities are looked up.
    #[arg(long, env = "GATEWAY_CERTS_DIR", default_value = gateway::config::DEV_CERTS_DIR)]
    pub certs_dir: PathBuf,
    /// Name on the gateway's certificate.
    #[arg(long, default_value = "localhost")]
    pub server_name: String,
    /// Where the console listens (loopback by default: it has no login of its own).
    #[arg(long, env = "GATEWAY_CONSOLE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// The audit log's public key, pinned out of band: the verifier key
    /// string, or a file holding it (the gateway writes <data_dir>/audit-log.vkey).
    #[arg(
        long,
        env = "GATEWAY_AUDIT_LOG_KEY",
        default_value = "data/audit-log.vkey"
    )]
    pub log_key: String,
    /// The console's own state: the signed checkpoints it has seen.
    #[arg(
        long,
        env = "GATEWAY_CONSOLE_STATE",
        default_value = "console-state.json"
    )]
    pub state: PathBuf,
    /// The overview verifies the whole log again when its last run is older (seconds).
    #[arg(long, default_value_t = 60)]
    pub refresh_secs: u64,
    /// A checkpoint is stale when entries older than this are not covered (minutes).
    #[arg(long, default_value_t = 10)]
    pub stale_after_mins: u64,
    /// Offset times are shown in, e.g. +08:00.
    #[arg(long, default_value = "+08:00")]
    pub utc_offset: String,
}

const DEFAULT_IDENTITY: &str = "auditor/compliance";

impl ConsoleArgs {
    /// The client TLS files, resolved as `gateway audit` resolves them.
    pub fn tls(&self) -> Result<ClientTls, ServeError> {
        let mut tls = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => ClientTls {
                ca: self.certs_dir.join("ca.pem"),
                identity: Some((cert.clone(), key.clone())),
                server_name: String::new(),
            },
            _ => {
                let identity = self.identity.as_deref().unwrap_or(DEFAULT_IDENTITY);
                if !identity.starts_with("auditor/") {
                    return Err(ServeError::Config(format!(
                        "the console reads the audit log as an auditor: --identity auditor/<name>, not {identity}"
                    )));
                }
                ClientTls::dev(&self.certs_dir, identity)
                    .map_err(|e| ServeError::Config(format!("{e:#}")))?
            }
        };
        if let Some(ca) = &self.ca {
            tls.ca = ca.clone();
        }
        tls.server_name = self.server_name.clone();
        Ok(tls)
    }

    pub fn into_config(self) -> Result<Config, ServeError> {
        let tls = self.tls()?;
        let identity = match (&self.cert, &self.identity) {
            (Some(cert), _) => cert.display().to_string(),
            (None, Some(id)) => id.clone(),
            (None, None) => DEFAULT_IDENTITY.to_string(),
        };
        let log_key = read_log_key(&self.log_key)?;
        let utc_offset = parse_offset(&self.utc_offset)?;
        Ok(Config {
            gateway_addr: self.addr,
            tls,
            identity,
            log_key,
            state_file: self.state,
            refresh: Duration::from_secs(self.refresh_secs),
            stale_after: Duration::from_secs(self.stale_after_mins.saturating_mul(60)),
            utc_offset,
        })
    }
}

/// The verifier key string, given directly or in a file.
pub fn read_log_key(key: &str) -> Result<tlog::Verifier, ServeError> {
    let path = std::path::Path::new(key);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .map_err(|e| ServeError::Config(format!("cannot read the log key {key}: {e}")))?
    } else if key.contains('+') {
        key.to_string()
    } else {
        return Err(ServeError::Config(format!(
            "no log key at {key}: pin the audit log's public key with --log-key (a key string, or the gateway's <data_dir>/audit-log.vkey)"
        )));
    };
    tlog::Verifier::parse(text.trim())
        .map_err(|e| ServeError::Config(format!("the log key is not a verifier key: {e}")))
}

fn parse_offset(s: &str) -> Result<time::UtcOffset, ServeError> {
    let format = time::macros::format_description!("[offset_hour sign:mandatory]:[offset_minute]");
    time::UtcOffset::parse(s, &format)
        .map_err(|_| ServeError::Config(format!("--utc-offset {s}: expected the form +08:00")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ConsoleArgs,
    }

    #[test]
    fn loopback_and_the_compliance_auditor_by_default() {
        let cli = Cli::try_parse_from(["console"]).unwrap();
        assert!(cli.args.listen.ip().is_loopback());
        let tls = cli.args.tls().unwrap();
        assert!(tls.identity.unwrap().0.ends_with("auditor/compliance.pem"));
    }

    #[test]
    fn only_auditors() {
        let cli = Cli::try_parse_from(["console", "--identity", "union/assistance"]).unwrap();
        assert!(cli.args.tls().is_err());
    }

    #[test]
    fn offsets() {
        assert_eq!(
            parse_offset("+08:00").unwrap(),
            time::UtcOffset::from_hms(8, 0, 0).unwrap()
        );
        assert!(parse_offset("8").is_err());
    }
}
