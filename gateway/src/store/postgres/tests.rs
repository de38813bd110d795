//! The PostgreSQL store's own tests, each on a fresh database of the
//! machine's server ([`super::testing`]): what the shared database must give
//! replicas (one commit per batch id, a feed without gaps, one audit log),
//! and the same answers as the SQLite store for the same commits.

use super::testing::TestDatabase;
use super::*;
use crate::audit::{AuditEntry, CanonicalEntry, Value};
use crate::store::sqlite::SqliteStore;
use crate::store::*;
use crate::store::{Receipt, RecordWrite};
use std::sync::Barrier;
use std::sync::atomic::Ordering;

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

fn record(key: u8, version: i64) -> RecordWrite {
    RecordWrite {
        kind: RecordKind::SocialInsurance,
        key_hash: vec![key; 32],
        person_index: Some(vec![key % 5; 32]),
        enterprise: Some(format!("E{}", key % 3)),
        changed_at: version,
        cancel: version % 7 == 0,
        sealed: [&[key][..], &version.to_be_bytes()].concat(),
    }
}

fn commit(store: &dyn Store, batch_id: &str, records: Vec<RecordWrite>) -> CommitOutcome {
    let audit = |r: &Receipt| {
        let mut e = entry(r.accepted, None);
        e.action = "batch_pushed".into();
        e
    };
    let n = records.len() as u64;
    store
        .commit_batch(BatchWrite {
            agency: "hrss",
            batch_id,
            content_hash: [n as u8; 32],
            records,
            receipt: Receipt {
                rows_received: n,
                accepted: n,
                ..Default::default()
            },
            audit: &audit,
        })
        .unwrap()
}

fn open(db: &TestDatabase) -> PgStore {
    PgStore::open(db.url(), None).unwrap()
}

/// Batches with rows superseded by the version held, by a later row of the
/// same batch, and replacing each other within a batch: the feed, the
/// earlier versions, look-ups and receipts are the SQLite store's.
#[test]
fn commits_give_the_answers_the_sqlite_store_gives() {
    let db = TestDatabase::create();
    let pg = open(&db);
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(dir.path()).unwrap();
    let batches: Vec<Vec<RecordWrite>> = vec![
        (0..20).map(|k| record(k, 10)).collect(),
        vec![
            record(1, 5),
            record(2, 11),
            record(2, 12),
            record(2, 9),
            record(3, 10),
        ],
        vec![record(4, 14), record(4, 14), record(30, 1), record(1, 21)],
        vec![],
        (10..40)
            .rev()
            .map(|k| record(k, 20 + i64::from(k % 4)))
            .collect(),
    ];
    for (i, records) in batches.into_iter().enumerate() {
        let id = format!("b{i}");
        let (a, b) = (
            commit(&pg, &id, records.clone()),
            commit(&lite, &id, records),
        );
        match (a, b) {
            (
                CommitOutcome::Committed {
                    receipt: ra,
                    head: ha,
                },
                CommitOutcome::Committed {
                    receipt: rb,
                    head: hb,
                },
            ) => assert_eq!((ra, ha), (rb, hb), "batch {id}"),
            other => panic!("batch {id}: {other:?}"),
        }
    }
    let kinds = [RecordKind::SocialInsurance];
    let feed = |s: &dyn Store| {
        s.read_feed(&kinds, 0, 1000)
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.key_hash, r.changed_at, r.cancelled, r.sealed))
            .collect::<Vec<_>>()
    };
    assert_eq!(feed(&pg), feed(&lite));
    assert_eq!(pg.feed_head().unwrap(), lite.feed_head().unwrap());
    for key in [1u8, 2, 4, 12, 30] {
        let versions = |s: &dyn Store| {
            s.record_versions(RecordKind::SocialInsurance, &[key; 32])
                .unwrap()
                .into_iter()
                .map(|r| (r.seq, r.changed_at, r.sealed))
                .collect::<Vec<_>>()
        };
        assert_eq!(versions(&pg), versions(&lite), "versions of {key}");
        for at in [0, 3, 20, 25, 40, 1000] {
            let version = |s: &dyn Store| {
                s.record_version_at(RecordKind::SocialInsurance, &[key; 32], at)
                    .unwrap()
                    .map(|r| (r.seq, r.sealed))
            };
            assert_eq!(version(&pg), version(&lite), "{key} at {at}");
        }
    }
    // (Rows of one kind and change time come in either order.)
    for person in 0u8..5 {
        let rows = |s: &dyn Store| {
            let mut seqs: Vec<_> = s
                .records_for_person(&[person; 32])
                .unwrap()
                .iter()
                .map(|r| (r.changed_at, r.seq))
                .collect();
            seqs.sort();
            seqs
        };
        assert_eq!(rows(&pg), rows(&lite));
    }
    let rows = |s: &dyn Store| {
        let mut seqs: Vec<_> = s
            .records_for_enterprise("E1", &kinds)
            .unwrap()
            .iter()
            .map(|r| (r.changed_at, r.seq))
            .collect();
        seqs.sort();
        seqs
    };
    assert_eq!(rows(&pg), rows(&lite));
    // A re-send finds the receipt.
    assert!(matches!(
        commit(&pg, "b1", vec![]),
        CommitOutcome::AlreadyCommitted(_)
    ));
}

