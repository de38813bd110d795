//! Key rotation without loss, for the two keys whose output is stored or
//! handed out rather than decrypted: the index key and the pseudonym key.
//! (Encryption keys need nothing here: ciphertexts name their key, and old
//! keys stay in the key file for reading.)
//!
//! - **Index key.** Records are found by keyed hashes (the record key, the
//!   person index). After a rotation, hashes computed with the new key find
//!   nothing stored under the old one, so every record is re-indexed: opened,
//!   hashed again with the active key, sealed again (the ciphertext's
//!   associated data names its record key) and rewritten in place at its feed
//!   position, in chunks whose progress is kept in the store's meta table. A
//!   crash resumes where it stopped; `gateway serve` runs the same re-index at
//!   start-up before it serves, so no look-up or push ever meets a store
//!   indexed under two keys. The store records the index key its rows are
//!   under.
//! - **Pseudonym key.** Each pseudonym domain (each consumer, and the
//!   auditors' domain) stays bound to the pseudonym key it was first used
//!   with, recorded in the store, so that a consumer's pseudonyms, its
//!   outstanding re-identification tokens and each person's audit chain do
//!   not change when a new key is made active: the new key applies to
//!   domains bound from then on. An operator may deliberately re-pseudonymise
//!   one consumer ([`repseudonymise`]); the auditors' domain never moves.
//!
//! Every step is audited with key ids only.

use crate::audit::AUDIT_DOMAIN;
use crate::audit::{
    self, AuditEvent, ConsumerRepseudonymised, KeyRotated, RecordsReindexStarted, RecordsReindexed,
};
use crate::keys::Keys;
use crate::sealing::{decode_record, record_aad, seal_record};
use crate::store::{ReindexedRecord, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Meta key: the active key id of each kind at the last start (`kind=id,…`).
const ACTIVE_KEY_IDS: &str = "active_key_ids";
/// Meta key: the index key every stored record is indexed under.
pub const RECORDS_INDEX_KEY: &str = "records_index_key";
/// Meta key: a re-index under way ([`ReindexProgress`], JSON), empty when none.
pub const RECORDS_REINDEX: &str = "records_reindex";
/// Meta key: each pseudonym domain's key id (a JSON map).
pub const PSEUDONYM_DOMAINS: &str = "pseudonym_domains";
/// Records re-indexed per transaction.
const REINDEX_CHUNK: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the stored record at feed position {seq} cannot be re-indexed: {reason}")]
    Unreadable { seq: u64, reason: String },
    #[error(
        "pseudonym domain `{domain}` is bound to pseudonym key `{key_id}`, which is not in the \
         key file: put that key back (a rotated key stays in the file, only `active_pseudonym` \
         changes){hint}"
    )]
    MissingPseudonymKey {
        domain: String,
        key_id: String,
        hint: &'static str,
    },
    #[error("stored meta value `{key}` is corrupt: {message}")]
    CorruptMeta { key: &'static str, message: String },
    #[error(
        "`{0}` is the auditors' pseudonym domain: it is never re-pseudonymised, so that no \
         person's audit chain splits"
    )]
    AuditDomain(String),
    #[error("no policy names consumer `{0}`")]
    UnknownConsumer(String),
    #[error("the re-index was interrupted; it resumes where it stopped")]
    Interrupted,
}

/// A re-index under way, as kept in [`RECORDS_REINDEX`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct ReindexProgress {
    /// The key the records were under when the re-index began.
    from: String,
    /// The key they are being moved to.
    to: String,
    /// Every record up to this feed position is under `to`.
    through: u64,
    /// Records rewritten and merged so far (all runs).
    records: u64,
    merged: u64,
}

/// What a completed re-index did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reindexed {
    pub old_key_id: String,
    pub new_key_id: String,
    pub records: u64,
    pub merged: u64,
}

/// Everything `gateway serve` does with keys before it serves: checks that
/// every bound pseudonym domain's key is in the key file and binds new
/// domains (`consumers` and the auditors'), records which active keys
/// changed since the last start (`key_rotated`), and re-indexes the records
/// if the index key changed (or a re-index was interrupted).
pub fn prepare(
    store: &dyn Store,
    keys: &Keys,
    consumers: &[&str],
) -> Result<Option<Reindexed>, RotationError> {
    let previous = previous_active_ids(store)?;
    bind_pseudonym_domains(
        store,
        keys,
        consumers,
        previous
            .as_ref()
            .and_then(|p| p.get("pseudonym").map(String::as_str)),
    )?;
    record_key_rotations(store, keys, previous.as_ref())?;
    reindex_with(
        store,
        keys,
        previous
            .as_ref()
            .and_then(|p| p.get("index").map(String::as_str)),
        REINDEX_CHUNK,
        &mut |_| true,
    )
}

