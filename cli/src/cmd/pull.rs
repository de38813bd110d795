//! `gateway pull`: writes what a union consumer receives as JSON Lines or CSV,
//! shows progress, and resumes from a cursor file, so a screening job can stop
//! anywhere and carry on later with no gap and no duplicate.

use crate::cli::ClientArgs;
use adapters::RecordKind;
use anyhow::{Context as _, bail};
use clap::Args;
use gateway::client;
use gateway::proto::{self, pull_event::Event};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Args)]
pub struct PullArgs {
    /// Record kind(s) to pull, e.g. social_insurance (repeatable; default: all the policy releases).
    #[arg(long = "kind")]
    kinds: Vec<String>,
    /// The purpose of this pull; must be in the consumer's policy.
    #[arg(long)]
    purpose: String,
    /// Write here instead of standard output (appended to when resuming from --cursor-file).
    #[arg(long)]
    out: Option<PathBuf>,
    /// jsonl or csv (default: csv for a .csv --out, else jsonl). CSV takes one --kind.
    #[arg(long, value_enum)]
    format: Option<OutputFormat>,
    /// Resume from the cursor saved in this file, and keep it up to date.
    #[arg(long)]
    cursor_file: Option<PathBuf>,
    /// Start after this cursor (0 = from the beginning).
    #[arg(long, default_value_t = 0)]
    cursor: u64,
    /// Stop after this many events (0 = no limit).
    #[arg(long, default_value_t = 0)]
    limit: u32,
    /// Keep following new changes.
    #[arg(long)]
    follow: bool,
    #[command(flatten)]
    client: ClientArgs,
}

pub async fn run(args: PullArgs) -> anyhow::Result<()> {
    let tls = args.client.tls("union/assistance")?;
    let channel = client::connect(&args.client.addr, &tls).await?;
    write(
        channel,
        PullJob {
            request: proto::PullRequest {
                kinds: args.kinds,
                purpose: args.purpose,
                cursor: args.cursor,
                limit: args.limit,
                follow: args.follow,
            },
            out: args.out,
            format: args.format,
            cursor_file: args.cursor_file,
        },
    )
    .await
}

/// Output format of `gateway pull`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    Jsonl,
    Csv,
}

pub struct PullJob {
    pub request: proto::PullRequest,
    pub out: Option<PathBuf>,
    pub format: Option<OutputFormat>,
    pub cursor_file: Option<PathBuf>,
}

/// Reads a cursor file (a decimal number); a missing file means "from the start".
pub fn read_cursor(path: &Path) -> anyhow::Result<Option<u64>> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(Some(s.trim().parse().with_context(|| {
            format!("{} does not hold a cursor", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Writes the cursor atomically (temporary file, then rename).
pub fn write_cursor(path: &Path, cursor: u64) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{cursor}\n"))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// Pulls `job` on `channel` to its output, keeping its cursor file.
pub async fn write(channel: tonic::transport::Channel, mut job: PullJob) -> anyhow::Result<()> {
    let format = job.format.unwrap_or(match &job.out {
        Some(p) if p.extension().is_some_and(|e| e == "csv") => OutputFormat::Csv,
        _ => OutputFormat::Jsonl,
    });
    // CSV has one set of columns: one kind, all its canonical fields (those the
    // policy does not release stay empty).
    let columns: Vec<&'static str> = if format == OutputFormat::Csv {
        let [kind] = job.request.kinds.as_slice() else {
            bail!("CSV output takes exactly one --kind");
        };
        let kind = RecordKind::from_id(kind).with_context(|| format!("unknown kind `{kind}`"))?;
        kind.schema().iter().map(|f| f.name).collect()
    } else {
        Vec::new()
    };
    let mut resumed = false;
    if let Some(cf) = &job.cursor_file
        && let Some(c) = read_cursor(cf)?
    {
        job.request.cursor = c;
        resumed = true;
    }
    let mut out: Box<dyn Write> = match &job.out {
        Some(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(resumed)
                .write(true)
                .truncate(!resumed)
                .open(p)
                .with_context(|| format!("cannot open {}", p.display()))?;
            Box::new(std::io::BufWriter::new(f))
        }
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    if format == OutputFormat::Csv && !resumed {
        let mut header = vec!["cursor", "kind", "record_id", "changed_at", "removed"];
        header.extend(&columns);
        writeln!(out, "{}", header.join(","))?;
    }

    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr());
    let follow = job.request.follow;
    let cursor_file = job.cursor_file.clone();
    let mut n = 0u64;
    let start = job.request.cursor;
    let last = client::pull(channel, job.request, |e| {
        match format {
            OutputFormat::Jsonl => {
                serde_json::to_writer(&mut out, &client::event_json(e))?;
                out.write_all(b"\n")?;
            }
            OutputFormat::Csv => {
                // `changed_at` only as the policy releases it: a field of
                // a record, or the removal's own.
                let (kind, id, at, removed, fields) = match &e.event {
                    Some(Event::Record(r)) => {
                        let at = r.fields.iter().find(|f| f.name == "changed_at");
                        let at = at.map(|f| csv_field(&f.value)).unwrap_or_default();
                        (&r.kind, &r.record_id, at, "", Some(&r.fields))
                    }
                    Some(Event::Removed(r)) => (
                        &r.kind,
                        &r.record_id,
                        csv_field(&r.changed_at),
                        "true",
                        None,
                    ),
                    None => return Ok(()),
                };
                let mut row = vec![
                    e.cursor.to_string(),
                    kind.clone(),
                    id.clone(),
                    at,
                    removed.into(),
                ];
                for c in &columns {
                    let v = fields
                        .and_then(|fs| fs.iter().find(|f| f.name == *c))
                        .map(|f| csv_field(&f.value))
                        .unwrap_or_default();
                    row.push(v);
                }
                writeln!(out, "{}", row.join(","))?;
            }
        }
        n += 1;
        bar.set_message(format!("{n} events, cursor {}", e.cursor));
        bar.tick();
        // Followers flush as they go and keep the cursor file current, so a
        // stopped follower resumes exactly where its output ends.
        if follow || n.is_multiple_of(10_000) {
            out.flush()?;
            if let Some(cf) = &cursor_file {
                write_cursor(cf, e.cursor)?;
            }
        }
        Ok(())
    })
    .await;
    out.flush()?;
    drop(out);
    bar.finish_and_clear();
    let last = last?;
    if let Some(cf) = &cursor_file {
        write_cursor(cf, last)?;
    }
    eprintln!(
        "{n} events from cursor {start}; last cursor {last}{}",
        match &cursor_file {
            Some(cf) => format!(" (saved in {})", cf.display()),
            None => format!(" (resume with --cursor {last})"),
        }
    );
    Ok(())
}
