//! Benchmark of the union side on simulated data (`gateway simulate`): ingest of
//! all six exports, pull throughput (records/s streamed with the policy applied)
//! and look-up latency (p50/p99 at 64 concurrent callers), through the real
//! server over mutual TLS on loopback. Prints one JSON line.
//!
//! `cargo run --release -p gateway-tests --example exchange_bench -- [small|wuhu] [lookups]`
//! (lookups default to 96,000, after an uncounted warm-up that looks up every distinct
//! resident once, or five per caller beyond 20,000). Env:
//! `ONLY=agency,…` ingests only those exports; `PULL_REPEAT=n` pulls n times;
//! `IDS=n` distinct residents looked up (default 2,000; 0 = all);
//! `CONCURRENCY=n` look-up callers (default 64) over `CONNECTIONS=n`
//! connections (default 1), each sending its next look-up when the last is
//! answered, or `RATE=n` look-ups a second in all on a fixed schedule
//! (`lookup_late_starts`: those sent over 2 ms late, their caller still
//! waiting for its last answer). Phases are 2 s apart, so
//! background work of one (subject indexing, WAL checkpoints) settles first.
//!
//! This shared machine's speed swings by up to 2× within an hour for the same
//! binary, so the figures come with a calibration measured before the first
//! phase and after the last (`calibration_*`): single-core SHA-256 throughput
//! (compute) and the latency of a dependent random read over 128 MiB (memory).
//! Runs are comparable when their calibrations are.
//!
//! `STORE=postgres` runs the same workload twice in one invocation: first on
//! SQLite (the baseline), then on PostgreSQL (a fresh database on the server
//! `GATEWAY_TEST_POSTGRES` names, default 127.0.0.1:5432 as user `postgres`,
//! dropped afterwards) served by `REPLICAS=n` in-process gateways (default 1),
//! with pushes and look-up callers spread round-robin across them. It prints
//! each run's JSON line, then a side-by-side table of the PostgreSQL figures
//! as ratios to the SQLite ones, with calibrations before, between and after.
//! Comparing within one run is the point: the machine's speed swings too much
//! between invocations for figures from different runs to be set side by side.
//! After each run the feed is read back through every replica (identical,
//! cursors strictly increasing, as many records as the timed pull) and the
//! audit log is exported from every replica and verified: replicas on a
//! machine this size show correctness under load, not scaling.

use adapters::simulate::{ExportStats, Scale, simulate_to_dir};
use gateway::client::{PushOptions, push_file};
use gateway::limits::LimitsConfig;
use gateway::proto::{LookupRequest, PullRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::{Backend, ServerState, TRUST_DOMAIN, TestPki, TestServer};
use std::io::BufRead;
use std::path::Path;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: gateway::Allocator = gateway::Allocator {};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let scale_name = args.next().unwrap_or_else(|| "small".into());
    let scale = Scale::from_id(&scale_name).expect("scale: small or wuhu");
    let lookups: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(96_000);
    let postgres = match std::env::var("STORE").as_deref() {
        Err(_) | Ok("sqlite") => false,
        Ok("postgres") => true,
        Ok(other) => panic!("STORE: sqlite or postgres, not {other:?}"),
    };
    let replicas: usize = env_or("REPLICAS", 1);
    assert!(replicas >= 1, "REPLICAS: at least 1");
    assert!(
        postgres || replicas == 1,
        "REPLICAS needs STORE=postgres: a SQLite store belongs to one process"
    );

    let calibration_start = calibrate();
    let data = tempfile::tempdir().unwrap();
    let t = Instant::now();
    let stats = simulate_to_dir(data.path(), 20261129, scale).unwrap();
    let simulate_s = t.elapsed().as_secs_f64();

    let mut pki = TestPki::new();
    for s in &stats {
        pki.issue(&format!("agency/{}", s.agency.id()));
    }
    pki.issue("union/assistance");
    pki.issue("auditor/compliance");
    let workload = Workload {
        scale_name: &scale_name,
        simulate_s,
        lookups,
        data: data.path(),
        stats: &stats,
        pki: &pki,
    };

    let sqlite = workload.run(Backend::Sqlite, 1).await;
    let calibration_between = calibrate();
    println!(
        "{}",
        sqlite.json(&workload, [&calibration_start, &calibration_between])
    );
    if !postgres {
        return;
    }
    let pg = workload.run(Backend::Postgres, replicas).await;
    let calibration_end = calibrate();
    println!(
        "{}",
        pg.json(&workload, [&calibration_between, &calibration_end])
    );
    print_comparison(
        &sqlite,
        &pg,
        replicas,
        [&calibration_start, &calibration_between, &calibration_end],
    );
}

