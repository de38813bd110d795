//! Throughput of each agency adapter: rows/s for parse + validate + unionise (one
//! `parse_row`, which returns the canonical record), on simulated rows at the
//! reference (Wuhu) scale, warts and bad rows included. Targets on the reference
//! machine: ≥ 300,000 rows/s per core for the JSON Lines adapters, ≥ 200,000 for
//! the CSV ones. Run with `cargo bench -p adapters --bench adapters`.

use adapters::simulate::{Scale, Simulation};
use adapters::{Agency, adapter_for};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;

/// Rows per agency (the first rows of the Wuhu-scale export).
const ROWS: usize = 50_000;

fn rows(sim: &Simulation, agency: Agency) -> (Option<Vec<u8>>, Vec<Vec<u8>>) {
    let mut bytes = Vec::new();
    sim.write(agency, &mut bytes).expect("in-memory export");
    let csv = adapter_for(agency).expect("adapter").format().is_csv();
    let mut lines = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l).to_vec())
        .filter(|l| !l.is_empty());
    let header = if csv { lines.next() } else { None };
    (header, lines.take(ROWS).collect())
}

fn adapters(c: &mut Criterion) {
    let sim = Simulation::new(1, Scale::Wuhu);
    let mut group = c.benchmark_group("parse_validate_unionise");
    for agency in Agency::ALL {
        let adapter = adapter_for(agency).expect("adapter");
        let (header, rows) = rows(&sim, agency);
        let parser = adapter
            .open_batch(adapter.format(), header.as_deref())
            .expect("header accepted");
        group.throughput(Throughput::Elements(rows.len() as u64));
        group.bench_function(agency.id(), |b| {
            b.iter(|| {
                let mut accepted = 0usize;
                for row in &rows {
                    accepted += usize::from(parser.parse_row(black_box(row)).is_ok());
                }
                black_box(accepted)
            })
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = adapters
}
criterion_main!(benches);
