//! `gateway policy check` and `preview`: a policy directory linted as the
//! gateway loads it, and what a consumer would receive for an export's rows,
//! before anything is deployed or stored.

use adapters::Agency;
use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use gateway::client;
use std::io::Write as _;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Lint a policy directory: exits non-zero with `file:line: message` for each problem.
    Check {
        #[arg(default_value = "policies/shipped")]
        dir: PathBuf,
    },
    /// Show, field by field, what a consumer would receive for the rows of an
    /// agency export, without storing anything.
    Preview(PreviewArgs),
}

#[derive(Args)]
pub struct PreviewArgs {
    #[arg(long)]
    consumer: String,
    #[arg(long)]
    purpose: String,
    /// An agency export file (its rows go through that agency's adapter).
    #[arg(long)]
    input: PathBuf,
    /// The agency whose adapter reads the file (default: the file name's stem, e.g. hrss.csv → hrss).
    #[arg(long)]
    agency: Option<String>,
    #[arg(long, env = "GATEWAY_POLICIES_DIR", default_value = "policies/shipped")]
    policies_dir: PathBuf,
    /// Rows to show.
    #[arg(long, default_value_t = 10)]
    rows: usize,
}

pub fn check(dir: &Path) -> anyhow::Result<()> {
    match policies::PolicySet::load_dir(dir) {
        Ok(set) => {
            for p in set.policies.values() {
                writeln!(
                    std::io::stdout().lock(),
                    "{}: ok: consumer {}, purposes {}, kinds {}, {}",
                    p.source.display(),
                    p.consumer,
                    p.purposes
                        .iter()
                        .map(|purpose| format!(
                            "{purpose} ({})",
                            p.grants[purpose]
                                .iter()
                                .map(|o| o.id())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.kinds
                        .keys()
                        .map(|k| k.id())
                        .collect::<Vec<_>>()
                        .join(", "),
                    p.version
                )?;
            }
            Ok(())
        }
        Err(e) => {
            eprintln!("{e}");
            bail!("policy check failed")
        }
    }
}

pub fn preview(args: PreviewArgs) -> anyhow::Result<()> {
    let set = policies::PolicySet::load_dir(&args.policies_dir)?;
    let policy = set
        .get(&args.consumer)
        .with_context(|| format!("no policy for consumer {}", args.consumer))?;
    if !policy.allows_purpose(&args.purpose) {
        bail!(
            "purpose `{}` is not in the policy of {} (allowed: {})",
            args.purpose,
            args.consumer,
            policy.purposes.join(", ")
        );
    }
    let agency_id = match &args.agency {
        Some(a) => a.clone(),
        None => args
            .input
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default()
            .to_string(),
    };
    let agency = Agency::from_id(&agency_id)
        .with_context(|| format!("unknown agency `{agency_id}`; pass --agency"))?;
    let adapter = adapters::adapter_for(agency)
        .with_context(|| format!("no adapter for agency {agency} yet"))?;
    let format = adapter.format();
    let mut rows = client::RowReader::new(std::fs::File::open(&args.input)?, format.is_csv());
    let header = if format.is_csv() {
        rows.next_row()?
    } else {
        None
    };
    let parser = adapter.open_batch(format, header.as_deref())?;
    // Preview keys are random: tokens look like real ones but match nothing stored.
    let mut secret = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut secret)
        .map_err(|_| anyhow::anyhow!("no system randomness"))?;
    let keys = policies::ConsumerKeys::derive(&secret, &policy.consumer);
    writeln!(
        std::io::stdout().lock(),
        "policy {} ({}), purpose {}, {} rows of {} (preview keys: tokens differ from production)",
        policy.consumer,
        policy.version,
        args.purpose,
        args.rows,
        args.input.display()
    )?;
    let mut n = 0;
    while let Some(row) = rows.next_row()? {
        n += 1;
        if n > args.rows {
            break;
        }
        writeln!(std::io::stdout().lock(), "\n── row {n}")?;
        let record = match parser.parse_row(&row) {
            Ok(r) => r,
            Err(errors) => {
                for e in errors {
                    writeln!(
                        std::io::stdout().lock(),
                        "   rejected: {} {}: {}",
                        e.field,
                        e.code,
                        e.message
                    )?;
                }
                continue;
            }
        };
        if !policy.releases_kind(record.kind) {
            writeln!(
                std::io::stdout().lock(),
                "   kind {} is not released to {}",
                record.kind,
                policy.consumer
            )?;
            continue;
        }
        if !policy.admits(&record) {
            writeln!(
                std::io::stdout().lock(),
                "   filtered out by the policy's row filter"
            )?;
            continue;
        }
        let shaped = policy.shape(&record, &keys);
        for spec in record.kind.schema() {
            let before = record
                .fields
                .get(spec.name)
                .map(|v| v.render())
                .unwrap_or_default();
            match shaped.iter().find(|f| f.name == spec.name) {
                Some(f) => writeln!(
                    std::io::stdout().lock(),
                    "   {:<24} {:<28} → {} ({})",
                    spec.name,
                    before,
                    f.value,
                    f.form.as_str()
                )?,
                None => writeln!(
                    std::io::stdout().lock(),
                    "   {:<24} {:<28} → (not delivered)",
                    spec.name,
                    before
                )?,
            }
        }
    }
    Ok(())
}
