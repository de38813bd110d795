//! `gateway audit …`: the compliance officers' command line. `query`,
//! `report`, `export`, `checkpoint`, `note` and `erase-note` call the `Audit` service with an auditor
//! certificate; `verify` runs offline, with an export file and the log's
//! pinned public key only; `verify-store` checks a stopped gateway's (or a
//! restored) store the same way. This is the binary's edge (`anyhow`).

use crate::cli::ClientArgs;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use gateway::audit::export;
use gateway::audit::report::{self, format_ms};
use gateway::{client, proto};
use std::io::Write as _;
use std::path::PathBuf;
use tokio_stream::StreamExt;

const DEFAULT_IDENTITY: &str = "auditor/compliance";

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Entries matching every filter given, oldest first.
    Query(QueryArgs),
    /// Everything delivered or looked up about one person: who, when, why, which fields, in which form.
    Report(ReportArgs),
    /// Write every entry with a signed checkpoint covering them (JSON Lines) for offline verification.
    Export(ExportArgs),
    /// Offline: check an export against the log's public key (and an earlier checkpoint).
    Verify(VerifyArgs),
    /// Offline, the gateway stopped: check a store's whole audit log (after a
    /// restore: also that it extends a checkpoint saved before the backup).
    VerifyStore(VerifyStoreArgs),
    /// Print the latest signed checkpoint (signed now if the log grew).
    Checkpoint(CheckpointArgs),
    /// Read the note beside an entry (a re-identification's justification),
    /// checked against the commitment in its leaf. The read is audited.
    Note(NoteArgs),
    /// Erase the note beside an entry for good; the log still verifies. Audited.
    EraseNote(EraseNoteArgs),
}

#[derive(Args)]
pub struct NoteArgs {
    /// The entry's seq.
    #[arg(long)]
    seq: u64,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct EraseNoteArgs {
    /// The entry's seq.
    #[arg(long)]
    seq: u64,
    /// Why (recorded in the erasure's entry).
    #[arg(long, value_parser = gateway::audit::notes::ERASE_REASONS)]
    reason: String,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct QueryArgs {
    /// From this time (RFC 3339, e.g. 2026-01-31T00:00:00+08:00, or Unix seconds), inclusive.
    #[arg(long)]
    from: Option<String>,
    /// Until this time, exclusive.
    #[arg(long)]
    to: Option<String>,
    /// e.g. union/assistance, agency/hrss.
    #[arg(long)]
    actor: Option<String>,
    /// e.g. records_delivered, person_looked_up, batch_pushed, denied.
    #[arg(long)]
    action: Option<String>,
    /// ok, denied or rejected.
    #[arg(long)]
    outcome: Option<String>,
    /// Record kind concerned, e.g. social_insurance.
    #[arg(long)]
    kind: Option<String>,
    /// A person, as the auditors' pseudonym.
    #[arg(long, conflicts_with = "id_number")]
    subject: Option<String>,
    /// A person, by identity number (turned into the auditors' pseudonym by the gateway).
    #[arg(long)]
    id_number: Option<String>,
    /// At most this many entries.
    #[arg(long, default_value_t = 100)]
    limit: u64,
    /// JSON Lines instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ReportArgs {
    /// The person's identity number (never printed, never stored).
    #[arg(long)]
    id_number: String,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    client: ClientArgs,
}

#[derive(Args)]
pub struct VerifyArgs {
    /// An export written by `gateway audit export`.
    file: PathBuf,
    /// The log's public key: the verifier key string, or a file holding it
    /// (e.g. the gateway's <data_dir>/audit-log.vkey), pinned out of band.
    #[arg(long)]
    key: String,
    /// An earlier signed checkpoint (file) the log must extend.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
}

#[derive(Args)]
pub struct VerifyStoreArgs {
    /// The log's public key: the verifier key string, or a file holding it
    /// (default: <data_dir>/audit-log.vkey; pin it out of band for a real check).
    #[arg(long)]
    key: Option<String>,
    /// A signed checkpoint saved earlier (file): the log must extend it.
    /// One signed after the backup was taken shows the restore rolled back.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    #[command(flatten)]
    store: crate::cmd::keys::StoreArgs,
}

#[derive(Args)]
pub struct CheckpointArgs {
    /// Also save the signed checkpoint here (to verify later exports against).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Query(a) => query(a).await,
        AuditCommand::Report(a) => report(a).await,
        AuditCommand::Export(a) => export_log(a).await,
        AuditCommand::Verify(a) => verify(a),
        AuditCommand::VerifyStore(a) => verify_store(a),
        AuditCommand::Checkpoint(a) => checkpoint(a).await,
        AuditCommand::Note(a) => note(a).await,
        AuditCommand::EraseNote(a) => erase_note(a).await,
    }
}

async fn audit_client(
    args: &ClientArgs,
) -> anyhow::Result<proto::audit_client::AuditClient<tonic::transport::Channel>> {
    let tls = args.tls(DEFAULT_IDENTITY)?;
    let channel = client::connect(&args.addr, &tls).await?;
    Ok(proto::audit_client::AuditClient::new(channel)
        .max_decoding_message_size(gateway::MAX_MESSAGE_BYTES))
}

fn parse_time(s: &str) -> anyhow::Result<i64> {
    if let Ok(secs) = s.parse::<i64>() {
        return Ok(secs);
    }
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("`{s}` is neither RFC 3339 nor Unix seconds"))?;
    Ok(t.unix_timestamp())
}

