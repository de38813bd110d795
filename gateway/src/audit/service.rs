//! The `Audit` gRPC service for compliance officers (the authz layer admits
//! auditors only): queries, a person's subject report with its completeness
//! check, signed checkpoints, inclusion and consistency proofs, exports
//! that can be verified offline with the log's public key alone, and the
//! notes kept beside entries (read against their commitment, or erased).
//! Every read that names a person (a query filtered by a person, a subject
//! report, an export, a note) is itself audited under the auditor's
//! certificate identity, durably before the answer leaves, and shows in that
//! person's subject report.

use super::notes::{self, COMMITMENT_KEYS, ERASE_REASONS};
use super::{
    AuditEvent, AuditExported, AuditQueried, CanonicalEntry, NoteErased, NoteRead, SubjectReported,
    auditor_pseudonyms,
};
use crate::Gateway;
use crate::identity::Principal;
use crate::proto;
use crate::store::{
    AuditFilter, NoteErasure, StoreError, StoredAuditEntry, StoredCheckpoint, StoredNote,
};
use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Leaves an export reads from the store at a time. An entry of a bulk
/// pull's page names thousands of persons, so a read is bounded in leaves
/// and each message in bytes ([`MESSAGE_BYTES`]).
const EXPORT_CHUNK: usize = 256;
/// The size an export message or a query's page stops growing at (either
/// holds at least one entry): well below the decoding limit of gRPC clients.
const MESSAGE_BYTES: usize = 3 << 20;
/// Entries a query reads from the store at a time.
const QUERY_READ: usize = 64;
/// Entries a subject report reads from the store at a time.
const REPORT_READ: usize = 64;

pub struct AuditService {
    gateway: Arc<Gateway>,
    policy_tables: Arc<std::sync::Mutex<PolicyTables>>,
}

/// Field tables of the policy versions recorded in the log (`policy_recorded`
/// entries), read once: deliveries and look-ups name their policy by version,
/// and a report line's fields are that policy's forms for the kinds the entry
/// concerned.
#[derive(Default)]
struct PolicyTables {
    /// The log has been read for them through this seq.
    through_seq: u64,
    /// Policy version → `kind.field` → form.
    by_version: HashMap<String, BTreeMap<String, String>>,
}

impl PolicyTables {
    /// Reads the `policy_recorded` entries appended since the last call.
    fn catch_up(&mut self, store: &dyn crate::store::Store) -> Result<(), StoreError> {
        loop {
            let page = store.query_audit(&AuditFilter {
                action: Some(super::PolicyRecorded::ACTION.to_string()),
                after_seq: self.through_seq,
                limit: 1000,
                ..Default::default()
            })?;
            let Some(last) = page.last() else {
                return Ok(());
            };
            self.through_seq = last.seq;
            for stored in &page {
                // An undecodable entry leaves its version unknown; the report
                // says so for every line that needs it.
                let Ok(e) = stored.decode() else { continue };
                let (Some(version), Some(fields)) =
                    (e.details.str("policy_version"), e.details.get("fields"))
                else {
                    continue;
                };
                self.by_version
                    .entry(version.to_string())
                    .or_insert_with(|| forms_of(fields));
            }
        }
    }
}

