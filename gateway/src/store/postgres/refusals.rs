//! Refusal windows shared by the replicas ([`crate::audit::repeats`]): which
//! refusal of a source opens its window is decided here, by one statement,
//! so that a caller refused through every replica is recorded once per
//! window. Times are the database's clock, the one every replica shares.

use super::readers::{Read, Readers};
use crate::store::StoreError;
use std::sync::Arc;

/// Opens `source`'s window unless one opened less than `window_ms` ago is
/// still open (on any replica): true if this call opened it. Two replicas
/// opening the same window at once meet at the row: the second sees the
/// first's window open. Windows closed for long are pruned on the way, so
/// the table holds about the sources refused within a window.
pub(super) const OPEN: &str = "
    WITH clock AS (SELECT (extract(epoch FROM clock_timestamp()) * 1000)::bigint AS ms),
    pruned AS (
        DELETE FROM refusal_windows
        WHERE opened_ms <= (SELECT ms FROM clock) - 2 * $2::bigint AND source <> $1
    )
    INSERT INTO refusal_windows (source, opened_ms) SELECT $1, ms FROM clock
    ON CONFLICT (source) DO UPDATE SET opened_ms = excluded.opened_ms
        WHERE refusal_windows.opened_ms <= excluded.opened_ms - $2::bigint
    RETURNING 1";

pub(super) async fn open_refusal_window(
    readers: Arc<Readers>,
    source: Vec<u8>,
    window_ms: i64,
) -> Result<bool, StoreError> {
    let opened = readers
        .query(Read::OpenRefusalWindow, &[&source, &window_ms.max(1)])
        .await?;
    Ok(!opened.is_empty())
}
