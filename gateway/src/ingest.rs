//! `AgencyIngest.Push`: agencies stream batches of their native export; each
//! batch goes through the adapter of the agency named in the caller's
//! certificate, is sealed and committed atomically, and is answered with one
//! receipt once durable. A bad row is rejected on its own; a bad batch is
//! rejected whole with a stable code; neither ends the stream.
//!
//! Every size an agency controls is bounded before anything grows with it:
//! the message size by tonic (before it is buffered), rows per batch and
//! bytes per row by a scan of the message's wire form before its rows are
//! decoded ([`PushCodec`]), the rejections a receipt lists by a cap (counts
//! by code cover them all), batches per second by a token bucket per agency.
//! A batch id enters spans, logs and the audit log only once it is valid,
//! and it is not valid if it holds a personal identifier.

use crate::Gateway;
use crate::audit::{AuditEvent, BatchPushed};
use crate::identity::Principal;
use crate::metrics::{BatchCommitted, BatchDuplicate, BatchRejected, Commit, Refused};
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
    /// Each agency's batches per second ([`crate::limits::LimitsConfig::batch_rate_per_second`]).
    batch_rate: crate::limits::TokenBuckets,
    /// Refusals of the batch rate: the first of a window audited, the rest counted.
    refusals: Arc<crate::audit::repeats::Repeats<crate::limits::RefusedCall>>,
}

impl IngestService {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let limits = &gateway.limits;
        IngestService {
            batch_rate: crate::limits::TokenBuckets::new(
                limits.batch_rate_per_second,
                limits.batch_burst,
            ),
            refusals: crate::limits::refused_calls(
                gateway.store.clone(),
                std::time::Duration::from_secs(limits.refusal_window_secs),
            ),
            gateway,
        }
    }
}

type ReceiptStream = Pin<Box<dyn Stream<Item = Result<proto::BatchReceipt, Status>> + Send>>;

/// The gRPC path of `Push`.
pub const PUSH_PATH: &str = "/exchange.v1.AgencyIngest/Push";

impl IngestService {
    async fn push(
        self: Arc<Self>,
        request: Request<Streaming<Incoming>>,
    ) -> Result<Response<ReceiptStream>, Status> {
        // The authz layer admits only agencies here; the agency, and so the
        // adapter, comes from the certificate and from nowhere else.
        let agency = match request.extensions().get::<Principal>() {
            Some(Principal::Agency(a)) => *a,
            _ => return Err(Status::permission_denied("only agencies may push")),
        };
        let mut batches = request.into_inner();
        let service = self.clone();
        // One batch in flight per stream: receipts come back in order, and a
        // fast pusher is slowed to the speed of durable commits.
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            let actor = format!("agency/{agency}");
            while let Some(next) = batches.next().await {
                let batch = match next {
                    Ok(b) => b,
                    Err(status) => {
                        // E.g. a batch over the message size limit or a body cut
                        // short: the agency is told why (the caller's error, as on
                        // every service); batches acknowledged before stay committed.
                        let status = crate::status::decode_failure_as_invalid(status);
                        tracing::warn!(%agency, code = ?status.code(), "push stream broke");
                        let _ = tx.send(Err(status)).await;
                        break;
                    }
                };
                if let Err(wait) = service.batch_rate.take(&actor) {
                    let status = service.batch_rate_refusal(&actor, wait).await;
                    let _ = tx.send(Err(status)).await;
                    break;
                }
                let gw = service.gateway.clone();
                let result = tokio::task::spawn_blocking(move || match batch {
                    Incoming::Batch(batch) => process_batch(&gw, agency, batch),
                    Incoming::OverLimit(over) => refuse_over_limit(&gw, agency, over),
                })
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

    /// `RESOURCE_EXHAUSTED` with a retry hint, for a batch over the agency's
    /// batch rate; audited (repeats folded).
    async fn batch_rate_refusal(&self, actor: &str, wait: std::time::Duration) -> Status {
        let limits = &self.gateway.limits;
        let message = format!(
            "{actor} is over its batch rate ({} batches/s, burst {}); retry in {} ms",
            limits.batch_rate_per_second,
            limits.batch_burst,
            wait.as_millis().max(1)
        );
        tracing::warn!(caller = actor, code = "batch_rate", "batch refused");
        self.gateway.metrics.record(Refused {
            rpc: PUSH_PATH,
            code: "batch_rate",
        });
        let recorded = crate::limits::record_refusal(
            &self.refusals,
            &self.gateway.store,
            actor,
            PUSH_PATH,
            "batch_rate",
            &message,
            None,
        )
        .await;
        match recorded {
            Ok(()) => crate::limits::exhausted(message, wait.as_millis().max(1) as u64),
            Err(status) => status,
        }
    }
}

/// The ingest service as served: `Push` decoded by [`PushCodec`] (limits
/// checked before rows are decoded), every other path to the generated
/// service (which answers `UNIMPLEMENTED`).
#[derive(Clone)]
pub struct IngestRoutes {
    service: Arc<IngestService>,
    limits: BatchLimits,
    max_message_bytes: usize,
}

impl IngestRoutes {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let l = &gateway.limits;
        IngestRoutes {
            limits: BatchLimits {
                max_rows: l.max_rows_per_batch,
                max_row_bytes: l.max_row_bytes,
            },
            max_message_bytes: l.max_message_bytes,
            service: Arc::new(IngestService::new(gateway)),
        }
    }
}

impl tonic::server::NamedService for IngestRoutes {
    const NAME: &'static str = "exchange.v1.AgencyIngest";
}

type RouteFuture = Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;

impl tower::Service<http::Request<tonic::body::Body>> for IngestRoutes {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = RouteFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        if request.uri().path() != PUSH_PATH {
            return Box::pin(async { Ok(Status::unimplemented("no such method").into_http()) });
        }
        let route = PushRoute(self.service.clone());
        let codec = PushCodec(self.limits);
        let max = self.max_message_bytes;
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(codec).apply_max_message_size_config(Some(max), None);
            Ok(grpc.streaming(route, request).await)
        })
    }
}

