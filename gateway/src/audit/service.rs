//! The `Audit` gRPC service for compliance officers (the authz layer admits
//! auditors only): queries, a person's subject report with its completeness
//! check, signed checkpoints, inclusion and consistency proofs, and exports
//! that can be verified offline with the log's public key alone.

use super::{AuditEvent, CanonicalEntry, SubjectReported, auditor_pseudonyms};
use crate::Gateway;
use crate::identity::Principal;
use crate::proto;
use crate::store::{AuditFilter, StoreError, StoredAuditEntry, StoredCheckpoint};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Leaves per export message.
const EXPORT_CHUNK: usize = 2048;

pub struct AuditService {
    pub gateway: Arc<Gateway>,
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::Proof(p) => Status::invalid_argument(p.to_string()),
        e => {
            tracing::error!(error = %e, "audit store failure");
            Status::unavailable("the audit log is unavailable")
        }
    }
}

fn log_status(e: super::log::LogError) -> Status {
    match e {
        super::log::LogError::Store(e) => store_status(e),
        e @ super::log::LogError::Inconsistent { .. } => Status::data_loss(e.to_string()),
        e => {
            tracing::error!(error = %e, "audit checkpoint failure");
            Status::internal("cannot sign a checkpoint")
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Status::internal("audit task failed"))?
}

/// An entry as the API shows it (undecodable bytes are shown as such, so an
/// officer sees damage rather than a silently skipped entry).
pub fn entry_message(stored: &StoredAuditEntry) -> proto::AuditEntry {
    match stored.decode() {
        Ok(e) => proto::AuditEntry {
            seq: e.seq,
            at_unix_ms: e.at_ms,
            actor: e.actor,
            action: e.action,
            outcome: e.outcome,
            details_json: e.details.to_json().to_string(),
            kinds: e.kinds,
            subjects: e
                .subjects
                .into_iter()
                .map(|s| proto::SubjectRef {
                    token: s.token,
                    prev_seq: s.prev_seq,
                })
                .collect(),
            canonical: stored.bytes.clone(),
        },
        Err(err) => proto::AuditEntry {
            seq: stored.seq,
            action: "undecodable".into(),
            details_json: serde_json::json!({ "error": err.to_string() }).to_string(),
            canonical: stored.bytes.clone(),
            ..Default::default()
        },
    }
}

impl AuditService {
    fn checkpoint_message(&self, cp: &StoredCheckpoint) -> proto::SignedCheckpoint {
        proto::SignedCheckpoint {
            note: cp.note.clone(),
            size: cp.size,
            root: cp.root.to_vec(),
            vkey: self.gateway.audit_log.vkey(),
        }
    }

    async fn checkpoint_now(&self) -> Result<StoredCheckpoint, Status> {
        let log = self.gateway.audit_log.clone();
        blocking(move || log.checkpoint_now().map_err(log_status)).await
    }

    fn subject_token(&self, id_number: &str) -> Result<String, Status> {
        let person = adapters::rules::parse_identity_number(id_number).map_err(|code| {
            Status::invalid_argument(format!("the identity number is not valid ({code})"))
        })?;
        Ok(auditor_pseudonyms(&self.gateway.keys).token(person.expose()))
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<proto::ExportChunk, Status>> + Send>>;

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
        let subject = match (nonempty(q.subject), nonempty(q.subject_id_number)) {
            (Some(_), Some(_)) => {
                return Err(Status::invalid_argument(
                    "give subject or subject_id_number, not both",
                ));
            }
            (Some(token), None) => {
                if token.len() != 32 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(Status::invalid_argument(
                        "subject is an auditors' pseudonym: 32 hex characters",
                    ));
                }
                Some(token.to_ascii_lowercase())
            }
            (None, Some(id)) => Some(self.subject_token(&id)?),
            (None, None) => None,
        };
        let filter = AuditFilter {
            from_ms: (q.from_unix != 0).then_some(q.from_unix.saturating_mul(1000)),
            to_ms: (q.to_unix != 0).then_some(q.to_unix.saturating_mul(1000)),
            actor: nonempty(q.actor),
            action: nonempty(q.action),
            outcome: nonempty(q.outcome),
            kind: nonempty(q.kind),
            subject,
            after_seq: q.after_seq,
            limit,
        };
        let store = self.gateway.store.clone();
        let rows = blocking(move || store.query_audit(&filter).map_err(store_status)).await?;
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
            entries: rows.iter().map(entry_message).collect(),
            next_after_seq: next,
        }))
    }

    async fn subject_report(
        &self,
        request: Request<proto::SubjectReportRequest>,
    ) -> Result<Response<proto::SubjectReportResponse>, Status> {
        let auditor = request
            .extensions()
            .get::<Principal>()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let token = self.subject_token(&request.into_inner().id_number)?;
        let store = self.gateway.store.clone();
        let t = token.clone();
        let stored =
            blocking(move || store.audit_subject_entries(&t).map_err(store_status)).await?;

        let mut items = Vec::new();
        let mut problems = Vec::new();
        let mut expected_prev = 0u64;
        for s in &stored {
            let e = match s.decode() {
                Ok(e) => e,
                Err(err) => {
                    problems.push(format!("entry {} cannot be decoded: {err}", s.seq));
                    continue;
                }
            };
            let Some(me) = e.subjects.iter().find(|r| r.token == token) else {
                problems.push(format!("entry {} does not name the person", e.seq));
                continue;
            };
            if me.prev_seq != expected_prev {
                problems.push(format!(
                    "entry {} points back to {} but the previous entry found is {}: an entry is missing or altered",
                    e.seq, me.prev_seq, expected_prev
                ));
            }
            expected_prev = e.seq;
            if let Some(item) = report_item(&e, me.prev_seq) {
                items.push(item);
            }
        }
        // The access itself is audited, chained to the person's entries, and
        // durable before the answer leaves.
        let entry = SubjectReported {
            auditor: &auditor,
            entries: items.len() as u64,
            subject: &token,
        }
        .entry(&auditor);
        super::record(&self.gateway.store, vec![entry]).await?;
        let checkpoint = self.checkpoint_now().await?;
        tracing::info!(auditor = %auditor, items = items.len(), complete = problems.is_empty(), "subject report");
        Ok(Response::new(proto::SubjectReportResponse {
            subject: token,
            items,
            chain_complete: problems.is_empty(),
            problems,
            entries_checked: stored.len() as u64,
            checkpoint: Some(self.checkpoint_message(&checkpoint)),
        }))
    }

    async fn get_checkpoint(
        &self,
        _request: Request<proto::GetCheckpointRequest>,
    ) -> Result<Response<proto::SignedCheckpoint>, Status> {
        let cp = self.checkpoint_now().await?;
        Ok(Response::new(self.checkpoint_message(&cp)))
    }

    async fn prove_inclusion(
        &self,
        request: Request<proto::InclusionRequest>,
    ) -> Result<Response<proto::InclusionProof>, Status> {
        let req = request.into_inner();
        if req.seq == 0 {
            return Err(Status::invalid_argument("seq starts at 1"));
        }
        let (size, checkpoint) = if req.tree_size == 0 {
            let cp = self.checkpoint_now().await?;
            (cp.size, Some(cp))
        } else {
            (req.tree_size, None)
        };
        let store = self.gateway.store.clone();
        let seq = req.seq;
        let (hashes, leaf, canonical, stored_cp) = blocking(move || {
            let hashes = store
                .audit_inclusion_proof(seq - 1, size)
                .map_err(store_status)?;
            let leaf = store
                .audit_leaves(seq - 1, seq, 1)
                .map_err(store_status)?
                .pop()
                .ok_or_else(|| Status::not_found("no such entry"))?;
            let cp = store.checkpoint_at(size).map_err(store_status)?;
            Ok((hashes, leaf.leaf_hash, leaf.entry.unwrap_or_default(), cp))
        })
        .await?;
        Ok(Response::new(proto::InclusionProof {
            seq,
            tree_size: size,
            leaf_hash: leaf.to_vec(),
            canonical,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            checkpoint: checkpoint
                .or(stored_cp)
                .map(|cp| self.checkpoint_message(&cp)),
        }))
    }

    async fn prove_consistency(
        &self,
        request: Request<proto::ConsistencyRequest>,
    ) -> Result<Response<proto::ConsistencyProof>, Status> {
        let req = request.into_inner();
        let (to, to_cp) = if req.to_size == 0 {
            let cp = self.checkpoint_now().await?;
            (cp.size, Some(cp))
        } else {
            (req.to_size, None)
        };
        let from = req.from_size;
        let store = self.gateway.store.clone();
        let (hashes, from_cp, stored_to_cp) = blocking(move || {
            let hashes = store
                .audit_consistency_proof(from, to)
                .map_err(store_status)?;
            Ok((
                hashes,
                store.checkpoint_at(from).map_err(store_status)?,
                store.checkpoint_at(to).map_err(store_status)?,
            ))
        })
        .await?;
        Ok(Response::new(proto::ConsistencyProof {
            from_size: from,
            to_size: to,
            hashes: hashes.iter().map(|h| h.to_vec()).collect(),
            from_checkpoint: from_cp.map(|cp| self.checkpoint_message(&cp)),
            to_checkpoint: to_cp
                .or(stored_to_cp)
                .map(|cp| self.checkpoint_message(&cp)),
        }))
    }

    type ExportStream = ExportStream;

    async fn export(
        &self,
        _request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let cp = self.checkpoint_now().await?;
        let first = self.checkpoint_message(&cp);
        let store = self.gateway.store.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            let mut next = 0u64;
            let mut checkpoint = Some(first);
            loop {
                let s = store.clone();
                let from = next;
                let page = tokio::task::spawn_blocking(move || {
                    s.audit_leaves(from, cp.size, EXPORT_CHUNK)
                })
                .await;
                let page = match page {
                    Ok(Ok(p)) => p,
                    Ok(Err(e)) => {
                        let _ = tx.send(Err(store_status(e))).await;
                        return;
                    }
                    Err(_) => {
                        let _ = tx.send(Err(Status::internal("export task failed"))).await;
                        return;
                    }
                };
                let done = page.len() < EXPORT_CHUNK;
                if let Some(last) = page.last() {
                    next = last.seq;
                }
                let leaves = page
                    .into_iter()
                    .map(|l| proto::ExportedLeaf {
                        seq: l.seq,
                        leaf_hash: l.leaf_hash.to_vec(),
                        missing: l.entry.is_none(),
                        canonical: l.entry.unwrap_or_default(),
                    })
                    .collect();
                let chunk = proto::ExportChunk {
                    checkpoint: checkpoint.take(),
                    leaves,
                };
                if tx.send(Ok(chunk)).await.is_err() || done {
                    return;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

/// The report line of an entry about the person (deliveries, look-ups and
/// re-identifications; the chain also holds audit accesses, not listed).
fn report_item(e: &CanonicalEntry, prev_seq: u64) -> Option<proto::SubjectReportItem> {
    if !matches!(
        e.action.as_str(),
        "records_delivered" | "person_looked_up" | "person_reidentified"
    ) {
        return None;
    }
    let d = &e.details;
    let fields = match d.get("fields") {
        Some(super::Value::Map(m)) => m
            .iter()
            .filter_map(|(k, v)| match v {
                super::Value::Str(form) => Some((k.clone(), form.clone())),
                _ => None,
            })
            .collect(),
        _ => match d.str("field") {
            Some(f) => [(f.to_string(), "reidentified".to_string())].into(),
            None => Default::default(),
        },
    };
    Some(proto::SubjectReportItem {
        seq: e.seq,
        at_unix_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        purpose: d.str("purpose").unwrap_or_default().to_string(),
        case_number: d.str("case_number").unwrap_or_default().to_string(),
        kinds: e.kinds.clone(),
        fields,
        policy_version: d.str("policy_version").unwrap_or_default().to_string(),
        prev_seq,
    })
}
