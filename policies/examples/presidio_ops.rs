//! Benchmark: the policy engine's operators over the shared 100,000-person file,
//! with the same operations as the Presidio anonymizer peer
//! (`../shared/bench/presidio_mask.py`): name → surname + mask, identity number →
//! first 6 and last 4 kept, a keyed pseudonym of the identity number (HMAC-SHA256;
//! Presidio's peer uses a salted SHA-256), phone → first 3 and last 4 kept, address
//! → empty, other fields unchanged. Run by `scripts/bench-policy-vs-presidio.sh`.
//!
//! Prints one JSON line: `mask_rps` (records/s, one thread, parse and output
//! outside the timing, as the peer's `mask_rps_median`), `mask_rps_2threads`, and
//! `e2e_jsonl_rps` (JSONL in → JSONL out, one thread).

use policies::{ConsumerKeys, Operator, apply_text};
use serde::{Deserialize, Serialize};
use std::time::Instant;

#[derive(Deserialize, Clone)]
struct Person {
    seq: String,
    name: String,
    id_number: String,
    phone: String,
    address: String,
    birth_date: String,
    wage: serde_json::Value,
}

#[derive(Serialize)]
struct Masked {
    seq: String,
    name: String,
    id_number: String,
    id_hash: String,
    phone: String,
    address: String,
    birth_date: String,
    wage: serde_json::Value,
}

struct Ops {
    name: Operator,
    id: Operator,
    hash: Operator,
    phone: Operator,
    address: Operator,
}

fn mask(op: &Operator, v: &str, keys: &ConsumerKeys) -> String {
    apply_text(op, v, keys).map(|(s, _)| s).unwrap_or_default()
}

fn mask_person(p: &Person, ops: &Ops, keys: &ConsumerKeys) -> Masked {
    Masked {
        seq: p.seq.clone(),
        name: mask(&ops.name, &p.name, keys),
        id_number: mask(&ops.id, &p.id_number, keys),
        id_hash: mask(&ops.hash, &p.id_number, keys),
        phone: mask(&ops.phone, &p.phone, keys),
        address: mask(&ops.address, &p.address, keys),
        birth_date: p.birth_date.clone(),
        wage: p.wage.clone(),
    }
}

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/peer-bench/persons-100k.jsonl".into());
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let lines: Vec<&str> = text.lines().filter(|l| !l.is_empty()).collect();
    let people: Vec<Person> = lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let keys = ConsumerKeys::derive(b"bench-secret-bench-secret-bench!", "bench");
    let ops = Ops {
        name: Operator::Mask {
            keep_first: 1,
            keep_last: 0,
            mask_char: '*',
        },
        id: Operator::Mask {
            keep_first: 6,
            keep_last: 4,
            mask_char: '*',
        },
        hash: Operator::Pseudonymise,
        phone: Operator::Mask {
            keep_first: 3,
            keep_last: 4,
            mask_char: '*',
        },
        address: Operator::Constant {
            value: String::new(),
        },
    };

    // Correctness against the peer's checks, on every record.
    for p in &people {
        let m = mask_person(p, &ops, &keys);
        let n = p.id_number.chars().count();
        assert_eq!(
            m.id_number,
            format!(
                "{}{}{}",
                &p.id_number[..6],
                "*".repeat(n - 10),
                &p.id_number[n - 4..]
            )
        );
        assert!(m.address.is_empty());
        assert!(m.name.starts_with(p.name.chars().next().unwrap()));
    }

    let mut runs = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        let mut sink = 0usize;
        for p in &people {
            sink += mask_person(p, &ops, &keys).id_hash.len();
        }
        assert!(sink > 0);
        runs.push(people.len() as f64 / t.elapsed().as_secs_f64());
    }
    runs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mask_rps = runs[runs.len() / 2];

    let mut runs2 = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for half in people.chunks(people.len().div_ceil(2)) {
                let (ops, keys) = (&ops, &keys);
                s.spawn(move || {
                    half.iter()
                        .map(|p| mask_person(p, ops, keys).seq.len())
                        .sum::<usize>()
                });
            }
        });
        runs2.push(people.len() as f64 / t.elapsed().as_secs_f64());
    }
    runs2.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mask_rps_2 = runs2[runs2.len() / 2];

    let t = Instant::now();
    let mut out = Vec::with_capacity(text.len());
    for l in &lines {
        let p: Person = serde_json::from_str(l).unwrap();
        serde_json::to_writer(&mut out, &mask_person(&p, &ops, &keys)).unwrap();
        out.push(b'\n');
    }
    let e2e = lines.len() as f64 / t.elapsed().as_secs_f64();
    println!(
        "{}",
        serde_json::json!({
            "engine": "gateway-policies",
            "records": people.len(),
            "mask_rps": mask_rps.round(),
            "mask_rps_2threads": mask_rps_2.round(),
            "e2e_jsonl_rps": e2e.round(),
        })
    );
}
