//! Tracing from day one: readable (or JSON) logs always, and OpenTelemetry span
//! export over OTLP/gRPC when an endpoint is configured. Spans carry agency,
//! consumer, kind and counts as attributes, never personal data. (Metrics,
//! exported to the same endpoint, are set up per gateway in [`crate::metrics`].)

use crate::config::TelemetryConfig;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Keeps the exporter alive; flushes spans on drop.
pub struct TelemetryGuard {
    provider: Option<opentelemetry_sdk::trace::SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// Installs the global subscriber. Must run inside a tokio runtime when OTLP is on.
pub fn init(config: &TelemetryConfig) -> anyhow::Result<TelemetryGuard> {
    let filter = EnvFilter::try_new(&config.log)
        .map_err(|e| anyhow::anyhow!("invalid log filter `{}`: {e}", config.log))?;
    let json = config.log_format == "json";
    // Logs go to standard error; standard output stays free for command output.
    let fmt_plain = (!json).then(|| {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
    });
    let fmt_json = json.then(|| {
        tracing_subscriber::fmt::layer()
            .json()
            .with_target(false)
            .with_writer(std::io::stderr)
    });

    let provider = if config.otlp_endpoint.is_empty() {
        None
    } else {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(config.otlp_endpoint.clone())
            .build()?;
        Some(
            opentelemetry_sdk::trace::SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_resource(
                    opentelemetry_sdk::Resource::builder()
                        .with_service_name("exchange-gateway")
                        .build(),
                )
                .build(),
        )
    };
    let otel = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("exchange-gateway")));

    tracing_subscriber::registry()
        .with(filter)
        .with(fmt_plain)
        .with(fmt_json)
        .with(otel)
        .try_init()
        .map_err(|e| anyhow::anyhow!("cannot install the log subscriber: {e}"))?;
    if !config.otlp_endpoint.is_empty() {
        tracing::info!(endpoint = %config.otlp_endpoint, "exporting spans over OTLP");
    }
    Ok(TelemetryGuard { provider })
}
