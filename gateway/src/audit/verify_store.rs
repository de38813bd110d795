//! The offline check of a store's whole audit log (`gateway audit
//! verify-store`): after a restore, before a gateway serves from it, or at any
//! time on a stopped gateway's data. The entries up to the latest signed
//! checkpoint are checked exactly as an export is ([`export::verify`]: every
//! leaf recomputed from its entry, the subjects' back-pointers, the root, the
//! signature), reading the store as if it were an export, so the two checks
//! cannot drift apart. Beyond that, every stored checkpoint's signature and
//! root (the root of the log's first `size` leaves, so all of them are
//! consistent with one another), the stored tree nodes, the entries after the
//! latest checkpoint, and, given a checkpoint saved earlier, whether the log
//! extends it or was rolled back behind it.

use super::export::{self, RootBuilder, VerifyFailure};
use crate::store::{Store, StoreError, StoredCheckpoint};
use std::collections::BTreeMap;
use std::io::Read;

/// Leaves read from the store at a time.
const PAGE: usize = 1000;

/// What a verified store holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreVerified {
    pub origin: String,
    /// Entries in the log.
    pub size: u64,
    /// The latest signed checkpoint's size.
    pub latest_checkpoint: u64,
    /// Stored checkpoints checked.
    pub checkpoints: u64,
    /// Size of the given checkpoint the log was shown to extend.
    pub extends: Option<u64>,
}

/// Why a store's log did not verify.
#[derive(Debug, thiserror::Error)]
pub enum StoreVerifyFailure {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the store holds no signed checkpoint: nothing vouches for its log")]
    NoCheckpoint,
    #[error("the log up to the latest signed checkpoint (size {size}) does not verify: {failure}")]
    Entries { size: u64, failure: VerifyFailure },
    #[error(
        "entry {seq} (after the latest checkpoint) was altered: its bytes do not hash to its leaf"
    )]
    AlteredAfterCheckpoint { seq: u64 },
    #[error("entry {seq} (after the latest checkpoint) is missing")]
    MissingAfterCheckpoint { seq: u64 },
    #[error("the stored checkpoint of size {size} is not valid: {reason}")]
    BadCheckpoint { size: u64, reason: String },
    #[error(
        "the stored checkpoint of size {size} does not match the log: its root is not the root of the first {size} entries"
    )]
    CheckpointMismatch { size: u64 },
    #[error(
        "the stored tree nodes give another root at size {size} than the entries do (proofs served from them would fail)"
    )]
    TreeMismatch { size: u64 },
    #[error("the given checkpoint is not valid: {0}")]
    GivenCheckpoint(String),
    #[error(
        "ROLLED BACK: the given checkpoint covers {checkpoint} entries but this store's log holds only {store}: \
         entries {} to {checkpoint} were in the log and are not here (a restore from a backup taken before the checkpoint was signed?)",
        .store + 1
    )]
    RolledBack { checkpoint: u64, store: u64 },
    #[error(
        "the log is not an extension of the given checkpoint (size {size}): history before entry {size} was rewritten"
    )]
    NotExtension { size: u64 },
}

/// The store's log up to `size`, as the lines of an export, read on demand;
/// the root of the stored leaf hashes is kept at each size asked for.
struct StoreLines<'a> {
    store: &'a dyn Store,
    header: Option<String>,
    next: u64,
    end: u64,
    buf: Vec<u8>,
    pos: usize,
    stored: RootBuilder,
    roots_at: BTreeMap<u64, Option<tlog::Hash>>,
    failed: Option<StoreError>,
}

impl StoreLines<'_> {
    fn note_root(&mut self, size: u64) {
        if let Some(slot) = self.roots_at.get_mut(&size) {
            *slot = Some(self.stored.root());
        }
    }

    fn refill(&mut self) -> Result<(), StoreError> {
        self.buf.clear();
        self.pos = 0;
        if let Some(header) = self.header.take() {
            self.buf
                .extend_from_slice(export::header_line(&header).as_bytes());
            self.buf.push(b'\n');
            self.note_root(0);
            return Ok(());
        }
        if self.next >= self.end {
            return Ok(());
        }
        let to = self.end.min(self.next + PAGE as u64);
        let leaves = self.store.audit_leaves(self.next, to, PAGE)?;
        if leaves.len() as u64 != to - self.next {
            return Err(StoreError::corrupt(format!(
                "the log's leaves {}..{to} could not all be read",
                self.next
            )));
        }
        for leaf in leaves {
            self.buf.extend_from_slice(
                export::leaf_line(leaf.seq, &leaf.leaf_hash, leaf.entry.as_deref()).as_bytes(),
            );
            self.buf.push(b'\n');
            self.stored.push(leaf.leaf_hash);
            self.next += 1;
            self.note_root(self.next);
        }
        Ok(())
    }
}

