//! The subject index (`audit-subjects.db`): which entries name which person,
//! derived from the entries by a background thread while appends pause, so
//! that commits never pay for it. Queries by subject first bring it up to the
//! end of the log.

use super::Inner;
use crate::store::StoreError;
use crate::store::subject_heads::SubjectKey;
use rusqlite::params;
use std::sync::atomic::Ordering;

/// Subject rows the indexer writes per transaction.
const INDEX_CHUNK: usize = 50_000;
/// The pause in appends the indexer waits for before indexing.
const INDEX_QUIET: std::time::Duration = std::time::Duration::from_millis(300);
/// Unindexed subject rows beyond which the indexer stops waiting for a pause.
const INDEX_MAX_BACKLOG: usize = 2_000_000;

impl Inner {
    /// Loads each subject's latest entry (the back-pointer its next entry
    /// records) at start-up: the latest indexed, then the entries the
    /// indexer had not reached, which it is woken to index.
    pub(super) fn load_subject_heads(&self) -> Result<(), StoreError> {
        let through = {
            let index = self.index.lock().unwrap_or_else(|p| p.into_inner());
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            let mut stmt =
                index.prepare("SELECT subject, MAX(seq) FROM audit_subjects GROUP BY subject")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let token: String = row.get(0)?;
                writer
                    .heads
                    .set(SubjectKey::of(&token), row.get::<_, i64>(1)? as u64);
            }
            index.query_row("SELECT indexed_through FROM progress", [], |r| {
                r.get::<_, i64>(0)
            })?
        };
        let mut backlog = 0;
        {
            let mut writer = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            self.for_each_entry_after(through, |seq, entry| {
                for s in entry.subjects {
                    writer.heads.set(SubjectKey::of(&s.token), seq as u64);
                    backlog += 1;
                }
                true
            })?;
        }
        self.index_backlog.store(backlog, Ordering::Relaxed);
        *self.index_wake.lock().unwrap_or_else(|p| p.into_inner()) = backlog > 0;
        Ok(())
    }

    /// The indexer thread: indexes new entries' subjects in large
    /// transactions once appends pause for [`INDEX_QUIET`] (or the backlog
    /// passes [`INDEX_MAX_BACKLOG`] rows), so that during a bulk pull it does
    /// not compete with serving for the cores.
    pub(super) fn run_indexer(&self) {
        loop {
            {
                let mut wake = self.index_wake.lock().unwrap_or_else(|p| p.into_inner());
                if !*wake {
                    wake = self
                        .index_ready
                        .wait_timeout(wake, std::time::Duration::from_secs(5))
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                // Wait for a pause in appends naming subjects.
                while *wake
                    && !self.stopping.load(Ordering::SeqCst)
                    && self.index_backlog.load(Ordering::Relaxed) < INDEX_MAX_BACKLOG
                {
                    *wake = false;
                    wake = self
                        .index_ready
                        .wait_timeout(wake, INDEX_QUIET)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                *wake = false;
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            // Half a core at most: after each chunk, rest as long as it took,
            // so serving keeps the cores while a large backlog is indexed.
            loop {
                let started = std::time::Instant::now();
                match self.index_chunk() {
                    Ok(true) if !self.stopping.load(Ordering::SeqCst) => {
                        std::thread::sleep(started.elapsed());
                        // Serving resumed (appends naming subjects): yield
                        // until the next pause, unless the backlog is large.
                        if *self.index_wake.lock().unwrap_or_else(|p| p.into_inner())
                            && self.index_backlog.load(Ordering::Relaxed) < INDEX_MAX_BACKLOG
                        {
                            break;
                        }
                    }
                    Ok(_) => break,
                    Err(e) => {
                        tracing::error!(error = %e, "audit subject index update failed; retrying");
                        std::thread::sleep(std::time::Duration::from_secs(1));
                        break;
                    }
                }
            }
        }
    }

    /// Indexes the subjects of every entry not indexed yet.
    pub(super) fn catch_up_index(&self) -> Result<(), StoreError> {
        while self.index_chunk()? {}
        Ok(())
    }

    /// Indexes one chunk (whole entries, about [`INDEX_CHUNK`] subject rows);
    /// false when there was nothing left to index.
    pub(super) fn index_chunk(&self) -> Result<bool, StoreError> {
        let mut index = self.index.lock().unwrap_or_else(|p| p.into_inner());
        let through: i64 =
            index.query_row("SELECT indexed_through FROM progress", [], |r| r.get(0))?;
        self.index_backlog.store(0, Ordering::Relaxed);
        let (mut pairs, mut last) = (Vec::new(), through);
        self.for_each_entry_after(through, |seq, entry| {
            pairs.extend(entry.subjects.into_iter().map(|s| (s.token, seq)));
            last = seq;
            pairs.len() < INDEX_CHUNK
        })?;
        if last == through {
            return Ok(false);
        }
        pairs.sort_unstable();
        let tx = index.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO audit_subjects (subject, seq) VALUES (?1, ?2)",
            )?;
            for (token, seq) in &pairs {
                insert.execute(params![token, seq])?;
            }
        }
        tx.execute("UPDATE progress SET indexed_through = ?1", params![last])?;
        tx.commit()?;
        Ok(true)
    }
}