/// What every run does, on whichever store.
struct Workload<'a> {
    scale_name: &'a str,
    simulate_s: f64,
    lookups: usize,
    data: &'a Path,
    stats: &'a [ExportStats],
    pki: &'a TestPki,
}

/// One run's figures.
struct Figures {
    store: &'static str,
    replicas: usize,
    rows: u64,
    ingest_s: f64,
    pulled: u64,
    pull_s: f64,
    pull_cpu_s: f64,
    concurrency: usize,
    distinct_ids: usize,
    connections: usize,
    rate: Option<f64>,
    late_starts: u64,
    lookup_s: f64,
    lookup_cpu_s: f64,
    /// Sorted, in milliseconds.
    latencies: Vec<f64>,
    checks: Checks,
}

/// What was checked after the timed phases.
struct Checks {
    /// Records in the feed, the same through every replica.
    feed_records: usize,
    /// Entries of the audit log as exported (and verified) from each replica.
    audit_entries: Vec<u64>,
}

impl Figures {
    fn ingest_rows_per_s(&self) -> f64 {
        (self.rows as f64 / self.ingest_s).round()
    }
    fn pull_records_per_s(&self) -> f64 {
        (self.pulled as f64 / self.pull_s).round()
    }
    fn lookups_per_s(&self) -> f64 {
        (self.latencies.len() as f64 / self.lookup_s).round()
    }
    fn pct(&self, p: f64) -> f64 {
        let l = &self.latencies;
        let ms = l[((l.len() as f64 * p) as usize).min(l.len() - 1)];
        (ms * 100.0).round() / 100.0
    }

    fn json(&self, w: &Workload<'_>, calibration: [&Calibration; 2]) -> serde_json::Value {
        serde_json::json!({
            "scale": w.scale_name,
            "store": self.store,
            "replicas": self.replicas,
            "simulate_s": (w.simulate_s * 10.0).round() / 10.0,
            "ingest_rows": self.rows,
            "ingest_rows_per_s": self.ingest_rows_per_s(),
            "pulled_records": self.pulled,
            "pull_records_per_s": self.pull_records_per_s(),
            "pull_cpu_us_per_record": (self.pull_cpu_s * 1e8 / self.pulled as f64).round() / 100.0,
            "lookups": self.latencies.len(),
            "lookup_concurrency": self.concurrency,
            "lookup_distinct_ids": self.distinct_ids,
            "lookup_connections": self.connections,
            "lookup_offered_per_s": self.rate,
            "lookup_late_starts": self.rate.map(|_| self.late_starts),
            "lookups_per_s": self.lookups_per_s(),
            "lookup_cpu_us": (self.lookup_cpu_s * 1e6 / self.latencies.len() as f64).round(),
            "lookup_p10_ms": self.pct(0.10),
            "lookup_p50_ms": self.pct(0.50),
            "lookup_p90_ms": self.pct(0.90),
            "lookup_p99_ms": self.pct(0.99),
            "lookup_p999_ms": self.pct(0.999),
            "lookup_max_ms": self.pct(1.0),
            "checked_feed_records": self.checks.feed_records,
            "checked_audit_entries": self.checks.audit_entries,
            "calibration_sha256_mb_s": [calibration[0].sha256_mb_s, calibration[1].sha256_mb_s],
            "calibration_mem_ns": [calibration[0].mem_ns, calibration[1].mem_ns],
        })
    }
}