#[derive(Clone)]
struct PushRoute(Arc<IngestService>);

impl tonic::server::StreamingService<Incoming> for PushRoute {
    type Response = proto::BatchReceipt;
    type ResponseStream = ReceiptStream;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<ReceiptStream>, Status>> + Send>>;

    fn call(&mut self, request: Request<Streaming<Incoming>>) -> Self::Future {
        Box::pin(self.0.clone().push(request))
    }
}

/// The size limits a batch is held to before its rows are decoded.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    pub max_rows: u64,
    pub max_row_bytes: usize,
}

/// A push message as the gateway takes it: a batch, or a batch over a size
/// limit known only by what the scan of its wire form read (its rows never
/// decoded, so never allocated).
#[derive(Debug)]
pub enum Incoming {
    Batch(proto::PushBatch),
    OverLimit(OverLimit),
}

/// A batch refused for its size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverLimit {
    /// The batch id, if it is a valid one (else empty: never echoed or logged).
    pub batch_id: String,
    pub first_row: u64,
    pub rows: u64,
    /// `too_many_rows`, `row_too_large` or `header_too_large`.
    pub code: &'static str,
    pub message: String,
}

/// Decodes push messages, checking their size limits on the wire form
/// first; encodes receipts as prost does.
#[derive(Clone, Copy)]
struct PushCodec(BatchLimits);

impl tonic::codec::Codec for PushCodec {
    type Encode = proto::BatchReceipt;
    type Decode = Incoming;
    type Encoder = tonic_prost::ProstEncoder<proto::BatchReceipt>;
    type Decoder = PushCodec;

    fn encoder(&mut self) -> Self::Encoder {
        tonic_prost::ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        *self
    }
}

impl tonic::codec::Decoder for PushCodec {
    type Item = Incoming;
    type Error = Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Incoming>, Status> {
        use bytes::Buf as _;
        let message = src.copy_to_bytes(src.remaining());
        if let Some(over) = scan(&message, self.0)? {
            return Ok(Some(Incoming::OverLimit(over)));
        }
        let batch = <proto::PushBatch as prost::Message>::decode(message)
            .map_err(|_| crate::status::undecodable())?;
        Ok(Some(Incoming::Batch(batch)))
    }
}