/// The active key ids recorded at the last start, if any.
fn previous_active_ids(store: &dyn Store) -> Result<Option<BTreeMap<String, String>>, StoreError> {
    Ok(store.meta_get(ACTIVE_KEY_IDS)?.map(|v| {
        v.split(',')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }))
}

/// Records a `key_rotated` entry for each key whose active id changed since
/// the last start (rotation = a new key made active in the key file, the old
/// one kept for reading).
fn record_key_rotations(
    store: &dyn Store,
    keys: &Keys,
    previous: Option<&BTreeMap<String, String>>,
) -> Result<(), StoreError> {
    let current = keys.active_ids();
    let encoded = current
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    if store.meta_get(ACTIVE_KEY_IDS)?.as_deref() == Some(encoded.as_str()) {
        return Ok(());
    }
    let entries: Vec<_> = current
        .iter()
        .filter_map(|(kind, id)| {
            let old = previous?.get(*kind)?;
            (old != id).then(|| {
                tracing::warn!(key_kind = kind, new_key_id = id, "key rotated");
                KeyRotated {
                    key_kind: kind,
                    old_key_id: old,
                    new_key_id: id,
                }
                .entry(audit::GATEWAY)
            })
        })
        .collect();
    store.meta_set_audited(&[(ACTIVE_KEY_IDS, &encoded)], &entries)
}

/// Re-indexes every stored record under the active index key, resuming an
/// interrupted re-index; `None` when the records are under it already.
/// `gateway keys reindex` and the start-up of `gateway serve` call this; no
/// one may write records meanwhile.
pub fn reindex(store: &dyn Store, keys: &Keys) -> Result<Option<Reindexed>, RotationError> {
    let previous = previous_active_ids(store)?;
    reindex_with(
        store,
        keys,
        previous
            .as_ref()
            .and_then(|p| p.get("index").map(String::as_str)),
        REINDEX_CHUNK,
        &mut |_| true,
    )
}

