//! Export files and their offline verification: what a compliance officer
//! runs with nothing but the export and the log's pinned public key. The
//! verifier recomputes every leaf from the canonical entries and the Merkle
//! root, checks the checkpoint's signature and root (and, if given, that the
//! log extends an earlier checkpoint), and names the first entry that was
//! altered, dropped or reordered. It reads untrusted input, so it never
//! panics on it and keeps O(log n) memory whatever the export's size.

use super::encoding::CanonicalEntry;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::io::BufRead;

/// `format` of an export's header line.
pub const FORMAT: &str = "exchange.v1/audit-export";

/// The first line of an export file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The signed checkpoint (C2SP signed note) covering every leaf that follows.
    pub checkpoint: String,
}

/// One leaf line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Line {
    pub seq: u64,
    /// Hex of the leaf hash the gateway's tree holds.
    pub leaf_hash: String,
    /// Base64 of the canonical entry; `None` when the gateway no longer holds it.
    pub entry: Option<String>,
}

pub fn header_line(checkpoint_note: &str) -> String {
    serde_json::to_string(&Header {
        format: FORMAT.into(),
        version: 1,
        checkpoint: checkpoint_note.into(),
    })
    .expect("header serialises")
}

pub fn leaf_line(seq: u64, leaf_hash: &[u8], entry: Option<&[u8]>) -> String {
    serde_json::to_string(&Line {
        seq,
        leaf_hash: hex::encode(leaf_hash),
        entry: entry.map(|e| B64.encode(e)),
    })
    .expect("line serialises")
}

/// Why an export did not verify. The variants that name an entry name the
/// first one (in log order) found to be wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("cannot read the export: {0}")]
    Io(String),
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("the checkpoint is not valid: {0}")]
    Checkpoint(String),
    #[error("the earlier checkpoint is not valid: {0}")]
    EarlierCheckpoint(String),
    #[error("entry {seq} was altered: its bytes do not hash to the leaf the signed tree holds")]
    Altered { seq: u64 },
    #[error("entry {seq} was dropped")]
    Dropped { seq: u64 },
    #[error("entry {seq} was reordered: entry {found} stands in its place")]
    Reordered { seq: u64, found: u64 },
    #[error(
        "entry {seq}: the back-pointer of a subject is {found}, but its previous entry is {expected}"
    )]
    BackPointer { seq: u64, expected: u64, found: u64 },
    #[error(
        "the export holds {found} entries but the checkpoint covers {expected}: the log was truncated or extended"
    )]
    Count { expected: u64, found: u64 },
    #[error(
        "the entries do not hash to the checkpoint's root: an entry and its leaf hash were both altered, or the checkpoint belongs to another log"
    )]
    RootMismatch,
    #[error(
        "the log is not an extension of the earlier checkpoint (size {size}): history before entry {size} was rewritten"
    )]
    NotExtension { size: u64 },
}

/// What a verified export contains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub origin: String,
    pub size: u64,
    pub root: tlog::Hash,
    /// Size of the earlier checkpoint the log was shown to extend.
    pub extends: Option<u64>,
}

/// MTH computed leaf by leaf with O(log n) memory (RFC 9162 §2.1.1).
#[derive(Default)]
pub struct RootBuilder {
    stack: Vec<(u32, tlog::Hash)>,
}

impl RootBuilder {
    pub fn push(&mut self, leaf: tlog::Hash) {
        let mut node = (0u32, leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, tlog::node_hash(&left, &node.1));
        }
        self.stack.push(node);
    }

    pub fn root(&self) -> tlog::Hash {
        let mut iter = self.stack.iter().rev();
        let Some(&(_, mut acc)) = iter.next() else {
            return tlog::EMPTY_ROOT;
        };
        for (_, left) in iter {
            acc = tlog::node_hash(left, &acc);
        }
        acc
    }
}

