//! `gateway simulate`: writes deterministic synthetic exports of all six agencies
//! (the generator lives in `adapters::simulate`, beside the formats it imitates),
//! for demos, load tests and benchmarks without real personal data.

use adapters::simulate::{self, Scale};
use anyhow::Context as _;
use clap::{Args, ValueEnum};
use std::path::PathBuf;

#[derive(Args)]
pub struct SimulateArgs {
    /// Directory to write `<agency>.<ext>` into (created if needed).
    #[arg(long)]
    pub out: PathBuf,
    /// Seed: the same seed always writes the same bytes.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// `small` (a few thousand rows) or `wuhu` (the reference scale).
    #[arg(long, value_enum, default_value_t = ScaleArg::Small)]
    pub scale: ScaleArg,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ScaleArg {
    Small,
    Wuhu,
}

pub fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let scale = match args.scale {
        ScaleArg::Small => Scale::Small,
        ScaleArg::Wuhu => Scale::Wuhu,
    };
    let start = std::time::Instant::now();
    let stats = simulate::simulate_to_dir(&args.out, args.seed, scale)
        .with_context(|| format!("cannot write the exports into {}", args.out.display()))?;
    let seconds = start.elapsed().as_secs_f64();
    let hardship = simulate::Simulation::new(args.seed, scale).hardship_persons();
    println!(
        "simulated {} exports (scale {}, seed {}) into {} in {seconds:.1} s",
        stats.len(),
        scale.id(),
        args.seed,
        args.out.display()
    );
    let (mut rows, mut bad, mut bytes) = (0, 0, 0);
    for s in &stats {
        println!(
            "  {:<24} {:>9} rows {:>7} bad on purpose {:>8.1} MiB",
            s.file_name,
            s.rows,
            s.bad_rows.len(),
            s.bytes as f64 / (1024.0 * 1024.0)
        );
        rows += s.rows;
        bad += s.bad_rows.len() as u64;
        bytes += s.bytes;
    }
    println!(
        "  {:<24} {rows:>9} rows {bad:>7} bad on purpose {:>8.1} MiB",
        "total",
        bytes as f64 / (1024.0 * 1024.0)
    );
    println!("  persons in hardship by their contribution and housing data: {hardship}");
    Ok(())
}