/// [`reindex`] in chunks of `chunk` records; `go_on(through)` after each
/// chunk's commit says whether to go on (tests stop it there, as a crash
/// would). `last_start_index` is the index key active at the last start, for
/// stores from before the key the records are under was recorded.
fn reindex_with(
    store: &dyn Store,
    keys: &Keys,
    last_start_index: Option<&str>,
    chunk: usize,
    go_on: &mut dyn FnMut(u64) -> bool,
) -> Result<Option<Reindexed>, RotationError> {
    let target = keys.active_index_id();
    let under_way = match store.meta_get(RECORDS_REINDEX)? {
        Some(v) if !v.is_empty() => {
            Some(serde_json::from_str::<ReindexProgress>(&v).map_err(|e| {
                RotationError::CorruptMeta {
                    key: RECORDS_REINDEX,
                    message: e.to_string(),
                }
            })?)
        }
        _ => None,
    };
    let mut progress = match under_way {
        Some(p) if p.to == target => p,
        // Interrupted, and the key changed again since: every record is
        // checked again (those under the new key already are left alone).
        Some(p) => ReindexProgress {
            from: p.from,
            to: target.to_string(),
            through: 0,
            records: 0,
            merged: 0,
        },
        None => {
            let from = match store.meta_get(RECORDS_INDEX_KEY)? {
                Some(k) if k == target => return Ok(None),
                Some(k) => k,
                None => {
                    // A new store, or one from before the key was recorded
                    // (its rows are under the index key of its last start).
                    if store.feed_head()? == 0 || last_start_index == Some(target) {
                        store.meta_set(RECORDS_INDEX_KEY, target)?;
                        return Ok(None);
                    }
                    last_start_index.unwrap_or("unknown").to_string()
                }
            };
            ReindexProgress {
                from,
                to: target.to_string(),
                through: 0,
                records: 0,
                merged: 0,
            }
        }
    };
    let head = store.feed_head()?;
    tracing::warn!(
        old_key_id = %progress.from,
        new_key_id = %progress.to,
        resume_after_seq = progress.through,
        feed_head = head,
        "re-indexing the stored records under the active index key"
    );
    store.meta_set_audited(
        &[(RECORDS_REINDEX, &encode(&progress))],
        &[RecordsReindexStarted {
            old_key_id: &progress.from,
            new_key_id: &progress.to,
            resume_after_seq: progress.through,
        }
        .entry(audit::GATEWAY)],
    )?;
    loop {
        let rows = store.read_feed(&adapters::RecordKind::ALL, progress.through, chunk)?;
        let Some(last) = rows.last() else {
            break;
        };
        let through = last.seq;
        let mut moved = Vec::new();
        for row in &rows {
            let unreadable = |reason: String| RotationError::Unreadable {
                seq: row.seq,
                reason,
            };
            let plain = keys
                .open(&record_aad(row.kind, &row.key_hash), &row.sealed)
                .map_err(|e| unreadable(e.to_string()))?;
            let record = decode_record(&plain).map_err(unreadable)?;
            let write = seal_record(keys, &record);
            if write.kind != row.kind {
                return Err(unreadable("its kind differs from its row's".into()));
            }
            if write.key_hash == row.key_hash {
                // Under the active key already (pushed after the rotation,
                // or re-indexed by a run interrupted before its progress).
                continue;
            }
            let mut versions = Vec::new();
            for earlier in store.record_versions(row.kind, &row.key_hash)? {
                let plain = keys
                    .open(&record_aad(row.kind, &row.key_hash), &earlier.sealed)
                    .map_err(|e| unreadable(e.to_string()))?;
                let resealed = keys.seal(&record_aad(row.kind, &write.key_hash), &plain);
                versions.push((earlier.seq, resealed));
            }
            moved.push(ReindexedRecord {
                seq: row.seq,
                kind: row.kind,
                key_hash: write.key_hash,
                person_index: write.person_index,
                sealed: write.sealed,
                versions,
            });
        }
        progress.through = through;
        progress.records += moved.len() as u64;
        progress.merged +=
            store.reindex_records(&moved, &[(RECORDS_REINDEX, &encode(&progress))])?;
        tracing::info!(
            through_seq = through,
            feed_head = head,
            records = progress.records,
            "re-index progress"
        );
        if !go_on(through) {
            return Err(RotationError::Interrupted);
        }
    }
    store.meta_set_audited(
        &[(RECORDS_INDEX_KEY, &progress.to), (RECORDS_REINDEX, "")],
        &[RecordsReindexed {
            old_key_id: &progress.from,
            new_key_id: &progress.to,
            records: progress.records,
            merged: progress.merged,
        }
        .entry(audit::GATEWAY)],
    )?;
    tracing::warn!(
        old_key_id = %progress.from,
        new_key_id = %progress.to,
        records = progress.records,
        merged = progress.merged,
        "every stored record is indexed under the active index key"
    );
    Ok(Some(Reindexed {
        old_key_id: progress.from,
        new_key_id: progress.to,
        records: progress.records,
        merged: progress.merged,
    }))
}

fn encode(progress: &ReindexProgress) -> String {
    serde_json::to_string(progress).expect("progress serialises")
}

/// The stored bindings of pseudonym domains to key ids; `None` for a store
/// from before bindings were recorded.
fn stored_bindings(store: &dyn Store) -> Result<Option<BTreeMap<String, String>>, RotationError> {
    store
        .meta_get(PSEUDONYM_DOMAINS)?
        .map(|v| {
            serde_json::from_str(&v).map_err(|e| RotationError::CorruptMeta {
                key: PSEUDONYM_DOMAINS,
                message: e.to_string(),
            })
        })
        .transpose()
}