/// Verifies an export against the pinned `verifier` and, optionally, an
/// earlier signed checkpoint the officer kept.
pub fn verify(
    input: impl BufRead,
    verifier: &tlog::Verifier,
    earlier: Option<&str>,
) -> Result<Verified, VerifyFailure> {
    let mut lines = input.lines();
    let io = |e: std::io::Error| VerifyFailure::Io(e.to_string());
    let header = lines
        .next()
        .ok_or(VerifyFailure::Malformed {
            line: 1,
            message: "empty file".into(),
        })?
        .map_err(io)?;
    let header: Header = serde_json::from_str(&header).map_err(|e| VerifyFailure::Malformed {
        line: 1,
        message: format!("not an export header: {e}"),
    })?;
    if header.format != FORMAT || header.version != 1 {
        return Err(VerifyFailure::Malformed {
            line: 1,
            message: format!("unknown format {} v{}", header.format, header.version),
        });
    }
    let (cp, _) =
        tlog::Checkpoint::open(header.checkpoint.as_bytes(), std::slice::from_ref(verifier))
            .map_err(|e| VerifyFailure::Checkpoint(e.to_string()))?;
    let earlier = match earlier {
        None => None,
        Some(note) => {
            let (e, _) = tlog::Checkpoint::open(note.as_bytes(), std::slice::from_ref(verifier))
                .map_err(|e| VerifyFailure::EarlierCheckpoint(e.to_string()))?;
            if e.origin() != cp.origin() {
                return Err(VerifyFailure::EarlierCheckpoint(format!(
                    "it is for log {}, not {}",
                    e.origin(),
                    cp.origin()
                )));
            }
            if e.size() > cp.size() {
                return Err(VerifyFailure::NotExtension { size: e.size() });
            }
            Some(e)
        }
    };

    let mut computed = RootBuilder::default();
    let mut listed = RootBuilder::default();
    let mut problem: Option<VerifyFailure> = None;
    let mut last_of: HashMap<String, u64> = HashMap::new();
    let mut earlier_root = None;
    // A line further on than expected means entry `gap` is dropped — unless
    // it shows up later, which makes it reordered.
    let mut gap: Option<(u64, u64)> = None;
    let mut n = 0u64;
    for (i, line) in lines.enumerate() {
        let line = line.map_err(io)?;
        if line.is_empty() {
            continue;
        }
        let line_no = i as u64 + 2;
        let malformed = |message: String| VerifyFailure::Malformed {
            line: line_no,
            message,
        };
        let l: Line = serde_json::from_str(&line).map_err(|e| malformed(e.to_string()))?;
        let listed_hash: tlog::Hash = hex::decode(&l.leaf_hash)
            .ok()
            .and_then(|h| h.try_into().ok())
            .ok_or_else(|| malformed("leaf_hash is not 32 bytes of hex".into()))?;
        let expected = n + 1;
        listed.push(listed_hash);
        if let Some((missing, first_found)) = gap
            && l.seq == missing
            && problem == Some(VerifyFailure::Dropped { seq: missing })
        {
            problem = Some(VerifyFailure::Reordered {
                seq: missing,
                found: first_found,
            });
            gap = None;
        }
        let mut found = |p: VerifyFailure| {
            if problem.is_none() {
                problem = Some(p);
            }
        };
        if l.seq != expected {
            if l.seq > expected {
                if gap.is_none() {
                    gap = Some((expected, l.seq));
                }
                found(VerifyFailure::Dropped { seq: expected });
            } else {
                found(VerifyFailure::Reordered {
                    seq: expected,
                    found: l.seq,
                });
            }
        }
        match &l.entry {
            None => {
                // The leaf is known, the entry is not: the tree still verifies
                // through the listed hash, but the entry is gone.
                computed.push([0; 32]);
                found(VerifyFailure::Dropped { seq: expected });
            }
            Some(b64) => {
                let bytes = B64
                    .decode(b64)
                    .map_err(|_| malformed("entry is not base64".into()))?;
                let leaf = tlog::leaf_hash(&bytes);
                computed.push(leaf);
                match CanonicalEntry::decode(&bytes) {
                    Err(_) => found(VerifyFailure::Altered { seq: expected }),
                    Ok(e) if e.seq != expected => found(VerifyFailure::Reordered {
                        seq: expected,
                        found: e.seq,
                    }),
                    Ok(_) if leaf != listed_hash => found(VerifyFailure::Altered { seq: expected }),
                    Ok(e) => {
                        for s in &e.subjects {
                            let prev = last_of.insert(s.token.clone(), e.seq).unwrap_or(0);
                            if s.prev_seq != prev {
                                found(VerifyFailure::BackPointer {
                                    seq: e.seq,
                                    expected: prev,
                                    found: s.prev_seq,
                                });
                            }
                        }
                    }
                }
            }
        }
        n += 1;
        if earlier.as_ref().is_some_and(|e| e.size() == n) {
            earlier_root = Some(computed.root());
        }
    }
    if computed.root() == *cp.root() && n == cp.size() {
        // Every entry is authentic; only the gateway itself could have written
        // a wrong back-pointer.
        if let Some(p @ VerifyFailure::BackPointer { .. }) = problem {
            return Err(p);
        }
    } else {
        if let Some(p) = problem {
            return Err(p);
        }
        if n != cp.size() {
            return Err(VerifyFailure::Count {
                expected: cp.size(),
                found: n,
            });
        }
        return Err(VerifyFailure::RootMismatch);
    }
    let extends = match earlier {
        None => None,
        Some(e) if e.size() == 0 => Some(0),
        Some(e) => {
            if earlier_root != Some(*e.root()) {
                return Err(VerifyFailure::NotExtension { size: e.size() });
            }
            Some(e.size())
        }
    };
    Ok(Verified {
        origin: cp.origin().to_string(),
        size: cp.size(),
        root: *cp.root(),
        extends,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_builder_matches_the_reference_tree() {
        let mut tree = tlog::MemoryTree::new();
        let mut b = RootBuilder::default();
        assert_eq!(b.root(), tlog::EMPTY_ROOT);
        for i in 0..70u32 {
            let entry = i.to_be_bytes();
            tree.append_entry(&entry);
            b.push(tlog::leaf_hash(&entry));
            assert_eq!(b.root(), tree.root(), "size {}", i + 1);
        }
    }
}