/// A `kind.field` → form detail map as strings.
fn forms_of(v: &super::Value) -> BTreeMap<String, String> {
    match v {
        super::Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| match v {
                super::Value::Str(form) => Some((k.clone(), form.clone())),
                _ => None,
            })
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// The auditor calling, from the certificate (the authz layer put it in the
/// request); never from a request field.
fn auditor_of<T>(request: &Request<T>) -> Result<String, Status> {
    match request.extensions().get::<Principal>() {
        Some(p @ Principal::Auditor(_)) => Ok(p.to_string()),
        _ => Err(Status::permission_denied(
            "only auditors may read the audit log",
        )),
    }
}

fn store_status(e: StoreError) -> Status {
    if !matches!(e, StoreError::Proof(_)) {
        tracing::error!(error = %e, "audit store failure");
    }
    crate::status::store_status(&e, "the audit log is unavailable")
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
    pub fn new(gateway: Arc<Gateway>) -> AuditService {
        AuditService {
            gateway,
            policy_tables: Default::default(),
        }
    }

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

    /// Entry `seq`, the note commitment its details hold, and the note kept
    /// beside it (if the store has one).
    async fn noted_entry(
        &self,
        seq: u64,
    ) -> Result<(CanonicalEntry, String, Option<StoredNote>), Status> {
        if seq == 0 {
            return Err(Status::invalid_argument("seq starts at 1"));
        }
        let store = self.gateway.store.clone();
        let (leaf, stored) = blocking(move || {
            let leaf = store
                .audit_leaves(seq - 1, seq, 1)
                .map_err(store_status)?
                .pop();
            Ok((leaf, store.audit_note(seq).map_err(store_status)?))
        })
        .await?;
        let bytes = leaf
            .and_then(|l| l.entry)
            .ok_or_else(|| Status::not_found(format!("the log holds no entry {seq}")))?;
        let entry = CanonicalEntry::decode(&bytes)
            .map_err(|e| Status::data_loss(format!("entry {seq} cannot be decoded: {e}")))?;
        let commitment = COMMITMENT_KEYS
            .iter()
            .find_map(|k| entry.details.str(k))
            .ok_or_else(|| Status::not_found(format!("entry {seq} has no note beside it")))?
            .to_string();
        Ok((entry, commitment, stored))
    }

    fn subject_token(&self, id_number: &str) -> Result<String, Status> {
        let person = adapters::rules::parse_identity_number(id_number).map_err(|code| {
            Status::invalid_argument(format!("the identity number is not valid ({code})"))
        })?;
        Ok(auditor_pseudonyms(&self.gateway.keys).token(person.expose()))
    }
}

type ExportStream = Pin<Box<dyn Stream<Item = Result<proto::ExportChunk, Status>> + Send>>;

/// The caller's identity as the log names it.
fn caller<T>(request: &Request<T>) -> String {
    request
        .extensions()
        .get::<Principal>()
        .map(|p| p.to_string())
        .unwrap_or_default()
}

fn subject_tokens(entry: &CanonicalEntry) -> Vec<String> {
    entry.subjects.iter().map(|s| s.token.clone()).collect()
}

#[tonic::async_trait]
impl proto::audit_server::Audit for AuditService {
    async fn query(
        &self,
        request: Request<proto::AuditQuery>,
    ) -> Result<Response<proto::AuditPage>, Status> {
        let auditor = auditor_of(&request)?;
        let q = request.into_inner();
        let nonempty = |s: String| (!s.is_empty()).then_some(s);
        let limit = if q.page_size == 0 {
            100
        } else {
            q.page_size.min(1000)
        };
        // Which filters were used, by name: the entry of a query naming a
        // person says so, never with their values (caller text).
        let filters: Vec<&'static str> = [
            ("from_unix", q.from_unix != 0),
            ("to_unix", q.to_unix != 0),
            ("actor", !q.actor.is_empty()),
            ("action", !q.action.is_empty()),
            ("outcome", !q.outcome.is_empty()),
            ("kind", !q.kind.is_empty()),
            ("subject", !q.subject.is_empty()),
            ("subject_id_number", !q.subject_id_number.is_empty()),
            ("after_seq", q.after_seq != 0),
        ]
        .into_iter()
        .filter_map(|(name, used)| used.then_some(name))
        .collect();
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
            subject: subject.clone(),
            after_seq: q.after_seq,
            limit,
        };
        // A page ends early rather than grow past what a client decodes (an
        // entry of a bulk pull's page names thousands of persons), and is
        // read from the store a few entries at a time, so a page of large
        // entries is never held whole.
        let store = self.gateway.store.clone();
        let (rows, entries, cut) = blocking(move || {
            let (mut rows, mut entries, mut bytes) = (Vec::new(), Vec::new(), 0);
            let mut filter = filter;
            loop {
                let want = limit as usize - rows.len();
                filter.limit = want.min(QUERY_READ) as u32;
                let read = store.query_audit(&filter).map_err(store_status)?;
                let complete = read.len() < filter.limit as usize;
                for row in read {
                    let message = entry_message(&row);
                    bytes += prost::Message::encoded_len(&message);
                    if !entries.is_empty() && bytes > MESSAGE_BYTES {
                        return Ok((rows, entries, true));
                    }
                    filter.after_seq = row.seq;
                    entries.push(message);
                    rows.push(row);
                }
                if complete || rows.len() == limit as usize {
                    return Ok((rows, entries, false));
                }
            }
        })
        .await?;
        // A read of one person's entries is audited, chained to them, and
        // durable before the answer leaves (one entry per call: each page of
        // a paged read is a read). A query naming no one is not.
        if let Some(subject) = &subject {
            let entry = AuditQueried {
                auditor: &auditor,
                filters,
                entries: rows.len() as u64,
                subject,
            }
            .entry(&auditor);
            super::record(&self.gateway.store, vec![entry]).await?;
        }
        tracing::info!(
            auditor = %auditor,
            entries = rows.len(),
            about_a_person = subject.is_some(),
            "audit query"
        );
        let next = if cut || rows.len() as u32 == limit {
            rows.last().map(|r| r.seq).unwrap_or(0)
        } else {
            0
        };
        Ok(Response::new(proto::AuditPage {
            entries,
            next_after_seq: next,
        }))
    }

    async fn subject_report(
        &self,
        request: Request<proto::SubjectReportRequest>,
    ) -> Result<Response<proto::SubjectReportResponse>, Status> {
        let auditor = auditor_of(&request)?;
        let token = self.subject_token(&request.into_inner().id_number)?;
        let store = self.gateway.store.clone();
        let t = token.clone();
        let tables = self.policy_tables.clone();
        // The person's entries are read and checked a page at a time: an
        // entry of a bulk pull's page is large, and a person is named by
        // every full pull.
        let (items, problems, checked) = blocking(move || {
            // The log as the report begins: the policy tables cover it, and
            // the person's entries are read up to it.
            let size = store.audit_size().map_err(store_status)?;
            let tables = {
                let mut tables = tables.lock().unwrap_or_else(|p| p.into_inner());
                tables.catch_up(store.as_ref()).map_err(store_status)?;
                tables.by_version.clone()
            };
            let token = t;
            let (mut items, mut problems) = (Vec::new(), Vec::new());
            let (mut expected_prev, mut after, mut checked) = (0u64, 0u64, 0u64);
            let mut first = None;
            loop {
                let page = store
                    .audit_subject_entries(&token, after, REPORT_READ)
                    .map_err(store_status)?;
                let mut complete = page.len() < REPORT_READ;
                for s in &page {
                    if s.seq > size {
                        complete = true;
                        break;
                    }
                    after = s.seq;
                    checked += 1;
                    first.get_or_insert(s.seq);
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
                    if let Some(item) = report_item(&e, me.prev_seq, &tables, &mut problems) {
                        items.push(item);
                    }
                }
                if complete {
                    break;
                }
            }
            // Exports name no one but held the person's entries: listed,
            // outside the chain, when their checkpoint reached the person's
            // first entry.
            if let Some(first) = first {
                for s in &exports_since(store.as_ref(), first).map_err(store_status)? {
                    match s.decode() {
                        // Without a size (not written by this gateway) it is
                        // listed: an export is over-reported rather than hidden.
                        Ok(e) if tree_size(&e).is_none_or(|size| size >= first) => {
                            items.push(access_item(&e, 0));
                        }
                        Ok(_) => {}
                        Err(err) => {
                            problems.push(format!("entry {} cannot be decoded: {err}", s.seq))
                        }
                    }
                }
                items.sort_by_key(|i| i.seq);
            }
            Ok((items, problems, checked))
        })
        .await?;
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
            entries_checked: checked,
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

    async fn read_note(
        &self,
        request: Request<proto::ReadNoteRequest>,
    ) -> Result<Response<proto::Note>, Status> {
        let auditor = caller(&request);
        let seq = request.into_inner().seq;
        let (entry, commitment, stored) = self.noted_entry(seq).await?;
        let mut note = proto::Note {
            seq,
            commitment: commitment.clone(),
            ..Default::default()
        };
        let result = match stored {
            Some(StoredNote {
                erased: Some((at_ms, by)),
                ..
            }) => {
                note.erased = true;
                note.erased_at_unix_ms = at_ms;
                note.erased_by_seq = by;
                "erased"
            }
            Some(StoredNote {
                sealed: Some(sealed),
                ..
            }) => match notes::open(&self.gateway.keys, &commitment, &sealed) {
                Ok(opened) => {
                    note.text = opened.text;
                    note.commitment_ok = opened.commitment_ok;
                    "opened"
                }
                Err(e) => {
                    tracing::error!(seq, error = %e, "an audit note cannot be opened");
                    "unreadable"
                }
            },
            _ => "missing",
        };
        // The read is audited, chained to the persons of the entry, and
        // durable before the text leaves.
        let event = NoteRead {
            auditor: &auditor,
            seq,
            result,
            commitment_ok: note.commitment_ok,
            subjects: subject_tokens(&entry),
        }
        .entry(&auditor);
        super::record(&self.gateway.store, vec![event]).await?;
        tracing::info!(auditor = %auditor, seq, result, "audit note read");
        match result {
            "missing" => Err(Status::data_loss(format!(
                "the note of entry {seq} is missing from the store"
            ))),
            "unreadable" => Err(Status::data_loss(format!(
                "the note of entry {seq} cannot be opened (altered, moved, or its key is gone)"
            ))),
            _ => Ok(Response::new(note)),
        }
    }

    async fn erase_note(
        &self,
        request: Request<proto::EraseNoteRequest>,
    ) -> Result<Response<proto::EraseNoteResponse>, Status> {
        let auditor = caller(&request);
        let req = request.into_inner();
        let Some(reason) = ERASE_REASONS.iter().find(|r| **r == req.reason) else {
            return Err(Status::invalid_argument(format!(
                "reason must be one of: {}",
                ERASE_REASONS.join(", ")
            )));
        };
        let seq = req.seq;
        let (entry, _, _) = self.noted_entry(seq).await?;
        let erasure = NoteErased {
            auditor: &auditor,
            seq,
            reason,
            subjects: subject_tokens(&entry),
        }
        .entry(&auditor);
        let store = self.gateway.store.clone();
        let outcome =
            blocking(move || store.erase_audit_note(seq, erasure).map_err(store_status)).await?;
        let erasure_seq = match outcome {
            NoteErasure::Erased { erasure_seq } => {
                tracing::info!(auditor = %auditor, seq, erasure_seq, reason, "audit note erased");
                erasure_seq
            }
            // A retry after a lost answer: already done, nothing written.
            NoteErasure::AlreadyErased { erasure_seq } => erasure_seq,
            NoteErasure::NoNote => {
                return Err(Status::data_loss(format!(
                    "the note of entry {seq} is missing from the store"
                )));
            }
        };
        Ok(Response::new(proto::EraseNoteResponse { seq, erasure_seq }))
    }

    type ExportStream = ExportStream;

    async fn export(
        &self,
        request: Request<proto::ExportRequest>,
    ) -> Result<Response<Self::ExportStream>, Status> {
        let auditor = auditor_of(&request)?;
        let cp = self.checkpoint_now().await?;
        // Every person in the log is read: audited (naming no one, see
        // `AuditExported`) and durable before a leaf leaves. The entry comes
        // after the checkpoint, so it says exactly which entries were read.
        let entry = AuditExported {
            auditor: &auditor,
            tree_size: cp.size,
        }
        .entry(&auditor);
        super::record(&self.gateway.store, vec![entry]).await?;
        tracing::info!(auditor = %auditor, tree_size = cp.size, "audit export");
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
                // Messages of at most MESSAGE_BYTES (or one leaf).
                let mut chunk = proto::ExportChunk {
                    checkpoint: checkpoint.take(),
                    leaves: Vec::new(),
                };
                let mut bytes = 0;
                for l in page {
                    let leaf = proto::ExportedLeaf {
                        seq: l.seq,
                        leaf_hash: l.leaf_hash.to_vec(),
                        missing: l.entry.is_none(),
                        canonical: l.entry.unwrap_or_default(),
                    };
                    let size = leaf.canonical.len() + 64;
                    if !chunk.leaves.is_empty() && bytes + size > MESSAGE_BYTES {
                        if tx.send(Ok(std::mem::take(&mut chunk))).await.is_err() {
                            return;
                        }
                        bytes = 0;
                    }
                    bytes += size;
                    chunk.leaves.push(leaf);
                }
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

/// The `audit_exported` entries after `seq`, in seq order.
fn exports_since(
    store: &dyn crate::store::Store,
    seq: u64,
) -> Result<Vec<StoredAuditEntry>, StoreError> {
    let mut all = Vec::new();
    let mut after_seq = seq;
    loop {
        let page = store.query_audit(&AuditFilter {
            action: Some(AuditExported::ACTION.to_string()),
            after_seq,
            limit: 1000,
            ..Default::default()
        })?;
        let Some(last) = page.last() else {
            return Ok(all);
        };
        after_seq = last.seq;
        all.extend(page);
    }
}

/// The checkpoint size an `audit_exported` entry covered.
fn tree_size(e: &CanonicalEntry) -> Option<u64> {
    match e.details.get("tree_size") {
        Some(super::Value::U64(n)) => Some(*n),
        _ => None,
    }
}

/// The report line of an auditor's read (who, when, which read); `prev_seq`
/// is 0 for an export, which is outside the person's chain.
fn access_item(e: &CanonicalEntry, prev_seq: u64) -> proto::SubjectReportItem {
    proto::SubjectReportItem {
        seq: e.seq,
        at_unix_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        prev_seq,
        ..Default::default()
    }
}

/// The report line of an entry about the person: deliveries, look-ups,
/// re-identifications and auditors' reads of the person's entries (earlier
/// subject reports and queries; exports are added from outside the chain).
/// The fields of deliveries and look-ups are their policy version's forms
/// for the kinds concerned (entries written before `policy_recorded` existed
/// carry them inline); a version whose table the log lacks is a problem.
fn report_item(
    e: &CanonicalEntry,
    prev_seq: u64,
    tables: &HashMap<String, BTreeMap<String, String>>,
    problems: &mut Vec<String>,
) -> Option<proto::SubjectReportItem> {
    match e.action.as_str() {
        "records_delivered" | "person_looked_up" | "person_reidentified" => {}
        a if a == SubjectReported::ACTION || a == AuditQueried::ACTION => {
            return Some(access_item(e, prev_seq));
        }
        _ => return None,
    }
    let d = &e.details;
    let fields = match (d.get("fields"), d.str("field"), d.str("policy_version")) {
        (Some(inline), _, _) => forms_of(inline),
        (None, Some(f), _) => [(f.to_string(), "reidentified".to_string())].into(),
        (None, None, Some(version)) => match tables.get(version) {
            Some(table) => table
                .iter()
                .filter(|(name, _)| {
                    e.kinds.iter().any(|k| {
                        name.strip_prefix(k.as_str())
                            .is_some_and(|rest| rest.starts_with('.'))
                    })
                })
                .map(|(name, form)| (name.clone(), form.clone()))
                .collect(),
            None => {
                problems.push(format!(
                    "entry {} names policy version {version}, whose field table is not in the log",
                    e.seq
                ));
                BTreeMap::new()
            }
        },
        (None, None, None) => BTreeMap::new(),
    };
    Some(proto::SubjectReportItem {
        seq: e.seq,
        at_unix_ms: e.at_ms,
        actor: e.actor.clone(),
        action: e.action.clone(),
        purpose: d.str("purpose").unwrap_or_default().to_string(),
        case_number: d.str("case_number").unwrap_or_default().to_string(),
        kinds: e.kinds.clone(),
        fields: fields.into_iter().collect(),
        policy_version: d.str("policy_version").unwrap_or_default().to_string(),
        prev_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Value;

    fn entry(seq: u64, action: &str, kinds: &[&str], details: Value) -> CanonicalEntry {
        CanonicalEntry {
            seq,
            at_ms: 0,
            actor: "union/assistance".into(),
            action: action.into(),
            outcome: "ok".into(),
            kinds: kinds.iter().map(|k| k.to_string()).collect(),
            subjects: Vec::new(),
            details,
        }
    }

    fn map(pairs: &[(&str, Value)]) -> Value {
        Value::Map(
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn report_fields_come_from_the_policy_table_inline_or_missing() {
        let table: BTreeMap<String, String> = [
            ("social_insurance.name", "masked"),
            ("social_insurance.person_id", "pseudonymised"),
            ("social_insurance_extra.name", "kept"),
            ("housing.status", "kept"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .into();
        let tables: HashMap<String, BTreeMap<String, String>> =
            [("sha256:v1".to_string(), table)].into();
        let mut problems = Vec::new();

        // By version: only the kinds the entry concerned.
        let looked_up = entry(
            7,
            "person_looked_up",
            &["social_insurance"],
            map(&[("policy_version", Value::Str("sha256:v1".into()))]),
        );
        let item = report_item(&looked_up, 3, &tables, &mut problems).unwrap();
        let names: Vec<&str> = {
            let mut n: Vec<&str> = item.fields.keys().map(String::as_str).collect();
            n.sort();
            n
        };
        assert_eq!(
            names,
            ["social_insurance.name", "social_insurance.person_id"]
        );
        assert_eq!(item.fields["social_insurance.name"], "masked");
        assert_eq!(item.prev_seq, 3);
        assert!(problems.is_empty());

        // Written before policy_recorded existed: the forms are inline.
        let legacy = entry(
            8,
            "records_delivered",
            &["housing"],
            map(&[
                ("policy_version", Value::Str("sha256:old".into())),
                (
                    "fields",
                    map(&[("housing.status", Value::Str("generalised".into()))]),
                ),
            ]),
        );
        let item = report_item(&legacy, 7, &tables, &mut problems).unwrap();
        assert_eq!(item.fields["housing.status"], "generalised");
        assert!(problems.is_empty());

        // A version whose table the log lacks is reported, not guessed.
        let unknown = entry(
            9,
            "records_delivered",
            &["housing"],
            map(&[("policy_version", Value::Str("sha256:gone".into()))]),
        );
        let item = report_item(&unknown, 8, &tables, &mut problems).unwrap();
        assert!(item.fields.is_empty());
        assert_eq!(problems.len(), 1);
        assert!(problems[0].contains("entry 9") && problems[0].contains("sha256:gone"));

        // Auditors' reads of the person are lines, with who and the chain.
        for action in ["subject_report", "audit_queried"] {
            let mut read = entry(11, action, &[], map(&[]));
            read.actor = "auditor/compliance".into();
            let item = report_item(&read, 9, &tables, &mut problems).unwrap();
            assert_eq!(
                (item.actor.as_str(), item.action.as_str(), item.prev_seq),
                ("auditor/compliance", action, 9)
            );
        }
        assert_eq!(problems.len(), 1);

        // Other actions are not report lines.
        assert!(
            report_item(
                &entry(10, "denied", &[], map(&[])),
                9,
                &tables,
                &mut problems
            )
            .is_none()
        );
    }
}
