//! The subject index (`audit_subjects`): which entries name which person,
//! derived from the committed entries after their commit instead of inside
//! it. A page of a bulk pull names up to 4,096 persons; inserting their rows
//! under the append lock made every page (and every other replica's appends,
//! waiting for the lock) pay thousands of random B-tree writes before a
//! record could be sent. The back-pointers a new entry needs do not come
//! from here: each replica holds them in memory (`heads`). The index keeps
//! each subject's latest indexed entry (`audit_subject_heads`) beside it,
//! which is where a replica starts from.
//!
//! How far the index reaches is one row, `audit_subject_index`: an indexer
//! takes it `FOR UPDATE`, indexes the entries after it in one transaction and
//! moves it on, so replicas indexing at once take turns and no entry is
//! indexed twice or skipped. Entries take their positions under the append
//! lock, so the committed ones are always a prefix of the log: reading after
//! the index's position never passes over one still in flight.
//!
//! Each replica runs an indexer thread. It indexes once this replica's
//! appends naming subjects pause (or their backlog grows large), and looks
//! every few seconds for entries other replicas appended; each turn rests as
//! long as it worked, so a large backlog takes at most half of what it
//! competes for. Queries by subject first bring the index up to the end of
//! the log as it was when they began (`catch_up_index`), so they never miss
//! an entry committed before them.

use super::Inner;
use super::audit_log::entries_after;
use super::db::{Isolation, get};
use crate::store::StoreError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

/// Subject rows indexed per transaction (whole entries: one may pass it).
const INDEX_CHUNK: usize = 50_000;
/// Entries read per statement while filling a chunk (a pull page's entry
/// names thousands of subjects).
const READ_ENTRIES: i64 = 16;
/// The pause in this replica's appends the indexer waits for.
const INDEX_QUIET: Duration = Duration::from_millis(300);
/// How often an idle indexer looks for entries other replicas appended.
const INDEX_POLL: Duration = Duration::from_secs(2);
/// Subject rows appended here and not yet indexed beyond which the indexer
/// stops waiting for a pause.
const INDEX_MAX_BACKLOG: u64 = 2_000_000;

/// What the committer tells the indexer thread, and how it is stopped.
#[derive(Default)]
pub(super) struct IndexSignal {
    state: Mutex<SignalState>,
    changed: Condvar,
    /// Subject rows appended through this replica since the index last
    /// reached the end of the log (an estimate: others append too).
    backlog: AtomicU64,
}

#[derive(Default)]
struct SignalState {
    appended: bool,
    stopping: bool,
}

impl IndexSignal {
    fn state(&self) -> std::sync::MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// This replica committed entries naming `subjects` subject rows.
    pub(super) fn appended(&self, subjects: u64) {
        if subjects == 0 {
            return;
        }
        self.backlog.fetch_add(subjects, Ordering::Relaxed);
        self.state().appended = true;
        self.changed.notify_all();
    }

