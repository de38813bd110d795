//! Readiness: what the gRPC health service says about the gateway.
//!
//! Why it exists: a load balancer or an orchestrator sends calls to a gateway
//! that reports SERVING. A gateway whose store cannot be read or written would
//! answer every call UNAVAILABLE, and one that is draining would refuse new
//! ones; both must say NOT_SERVING so that callers go elsewhere. The store is
//! probed here periodically (a cheap read, with a timeout: a wedged store is
//! as unreachable as a failing one), and the shutdown path marks the gateway
//! NOT_SERVING for good before it drains.

use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;
use tonic::server::NamedService as _;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often the store is probed.
pub const PROBE_EVERY: Duration = Duration::from_secs(1);
/// A probe not answered within this is a failed one.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// The services whose health is reported: the whole server ("") and each of
/// the three gRPC services the gateway offers.
fn services() -> [&'static str; 4] {
    [
        "",
        crate::ingest::IngestRoutes::NAME,
        crate::exchange::UnionExchangeRoutes::NAME,
        crate::proto::audit_server::AuditServer::<crate::audit::AuditService>::NAME,
    ]
}

/// The health status of every service, as the store's probe and the shutdown
/// set it. Once stopping, nothing sets it back to SERVING.
pub struct Readiness {
    reporter: HealthReporter,
    /// Whether the server is stopping; held while a status is set, so a probe
    /// that ends as the drain begins cannot report SERVING after it.
    stopping: tokio::sync::Mutex<bool>,
}

impl Readiness {
    pub fn new(reporter: HealthReporter) -> Arc<Readiness> {
        Arc::new(Readiness {
            reporter,
            stopping: tokio::sync::Mutex::new(false),
        })
    }

    async fn set_all(&self, status: ServingStatus) {
        for name in services() {
            self.reporter.set_service_status(name, status).await;
        }
    }

    /// Sets every service's status unless the server is stopping.
    pub async fn set(&self, serving: bool) {
        let stopping = self.stopping.lock().await;
        if !*stopping {
            self.set_all(if serving {
                ServingStatus::Serving
            } else {
                ServingStatus::NotServing
            })
            .await;
        }
    }

    /// The server is draining: NOT_SERVING from now on.
    pub async fn stop(&self) {
        let mut stopping = self.stopping.lock().await;
        *stopping = true;
        self.set_all(ServingStatus::NotServing).await;
    }

    /// Probes `store` every [`PROBE_EVERY`] and reports what it finds,
    /// logging each change (the error text names no person: store errors
    /// carry none).
    pub async fn watch_store(self: Arc<Self>, store: Arc<dyn Store>) {
        let mut serving = true;
        let mut tick = tokio::time::interval(PROBE_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let probed = store.clone();
            let mut probe = tokio::task::spawn_blocking(move || probed.feed_head());
            let problem = match tokio::time::timeout(PROBE_TIMEOUT, &mut probe).await {
                Ok(Ok(Ok(_))) => None,
                Ok(Ok(Err(e))) => Some(e.to_string()),
                Ok(Err(_)) => Some("the probe task failed".to_string()),
                Err(_) => Some(format!("no answer within {PROBE_TIMEOUT:?}")),
            };
            if serving != problem.is_none() {
                serving = problem.is_none();
                match &problem {
                    Some(problem) => tracing::error!(
                        problem = %problem,
                        "STORE UNREACHABLE: health reports NOT_SERVING"
                    ),
                    None => tracing::warn!("store reachable again: health reports SERVING"),
                }
                self.set(serving).await;
            }
            // A probe that timed out still holds a blocking thread: the next
            // one waits for it rather than pile up behind a wedged store.
            if problem.is_some() && !probe.is_finished() {
                let _ = probe.await;
            }
        }
    }
}