impl Workload<'_> {
    /// Ingest, pull and look-ups on a fresh store of `backend`, served by
    /// `replicas` gateways, then the feed and the audit log checked.
    async fn run(&self, backend: Backend, replicas: usize) -> Figures {
        let store = match backend {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        };
        eprintln!("store: {store}, {replicas} replica(s)");
        let pki = self.pki;
        let state = ServerState::on(backend);
        let limits = LimitsConfig {
            rate_per_second: 1e9,
            burst: 1_000_000,
            max_concurrent: 1024,
            ..Default::default()
        };
        let mut servers = Vec::new();
        for _ in 0..replicas {
            servers.push(TestServer::start_with_limits(pki, &state, limits.clone()).await);
        }

        // Ingest every export, as its agency, each through the next replica.
        eprintln!("phase: ingest");
        let t = Instant::now();
        let mut rows = 0;
        let only = std::env::var("ONLY").ok();
        for (i, s) in self.stats.iter().enumerate() {
            if only
                .as_deref()
                .is_some_and(|o| !o.split(',').any(|a| a == s.agency.id()))
            {
                continue;
            }
            let channel = servers[i % replicas]
                .connect(&pki.client(&format!("agency/{}", s.agency.id())))
                .await
                .unwrap();
            let summary = push_file(
                channel,
                &self.data.join(&s.file_name),
                &PushOptions::default(),
                |_| {},
            )
            .await
            .unwrap();
            rows += summary.rows;
        }
        let ingest_s = t.elapsed().as_secs_f64();

        // Pull every kind the assistance policy releases, policy applied.
        let union_identity = pki.client("union/assistance");
        let union = servers[0].connect(&union_identity).await.unwrap();
        let repeat: u32 = env_or("PULL_REPEAT", 1);
        // Each phase is measured on its own: background work left by the previous
        // one (the audit subject index, WAL checkpoints) settles first.
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        eprintln!("phase: pull");
        let t = Instant::now();
        let cpu = cpu_seconds();
        let mut pulled = 0u64;
        for _ in 0..repeat {
            gateway::client::pull(union.clone(), pull_request(), |_| {
                pulled += 1;
                Ok(())
            })
            .await
            .unwrap();
        }
        let pull_s = t.elapsed().as_secs_f64();
        let pull_cpu_s = cpu_seconds() - cpu;

        // Identity numbers of simulated residents (synthetic data) to look up:
        // the first IDS of the household file (default 2,000, looked up over
        // and over, so page caches hold them; IDS=0 takes every resident, in an
        // order that spreads them over the file).
        let distinct: usize = env_or("IDS", 2000);
        let file = std::fs::File::open(self.data.join("public_security.jsonl")).unwrap();
        let ids: Vec<String> = std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(&l).ok())
            .filter_map(|v| v["GMSFHM"].as_str().map(str::to_string))
            .filter(|id| adapters::rules::parse_identity_number(id).is_ok())
            .take(if distinct == 0 { usize::MAX } else { distinct })
            .collect();
        let ids: Vec<String> = if distinct == 0 {
            // A fixed stride coprime with the count visits everyone once.
            let n = ids.len();
            let stride = (n / 2..n).find(|s| gcd(*s, n) == 1).unwrap_or(1);
            (0..n).map(|i| ids[i * stride % n].clone()).collect()
        } else {
            ids
        };
        // Shared by the callers: a copy each (half a million strings apiece with
        // IDS=0) would be made inside the measured phase.
        let ids: std::sync::Arc<[String]> = ids.into();
        let concurrency: usize = env_or("CONCURRENCY", 64);
        // Look-ups per second offered in all (open loop); unset: each caller
        // sends its next look-up as soon as the last is answered (closed loop).
        let rate: Option<f64> = std::env::var("RATE").ok().and_then(|r| r.parse().ok());
        // Callers share CONNECTIONS connections (default 1: all 64 callers
        // multiplexed on one HTTP/2 connection, the hardest case for the server's
        // connection task; 64 is one connection per caller, as 64 officers'
        // desktops would have), at least one to each replica, which take the
        // callers in turn.
        let connections: usize = env_or("CONNECTIONS", 1);
        let mut channels = vec![union.clone()];
        for c in 1..connections.max(replicas) {
            channels.push(
                servers[c % replicas]
                    .connect(&union_identity)
                    .await
                    .unwrap(),
            );
        }
        tokio::time::sleep(std::time::Duration::from_secs(2)).await;
        // Warm-up, not counted: the callers look up every distinct resident once
        // (IDS up to 20,000; beyond that five each), so the server has its read
        // connections and their page caches as a server in service would, and the
        // measured phase is the steady state, not the first pass over cold pages.
        let warm = if ids.len() <= 20_000 {
            ids.len().div_ceil(concurrency)
        } else {
            5
        };
        let mut warmups = Vec::new();
        for w in 0..concurrency {
            let mut client = UnionExchangeClient::new(channels[w % channels.len()].clone());
            let ids: Vec<String> = ids
                .iter()
                .skip(w)
                .step_by(concurrency)
                .take(warm)
                .cloned()
                .collect();
            warmups.push(tokio::spawn(async move {
                for id in ids {
                    client
                        .lookup(LookupRequest {
                            id_number: id,
                            case_number: "BENCH-WARMUP".into(),
                            purpose: "hardship_application".into(),
                        })
                        .await
                        .unwrap();
                }
            }));
        }
        for w in warmups {
            w.await.unwrap();
        }
        eprintln!("phase: lookup");
        let lookups = self.lookups;
        let t = Instant::now();
        let cpu = cpu_seconds();
        let pace = rate.map(|r| std::time::Duration::from_secs_f64(1.0 / r));
        let late_starts = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut tasks = Vec::new();
        for w in 0..concurrency {
            let mut client = UnionExchangeClient::new(channels[w % channels.len()].clone());
            let ids = ids.clone();
            let late = late_starts.clone();
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                for i in (w..lookups).step_by(concurrency) {
                    // Paced (RATE): look-up i is due at i / RATE seconds. Its
                    // latency counts from when it is sent (the timer wakes up to
                    // a millisecond late); one sent over 2 ms after it was due
                    // (its caller still waiting for the last answer) is counted
                    // as late, since the offered rate was then not kept.
                    if let Some(every) = pace {
                        let due = t + every * i as u32;
                        tokio::time::sleep_until(due.into()).await;
                        if due.elapsed() > std::time::Duration::from_millis(2) {
                            late.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                    let started = Instant::now();
                    let _ = client
                        .lookup(LookupRequest {
                            id_number: ids[i % ids.len()].clone(),
                            case_number: format!("BENCH-{i}"),
                            purpose: "hardship_application".into(),
                        })
                        .await
                        .unwrap();
                    latencies.push((
                        (started - t).as_secs_f64() * 1000.0,
                        started.elapsed().as_secs_f64() * 1000.0,
                    ));
                }
                latencies
            }));
        }
        let mut latencies = Vec::new();
        for t in tasks {
            latencies.extend(t.await.unwrap());
        }
        let lookup_s = t.elapsed().as_secs_f64();
        let lookup_cpu_s = cpu_seconds() - cpu;
        eprintln!("phase: checks");
        if let Ok(path) = std::env::var("LATENCY_LOG") {
            let mut out = String::new();
            for (at, ms) in &latencies {
                out.push_str(&format!("{at:.3} {ms:.3}\n"));
            }
            // The baseline's where named, the PostgreSQL run's beside it.
            let path = match backend {
                Backend::Sqlite => path,
                Backend::Postgres => format!("{path}.postgres"),
            };
            std::fs::write(path, out).unwrap();
        }
        let mut latencies: Vec<f64> = latencies.into_iter().map(|(_, ms)| ms).collect();
        latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let per_pull = pulled / u64::from(repeat.max(1));
        let checks = check(&servers, pki, &state, per_pull, latencies.len() as u64).await;
        for server in servers {
            server.stop().await;
        }
        eprintln!("phase: done");
        Figures {
            store,
            replicas,
            rows,
            ingest_s,
            pulled,
            pull_s,
            pull_cpu_s,
            concurrency,
            distinct_ids: ids.len(),
            connections,
            rate,
            late_starts: late_starts.load(std::sync::atomic::Ordering::Relaxed),
            lookup_s,
            lookup_cpu_s,
            latencies,
            checks,
        }
    }
}

