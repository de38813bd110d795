//! The canonical encoding of audit entries: the exact bytes that become a
//! Merkle leaf (`tlog::leaf_hash(bytes)`). It is our own, small and fixed
//! (version byte, fixed field order, big-endian integers, length prefixes), so
//! that an offline verifier in any language can recompute leaves from an export
//! without depending on JSON or protobuf serialisers, whose output is not
//! canonical. The format is specified in `ENCODING.md` beside this file; the
//! decoder is strict (one valid encoding per entry, no trailing bytes, bounded
//! nesting) because it reads untrusted export files.

use std::collections::BTreeMap;

/// The encoding version this code writes and reads.
pub const VERSION: u8 = 1;
/// Deepest nesting of detail values accepted (lists and maps).
pub const MAX_DEPTH: usize = 16;

const TAG_NULL: u8 = 0x00;
const TAG_FALSE: u8 = 0x01;
const TAG_TRUE: u8 = 0x02;
const TAG_U64: u8 = 0x03;
const TAG_NEG: u8 = 0x04;
const TAG_STR: u8 = 0x05;
const TAG_LIST: u8 = 0x06;
const TAG_MAP: u8 = 0x07;

/// Why bytes are not a canonical audit entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported encoding version {0}")]
    Version(u8),
    #[error("entry is truncated")]
    Truncated,
    #[error("{0} trailing bytes after the entry")]
    Trailing(usize),
    #[error("a text field is not UTF-8")]
    Utf8,
    #[error("unknown value tag {0:#04x}")]
    Tag(u8),
    #[error("details nest deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not canonical: {0}")]
    NotCanonical(&'static str),
}

/// Why an event cannot be encoded (only programming errors reach this).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("audit details may not hold floating-point numbers")]
    Float,
    #[error("a field is longer than 2^32 - 1 bytes")]
    TooLong,
}

/// An event's details: a small typed tree (JSON without floats, maps with
/// sorted keys), so the canonical bytes of a detail are unique.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Value {
    #[default]
    Null,
    Bool(bool),
    /// Non-negative integers.
    U64(u64),
    /// Negative integers only (canonical: a non-negative value is always `U64`).
    Neg(i64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    /// From a JSON value (floats are refused: details are counts, codes,
    /// names). Takes the value, so its strings move rather than copy.
    pub fn from_json(v: serde_json::Value) -> Result<Value, EncodeError> {
        Ok(match v {
            serde_json::Value::Null => Value::Null,
            serde_json::Value::Bool(b) => Value::Bool(b),
            serde_json::Value::Number(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => Value::U64(u),
                (None, Some(i)) => Value::Neg(i),
                _ => return Err(EncodeError::Float),
            },
            serde_json::Value::String(s) => Value::Str(s),
            serde_json::Value::Array(a) => Value::List(
                a.into_iter()
                    .map(Value::from_json)
                    .collect::<Result<_, _>>()?,
            ),
            serde_json::Value::Object(o) => Value::Map(
                o.into_iter()
                    .map(|(k, v)| Ok((k, Value::from_json(v)?)))
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Null => serde_json::Value::Null,
            Value::Bool(b) => (*b).into(),
            Value::U64(u) => (*u).into(),
            Value::Neg(i) => (*i).into(),
            Value::Str(s) => s.clone().into(),
            Value::List(l) => l.iter().map(Value::to_json).collect(),
            Value::Map(m) => m
                .iter()
                .map(|(k, v)| (k.clone(), v.to_json()))
                .collect::<serde_json::Map<_, _>>()
                .into(),
        }
    }

    /// A string member of a map, if present.
    pub fn str(&self, key: &str) -> Option<&str> {
        match self {
            Value::Map(m) => match m.get(key) {
                Some(Value::Str(s)) => Some(s),
                _ => None,
            },
            _ => None,
        }
    }

    /// Any member of a map.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(m) => m.get(key),
            _ => None,
        }
    }
}

/// A subject an entry concerns: its pseudonym in the auditors' domain and the
/// seq of the previous entry about the same subject (0: none before).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SubjectRef {
    pub token: String,
    pub prev_seq: u64,
}

/// One audit entry exactly as it is encoded into its leaf.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalEntry {
    /// Position in the log, from 1; the Merkle leaf index is `seq - 1`.
    pub seq: u64,
    /// Milliseconds since the Unix epoch (UTC).
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    /// Record kinds concerned, sorted, without duplicates.
    pub kinds: Vec<String>,
    /// Subjects concerned, sorted by token, without duplicate tokens.
    pub subjects: Vec<SubjectRef>,
    pub details: Value,
}

fn put_len(out: &mut Vec<u8>, n: usize) -> Result<(), EncodeError> {
    let n = u32::try_from(n).map_err(|_| EncodeError::TooLong)?;
    out.extend_from_slice(&n.to_be_bytes());
    Ok(())
}

