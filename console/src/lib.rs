//! The compliance officers' web console: a local web application that shows
//! the gateway's audit log, searched, reported on per person and verified.
//!
//! It holds no data of its own and opens nothing new on the gateway: every
//! page is built from the gateway's `Audit` gRPC service, called as one
//! auditor over the same mutual TLS as `gateway audit …` ([`upstream`]), and
//! every signed checkpoint it shows is checked with a pinned key and proved
//! consistent with the ones it saw before ([`ledger`]). One entry point,
//! [`serve`], takes a configuration, a listener and a shutdown signal; [`run`]
//! binds the listener its flags name, so the `gateway console` subcommand,
//! the `gateway-console` binary and the tests run the same code.

#![forbid(unsafe_code)]

pub mod args;
mod chart;
pub mod i18n;
pub mod ledger;
pub mod scan;
mod session;
mod upstream;
mod web;

pub use args::ConsoleArgs;

use gateway::client::ClientTls;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Everything the console needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The gateway (`host:port` or `https://host:port`).
    pub gateway_addr: String,
    /// The auditor's certificate, key and the CA of the gateway's certificate.
    pub tls: ClientTls,
    /// Shown on every page: who the console reads the log as.
    pub identity: String,
    /// The audit log's public key, pinned out of band (the gateway writes it
    /// to `<data_dir>/audit-log.vkey`). The copy the gateway sends is never trusted.
    pub log_key: tlog::Verifier,
    /// Where the console keeps the checkpoints it has seen.
    pub state_file: PathBuf,
    /// The overview verifies the whole log again when its last run is older.
    pub refresh: Duration,
    /// Entries older than this not covered by a signed checkpoint make it stale.
    pub stale_after: Duration,
    /// Times are shown in this offset (China Standard Time by default).
    pub utc_offset: time::UtcOffset,
}

/// Why the console could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    State(#[from] ledger::StateError),
    #[error("the console's listener failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

/// An identity number typed into a form. It goes to the gateway in a
/// request body and nowhere else: not into a URL, a log line or a page
/// (pages show [`IdNumber::masked`]); `Debug` does not show it.
#[derive(Clone, Default, serde::Deserialize)]
#[serde(transparent)]
pub struct IdNumber(String);

impl std::fmt::Debug for IdNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdNumber(…)")
    }
}

impl IdNumber {
    pub fn new(raw: &str) -> IdNumber {
        IdNumber(raw.trim().to_ascii_uppercase())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.trim().is_empty()
    }

    /// As typed, trimmed, with a lower-case check character raised.
    pub fn normalised(&self) -> IdNumber {
        IdNumber::new(&self.0)
    }

    /// The first three and last four characters, for a printed report.
    pub fn masked(&self) -> String {
        let chars: Vec<char> = self.0.chars().collect();
        if chars.len() < 8 {
            return "*".repeat(chars.len());
        }
        let n = chars.len();
        chars
            .iter()
            .enumerate()
            .map(|(i, c)| if i < 3 || i >= n - 4 { *c } else { '*' })
            .collect()
    }
}

/// The console's shared state.
pub(crate) struct App {
    pub config: Config,
    pub upstream: upstream::Upstream,
    pub ledger: ledger::Ledger,
    pub snapshot: tokio::sync::RwLock<Option<Arc<scan::Snapshot>>>,
    /// One full verification at a time.
    pub scanning: tokio::sync::Mutex<()>,
    pub rng: ring::rand::SystemRandom,
    pub csrf_key: ring::hmac::Key,
    /// Host headers accepted (only when listening on loopback).
    pub allowed_hosts: Option<Vec<String>>,
    /// Results of POSTs that named a person, for their GET pages.
    pub held: web::Held,
}

impl App {
    /// The latest full verification, running one if there is none yet, or
    /// if the last one started before `not_before_ms` or is older than the
    /// refresh interval.
    pub async fn snapshot(&self, not_before_ms: Option<i64>) -> Arc<scan::Snapshot> {
        let fresh_enough = |s: &scan::Snapshot| {
            let age = ledger::now_ms() - s.started_ms;
            not_before_ms.is_none_or(|t| s.started_ms >= t)
                && age < self.config.refresh.as_millis() as i64
        };
        if let Some(s) = &*self.snapshot.read().await
            && fresh_enough(s)
        {
            return s.clone();
        }
        let _one = self.scanning.lock().await;
        // Another request may have finished one while this one waited.
        if let Some(s) = &*self.snapshot.read().await
            && fresh_enough(s)
        {
            return s.clone();
        }
        let s = Arc::new(scan::run(self).await);
        *self.snapshot.write().await = Some(s.clone());
        s
    }
}

/// The Host headers a browser sends to a loopback listener.
fn loopback_hosts(addr: SocketAddr) -> Option<Vec<String>> {
    if !addr.ip().is_loopback() {
        return None;
    }
    let port = addr.port();
    Some(vec![
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        addr.to_string(),
    ])
}

/// Binds `args.listen` and serves the console there until `shutdown`
/// completes: what `gateway console` and `gateway-console` run.
pub async fn run(
    args: ConsoleArgs,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let listen = args.listen;
    let config = args.into_config()?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|e| ServeError::Config(format!("cannot listen on {listen}: {e}")))?;
    serve(config, listener, shutdown).await
}

/// Sends the console's logs to standard error, at the level
/// `GATEWAY_CONSOLE_LOG` names (default `info`), for the binaries that run it.
pub fn log_to_stderr() -> Result<(), ServeError> {
    let filter = std::env::var("GATEWAY_CONSOLE_LOG").unwrap_or_else(|_| "info".into());
    let filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .map_err(|e| ServeError::Config(format!("GATEWAY_CONSOLE_LOG={filter}: {e}")))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| ServeError::Config(format!("cannot set up logging: {e}")))
}

/// Serves the console on `listener` until `shutdown` completes.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    gateway::tls::install_crypto_provider();
    let local = listener.local_addr()?;
    if !local.ip().is_loopback() {
        tracing::warn!(
            %local,
            identity = %config.identity,
            "the console is not on loopback: whoever reaches this address reads the audit log as this auditor"
        );
    }
    let ledger = ledger::Ledger::load(&config.state_file, config.log_key.clone())?;
    let rng = ring::rand::SystemRandom::new();
    let csrf_key = ring::hmac::Key::generate(ring::hmac::HMAC_SHA256, &rng)
        .map_err(|_| ServeError::Config("the system random source failed".into()))?;
    let app = Arc::new(App {
        upstream: upstream::Upstream::new(config.gateway_addr.clone(), config.tls.clone()),
        config,
        ledger,
        snapshot: Default::default(),
        scanning: Default::default(),
        rng,
        csrf_key,
        allowed_hosts: loopback_hosts(local),
        held: Default::default(),
    });
    tracing::info!(url = %format!("http://{local}/"), gateway = %app.upstream.addr(), identity = %app.config.identity, "compliance console listening");
    axum::serve(listener, web::router(app))
        .with_graceful_shutdown(shutdown)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_numbers_are_masked_and_hidden_from_debug() {
        let id = IdNumber::new(" 34020719760711113x ");
        assert_eq!(id.expose(), "34020719760711113X");
        assert_eq!(id.masked(), "340***********113X");
        assert_eq!(format!("{id:?}"), "IdNumber(…)");
    }
}