fn pull_request() -> PullRequest {
    PullRequest {
        purpose: "hardship_screening".into(),
        ..Default::default()
    }
}

/// After the load: the feed through every replica is the same, its cursors
/// strictly increase (no change delivered twice) and it holds as many
/// records as the timed pull did (none appeared late, none went missing);
/// the audit log exported from every replica verifies against the log's key
/// and holds at least an entry per look-up. Panics otherwise: figures of a
/// run that lost or duplicated data are not figures.
async fn check(
    servers: &[TestServer],
    pki: &TestPki,
    state: &ServerState,
    pulled: u64,
    lookups: u64,
) -> Checks {
    let mut feeds: Vec<Vec<u64>> = Vec::new();
    for server in servers {
        let union = server
            .connect(&pki.client("union/assistance"))
            .await
            .unwrap();
        let mut cursors = Vec::new();
        gateway::client::pull(union, pull_request(), |e| {
            cursors.push(e.cursor);
            Ok(())
        })
        .await
        .unwrap();
        assert!(
            cursors.windows(2).all(|w| w[0] < w[1]),
            "the feed's cursors do not strictly increase"
        );
        assert_eq!(
            cursors.len() as u64,
            pulled,
            "the feed changed after the load"
        );
        feeds.push(cursors);
    }
    assert!(
        feeds.windows(2).all(|w| w[0] == w[1]),
        "replicas serve different feeds"
    );
    let keys = gateway::keys::Keys::load(&state.keys_file(), false).unwrap();
    let vkey = gateway::audit::log::vkey(TRUST_DOMAIN, keys.audit_log_seed()).unwrap();
    let verifier = tlog::Verifier::parse(&vkey).unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut audit_entries = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let path = out.path().join(format!("replica-{i}.jsonl"));
        let auditor = server
            .connect(&pki.client("auditor/compliance"))
            .await
            .unwrap();
        gateway_cli::cmd::audit::export_to_file(auditor, &path)
            .await
            .unwrap();
        let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
        let verified = gateway::audit::export::verify(file, &verifier, None)
            .unwrap_or_else(|e| panic!("the audit export from replica {i} does not verify: {e:?}"));
        assert!(
            verified.size >= lookups,
            "the audit log from replica {i} holds {} entries, fewer than the {lookups} look-ups",
            verified.size
        );
        audit_entries.push(verified.size);
    }
    Checks {
        feed_records: feeds[0].len(),
        audit_entries,
    }
}