/// Loads the stored bindings into `keys` (failing if a bound key is not in
/// the key file) and binds the domains not bound yet, the auditors' and
/// `consumers`, to the active pseudonym key (for a store from before
/// bindings were recorded: to `last_start_pseudonym`, the key its
/// pseudonyms were made with).
pub fn bind_pseudonym_domains(
    store: &dyn Store,
    keys: &Keys,
    consumers: &[&str],
    last_start_pseudonym: Option<&str>,
) -> Result<(), RotationError> {
    let stored = stored_bindings(store)?;
    let default = match (&stored, last_start_pseudonym) {
        (None, Some(id)) => id.to_string(),
        _ => keys.active_pseudonym_id().to_string(),
    };
    let mut bindings = stored.clone().unwrap_or_default();
    for domain in std::iter::once(AUDIT_DOMAIN).chain(consumers.iter().copied()) {
        if !bindings.contains_key(domain) {
            tracing::info!(domain, key_id = %default, "pseudonym domain bound");
            bindings.insert(domain.to_string(), default.clone());
        }
    }
    for (domain, key_id) in &bindings {
        keys.bind_pseudonym_domain(domain, key_id).map_err(|_| {
            RotationError::MissingPseudonymKey {
                domain: domain.clone(),
                key_id: key_id.clone(),
                hint: if domain == AUDIT_DOMAIN {
                    ""
                } else {
                    ", or re-pseudonymise that consumer (`gateway keys repseudonymise`)"
                },
            }
        })?;
    }
    if stored.as_ref() != Some(&bindings) {
        store.meta_set(PSEUDONYM_DOMAINS, &encode_bindings(&bindings))?;
    }
    Ok(())
}

fn encode_bindings(bindings: &BTreeMap<String, String>) -> String {
    serde_json::to_string(bindings).expect("bindings serialise")
}

