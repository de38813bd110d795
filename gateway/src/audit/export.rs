//! Export files and their offline verification: what a compliance officer
//! runs with nothing but the export and the log's pinned public key. The
//! verifier recomputes every leaf from the canonical entries and the Merkle
//! root, checks the checkpoint's signature and root (and, if given, that the
//! log extends an earlier checkpoint), and names the first entry that was
//! altered, dropped or reordered.
//!
//! "OK" must mean that everything the file says is true, not only that the
//! signed tree can be rebuilt from it: a line whose stated `seq` or
//! `leaf_hash` disagrees with its entry, a seq stated twice or skipped, a
//! member the format does not have, or an entry emptied are each refused,
//! naming the line (its number in the file and the seq it stands for). It
//! reads untrusted input, so it never panics on it, bounds the length of a
//! line, and otherwise keeps O(log n) memory whatever the export's size
//! (plus each subject's latest entry, for the back-pointers).

use super::encoding::{CanonicalEntry, DecodeError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::Serialize;
use std::collections::HashMap;
use std::io::BufRead;

/// `format` of an export's header line.
pub const FORMAT: &str = "exchange.v1/audit-export";

/// The longest line the verifier reads, in bytes. Far above any entry the
/// gateway writes (a delivery naming 4,096 persons is a few hundred KiB),
/// and it keeps a hostile file from making the verifier allocate without end.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// The first line of an export file.
#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub format: String,
    pub version: u32,
    /// The signed checkpoint (C2SP signed note) covering every leaf that follows.
    pub checkpoint: String,
}

/// One leaf line.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub seq: u64,
    /// Hex of the leaf hash the gateway's tree holds.
    pub leaf_hash: String,
    /// Base64 of the canonical entry; `None` when the gateway no longer holds it.
    pub entry: Option<String>,
}

/// The members of a header line, in the order [`header_line`] writes them.
const HEADER_MEMBERS: [&str; 3] = ["format", "version", "checkpoint"];
/// The members of a leaf line, in the order [`leaf_line`] writes them.
const LINE_MEMBERS: [&str; 3] = ["seq", "leaf_hash", "entry"];

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

/// " (the header)" or " (seq N)": which line of the log a line of the file is.
fn of(seq: &Option<u64>) -> String {
    match seq {
        None => " (the header)".into(),
        Some(s) => format!(" (seq {s})"),
    }
}

