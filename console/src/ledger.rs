//! The checkpoints this console has seen, kept in a local state file so that
//! what the officer was shown yesterday binds what the gateway may show
//! today. Every signed checkpoint the console receives (for the overview, an
//! entry's inclusion proof, a person's report) passes through [`Ledger::observe`]:
//! its signature is checked with the pinned key (never the copy the gateway
//! sends along), and it is proved consistent with the latest checkpoint seen
//! before it is remembered. A failed proof is recorded in the file too, so
//! the warning survives a restart of the console.

use crate::i18n::Msg;
use crate::upstream::{Upstream, UpstreamError, hashes};
use gateway::proto;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use tokio::sync::Mutex;

/// Checkpoints kept in the state file (the oldest are dropped beyond this).
const KEPT_CHECKPOINTS: usize = 500;
/// Failures kept in the state file.
const KEPT_FAILURES: usize = 50;

/// A checkpoint as remembered: its signed note and what it says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SeenCheckpoint {
    pub size: u64,
    /// Root hash, hex.
    pub root: String,
    pub note: String,
    pub first_seen_ms: i64,
}

impl SeenCheckpoint {
    pub fn root_hash(&self) -> Option<tlog::Hash> {
        hex::decode(&self.root).ok()?.try_into().ok()
    }
}

/// A verification that failed, as recorded.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub at_ms: i64,
    pub what: Msg,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StateFile {
    version: u32,
    checkpoints: Vec<SeenCheckpoint>,
    failures: Vec<Failure>,
}

/// Why the state file could not be read at start-up.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read the console's state file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the console's state file {path} is not valid: {source}")]
    Parse {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// The outcome of one check, with the sentence that explains it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Verified(Msg),
    Failed(Msg),
    /// Neither: trust on first use, or the gateway could not be asked.
    Info(Msg),
}

impl Verdict {
    /// The `data-state` of the mark on the page.
    pub fn state(&self) -> &'static str {
        match self {
            Verdict::Verified(_) => "verified",
            Verdict::Failed(_) => "failed",
            Verdict::Info(_) => "info",
        }
    }

    pub fn msg(&self) -> &Msg {
        match self {
            Verdict::Verified(m) | Verdict::Failed(m) | Verdict::Info(m) => m,
        }
    }

    pub fn is_failed(&self) -> bool {
        matches!(self, Verdict::Failed(_))
    }
}

/// A signed checkpoint received from the gateway, as checked.
#[derive(Debug, Clone)]
pub struct Observation {
    /// The checkpoint, when its signature verified with the pinned key.
    pub checkpoint: Option<tlog::Checkpoint>,
    pub note: String,
    pub signature: Verdict,
    pub consistency: Verdict,
    /// The key the gateway sent along is not the pinned one.
    pub key_differs: bool,
}

impl Observation {
    /// Signature and consistency both verified (or first use).
    pub fn trusted(&self) -> Option<&tlog::Checkpoint> {
        match (&self.signature, &self.consistency) {
            (Verdict::Verified(_), Verdict::Verified(_) | Verdict::Info(_)) => {
                self.checkpoint.as_ref()
            }
            _ => None,
        }
    }
}

pub struct Ledger {
    path: PathBuf,
    key: tlog::Verifier,
    state: Mutex<StateFile>,
    /// The last error writing the state file, shown as a warning.
    write_error: std::sync::Mutex<Option<String>>,
}

pub fn now_ms() -> i64 {
    gateway::audit::now_ms()
}

