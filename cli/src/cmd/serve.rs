//! `gateway serve`: the gateway itself, from its configuration file (dev
//! mode by default), until SIGTERM or Ctrl-C; SIGHUP reloads the policies
//! and the TLS material.

use anyhow::Context as _;
use clap::Args;
use gateway::Gateway;
use gateway::config::{Config, DEV_CERTS_DIR};
use gateway::{pki, tls};
use std::path::{Path, PathBuf};
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
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

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(d) = args.data_dir {
        config.data_dir = d;
    }
    config.check_dev_mode()?;
    let _telemetry = gateway::telemetry::init(&config.telemetry)?;
    config.telemetry.check(config.dev_mode)?;
    if config.dev_mode {
        tracing::warn!("==================================================================");
        tracing::warn!("DEV MODE: dev certificates and generated keys; NOT FOR PRODUCTION.");
        tracing::warn!("Set dev_mode = false in the configuration file for real data.");
        tracing::warn!("==================================================================");
        if !config.tls.ca.exists() {
            let dir = config.tls.ca.parent().unwrap_or(Path::new(DEV_CERTS_DIR));
            let ids = super::certs::dev_identities(&config.policies_dir);
            pki::init_dev_pki(dir, &config.trust_domain, &ids)?;
            tracing::warn!(dir = %dir.display(), "DEV MODE: created a dev PKI");
        }
    }
    config.check_revocation()?;
    if config.tls.revocation == gateway::config::Revocation::None {
        tracing::warn!(
            "REVOCATION NOT CHECKED ([tls] revocation = \"none\"): a revoked client certificate keeps its access until it expires"
        );
    } else if config.tls.crls.is_empty() {
        tracing::warn!(
            "DEV MODE: no CRL in [tls] crls; revocation not checked (the dev PKI's crl.pem can be listed)"
        );
    }
    let _lock = super::keys::lock_data_dir(&config.data_dir)?;
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
                    let _ = gateway::reload_tls(&gw, &tls);
                })
                .await;
            }
        });
    }
    let metrics = gateway.metrics.clone();
    let scrape = gateway::metrics::start_scrape(config.telemetry.metrics_listen, metrics.clone())
        .await
        .with_context(|| "cannot serve [telemetry] metrics_listen")?;
    gateway::serve(
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

/// Completes at SIGTERM or Ctrl-C.
pub(crate) async fn shutdown_signal() {
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