/// Why an export did not verify. A problem with a line names its number in
/// the file (the header is line 1, entry `seq` is on line `seq + 1`) and the
/// seq of the entry that belongs there; when several lines are wrong, the
/// first one (in file order) is named.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyFailure {
    #[error("cannot read the export: {0}")]
    Io(String),
    #[error("line 1: the export is empty, it has no header")]
    Empty,
    #[error("line {line}: longer than {limit} bytes")]
    LineTooLong { line: u64, limit: usize },
    /// Not one JSON object (or not UTF-8, or blank).
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    /// `seq` is `None` on the header.
    #[error("line {line}{}: unknown field `{field}`", of(.seq))]
    UnknownField {
        line: u64,
        seq: Option<u64>,
        field: String,
    },
    #[error("line {line}{}: field `{field}` appears more than once", of(.seq))]
    DuplicateField {
        line: u64,
        seq: Option<u64>,
        field: String,
    },
    #[error("line {line}{}: field `{field}` is missing", of(.seq))]
    MissingField {
        line: u64,
        seq: Option<u64>,
        field: &'static str,
    },
    #[error("line {line}{}: `{field}` must be {expected}", of(.seq))]
    BadField {
        line: u64,
        seq: Option<u64>,
        field: &'static str,
        expected: &'static str,
    },
    #[error("line 1 (the header): unknown export format {format} version {version}")]
    UnknownFormat { format: String, version: u64 },
    #[error("the checkpoint is not valid: {0}")]
    Checkpoint(String),
    #[error("the earlier checkpoint is not valid: {0}")]
    EarlierCheckpoint(String),
    /// The line states seq `stated`, its entry's bytes hold `entry`, and the
    /// line stands where entry `seq` belongs. (An entry of another place
    /// under the seq of this one is [`VerifyFailure::Reordered`].)
    #[error("line {line} (seq {seq}): it states seq {stated}, but its entry is entry {entry}")]
    SeqMisstated {
        line: u64,
        seq: u64,
        stated: u64,
        entry: u64,
    },
    /// The `leaf_hash` a line states is not the hash of its entry's bytes,
    /// and the signed tree does not vouch for the stated hash either.
    #[error("line {line} (seq {seq}): the leaf_hash it states is not the hash of its entry")]
    LeafHashMisstated { line: u64, seq: u64 },
    /// The signed tree holds the leaf hash the line states, and the entry's
    /// bytes do not hash to it.
    #[error(
        "line {line}: entry {seq} was altered: its bytes do not hash to the leaf the signed tree holds"
    )]
    Altered { line: u64, seq: u64 },
    /// `"entry": null`: the line lists the leaf but not the entry (the
    /// gateway's store no longer holds it).
    #[error("line {line}: entry {seq} is missing: the line lists its leaf hash but not the entry")]
    EntryMissing { line: u64, seq: u64 },
    /// No line holds entry `seq`; the line where it belongs holds `found`.
    #[error("line {line}: entry {seq} was dropped: no line holds it, this one holds entry {found}")]
    Dropped { line: u64, seq: u64, found: u64 },
    /// Entry `found` (a line, or an entry under this line's seq and leaf
    /// hash) stands where entry `seq` belongs.
    #[error("line {line}: entry {seq} was reordered: entry {found} stands in its place")]
    Reordered { line: u64, seq: u64, found: u64 },
    /// A seq stated a second time (first on `first_line`).
    #[error("line {line} (seq {seq}): seq {stated} again, as on line {first_line}")]
    DuplicateSeq {
        line: u64,
        seq: u64,
        stated: u64,
        first_line: u64,
    },
    /// The bytes hash to the stated leaf but are not a canonical entry.
    #[error("line {line}: entry {seq} is not a canonical entry: {error}")]
    NotCanonical {
        line: u64,
        seq: u64,
        error: DecodeError,
    },
    #[error(
        "line {line}: entry {seq}: the back-pointer of a subject is {found}, but its previous entry is {expected}"
    )]
    BackPointer {
        line: u64,
        seq: u64,
        expected: u64,
        found: u64,
    },
    #[error("line {line}: entry {seq} is beyond the checkpoint, which covers {size} entries")]
    BeyondCheckpoint { line: u64, seq: u64, size: u64 },
    #[error(
        "the export holds {found} entries but the checkpoint covers {expected}: the entries after {found} were dropped"
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

