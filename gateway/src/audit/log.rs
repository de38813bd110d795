//! Signed checkpoints of the audit log: the gateway's Ed25519 key (from the key
//! file) signs C2SP `tlog-checkpoint` notes every N entries or T seconds and on
//! demand, and refuses to sign a tree that is not an extension of its last
//! checkpoint — so a rewritten or truncated store is noticed by the gateway
//! itself, and by any officer holding an earlier checkpoint.

use crate::store::{Store, StoreError, StoredCheckpoint};
use serde::Deserialize;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// When checkpoints are signed (`[audit]` in the configuration).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CheckpointPolicy {
    /// Sign once this many entries were appended since the last checkpoint.
    /// Env: `GATEWAY_AUDIT_CHECKPOINT_ENTRIES`. Default 1000.
    pub checkpoint_every_entries: u64,
    /// Sign when the log grew and this many seconds passed since the last one.
    /// Env: `GATEWAY_AUDIT_CHECKPOINT_SECS`. Default 60.
    pub checkpoint_every_secs: u64,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        CheckpointPolicy {
            checkpoint_every_entries: 1000,
            checkpoint_every_secs: 60,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tree in the store does not extend the last signed checkpoint.
    #[error(
        "refusing to sign: the audit tree (size {size}) is not consistent with the last checkpoint (size {last_size})"
    )]
    Inconsistent { last_size: u64, size: u64 },
    #[error("cannot sign the checkpoint: {0}")]
    Sign(#[from] tlog::CheckpointError),
}

/// The audit log's signing side.
pub struct AuditLog {
    store: Arc<dyn Store>,
    signer: tlog::Signer,
    policy: CheckpointPolicy,
    /// One signer at a time, so two checkpoints never race.
    signing: Mutex<()>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.signer.name())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// The log's origin (and key name) for a trust domain.
pub fn origin(trust_domain: &str) -> String {
    format!("{trust_domain}/audit")
}

/// The verifier key string (`<origin>+<key id>+<base64 key>`) for a seed.
pub fn vkey(trust_domain: &str, seed: [u8; 32]) -> Result<String, tlog::KeyError> {
    Ok(tlog::Signer::from_seed(&origin(trust_domain), seed)?
        .verifier()
        .to_string())
}

impl AuditLog {
    /// `seed` is the Ed25519 seed from the key file.
    pub fn new(
        store: Arc<dyn Store>,
        trust_domain: &str,
        seed: [u8; 32],
        policy: CheckpointPolicy,
    ) -> Result<AuditLog, tlog::KeyError> {
        Ok(AuditLog {
            store,
            signer: tlog::Signer::from_seed(&origin(trust_domain), seed)?,
            policy,
            signing: Mutex::new(()),
        })
    }

    pub fn set_policy(&mut self, policy: CheckpointPolicy) {
        self.policy = policy;
    }

    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// The verifier officers pin.
    pub fn verifier(&self) -> tlog::Verifier {
        self.signer.verifier()
    }

    /// The public key as a C2SP verifier key string (`name+id+base64`).
    pub fn vkey(&self) -> String {
        self.verifier().to_string()
    }

    /// A checkpoint covering the whole current tree: the latest one if the log
    /// has not grown since, otherwise a new one, signed only after checking that
    /// the tree is consistent with the last checkpoint. Blocking.
    pub fn checkpoint_now(&self) -> Result<StoredCheckpoint, LogError> {
        let _one = self.signing.lock().unwrap_or_else(|p| p.into_inner());
        let size = self.store.audit_size()?;
        let last = self.store.latest_checkpoint()?;
        if let Some(last) = &last {
            if last.size == size {
                // Same size: the root must not have changed either.
                if self.store.audit_root(size)? != last.root {
                    return Err(self.inconsistent(last.size, size));
                }
                return Ok(last.clone());
            }
            if last.size > size {
                return Err(self.inconsistent(last.size, size));
            }
        }
        let root = self.store.audit_root(size)?;
        if let Some(last) = &last
            && last.size > 0
        {
            let proof = self.store.audit_consistency_proof(last.size, size)?;
            if tlog::verify_consistency(last.size, size, &last.root, &root, &proof).is_err() {
                return Err(self.inconsistent(last.size, size));
            }
        }
        let note =
            tlog::Checkpoint::new(self.origin(), size, root, Vec::new())?.sign(&[&self.signer])?;
        let cp = StoredCheckpoint {
            size,
            root,
            note,
            signed_ms: super::now_ms(),
        };
        self.store.save_checkpoint(&cp)?;
        tracing::info!(size, "audit checkpoint signed");
        Ok(cp)
    }