/// Reads a `PushBatch`'s wire form without decoding it: counts its rows and
/// measures them and the header against `limits`. `Ok(None)` when within
/// them; `Err` when the bytes are not a protobuf message.
pub fn scan(message: &[u8], limits: BatchLimits) -> Result<Option<OverLimit>, Status> {
    let malformed = crate::status::undecodable;
    let varint = |pos: &mut usize| -> Option<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let b = *message.get(*pos)?;
            *pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    };
    let (mut pos, mut rows, mut first_row) = (0usize, 0u64, 0u64);
    let mut batch_id: &[u8] = &[];
    let mut over: Option<(&'static str, String)> = None;
    while pos < message.len() {
        let key = varint(&mut pos).ok_or_else(malformed)?;
        let (field, wire) = (key >> 3, key & 7);
        match wire {
            0 => {
                let v = varint(&mut pos).ok_or_else(malformed)?;
                if field == 5 {
                    first_row = v;
                }
            }
            1 => pos = pos.checked_add(8).ok_or_else(malformed)?,
            5 => pos = pos.checked_add(4).ok_or_else(malformed)?,
            2 => {
                let len = usize::try_from(varint(&mut pos).ok_or_else(malformed)?)
                    .map_err(|_| malformed())?;
                let end = pos.checked_add(len).ok_or_else(malformed)?;
                let value = message.get(pos..end).ok_or_else(malformed)?;
                match field {
                    1 => batch_id = value,
                    3 if len > limits.max_row_bytes && over.is_none() => {
                        over = Some((
                            "header_too_large",
                            format!(
                                "the CSV header is over the limit of {} bytes (max_row_bytes)",
                                limits.max_row_bytes
                            ),
                        ));
                    }
                    4 => {
                        rows += 1;
                        if len > limits.max_row_bytes && over.is_none() {
                            over = Some((
                                "row_too_large",
                                format!(
                                    "row {rows} is over the limit of {} bytes (max_row_bytes)",
                                    limits.max_row_bytes
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
                pos = end;
            }
            _ => return Err(malformed()),
        }
    }
    if pos != message.len() {
        return Err(malformed());
    }
    if rows > limits.max_rows && over.is_none() {
        over = Some((
            "too_many_rows",
            format!(
                "the batch has {rows} rows, over the limit of {} (max_rows_per_batch)",
                limits.max_rows
            ),
        ));
    }
    Ok(over.map(|(code, message)| OverLimit {
        batch_id: std::str::from_utf8(batch_id)
            .ok()
            .filter(|id| valid_batch_id(id))
            .unwrap_or_default()
            .to_string(),
        first_row,
        rows,
        code,
        message,
    }))
}

/// Answers a batch over a size limit: rejected whole, audited, the stream
/// goes on.
fn refuse_over_limit(
    gateway: &Gateway,
    agency: Agency,
    over: OverLimit,
) -> Result<proto::BatchReceipt, Status> {
    tracing::warn!(%agency, code = over.code, rows = over.rows, "batch over a size limit rejected whole");
    let entry = BatchPushed {
        agency: agency.id(),
        batch_id: &over.batch_id,
        result: "rejected",
        rows: over.rows,
        accepted: 0,
        superseded: 0,
        rejected_by_code: Default::default(),
        batch_error: Some(over.code),
    }
    .entry(&format!("agency/{agency}"));
    gateway
        .store
        .append_audit(&[entry])
        .map_err(store_failure)?;
    let (code, rows) = (over.code, over.rows);
    gateway.metrics.record(BatchRejected { agency, code, rows });
    Ok(proto::BatchReceipt {
        batch_id: over.batch_id,
        outcome: BatchOutcome::Rejected as i32,
        rows_received: over.rows,
        batch_error: Some(proto::BatchError {
            code: over.code.to_string(),
            message: over.message,
        }),
        first_row: over.first_row.max(1),
        ..Default::default()
    })
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

/// Why a batch id may not be used (nor repeated in a receipt, a span or the
/// audit log): its code and fixed message, never quoting it. A batch id is
/// 1–128 characters of `[A-Za-z0-9._:-]` and holds no personal identifier
/// ([`adapters::rules::find_identifier`]: an identity or mobile number as a
/// whole run of digits), since a valid one is recorded as sent.
fn batch_id_problem(id: &str) -> Option<(&'static str, &'static str)> {
    let form = !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if !form {
        return Some((
            "bad_batch_id",
            "batch_id must be 1–128 characters of A–Z, a–z, 0–9, '-', '_', '.', ':'",
        ));
    }
    if adapters::rules::find_identifier(id).is_some() {
        return Some((
            "batch_id_holds_identifier",
            "batch_id holds a run of digits that is an identity or mobile number; \
             batch ids are recorded as sent, so build them from dates, counters or random characters",
        ));
    }
    None
}

fn valid_batch_id(id: &str) -> bool {
    batch_id_problem(id).is_none()
}

/// Seals a canonical record for storage with the gateway's keys
/// ([`crate::sealing::seal_record`]).
pub fn seal_record(gateway: &Gateway, record: &Record) -> RecordWrite {
    crate::sealing::seal_record(&gateway.keys, record)
}

fn rejected(batch: &proto::PushBatch, code: &str, message: String) -> proto::BatchReceipt {
    proto::BatchReceipt {
        batch_id: shown_batch_id(batch).to_string(),
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

/// The batch id as it may be repeated (in a receipt, a span, the audit
/// log): itself once valid, empty otherwise.
fn shown_batch_id(batch: &proto::PushBatch) -> &str {
    if valid_batch_id(&batch.batch_id) {
        &batch.batch_id
    } else {
        ""
    }
}

fn to_proto(batch: &proto::PushBatch, outcome: BatchOutcome, r: Receipt) -> proto::BatchReceipt {
    let rejected_by_code = r.rejected_by_code().into_iter().collect();
    proto::BatchReceipt {
        batch_id: batch.batch_id.clone(),
        rejected_by_code,
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
    crate::status::store_status(
        &e,
        // A connection to the database lost while committing leaves the
        // outcome unknown to the gateway too; a re-send is safe either way.
        "the batch's commit did not complete; it may not have been applied: re-send it with the same batch id (it is applied at most once)",
    )
}

/// Validates, seals and commits one batch. Runs on a blocking thread.
pub fn process_batch(
    gateway: &Gateway,
    agency: Agency,
    batch: proto::PushBatch,
) -> Result<proto::BatchReceipt, Status> {
    // Only a valid batch id enters the span (and so logs and traces).
    let span = tracing::info_span!(
        "batch",
        agency = %agency,
        batch_id = %shown_batch_id(&batch),
        rows = batch.rows.len(),
        accepted = tracing::field::Empty,
        rejected = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    let _enter = span.enter();

    let refuse = |code: &'static str, message: String| -> Result<proto::BatchReceipt, Status> {
        tracing::warn!(code, "batch rejected whole");
        span.record("outcome", "rejected");
        let entry = BatchPushed {
            agency: agency.id(),
            batch_id: shown_batch_id(&batch),
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
        let rows = batch.rows.len() as u64;
        gateway.metrics.record(BatchRejected { agency, code, rows });
        Ok(rejected(&batch, code, message))
    };

    if let Some((code, message)) = batch_id_problem(&batch.batch_id) {
        return refuse(code, message.into());
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
        return duplicate(gateway, agency, &batch, &span, hash, done);
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
    // The first rejections are listed; all are counted by code.
    let listed = gateway.limits.max_rejections_listed;
    let mut rejections = Vec::new();
    let mut rejected_counts = std::collections::BTreeMap::<String, u64>::new();
    let mut rejected_rows = crate::metrics::RejectedRows::default();
    for (i, row) in batch.rows.iter().enumerate() {
        match parser.parse_row(row) {
            Ok(record) => records.push(seal_record(gateway, &record)),
            Err(errors) => {
                rejected_rows.add(&errors);
                for e in errors {
                    *rejected_counts
                        .entry(e.code.as_str().to_string())
                        .or_insert(0) += 1;
                    if rejections.len() < listed {
                        rejections.push(Rejection {
                            row: (i + 1) as u32,
                            field: e.field.to_string(),
                            code: e.code.as_str().to_string(),
                            message: e.message,
                        });
                    }
                }
            }
        }
    }
    let receipt = Receipt {
        rows_received: batch.rows.len() as u64,
        accepted: records.len() as u64,
        superseded: 0,
        rejections,
        rejected_counts,
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
    let write = BatchWrite {
        agency: agency.id(),
        batch_id: &batch.batch_id,
        content_hash: hash,
        records,
        receipt,
        audit: &audit,
    };
    let outcome = gateway
        .metrics
        .time_commit(Commit::Batch, || gateway.store.commit_batch(write))
        .map_err(store_failure)?;
    match outcome {
        CommitOutcome::Committed { receipt, head } => {
            // Never backwards: on a shared store the head may have been
            // moved past this commit already by one made elsewhere.
            gateway.feed.send_if_modified(|seen| {
                let moved = head > *seen;
                *seen = (*seen).max(head);
                moved
            });
            let (receipt_ref, rejected) = (&receipt, &rejected_rows);
            gateway.metrics.record(BatchCommitted {
                agency,
                receipt: receipt_ref,
                rejected,
            });
            span.record("accepted", receipt.accepted);
            span.record("rejected", receipt.rejected_by_code().values().sum::<u64>());
            span.record("outcome", "committed");
            tracing::info!(
                accepted = receipt.accepted,
                superseded = receipt.superseded,
                rejections = receipt.rejected_by_code().values().sum::<u64>(),
                "batch committed"
            );
            Ok(to_proto(&batch, BatchOutcome::Committed, receipt))
        }
        CommitOutcome::AlreadyCommitted(done) => {
            duplicate(gateway, agency, &batch, &span, hash, done)
        }
    }
}

fn duplicate(
    gateway: &Gateway,
    agency: Agency,
    batch: &proto::PushBatch,
    span: &tracing::Span,
    hash: [u8; 32],
    done: crate::store::StoredBatch,
) -> Result<proto::BatchReceipt, Status> {
    if done.content_hash != hash {
        let (code, rows) = ("batch_id_reused", batch.rows.len() as u64);
        gateway.metrics.record(BatchRejected { agency, code, rows });
        span.record("outcome", "rejected");
        return Ok(rejected(
            batch,
            "batch_id_reused",
            "this batch id was already committed with different content; use a new batch id".into(),
        ));
    }
    gateway.metrics.record(BatchDuplicate { agency });
    span.record("outcome", "duplicate");
    tracing::info!("batch re-sent; returning the original receipt");
    Ok(to_proto(batch, BatchOutcome::Duplicate, done.receipt))
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message as _;

    const LIMITS: BatchLimits = BatchLimits {
        max_rows: 3,
        max_row_bytes: 8,
    };

    fn encoded(id: &str, header: &[u8], rows: &[&[u8]]) -> Vec<u8> {
        proto::PushBatch {
            batch_id: id.into(),
            format: 2,
            header: header.to_vec(),
            rows: rows.iter().map(|r| r.to_vec()).collect(),
            first_row: 7,
        }
        .encode_to_vec()
    }

    /// The scan of the wire form agrees with prost on what is within the
    /// limits, names the limit a batch breaks, and refuses what is not a
    /// protobuf message at all.
    #[test]
    fn the_wire_scan_finds_every_size_over_its_limit() {
        assert_eq!(
            scan(&encoded("a", b"h", &[b"1", b"2", b"3"]), LIMITS).unwrap(),
            None
        );
        let over = scan(&encoded("a", b"h", &[b"1", b"2", b"3", b"4"]), LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(
            (over.code, over.rows, over.first_row),
            ("too_many_rows", 4, 7)
        );
        assert_eq!(over.batch_id, "a");
        let over = scan(&encoded("b", b"h", &[b"123456789"]), LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(over.code, "row_too_large");
        let over = scan(&encoded("c", b"123456789", &[]), LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(over.code, "header_too_large");
        // An invalid batch id is not carried into the refusal.
        let over = scan(&encoded("张 伟", b"h", &[b"1", b"2", b"3", b"4"]), LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(over.batch_id, "");
        // Nor one holding an identity number.
        let id = "hrss-340208197803169486";
        let over = scan(&encoded(id, b"h", &[b"1", b"2", b"3", b"4"]), LIMITS)
            .unwrap()
            .unwrap();
        assert_eq!(over.batch_id, "");
        // Truncated or impossible wire forms.
        let mut cut = encoded("a", b"h", &[b"1", b"2"]);
        cut.pop();
        assert!(scan(&cut, LIMITS).is_err());
        assert!(scan(&[0x0b], LIMITS).is_err());
        assert!(
            scan(
                &[
                    0x22, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01
                ],
                LIMITS
            )
            .is_err()
        );
    }

    #[test]
    fn batch_ids_of_dates_and_counters_pass_identifiers_do_not() {
        for ok in [
            "2026-12-05T10:00:00.batch-000123",
            "hrss-20261205-000123",
            "20261205100000123456",
            "b-1",
            "550e8400-e29b-41d4-a716-446655440000",
        ] {
            assert_eq!(batch_id_problem(ok), None, "{ok}");
        }
        for (id, code) in [
            ("batch-340208197803169486", "batch_id_holds_identifier"),
            ("11010519491231002x", "batch_id_holds_identifier"),
            ("b:13812345678", "batch_id_holds_identifier"),
            ("b 1", "bad_batch_id"),
        ] {
            let (got, message) = batch_id_problem(id).unwrap();
            assert_eq!(got, code, "{id}");
            assert!(!message.contains(id), "{message}");
        }
    }
}
