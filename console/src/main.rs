//! `gateway-console`: the compliance console on its own, the same as
//! `gateway console` (which the gateway's command line serves with the same
//! flags), for hosts that run the console without the gateway's binary, and
//! for the console's own browser tests. Logs go to standard error
//! (`GATEWAY_CONSOLE_LOG`, default `info`).

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
    compliance_console::log_to_stderr()?;
    compliance_console::run(cli.args, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}
