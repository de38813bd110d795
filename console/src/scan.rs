//! The overview's full verification: the whole log is read through
//! `Audit.Query` (which names no one and so is not itself audited), every
//! entry is hashed again from the bytes the store returns, and the root of
//! those leaves must be the root of the latest signed checkpoint. Along the
//! way each person's back-pointer chain is followed and the overview's
//! figures are counted, so that what the charts show is what was verified.
//!
//! When the root differs, the first altered entry is found by descending the
//! tree with inclusion proofs: each proof (checked against the signed root
//! first) gives the signed hashes of the subtrees beside a leaf, and the first
//! subtree whose recomputed hash differs holds the first altered entry.
//! Memory grows with the log (a 32-byte hash per entry).

use crate::App;
use crate::i18n::Msg;
use crate::ledger::{Observation, Verdict, now_ms};
use crate::upstream::{UpstreamError, hashes};
use gateway::audit::{CanonicalEntry, Value};
use gateway::proto;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Problems listed one by one; beyond this they are counted.
const LISTED_PROBLEMS: usize = 20;
/// Days in the chart.
pub const CHART_DAYS: i64 = 14;
const DELIVERY_DAYS: i64 = 30;
const REFUSAL_DAYS: i64 = 7;

/// One full verification with the figures counted on the way.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub started_ms: i64,
    pub finished_ms: i64,
    /// The latest signed checkpoint, as checked; `None` if the gateway gave none.
    pub observation: Option<Observation>,
    pub checkpoint_error: Option<String>,
    /// The whole log recomputed against the checkpoint.
    pub log: Verdict,
    /// Every problem found with the log's entries (the first ones).
    pub log_problems: Vec<Msg>,
    /// Entries named in a problem.
    pub flagged: BTreeSet<u64>,
    pub chains: Verdict,
    pub chain_problems: Vec<Msg>,
    pub stale: Option<Msg>,
    /// Reading the log stopped early.
    pub scan_error: Option<String>,
    pub stats: Stats,
}

#[derive(Debug, Clone, Default)]
pub struct Stats {
    /// The chart's days, oldest first: (date, action → entries).
    pub days: Vec<(time::Date, BTreeMap<String, u64>)>,
    pub deliveries: Vec<DeliveryRow>,
    pub denials: Vec<RefusalRow>,
    pub denials_total: u64,
    pub refused: Vec<RefusalRow>,
    pub refused_total: u64,
    /// For the search form's choices.
    pub actions: BTreeSet<String>,
    pub actors: BTreeSet<String>,
    pub entries: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryRow {
    pub consumer: String,
    pub purpose: String,
    pub pull_pages: u64,
    pub records: u64,
    pub lookups: u64,
    pub reidentifications: u64,
}

/// Refusals grouped by who and why (denied calls: caller, call, code;
/// refused connections: peer, reason).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefusalRow {
    pub who: String,
    pub what: String,
    pub code: String,
    pub count: u64,
    pub last_seq: u64,
}

fn u64_of(v: &Value, key: &str) -> u64 {
    match v.get(key) {
        Some(Value::U64(n)) => *n,
        _ => 0,
    }
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.str(key).unwrap_or("")
}

/// Counts entries into the overview's figures.
struct Counter {
    offset: time::UtcOffset,
    now_ms: i64,
    days: BTreeMap<time::Date, BTreeMap<String, u64>>,
    deliveries: BTreeMap<(String, String), DeliveryRow>,
    denials: BTreeMap<(String, String, String), RefusalRow>,
    refused: BTreeMap<(String, String), RefusalRow>,
    stats: Stats,
}

impl Counter {
    fn new(offset: time::UtcOffset, now_ms: i64) -> Counter {
        let today = date_of(now_ms, offset);
        let days = (0..CHART_DAYS)
            .rev()
            .map(|d| (today - time::Duration::days(d), BTreeMap::new()))
            .collect();
        Counter {
            offset,
            now_ms,
            days,
            deliveries: BTreeMap::new(),
            denials: BTreeMap::new(),
            refused: BTreeMap::new(),
            stats: Stats::default(),
        }
    }