    pub(super) fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }

    pub(super) fn stop(&self) {
        self.state().stopping = true;
        self.changed.notify_all();
    }

    fn large_backlog(&self) -> bool {
        self.backlog() >= INDEX_MAX_BACKLOG
    }

    /// Waits for work: appends here, then a pause in them of
    /// [`INDEX_QUIET`] (unless the backlog is large), or [`INDEX_POLL`]
    /// without any. False once the store is stopping.
    fn wait_for_pause(&self) -> bool {
        let mut s = self.state();
        if !s.appended && !s.stopping {
            s = self
                .changed
                .wait_timeout(s, INDEX_POLL)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        while s.appended && !s.stopping && !self.large_backlog() {
            s.appended = false;
            s = self
                .changed
                .wait_timeout(s, INDEX_QUIET)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        s.appended = false;
        !s.stopping
    }

    /// Rests for `d` (less if the store stops); true if appends here resumed
    /// meanwhile and the backlog is small, so indexing should yield to them.
    fn rest(&self, d: Duration) -> bool {
        let s = self.state();
        let s = if s.stopping {
            s
        } else {
            self.changed
                .wait_timeout(s, d)
                .unwrap_or_else(|p| p.into_inner())
                .0
        };
        s.stopping || (s.appended && !self.large_backlog())
    }

    fn stopping(&self) -> bool {
        self.state().stopping
    }
}

/// What one indexing turn did.
#[derive(Debug, PartialEq, Eq)]
enum Turn {
    /// Indexed the entries up to this seq.
    Indexed(i64),
    /// The index already reached the end of the log.
    Done,
    /// Another replica is indexing.
    Busy,
}

impl Inner {
    /// The indexer thread (see the module's opening comment).
    pub(super) fn run_indexer(&self) {
        while self.index.wait_for_pause() {
            // An unreachable database is reported by the callers and the
            // health check; the indexer only tries again later.
            let Ok((size, indexed)) = self.index_position() else {
                continue;
            };
            if let Err(e) = self.follow_heads(size) {
                tracing::warn!(error = %e, "following the audit log failed; retrying");
            }
            if indexed >= size {
                continue;
            }
            loop {
                let started = Instant::now();
                match self.index_chunk(false) {
                    Ok(Turn::Indexed(_)) => {
                        if self.index.rest(started.elapsed()) || self.index.stopping() {
                            break;
                        }
                    }
                    Ok(Turn::Done) => {
                        self.index.backlog.store(0, Ordering::Relaxed);
                        break;
                    }
                    Ok(Turn::Busy) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "audit subject index update failed; retrying");
                        self.index.rest(Duration::from_secs(1));
                        break;
                    }
                }
            }
        }
    }

    /// The log's size and how far the index reaches.
    fn index_position(&self) -> Result<(u64, u64), StoreError> {
        self.read(|db| {
            let row = db.query_one(
                "SELECT (SELECT size FROM audit_head WHERE id = 0),
                        (SELECT indexed_through FROM audit_subject_index WHERE id = 0)",
                &[],
            )?;
            Ok((
                get::<i64>(&row, 0)?.max(0) as u64,
                get::<i64>(&row, 1)?.max(0) as u64,
            ))
        })
    }

    /// Brings the index up to the end of the log as it is now: waits for
    /// another replica's turn rather than skipping it.
    pub(super) fn catch_up_index(&self) -> Result<(), StoreError> {
        let (size, through) = self.index_position()?;
        if through >= size {
            return Ok(());
        }
        loop {
            match self.index_chunk(true)? {
                Turn::Indexed(through) if (through as u64) < size => continue,
                Turn::Indexed(_) | Turn::Done => return Ok(()),
                Turn::Busy => {
                    return Err(StoreError::corrupt("audit_subject_index holds no row"));
                }
            }
        }
    }

    /// Indexes the subjects of the entries after the index's position, about
    /// [`INDEX_CHUNK`] rows, in one transaction. With `wait`, waits for
    /// another replica's turn; without, leaves the work to it.
    fn index_chunk(&self, wait: bool) -> Result<Turn, StoreError> {
        self.transaction(Isolation::Write, |db| {
            let rows = db.query(
                if wait {
                    "SELECT indexed_through FROM audit_subject_index WHERE id = 0 FOR UPDATE"
                } else {
                    "SELECT indexed_through FROM audit_subject_index WHERE id = 0
                     FOR UPDATE SKIP LOCKED"
                },
                &[],
            )?;
            let Some(row) = rows.first() else {
                return Ok(Turn::Busy);
            };
            let through: i64 = get(row, 0)?;
            let mut pairs: Vec<(String, i64)> = Vec::new();
            let mut last = through;
            loop {
                let entries = entries_after(db, last as u64, u64::MAX, READ_ENTRIES)?;
                let read = entries.len() as i64;
                for entry in entries {
                    let seq = entry.seq as i64;
                    pairs.extend(entry.subjects.into_iter().map(|s| (s.token, seq)));
                    last = seq;
                }
                if read < READ_ENTRIES || pairs.len() >= INDEX_CHUNK {
                    break;
                }
            }
            if last == through {
                return Ok(Turn::Done);
            }
            // Sorted, so the index's pages are written in order, each once.
            pairs.sort_unstable();
            if pairs.iter().any(|(t, _)| t.contains('\0')) {
                return Err(StoreError::corrupt("an audit subject token holds NUL"));
            }
            // Each subject's latest entry among these, for the heads a
            // replica loads at start-up (sorted by token, then seq: the last
            // of each run is its latest).
            let mut latest: Vec<(String, i64)> = Vec::new();
            for (token, seq) in &pairs {
                match latest.last_mut() {
                    Some(last) if &last.0 == token => last.1 = *seq,
                    _ => latest.push((token.clone(), *seq)),
                }
            }
            let (tokens, seqs): (Vec<String>, Vec<i64>) = pairs.into_iter().unzip();
            let (head_tokens, head_seqs): (Vec<String>, Vec<i64>) = latest.into_iter().unzip();
            // (A gateway of the previous schema still indexes inside its
            // appends: rows it wrote are left as they are.)
            db.defer(
                "INSERT INTO audit_subjects (subject, seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[]) ON CONFLICT DO NOTHING",
                vec![Box::new(tokens), Box::new(seqs)],
            );
            db.defer(
                "INSERT INTO audit_subject_heads (subject, seq)
                 SELECT * FROM unnest($1::text[], $2::bigint[])
                 ON CONFLICT (subject) DO UPDATE
                 SET seq = GREATEST(audit_subject_heads.seq, excluded.seq)",
                vec![Box::new(head_tokens), Box::new(head_seqs)],
            );
            db.defer(
                "UPDATE audit_subject_index SET indexed_through = $1 WHERE id = 0",
                vec![Box::new(last)],
            );
            Ok(Turn::Indexed(last))
        })
    }
}
