//! `AgencyIngest.Push`: agencies stream batches of their native export; each
//! batch goes through the adapter of the agency named in the caller's
//! certificate, is sealed and committed atomically, and is answered with one
//! receipt once durable. A bad row is rejected on its own; a bad batch is
//! rejected whole with a stable code; neither ends the stream.

use crate::Gateway;
use crate::audit::{AuditEvent, BatchPushed};
use crate::identity::Principal;
use crate::keys::Keys;
use crate::proto::{self, BatchOutcome, NativeFormat};
use crate::store::{BatchWrite, CommitOutcome, Receipt, RecordWrite, Rejection, StoreError};
use adapters::{Agency, Format, Record};
use ring::digest;
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

pub struct IngestService {
    pub gateway: Arc<Gateway>,
}

type ReceiptStream = Pin<Box<dyn Stream<Item = Result<proto::BatchReceipt, Status>> + Send>>;

#[tonic::async_trait]
impl proto::agency_ingest_server::AgencyIngest for IngestService {
    type PushStream = ReceiptStream;

    async fn push(
        &self,
        request: Request<Streaming<proto::PushBatch>>,
    ) -> Result<Response<Self::PushStream>, Status> {
        // The authz layer admits only agencies here; the agency, and so the
        // adapter, comes from the certificate and from nowhere else.
        let agency = match request.extensions().get::<Principal>() {
            Some(Principal::Agency(a)) => *a,
            _ => return Err(Status::permission_denied("only agencies may push")),
        };
        let mut batches = request.into_inner();
        let gateway = self.gateway.clone();
        // One batch in flight per stream: receipts come back in order, and a
        // fast pusher is slowed to the speed of durable commits.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            while let Some(next) = batches.next().await {
                let batch = match next {
                    Ok(b) => b,
                    Err(status) => {
                        // E.g. a batch over the message size limit: the agency is told
                        // why; batches acknowledged before stay committed.
                        tracing::warn!(%agency, code = ?status.code(), "push stream broke");
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                let gw = gateway.clone();
                let result = tokio::task::spawn_blocking(move || process_batch(&gw, agency, batch))
                    .await
                    .unwrap_or_else(|_| Err(Status::internal("batch processing failed")));
                let stop = result.is_err();
                if tx.send(result).await.is_err() || stop {
                    break;
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }
}

fn native_format(f: i32) -> Option<Format> {
    match NativeFormat::try_from(f).ok()? {
        NativeFormat::JsonLines => Some(Format::JsonLines),
        NativeFormat::CsvGbk => Some(Format::CsvGbk),
        NativeFormat::CsvUtf8Bom => Some(Format::CsvUtf8Bom),
        NativeFormat::Unspecified => None,
    }
}

/// SHA-256 over the batch's format, header and rows, length-prefixed, to tell a
/// re-send of the same batch from a batch id reused for different content.
fn content_hash(batch: &proto::PushBatch) -> [u8; 32] {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(&batch.format.to_be_bytes());
    for part in std::iter::once(&batch.header).chain(batch.rows.iter()) {
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part);
    }
    ctx.finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

fn valid_batch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
}

/// The additional data that binds a sealed record to its row.
pub fn record_aad(kind: &str, key_hash: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(kind.len() + 1 + key_hash.len());
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0x1f);
    aad.extend_from_slice(key_hash);
    aad
}

/// Seals a canonical record for storage: keyed hashes for its keys, the record
/// itself encrypted. Nothing raw leaves this function.
pub fn seal_record(gateway: &Gateway, record: &Record) -> RecordWrite {
    seal_record_with(&gateway.keys, record)
}

/// [`seal_record`] with the given keys (also used to re-index stored records,
/// [`crate::rotation`]).
pub fn seal_record_with(keys: &Keys, record: &Record) -> RecordWrite {
    let kind = record.kind.id();
    let key_hash = keys.index_hash(
        &format!("record/{kind}"),
        record.source_key.expose().as_bytes(),
    );
    let person_index = record
        .person
        .as_ref()
        .map(|p| keys.index_hash("person", p.expose().as_bytes()));
    let plaintext = record.to_binary();
    let sealed = keys.seal(&record_aad(kind, &key_hash), &plaintext);
    RecordWrite {
        kind,
        key_hash,
        person_index,
        enterprise: record.enterprise.as_ref().map(|c| c.as_str().to_string()),
        changed_at: record.changed_at.0,
        cancel: record.change == adapters::ChangeType::Cancel,
        sealed,
    }
}

fn rejected(batch: &proto::PushBatch, code: &str, message: String) -> proto::BatchReceipt {
    proto::BatchReceipt {
        batch_id: batch.batch_id.clone(),
        outcome: BatchOutcome::Rejected as i32,
        rows_received: batch.rows.len() as u64,
        batch_error: Some(proto::BatchError {
            code: code.to_string(),
            message,
        }),
        first_row: batch.first_row.max(1),
        ..Default::default()
    }
}

fn to_proto(batch: &proto::PushBatch, outcome: BatchOutcome, r: Receipt) -> proto::BatchReceipt {
    proto::BatchReceipt {
        batch_id: batch.batch_id.clone(),
        outcome: outcome as i32,
        rows_received: r.rows_received,
        accepted: r.accepted,
        superseded: r.superseded,
        rejections: r
            .rejections
            .into_iter()
            .map(|x| proto::RowRejection {
                row: x.row,
                field: x.field,
                code: x.code,
                message: x.message,
            })
            .collect(),
        batch_error: None,
        first_row: batch.first_row.max(1),
    }
}

fn store_failure(e: StoreError) -> Status {
    tracing::error!(error = %e, "batch commit failed");
    Status::unavailable("the batch could not be stored; it was not applied, re-send it")
}

/// Validates, seals and commits one batch. Runs on a blocking thread.
pub fn process_batch(
    gateway: &Gateway,
    agency: Agency,
    batch: proto::PushBatch,
) -> Result<proto::BatchReceipt, Status> {
    let span = tracing::info_span!(
        "batch",
        agency = %agency,
        batch_id = %batch.batch_id,
        rows = batch.rows.len(),
        accepted = tracing::field::Empty,
        rejected = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let _enter = span.enter();

    let refuse = |code: &str, message: String| -> Result<proto::BatchReceipt, Status> {
        tracing::warn!(code, "batch rejected whole");
        span.record("outcome", "rejected");
        let entry = BatchPushed {
            agency: agency.id(),
            batch_id: &batch.batch_id,
            result: "rejected",
            rows: batch.rows.len() as u64,
            accepted: 0,
            superseded: 0,
            rejected_by_code: Default::default(),
            batch_error: Some(code),
        }
        .entry(&format!("agency/{agency}"));
        gateway
            .store
            .append_audit(&[entry])
            .map_err(store_failure)?;
        Ok(rejected(&batch, code, message))
    };

    if !valid_batch_id(&batch.batch_id) {
        return refuse(
            "bad_batch_id",
            "batch_id must be 1–128 characters of A–Z, a–z, 0–9, '-', '_', '.', ':'".into(),
        );
    }
    let Some(format) = native_format(batch.format) else {
        return refuse(
            "missing_format",
            "the batch does not name its native format".into(),
        );
    };
    let hash = content_hash(&batch);
    if let Some(done) = gateway
        .store
        .find_batch(agency.id(), &batch.batch_id)
        .map_err(store_failure)?
    {
        return duplicate(&batch, &span, hash, done);
    }
    let Some(adapter) = adapters::adapter_for(agency) else {
        return refuse(
            "no_adapter",
            format!("no adapter is installed for agency {agency} yet"),
        );
    };
    let header = (!batch.header.is_empty()).then_some(batch.header.as_slice());
    let parser = match adapter.open_batch(format, header) {
        Ok(p) => p,
        Err(e) => return refuse(e.code(), e.to_string()),
    };

    let mut records = Vec::with_capacity(batch.rows.len());
    let mut rejections = Vec::new();
    for (i, row) in batch.rows.iter().enumerate() {
        match parser.parse_row(row) {
            Ok(record) => records.push(seal_record(gateway, &record)),
            Err(errors) => rejections.extend(errors.into_iter().map(|e| Rejection {
                row: (i + 1) as u32,
                field: e.field.to_string(),
                code: e.code.as_str().to_string(),
                message: e.message,
            })),
        }
    }
    let receipt = Receipt {
        rows_received: batch.rows.len() as u64,
        accepted: records.len() as u64,
        superseded: 0,
        rejections,
    };
    let actor = format!("agency/{agency}");
    let audit = |r: &Receipt| {
        BatchPushed {
            agency: agency.id(),
            batch_id: &batch.batch_id,
            result: "committed",
            rows: r.rows_received,
            accepted: r.accepted,
            superseded: r.superseded,
            rejected_by_code: r.rejected_by_code(),
            batch_error: None,
        }
        .entry(&actor)
    };
    let outcome = gateway
        .store
        .commit_batch(BatchWrite {
            agency: agency.id(),
            batch_id: &batch.batch_id,
            content_hash: hash,
            records,
            receipt,
            audit: &audit,
        })
        .map_err(store_failure)?;
    match outcome {
        CommitOutcome::Committed { receipt, head } => {
            gateway.feed.send_replace(head);
            span.record("accepted", receipt.accepted);
            span.record("rejected", receipt.rejections.len());
            span.record("outcome", "committed");
            tracing::info!(
                accepted = receipt.accepted,
                superseded = receipt.superseded,
                rejected_rows = receipt.rejections.len(),
                "batch committed"
            );
            Ok(to_proto(&batch, BatchOutcome::Committed, receipt))
        }
        CommitOutcome::AlreadyCommitted(done) => duplicate(&batch, &span, hash, done),
    }
}

fn duplicate(
    batch: &proto::PushBatch,
    span: &tracing::Span,
    hash: [u8; 32],
    done: crate::store::StoredBatch,
) -> Result<proto::BatchReceipt, Status> {
    if done.content_hash != hash {
        span.record("outcome", "rejected");
        return Ok(rejected(
            batch,
            "batch_id_reused",
            "this batch id was already committed with different content; use a new batch id".into(),
        ));
    }
    span.record("outcome", "duplicate");
    tracing::info!("batch re-sent; returning the original receipt");
    Ok(to_proto(batch, BatchOutcome::Duplicate, done.receipt))
}