    fn add(&mut self, e: &CanonicalEntry) {
        self.stats.entries += 1;
        self.stats.actions.insert(e.action.clone());
        if !e.actor.is_empty() {
            self.stats.actors.insert(e.actor.clone());
        }
        let date = date_of(e.at_ms, self.offset);
        if let Some(day) = self.days.get_mut(&date) {
            *day.entry(e.action.clone()).or_default() += 1;
        }
        let age_days = (self.now_ms - e.at_ms) / 86_400_000;
        let d = &e.details;
        if age_days < DELIVERY_DAYS {
            let row = |s: &mut Self| {
                let consumer = match str_of(d, "consumer") {
                    "" => e.actor.trim_start_matches("union/").to_string(),
                    c => c.to_string(),
                };
                let purpose = str_of(d, "purpose").to_string();
                s.deliveries
                    .entry((consumer.clone(), purpose.clone()))
                    .or_insert_with(|| DeliveryRow {
                        consumer,
                        purpose,
                        ..Default::default()
                    })
                    .clone()
            };
            match e.action.as_str() {
                "records_delivered" => {
                    let mut r = row(self);
                    r.pull_pages += 1;
                    r.records += u64_of(d, "records");
                    self.put_delivery(r);
                }
                "person_looked_up" => {
                    let mut r = row(self);
                    r.lookups += 1;
                    self.put_delivery(r);
                }
                "person_reidentified" => {
                    let mut r = row(self);
                    r.reidentifications += 1;
                    self.put_delivery(r);
                }
                _ => {}
            }
        }
        if age_days < REFUSAL_DAYS {
            // A summary entry stands for itself and its counted repeats.
            let count = 1 + u64_of(d, "repeated");
            match e.action.as_str() {
                "denied" => {
                    // The call by service and method (the package is the same for all).
                    let rpc = str_of(d, "rpc");
                    let key = (
                        e.actor.clone(),
                        rpc.strip_prefix("/exchange.v1.").unwrap_or(rpc).to_string(),
                        str_of(d, "code").to_string(),
                    );
                    let r = self.denials.entry(key.clone()).or_insert(RefusalRow {
                        who: key.0,
                        what: key.1,
                        code: key.2,
                        ..Default::default()
                    });
                    r.count += count;
                    r.last_seq = e.seq;
                    self.stats.denials_total += count;
                }
                "connection_refused" => {
                    let key = (
                        str_of(d, "peer").to_string(),
                        str_of(d, "reason").to_string(),
                    );
                    let r = self.refused.entry(key.clone()).or_insert(RefusalRow {
                        who: key.0,
                        what: key.1,
                        ..Default::default()
                    });
                    r.count += count;
                    r.last_seq = e.seq;
                    self.stats.refused_total += count;
                }
                _ => {}
            }
        }
    }

    fn put_delivery(&mut self, r: DeliveryRow) {
        self.deliveries
            .insert((r.consumer.clone(), r.purpose.clone()), r);
    }

    fn finish(mut self) -> Stats {
        self.stats.days = self.days.into_iter().collect();
        self.stats.deliveries = self.deliveries.into_values().collect();
        let mut denials: Vec<_> = self.denials.into_values().collect();
        denials.sort_by(|a, b| b.count.cmp(&a.count).then(a.who.cmp(&b.who)));
        self.stats.denials = denials;
        let mut refused: Vec<_> = self.refused.into_values().collect();
        refused.sort_by(|a, b| b.count.cmp(&a.count).then(a.who.cmp(&b.who)));
        self.stats.refused = refused;
        self.stats
    }
}

pub fn date_of(ms: i64, offset: time::UtcOffset) -> time::Date {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .map(|t| t.to_offset(offset).date())
        .unwrap_or(time::Date::MIN)
}

/// Follows every person's back-pointers through the entries in seq order.
#[derive(Default)]
struct Chains {
    last_of: HashMap<String, u64>,
    problems: Vec<Msg>,
    count: u64,
    flagged: BTreeSet<u64>,
}

impl Chains {
    fn add(&mut self, e: &CanonicalEntry) {
        for s in &e.subjects {
            let found = self.last_of.insert(s.token.clone(), e.seq).unwrap_or(0);
            if s.prev_seq != found {
                self.count += 1;
                self.flagged.insert(e.seq);
                if self.problems.len() < LISTED_PROBLEMS {
                    self.problems.push(Msg::ChainBroken {
                        seq: e.seq,
                        points_to: s.prev_seq,
                        found,
                    });
                }
            }
        }
    }
}