impl Ledger {
    /// Reads the state file (a missing file is an empty history).
    pub fn load(path: &Path, key: tlog::Verifier) -> Result<Ledger, StateError> {
        let state = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| StateError::Parse {
                path: path.to_path_buf(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => StateFile {
                version: 1,
                ..Default::default()
            },
            Err(source) => {
                return Err(StateError::Read {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        Ok(Ledger {
            path: path.to_path_buf(),
            key,
            state: Mutex::new(state),
            write_error: std::sync::Mutex::new(None),
        })
    }

    pub fn key(&self) -> &tlog::Verifier {
        &self.key
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens a signed note with the pinned key.
    pub fn open(&self, note: &str) -> Result<tlog::Checkpoint, Msg> {
        tlog::Checkpoint::open(note.as_bytes(), std::slice::from_ref(&self.key))
            .map(|(c, _)| c)
            .map_err(|e| Msg::SignatureFailed(e.to_string()))
    }

    /// Checks a checkpoint the gateway sent and, if it extends the latest
    /// one seen, remembers it.
    pub async fn observe(&self, up: &Upstream, cp: &proto::SignedCheckpoint) -> Observation {
        let key_differs = !cp.vkey.is_empty() && cp.vkey.trim() != self.key.to_string();
        let checkpoint = match self.open(&cp.note) {
            Ok(c) => c,
            Err(m) => {
                let mut state = self.state.lock().await;
                self.fail(&mut state, m.clone());
                return Observation {
                    checkpoint: None,
                    note: cp.note.clone(),
                    signature: Verdict::Failed(m),
                    consistency: Verdict::Info(Msg::NotChecked),
                    key_differs,
                };
            }
        };
        let signature = Verdict::Verified(Msg::SignatureOk);
        let mut state = self.state.lock().await;
        let latest = state.checkpoints.last().cloned();
        let size = checkpoint.size();
        let root = *checkpoint.root();
        let remember = |state: &mut StateFile| {
            state.checkpoints.push(SeenCheckpoint {
                size,
                root: hex::encode(root),
                note: cp.note.clone(),
                first_seen_ms: now_ms(),
            });
            let excess = state.checkpoints.len().saturating_sub(KEPT_CHECKPOINTS);
            state.checkpoints.drain(..excess);
        };
        let consistency = match latest {
            None => {
                remember(&mut state);
                Verdict::Info(Msg::FirstCheckpoint { size })
            }
            Some(last) if last.size == 0 => {
                remember(&mut state);
                Verdict::Info(Msg::FirstCheckpoint { size })
            }
            Some(last) if last.size == size => {
                if last.root_hash() == Some(root) {
                    Verdict::Verified(Msg::Unchanged { size })
                } else {
                    let m = Msg::ConsistencyFailed {
                        from: last.size,
                        to: size,
                        why: "same size, different root".into(),
                    };
                    self.fail(&mut state, m.clone());
                    Verdict::Failed(m)
                }
            }
            Some(last) if size > last.size => {
                match prove(up, last.size, size, last.root_hash(), root).await {
                    Ok(()) => {
                        remember(&mut state);
                        Verdict::Verified(Msg::ConsistentFrom {
                            from: last.size,
                            to: size,
                        })
                    }
                    Err(Proved::Unreachable(m)) => Verdict::Info(m),
                    Err(Proved::Failed(m)) => {
                        self.fail(&mut state, m.clone());
                        Verdict::Failed(m)
                    }
                }
            }
            Some(last) => {
                // An older checkpoint than one already seen (answers that
                // crossed): it must be a prefix of the latest.
                if size == 0 {
                    Verdict::Info(Msg::Older {
                        size,
                        latest: last.size,
                    })
                } else {
                    match prove(
                        up,
                        size,
                        last.size,
                        Some(root),
                        last.root_hash().unwrap_or_default(),
                    )
                    .await
                    {
                        Ok(()) => Verdict::Verified(Msg::Older {
                            size,
                            latest: last.size,
                        }),
                        Err(Proved::Unreachable(m)) => Verdict::Info(m),
                        Err(Proved::Failed(m)) => {
                            self.fail(&mut state, m.clone());
                            Verdict::Failed(m)
                        }
                    }
                }
            }
        };
        self.save(&state);
        Observation {
            checkpoint: Some(checkpoint),
            note: cp.note.clone(),
            signature,
            consistency,
            key_differs,
        }
    }

    fn fail(&self, state: &mut StateFile, what: Msg) {
        tracing::warn!(failure = ?what, "audit log verification failed");
        state.failures.push(Failure {
            at_ms: now_ms(),
            what,
        });
        let excess = state.failures.len().saturating_sub(KEPT_FAILURES);
        state.failures.drain(..excess);
        self.save(state);
    }

    /// Writes the state under a temporary name, then renames it.
    fn save(&self, state: &StateFile) {
        let result = (|| -> std::io::Result<()> {
            if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            let tmp = self.path.with_extension("tmp");
            std::fs::write(&tmp, serde_json::to_vec_pretty(state)?)?;
            std::fs::rename(&tmp, &self.path)
        })();
        let mut slot = self.write_error.lock().unwrap_or_else(|p| p.into_inner());
        match result {
            Ok(()) => *slot = None,
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "cannot write the console's state file");
                *slot = Some(e.to_string());
            }
        }
    }

    pub fn write_error(&self) -> Option<String> {
        self.write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The checkpoints seen, oldest first.
    pub async fn history(&self) -> Vec<SeenCheckpoint> {
        self.state.lock().await.checkpoints.clone()
    }

    /// Recorded failures, oldest first.
    pub async fn failures(&self) -> Vec<Failure> {
        self.state.lock().await.failures.clone()
    }

    /// The latest checkpoint seen.
    pub async fn latest(&self) -> Option<SeenCheckpoint> {
        self.state.lock().await.checkpoints.last().cloned()
    }
}

enum Proved {
    Unreachable(Msg),
    Failed(Msg),
}

/// Asks the gateway for a consistency proof between two trees and checks it
/// against their roots.
async fn prove(
    up: &Upstream,
    from: u64,
    to: u64,
    from_root: Option<tlog::Hash>,
    to_root: tlog::Hash,
) -> Result<(), Proved> {
    let failed = |why: String| Proved::Failed(Msg::ConsistencyFailed { from, to, why });
    let from_root = from_root.ok_or_else(|| failed("the saved root is not a hash".into()))?;
    let proof = match up.consistency(from, to).await {
        Ok(p) => p,
        Err(e @ UpstreamError::Connect { .. }) => {
            return Err(Proved::Unreachable(Msg::Gateway(e.to_string())));
        }
        Err(e) => return Err(failed(e.to_string())),
    };
    if proof.from_size != from || proof.to_size != to {
        return Err(failed(format!(
            "the gateway proved {} → {} instead",
            proof.from_size, proof.to_size
        )));
    }
    let hashes = hashes(&proof.hashes).ok_or_else(|| failed("malformed proof".into()))?;
    tlog::verify_consistency(from, to, &from_root, &to_root, &hashes)
        .map_err(|e| failed(e.to_string()))
}

/// Re-verifies the consistency between two remembered checkpoints (the
/// checkpoints page).
pub async fn reprove(up: &Upstream, older: &SeenCheckpoint, newer: &SeenCheckpoint) -> Verdict {
    if older.size == 0 {
        return Verdict::Info(Msg::FirstCheckpoint { size: newer.size });
    }
    if older.size == newer.size {
        return if older.root == newer.root {
            Verdict::Verified(Msg::Unchanged { size: newer.size })
        } else {
            Verdict::Failed(Msg::ConsistencyFailed {
                from: older.size,
                to: newer.size,
                why: "same size, different root".into(),
            })
        };
    }
    let Some(to_root) = newer.root_hash() else {
        return Verdict::Failed(Msg::ConsistencyFailed {
            from: older.size,
            to: newer.size,
            why: "the saved root is not a hash".into(),
        });
    };
    match prove(up, older.size, newer.size, older.root_hash(), to_root).await {
        Ok(()) => Verdict::Verified(Msg::ProvedConsistent {
            from: older.size,
            to: newer.size,
        }),
        Err(Proved::Unreachable(m)) => Verdict::Info(m),
        Err(Proved::Failed(m)) => Verdict::Failed(m),
    }
}