async fn query(a: QueryArgs) -> anyhow::Result<()> {
    let mut client = audit_client(&a.client).await?;
    let mut q = proto::AuditQuery {
        from_unix: a.from.as_deref().map(parse_time).transpose()?.unwrap_or(0),
        to_unix: a.to.as_deref().map(parse_time).transpose()?.unwrap_or(0),
        actor: a.actor.unwrap_or_default(),
        action: a.action.unwrap_or_default(),
        outcome: a.outcome.unwrap_or_default(),
        kind: a.kind.unwrap_or_default(),
        subject: a.subject.unwrap_or_default(),
        subject_id_number: a.id_number.unwrap_or_default(),
        page_size: a.limit.clamp(1, 1000) as u32,
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    let mut shown = 0u64;
    if !a.json {
        writeln!(
            out,
            "{:>7}  {:<24}  {:<22}  {:<20}  {:<8}  details",
            "seq", "time (UTC)", "actor", "action", "outcome"
        )?;
    }
    'pages: loop {
        let page = client.query(q.clone()).await?.into_inner();
        for e in &page.entries {
            if shown == a.limit {
                break 'pages;
            }
            shown += 1;
            if a.json {
                let subjects: Vec<_> = e
                    .subjects
                    .iter()
                    .map(|s| serde_json::json!({"token": s.token, "prev_seq": s.prev_seq}))
                    .collect();
                let details: serde_json::Value =
                    serde_json::from_str(&e.details_json).unwrap_or_default();
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({
                        "seq": e.seq, "at": format_ms(e.at_unix_ms), "actor": e.actor,
                        "action": e.action, "outcome": e.outcome, "kinds": e.kinds,
                        "subjects": subjects, "details": details,
                    })
                )?;
            } else {
                writeln!(
                    out,
                    "{:>7}  {:<24}  {:<22}  {:<20}  {:<8}  {}{}",
                    e.seq,
                    format_ms(e.at_unix_ms),
                    e.actor,
                    e.action,
                    e.outcome,
                    e.details_json,
                    if e.subjects.is_empty() {
                        String::new()
                    } else {
                        format!(" [{} subjects]", e.subjects.len())
                    }
                )?;
            }
        }
        if page.next_after_seq == 0 {
            break;
        }
        q.after_seq = page.next_after_seq;
    }
    Ok(())
}

async fn report(a: ReportArgs) -> anyhow::Result<()> {
    let mut client = audit_client(&a.client).await?;
    let r = client
        .subject_report(proto::SubjectReportRequest {
            id_number: a.id_number.clone(),
        })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(out, "{}", report::json(&r))?;
    } else {
        writeln!(out, "subject (auditors' pseudonym): {}", r.subject)?;
        writeln!(
            out,
            "{:>7}  {:<24}  {:<22}  {:<18}  {:<22}  {:<14}  fields (form)",
            "seq", "when (UTC)", "who", "action", "purpose", "case"
        )?;
        for i in &r.items {
            let fields: Vec<String> = i
                .fields
                .iter()
                .map(|(f, form)| format!("{f} ({form})"))
                .collect();
            writeln!(
                out,
                "{:>7}  {:<24}  {:<22}  {:<18}  {:<22}  {:<14}  {}",
                i.seq,
                format_ms(i.at_unix_ms),
                i.actor,
                i.action,
                i.purpose,
                if i.case_number.is_empty() {
                    "-"
                } else {
                    &i.case_number
                },
                fields.join(", ")
            )?;
        }
        writeln!(
            out,
            "{} lines (deliveries, look-ups, re-identifications, auditors' reads); back-pointer chain {}",
            r.items.len(),
            if r.chain_complete {
                "complete"
            } else {
                "BROKEN"
            }
        )?;
        for p in &r.problems {
            writeln!(out, "  problem: {p}")?;
        }
    }
    if !r.chain_complete {
        bail!("the person's entries are incomplete or altered");
    }
    Ok(())
}