fn put_str(out: &mut Vec<u8>, s: &str) -> Result<(), EncodeError> {
    put_len(out, s.len())?;
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

fn put_value(out: &mut Vec<u8>, v: &Value) -> Result<(), EncodeError> {
    match v {
        Value::Null => out.push(TAG_NULL),
        Value::Bool(false) => out.push(TAG_FALSE),
        Value::Bool(true) => out.push(TAG_TRUE),
        Value::U64(u) => {
            out.push(TAG_U64);
            out.extend_from_slice(&u.to_be_bytes());
        }
        Value::Neg(i) if *i >= 0 => {
            out.push(TAG_U64);
            out.extend_from_slice(&(*i as u64).to_be_bytes());
        }
        Value::Neg(i) => {
            out.push(TAG_NEG);
            out.extend_from_slice(&i.to_be_bytes());
        }
        Value::Str(s) => {
            out.push(TAG_STR);
            put_str(out, s)?;
        }
        Value::List(l) => {
            out.push(TAG_LIST);
            put_len(out, l.len())?;
            for item in l {
                put_value(out, item)?;
            }
        }
        Value::Map(m) => {
            out.push(TAG_MAP);
            put_len(out, m.len())?;
            // BTreeMap iterates in ascending byte order of the keys.
            for (k, item) in m {
                put_str(out, k)?;
                put_value(out, item)?;
            }
        }
    }
    Ok(())
}

/// The canonical bytes of an entry given by its parts (what
/// [`CanonicalEntry::encode`] does, without building one).
#[allow(clippy::too_many_arguments)]
pub fn encode_parts(
    seq: u64,
    at_ms: i64,
    actor: &str,
    action: &str,
    outcome: &str,
    kinds: &[String],
    subjects: &[SubjectRef],
    details: &Value,
) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::with_capacity(256 + subjects.len() * 44);
    out.push(VERSION);
    out.extend_from_slice(&seq.to_be_bytes());
    out.extend_from_slice(&at_ms.to_be_bytes());
    put_str(&mut out, actor)?;
    put_str(&mut out, action)?;
    put_str(&mut out, outcome)?;
    let mut kinds: Vec<&String> = kinds.iter().collect();
    kinds.sort();
    kinds.dedup();
    put_len(&mut out, kinds.len())?;
    for k in kinds {
        put_str(&mut out, k)?;
    }
    let mut subjects: Vec<&SubjectRef> = subjects.iter().collect();
    subjects.sort();
    subjects.dedup_by(|a, b| a.token == b.token);
    put_len(&mut out, subjects.len())?;
    for s in subjects {
        put_str(&mut out, &s.token)?;
        out.extend_from_slice(&s.prev_seq.to_be_bytes());
    }
    put_value(&mut out, details)?;
    Ok(out)
}

impl CanonicalEntry {
    /// The canonical bytes. Kinds and subjects are written sorted and
    /// de-duplicated whatever order they are held in.
    pub fn encode(&self) -> Result<Vec<u8>, EncodeError> {
        encode_parts(
            self.seq,
            self.at_ms,
            &self.actor,
            &self.action,
            &self.outcome,
            &self.kinds,
            &self.subjects,
            &self.details,
        )
    }

