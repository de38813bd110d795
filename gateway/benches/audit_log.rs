//! Audit-log benchmarks, printed as figures (no extra dependency):
//! append throughput through the store's real append path (canonical
//! encoding, leaf hash, subject back-pointers, Merkle nodes, one SQLite
//! transaction and fsync per batch, as ingest and pull pages batch them), and
//! inclusion / consistency proof time from the stored tree at large sizes.
//!
//! ```sh
//! cargo bench -p gateway --bench audit_log                       # 1M entries
//! cargo bench -p gateway --bench audit_log -- --sizes 1000000,10000000
//! ```

use gateway::audit::{AuditEntry, Value};
use gateway::store::Store;
use gateway::store::sqlite::SqliteStore;
use std::time::{Duration, Instant};

/// A deterministic pseudo-random generator (xorshift), so runs compare.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// A delivery-like entry: actor, purpose, kinds, policy version and, if
/// `subject`, one person (ingest's `batch_pushed` entries name none).
fn entry(i: u64, subject: bool) -> AuditEntry {
    let details = Value::Map(
        [
            ("consumer".to_string(), Value::Str("assistance".into())),
            (
                "purpose".to_string(),
                Value::Str("hardship_screening".into()),
            ),
            ("records".to_string(), Value::U64(1)),
            ("from_cursor".to_string(), Value::U64(i)),
            (
                "policy_version".to_string(),
                Value::Str(
                    "sha256:9f3c1b2a9f3c1b2a9f3c1b2a9f3c1b2a9f3c1b2a9f3c1b2a9f3c1b2a9f3c1b2a"
                        .into(),
                ),
            ),
        ]
        .into(),
    );
    AuditEntry {
        at_ms: 1_790_000_000_000 + i as i64,
        actor: "union/assistance".into(),
        action: "records_delivered".into(),
        outcome: "ok".into(),
        kinds: vec!["social_insurance".into()],
        // 100,000 distinct persons: back-pointers are looked up for real.
        subjects: if subject {
            vec![format!("{:032x}", (i * 2_654_435_761) % 100_000)]
        } else {
            vec![]
        },
        details,
        note: None,
    }
}

/// Time spent in `append_audit` only (building the events is the caller's work).
fn append(store: &SqliteStore, from: u64, n: u64, batch: u64, subject: bool) -> Duration {
    let mut spent = Duration::ZERO;
    let mut i = from;
    while i < from + n {
        let k = batch.min(from + n - i);
        let entries: Vec<AuditEntry> = (i..i + k).map(|i| entry(i, subject)).collect();
        let start = Instant::now();
        store.append_audit(&entries).unwrap();
        spent += start.elapsed();
        i += k;
    }
    spent
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn report(label: &str, mut times: Vec<Duration>) {
    times.sort();
    let mean = times.iter().sum::<Duration>() / times.len() as u32;
    println!(
        "  {label:<34} mean {:>8.1} µs   p50 {:>8.1} µs   p99 {:>8.1} µs   max {:>8.1} µs",
        mean.as_secs_f64() * 1e6,
        percentile(&times, 0.5).as_secs_f64() * 1e6,
        percentile(&times, 0.99).as_secs_f64() * 1e6,
        times.last().unwrap().as_secs_f64() * 1e6,
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let sizes: Vec<u64> = args
        .iter()
        .position(|a| a == "--sizes")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.split(',').map(|n| n.trim().parse().unwrap()).collect())
        .unwrap_or_else(|| vec![1_000_000]);

    println!(
        "append throughput (SQLite WAL, synchronous=FULL, one transaction and fsync per batch; \
         data in {}):",
        std::env::temp_dir().display()
    );
    for (subject, what) in [(false, "no subject"), (true, "1 subject ")] {
        for batch in [1u64, 100, 1000, 2000] {
            let dir = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            let n = if batch == 1 { 2_000 } else { 200_000 };
            let t = append(&store, 0, n, batch, subject);
            println!(
                "  {what}, batch {batch:>5}: {n:>7} entries in {:>6.2} s = {:>8.0} entries/s",
                t.as_secs_f64(),
                n as f64 / t.as_secs_f64()
            );
        }
    }

    for size in sizes {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let t = append(&store, 0, size, 10_000, false);
        println!(
            "\nlog of {size} entries built in {:.1} s ({:.0} entries/s, batches of 10,000)",
            t.as_secs_f64(),
            size as f64 / t.as_secs_f64()
        );
        assert_eq!(store.audit_size().unwrap(), size);
        let root = store.audit_root(size).unwrap();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let runs = 2_000;
        let mut incl = Vec::with_capacity(runs);
        let mut cons = Vec::with_capacity(runs);
        let mut roots = Vec::with_capacity(runs);
        for _ in 0..runs {
            let index = rng.below(size);
            let start = Instant::now();
            let proof = store.audit_inclusion_proof(index, size).unwrap();
            incl.push(start.elapsed());
            std::hint::black_box(proof);
            let size1 = 1 + rng.below(size - 1);
            let start = Instant::now();
            let proof = store.audit_consistency_proof(size1, size).unwrap();
            cons.push(start.elapsed());
            std::hint::black_box(proof);
            let start = Instant::now();
            std::hint::black_box(store.audit_root(size1).unwrap());
            roots.push(start.elapsed());
        }
        // Sanity: the proofs verify.
        let leaf = store
            .audit_leaves(size / 3, size / 3 + 1, 1)
            .unwrap()
            .remove(0);
        let proof = store.audit_inclusion_proof(size / 3, size).unwrap();
        tlog::verify_inclusion(&leaf.leaf_hash, size / 3, size, &proof, &root).unwrap();
        let root1 = store.audit_root(size / 2 + 1).unwrap();
        let proof = store.audit_consistency_proof(size / 2 + 1, size).unwrap();
        tlog::verify_consistency(size / 2 + 1, size, &root1, &root, &proof).unwrap();
        println!("proofs at {size} entries ({runs} random each, through the Store API):");
        report("inclusion proof", incl);
        report("consistency proof", cons);
        report("root at an earlier size", roots);
    }
}
