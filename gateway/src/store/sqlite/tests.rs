//! Tests of the SQLite store as a whole: the tiled tree against the reference
//! tree, notes, records snapshots, older layouts, subject chains across
//! restarts, and the re-identification window.

use super::readers::MAX_READERS;
use super::*;
use crate::store::RecordWrite;
use crate::store::*;
use rusqlite::Connection;

#[cfg(test)]
mod audit_tree_tests {
    use super::*;
    use crate::audit::{AuditEntry, CanonicalEntry, Value};

    fn entry(i: u64, subject: Option<String>) -> AuditEntry {
        AuditEntry {
            at_ms: i as i64,
            actor: "union/assistance".into(),
            action: "records_delivered".into(),
            outcome: "ok".into(),
            kinds: vec!["social_insurance".into()],
            subjects: subject.into_iter().collect(),
            details: Value::Map([("n".to_string(), Value::U64(i))].into()),
            note: None,
        }
    }

    /// Tiles, recomputed low subtrees and stored high nodes give the same
    /// roots and proofs as the reference tree, across tile boundaries and
    /// irregular batches; back-pointers chain each subject's entries.
    #[test]
    fn tiled_tree_matches_the_reference_tree() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let mut reference = tlog::MemoryTree::new();
        let mut n = 0u64;
        for batch in [1u64, 3, 250, 2, 1, 300, 511, 1, 700, 255, 1, 1] {
            let entries: Vec<AuditEntry> = (n..n + batch)
                .map(|i| entry(i, (i % 3 == 0).then(|| format!("{:032x}", i % 7))))
                .collect();
            store.append_audit(&entries).unwrap();
            n += batch;
            assert_eq!(store.audit_size().unwrap(), n);
        }
        let leaves = store.audit_leaves(0, n, usize::MAX).unwrap();
        assert_eq!(leaves.len() as u64, n);
        let mut last_of = std::collections::HashMap::new();
        for l in &leaves {
            let bytes = l.entry.as_ref().unwrap();
            assert_eq!(tlog::leaf_hash(bytes), l.leaf_hash);
            reference.append(l.leaf_hash);
            let e = CanonicalEntry::decode(bytes).unwrap();
            assert_eq!(e.seq, l.seq);
            for s in e.subjects {
                assert_eq!(s.prev_seq, last_of.insert(s.token, e.seq).unwrap_or(0));
            }
        }
        for size in [1, 2, 255, 256, 257, 511, 512, 513, 1000, 1024, n - 1, n] {
            assert_eq!(
                store.audit_root(size).unwrap(),
                reference.root_at(size).unwrap(),
                "root at {size}"
            );
            for index in [0, size / 2, size - 1] {
                assert_eq!(
                    store.audit_inclusion_proof(index, size).unwrap(),
                    reference.inclusion_proof(index, size).unwrap()
                );
            }
            for size1 in [1, size / 3 + 1, size] {
                assert_eq!(
                    store.audit_consistency_proof(size1, size).unwrap(),
                    reference.consistency_proof(size1, size).unwrap()
                );
            }
        }
        assert!(matches!(
            store.audit_root(n + 1),
            Err(StoreError::Proof(tlog::ProofError::SizeBeyondStore { .. }))
        ));
    }

    /// A note is stored with its entry, through the committer too; erasing
    /// it appends the erasure's entry and clears the sealed text, and leaves
    /// the entry, its leaf and the tree as they were.
    #[test]
    fn notes_are_stored_with_their_entry_and_erased_beside_it() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let note = |c: &str| crate::audit::notes::SealedNote {
            commitment: c.repeat(64),
            sealed: vec![7; 40],
        };
        store
            .append_audit(&[entry(0, None), entry(1, None).with_note(note("a"))])
            .unwrap();
        store
            .append_audit_queued(vec![entry(2, None).with_note(note("b"))])
            .wait()
            .unwrap();
        assert_eq!(store.audit_note(1).unwrap(), None);
        let held = store.audit_note(2).unwrap().unwrap();
        assert_eq!(
            (held.commitment.as_str(), held.erased),
            (&*"a".repeat(64), None)
        );
        assert_eq!(held.sealed, Some(vec![7; 40]));
        assert_eq!(
            store.audit_note(3).unwrap().unwrap().commitment,
            "b".repeat(64)
        );

        let leaf = store.audit_leaves(1, 2, 1).unwrap();
        let root = store.audit_root(3).unwrap();
        assert_eq!(
            store.erase_audit_note(2, entry(9, None)).unwrap(),
            NoteErasure::Erased { erasure_seq: 4 }
        );
        let erased = store.audit_note(2).unwrap().unwrap();
        assert_eq!((erased.sealed, erased.erased), (None, Some((9, 4))));
        assert_eq!(store.audit_size().unwrap(), 4);
        assert_eq!(store.audit_leaves(1, 2, 1).unwrap(), leaf);
        assert_eq!(store.audit_root(3).unwrap(), root);
        // Nothing more is written for a second erasure, or for no note.
        assert_eq!(
            store.erase_audit_note(2, entry(10, None)).unwrap(),
            NoteErasure::AlreadyErased { erasure_seq: 4 }
        );
        assert_eq!(
            store.erase_audit_note(1, entry(11, None)).unwrap(),
            NoteErasure::NoNote
        );
        assert_eq!(store.audit_size().unwrap(), 4);
        assert!(store.audit_note(3).unwrap().unwrap().sealed.is_some());
    }

    /// Look-ups and pulls read records in snapshots kept open across calls:
    /// a batch committed after one is seen by the next read on every pooled
    /// connection, while audit-only commits leave the snapshots open.
    #[test]
    fn records_snapshots_see_every_committed_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let person = vec![7u8; 32];
        let commit = |batch: &str, version: i64| {
            let audit = |_: &crate::store::Receipt| entry(0, None);
            store
                .commit_batch(BatchWrite {
                    agency: "hrss",
                    batch_id: batch,
                    content_hash: [version as u8; 32],
                    records: vec![RecordWrite {
                        kind: adapters::RecordKind::SocialInsurance,
                        key_hash: vec![1; 32],
                        person_index: Some(person.clone()),
                        enterprise: None,
                        changed_at: version,
                        cancel: false,
                        sealed: version.to_be_bytes().to_vec(),
                    }],
                    receipt: crate::store::Receipt {
                        rows_received: 1,
                        accepted: 1,
                        superseded: 0,
                        rejections: vec![],
                        ..Default::default()
                    },
                    audit: &audit,
                })
                .unwrap();
        };
        // The person's versions (a look-up's read), then the feed's (a pull's).
        let versions = || -> Vec<i64> {
            let mut v: Vec<i64> = store
                .records_for_person(&person)
                .unwrap()
                .iter()
                .map(|r| r.changed_at)
                .collect();
            v.extend(
                store
                    .read_feed(&[adapters::RecordKind::SocialInsurance], 0, 10)
                    .unwrap()
                    .iter()
                    .map(|r| r.changed_at),
            );
            v
        };
        // Several connections, each left holding a snapshot.
        let read_on_many = || {
            std::thread::scope(|s| {
                let readers: Vec<_> = (0..MAX_READERS).map(|_| s.spawn(versions)).collect();
                readers
                    .into_iter()
                    .map(|r| r.join().unwrap())
                    .collect::<Vec<_>>()
            })
        };
        assert_eq!(versions(), Vec::<i64>::new());
        // (Read now: a plain read ends the snapshot of the reader it takes.)
        let size = store.audit_size().unwrap();
        let root = store.audit_root(size).unwrap();
        commit("b1", 100);
        assert!(read_on_many().iter().all(|v| v == &[100, 100]));
        let generation = store.inner.records_generation.load(Ordering::SeqCst);
        store.append_audit(&[entry(1, None)]).unwrap();
        assert_eq!(
            store.inner.records_generation.load(Ordering::SeqCst),
            generation,
            "an audit-only commit keeps records snapshots current"
        );
        store
            .save_checkpoint(&StoredCheckpoint {
                size,
                root,
                note: "test note".into(),
                signed_ms: 0,
            })
            .unwrap();
        assert_eq!(
            store.inner.records_generation.load(Ordering::SeqCst),
            generation,
            "saving a signed checkpoint keeps records snapshots current"
        );
        assert!(store.inner.snapshots_held.load(Ordering::SeqCst) > 0);
        commit("b2", 200);
        for v in read_on_many() {
            assert_eq!(v, [200, 200]);
        }
        // Every pooled connection, not only the one that read first.
        for _ in 0..MAX_READERS * 2 {
            assert_eq!(versions(), [200, 200]);
        }
    }

    /// A store written before `audit_leaves` existed (the last tile a shorter
    /// row) opens with the same tree and keeps appending to it.
    #[test]
    fn a_partial_tile_of_an_older_store_becomes_leaf_rows() {
        let dir = tempfile::tempdir().unwrap();
        let mut reference = tlog::MemoryTree::new();
        let append = |store: &SqliteStore, reference: &mut tlog::MemoryTree, from: u64, to: u64| {
            let entries: Vec<AuditEntry> = (from..to).map(|i| entry(i, None)).collect();
            store.append_audit(&entries).unwrap();
            for l in store.audit_leaves(from, to, usize::MAX).unwrap() {
                reference.append(l.leaf_hash);
            }
        };
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            append(&store, &mut reference, 0, 300);
        }
        // Rewrite the tail into the older layout.
        {
            let c = Connection::open(dir.path().join("gateway.db")).unwrap();
            let hashes: Vec<Vec<u8>> = c
                .prepare("SELECT hash FROM audit_leaves ORDER BY idx")
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .map(Result::unwrap)
                .collect();
            assert_eq!(hashes.len(), 300 - 256);
            c.execute(
                "INSERT INTO audit_tiles (idx, hashes) VALUES (256, ?1)",
                params![hashes.concat()],
            )
            .unwrap();
            c.execute("DELETE FROM audit_leaves", []).unwrap();
            // The version before audit_leaves (migration 5 moves the tile).
            c.pragma_update(None, "user_version", 4).unwrap();
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.audit_size().unwrap(), 300);
        assert_eq!(
            store.audit_root(300).unwrap(),
            reference.root_at(300).unwrap()
        );
        append(&store, &mut reference, 300, 700);
        for size in [257, 300, 512, 513, 700] {
            assert_eq!(
                store.audit_root(size).unwrap(),
                reference.root_at(size).unwrap()
            );
            for index in [0, 256, size - 1] {
                assert_eq!(
                    store.audit_inclusion_proof(index, size).unwrap(),
                    reference.inclusion_proof(index, size).unwrap()
                );
            }
        }
    }

    /// Appends queued while a commit is under way share the next one (one
    /// transaction, one fsync), each caller hears its outcome, and an append
    /// whose caller stopped listening is written all the same.
    #[test]
    fn queued_appends_share_one_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let before = store.inner.commits.load(Ordering::SeqCst);
        let appends: Vec<AuditAppend> = {
            // A commit under way: the committer waits for the writer.
            let _writing = store.inner.writer.lock().unwrap();
            let appends = (0..20)
                .map(|i| store.append_audit_queued(vec![entry(i, None)]))
                .collect();
            drop(store.append_audit_queued(vec![entry(20, None)]));
            appends
        };
        for append in appends {
            append.wait().unwrap();
        }
        // The append no one waits for may be the only one of the second
        // group (the committer took the others just before it was queued):
        // it is written, but perhaps after the others' callers have heard.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while store.audit_size().unwrap() < 21 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(store.audit_size().unwrap(), 21);
        // The committer may have taken some appends before the rest were
        // queued: two commits at most, for 21 callers.
        let commits = store.inner.commits.load(Ordering::SeqCst) - before;
        assert!((1..=2).contains(&commits), "{commits} commits");
    }

    /// Back-pointers and the subject index stay right across restarts, with
    /// entries appended directly and through the committer, whether or not
    /// the indexer had reached them before the store closed.
    #[test]
    fn subject_chains_survive_restarts_and_an_unindexed_tail() {
        let dir = tempfile::tempdir().unwrap();
        let token = |i: u64| format!("{:032x}", i % 5);
        let mut n = 0u64;
        for round in 0..3 {
            let store = SqliteStore::open(dir.path()).unwrap();
            for _ in 0..4 {
                let entries: Vec<AuditEntry> = (n..n + 7)
                    .map(|i| entry(i, (i % 2 == 0).then(|| token(i))))
                    .collect();
                n += 7;
                if round == 1 {
                    store.append_audit_queued(entries).wait().unwrap();
                } else {
                    store.append_audit(&entries).unwrap();
                }
            }
            // One text token (not a 32-hex pseudonym) too.
            store
                .append_audit(&[entry(n, Some("someone-else".into()))])
                .unwrap();
            n += 1;
            if round == 0 {
                // Indexed before closing; later rounds close with a tail.
                store.inner.catch_up_index().unwrap();
            }
        }
        let store = SqliteStore::open(dir.path()).unwrap();
        let leaves = store.audit_leaves(0, n, usize::MAX).unwrap();
        let mut expected: std::collections::HashMap<String, Vec<u64>> = Default::default();
        for l in &leaves {
            let e = CanonicalEntry::decode(l.entry.as_ref().unwrap()).unwrap();
            for s in e.subjects {
                let seqs = expected.entry(s.token).or_default();
                assert_eq!(s.prev_seq, seqs.last().copied().unwrap_or(0));
                seqs.push(e.seq);
            }
        }
        assert_eq!(expected.len(), 6);
        for (token, seqs) in &expected {
            let found: Vec<u64> = store
                .audit_subject_entries(token, 0, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            assert_eq!(&found, seqs, "{token}");
        }
        let filtered = store
            .query_audit(&AuditFilter {
                subject: Some(token(0)),
                limit: 1000,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(filtered.len(), expected[&token(0)].len());
    }
}

#[cfg(test)]
mod reidentification_tests {
    use super::*;

    /// The hourly limit is a sliding window: a slot frees exactly an hour
    /// after it was taken, never all at once at a boundary, and consumers
    /// count apart; the count is in the database, so a reopened store keeps it.
    #[test]
    fn the_limit_slides_and_survives_reopening() {
        const HOUR: i64 = 3_600_000;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).unwrap();
        let t0 = 1_000_000_000_000;
        // Ten early in the hour, ten late in it.
        for i in 0..10 {
            assert_eq!(
                store.take_reidentification("a", t0 + i, HOUR, 20).unwrap(),
                Ok(())
            );
        }
        for i in 0..10 {
            let at = t0 + HOUR - 1000 + i;
            assert_eq!(
                store.take_reidentification("a", at, HOUR, 20).unwrap(),
                Ok(())
            );
        }
        assert_eq!(
            store.take_reidentification("b", t0 + 5, HOUR, 20).unwrap(),
            Ok(())
        );
        drop(store);
        let store = SqliteStore::open(dir.path()).unwrap();
        // Full: the oldest frees one hour after it was taken.
        assert_eq!(
            store
                .take_reidentification("a", t0 + HOUR - 1, HOUR, 20)
                .unwrap(),
            Err(1)
        );
        // Past the hour boundary only the early ten are free, not twenty.
        let later = t0 + HOUR + 100;
        for _ in 0..10 {
            assert_eq!(
                store.take_reidentification("a", later, HOUR, 20).unwrap(),
                Ok(())
            );
        }
        let wait = store.take_reidentification("a", later, HOUR, 20).unwrap();
        assert_eq!(wait, Err(t0 + 2 * HOUR - 1000 - later));
    }
}

mod schema_tests {
    use super::*;
    use crate::store::schema_version::SchemaError;

    /// The first release's DDL, as kept for the upgrade tests.
    const V1: &str = include_str!("../../../../tests/fixtures/schema/sqlite-v1.sql");

    /// A database's layout: each table (WITHOUT ROWID or not, its columns
    /// with type, NOT NULL, default and key position) and each index (its
    /// SQL, spaces collapsed), in name order.
    fn layout(c: &Connection) -> Vec<String> {
        let objects: Vec<(String, String, Option<String>)> = c
            .prepare(
                "SELECT type, name, sql FROM sqlite_master
                 WHERE type IN ('table', 'index') AND name NOT LIKE 'sqlite_%' ORDER BY type, name",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        let mut out = Vec::new();
        for (kind, name, sql) in objects {
            let sql = sql.unwrap_or_default();
            if kind == "index" {
                out.push(format!(
                    "index {name}: {}",
                    sql.replace("IF NOT EXISTS ", "")
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                ));
                continue;
            }
            let without_rowid = sql.to_ascii_uppercase().contains("WITHOUT ROWID");
            let columns: Vec<String> = c
                .prepare(&format!("PRAGMA table_info(\"{name}\")"))
                .unwrap()
                .query_map([], |r| {
                    Ok(format!(
                        "{} {} notnull={} default={:?} pk={}",
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?
                    ))
                })
                .unwrap()
                .map(Result::unwrap)
                .collect();
            out.push(format!(
                "table {name} without_rowid={without_rowid}: {}",
                columns.join(", ")
            ));
        }
        out
    }

    fn version(dir: &std::path::Path) -> u32 {
        Connection::open(dir.join("gateway.db"))
            .unwrap()
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap()
    }

    /// Every change since the first release is a migration: the first
    /// release's schema, migrated, is the schema a new store gets.
    #[test]
    fn the_first_release_schema_migrated_is_the_current_schema() {
        let (old, new) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Connection::open(old.path().join("gateway.db"))
            .unwrap()
            .execute_batch(V1)
            .unwrap();
        drop(SqliteStore::open(old.path()).unwrap());
        drop(SqliteStore::open(new.path()).unwrap());
        assert_eq!(version(old.path()), schema::CURRENT);
        assert_eq!(version(new.path()), schema::CURRENT);
        let migrated = layout(&Connection::open(old.path().join("gateway.db")).unwrap());
        let created = layout(&Connection::open(new.path().join("gateway.db")).unwrap());
        assert_eq!(migrated, created);
    }

    /// A store written before versions were recorded is told by its tables:
    /// one from the build just before is current (nothing is migrated, its
    /// rows stay), one in the first release's layout is version 1.
    #[test]
    fn an_unversioned_store_is_recognised_by_its_tables() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SqliteStore::open(dir.path()).unwrap();
            store.meta_set("kept", "yes").unwrap();
        }
        Connection::open(dir.path().join("gateway.db"))
            .unwrap()
            .pragma_update(None, "user_version", 0)
            .unwrap();
        let c = Connection::open(dir.path().join("gateway.db")).unwrap();
        assert_eq!(schema::version_of(&c).unwrap(), Some(schema::CURRENT));
        drop(c);
        let store = SqliteStore::open(dir.path()).unwrap();
        assert_eq!(store.meta_get("kept").unwrap().as_deref(), Some("yes"));
        drop(store);
        assert_eq!(version(dir.path()), schema::CURRENT);

        let v1 = Connection::open_in_memory().unwrap();
        v1.execute_batch(V1).unwrap();
        assert_eq!(schema::version_of(&v1).unwrap(), Some(1));
        let empty = Connection::open_in_memory().unwrap();
        assert_eq!(schema::version_of(&empty).unwrap(), None);
    }

    /// A schema newer than this build knows is refused with both versions
    /// named, and the file is left as it was (not even switched to WAL).
    #[test]
    fn a_newer_schema_is_refused_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gateway.db");
        {
            let c = Connection::open(&path).unwrap();
            c.execute_batch(V1).unwrap();
            c.pragma_update(None, "user_version", schema::CURRENT + 1)
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let e = SqliteStore::open(dir.path()).err().expect("refused");
        assert!(
            matches!(
                e,
                StoreError::Schema(SchemaError::Newer { found, known })
                    if found == schema::CURRENT + 1 && known == schema::CURRENT
            ),
            "{e}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), before);
        assert!(!dir.path().join("gateway.db-wal").exists());
    }

    /// A database of the walking skeleton (before the first release: a
    /// plain audit table) or of another program is refused, not migrated.
    #[test]
    fn a_database_of_no_release_is_refused() {
        for (ddl, expected) in [
            (
                "CREATE TABLE batches (x); CREATE TABLE records (x); CREATE TABLE audit (x);",
                "predates the first release",
            ),
            ("CREATE TABLE something_else (x);", "not a gateway store"),
        ] {
            let dir = tempfile::tempdir().unwrap();
            Connection::open(dir.path().join("gateway.db"))
                .unwrap()
                .execute_batch(ddl)
                .unwrap();
            let before = std::fs::read(dir.path().join("gateway.db")).unwrap();
            let e = SqliteStore::open(dir.path()).err().expect("refused");
            assert!(e.to_string().contains(expected), "{e}");
            assert_eq!(
                std::fs::read(dir.path().join("gateway.db")).unwrap(),
                before
            );
        }
    }
}
