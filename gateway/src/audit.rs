//! The audit trail: typed events for everything security-relevant (pushes,
//! deliveries, look-ups, denials, refused connections, start-ups), turned into
//! stored entries, and the `Audit` gRPC service compliance officers query.
//!
//! Events are structs, not strings scattered through the code, and none has a
//! field that could hold a raw personal identifier: subjects appear only as
//! pseudonyms, rows only as counts and codes. The tamper-evident Merkle log,
//! signed checkpoints and proofs build on these entries (audit issue).

use crate::identity::Principal;
use crate::proto;
use crate::store::{AuditFilter, Store};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// One stored audit entry. `details` is the event's canonical JSON (fixed field
/// order, as declared in the event struct).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    pub details: String,
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Every kind of audited event.
pub trait AuditEvent: Serialize {
    const ACTION: &'static str;
    fn outcome(&self) -> Outcome {
        Outcome::Ok
    }
    fn entry(&self, actor: &str) -> AuditEntry {
        AuditEntry {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: Self::ACTION.to_string(),
            outcome: self.outcome().as_str().to_string(),
            details: serde_json::to_string(self).expect("audit events serialise"),
        }
    }
}

/// An agency pushed a batch (committed, duplicate re-send or rejected whole).
#[derive(Debug, Serialize)]
pub struct BatchPushed<'a> {
    pub agency: &'a str,
    pub batch_id: &'a str,
    pub result: &'a str,
    pub rows: u64,
    pub accepted: u64,
    pub superseded: u64,
    pub rejected_by_code: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_error: Option<&'a str>,
}

impl AuditEvent for BatchPushed<'_> {
    const ACTION: &'static str = "batch_pushed";
    fn outcome(&self) -> Outcome {
        if self.batch_error.is_some() {
            Outcome::Rejected
        } else {
            Outcome::Ok
        }
    }
}

/// Records left the gateway for a union consumer.
#[derive(Debug, Serialize)]
pub struct RecordsDelivered<'a> {
    pub consumer: &'a str,
    pub purpose: &'a str,
    pub kinds: &'a [String],
    pub records: u64,
    pub removed: u64,
    pub from_cursor: u64,
    pub to_cursor: u64,
    /// Field name → form it was delivered in (kept, masked, pseudonymised, …).
    pub fields: &'a BTreeMap<String, &'static str>,
    pub policy_version: &'a str,
}

impl AuditEvent for RecordsDelivered<'_> {
    const ACTION: &'static str = "records_delivered";
}

/// A consumer looked up one person for a case.
#[derive(Debug, Serialize)]
pub struct PersonLookedUp<'a> {
    pub consumer: &'a str,
    pub purpose: &'a str,
    pub case_number: &'a str,
    /// The person's pseudonym in the auditors' own domain.
    pub subject: &'a str,
    pub records: u64,
    pub kinds: Vec<String>,
    pub policy_version: &'a str,
}

impl AuditEvent for PersonLookedUp<'_> {
    const ACTION: &'static str = "person_looked_up";
}

/// A call was refused after the TLS handshake (role matrix, policy, purpose).
#[derive(Debug, Serialize)]
pub struct Denied<'a> {
    pub rpc: &'a str,
    pub code: &'a str,
    pub reason: &'a str,
}

impl AuditEvent for Denied<'_> {
    const ACTION: &'static str = "denied";
    fn outcome(&self) -> Outcome {
        Outcome::Denied
    }
}

/// A TLS handshake failed: no, expired, revoked or foreign certificate.
#[derive(Debug, Serialize)]
pub struct ConnectionRefused<'a> {
    pub peer: &'a str,
    pub reason: &'a str,
}

impl AuditEvent for ConnectionRefused<'_> {
    const ACTION: &'static str = "connection_refused";
    fn outcome(&self) -> Outcome {
        Outcome::Denied
    }
}

/// The gateway started serving.
#[derive(Debug, Serialize)]
pub struct GatewayStarted<'a> {
    pub version: &'a str,
    pub dev_mode: bool,
    pub policies: BTreeMap<String, String>,
}

impl AuditEvent for GatewayStarted<'_> {
    const ACTION: &'static str = "gateway_started";
}

/// The policy directory was reloaded (SIGHUP).
#[derive(Debug, Serialize)]
pub struct PoliciesReloaded {
    /// Consumer → policy content hash now in force.
    pub policies: BTreeMap<String, String>,
}

impl AuditEvent for PoliciesReloaded {
    const ACTION: &'static str = "policies_reloaded";
}

/// A policy reload was refused because a file is broken; the previous set serves on.
#[derive(Debug, Serialize)]
pub struct PolicyReloadRefused<'a> {
    /// The lint's `file:line: message` lines (policy files hold no personal data).
    pub problems: &'a str,
    pub serving: BTreeMap<String, String>,
}

impl AuditEvent for PolicyReloadRefused<'_> {
    const ACTION: &'static str = "policy_reload_refused";
    fn outcome(&self) -> Outcome {
        Outcome::Rejected
    }
}

/// Actor name for events with no authenticated caller.
pub const ANONYMOUS: &str = "anonymous";
/// Actor name for the gateway's own events.
pub const GATEWAY: &str = "gateway";

/// Appends entries durably off the async runtime. Audit failure is not silent:
/// the caller decides whether to refuse the operation (it should).
pub async fn record(store: &Arc<dyn Store>, entries: Vec<AuditEntry>) -> Result<(), Status> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || store.append_audit(&entries))
        .await
        .map_err(|_| Status::internal("audit task failed"))?
        .map_err(|e| {
            tracing::error!(error = %e, "audit append failed");
            Status::unavailable("the audit log is unavailable; nothing was done")
        })
}

/// The compliance officers' service.
pub struct AuditService {
    pub store: Arc<dyn Store>,
}

#[tonic::async_trait]
impl proto::audit_server::Audit for AuditService {
    async fn query(
        &self,
        request: Request<proto::AuditQuery>,
    ) -> Result<Response<proto::AuditPage>, Status> {
        let principal = request.extensions().get::<Principal>().cloned();
        let q = request.into_inner();
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let limit = if q.page_size == 0 {
            100
        } else {
            q.page_size.min(1000)
        };
        let filter = AuditFilter {
            from_ms: (q.from_unix != 0).then_some(q.from_unix * 1000),
            to_ms: (q.to_unix != 0).then_some(q.to_unix * 1000),
            actor: nonempty(q.actor),
            action: nonempty(q.action),
            outcome: nonempty(q.outcome),
            after_seq: q.after_seq,
            limit,
        };
        let store = self.store.clone();
        let rows = tokio::task::spawn_blocking(move || store.query_audit(&filter))
            .await
            .map_err(|_| Status::internal("audit query task failed"))?
            .map_err(|e| {
                tracing::error!(error = %e, "audit query failed");
                Status::unavailable("the audit log is unavailable")
            })?;
        tracing::info!(
            auditor = %principal.map(|p| p.to_string()).unwrap_or_default(),
            entries = rows.len(),
            "audit query"
        );
        let next = if rows.len() as u32 == limit {
            rows.last().map(|r| r.seq).unwrap_or(0)
        } else {
            0
        };
        Ok(Response::new(proto::AuditPage {
            entries: rows
                .into_iter()
                .map(|r| proto::AuditEntry {
                    seq: r.seq,
                    at_unix_ms: r.entry.at_ms,
                    actor: r.entry.actor,
                    action: r.entry.action,
                    outcome: r.entry.outcome,
                    details_json: r.entry.details,
                })
                .collect(),
            next_after_seq: next,
        }))
    }
}