    fn inconsistent(&self, last_size: u64, size: u64) -> LogError {
        tracing::error!(
            last_size,
            size,
            "the audit tree does not extend the last signed checkpoint: refusing to sign (tampering or data loss?)"
        );
        LogError::Inconsistent { last_size, size }
    }

    /// Whether the policy asks for a checkpoint now.
    fn due(&self, now_ms: i64) -> Result<bool, StoreError> {
        let size = self.store.audit_size()?;
        Ok(match self.store.latest_checkpoint()? {
            None => size > 0,
            Some(last) if size <= last.size => false,
            Some(last) => {
                size - last.size >= self.policy.checkpoint_every_entries.max(1)
                    || now_ms - last.signed_ms
                        >= (self.policy.checkpoint_every_secs as i64).saturating_mul(1000)
            }
        })
    }

    /// Runs until the task is aborted: checks once a second whether a
    /// checkpoint is due.
    pub async fn run_checkpointer(self: Arc<Self>) {
        let tick = Duration::from_secs(1);
        loop {
            tokio::time::sleep(tick).await;
            let log = self.clone();
            let result = tokio::task::spawn_blocking(move || {
                if log.due(super::now_ms())? {
                    log.checkpoint_now().map(Some)
                } else {
                    Ok(None)
                }
            })
            .await;
            match result {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::error!(error = %e, "audit checkpoint failed"),
                Err(_) => tracing::error!("audit checkpoint task failed"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditEntry, Value};
    use crate::store::sqlite::SqliteStore;

    fn entries(n: u64) -> Vec<AuditEntry> {
        (0..n)
            .map(|i| AuditEntry {
                at_ms: i as i64,
                actor: "gateway".into(),
                action: "test".into(),
                outcome: "ok".into(),
                kinds: vec![],
                subjects: vec![],
                details: Value::U64(i),
                note: None,
            })
            .collect()
    }

    fn log(dir: &std::path::Path, policy: CheckpointPolicy) -> (Arc<dyn Store>, Arc<AuditLog>) {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir).unwrap());
        let log = AuditLog::new(store.clone(), "exchange.wuhu.example", [5; 32], policy).unwrap();
        (store, Arc::new(log))
    }

    #[tokio::test]
    async fn the_checkpointer_signs_after_n_entries() {
        let dir = tempfile::tempdir().unwrap();
        let policy = CheckpointPolicy {
            checkpoint_every_entries: 3,
            checkpoint_every_secs: 3600,
        };
        let (store, log) = log(dir.path(), policy);
        let task = tokio::spawn(log.clone().run_checkpointer());
        store.append_audit(&entries(2)).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // The first checkpoint is due as soon as the log is not empty.
        let first = store.latest_checkpoint().unwrap().unwrap();
        assert_eq!(first.size, 2);
        store.append_audit(&entries(1)).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(
            store.latest_checkpoint().unwrap().unwrap().size,
            2,
            "not yet due"
        );
        store.append_audit(&entries(2)).unwrap();
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let second = store.latest_checkpoint().unwrap().unwrap();
        assert_eq!(second.size, 5);
        task.abort();
        let (cp, _) = tlog::Checkpoint::open(second.note.as_bytes(), &[log.verifier()]).unwrap();
        assert_eq!(cp.origin(), "exchange.wuhu.example/audit");
        assert_eq!(*cp.root(), store.audit_root(5).unwrap());
    }

    #[test]
    fn it_refuses_to_sign_a_tree_that_does_not_extend_its_last_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        let (store, log) = log(dir.path(), CheckpointPolicy::default());
        store.append_audit(&entries(4)).unwrap();
        let first = log.checkpoint_now().unwrap();
        assert_eq!(first.size, 4);
        // Same size, same tree: the same checkpoint.
        assert_eq!(log.checkpoint_now().unwrap(), first);
        // A forged "last checkpoint" with another root at a smaller size.
        store
            .save_checkpoint(&StoredCheckpoint {
                size: 6,
                root: [1; 32],
                note: String::new(),
                signed_ms: 0,
            })
            .unwrap();
        store.append_audit(&entries(3)).unwrap();
        assert!(matches!(
            log.checkpoint_now(),
            Err(LogError::Inconsistent {
                last_size: 6,
                size: 7
            })
        ));
    }
}
