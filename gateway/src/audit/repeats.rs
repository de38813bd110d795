//! Refusals that a flood repeats, audited without letting the flood write the
//! log: refused TLS handshakes (anyone who can reach the port can cause one),
//! calls over a limit, calls the role matrix denies.
//!
//! Why it exists: one entry per refusal let a peer without a certificate grow
//! the audit log and its disk by a commit per connection attempt, while the
//! limits layer, to avoid that, recorded one refusal a second per caller and
//! dropped the others without a trace. Here every refusal is accounted for:
//! the first from a source (peer address or identity, and what was refused) in
//! each window is recorded as it happens; those after it are counted, and when
//! the window closes one entry records how many there were (`repeated`,
//! `within_secs`). At most [`MAX_SOURCES`] sources are tracked at once;
//! refusals from further sources are counted together under an overflow key.
//!
//! Replicas of one store: which refusal opens a source's window is the
//! store's decision ([`Store::open_refusal_window`]), so a source refused
//! through every replica is recorded once per window, not once per replica.
//! A replica whose first refusal of a window finds it already open elsewhere
//! counts it with its repeats; each replica records the summary of the
//! repeats it counted when its window closes (counts, not extra firsts).

use super::AuditEntry;
use crate::store::Store;
use ring::digest;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// Sources with an open window at most.
pub const MAX_SOURCES: usize = 10_000;

/// Builds the entry recording `repeated` further refusals of `key` within `window`.
pub type Summarise<K> = Box<dyn Fn(&K, u64, Duration) -> AuditEntry + Send + Sync>;

pub struct Repeats<K> {
    store: Arc<dyn Store>,
    window: Duration,
    max_sources: usize,
    overflow_key: K,
    summarise: Summarise<K>,
    state: Mutex<State<K>>,
}

struct State<K> {
    open: HashMap<K, Window>,
    overflow: Option<Window>,
}

struct Window {
    opened: Instant,
    repeated: u64,
}

/// A source of refusals, as every replica names it: what the store keys its
/// window by (a digest of these words, so no address or name is stored).
pub trait Source: Clone + Eq + Hash + Send + Sync + 'static {
    fn describe(&self) -> String;
}

impl Source for String {
    fn describe(&self) -> String {
        self.clone()
    }
}

impl<K: Source> Repeats<K> {
    /// `overflow_key` names, in summaries, the sources beyond the tracked ones.
    pub fn new(
        store: Arc<dyn Store>,
        window: Duration,
        overflow_key: K,
        summarise: Summarise<K>,
    ) -> Arc<Self> {
        Self::with_max_sources(store, window, MAX_SOURCES, overflow_key, summarise)
    }

    fn with_max_sources(
        store: Arc<dyn Store>,
        window: Duration,
        max_sources: usize,
        overflow_key: K,
        summarise: Summarise<K>,
    ) -> Arc<Self> {
        let repeats = Arc::new(Repeats {
            store,
            window: window.max(Duration::from_millis(10)),
            max_sources,
            overflow_key,
            summarise,
            state: Mutex::new(State {
                open: HashMap::new(),
                overflow: None,
            }),
        });
        // Closed windows are summarised by a task that ends with the tally
        // (when there is a runtime: unit tests may run without one).
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&repeats);
            let tick = (repeats.window / 4).max(Duration::from_millis(10));
            runtime.spawn(summarise_closed(weak, tick));
        }
        repeats
    }

    /// Notes one refusal from `key`: true if it is to be recorded now, the
    /// first of its window on every replica; false if it was counted for the
    /// window's summary.
    pub async fn first(&self, key: &K) -> bool {
        self.first_here(key) && self.first_everywhere(key).await
    }

    /// The part of [`Repeats::first`] that waits for nothing: false if the
    /// refusal was counted; true if it opened this replica's window, to be
    /// confirmed by [`Repeats::first_everywhere`].
    pub fn first_here(&self, key: &K) -> bool {
        let now = Instant::now();
        let mut closed = Vec::new();
        let first = {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(w) = s.open.get_mut(key) {
                if now.duration_since(w.opened) < self.window {
                    w.repeated += 1;
                    false
                } else {
                    if w.repeated > 0 {
                        closed.push((key.clone(), w.repeated));
                    }
                    *w = Window {
                        opened: now,
                        repeated: 0,
                    };
                    true
                }
            } else if s.open.len() < self.max_sources {
                s.open.insert(
                    key.clone(),
                    Window {
                        opened: now,
                        repeated: 0,
                    },
                );
                true
            } else {
                let w = s.overflow.get_or_insert(Window {
                    opened: now,
                    repeated: 0,
                });
                w.repeated += 1;
                false
            }
        };
        self.append(closed);
        first
    }

    /// Whether a refusal that opened this replica's window (`first_here`)
    /// also opens the store's, where replicas share one: if another replica
    /// opened it first, this one is counted as a repeat instead. A store
    /// that cannot answer does not hide a refusal: it is recorded.
    pub async fn first_everywhere(&self, key: &K) -> bool {
        let source = digest::digest(&digest::SHA256, key.describe().as_bytes());
        let window_ms = i64::try_from(self.window.as_millis()).unwrap_or(i64::MAX);
        match self
            .store
            .open_refusal_window(source.as_ref(), window_ms)
            .await
        {
            Ok(false) => {
                let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(w) = s.open.get_mut(key) {
                    w.repeated += 1;
                }
                false
            }
            Ok(true) => true,
            Err(e) => {
                tracing::warn!(error = %e, "refusal window not shared; recording the refusal");
                true
            }
        }
    }

    /// Queues the summaries of every open window now (the server is
    /// stopping: its last counts are not to wait for the windows to close).
    pub fn flush(&self) {
        let due = self.take_closed(None);
        self.append(due);
    }

    /// Takes the windows closed by `now` (all of them without `now`),
    /// returning the summaries due.
    fn take_closed(&self, now: Option<Instant>) -> Vec<(K, u64)> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let closed = |w: &Window| now.is_none_or(|n| n.duration_since(w.opened) >= self.window);
        let mut due = Vec::new();
        s.open.retain(|k, w| {
            if !closed(w) {
                return true;
            }
            if w.repeated > 0 {
                due.push((k.clone(), w.repeated));
            }
            false
        });
        if s.overflow.as_ref().is_some_and(closed)
            && let Some(w) = s.overflow.take()
        {
            due.push((self.overflow_key.clone(), w.repeated));
        }
        due
    }

    /// Appends summaries through the store's group commit, without waiting.
    fn append(&self, due: Vec<(K, u64)>) {
        if due.is_empty() {
            return;
        }
        let entries = due
            .iter()
            .map(|(k, n)| (self.summarise)(k, *n, self.window))
            .collect();
        super::record_detached(&*self.store, entries, "cannot record repeated refusals");
    }
}