impl Read for StoreLines<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if self.pos == self.buf.len()
            && let Err(e) = self.refill()
        {
            let message = e.to_string();
            self.failed = Some(e);
            return Err(std::io::Error::other(message));
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

/// Every stored checkpoint, smallest first.
fn all_checkpoints(store: &dyn Store) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut all = Vec::new();
    loop {
        let after = all.last().map_or(0, |c: &StoredCheckpoint| c.size);
        let page = store.audit_checkpoints(after, PAGE)?;
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
    }
}

/// Checks the whole audit log of `store` against the log's pinned public
/// key and, if given, a checkpoint saved earlier (its signed note).
pub fn verify_store(
    store: &dyn Store,
    verifier: &tlog::Verifier,
    given: Option<&str>,
) -> Result<StoreVerified, StoreVerifyFailure> {
    let size = store.audit_size()?;
    let checkpoints = all_checkpoints(store)?;
    let latest = checkpoints.last().ok_or(StoreVerifyFailure::NoCheckpoint)?;
    let mut origin = None;
    for cp in &checkpoints {
        let bad = |reason: String| StoreVerifyFailure::BadCheckpoint {
            size: cp.size,
            reason,
        };
        let (opened, _) =
            tlog::Checkpoint::open(cp.note.as_bytes(), std::slice::from_ref(verifier))
                .map_err(|e| bad(e.to_string()))?;
        if opened.size() != cp.size || *opened.root() != cp.root {
            return Err(bad(
                "its note names another size or root than it is kept under".into(),
            ));
        }
        if *origin.get_or_insert_with(|| opened.origin().to_string()) != opened.origin() {
            return Err(bad(format!("it is for log {}", opened.origin())));
        }
        if cp.size > size {
            return Err(StoreVerifyFailure::CheckpointMismatch { size: cp.size });
        }
    }
    let given = given
        .map(|note| {
            let (cp, _) = tlog::Checkpoint::open(note.as_bytes(), std::slice::from_ref(verifier))
                .map_err(|e| StoreVerifyFailure::GivenCheckpoint(e.to_string()))?;
            if Some(cp.origin()) != origin.as_deref() {
                return Err(StoreVerifyFailure::GivenCheckpoint(format!(
                    "it is for log {}, not {}",
                    cp.origin(),
                    origin.as_deref().unwrap_or_default()
                )));
            }
            if cp.size() > size {
                return Err(StoreVerifyFailure::RolledBack {
                    checkpoint: cp.size(),
                    store: size,
                });
            }
            Ok(cp)
        })
        .transpose()?;

    // The log up to the latest checkpoint, checked as an export is.
    let mut sizes: Vec<u64> = checkpoints.iter().map(|c| c.size).collect();
    sizes.extend(given.as_ref().map(tlog::Checkpoint::size));
    sizes.push(size);
    let mut lines = std::io::BufReader::new(StoreLines {
        store,
        header: Some(latest.note.clone()),
        next: 0,
        end: latest.size,
        buf: Vec::new(),
        pos: 0,
        stored: RootBuilder::default(),
        roots_at: sizes.into_iter().map(|s| (s, None)).collect(),
        failed: None,
    });
    let checked = export::verify(&mut lines, verifier, None);
    let mut lines = lines.into_inner();
    if let Some(e) = lines.failed.take() {
        return Err(e.into());
    }
    checked.map_err(|failure| StoreVerifyFailure::Entries {
        size: latest.size,
        failure,
    })?;
    // Beyond it, the entries not signed yet: each leaf from its entry.
    while lines.next < size {
        let to = size.min(lines.next + PAGE as u64);
        for leaf in store.audit_leaves(lines.next, to, PAGE)? {
            let entry = leaf
                .entry
                .ok_or(StoreVerifyFailure::MissingAfterCheckpoint { seq: leaf.seq })?;
            if tlog::leaf_hash(&entry) != leaf.leaf_hash {
                return Err(StoreVerifyFailure::AlteredAfterCheckpoint { seq: leaf.seq });
            }
            lines.stored.push(leaf.leaf_hash);
            lines.next += 1;
            lines.note_root(lines.next);
        }
    }
    let root_at = |s: u64| lines.roots_at.get(&s).copied().flatten();
    for cp in &checkpoints {
        if root_at(cp.size) != Some(cp.root) {
            return Err(StoreVerifyFailure::CheckpointMismatch { size: cp.size });
        }
        if store.audit_root(cp.size)? != cp.root {
            return Err(StoreVerifyFailure::TreeMismatch { size: cp.size });
        }
    }
    if Some(store.audit_root(size)?) != root_at(size) {
        return Err(StoreVerifyFailure::TreeMismatch { size });
    }
    let extends = match given {
        None => None,
        Some(cp) if root_at(cp.size()) == Some(*cp.root()) => Some(cp.size()),
        Some(cp) => return Err(StoreVerifyFailure::NotExtension { size: cp.size() }),
    };
    Ok(StoreVerified {
        origin: origin.unwrap_or_default(),
        size,
        latest_checkpoint: latest.size,
        checkpoints: checkpoints.len() as u64,
        extends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, Value};
    use crate::store::sqlite::SqliteStore;

    const ORIGIN: &str = "example.org/audit";

    fn signer() -> tlog::Signer {
        tlog::Signer::from_seed(ORIGIN, [9; 32]).unwrap()
    }

    fn append(store: &SqliteStore, n: u64) {
        let entries: Vec<AuditEntry> = (0..n)
            .map(|i| AuditEntry {
                at_ms: i as i64,
                actor: "union/assistance".into(),
                action: "records_delivered".into(),
                outcome: "ok".into(),
                kinds: vec!["social_insurance".into()],
                subjects: vec![format!("{:032x}", i % 3)],
                details: Value::Map([("n".to_string(), Value::U64(i))].into()),
                note: None,
            })
            .collect();
        store.append_audit(&entries).unwrap();
    }

    /// Signs and keeps a checkpoint of the log as it is; returns its note.
    fn sign(store: &SqliteStore) -> String {
        let size = store.audit_size().unwrap();
        let root = store.audit_root(size).unwrap();
        let note = tlog::Checkpoint::new(ORIGIN, size, root, Vec::new())
            .unwrap()
            .sign(&[&signer()])
            .unwrap();
        store
            .save_checkpoint(&StoredCheckpoint {
                size,
                root,
                note: note.clone(),
                signed_ms: 0,
            })
            .unwrap();
        note
    }

    fn db(dir: &std::path::Path) -> rusqlite::Connection {
        rusqlite::Connection::open(dir.join("gateway.db")).unwrap()
    }

    #[test]
    fn a_sound_store_verifies_and_each_kind_of_damage_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let verifier = signer().verifier();
        let store = SqliteStore::open(dir.path()).unwrap();
        append(&store, 300);
        let early = sign(&store);
        append(&store, 20);
        sign(&store);
        append(&store, 5);
        let v = verify_store(&store, &verifier, Some(&early)).unwrap();
        assert_eq!(
            (v.size, v.latest_checkpoint, v.checkpoints, v.extends),
            (325, 320, 2, Some(300))
        );
        drop(store);

        // A checkpoint from further on than the log: rolled back.
        let longer = {
            let other = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(other.path()).unwrap();
            append(&store, 400);
            sign(&store)
        };
        let store = SqliteStore::open(dir.path()).unwrap();
        let e = verify_store(&store, &verifier, Some(&longer)).unwrap_err();
        assert!(
            matches!(
                e,
                StoreVerifyFailure::RolledBack {
                    checkpoint: 400,
                    store: 325
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("ROLLED BACK"), "{e}");
        // One of another history at a size the log has: not an extension.
        let forked = {
            let other = tempfile::tempdir().unwrap();
            let store = SqliteStore::open(other.path()).unwrap();
            // Entries 0-2, then 0-6 again: the log differs from entry 4 on.
            append(&store, 3);
            append(&store, 7);
            sign(&store)
        };
        let e = verify_store(&store, &verifier, Some(&forked)).unwrap_err();
        assert!(
            matches!(e, StoreVerifyFailure::NotExtension { size: 10 }),
            "{e}"
        );
        drop(store);

        // An entry altered after the last checkpoint, then one under it
        // (the export check names it).
        for (seq, expected) in [(323, "after the latest checkpoint"), (17, "entry 17")] {
            db(dir.path())
                .execute(
                    "UPDATE audit_log SET entry = CAST(replace(entry, 'assistance', 'assistanca') AS BLOB) WHERE seq = ?1",
                    [seq],
                )
                .unwrap();
            let store = SqliteStore::open(dir.path()).unwrap();
            let e = verify_store(&store, &verifier, None).unwrap_err();
            match seq {
                323 => assert!(
                    matches!(e, StoreVerifyFailure::AlteredAfterCheckpoint { seq: 323 }),
                    "{e}"
                ),
                _ => assert!(
                    matches!(e, StoreVerifyFailure::Entries { size: 320, .. }),
                    "{e}"
                ),
            }
            assert!(e.to_string().contains(expected), "{e}");
        }

        // A stored checkpoint signed by another key.
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        append(&store, 3);
        sign(&store);
        let stranger = tlog::Signer::from_seed(ORIGIN, [1; 32]).unwrap().verifier();
        let e = verify_store(&store, &stranger, None).unwrap_err();
        assert!(
            matches!(e, StoreVerifyFailure::BadCheckpoint { size: 3, .. }),
            "{e}"
        );
    }
}