/// The members of one JSON object in the order written, repeats included, so
/// that a repeated or unknown member is named instead of silently resolved.
struct Members(Vec<(String, serde_json::Value)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Members, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry::<String, serde_json::Value>()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// One line of the file as a JSON object holding exactly the members
/// `names`, each once; returned in the order of `names`.
fn members<const N: usize>(
    bytes: &[u8],
    names: [&'static str; N],
    line: u64,
    seq: Option<u64>,
) -> Result<[serde_json::Value; N], VerifyFailure> {
    if bytes.is_empty() {
        return Err(VerifyFailure::Malformed {
            line,
            message: "an empty line".into(),
        });
    }
    let text = std::str::from_utf8(bytes).map_err(|_| VerifyFailure::Malformed {
        line,
        message: "not UTF-8".into(),
    })?;
    let Members(found) = serde_json::from_str(text).map_err(|e| VerifyFailure::Malformed {
        line,
        message: if e.is_data() {
            "not a JSON object".into()
        } else {
            format!("not valid JSON (column {})", e.column())
        },
    })?;
    let mut values: [Option<serde_json::Value>; N] = std::array::from_fn(|_| None);
    for (name, value) in found {
        let Some(i) = names.iter().position(|n| *n == name) else {
            return Err(VerifyFailure::UnknownField {
                line,
                seq,
                field: name,
            });
        };
        if values[i].replace(value).is_some() {
            return Err(VerifyFailure::DuplicateField {
                line,
                seq,
                field: name,
            });
        }
    }
    if let Some(i) = values.iter().position(Option::is_none) {
        return Err(VerifyFailure::MissingField {
            line,
            seq,
            field: names[i],
        });
    }
    Ok(values.map(|v| v.unwrap_or_default()))
}

/// Reads one line (without its `\n`, or `\r\n`) into `buf`, at most `limit`
/// bytes. `false` at the end of the file.
fn read_line<R: BufRead>(
    input: &mut R,
    buf: &mut Vec<u8>,
    line: u64,
    limit: usize,
) -> Result<bool, VerifyFailure> {
    buf.clear();
    let n = std::io::Read::take(input, limit as u64 + 1)
        .read_until(b'\n', buf)
        .map_err(|e| VerifyFailure::Io(e.to_string()))?;
    if n == 0 {
        return Ok(false);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
    }
    if buf.len() > limit {
        return Err(VerifyFailure::LineTooLong { line, limit });
    }
    Ok(true)
}

/// 64 lower-case hex digits, as [`leaf_line`] writes a leaf hash.
fn parse_leaf_hash(v: &serde_json::Value) -> Option<tlog::Hash> {
    let s = v.as_str()?;
    if s.len() != 2 * tlog::HASH_LEN || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    hex::decode(s).ok()?.try_into().ok()
}

/// What a leaf line states, each member of the right form.
struct Stated {
    seq: u64,
    leaf_hash: tlog::Hash,
    entry: Option<Vec<u8>>,
}

fn parse_line(bytes: &[u8], line: u64, position: u64) -> Result<Stated, VerifyFailure> {
    let at = Some(position);
    let [seq, leaf_hash, entry] = members(bytes, LINE_MEMBERS, line, at)?;
    let bad = |field, expected| VerifyFailure::BadField {
        line,
        seq: at,
        field,
        expected,
    };
    let seq = seq
        .as_u64()
        .filter(|s| *s > 0)
        .ok_or_else(|| bad("seq", "a positive integer"))?;
    let leaf_hash =
        parse_leaf_hash(&leaf_hash).ok_or_else(|| bad("leaf_hash", "64 lower-case hex digits"))?;
    const ENTRY: &str =
        "null (an entry the gateway no longer holds) or the canonical base64 of the entry's bytes";
    let entry = match entry {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) if !s.is_empty() => {
            Some(B64.decode(&s).map_err(|_| bad("entry", ENTRY))?)
        }
        _ => return Err(bad("entry", ENTRY)),
    };
    Ok(Stated {
        seq,
        leaf_hash,
        entry,
    })
}

/// A seq that no line held where it belonged: dropped, unless it turns up
/// later, which makes it reordered.
struct Gap {
    line: u64,
    missing: u64,
    found: u64,
}

/// The walk over the leaf lines: both roots, the first problem, and what is
/// needed to classify it.
struct Walk {
    size: u64,
    earlier_size: Option<u64>,
    /// The tree of the entries' own hashes (the stated hash where an entry is missing).
    computed: RootBuilder,
    /// The tree of the hashes the lines state.
    listed: RootBuilder,
    problem: Option<VerifyFailure>,
    gap: Option<Gap>,
    last_of: HashMap<String, u64>,
    earlier_root: Option<tlog::Hash>,
    n: u64,
}

impl Walk {
    fn found(&mut self, p: VerifyFailure) {
        if self.problem.is_none() {
            self.problem = Some(p);
        }
    }

    /// A line stating seq `stated` (and an entry that agrees, or none) where
    /// entry `seq` belongs.
    fn out_of_place(&mut self, line: u64, seq: u64, stated: u64) {
        if stated > seq {
            if self.problem.is_none() {
                self.gap = Some(Gap {
                    line,
                    missing: seq,
                    found: stated,
                });
            }
            self.found(VerifyFailure::Dropped {
                line,
                seq,
                found: stated,
            });
            return;
        }
        if let Some(gap) = &self.gap
            && gap.missing == stated
            && self.problem
                == Some(VerifyFailure::Dropped {
                    line: gap.line,
                    seq: gap.missing,
                    found: gap.found,
                })
        {
            self.problem = Some(VerifyFailure::Reordered {
                line: gap.line,
                seq: gap.missing,
                found: gap.found,
            });
            self.gap = None;
            return;
        }
        // Every line before held the seq of its place (or a problem was
        // found already), so `stated` was on line `stated + 1`.
        self.found(VerifyFailure::DuplicateSeq {
            line,
            seq,
            stated,
            first_line: stated + 1,
        });
    }

    fn line(&mut self, line: u64, bytes: &[u8]) -> Result<(), VerifyFailure> {
        let seq = self.n + 1;
        let stated = parse_line(bytes, line, seq)?;
        self.n = seq;
        self.listed.push(stated.leaf_hash);
        let leaf = stated.entry.as_deref().map(tlog::leaf_hash);
        self.computed.push(leaf.unwrap_or(stated.leaf_hash));
        let decoded = stated.entry.as_deref().map(CanonicalEntry::decode);

        // The seq it states, against its entry's and its place.
        match &decoded {
            Some(Ok(e)) if e.seq != stated.seq => {
                if stated.seq == seq {
                    self.found(VerifyFailure::Reordered {
                        line,
                        seq,
                        found: e.seq,
                    });
                } else {
                    self.found(VerifyFailure::SeqMisstated {
                        line,
                        seq,
                        stated: stated.seq,
                        entry: e.seq,
                    });
                }
            }
            _ if stated.seq != seq => self.out_of_place(line, seq, stated.seq),
            _ => {}
        }
        if seq > self.size {
            self.found(VerifyFailure::BeyondCheckpoint {
                line,
                seq,
                size: self.size,
            });
        }
        // The leaf hash it states, against its entry's.
        match leaf {
            None => self.found(VerifyFailure::EntryMissing { line, seq }),
            Some(leaf) if leaf != stated.leaf_hash => {
                // `Altered` instead if the signed tree holds the stated hash (see `first_problem`).
                self.found(VerifyFailure::LeafHashMisstated { line, seq });
            }
            Some(_) => {}
        }
        match decoded {
            Some(Err(error)) => self.found(VerifyFailure::NotCanonical { line, seq, error }),
            Some(Ok(e)) => {
                for s in e.subjects {
                    let prev = self.last_of.insert(s.token, e.seq).unwrap_or(0);
                    if s.prev_seq != prev {
                        self.found(VerifyFailure::BackPointer {
                            line,
                            seq,
                            expected: prev,
                            found: s.prev_seq,
                        });
                    }
                }
            }
            None => {}
        }
        if self.earlier_size == Some(seq) {
            self.earlier_root = Some(self.computed.root());
        }
        Ok(())
    }

    /// The first problem found, told apart by whether the signed tree
    /// (`root`) vouches for the leaf hashes the lines state.
    fn first_problem(&mut self, root: &tlog::Hash, complete: bool) -> Option<VerifyFailure> {
        let stated_hashes_signed = complete && self.n == self.size && self.listed.root() == *root;
        self.problem.take().map(|p| match p {
            VerifyFailure::LeafHashMisstated { line, seq } if stated_hashes_signed => {
                VerifyFailure::Altered { line, seq }
            }
            p => p,
        })
    }
}

/// Verifies an export against the pinned `verifier` and, optionally, an
/// earlier signed checkpoint the officer kept.
pub fn verify(
    input: impl BufRead,
    verifier: &tlog::Verifier,
    earlier: Option<&str>,
) -> Result<Verified, VerifyFailure> {
    verify_lines(input, verifier, earlier, MAX_LINE_BYTES)
}

fn verify_lines(
    mut input: impl BufRead,
    verifier: &tlog::Verifier,
    earlier: Option<&str>,
    max_line: usize,
) -> Result<Verified, VerifyFailure> {
    let mut buf = Vec::new();
    if !read_line(&mut input, &mut buf, 1, max_line)? {
        return Err(VerifyFailure::Empty);
    }
    let [format, version, checkpoint] = members(&buf, HEADER_MEMBERS, 1, None)?;
    let bad = |field, expected| VerifyFailure::BadField {
        line: 1,
        seq: None,
        field,
        expected,
    };
    let format = format.as_str().ok_or_else(|| bad("format", "a string"))?;
    let version = version
        .as_u64()
        .ok_or_else(|| bad("version", "a non-negative integer"))?;
    let checkpoint = checkpoint
        .as_str()
        .ok_or_else(|| bad("checkpoint", "a string"))?;
    if format != FORMAT || version != 1 {
        return Err(VerifyFailure::UnknownFormat {
            format: format.to_string(),
            version,
        });
    }
    let (cp, _) = tlog::Checkpoint::open(checkpoint.as_bytes(), std::slice::from_ref(verifier))
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

    let mut walk = Walk {
        size: cp.size(),
        earlier_size: earlier.as_ref().map(tlog::Checkpoint::size),
        computed: RootBuilder::default(),
        listed: RootBuilder::default(),
        problem: None,
        gap: None,
        last_of: HashMap::new(),
        earlier_root: None,
        n: 0,
    };
    let mut line = 1u64;
    loop {
        line += 1;
        let read = read_line(&mut input, &mut buf, line, max_line)
            .and_then(|more| more.then(|| walk.line(line, &buf)).transpose());
        match read {
            Ok(Some(())) => {}
            Ok(None) => break,
            // A line that cannot be read as one: the first problem is named,
            // whichever line it is on.
            Err(e) => return Err(walk.first_problem(cp.root(), false).unwrap_or(e)),
        }
    }
    if let Some(p) = walk.first_problem(cp.root(), true) {
        return Err(p);
    }
    if walk.n != cp.size() {
        return Err(VerifyFailure::Count {
            expected: cp.size(),
            found: walk.n,
        });
    }
    if walk.computed.root() != *cp.root() {
        return Err(VerifyFailure::RootMismatch);
    }
    let extends = match earlier {
        None => None,
        Some(e) if e.size() == 0 => Some(0),
        Some(e) => {
            if walk.earlier_root != Some(*e.root()) {
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
    use crate::audit::encoding::{SubjectRef, Value};

    const ORIGIN: &str = "example.org/audit";

    fn signer() -> tlog::Signer {
        tlog::Signer::from_seed(ORIGIN, [7; 32]).unwrap()
    }

    fn entry(seq: u64, actor: &str, subjects: &[(&str, u64)]) -> Vec<u8> {
        CanonicalEntry {
            seq,
            at_ms: 1_700_000_000_000 + seq as i64,
            actor: actor.into(),
            action: "records_delivered".into(),
            outcome: "ok".into(),
            kinds: vec!["social_insurance".into()],
            subjects: subjects
                .iter()
                .map(|(t, p)| SubjectRef {
                    token: t.to_string(),
                    prev_seq: *p,
                })
                .collect(),
            details: Value::Map([("records".to_string(), Value::U64(seq))].into()),
        }
        .encode()
        .unwrap()
    }

    /// Six entries; "aa" is named by entries 2, 4 and 5.
    fn entries() -> Vec<Vec<u8>> {
        vec![
            entry(1, "agency/hrss", &[]),
            entry(2, "union/assistance", &[("aa", 0)]),
            entry(3, "union/rights", &[("bb", 0)]),
            entry(4, "union/assistance", &[("aa", 2)]),
            entry(5, "union/assistance", &[("aa", 4), ("bb", 3)]),
            entry(6, "gateway", &[]),
        ]
    }

    fn signed(entries: &[Vec<u8>]) -> String {
        let mut tree = tlog::MemoryTree::new();
        for e in entries {
            tree.append_entry(e);
        }
        tlog::Checkpoint::new(ORIGIN, entries.len() as u64, tree.root(), vec![])
            .unwrap()
            .sign(&[&signer()])
            .unwrap()
    }

    /// The lines `gateway audit export` writes for `entries`, under a
    /// checkpoint signed for them: `lines[0]` is the header, `lines[k]` entry k.
    fn export_of(entries: &[Vec<u8>]) -> Vec<String> {
        let mut lines = vec![header_line(&signed(entries))];
        for (i, e) in entries.iter().enumerate() {
            lines.push(leaf_line(i as u64 + 1, &tlog::leaf_hash(e), Some(e)));
        }
        lines
    }

    fn export() -> Vec<String> {
        export_of(&entries())
    }

    fn check(lines: &[String]) -> Result<Verified, VerifyFailure> {
        check_text(&(lines.join("\n") + "\n"))
    }

    fn check_text(text: &str) -> Result<Verified, VerifyFailure> {
        verify(text.as_bytes(), &signer().verifier(), None)
    }

    /// `line` with member `key` set to `value` (members in a different
    /// order, which JSON allows).
    fn with(line: &str, key: &str, value: serde_json::Value) -> String {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        v.insert(key.into(), value);
        serde_json::to_string(&v).unwrap()
    }

    fn without(line: &str, key: &str) -> String {
        let mut v: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).unwrap();
        assert!(v.remove(key).is_some());
        serde_json::to_string(&v).unwrap()
    }

    fn edited(k: usize, line: String) -> Vec<String> {
        let mut lines = export();
        lines[k] = line;
        lines
    }

    #[test]
    fn an_untouched_export_verifies_and_extends_an_earlier_checkpoint() {
        let v = check(&export()).unwrap();
        assert_eq!((v.size, v.extends), (6, None));
        let earlier = signed(&entries()[..3]);
        let text = export().join("\n") + "\n";
        let v = verify(text.as_bytes(), &signer().verifier(), Some(&earlier)).unwrap();
        assert_eq!(v.extends, Some(3));
        // Without the final newline, and with CRLF line ends, it says the same.
        assert!(check_text(&export().join("\n")).is_ok());
        assert!(check_text(&(export().join("\r\n") + "\r\n")).is_ok());
    }

    #[test]
    fn a_stated_seq_that_is_not_the_entrys_is_named() {
        for stated in [9, 4, 2] {
            let line = with(&export()[3], "seq", stated.into());
            assert_eq!(
                check(&edited(3, line)).unwrap_err(),
                VerifyFailure::SeqMisstated {
                    line: 4,
                    seq: 3,
                    stated,
                    entry: 3
                },
                "stated {stated}"
            );
        }
    }

    #[test]
    fn a_stated_leaf_hash_that_is_not_the_entrys_is_named() {
        let other = hex::encode(tlog::leaf_hash(&entries()[4]));
        let line = with(&export()[3], "leaf_hash", other.into());
        let err = check(&edited(3, line)).unwrap_err();
        assert_eq!(err, VerifyFailure::LeafHashMisstated { line: 4, seq: 3 });
        assert_eq!(
            err.to_string(),
            "line 4 (seq 3): the leaf_hash it states is not the hash of its entry"
        );
    }

    #[test]
    fn an_entry_altered_under_its_signed_leaf_is_named_altered() {
        let forged = entry(3, "union/organisation", &[("bb", 0)]);
        let line = with(&export()[3], "entry", B64.encode(&forged).into());
        assert_eq!(
            check(&edited(3, line)).unwrap_err(),
            VerifyFailure::Altered { line: 4, seq: 3 }
        );
        // Entry and leaf hash altered together: only the signed root tells.
        let lines = edited(3, leaf_line(3, &tlog::leaf_hash(&forged), Some(&forged)));
        assert_eq!(check(&lines).unwrap_err(), VerifyFailure::RootMismatch);
    }

    #[test]
    fn a_repeated_seq_is_named_with_the_line_that_stated_it_first() {
        let mut lines = export();
        lines.insert(4, lines[3].clone());
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::DuplicateSeq {
                line: 5,
                seq: 4,
                stated: 3,
                first_line: 4
            }
        );
        // A repeat of the last line is a repeat, not an entry beyond the checkpoint.
        let mut lines = export();
        lines.push(lines[6].clone());
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::DuplicateSeq {
                line: 8,
                seq: 7,
                stated: 6,
                first_line: 7
            }
        );
    }

    #[test]
    fn a_missing_seq_is_named_dropped_or_reordered() {
        let mut lines = export();
        lines.remove(3);
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::Dropped {
                line: 4,
                seq: 3,
                found: 4
            }
        );
        let mut lines = export();
        lines.swap(3, 4);
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::Reordered {
                line: 4,
                seq: 3,
                found: 4
            }
        );
        let mut lines = export();
        let moved = lines.remove(2);
        lines.insert(5, moved);
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::Reordered {
                line: 3,
                seq: 2,
                found: 3
            }
        );
        // Two entries swapped under their places' seq and leaf hash.
        let e = entries();
        let mut lines = export();
        lines[3] = with(&lines[3], "entry", B64.encode(&e[3]).into());
        lines[4] = with(&lines[4], "entry", B64.encode(&e[2]).into());
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::Reordered {
                line: 4,
                seq: 3,
                found: 4
            }
        );
        // The last line dropped.
        let mut lines = export();
        lines.pop();
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::Count {
                expected: 6,
                found: 5
            }
        );
    }

    #[test]
    fn an_entry_beyond_the_checkpoint_is_named() {
        let mut lines = export();
        let extra = entry(7, "gateway", &[]);
        lines.push(leaf_line(7, &tlog::leaf_hash(&extra), Some(&extra)));
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::BeyondCheckpoint {
                line: 8,
                seq: 7,
                size: 6
            }
        );
    }

    #[test]
    fn unknown_repeated_and_missing_members_are_named() {
        let line = with(&export()[3], "comment", "fine".into());
        assert_eq!(
            check(&edited(3, line)).unwrap_err(),
            VerifyFailure::UnknownField {
                line: 4,
                seq: Some(3),
                field: "comment".into()
            }
        );
        let header = with(&export()[0], "signed_by", "x".into());
        let err = check(&edited(0, header)).unwrap_err();
        assert_eq!(
            err,
            VerifyFailure::UnknownField {
                line: 1,
                seq: None,
                field: "signed_by".into()
            }
        );
        assert_eq!(
            err.to_string(),
            "line 1 (the header): unknown field `signed_by`"
        );
        let line = export()[3].replacen("{", "{\"seq\":3,", 1);
        assert_eq!(
            check(&edited(3, line)).unwrap_err(),
            VerifyFailure::DuplicateField {
                line: 4,
                seq: Some(3),
                field: "seq".into()
            }
        );
        for field in LINE_MEMBERS {
            assert_eq!(
                check(&edited(3, without(&export()[3], field))).unwrap_err(),
                VerifyFailure::MissingField {
                    line: 4,
                    seq: Some(3),
                    field
                }
            );
        }
        for field in HEADER_MEMBERS {
            assert_eq!(
                check(&edited(0, without(&export()[0], field))).unwrap_err(),
                VerifyFailure::MissingField {
                    line: 1,
                    seq: None,
                    field
                }
            );
        }
    }

    #[test]
    fn members_of_the_wrong_form_are_named() {
        let bad = |field: &'static str, value: serde_json::Value| {
            let err = check(&edited(3, with(&export()[3], field, value.clone()))).unwrap_err();
            assert!(
                matches!(err, VerifyFailure::BadField { line: 4, seq: Some(3), field: f, .. } if f == field),
                "{field} = {value}: {err:?}"
            );
        };
        for v in [
            serde_json::json!(0),
            serde_json::json!(-3),
            serde_json::json!(3.0),
            serde_json::json!("3"),
            serde_json::Value::Null,
        ] {
            bad("seq", v);
        }
        let hash = hex::encode(tlog::leaf_hash(&entries()[2]));
        for v in [
            serde_json::json!(hash.to_uppercase()),
            serde_json::json!(&hash[1..]),
            serde_json::json!(format!("{hash}00")),
            serde_json::json!(format!("0x{}", &hash[2..])),
            serde_json::json!(7),
            serde_json::Value::Null,
        ] {
            bad("leaf_hash", v);
        }
        let b64 = B64.encode(&entries()[2]);
        let unpadded = b64.trim_end_matches('=').to_string();
        for v in [
            serde_json::json!(""),
            serde_json::json!("not base64!"),
            serde_json::json!(5),
            serde_json::json!([b64]),
            serde_json::json!(format!(" {b64}")),
        ] {
            bad("entry", v);
        }
        if unpadded != b64 {
            bad("entry", serde_json::json!(unpadded));
        }
        let header = with(&export()[0], "version", "1".into());
        assert!(matches!(
            check(&edited(0, header)).unwrap_err(),
            VerifyFailure::BadField {
                line: 1,
                seq: None,
                field: "version",
                ..
            }
        ));
        let header = with(&export()[0], "version", 2.into());
        assert_eq!(
            check(&edited(0, header)).unwrap_err(),
            VerifyFailure::UnknownFormat {
                format: FORMAT.into(),
                version: 2
            }
        );
    }

    #[test]
    fn a_withheld_entry_is_named_missing() {
        let line = with(&export()[3], "entry", serde_json::Value::Null);
        assert_eq!(
            check(&edited(3, line)).unwrap_err(),
            VerifyFailure::EntryMissing { line: 4, seq: 3 }
        );
    }

    #[test]
    fn lines_that_are_not_one_json_object_are_named() {
        for (k, text) in [
            (3, ""),
            (3, "[1, 2]"),
            (3, "{\"seq\":3"),
            (3, "{} {}"),
            (0, ""),
        ] {
            let err = check(&edited(k, text.into())).unwrap_err();
            assert!(
                matches!(err, VerifyFailure::Malformed { line, .. } if line == k as u64 + 1),
                "{text:?}: {err:?}"
            );
        }
        // A blank line at the end is a line too.
        assert!(matches!(
            check_text(&(export().join("\n") + "\n\n")).unwrap_err(),
            VerifyFailure::Malformed { line: 8, .. }
        ));
        let mut text = export().join("\n").into_bytes();
        text.extend_from_slice(b"\n\xff\n");
        assert!(matches!(
            verify(&text[..], &signer().verifier(), None).unwrap_err(),
            VerifyFailure::Malformed { line: 8, .. }
        ));
        assert_eq!(check_text("").unwrap_err(), VerifyFailure::Empty);
        let lines = export();
        let text = lines.join("\n") + "\n";
        let longest = lines.iter().map(String::len).max().unwrap();
        let first_longest = lines.iter().position(|l| l.len() == longest).unwrap() as u64 + 1;
        assert_eq!(
            verify_lines(text.as_bytes(), &signer().verifier(), None, longest - 1).unwrap_err(),
            VerifyFailure::LineTooLong {
                line: first_longest,
                limit: longest - 1
            }
        );
        assert!(verify_lines(text.as_bytes(), &signer().verifier(), None, longest).is_ok());
    }

    #[test]
    fn what_the_gateway_itself_wrote_wrong_is_named() {
        // Bytes that are no canonical entry, under a leaf the checkpoint signs.
        let mut e = entries();
        e[2].push(0);
        assert_eq!(
            check(&export_of(&e)).unwrap_err(),
            VerifyFailure::NotCanonical {
                line: 4,
                seq: 3,
                error: DecodeError::Trailing(1)
            }
        );
        // A wrong back-pointer (aa's previous entry is 2).
        let mut e = entries();
        e[3] = entry(4, "union/assistance", &[("aa", 1)]);
        assert_eq!(
            check(&export_of(&e)).unwrap_err(),
            VerifyFailure::BackPointer {
                line: 5,
                seq: 4,
                expected: 2,
                found: 1
            }
        );
    }

    #[test]
    fn the_first_problem_in_the_file_is_named() {
        let mut lines = export();
        lines[3] = with(&lines[3], "seq", 9.into());
        lines[5] = with(&lines[5], "comment", "x".into());
        assert!(matches!(
            check(&lines).unwrap_err(),
            VerifyFailure::SeqMisstated { line: 4, .. }
        ));
        // A leaf hash misstated, then a line that cannot be read: the tree
        // cannot tell whether the entry or the stated hash is wrong.
        let forged = entry(3, "union/organisation", &[("bb", 0)]);
        let mut lines = export();
        lines[3] = with(&lines[3], "entry", B64.encode(&forged).into());
        lines[5] = "nonsense".into();
        assert_eq!(
            check(&lines).unwrap_err(),
            VerifyFailure::LeafHashMisstated { line: 4, seq: 3 }
        );
    }

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