/// The feed read in parts (`read_feed`): for every cursor, page size and
/// choice of kinds, over a feed with kinds interleaved, runs of one kind and
/// superseded positions, the pages are the SQLite store's, and paging
/// through it page by page delivers the whole feed once.
#[test]
fn feed_pages_read_in_parts_are_the_sqlite_store_pages() {
    let db = TestDatabase::create();
    let pg = open(&db);
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(dir.path()).unwrap();
    let of_kind = |kind, key: u8, version| RecordWrite {
        kind,
        ..record(key, version)
    };
    let batches: Vec<Vec<RecordWrite>> = vec![
        (0..30)
            .map(|k| match k % 3 {
                0 => of_kind(RecordKind::Household, k, 10),
                _ => of_kind(RecordKind::SocialInsurance, k, 10),
            })
            .collect(),
        (0..25)
            .map(|k| of_kind(RecordKind::Household, 100 + k, 10))
            .collect(),
        // Later versions: their old positions fall out of the feed.
        (0..30)
            .step_by(4)
            .map(|k| of_kind(RecordKind::SocialInsurance, k, 11))
            .collect(),
        (0..12)
            .map(|k| of_kind(RecordKind::SocialInsurance, 200 + k, 10))
            .collect(),
    ];
    for (i, records) in batches.into_iter().enumerate() {
        let id = format!("b{i}");
        commit(&pg, &id, records.clone());
        commit(&lite, &id, records);
    }
    let head = lite.feed_head().unwrap();
    assert_eq!(pg.feed_head().unwrap(), head);
    let page = |s: &dyn Store, kinds: &[RecordKind], after, limit| {
        s.read_feed(kinds, after, limit)
            .unwrap()
            .into_iter()
            .map(|r| (r.seq, r.kind, r.key_hash, r.sealed))
            .collect::<Vec<_>>()
    };
    let choices: [&[RecordKind]; 3] = [
        &[RecordKind::SocialInsurance],
        &[RecordKind::Household],
        &[RecordKind::Household, RecordKind::SocialInsurance],
    ];
    for kinds in choices {
        for limit in [1, 2, 3, 4, 5, 7, 8, 13, 50, 1000] {
            for after in 0..=head + 1 {
                assert_eq!(
                    page(&pg, kinds, after, limit),
                    page(&lite, kinds, after, limit),
                    "{kinds:?} after {after}, {limit} at most"
                );
            }
            let mut walked = Vec::new();
            let mut cursor = 0;
            loop {
                let next = page(&pg, kinds, cursor, limit);
                let Some(last) = next.last() else { break };
                cursor = last.0;
                walked.extend(next);
            }
            assert_eq!(
                walked,
                page(&lite, kinds, 0, 10_000),
                "{kinds:?} by {limit}"
            );
        }
    }
}

