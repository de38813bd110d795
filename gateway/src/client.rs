//! Client side of the gateway's API, shared by the CLI (`push`, `pull`) and the
//! tests: mutual-TLS channels from dev identities or explicit files, streaming an
//! export file in batches without holding it in memory, and following a pull.

use crate::proto::{self, NativeFormat};
use adapters::Format;
use anyhow::{Context as _, bail};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use tokio_stream::StreamExt;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

/// The files a client authenticates with.
#[derive(Debug, Clone)]
pub struct ClientTls {
    pub ca: PathBuf,
    /// Certificate and key; `None` connects without a client certificate.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// Name the server certificate must carry.
    pub server_name: String,
}

impl ClientTls {
    /// A dev identity such as `agency/hrss` from a `certs init` directory.
    pub fn dev(certs_dir: &Path, identity: &str) -> anyhow::Result<ClientTls> {
        let id = crate::pki::IdentityName::parse(identity)?;
        let stem = certs_dir.join(id.stem());
        Ok(ClientTls {
            ca: certs_dir.join("ca.pem"),
            identity: Some((stem.with_extension("pem"), stem.with_extension("key"))),
            server_name: "localhost".into(),
        })
    }
}

/// Opens a mutual-TLS channel to `addr` (`https://host:port` or `host:port`).
pub async fn connect(addr: &str, tls: &ClientTls) -> anyhow::Result<Channel> {
    let read = |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
    let mut config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
        .domain_name(tls.server_name.clone());
    if let Some((cert, key)) = &tls.identity {
        config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    let uri = if addr.contains("://") {
        addr.to_string()
    } else {
        format!("https://{addr}")
    };
    let channel = Endpoint::from_shared(uri)?
        .tls_config(config)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .connect()
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    Ok(channel)
}

/// Guesses an export's native format: `.jsonl`/`.json` are JSON Lines; a CSV that
/// starts with a UTF-8 byte-order mark is UTF-8, any other CSV is GBK.
pub fn detect_format(path: &Path) -> anyhow::Result<Format> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "jsonl" | "json" | "ndjson" => Ok(Format::JsonLines),
        "csv" | "txt" => {
            let mut head = [0u8; 3];
            let n = std::fs::File::open(path)?.read(&mut head)?;
            Ok(if n == 3 && head == [0xEF, 0xBB, 0xBF] {
                Format::CsvUtf8Bom
            } else {
                Format::CsvGbk
            })
        }
        _ => bail!(
            "cannot tell the format of {}; pass --format",
            path.display()
        ),
    }
}

pub fn native(format: Format) -> NativeFormat {
    match format {
        Format::JsonLines => NativeFormat::JsonLines,
        Format::CsvGbk => NativeFormat::CsvGbk,
        Format::CsvUtf8Bom => NativeFormat::CsvUtf8Bom,
    }
}

/// Reads raw rows (without line terminators) from an export. For CSV, a quoted
/// field may span lines: rows end only at a newline outside quotes. Byte-level
/// quote scanning is safe for GBK, whose trail bytes never take the values of
/// `"` or a newline.
pub struct RowReader<R> {
    inner: BufReader<R>,
    csv: bool,
    consumed: u64,
}

impl<R: Read> RowReader<R> {
    pub fn new(inner: R, csv: bool) -> Self {
        RowReader {
            inner: BufReader::with_capacity(1 << 16, inner),
            csv,
            consumed: 0,
        }
    }

    /// Bytes of the input consumed so far (rows and their line endings).
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The next row, or `None` at the end of the input.
    pub fn next_row(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        let mut row = Vec::new();
        let mut quotes = 0usize;
        loop {
            let start = row.len();
            let n = self.inner.read_until(b'\n', &mut row)?;
            self.consumed += n as u64;
            if n == 0 {
                return Ok((!row.is_empty()).then(|| trim_eol(row)));
            }
            quotes += row[start..].iter().filter(|&&b| b == b'"').count();
            if !self.csv || quotes.is_multiple_of(2) {
                return Ok(Some(trim_eol(row)));
            }
        }
    }
}