/// The PostgreSQL run beside the SQLite one, as ratios, with the
/// calibrations before, between and after the two runs.
fn print_comparison(sqlite: &Figures, pg: &Figures, replicas: usize, cal: [&Calibration; 3]) {
    let pg_name = format!("postgres ×{replicas}");
    println!();
    println!("{:<22} {:>12} {:>12} {:>7}", "", "sqlite", pg_name, "ratio");
    let rows: [(&str, f64, f64); 6] = [
        (
            "ingest rows/s",
            sqlite.ingest_rows_per_s(),
            pg.ingest_rows_per_s(),
        ),
        (
            "pull records/s",
            sqlite.pull_records_per_s(),
            pg.pull_records_per_s(),
        ),
        ("look-ups/s", sqlite.lookups_per_s(), pg.lookups_per_s()),
        ("look-up p50 ms", sqlite.pct(0.50), pg.pct(0.50)),
        ("look-up p99 ms", sqlite.pct(0.99), pg.pct(0.99)),
        (
            "look-up CPU µs",
            sqlite.lookup_cpu_s * 1e6 / sqlite.latencies.len() as f64,
            pg.lookup_cpu_s * 1e6 / pg.latencies.len() as f64,
        ),
    ];
    for (name, s, p) in rows {
        println!("{name:<22} {s:>12.2} {p:>12.2} {:>7.2}", p / s);
    }
    println!(
        "calibration SHA-256 MB/s: {} before, {} between, {} after",
        cal[0].sha256_mb_s, cal[1].sha256_mb_s, cal[2].sha256_mb_s
    );
    println!(
        "calibration random read ns: {} before, {} between, {} after",
        cal[0].mem_ns, cal[1].mem_ns, cal[2].mem_ns
    );
    println!(
        "checked: feed of {} records identical through {} replica(s), cursors strictly increasing; \
         audit export from each verifies ({:?} entries)",
        pg.checks.feed_records, replicas, pg.checks.audit_entries
    );
    if replicas > 1 {
        return;
    }
    println!(
        "targets: ingest ≥ 0.5 {}, pull ≥ 0.5 {}, p99 < 15 ms {}",
        verdict(pg.ingest_rows_per_s() >= 0.5 * sqlite.ingest_rows_per_s()),
        verdict(pg.pull_records_per_s() >= 0.5 * sqlite.pull_records_per_s()),
        verdict(pg.pct(0.99) < 15.0),
    );
}