async fn export_log(a: ExportArgs) -> anyhow::Result<()> {
    let tls = a.client.tls(DEFAULT_IDENTITY)?;
    let channel = client::connect(&a.client.addr, &tls).await?;
    let (n, size) = export_to_file(channel, &a.out).await?;
    eprintln!(
        "{}: {n} entries, covered by a signed checkpoint of size {size}",
        a.out.display()
    );
    Ok(())
}

/// Downloads the whole log into an export file (written under a temporary
/// name, renamed when complete). Returns (entries written, checkpoint size).
pub async fn export_to_file(
    channel: tonic::transport::Channel,
    out_path: &std::path::Path,
) -> anyhow::Result<(u64, u64)> {
    let mut client = proto::audit_client::AuditClient::new(channel)
        .max_decoding_message_size(gateway::MAX_MESSAGE_BYTES);
    let mut stream = client.export(proto::ExportRequest {}).await?.into_inner();
    let tmp = out_path.with_extension("partial");
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?,
    );
    let mut size = None;
    let mut n = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk?;
        if let Some(cp) = chunk.checkpoint {
            if size.is_some() {
                bail!("the export sent a second checkpoint");
            }
            writeln!(out, "{}", export::header_line(&cp.note))?;
            size = Some(cp.size);
        }
        if size.is_none() {
            bail!("the export did not start with a checkpoint");
        }
        for l in &chunk.leaves {
            writeln!(out, "{}", exported_line(l)?)?;
            n += 1;
        }
    }
    out.flush()?;
    drop(out);
    std::fs::rename(&tmp, out_path)?;
    Ok((n, size.context("the export was empty")?))
}

/// The export file's line for one leaf the gateway sent. The file says
/// `"entry": null` for exactly the entries the gateway no longer holds: an
/// entry flagged missing but sent, or sent empty but not flagged, is refused
/// rather than written down as something else.
fn exported_line(l: &proto::ExportedLeaf) -> anyhow::Result<String> {
    match (l.missing, l.canonical.is_empty()) {
        (true, false) => bail!(
            "the export's entry {} is flagged missing but holds bytes",
            l.seq
        ),
        (false, true) => bail!(
            "the export's entry {} is empty but not flagged missing",
            l.seq
        ),
        _ => Ok(export::leaf_line(
            l.seq,
            &l.leaf_hash,
            (!l.missing).then_some(&l.canonical[..]),
        )),
    }
}

/// The verifier key string, given directly or in a file.
pub fn read_vkey(key: &str) -> anyhow::Result<tlog::Verifier> {
    let text = if std::path::Path::new(key).is_file() {
        std::fs::read_to_string(key).with_context(|| format!("cannot read {key}"))?
    } else {
        key.to_string()
    };
    tlog::Verifier::parse(text.trim()).map_err(|e| anyhow::anyhow!("invalid public key: {e}"))
}

fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let verifier = read_vkey(&a.key)?;
    let earlier = a
        .checkpoint
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    let file = std::fs::File::open(&a.file)
        .with_context(|| format!("cannot open {}", a.file.display()))?;
    match export::verify(std::io::BufReader::new(file), &verifier, earlier.as_deref()) {
        Ok(v) => {
            println!(
                "OK: {} entries of {} verified against the signed checkpoint (root {}){}",
                v.size,
                v.origin,
                hex::encode(v.root),
                match v.extends {
                    Some(s) => format!("; extends the earlier checkpoint of size {s}"),
                    None => String::new(),
                }
            );
            Ok(())
        }
        Err(e) => bail!("{}: {e}", a.file.display()),
    }
}