    /// Strictly decodes canonical bytes (see `ENCODING.md`).
    pub fn decode(bytes: &[u8]) -> Result<CanonicalEntry, DecodeError> {
        let mut r = Reader { b: bytes };
        let version = r.u8()?;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let seq = r.u64()?;
        let at_ms = r.u64()? as i64;
        let actor = r.str()?;
        let action = r.str()?;
        let outcome = r.str()?;
        let n = r.count(4)?;
        let mut kinds: Vec<String> = Vec::with_capacity(n);
        for _ in 0..n {
            let k = r.str()?;
            if kinds.last().is_some_and(|last| *last >= k) {
                return Err(DecodeError::NotCanonical("kinds not sorted and unique"));
            }
            kinds.push(k);
        }
        let n = r.count(12)?;
        let mut subjects: Vec<SubjectRef> = Vec::with_capacity(n);
        for _ in 0..n {
            let token = r.str()?;
            let prev_seq = r.u64()?;
            if subjects.last().is_some_and(|last| last.token >= token) {
                return Err(DecodeError::NotCanonical("subjects not sorted and unique"));
            }
            subjects.push(SubjectRef { token, prev_seq });
        }
        let details = r.value(0)?;
        if !r.b.is_empty() {
            return Err(DecodeError::Trailing(r.b.len()));
        }
        Ok(CanonicalEntry {
            seq,
            at_ms,
            actor,
            action,
            outcome,
            kinds,
            subjects,
            details,
        })
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.b.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.b.split_at(n);
        self.b = rest;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
    /// A count of items each at least `min_item` bytes long, checked against
    /// what is left so that a forged count cannot make us allocate.
    fn count(&mut self, min_item: usize) -> Result<usize, DecodeError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_item) > self.b.len() {
            return Err(DecodeError::Truncated);
        }
        Ok(n)
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let n = self.u32()? as usize;
        let bytes = self.take(n)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Utf8)
    }
    fn value(&mut self, depth: usize) -> Result<Value, DecodeError> {
        if depth > MAX_DEPTH {
            return Err(DecodeError::TooDeep);
        }
        Ok(match self.u8()? {
            TAG_NULL => Value::Null,
            TAG_FALSE => Value::Bool(false),
            TAG_TRUE => Value::Bool(true),
            TAG_U64 => Value::U64(self.u64()?),
            TAG_NEG => {
                let i = self.u64()? as i64;
                if i >= 0 {
                    return Err(DecodeError::NotCanonical(
                        "non-negative integer tagged negative",
                    ));
                }
                Value::Neg(i)
            }
            TAG_STR => Value::Str(self.str()?),
            TAG_LIST => {
                let n = self.count(1)?;
                let mut l = Vec::with_capacity(n);
                for _ in 0..n {
                    l.push(self.value(depth + 1)?);
                }
                Value::List(l)
            }
            TAG_MAP => {
                let n = self.count(5)?;
                let mut m = BTreeMap::new();
                let mut last: Option<String> = None;
                for _ in 0..n {
                    let k = self.str()?;
                    if last.as_ref().is_some_and(|l| *l >= k) {
                        return Err(DecodeError::NotCanonical("map keys not sorted and unique"));
                    }
                    let v = self.value(depth + 1)?;
                    last = Some(k.clone());
                    m.insert(k, v);
                }
                Value::Map(m)
            }
            t => return Err(DecodeError::Tag(t)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CanonicalEntry {
        let details = Value::from_json(serde_json::json!({
            "purpose": "hardship_screening",
            "records": 3,
            "offset": -2,
            "fields": {"social_insurance.name": "masked"},
            "kinds": ["social_insurance"],
            "error": null,
            "ok": true
        }))
        .unwrap();
        CanonicalEntry {
            seq: 7,
            at_ms: 1_700_000_000_123,
            actor: "union/assistance".into(),
            action: "records_delivered".into(),
            outcome: "ok".into(),
            kinds: vec!["social_insurance".into()],
            subjects: vec![
                SubjectRef {
                    token: "bb".into(),
                    prev_seq: 0,
                },
                SubjectRef {
                    token: "aa".into(),
                    prev_seq: 3,
                },
            ],
            details,
        }
    }

    #[test]
    fn round_trips_and_sorts_subjects() {
        let e = sample();
        let bytes = e.encode().unwrap();
        let d = CanonicalEntry::decode(&bytes).unwrap();
        assert_eq!(d.subjects[0].token, "aa");
        assert_eq!(d.encode().unwrap(), bytes);
        assert_eq!(d.details, e.details);
    }

    /// The documented layout, byte for byte (ENCODING.md, "Example").
    #[test]
    fn known_answer() {
        let e = CanonicalEntry {
            seq: 1,
            at_ms: 2,
            actor: "a".into(),
            action: "b".into(),
            outcome: "ok".into(),
            kinds: vec!["k".into()],
            subjects: vec![SubjectRef {
                token: "t".into(),
                prev_seq: 5,
            }],
            details: Value::Map([("n".to_string(), Value::U64(9))].into()),
        };
        let hex = hex::encode(e.encode().unwrap());
        assert_eq!(
            hex,
            "01\
             0000000000000001\
             0000000000000002\
             0000000161\
             0000000162\
             000000026f6b\
             00000001000000016b\
             000000010000000174\
             0000000000000005\
             0700000001000000016e030000000000000009"
        );
        assert_eq!(
            hex::encode(tlog::leaf_hash(&e.encode().unwrap())),
            hex::encode(tlog::leaf_hash(&hex::decode(&hex).unwrap()))
        );
    }

    #[test]
    fn rejects_non_canonical_and_hostile_input() {
        let bytes = sample().encode().unwrap();
        for cut in 0..bytes.len() {
            assert!(CanonicalEntry::decode(&bytes[..cut]).is_err());
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(CanonicalEntry::decode(&long), Err(DecodeError::Trailing(1)));
        let mut v2 = bytes.clone();
        v2[0] = 2;
        assert_eq!(CanonicalEntry::decode(&v2), Err(DecodeError::Version(2)));
        // A huge list count must not allocate.
        let mut huge = bytes[..bytes.len() - 1].to_vec();
        huge.truncate(1 + 8 + 8);
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(CanonicalEntry::decode(&huge).is_err());
        // Deep nesting is bounded.
        let mut deep = Value::Null;
        for _ in 0..40 {
            deep = Value::List(vec![deep]);
        }
        let mut e = sample();
        e.details = deep;
        assert_eq!(
            CanonicalEntry::decode(&e.encode().unwrap()),
            Err(DecodeError::TooDeep)
        );
    }

    #[test]
    fn floats_are_refused() {
        assert_eq!(
            Value::from_json(serde_json::json!({"x": 1.5})),
            Err(EncodeError::Float)
        );
    }
}