fn verdict(met: bool) -> &'static str {
    if met { "met" } else { "MISSED" }
}

/// CPU time (user and system, all threads: server and client alike) this
/// process has used so far, from /proc (Linux), printed per operation beside
/// the throughput (which on a shared machine swings with its neighbours).
/// NaN where /proc is not there.
fn cpu_seconds() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return f64::NAN;
    };
    // Fields after the command name (which is in parentheses): utime and
    // stime are the 12th and 13th, in clock ticks of 1/100 s.
    let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    match (ticks(11), ticks(12)) {
        (Some(user), Some(system)) => (user + system) / 100.0,
        _ => f64::NAN,
    }
}

/// How fast this machine is at the moment, on one core.
struct Calibration {
    /// SHA-256 throughput (best of five passes over 64 MiB).
    sha256_mb_s: f64,
    /// One dependent random read over 128 MiB (a cache and TLB miss each).
    mem_ns: f64,
}

fn calibrate() -> Calibration {
    let data = vec![0x5au8; 64 << 20];
    let mut best = f64::INFINITY;
    for _ in 0..5 {
        let t = Instant::now();
        std::hint::black_box(ring::digest::digest(&ring::digest::SHA256, &data));
        best = best.min(t.elapsed().as_secs_f64());
    }
    let sha256_mb_s = (64.0 / best).round();
    // A single cycle through all slots (Sattolo's shuffle), so every read
    // depends on the one before and none is predictable.
    let n = 32 << 20;
    let mut next: Vec<u32> = (0..n as u32).collect();
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for i in (1..n).rev() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        next.swap(i, (x % i as u64) as usize);
    }
    let steps = 4_000_000;
    let mut at = 0u32;
    let t = Instant::now();
    for _ in 0..steps {
        at = next[at as usize];
    }
    std::hint::black_box(at);
    let mem_ns = (t.elapsed().as_secs_f64() * 1e9 / steps as f64 * 10.0).round() / 10.0;
    Calibration {
        sha256_mb_s,
        mem_ns,
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// A number from the environment, or its default.
fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
