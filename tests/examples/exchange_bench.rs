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

use adapters::simulate::{Scale, simulate_to_dir};
use gateway::client::{PushOptions, push_file};
use gateway::limits::LimitsConfig;
use gateway::proto::{LookupRequest, PullRequest, union_exchange_client::UnionExchangeClient};
use gateway_tests::{ServerState, TestPki, TestServer};
use std::io::BufRead;
use std::time::Instant;

#[global_allocator]
static ALLOCATOR: gateway::Allocator = gateway::Allocator {};

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let scale_name = args.next().unwrap_or_else(|| "small".into());
    let scale = Scale::from_id(&scale_name).expect("scale: small or wuhu");
    let lookups: usize = args.next().map(|s| s.parse().unwrap()).unwrap_or(96_000);

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
    let state = ServerState::new();
    let limits = LimitsConfig {
        rate_per_second: 1e9,
        burst: 1_000_000,
        max_concurrent: 1024,
        ..Default::default()
    };
    let server = TestServer::start_with_limits(&pki, &state, limits).await;

    // Ingest every export, as its agency.
    eprintln!("phase: ingest");
    let t = Instant::now();
    let mut rows = 0;
    let only = std::env::var("ONLY").ok();
    for s in &stats {
        if only
            .as_deref()
            .is_some_and(|o| !o.split(',').any(|a| a == s.agency.id()))
        {
            continue;
        }
        let channel = server
            .connect(&pki.client(&format!("agency/{}", s.agency.id())))
            .await
            .unwrap();
        let summary = push_file(
            channel,
            &data.path().join(&s.file_name),
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
    let union = server.connect(&union_identity).await.unwrap();
    let repeat: u32 = env_or("PULL_REPEAT", 1);
    // Each phase is measured on its own: background work left by the previous
    // one (the audit subject index, WAL checkpoints) settles first.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    eprintln!("phase: pull");
    let t = Instant::now();
    let cpu = cpu_seconds();
    let mut pulled = 0u64;
    for _ in 0..repeat {
        gateway::client::pull(
            union.clone(),
            PullRequest {
                purpose: "hardship_screening".into(),
                ..Default::default()
            },
            |_| {
                pulled += 1;
                Ok(())
            },
        )
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
    let file = std::fs::File::open(data.path().join("public_security.jsonl")).unwrap();
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
        let mut client = UnionExchangeClient::new(union.clone());
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
    // Callers share CONNECTIONS connections (default 1: all 64 callers
    // multiplexed on one HTTP/2 connection, the hardest case for the server's
    // connection task; 64 is one connection per caller, as 64 officers'
    // desktops would have).
    let connections: usize = env_or("CONNECTIONS", 1);
    let mut channels = vec![union.clone()];
    for _ in 1..connections {
        channels.push(server.connect(&union_identity).await.unwrap());
    }
    eprintln!("phase: lookup");
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
    eprintln!("phase: done");
    let calibration_end = calibrate();
    if let Ok(path) = std::env::var("LATENCY_LOG") {
        let mut out = String::new();
        for (at, ms) in &latencies {
            out.push_str(&format!("{at:.3} {ms:.3}\n"));
        }
        std::fs::write(path, out).unwrap();
    }
    let mut latencies: Vec<f64> = latencies.into_iter().map(|(_, ms)| ms).collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let pct = |p: f64| latencies[((latencies.len() as f64 * p) as usize).min(latencies.len() - 1)];
    println!(
        "{}",
        serde_json::json!({
            "scale": scale_name,
            "simulate_s": (simulate_s * 10.0).round() / 10.0,
            "ingest_rows": rows,
            "ingest_rows_per_s": (rows as f64 / ingest_s).round(),
            "pulled_records": pulled,
            "pull_records_per_s": (pulled as f64 / pull_s).round(),
            "pull_cpu_us_per_record": (pull_cpu_s * 1e8 / pulled as f64).round() / 100.0,
            "lookups": latencies.len(),
            "lookup_concurrency": concurrency,
            "lookup_distinct_ids": ids.len(),
            "lookup_connections": connections,
            "lookup_offered_per_s": rate,
            "lookup_late_starts": rate.map(|_| late_starts.load(std::sync::atomic::Ordering::Relaxed)),
            "lookups_per_s": (latencies.len() as f64 / lookup_s).round(),
            "lookup_cpu_us": (lookup_cpu_s * 1e6 / latencies.len() as f64).round(),
            "lookup_p10_ms": (pct(0.10) * 100.0).round() / 100.0,
            "lookup_p50_ms": (pct(0.50) * 100.0).round() / 100.0,
            "lookup_p90_ms": (pct(0.90) * 100.0).round() / 100.0,
            "lookup_p99_ms": (pct(0.99) * 100.0).round() / 100.0,
            "lookup_p999_ms": (pct(0.999) * 100.0).round() / 100.0,
            "lookup_max_ms": (pct(1.0) * 100.0).round() / 100.0,
            "calibration_sha256_mb_s": [calibration_start.sha256_mb_s, calibration_end.sha256_mb_s],
            "calibration_mem_ns": [calibration_start.mem_ns, calibration_end.mem_ns],
        })
    );
    server.stop().await;
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
