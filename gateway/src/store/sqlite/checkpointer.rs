//! The WAL checkpointer thread: copies the write-ahead log into the database
//! beside the writer (never on the commit path), and now and then starts the
//! WAL again so that reads do not slow down as it grows.

use super::Inner;
use super::readers::SNAPSHOT_MAX_AGE;
use rusqlite::Connection;
use std::sync::atomic::Ordering;

/// How often the checkpointer copies the WAL into the database (if anything
/// was committed).
const CHECKPOINT_EVERY: std::time::Duration = std::time::Duration::from_millis(250);
/// WAL frames (4 KiB pages) past which the checkpointer restarts the WAL
/// with writes paused (256 MiB). Each restart pauses every commit for the
/// copy of the last frames and a database fsync (10–40 ms seen here), so
/// under a steady stream of commits it should be rare: at 4,096 frames it
/// came every half second of look-ups and set their p99. In quieter times
/// the WAL starts again by itself, once copied to its end.
const WAL_RESTART_FRAMES: i64 = 65536;
/// Quarter-milliseconds the checkpointer waits, writes paused, for busy
/// readers to end their snapshots before starting the WAL again.
const DRAIN_WAITS: usize = 20;

impl Inner {
    /// The checkpointer thread: after commits, copies the WAL into the
    /// database (PASSIVE: never blocks the writer or readers), at most every
    /// [`CHECKPOINT_EVERY`].
    pub(super) fn run_checkpointer(&self) {
        let conn = match Connection::open(&self.path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(error = %e, "WAL checkpointer cannot open the database");
                return;
            }
        };
        let _ = conn.busy_timeout(std::time::Duration::from_secs(5));
        let mut seen = self.commits.load(Ordering::Relaxed);
        loop {
            {
                let guard = self
                    .checkpoint_stop
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                if self.stopping.load(Ordering::SeqCst) {
                    return;
                }
                let _ = self
                    .checkpoint_ready
                    .wait_timeout(guard, CHECKPOINT_EVERY)
                    .unwrap_or_else(|p| p.into_inner());
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            self.end_idle_snapshots(Some(SNAPSHOT_MAX_AGE));
            let now = self.commits.load(Ordering::Relaxed);
            if now == seen {
                continue;
            }
            seen = now;
            let passive =
                conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |r| r.get::<_, i64>(1));
            match passive {
                // Under a steady stream of commits the WAL is never copied to
                // its end (commits land during every copy), so no writer may
                // start it again from its beginning, and a long WAL slows every
                // read. Past a bound, writes pause for a second passive copy of
                // the few frames since the first; the next commit then starts
                // the WAL again. (PASSIVE never waits for readers: a RESTART
                // here held every commit up for the busy handler's sleeps.)
                Ok(frames) if frames >= WAL_RESTART_FRAMES => {
                    // Open records snapshots hold WAL frames: readers end
                    // theirs and keep none until the next commit, which then
                    // finds the WAL copied to its end and no reader in it.
                    self.draining.store(true, Ordering::SeqCst);
                    self.end_idle_snapshots(None);
                    for _ in 0..DRAIN_WAITS {
                        if self.snapshots_held.load(Ordering::SeqCst) == 0 {
                            break;
                        }
                        std::thread::sleep(std::time::Duration::from_micros(250));
                        self.end_idle_snapshots(None);
                    }
                    let _writes_paused = self.writer.lock().unwrap_or_else(|p| p.into_inner());
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                    {
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying later");
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "WAL checkpoint failed; retrying later"),
            }
        }
    }
}