/// Deliberately binds one consumer's pseudonym domain to the active
/// pseudonym key: all its pseudonyms change, and re-identification tokens it
/// holds no longer open. Audited. Returns the old and new key ids, or `None`
/// if the consumer is bound to the active key already. Takes effect when the
/// gateway next starts; the auditors' domain is refused.
pub fn repseudonymise(
    store: &dyn Store,
    keys: &Keys,
    policies: &policies::PolicySet,
    consumer: &str,
) -> Result<Option<(String, String)>, RotationError> {
    if consumer == AUDIT_DOMAIN {
        return Err(RotationError::AuditDomain(consumer.to_string()));
    }
    if policies.get(consumer).is_none() {
        return Err(RotationError::UnknownConsumer(consumer.to_string()));
    }
    // Every other domain keeps its key (bound now if never bound before).
    let consumers: Vec<&str> = policies.consumers().collect();
    let previous = previous_active_ids(store)?;
    bind_pseudonym_domains(
        store,
        keys,
        &consumers,
        previous
            .as_ref()
            .and_then(|p| p.get("pseudonym").map(String::as_str)),
    )?;
    let mut bindings = stored_bindings(store)?.unwrap_or_default();
    let new = keys.active_pseudonym_id().to_string();
    let old = bindings
        .get(consumer)
        .cloned()
        .unwrap_or_else(|| "unbound".to_string());
    if old == new {
        return Ok(None);
    }
    bindings.insert(consumer.to_string(), new.clone());
    store.meta_set_audited(
        &[(PSEUDONYM_DOMAINS, &encode_bindings(&bindings))],
        &[ConsumerRepseudonymised {
            consumer,
            old_key_id: &old,
            new_key_id: &new,
        }
        .entry(audit::GATEWAY)],
    )?;
    tracing::warn!(consumer, old_key_id = %old, new_key_id = %new, "consumer re-pseudonymised");
    Ok(Some((old, new)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::Value;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{BatchWrite, Receipt, RecordWrite};
    use adapters::{Agency, Format};
    use std::path::Path;

    /// 马伟红: four accepted social-insurance rows in the hrss sample.
    const PERSON: &str = "340207197607111133";

    /// A key file with one key of each kind, and the same file with a second
    /// key of `kind` made active.
    fn keys_and_rotated(dir: &Path, kind: &str, old: &str, new: &str) -> (Keys, Keys) {
        let path = dir.join("keys.toml");
        let before = Keys::load(&path, true).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let rotated = text.replace(
            &format!("active_{kind} = \"{old}\""),
            &format!("active_{kind} = \"{new}\""),
        ) + &format!(
            "\n[[{kind}]]\nid = \"{new}\"\nsecret = \"{}\"\n",
            "Bw".repeat(21) + "A="
        );
        std::fs::write(&path, rotated).unwrap();
        (before, Keys::load(&path, false).unwrap())
    }

    /// The accepted rows of the hrss sample, sealed with `keys`.
    fn hrss_records(keys: &Keys) -> Vec<RecordWrite> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/agencies/samples/hrss.csv");
        let mut rows = crate::client::RowReader::new(std::fs::File::open(path).unwrap(), true);
        let header = rows.next_row().unwrap().unwrap();
        let adapter = adapters::adapter_for(Agency::Hrss).unwrap();
        let parser = adapter.open_batch(Format::CsvGbk, Some(&header)).unwrap();
        let mut records = Vec::new();
        while let Some(row) = rows.next_row().unwrap() {
            if let Ok(record) = parser.parse_row(&row) {
                records.push(seal_record(keys, &record));
            }
        }
        records
    }

    fn commit(store: &SqliteStore, batch_id: &str, records: Vec<RecordWrite>) {
        let receipt = Receipt {
            rows_received: records.len() as u64,
            accepted: records.len() as u64,
            superseded: 0,
            rejections: Vec::new(),
            ..Default::default()
        };
        let audit = |_: &Receipt| crate::audit::AuditEntry {
            at_ms: 0,
            actor: "agency/hrss".into(),
            action: "batch_pushed".into(),
            outcome: "ok".into(),
            kinds: Vec::new(),
            subjects: Vec::new(),
            details: Value::Map(Default::default()),
            note: None,
        };
        store
            .commit_batch(BatchWrite {
                agency: "hrss",
                batch_id,
                content_hash: [0; 32],
                records,
                receipt,
                audit: &audit,
            })
            .unwrap();
    }

    fn person_rows(store: &SqliteStore, keys: &Keys) -> usize {
        store
            .records_for_person(&keys.index_hash("person", PERSON.as_bytes()))
            .unwrap()
            .len()
    }

    fn entries(store: &SqliteStore, action: &str) -> Vec<crate::audit::CanonicalEntry> {
        store
            .query_audit(&crate::store::AuditFilter {
                action: Some(action.into()),
                limit: 1000,
                ..Default::default()
            })
            .unwrap()
            .iter()
            .map(|e| e.decode().unwrap())
            .collect()
    }

    #[test]
    fn an_interrupted_reindex_resumes_where_it_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = keys_and_rotated(dir.path(), "index", "idx-1", "idx-2");
        let store = SqliteStore::open(&dir.path().join("data")).unwrap();
        // The first start records the key the (still empty) store is under.
        assert_eq!(reindex(&store, &old).unwrap(), None);
        let records = hrss_records(&old);
        let total = records.len() as u64;
        commit(&store, "b1", records);
        assert_eq!(person_rows(&store, &old), 4);
        assert_eq!(reindex(&store, &old).unwrap(), None);

        // A crash after the second chunk of three rows…
        let mut chunks = 0;
        let stopped = reindex_with(&store, &new, None, 3, &mut |_| {
            chunks += 1;
            chunks < 2
        });
        assert!(matches!(stopped, Err(RotationError::Interrupted)));
        let progress: ReindexProgress =
            serde_json::from_str(&store.meta_get(RECORDS_REINDEX).unwrap().unwrap()).unwrap();
        assert_eq!((progress.through, progress.records), (6, 6));
        assert_eq!(
            store.meta_get(RECORDS_INDEX_KEY).unwrap().as_deref(),
            Some("idx-1")
        );
        // …and the next run carries on from there.
        let done = reindex(&store, &new).unwrap().unwrap();
        assert_eq!(
            done,
            Reindexed {
                old_key_id: "idx-1".into(),
                new_key_id: "idx-2".into(),
                records: total,
                merged: 0,
            }
        );
        assert_eq!(person_rows(&store, &new), 4);
        assert_eq!(person_rows(&store, &old), 0);
        assert_eq!(store.feed_head().unwrap(), total, "feed positions kept");
        assert_eq!(reindex(&store, &new).unwrap(), None);
        let starts: Vec<Value> = entries(&store, "records_reindex_started")
            .into_iter()
            .map(|e| e.details)
            .collect();
        assert_eq!(starts.len(), 2);
        let resumed = format!("{:?}", starts[1]);
        assert!(resumed.contains("resume_after_seq") && resumed.contains('6'));
        assert_eq!(entries(&store, "records_reindexed").len(), 1);
        // Every row opens, under its new record key.
        for row in store
            .read_feed(&adapters::RecordKind::ALL, 0, 1000)
            .unwrap()
        {
            new.open(&record_aad(row.kind, &row.key_hash), &row.sealed)
                .unwrap();
        }
    }

    #[test]
    fn rows_pushed_again_before_a_reindex_are_merged_newest_first() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = keys_and_rotated(dir.path(), "index", "idx-1", "idx-2");
        let store = SqliteStore::open(&dir.path().join("data")).unwrap();
        reindex(&store, &old).unwrap();
        commit(&store, "b1", hrss_records(&old));
        let rows = store.feed_head().unwrap();
        // The same rows again under the new key, as a gateway without
        // re-indexing stored them: each record twice.
        commit(&store, "b2", hrss_records(&new));
        let done = reindex(&store, &new).unwrap().unwrap();
        assert_eq!(done.merged, done.records);
        assert_eq!(person_rows(&store, &new), 4);
        let left = store
            .read_feed(&adapters::RecordKind::ALL, 0, 1000)
            .unwrap();
        assert!(left.iter().all(|r| r.seq > rows), "the newer versions stay");
    }

    #[test]
    fn pseudonym_domains_keep_their_key_and_new_ones_take_the_active_key() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = keys_and_rotated(dir.path(), "pseudonym", "psn-1", "psn-2");
        let store = SqliteStore::open(&dir.path().join("data")).unwrap();
        prepare(&store, &old, &["assistance"]).unwrap();
        let before = old.pseudonym_secret_for("assistance").to_vec();
        let auditors = old.pseudonym_secret_for(AUDIT_DOMAIN).to_vec();

        prepare(&store, &new, &["assistance", "newcomer"]).unwrap();
        assert_eq!(new.pseudonym_secret_for("assistance"), before);
        assert_eq!(new.pseudonym_secret_for(AUDIT_DOMAIN), auditors);
        assert_eq!(new.pseudonym_binding("newcomer"), Some("psn-2"));
        assert_ne!(new.pseudonym_secret_for("newcomer"), before);
        assert_eq!(entries(&store, "key_rotated").len(), 1);

        // A bound key taken out of the key file: the start fails, naming it.
        let path = dir.path().join("keys.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let start = text.find("[[pseudonym]]\nid = \"psn-1\"").unwrap();
        let end = start + text[start..].find("\n\n").unwrap_or(text.len() - start);
        std::fs::write(&path, format!("{}{}", &text[..start], &text[end..])).unwrap();
        let without = Keys::load(&path, false).unwrap();
        let err = prepare(&store, &without, &["assistance"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("is bound to pseudonym key `psn-1`"), "{err}");
    }

    #[test]
    fn a_store_from_before_bindings_keeps_the_pseudonyms_of_its_last_start() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = keys_and_rotated(dir.path(), "pseudonym", "psn-1", "psn-2");
        let store = SqliteStore::open(&dir.path().join("data")).unwrap();
        // What the previous version left: the active ids, no bindings.
        store
            .meta_set(
                ACTIVE_KEY_IDS,
                "encryption=enc-1,index=idx-1,pseudonym=psn-1",
            )
            .unwrap();
        prepare(&store, &new, &["assistance"]).unwrap();
        assert_eq!(
            new.pseudonym_secret_for("assistance"),
            old.pseudonym_secret_for("assistance")
        );
        assert_eq!(new.pseudonym_binding(AUDIT_DOMAIN), Some("psn-1"));
    }

    #[test]
    fn repseudonymising_rebinds_one_consumer_and_never_the_auditors() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = keys_and_rotated(dir.path(), "pseudonym", "psn-1", "psn-2");
        let store = SqliteStore::open(&dir.path().join("data")).unwrap();
        let policies = policies::PolicySet::load_dir(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/shipped"),
        )
        .unwrap();
        let consumers: Vec<&str> = policies.consumers().collect();
        prepare(&store, &old, &consumers).unwrap();
        assert!(matches!(
            repseudonymise(&store, &new, &policies, AUDIT_DOMAIN),
            Err(RotationError::AuditDomain(_))
        ));
        assert!(matches!(
            repseudonymise(&store, &new, &policies, "nobody"),
            Err(RotationError::UnknownConsumer(_))
        ));
        assert_eq!(
            repseudonymise(&store, &new, &policies, "assistance").unwrap(),
            Some(("psn-1".into(), "psn-2".into()))
        );
        assert_eq!(
            repseudonymise(&store, &new, &policies, "assistance").unwrap(),
            None
        );
        let restarted = Keys::load(&dir.path().join("keys.toml"), false).unwrap();
        prepare(&store, &restarted, &consumers).unwrap();
        assert_eq!(restarted.pseudonym_binding("assistance"), Some("psn-2"));
        assert_eq!(restarted.pseudonym_binding("rights"), Some("psn-1"));
        assert_eq!(restarted.pseudonym_binding(AUDIT_DOMAIN), Some("psn-1"));
        assert_eq!(entries(&store, "consumer_repseudonymised").len(), 1);
    }
}