fn trim_eol(mut row: Vec<u8>) -> Vec<u8> {
    while matches!(row.last(), Some(b'\n' | b'\r')) {
        row.pop();
    }
    row
}

/// Options of [`push_file`].
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub batch_rows: usize,
    /// Batch ids are `<prefix>-<n>`; by default the prefix is derived from the
    /// file's content, so pushing the same file again is idempotent.
    pub batch_prefix: Option<String>,
    pub format: Option<Format>,
    /// If set, kept up to date with the bytes of the file read so far (progress bars).
    pub bytes_read: Option<std::sync::Arc<std::sync::atomic::AtomicU64>>,
}

impl Default for PushOptions {
    fn default() -> Self {
        PushOptions {
            batch_rows: 2000,
            batch_prefix: None,
            format: None,
            bytes_read: None,
        }
    }
}

/// One rejected row, numbered within the file (1-based, header excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRejection {
    pub row: u64,
    pub field: String,
    pub code: String,
    pub message: String,
}

#[derive(Debug, Default, Clone)]
pub struct PushSummary {
    pub batches: u64,
    pub rows: u64,
    pub accepted: u64,
    pub superseded: u64,
    pub duplicates: u64,
    pub rejections: Vec<FileRejection>,
    /// Rejections the receipts counted but did not list (a receipt lists the
    /// first ones of its batch, up to the gateway's limit).
    pub unlisted_rejections: u64,
    /// (batch id, code, message) of batches rejected whole.
    pub rejected_batches: Vec<(String, String, String)>,
}

fn file_digest(path: &Path) -> anyhow::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
    }
    Ok(hex::encode(&ctx.finish().as_ref()[..12]))
}

/// Streams an export file to the gateway in batches and collects the receipts.
/// `on_receipt` sees each receipt as it arrives (progress bars).
pub async fn push_file(
    channel: Channel,
    path: &Path,
    opts: &PushOptions,
    mut on_receipt: impl FnMut(&proto::BatchReceipt),
) -> anyhow::Result<PushSummary> {
    let format = match opts.format {
        Some(f) => f,
        None => detect_format(path)?,
    };
    let prefix = match &opts.batch_prefix {
        Some(p) => p.clone(),
        None => file_digest(path)?,
    };
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let batch_rows = opts.batch_rows.max(1);
    let (tx, rx) = tokio::sync::mpsc::channel::<proto::PushBatch>(2);
    let bytes_read = opts.bytes_read.clone();
    // The file is read on a blocking thread, a couple of batches ahead of the
    // network: memory stays bounded whatever the file's size.
    let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
        let mut rows = RowReader::new(file, format.is_csv());
        let header = if format.is_csv() {
            rows.next_row()?.unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut n = 0u64;
        let mut first_row = 1u64;
        loop {
            let mut batch = Vec::with_capacity(batch_rows);
            while batch.len() < batch_rows {
                match rows.next_row()? {
                    Some(r) => batch.push(r),
                    None => break,
                }
            }
            if batch.is_empty() {
                return Ok(());
            }
            n += 1;
            let len = batch.len() as u64;
            let msg = proto::PushBatch {
                batch_id: format!("{prefix}-{n}"),
                format: native(format) as i32,
                header: header.clone(),
                rows: batch,
                first_row,
            };
            first_row += len;
            if let Some(b) = &bytes_read {
                b.store(rows.consumed(), std::sync::atomic::Ordering::Relaxed);
            }
            if tx.blocking_send(msg).is_err() {
                return Ok(());
            }
        }
    });
    let mut client = proto::agency_ingest_client::AgencyIngestClient::new(channel)
        .max_decoding_message_size(crate::MAX_MESSAGE_BYTES)
        .max_encoding_message_size(crate::MAX_MESSAGE_BYTES);
    let mut receipts = client
        .push(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await?
        .into_inner();
    let mut summary = PushSummary::default();
    while let Some(receipt) = receipts.next().await {
        let r = receipt?;
        on_receipt(&r);
        summary.batches += 1;
        summary.rows += r.rows_received;
        summary.accepted += r.accepted;
        summary.superseded += r.superseded;
        match proto::BatchOutcome::try_from(r.outcome) {
            Ok(proto::BatchOutcome::Duplicate) => summary.duplicates += 1,
            Ok(proto::BatchOutcome::Rejected) => {
                let e = r.batch_error.clone().unwrap_or_default();
                summary
                    .rejected_batches
                    .push((r.batch_id.clone(), e.code, e.message));
            }
            _ => {}
        }
        let counted: u64 = r.rejected_by_code.values().sum();
        summary.unlisted_rejections += counted.saturating_sub(r.rejections.len() as u64);
        for x in r.rejections {
            summary.rejections.push(FileRejection {
                row: r.first_row.max(1) + u64::from(x.row) - 1,
                field: x.field,
                code: x.code,
                message: x.message,
            });
        }
    }
    reader.await??;
    Ok(summary)
}