/// Reads and verifies the whole log.
pub(crate) async fn run(app: &App) -> Snapshot {
    let started_ms = now_ms();
    let (observation, checkpoint_error) = match app.upstream.checkpoint().await {
        Ok(cp) => (Some(app.ledger.observe(&app.upstream, &cp).await), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let signed = observation.as_ref().and_then(|o| o.checkpoint.clone());
    let size = signed.as_ref().map(|c| c.size()).unwrap_or(0);
    let read_until = if signed.is_some() { size } else { u64::MAX };
    let stale_cutoff = started_ms - app.config.stale_after.as_millis() as i64;

    let mut counter = Counter::new(app.config.utc_offset, started_ms);
    let mut chains = Chains::default();
    let mut leaves: Vec<tlog::Hash> = Vec::with_capacity(size.min(1 << 24) as usize);
    let mut problems: Vec<Msg> = Vec::new();
    let mut problem_count = 0u64;
    let mut flagged = BTreeSet::new();
    let mut missing: Vec<u64> = Vec::new();
    let mut expected = 1u64;
    let mut uncovered_old = 0u64;
    let mut scan_error = None;
    let mut note = |m: Msg, seq: u64, problems: &mut Vec<Msg>, flagged: &mut BTreeSet<u64>| {
        problem_count += 1;
        flagged.insert(seq);
        if problems.len() < LISTED_PROBLEMS {
            problems.push(m);
        }
    };

    let mut q = proto::AuditQuery {
        page_size: 1000,
        ..Default::default()
    };
    loop {
        let page = match app.upstream.query(q.clone()).await {
            Ok(p) => p,
            Err(e) => {
                scan_error = Some(e.to_string());
                break;
            }
        };
        for e in &page.entries {
            let decoded = CanonicalEntry::decode(&e.canonical);
            if let Ok(d) = &decoded {
                counter.add(d);
                chains.add(d);
            }
            if e.seq > size {
                // Appended after the checkpoint: counted, not yet covered.
                if decoded.as_ref().is_ok_and(|d| d.at_ms < stale_cutoff) {
                    uncovered_old += 1;
                }
                continue;
            }
            if e.seq < expected {
                note(
                    Msg::OutOfOrder {
                        seq: e.seq,
                        after: expected - 1,
                    },
                    e.seq,
                    &mut problems,
                    &mut flagged,
                );
                continue;
            }
            while expected < e.seq {
                missing.push(expected);
                flagged.insert(expected);
                leaves.push([0; 32]);
                expected += 1;
            }
            leaves.push(tlog::leaf_hash(&e.canonical));
            expected += 1;
            if decoded.is_err() {
                note(
                    Msg::Undecodable { seq: e.seq },
                    e.seq,
                    &mut problems,
                    &mut flagged,
                );
            }
        }
        // Entries appended after the checkpoint count for the figures; the
        // read ends with the page that passes it (without a checkpoint, at
        // the end of the log).
        if page.next_after_seq == 0 || page.entries.last().is_some_and(|e| e.seq > read_until) {
            break;
        }
        q.after_seq = page.next_after_seq;
    }
    if scan_error.is_none() {
        while expected <= size {
            missing.push(expected);
            flagged.insert(expected);
            leaves.push([0; 32]);
            expected += 1;
        }
    }
    if let Some(&first) = missing.first() {
        problem_count += missing.len() as u64;
        problems.insert(
            0,
            Msg::Missing {
                seq: first,
                more: missing.len() as u64 - 1,
            },
        );
    }

    let log = match (&signed, &scan_error) {
        (None, _) => Verdict::Info(Msg::NotChecked),
        (Some(_), Some(e)) => Verdict::Info(Msg::Gateway(e.clone())),
        (Some(cp), None) => {
            if missing.is_empty() && tlog::reference::root(&leaves) == *cp.root() {
                if problem_count == 0 {
                    Verdict::Verified(Msg::LogVerified { size })
                } else {
                    Verdict::Failed(problems[0].clone())
                }
            } else if !missing.is_empty() {
                Verdict::Failed(problems[0].clone())
            } else {
                match locate(app, &leaves, size, cp.root()).await {
                    Ok(Some(seq)) => {
                        flagged.insert(seq);
                        problems.insert(0, Msg::Altered { seq });
                        Verdict::Failed(Msg::Altered { seq })
                    }
                    Ok(None) => {
                        problems.insert(0, Msg::RootMismatch);
                        Verdict::Failed(Msg::RootMismatch)
                    }
                    Err(LocateError::Upstream(e)) => {
                        problems.insert(0, Msg::Gateway(e.to_string()));
                        problems.insert(0, Msg::RootMismatch);
                        Verdict::Failed(Msg::RootMismatch)
                    }
                    Err(LocateError::Proof(m)) => {
                        problems.insert(0, m.clone());
                        Verdict::Failed(m)
                    }
                }
            }
        }
    };
    if problem_count > problems.len() as u64 {
        problems.push(Msg::MoreProblems {
            n: problem_count - problems.len() as u64,
        });
    }

    let chain_verdict = if scan_error.is_some() {
        Verdict::Info(Msg::NotChecked)
    } else if chains.count == 0 {
        Verdict::Verified(Msg::ChainsComplete {
            persons: chains.last_of.len() as u64,
        })
    } else {
        Verdict::Failed(chains.problems[0].clone())
    };
    let mut chain_problems = chains.problems;
    if chains.count > chain_problems.len() as u64 {
        chain_problems.push(Msg::MoreProblems {
            n: chains.count - chain_problems.len() as u64,
        });
    }
    flagged.extend(chains.flagged);

    let minutes = app.config.stale_after.as_secs() / 60;
    let stale = if uncovered_old > 0 {
        Some(Msg::Stale {
            entries: uncovered_old,
            minutes,
        })
    } else if observation.is_none() {
        match app.ledger.latest().await {
            Some(last) if last.first_seen_ms < stale_cutoff => {
                Some(Msg::StaleNoCheckpoint { minutes })
            }
            _ => None,
        }
    } else {
        None
    };

    Snapshot {
        started_ms,
        finished_ms: now_ms(),
        observation,
        checkpoint_error,
        log,
        log_problems: problems,
        flagged,
        chains: chain_verdict,
        chain_problems,
        stale,
        scan_error,
        stats: counter.finish(),
    }
}

enum LocateError {
    Upstream(UpstreamError),
    Proof(Msg),
}

/// The ranges of leaves whose subtree hashes form the inclusion proof of
/// leaf `m` in the tree over leaves `lo..hi`, in proof order (RFC 9162
/// §2.1.3.1: PATH(m, D[n]) is PATH of the half holding m, then the other half).
pub fn proof_ranges(m: u64, lo: u64, hi: u64, out: &mut Vec<(u64, u64)>) {
    let n = hi - lo;
    if n <= 1 {
        return;
    }
    let k = 1u64 << (63 - (n - 1).leading_zeros());
    if m < lo + k {
        proof_ranges(m, lo, lo + k, out);
        out.push((lo + k, hi));
    } else {
        proof_ranges(m, lo + k, hi, out);
        out.push((lo, lo + k));
    }
}

/// The seq of the first entry whose bytes do not hash to the signed leaf at
/// its position (`None` if none could be found).
async fn locate(
    app: &App,
    leaves: &[tlog::Hash],
    size: u64,
    root: &tlog::Hash,
) -> Result<Option<u64>, LocateError> {
    let mut target = 0u64;
    loop {
        let seq = target + 1;
        let proof = app
            .upstream
            .inclusion(seq, size)
            .await
            .map_err(LocateError::Upstream)?;
        let bad = |why: String| LocateError::Proof(Msg::ProofFailed { seq, why });
        if proof.tree_size != size {
            return Err(bad(format!("proved for {} entries", proof.tree_size)));
        }
        let leaf: tlog::Hash = proof
            .leaf_hash
            .as_slice()
            .try_into()
            .map_err(|_| bad("malformed leaf hash".into()))?;
        let path = hashes(&proof.hashes).ok_or_else(|| bad("malformed proof".into()))?;
        tlog::verify_inclusion(&leaf, target, size, &path, root).map_err(|e| bad(e.to_string()))?;
        if leaves[target as usize] != leaf {
            return Ok(Some(seq));
        }
        let mut ranges = Vec::new();
        proof_ranges(target, 0, size, &mut ranges);
        let next = ranges
            .iter()
            .zip(&path)
            .filter(|((lo, hi), h)| {
                *lo > target && tlog::reference::root(&leaves[*lo as usize..*hi as usize]) != **h
            })
            .map(|((lo, _), _)| *lo)
            .min();
        match next {
            Some(lo) => target = lo,
            None => return Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_ranges_match_the_reference_proof() {
        for size in 1..40u64 {
            let leaves: Vec<tlog::Hash> = (0..size)
                .map(|i| tlog::leaf_hash(&i.to_be_bytes()))
                .collect();
            for m in 0..size {
                let proof = tlog::reference::inclusion_proof(m, &leaves).unwrap();
                let mut ranges = Vec::new();
                proof_ranges(m, 0, size, &mut ranges);
                assert_eq!(ranges.len(), proof.len(), "size {size} leaf {m}");
                for ((lo, hi), h) in ranges.iter().zip(&proof) {
                    assert_eq!(
                        tlog::reference::root(&leaves[*lo as usize..*hi as usize]),
                        *h,
                        "size {size} leaf {m} range {lo}..{hi}"
                    );
                }
            }
        }
    }
}
