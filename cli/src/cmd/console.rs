//! `gateway console`: the compliance officers' web console
//! (`compliance-console`), served on loopback by default, reading the audit
//! log as one auditor over the same mutual TLS as `gateway audit`. Logs go to
//! standard error (`GATEWAY_CONSOLE_LOG`, default `info`).

use compliance_console::ConsoleArgs;

pub async fn run(args: ConsoleArgs) -> anyhow::Result<()> {
    compliance_console::log_to_stderr()?;
    compliance_console::run(args, super::serve::shutdown_signal()).await?;
    Ok(())
}