/// The same batch id sent through two replicas at the same moment commits
/// once; the other gets the first's receipt.
#[test]
fn one_batch_id_through_two_replicas_commits_once() {
    let db = TestDatabase::create();
    let stores = [open(&db), open(&db)];
    for round in 0..10u8 {
        let id = format!("same-{round}");
        let barrier = Barrier::new(2);
        let outcomes: Vec<CommitOutcome> = std::thread::scope(|s| {
            let handles: Vec<_> = stores
                .iter()
                .map(|store| {
                    let (barrier, id) = (&barrier, &id);
                    s.spawn(move || {
                        barrier.wait();
                        commit(
                            store,
                            id,
                            (0..50).map(|k| record(k, i64::from(round))).collect(),
                        )
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let committed: Vec<&Receipt> = outcomes
            .iter()
            .filter_map(|o| match o {
                CommitOutcome::Committed { receipt, .. } => Some(receipt),
                _ => None,
            })
            .collect();
        assert_eq!(committed.len(), 1, "round {round}: {outcomes:?}");
        let again = outcomes.iter().find_map(|o| match o {
            CommitOutcome::AlreadyCommitted(done) => Some(&done.receipt),
            _ => None,
        });
        assert_eq!(again, Some(committed[0]));
    }
    assert_eq!(stores[0].records_of_batch("hrss", "same-9").unwrap(), 50);
}

/// Writers on two replicas commit while a reader follows the feed with a
/// cursor: the reader receives every record, none twice, and the feed's
/// positions end up 1..=n without a hole.
#[test]
fn a_cursor_misses_no_change_committed_through_either_replica() {
    let db = TestDatabase::create();
    let stores = [open(&db), open(&db), open(&db)];
    let (writers, batches, rows) = (4u32, 15u32, 7u32);
    let done = std::sync::atomic::AtomicBool::new(false);
    let seen = std::thread::scope(|s| {
        for w in 0..writers {
            let store = &stores[w as usize % 2];
            s.spawn(move || {
                for b in 0..batches {
                    let records = (0..rows)
                        .map(|r| RecordWrite {
                            key_hash: [w.to_be_bytes(), b.to_be_bytes(), r.to_be_bytes()].concat(),
                            ..record(0, 1)
                        })
                        .collect();
                    commit(store, &format!("w{w}-b{b}"), records);
                }
            });
        }
        let (reader, done) = (&stores[2], &done);
        let follower = s.spawn(move || {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(Ordering::SeqCst);
                let page = reader
                    .read_feed(&[RecordKind::SocialInsurance], cursor, 13)
                    .unwrap();
                for r in &page {
                    assert!(r.seq > cursor);
                    cursor = r.seq;
                    seen.push(r.key_hash.clone());
                }
                if page.is_empty() && finished {
                    return seen;
                }
            }
        });
        // The writers end with the scope's other threads; then the last read.
        while stores[0].feed_head().unwrap() < u64::from(writers * batches * rows) {
            std::thread::sleep(Duration::from_millis(5));
        }
        done.store(true, Ordering::SeqCst);
        follower.join().unwrap()
    });
    let total = (writers * batches * rows) as usize;
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (total, total));
    let seqs: Vec<u64> = stores[0]
        .read_feed(&[RecordKind::SocialInsurance], 0, total + 1)
        .unwrap()
        .iter()
        .map(|r| r.seq)
        .collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
}

/// Appends through two replicas, queued and direct, form one log: every
/// entry once, in one order, with subject back-pointers chained across the
/// replicas, and roots and proofs of the reference tree from either.
#[test]
fn appends_through_two_replicas_form_one_verifiable_log() {
    let db = TestDatabase::create();
    let stores = [open(&db), open(&db)];
    let per_thread = 150u64;
    std::thread::scope(|s| {
        for (t, store) in stores.iter().enumerate() {
            s.spawn(move || {
                let pending: Vec<AuditAppend> = (0..per_thread)
                    .map(|i| {
                        let n = t as u64 * 10_000 + i;
                        store.append_audit_queued(vec![entry(n, Some(format!("{:032x}", i % 5)))])
                    })
                    .collect();
                for p in pending {
                    p.wait().unwrap();
                }
            });
            s.spawn(move || {
                for i in 0..per_thread / 10 {
                    let n = t as u64 * 10_000 + 5_000 + i;
                    let batch: Vec<AuditEntry> = (0..10)
                        .map(|j| entry(n * 10 + j, Some(format!("{:032x}", j % 3))))
                        .collect();
                    store.append_audit(&batch).unwrap();
                }
            });
        }
    });
    let n = 2 * per_thread + 2 * (per_thread / 10) * 10;
    assert_eq!(stores[0].audit_size().unwrap(), n);
    let leaves = stores[1].audit_leaves(0, n, usize::MAX).unwrap();
    let mut reference = tlog::MemoryTree::new();
    let mut last_of = std::collections::HashMap::new();
    let mut naming = std::collections::HashMap::<String, Vec<u64>>::new();
    for l in &leaves {
        let bytes = l.entry.as_ref().unwrap();
        assert_eq!(tlog::leaf_hash(bytes), l.leaf_hash);
        reference.append(l.leaf_hash);
        let e = CanonicalEntry::decode(bytes).unwrap();
        assert_eq!(e.seq, l.seq);
        for s in e.subjects {
            naming.entry(s.token.clone()).or_default().push(e.seq);
            assert_eq!(s.prev_seq, last_of.insert(s.token, e.seq).unwrap_or(0));
        }
    }
    for store in &stores {
        for size in [1, 255, 256, 257, n / 2, n] {
            assert_eq!(
                store.audit_root(size).unwrap(),
                reference.root_at(size).unwrap()
            );
            assert_eq!(
                store.audit_inclusion_proof(size / 2, size).unwrap(),
                reference.inclusion_proof(size / 2, size).unwrap()
            );
            assert_eq!(
                store.audit_consistency_proof(1, size).unwrap(),
                reference.consistency_proof(1, size).unwrap()
            );
        }
    }
    let subject = format!("{:032x}", 1);
    let named = stores[0]
        .audit_subject_entries(&subject, 0, usize::MAX)
        .unwrap();
    assert_eq!(
        named.iter().map(|e| e.seq).collect::<Vec<_>>(),
        naming[&subject]
    );
    let filtered = stores[1]
        .query_audit(&AuditFilter {
            subject: Some(subject),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(filtered, named);
}

/// The subject index is written after the commit: a query by subject
/// through another replica, while appends go on, holds every entry naming
/// the subject that committed before the query began; and with no query at
/// all, an idle indexer brings the index to the end of the log by itself.
#[test]
fn subject_queries_see_every_entry_committed_before_them() {
    let db = TestDatabase::create();
    let stores = [open(&db), open(&db)];
    let subject = |i: u64| format!("{:032x}", i % 7);
    let appending = std::sync::atomic::AtomicBool::new(true);
    std::thread::scope(|s| {
        let (writer, appending) = (&stores[0], &appending);
        s.spawn(move || {
            for i in 0..60u64 {
                let page: Vec<AuditEntry> = (0..20)
                    .map(|j| entry(i * 20 + j, Some(subject(j))))
                    .collect();
                writer.append_audit(&page).unwrap();
            }
            appending.store(false, Ordering::SeqCst);
        });
        let mut queries = 0;
        while appending.load(Ordering::SeqCst) || queries < 3 {
            let size = stores[1].audit_size().unwrap();
            let seqs: Vec<u64> = stores[1]
                .audit_subject_entries(&subject(3), 0, usize::MAX)
                .unwrap()
                .iter()
                .map(|e| e.seq)
                .collect();
            // Entry seq names subject 3 where its place in its page does.
            let expected: Vec<u64> = (1..=size).filter(|q| (q - 1) % 20 % 7 == 3).collect();
            assert!(
                seqs.len() >= expected.len(),
                "a query missed committed entries"
            );
            assert_eq!(&seqs[..expected.len()], &expected[..]);
            queries += 1;
        }
    });
    let size = stores[0].audit_size().unwrap();
    assert_eq!(size, 1200);
    // Nothing queries now: the indexers finish on their own.
    let indexed = || {
        let rows = db.query_text(
            "SELECT (SELECT indexed_through FROM audit_subject_index),
                    (SELECT count(*) FROM audit_subjects)",
        );
        (rows[0][0].clone(), rows[0][1].clone())
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while indexed() != (Some("1200".into()), Some("1200".into())) {
        assert!(
            std::time::Instant::now() < deadline,
            "the index stopped at {:?}",
            indexed()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Back-pointers come from each replica's memory: a replica idle while
/// another appended, and one opened afterwards (from the index plus the
/// entries it has not reached), both chain their entries to the latest
/// entry naming each subject, wherever it was appended.
#[test]
fn back_pointers_follow_appends_made_elsewhere() {
    let db = TestDatabase::create();
    let (a, idle) = (open(&db), open(&db));
    let subject = |i: u64| format!("{:032x}", i % 3);
    let page = |from: u64| -> Vec<AuditEntry> {
        (from..from + 10)
            .map(|i| entry(i, Some(subject(i))))
            .collect()
    };
    for from in [0, 10, 20] {
        a.append_audit(&page(from)).unwrap();
    }
    // Indexed up to here; the next pages are not, unless the indexer is
    // quick.
    a.audit_subject_entries(&subject(0), 0, usize::MAX).unwrap();
    a.append_audit(&page(30)).unwrap();
    idle.append_audit(&page(40)).unwrap();
    let late = open(&db);
    late.append_audit(&page(50)).unwrap();
    a.append_audit(&page(60)).unwrap();
    let n = a.audit_size().unwrap();
    assert_eq!(n, 70);
    let mut last_of = std::collections::HashMap::new();
    for l in late.audit_leaves(0, n, usize::MAX).unwrap() {
        let e = CanonicalEntry::decode(l.entry.as_ref().unwrap()).unwrap();
        for s in e.subjects {
            assert_eq!(
                s.prev_seq,
                last_of.insert(s.token, e.seq).unwrap_or(0),
                "entry {}",
                e.seq
            );
        }
    }
}

/// A checkpoint is stored only for the tree the database holds, and only
/// while that tree still extends the last stored checkpoint.
#[test]
fn checkpoints_must_match_the_tree_in_the_database() {
    let db = TestDatabase::create();
    let (a, b) = (open(&db), open(&db));
    a.append_audit(&(0..10).map(|i| entry(i, None)).collect::<Vec<_>>())
        .unwrap();
    let cp = |size: u64, root: tlog::Hash| StoredCheckpoint {
        size,
        root,
        note: format!("note {size}"),
        signed_ms: 1,
    };
    let root5 = b.audit_root(5).unwrap();
    b.save_checkpoint(&cp(5, root5)).unwrap();
    assert_eq!(a.latest_checkpoint().unwrap().unwrap().size, 5);
    assert!(matches!(
        a.save_checkpoint(&cp(8, [7; 32])),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        a.save_checkpoint(&cp(11, [7; 32])),
        Err(StoreError::Corrupt { .. })
    ));
    a.save_checkpoint(&cp(10, a.audit_root(10).unwrap()))
        .unwrap();
    // The tree rewritten under the stored checkpoints: nothing more is stored.
    db.query_text("UPDATE audit_leaves SET hash = decode(repeat('00', 32), 'hex') WHERE idx = 2");
    let root = a.audit_root(10).unwrap();
    assert!(matches!(
        a.save_checkpoint(&cp(10, root)),
        Err(StoreError::Corrupt { .. })
    ));
    assert_eq!(b.checkpoint_at(10).unwrap().unwrap().note, "note 10");
}

/// The sliding re-identification limit holds across replicas taking at
/// the same time.
#[test]
fn the_reidentification_limit_holds_across_replicas() {
    let db = TestDatabase::create();
    let stores = [open(&db), open(&db)];
    let taken: usize = std::thread::scope(|s| {
        let handles: Vec<_> = (0..6)
            .map(|t| {
                let store = &stores[t % 2];
                s.spawn(move || {
                    (0..5)
                        .filter(|_| {
                            store
                                .take_reidentification("assistance", 1_000, 60_000, 7)
                                .unwrap()
                                .is_ok()
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(taken, 7);
    assert_eq!(
        stores[0]
            .take_reidentification("assistance", 2_000, 60_000, 7)
            .unwrap(),
        Err(59_000)
    );
    assert!(
        stores[1]
            .take_reidentification("assistance", 61_001, 60_000, 7)
            .unwrap()
            .is_ok()
    );
}

/// A database migrated by a newer gateway is refused, and a database that
/// cannot be reached is unavailable, not a failure of another kind.
#[test]
fn a_newer_schema_and_an_unreachable_database_are_refused() {
    let db = TestDatabase::create();
    drop(open(&db));
    // Opening again applies nothing twice.
    drop(open(&db));
    db.query_text("INSERT INTO schema_version (version, applied_ms) VALUES (99, 0)");
    let Err(e) = PgStore::open(db.url(), None) else {
        panic!("a newer schema was accepted")
    };
    assert!(
        e.to_string().contains("newer than this gateway knows"),
        "{e}"
    );
    let started = std::time::Instant::now();
    let Err(e) = PgStore::open("postgres://postgres@127.0.0.1:1/none?sslmode=disable", None) else {
        panic!("an unreachable database opened")
    };
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    assert!(started.elapsed() < CONNECT_TIMEOUT * 2);
    let Err(e) = PgStore::open("postgres://postgres@127.0.0.1:1/none", None) else {
        panic!("TLS without a CA file was accepted")
    };
    assert!(e.to_string().contains("ca_file"), "{e}");
}

/// Meta values, notes and their erasure, as the SQLite store keeps them.
#[test]
fn meta_and_notes() {
    let db = TestDatabase::create();
    let store = open(&db);
    assert_eq!(store.meta_get("k").unwrap(), None);
    store.meta_set("k", "v1").unwrap();
    store
        .meta_set_audited(&[("k", "v2"), ("j", "w")], &[entry(1, None)])
        .unwrap();
    assert_eq!(store.meta_get("k").unwrap().as_deref(), Some("v2"));
    assert_eq!(store.audit_size().unwrap(), 1);
    let mut noted = entry(2, None);
    noted.note = Some(crate::audit::notes::SealedNote {
        commitment: "c0ffee".into(),
        sealed: vec![9; 40],
    });
    store.append_audit(&[noted]).unwrap();
    let note = store.audit_note(2).unwrap().unwrap();
    assert_eq!(
        (note.sealed.as_deref(), note.erased),
        (Some(&[9u8; 40][..]), None)
    );
    assert_eq!(
        store.erase_audit_note(1, entry(3, None)).unwrap(),
        NoteErasure::NoNote
    );
    assert_eq!(
        store.erase_audit_note(2, entry(3, None)).unwrap(),
        NoteErasure::Erased { erasure_seq: 3 }
    );
    assert_eq!(
        store.erase_audit_note(2, entry(4, None)).unwrap(),
        NoteErasure::AlreadyErased { erasure_seq: 3 }
    );
    let note = store.audit_note(2).unwrap().unwrap();
    assert_eq!((note.sealed, note.erased), (None, Some((3, 3))));
    assert_eq!(store.audit_size().unwrap(), 3);
}

/// The database's connections killed under the store (a restart, a
/// failover): a call answers `Unavailable` or succeeds, never fails in
/// another way, and the store serves again by itself.
#[test]
fn killed_connections_are_unavailable_then_replaced() {
    let db = TestDatabase::create();
    let store = open(&db);
    // Several pooled connections, idle.
    std::thread::scope(|s| {
        for i in 0..4 {
            let store = &store;
            s.spawn(move || store.append_audit(&[entry(i, None)]).unwrap());
        }
    });
    let killed = db.query_text(&format!(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = '{}' AND pid <> pg_backend_pid()",
        db.name()
    ));
    assert!(!killed.is_empty());
    let started = std::time::Instant::now();
    let mut unavailable = 0;
    loop {
        match store.append_audit(&[entry(9, None)]) {
            Ok(()) => break,
            Err(StoreError::Unavailable { .. }) => unavailable += 1,
            Err(e) => panic!("a killed connection failed otherwise: {e}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "still unavailable after {unavailable} calls"
        );
    }
    assert_eq!(store.audit_size().unwrap(), 5);
    assert!(
        store
            .append_audit_queued(vec![entry(10, None)])
            .wait()
            .is_ok()
    );
}

/// PostgreSQL's failures map by what a caller can do: a unique violation
/// is a conflict (and nothing of its transaction stays), a broken statement
/// a backend failure, a value of a type never stored is damage.
#[test]
fn database_failures_map_by_what_a_caller_can_do() {
    let db = TestDatabase::create();
    let store = open(&db);
    let dup = store.inner.transaction(Isolation::Write, |db| {
        db.execute("INSERT INTO meta (k, v) VALUES ('a', '1')", &[])?;
        db.execute("INSERT INTO meta (k, v) VALUES ('a', '2')", &[])
    });
    let Err(e) = dup else {
        panic!("a duplicate key was inserted")
    };
    assert!(matches!(e, StoreError::Conflict { .. }), "{e}");
    assert!(std::error::Error::source(&e).is_some());
    assert_eq!(store.meta_get("a").unwrap(), None);
    let broken = store
        .inner
        .read(|db| db.query("SELECT no_such_column FROM meta", &[]));
    assert!(matches!(broken, Err(StoreError::Backend { .. })));
    let text = store.inner.read(|db| {
        let row = db.query_one("SELECT 'x'::text", &[])?;
        db::get::<i64>(&row, 0)
    });
    assert!(matches!(text, Err(StoreError::Corrupt { .. })));
}

/// Text holding NUL (which PostgreSQL's text types refuse) in an entry's
/// queried fields and in filters: stored and found as on SQLite, and a
/// filter holding it answers instead of failing.
#[test]
fn text_with_nul_is_stored_and_queried_as_on_sqlite() {
    let db = TestDatabase::create();
    let pg = open(&db);
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(dir.path()).unwrap();
    let mut odd = entry(1, None);
    odd.actor = "union/a\0b".into();
    odd.kinds = vec!["k\0".into()];
    for store in [&pg as &dyn Store, &lite] {
        store.append_audit(&[entry(0, None), odd.clone()]).unwrap();
    }
    for filter in [
        AuditFilter {
            actor: Some("union/a\0b".into()),
            ..Default::default()
        },
        AuditFilter {
            kind: Some("k\0".into()),
            ..Default::default()
        },
        AuditFilter {
            action: Some("\0".into()),
            outcome: Some("\0".into()),
            subject: Some("\0".into()),
            ..Default::default()
        },
    ] {
        let filter = AuditFilter {
            limit: 10,
            ..filter
        };
        assert_eq!(
            pg.query_audit(&filter).unwrap(),
            lite.query_audit(&filter).unwrap(),
            "{filter:?}"
        );
    }
    let by_actor = AuditFilter {
        actor: Some("union/a\0b".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(pg.query_audit(&by_actor).unwrap().len(), 1);
    assert_eq!(
        pg.audit_leaves(0, 2, 2).unwrap(),
        lite.audit_leaves(0, 2, 2).unwrap()
    );
}

/// A writer that waits past the lock timeout for another replica's lock
/// (one stalled mid-commit) answers `Unavailable`, and nothing of its
/// batch is stored.
#[test]
fn a_lock_held_too_long_elsewhere_is_unavailable() {
    let db = TestDatabase::create();
    let holder = open(&db);
    let impatient = PgStore::open(
        &format!("{}&options=-c%20lock_timeout%3D200", db.url()),
        None,
    )
    .unwrap();
    let held = Barrier::new(2);
    std::thread::scope(|s| {
        s.spawn(|| {
            holder
                .inner
                .transaction(Isolation::Write, |db| {
                    db.query_one("SELECT seq FROM feed_head WHERE id = 0 FOR UPDATE", &[])?;
                    held.wait();
                    std::thread::sleep(Duration::from_millis(1500));
                    Ok(())
                })
                .unwrap();
        });
        held.wait();
        let Err(e) = impatient.commit_batch(BatchWrite {
            agency: "hrss",
            batch_id: "stalled",
            content_hash: [0; 32],
            records: vec![record(1, 1)],
            receipt: Receipt::default(),
            audit: &|_| entry(0, None),
        }) else {
            panic!("committed while another held the feed lock")
        };
        assert!(matches!(e, StoreError::Unavailable { .. }), "{e}");
    });
    assert!(holder.find_batch("hrss", "stalled").unwrap().is_none());
    assert_eq!(holder.feed_head().unwrap(), 0);
}

/// An embedded store with a log of several tiles and chunks, notes (one
/// erased), subjects, checkpoints, earlier record versions, receipts, meta
/// and re-identifications, copied: every answer is the source's, the tree
/// has the same roots, and the next entry naming a subject points back to
/// the same entry on both (the copy carries each subject's latest entry).
#[test]
fn a_copied_embedded_store_answers_as_its_source() {
    let dir = tempfile::tempdir().unwrap();
    let src = SqliteStore::open(dir.path()).unwrap();
    for b in 0..3u8 {
        let records = (0..10).map(|k| record(k, i64::from(b) + 1)).collect();
        commit(&src, &format!("b{b}"), records);
    }
    src.meta_set("key_ids", "enc-1,idx-1").unwrap();
    assert_eq!(
        src.take_reidentification("union/assistance", 1_000, 3_600_000, 5)
            .unwrap(),
        Ok(())
    );
    for chunk in 0..25u64 {
        let entries: Vec<AuditEntry> = (0..100)
            .map(|i| entry(chunk * 100 + i, Some(format!("s{}", i % 7))))
            .collect();
        src.append_audit(&entries).unwrap();
        if chunk == 3 || chunk == 20 {
            let size = src.audit_size().unwrap();
            src.save_checkpoint(&StoredCheckpoint {
                size,
                root: src.audit_root(size).unwrap(),
                note: format!("note {size}"),
                signed_ms: 1,
            })
            .unwrap();
        }
    }
    for i in 0..2 {
        let mut noted = entry(9_000 + i, None);
        noted.note = Some(crate::audit::notes::SealedNote {
            commitment: format!("c{i}"),
            sealed: vec![9; 40],
        });
        src.append_audit(&[noted]).unwrap();
    }
    let noted = src.audit_size().unwrap();
    src.erase_audit_note(noted, entry(9_100, None)).unwrap();

    let db = TestDatabase::create();
    let dst = open(&db);
    let summary = dst.import(|sink| src.export(sink)).unwrap();
    let size = src.audit_size().unwrap();
    assert_eq!(summary.audit_size, size);
    assert_eq!(summary.audit_entries, size);
    assert_eq!((summary.checkpoints, summary.notes), (2, 2));
    assert_eq!(dst.audit_size().unwrap(), size);
    for s in [1, 256, 300, 401, 2100, size] {
        assert_eq!(
            dst.audit_root(s).unwrap(),
            src.audit_root(s).unwrap(),
            "{s}"
        );
    }
    assert_eq!(
        dst.audit_consistency_proof(400, size).unwrap(),
        src.audit_consistency_proof(400, size).unwrap()
    );
    assert_eq!(
        dst.audit_leaves(0, size, 10_000).unwrap(),
        src.audit_leaves(0, size, 10_000).unwrap()
    );
    assert_eq!(
        dst.audit_subject_entries("s3", 0, usize::MAX).unwrap(),
        src.audit_subject_entries("s3", 0, usize::MAX).unwrap()
    );
    for seq in [noted - 1, noted] {
        assert_eq!(dst.audit_note(seq).unwrap(), src.audit_note(seq).unwrap());
    }
    assert_eq!(
        dst.audit_checkpoints(0, 10).unwrap(),
        src.audit_checkpoints(0, 10).unwrap()
    );
    assert_eq!(
        dst.meta_get("key_ids").unwrap().as_deref(),
        Some("enc-1,idx-1")
    );
    assert_eq!(dst.feed_head().unwrap(), src.feed_head().unwrap());
    let kinds = [RecordKind::SocialInsurance];
    // Compared as printed (the row types carry no equality of their own).
    let same = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| {
        assert_eq!(format!("{a:?}"), format!("{b:?}"))
    };
    same(
        &dst.read_feed(&kinds, 0, 1_000).unwrap(),
        &src.read_feed(&kinds, 0, 1_000).unwrap(),
    );
    same(
        &dst.record_versions(RecordKind::SocialInsurance, &[4; 32])
            .unwrap(),
        &src.record_versions(RecordKind::SocialInsurance, &[4; 32])
            .unwrap(),
    );
    same(
        &dst.find_batch("hrss", "b1").unwrap(),
        &src.find_batch("hrss", "b1").unwrap(),
    );
    // The window taken before the copy still counts after it.
    assert_eq!(
        dst.take_reidentification("union/assistance", 2_000, 3_600_000, 1)
            .unwrap(),
        src.take_reidentification("union/assistance", 2_000, 3_600_000, 1)
            .unwrap()
    );

    // The log goes on from where it was, with the same back-pointers.
    let next = [entry(10_000, Some("s3".into()))];
    src.append_audit(&next).unwrap();
    dst.append_audit(&next).unwrap();
    assert_eq!(
        dst.audit_root(size + 1).unwrap(),
        src.audit_root(size + 1).unwrap()
    );
    commit(&dst, "after", vec![record(50, 1)]);
    assert!(dst.feed_head().unwrap() > src.feed_head().unwrap());

    // A second copy into the same database is refused, and changes nothing.
    let held = dst.audit_size().unwrap();
    let again = dst.import(|sink| src.export(sink));
    assert!(
        matches!(&again, Err(StoreError::Conflict { .. })),
        "{again:?}"
    );
    assert_eq!(dst.audit_size().unwrap(), held);
}

/// Serving and maintenance exclude each other across processes through the
/// database: replicas serve together, `gateway keys` waits for all of them
/// to stop, and no replica starts while it works.
#[test]
fn serving_and_maintenance_claims_exclude_each_other() {
    let db = TestDatabase::create();
    let (a, b) = (open(&db), open(&db));
    a.claim_serving().unwrap();
    b.claim_serving().unwrap();
    let keys = open(&db);
    let refused = keys.claim_maintenance().unwrap_err();
    assert!(
        matches!(refused, StoreError::Unavailable { .. }),
        "{refused}"
    );
    assert!(refused.to_string().contains("serving"), "{refused}");
    drop((a, b));
    // A dropped store's connection closes; the server lets go of its claim
    // as it notices.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while keys.claim_maintenance().is_err() {
        assert!(std::time::Instant::now() < deadline, "the claims stayed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let late = open(&db);
    let refused = late.claim_serving().unwrap_err();
    assert!(refused.to_string().contains("gateway keys"), "{refused}");
    drop(keys);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while late.claim_serving().is_err() {
        assert!(std::time::Instant::now() < deadline, "the claim stayed");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}
