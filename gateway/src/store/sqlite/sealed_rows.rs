//! Recently read look-up rows, kept as stored: sealed (the ciphertext and
//! keyed hashes the store holds, never a decrypted value).
//!
//! Why it exists: a look-up reads one person's rows and each employer's
//! registry and tax rows. SQLite empties a read connection's page cache
//! whenever another connection has committed since, and under load the audit
//! log commits about a thousand times a second, so those reads kept going back
//! to the file. Records change far less often (only agency pushes change
//! them), and every such commit bumps the store's records generation: rows
//! read at generation `g` are the current rows for as long as the generation
//! stays `g`. An employer's rows serve all of its employees' look-ups.
//!
//! Bounded by the bytes it holds, in two halves: new entries go to the recent
//! half; when it fills it becomes the older half (the previous older half is
//! dropped), and an entry found in the older half moves back to the recent one.
//! That keeps what is looked up again and again, at O(1) a step, without a
//! list to maintain.

pub use crate::store::Rows;
use crate::store::StoredRecord;
use adapters::RecordKind;
use std::collections::HashMap;
use std::sync::Mutex;

/// What a cached query asked for.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Query {
    /// Current records about the person with this keyed index.
    Person(Vec<u8>),
    /// Current records of these kinds (in the caller's order) about one enterprise.
    Enterprise { credit_code: String, kinds: String },
}

impl Query {
    pub fn enterprise(credit_code: &str, kinds: &[RecordKind]) -> Self {
        Query::Enterprise {
            credit_code: credit_code.to_string(),
            kinds: kinds.iter().map(|k| k.id()).collect::<Vec<_>>().join(","),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Query::Person(index) => index.len(),
            Query::Enterprise { credit_code, kinds } => credit_code.len() + kinds.len(),
        }
    }
}

pub struct SealedRows {
    /// Bytes both halves hold at most (about).
    budget: usize,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// The records generation every entry was read at.
    generation: u64,
    recent: HashMap<Query, Rows>,
    recent_bytes: usize,
    older: HashMap<Query, Rows>,
}

/// Bookkeeping bytes counted per entry and per row beside their contents.
const ENTRY_OVERHEAD: usize = 64;
const ROW_OVERHEAD: usize = std::mem::size_of::<StoredRecord>();

fn size_of(query: &Query, rows: &[StoredRecord]) -> usize {
    ENTRY_OVERHEAD
        + query.bytes()
        + rows
            .iter()
            .map(|r| ROW_OVERHEAD + r.kind.id().len() + r.key_hash.len() + r.sealed.len())
            .sum::<usize>()
}

impl SealedRows {
    pub fn new(budget: usize) -> Self {
        SealedRows {
            budget,
            state: Mutex::default(),
        }
    }

    /// The rows `query` returned at `generation`, if held. An entry read at
    /// another generation is never returned: a newer generation empties the cache.
    pub fn get(&self, query: &Query, generation: u64) -> Option<Rows> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if s.generation != generation {
            if generation > s.generation {
                s.renew(generation);
            }
            return None;
        }
        if let Some(rows) = s.recent.get(query) {
            return Some(rows.clone());
        }
        let rows = s.older.remove(query)?;
        self.put(&mut s, query.clone(), rows.clone());
        Some(rows)
    }

    /// Keeps what `query` returned in a read that saw at least every records
    /// commit up to `generation`. Dropped if the generation has moved on.
    pub fn insert(&self, query: Query, generation: u64, rows: Rows) {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if generation > s.generation {
            s.renew(generation);
        }
        if generation == s.generation {
            self.put(&mut s, query, rows);
        }
    }

    fn put(&self, s: &mut State, query: Query, rows: Rows) {
        let size = size_of(&query, &rows);
        if size > self.budget / 2 {
            return;
        }
        if s.recent_bytes + size > self.budget / 2 {
            s.older = std::mem::take(&mut s.recent);
            s.recent_bytes = 0;
        }
        s.recent_bytes += size;
        if let Some(replaced) = s.recent.insert(query.clone(), rows) {
            s.recent_bytes -= size_of(&query, &replaced);
        }
    }

    #[cfg(test)]
    fn held(&self) -> usize {
        let s = self.state.lock().unwrap();
        s.recent.len() + s.older.len()
    }
}

impl State {
    fn renew(&mut self, generation: u64) {
        *self = State {
            generation,
            ..State::default()
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(seq: u64, sealed_len: usize) -> Rows {
        vec![StoredRecord {
            seq,
            kind: RecordKind::Household,
            key_hash: vec![0; 32],
            changed_at: 0,
            cancelled: false,
            sealed: vec![7; sealed_len],
        }]
        .into()
    }

    fn person(n: u8) -> Query {
        Query::Person(vec![n; 32])
    }

    #[test]
    fn rows_are_served_only_at_the_generation_they_were_read_at() {
        let cache = SealedRows::new(1 << 20);
        cache.insert(person(1), 5, rows(1, 100));
        assert_eq!(cache.get(&person(1), 5).unwrap()[0].seq, 1);
        assert!(cache.get(&person(2), 5).is_none());
        // Records committed since: the old rows are gone, even when asked
        // for at the old generation again.
        assert!(cache.get(&person(1), 6).is_none());
        assert!(cache.get(&person(1), 5).is_none());
        assert_eq!(cache.held(), 0);
        // A read that began before the newest commit is not kept.
        cache.insert(person(1), 5, rows(1, 100));
        assert!(cache.get(&person(1), 6).is_none());
        cache.insert(person(1), 6, rows(2, 100));
        assert_eq!(cache.get(&person(1), 6).unwrap()[0].seq, 2);
    }

    #[test]
    fn the_cache_stays_within_its_budget_and_keeps_what_is_read_again() {
        let row = size_of(&person(0), &rows(0, 1000));
        // Room for 10 entries per half.
        let cache = SealedRows::new(row * 20);
        for n in 0..200u8 {
            cache.insert(person(n), 1, rows(n.into(), 1000));
            // Person 0 is looked up between every other.
            assert!(cache.get(&person(0), 1).is_some(), "after {n}");
        }
        assert!(cache.held() <= 20, "{} entries", cache.held());
        assert!(cache.get(&person(199), 1).is_some());
        assert!(cache.get(&person(100), 1).is_none());
        // One entry bigger than half the budget is never kept.
        cache.insert(person(250), 1, rows(250, row * 11));
        assert!(cache.get(&person(250), 1).is_none());
    }

    #[test]
    fn enterprise_queries_differ_by_kinds() {
        let cache = SealedRows::new(1 << 20);
        let both = Query::enterprise(
            "91340200MA2N0000X1",
            &[RecordKind::Enterprise, RecordKind::Taxpayer],
        );
        cache.insert(both.clone(), 1, rows(3, 10));
        assert!(cache.get(&both, 1).is_some());
        assert!(
            cache
                .get(
                    &Query::enterprise("91340200MA2N0000X1", &[RecordKind::Enterprise]),
                    1
                )
                .is_none()
        );
    }
}
