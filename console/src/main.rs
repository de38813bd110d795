//! `gateway-console`: the compliance console on its own, until the
//! `gateway console` subcommand serves it with the same flags. Logs go to
//! standard error (`GATEWAY_CONSOLE_LOG`, default `info`).

use clap::Parser;
use compliance_console::ConsoleArgs;

#[derive(Parser)]
#[command(
    name = "gateway-console",
    version,
    about = "The compliance officers' web console over the gateway's audit log"
)]
struct Cli {
    #[command(flatten)]
    args: ConsoleArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let filter = std::env::var("GATEWAY_CONSOLE_LOG").unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_new(&filter)?)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let listen = cli.args.listen;
    let config = cli.args.into_config()?;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {listen}: {e}"))?;
    compliance_console::serve(config, listener, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