/// Writes the rejected rows of a push as CSV (`row,field,code,message`), in file
/// row order. Messages name the rule that failed and never a raw value, so the
/// report can be handed back to the agency's system owners as is.
pub fn write_rejection_report(path: &Path, rejections: &[FileRejection]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let file = std::fs::File::create(path)
        .with_context(|| format!("cannot create the report {}", path.display()))?;
    let mut out = std::io::BufWriter::new(file);
    let mut sorted: Vec<&FileRejection> = rejections.iter().collect();
    sorted.sort_by(|a, b| (a.row, &a.field, &a.code).cmp(&(b.row, &b.field, &b.code)));
    writeln!(out, "row,field,code,message")?;
    for r in sorted {
        writeln!(
            out,
            "{},{},{},{}",
            r.row,
            csv_field(&r.field),
            csv_field(&r.code),
            csv_field(&r.message)
        )?;
    }
    out.flush()?;
    Ok(())
}

fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// Converts a pull event into the JSON Lines form `gateway pull` writes.
pub fn event_json(e: &proto::PullEvent) -> serde_json::Value {
    use serde_json::json;
    match &e.event {
        Some(proto::pull_event::Event::Record(r)) => {
            let mut fields = serde_json::Map::new();
            let mut forms = serde_json::Map::new();
            for f in &r.fields {
                fields.insert(f.name.clone(), json!(f.value));
                let form = proto::FieldForm::try_from(f.form)
                    .map(|f| {
                        f.as_str_name()
                            .trim_start_matches("FIELD_FORM_")
                            .to_ascii_lowercase()
                    })
                    .unwrap_or_default();
                forms.insert(f.name.clone(), json!(form));
            }
            json!({
                "cursor": e.cursor,
                "kind": r.kind,
                "record_id": r.record_id,
                "fields": fields,
                "forms": forms,
                "policy_version": r.policy_version,
            })
        }
        Some(proto::pull_event::Event::Removed(r)) => {
            let mut removed = json!({
                "cursor": e.cursor,
                "kind": r.kind,
                "record_id": r.record_id,
                "removed": true,
            });
            // Present only when the consumer's policy releases it.
            if !r.changed_at.is_empty() {
                removed["changed_at"] = json!(r.changed_at);
            }
            removed
        }
        None => json!({ "cursor": e.cursor }),
    }
}

/// Pulls and hands every event to `on_event`; returns the last cursor seen.
pub async fn pull(
    channel: Channel,
    request: proto::PullRequest,
    mut on_event: impl FnMut(&proto::PullEvent) -> anyhow::Result<()>,
) -> anyhow::Result<u64> {
    let mut cursor = request.cursor;
    let mut client = proto::union_exchange_client::UnionExchangeClient::new(channel);
    let mut stream = client.pull(request).await?.into_inner();
    while let Some(event) = stream.next().await {
        let event = event?;
        on_event(&event)?;
        cursor = event.cursor;
    }
    Ok(cursor)
}
