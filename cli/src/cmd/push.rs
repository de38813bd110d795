//! `gateway push`: an agency's export file, exactly as its system wrote it,
//! streamed in batches with progress, and a report of every rejected row.

use crate::cli::ClientArgs;
use adapters::Format;
use anyhow::{Context as _, bail};
use clap::{Args, ValueEnum};
use gateway::client::{self, PushOptions};
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Clone, Copy, ValueEnum)]
pub enum FormatArg {
    JsonLines,
    CsvGbk,
    CsvUtf8Bom,
}

#[derive(Args)]
pub struct PushArgs {
    /// The export file, exactly as the agency's system wrote it.
    #[arg(long)]
    file: PathBuf,
    /// Native format; guessed from the file name and byte-order mark by default.
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Rows per batch.
    #[arg(long, default_value_t = 2000)]
    batch_rows: usize,
    /// Batch id prefix (default: derived from the file's content, so a re-push is idempotent).
    #[arg(long)]
    batch_prefix: Option<String>,
    /// CSV report of the rejected rows (row, field, code, message); default `<file>.rejections.csv`.
    #[arg(long)]
    report: Option<PathBuf>,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: PushArgs) -> anyhow::Result<()> {
    let tls = args.client.tls("agency/hrss")?;
    let channel = client::connect(&args.client.addr, &tls).await?;
    let bytes_read = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let opts = PushOptions {
        batch_rows: args.batch_rows,
        batch_prefix: args.batch_prefix,
        format: args.format.map(|f| match f {
            FormatArg::JsonLines => Format::JsonLines,
            FormatArg::CsvGbk => Format::CsvGbk,
            FormatArg::CsvUtf8Bom => Format::CsvUtf8Bom,
        }),
        bytes_read: Some(bytes_read.clone()),
    };
    let total = std::fs::metadata(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?
        .len();
    // Progress in bytes of the file read (drawn on standard error, only on a terminal).
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, eta {eta}) {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let ticker = {
        let (bar, bytes_read) = (bar.clone(), bytes_read.clone());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(std::time::Duration::from_millis(100));
            loop {
                tick.tick().await;
                bar.set_position(bytes_read.load(std::sync::atomic::Ordering::Relaxed));
            }
        })
    };
    let (mut acknowledged, mut accepted) = (0u64, 0u64);
    let started = std::time::Instant::now();
    let result = client::push_file(channel, &args.file, &opts, |r| {
        acknowledged += r.rows_received;
        accepted += r.accepted;
        bar.set_message(format!("{acknowledged} rows, {accepted} accepted"));
    })
    .await;
    ticker.abort();
    bar.finish_and_clear();
    let summary = result?;
    // The report first: it is the complete record, the lines below are a digest.
    let report = args.report.unwrap_or_else(|| {
        let mut name = args.file.clone().into_os_string();
        name.push(".rejections.csv");
        PathBuf::from(name)
    });
    client::write_rejection_report(&report, &summary.rejections)?;
    let rejected = summary.rows - summary.accepted;
    writeln!(
        std::io::stdout().lock(),
        "{}: {} rows in {} batches in {:.1} s: {} accepted ({} superseded by newer versions), {} rejected{}",
        args.file.display(),
        summary.rows,
        summary.batches,
        started.elapsed().as_secs_f64(),
        summary.accepted,
        summary.superseded,
        rejected,
        if summary.duplicates > 0 {
            format!(", {} batches already pushed before", summary.duplicates)
        } else {
            String::new()
        }
    )?;
    // Rejected rows by code (a row may break several rules: counted once per code).
    let mut by_code = std::collections::BTreeMap::<&str, std::collections::BTreeSet<u64>>::new();
    for r in &summary.rejections {
        by_code.entry(r.code.as_str()).or_default().insert(r.row);
    }
    for (code, rows) in &by_code {
        writeln!(std::io::stdout().lock(), "  {code}: {} rows", rows.len())?;
    }
    if summary.unlisted_rejections > 0 {
        writeln!(
            std::io::stdout().lock(),
            "  {} more rejections not listed (a receipt lists the first of its batch)",
            summary.unlisted_rejections
        )?;
    }
    for (id, code, message) in &summary.rejected_batches {
        writeln!(
            std::io::stdout().lock(),
            "  batch {id} rejected: {code}: {message}"
        )?;
    }
    const SHOWN: usize = 20;
    for r in summary.rejections.iter().take(SHOWN) {
        writeln!(
            std::io::stdout().lock(),
            "  row {}: {} {}: {}",
            r.row,
            r.field,
            r.code,
            r.message
        )?;
    }
    if summary.rejections.len() > SHOWN {
        writeln!(
            std::io::stdout().lock(),
            "  … and {} more",
            summary.rejections.len() - SHOWN
        )?;
    }
    writeln!(
        std::io::stdout().lock(),
        "report of the rejected rows: {}",
        report.display()
    )?;
    if !summary.rejected_batches.is_empty() {
        bail!("{} batches were rejected", summary.rejected_batches.len());
    }
    Ok(())
}