fn verify_store(a: VerifyStoreArgs) -> anyhow::Result<()> {
    let config = a.store.config()?;
    let key = match a.key {
        Some(key) => key,
        None => {
            let path = config.data_dir.join("audit-log.vkey");
            if !path.is_file() {
                bail!(
                    "no {}: give the log's public key with --key",
                    path.display()
                );
            }
            path.to_string_lossy().into_owned()
        }
    };
    let verifier = read_vkey(&key)?;
    let given = a
        .checkpoint
        .as_ref()
        .map(|p| std::fs::read_to_string(p).with_context(|| format!("cannot read {}", p.display())))
        .transpose()?;
    // The embedded store is read with the gateway stopped (its lock held);
    // a database server's store is read as it stands, as any replica reads it.
    let _lock = if config.store.url.is_none() {
        if !config.data_dir.join("gateway.db").is_file() {
            bail!("no store in {}", config.data_dir.display());
        }
        Some(crate::cmd::keys::lock_data_dir(&config.data_dir)?)
    } else {
        None
    };
    let store = gateway::store::open(&config.store, &config.data_dir)?;
    match gateway::audit::verify_store::verify_store(&*store, &verifier, given.as_deref()) {
        Ok(v) => {
            println!(
                "OK: {} entries of {} verified; {} stored checkpoints (the latest of size {}) \
                 signed and consistent with the log{}",
                v.size,
                v.origin,
                v.checkpoints,
                v.latest_checkpoint,
                match v.extends {
                    Some(s) => format!("; extends the given checkpoint of size {s}"),
                    None => String::new(),
                }
            );
            Ok(())
        }
        Err(e) => bail!("{}: {e}", config.data_dir.display()),
    }
}

async fn checkpoint(a: CheckpointArgs) -> anyhow::Result<()> {
    let mut client = audit_client(&a.client).await?;
    let cp = client
        .get_checkpoint(proto::GetCheckpointRequest {})
        .await?
        .into_inner();
    print!("{}", cp.note);
    if let Some(out) = &a.out {
        std::fs::write(out, &cp.note).with_context(|| format!("cannot write {}", out.display()))?;
    }
    Ok(())
}

async fn note(a: NoteArgs) -> anyhow::Result<()> {
    let mut client = audit_client(&a.client).await?;
    let n = client
        .read_note(proto::ReadNoteRequest { seq: a.seq })
        .await?
        .into_inner();
    let mut out = std::io::stdout().lock();
    if a.json {
        writeln!(
            out,
            "{}",
            serde_json::json!({
                "seq": n.seq, "commitment": n.commitment, "text": n.text,
                "commitment_ok": n.commitment_ok, "erased": n.erased,
                "erased_at": n.erased.then(|| format_ms(n.erased_at_unix_ms)),
                "erased_by_seq": n.erased.then_some(n.erased_by_seq),
            })
        )?;
    } else if n.erased {
        writeln!(
            out,
            "entry {}: the note was erased at {} (entry {})",
            n.seq,
            format_ms(n.erased_at_unix_ms),
            n.erased_by_seq
        )?;
    } else {
        writeln!(
            out,
            "entry {}: commitment {} {}",
            n.seq,
            n.commitment,
            if n.commitment_ok {
                "matches"
            } else {
                "DOES NOT MATCH"
            }
        )?;
        writeln!(out, "{}", n.text)?;
    }
    if !n.erased && !n.commitment_ok {
        bail!("the note does not match the commitment in its entry");
    }
    Ok(())
}

async fn erase_note(a: EraseNoteArgs) -> anyhow::Result<()> {
    let mut client = audit_client(&a.client).await?;
    let r = client
        .erase_note(proto::EraseNoteRequest {
            seq: a.seq,
            reason: a.reason,
        })
        .await?
        .into_inner();
    println!(
        "entry {}: note erased (recorded as entry {})",
        r.seq, r.erasure_seq
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exported_line_says_missing_exactly_when_the_entry_is_missing() {
        let leaf = |missing: bool, canonical: &[u8]| proto::ExportedLeaf {
            seq: 3,
            leaf_hash: vec![7; 32],
            canonical: canonical.to_vec(),
            missing,
        };
        assert_eq!(
            exported_line(&leaf(false, b"entry")).unwrap(),
            export::leaf_line(3, &[7; 32], Some(b"entry"))
        );
        assert!(
            exported_line(&leaf(true, b""))
                .unwrap()
                .ends_with("\"entry\":null}")
        );
        for (missing, canonical) in [(true, &b"entry"[..]), (false, &b""[..])] {
            let err = exported_line(&leaf(missing, canonical)).unwrap_err();
            assert!(err.to_string().contains("entry 3"), "{err}");
        }
    }
}