async fn summarise_closed<K: Source>(repeats: Weak<Repeats<K>>, tick: Duration) {
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let Some(repeats) = repeats.upgrade() else {
            return;
        };
        let due = repeats.take_closed(Some(Instant::now()));
        repeats.append(due);
    }
}

impl<K> Drop for Repeats<K> {
    fn drop(&mut self) {
        // The open windows' counts, when the server stops.
        let s = self.state.get_mut().unwrap_or_else(|p| p.into_inner());
        let mut entries: Vec<AuditEntry> = s
            .open
            .drain()
            .filter(|(_, w)| w.repeated > 0)
            .map(|(k, w)| (self.summarise)(&k, w.repeated, self.window))
            .collect();
        if let Some(w) = s.overflow.take() {
            entries.push((self.summarise)(
                &self.overflow_key,
                w.repeated,
                self.window,
            ));
        }
        if !entries.is_empty() {
            super::record_detached(&*self.store, entries, "cannot record repeated refusals");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEvent, ConnectionRefused};
    use crate::store::{AuditFilter, sqlite::SqliteStore};

    fn tally(store: Arc<dyn Store>, window: Duration, max: usize) -> Arc<Repeats<String>> {
        Repeats::with_max_sources(
            store,
            window,
            max,
            "(other peers)".to_string(),
            Box::new(|peer: &String, repeated, window| {
                ConnectionRefused {
                    peer,
                    code: "test",
                    reason: "test",
                    repeated,
                    within_secs: window.as_secs(),
                }
                .entry(crate::audit::ANONYMOUS)
            }),
        )
    }

    /// The `repeated` counts of the summaries logged, in ascending order.
    fn summaries(store: &SqliteStore) -> Vec<u64> {
        std::thread::sleep(Duration::from_millis(50));
        let mut counts: Vec<u64> = store
            .query_audit(&AuditFilter {
                limit: 100,
                ..Default::default()
            })
            .unwrap()
            .into_iter()
            .map(|e| e.decode().unwrap())
            .filter(|e| e.action == "connection_refused")
            .map(|e| e.details.to_json()["repeated"].as_u64().unwrap_or(0))
            .filter(|n| *n > 0)
            .collect();
        counts.sort_unstable();
        counts
    }

    #[test]
    fn the_first_refusal_of_a_window_is_recorded_and_the_rest_counted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
        let t = tally(store.clone(), Duration::from_millis(200), 2);
        let a = "10.0.0.1".to_string();
        assert!(t.first_here(&a));
        for _ in 0..99 {
            assert!(!t.first_here(&a));
        }
        // Two sources are tracked; a third is counted under the overflow key.
        assert!(t.first_here(&"10.0.0.2".to_string()));
        assert!(!t.first_here(&"10.0.0.3".to_string()));
        assert!(!t.first_here(&"10.0.0.4".to_string()));
        assert!(summaries(&store).is_empty());
        // Past the window: the summaries are due, and the next refusal of a
        // source opens a new window (recorded again).
        std::thread::sleep(Duration::from_millis(210));
        let mut due = t.take_closed(Some(Instant::now()));
        due.sort();
        assert_eq!(due, [("(other peers)".to_string(), 2), (a.clone(), 99)]);
        assert!(t.first_here(&a));
        assert!(!t.first_here(&a));
        t.append(due);
        assert_eq!(summaries(&store), [2, 99]);
        // Stopping records what the open windows counted.
        drop(t);
        assert_eq!(summaries(&store), [1, 2, 99]);
    }
}
