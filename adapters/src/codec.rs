//! The compact binary form of a canonical record, as the gateway seals it at
//! rest. JSON costs a pull most of its time in parsing; this form is read with
//! bounds-checked slices and no look-ahead. It is versioned by its first byte,
//! so records stored in an older form stay readable.
//!
//! Layout (integers little-endian, `str` = u32 length + UTF-8 bytes):
//! `0xB1`, kind (u8, index in [`RecordKind::ALL`]), change (u8: new, update,
//! cancel), changed_at (i64), source key (str), person (u8 0/1 + str),
//! enterprise (u8 0/1 + str), field count (u16), then per field its name (str),
//! a value tag (u8, the order of [`Value`]'s variants) and the value.

use crate::model::{
    ChangeType, CreditCode, Date, FieldName, IdentityNumber, Record, RecordKind, SourceKey,
    Timestamp, Value, YearMonth,
};
use std::collections::BTreeMap;

/// First byte of the binary form (version 1). JSON starts with `{`.
pub const BINARY_V1: u8 = 0xB1;

/// Why bytes are not a record in binary form (never holds the bytes themselves).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("unknown record form (first byte {0:#04x})")]
    UnknownForm(u8),
    #[error("record ends early")]
    Truncated,
    #[error("invalid {0} in record")]
    Invalid(&'static str),
    #[error("{0} trailing bytes after record")]
    Trailing(usize),
}

impl Record {
    /// The record in binary form.
    pub fn to_binary(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        out.push(BINARY_V1);
        let kind = RecordKind::ALL
            .iter()
            .position(|k| *k == self.kind)
            .expect("every kind is in ALL");
        out.push(kind as u8);
        out.push(match self.change {
            ChangeType::New => 0,
            ChangeType::Update => 1,
            ChangeType::Cancel => 2,
        });
        out.extend_from_slice(&self.changed_at.0.to_le_bytes());
        put_str(&mut out, self.source_key.expose());
        put_opt(&mut out, self.person.as_ref().map(IdentityNumber::expose));
        put_opt(&mut out, self.enterprise.as_ref().map(CreditCode::as_str));
        let count = u16::try_from(self.fields.len()).expect("a record has few fields");
        out.extend_from_slice(&count.to_le_bytes());
        for (name, value) in &self.fields {
            put_str(&mut out, name);
            put_value(&mut out, value);
        }
        out
    }

    /// Reads a record in binary form.
    pub fn from_binary(bytes: &[u8]) -> Result<Record, CodecError> {
        let mut r = Reader(bytes);
        match r.u8()? {
            BINARY_V1 => {}
            other => return Err(CodecError::UnknownForm(other)),
        }
        let kind = *RecordKind::ALL
            .get(usize::from(r.u8()?))
            .ok_or(CodecError::Invalid("kind"))?;
        let change = match r.u8()? {
            0 => ChangeType::New,
            1 => ChangeType::Update,
            2 => ChangeType::Cancel,
            _ => return Err(CodecError::Invalid("change type")),
        };
        let changed_at = Timestamp(r.i64()?);
        let source_key = SourceKey::from_parts([r.string()?]);
        let person = match r.opt()? {
            Some(s) if s.len() == 18 => Some(IdentityNumber::from_validated(s)),
            Some(_) => return Err(CodecError::Invalid("identity number")),
            None => None,
        };
        let enterprise = r.opt()?.map(CreditCode::from_validated);
        let count = r.u16()?;
        // Written in name order, so the map is built in bulk (a sort of a
        // sorted list, then no search per field); a repeated name keeps its
        // last value, as inserting one by one would. Names are the schema's
        // own (no allocation): the name-sorted schema is walked alongside.
        let mut ahead = kind.field_names_sorted();
        let mut named = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let name = r.str()?;
            let name = match ahead.iter().position(|known| *known == name) {
                Some(at) => {
                    let known = ahead[at];
                    ahead = &ahead[at + 1..];
                    FieldName::Borrowed(known)
                }
                None => FieldName::Owned(name.to_owned()),
            };
            let value = r.value()?;
            named.push((name, value));
        }
        let fields = BTreeMap::from_iter(named);
        if !r.0.is_empty() {
            return Err(CodecError::Trailing(r.0.len()));
        }
        Ok(Record {
            kind,
            source_key,
            change,
            changed_at,
            person,
            enterprise,
            fields,
        })
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    let len = u32::try_from(s.len()).expect("field values are far below 4 GiB");
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_opt(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => {
            out.push(1);
            put_str(out, s);
        }
        None => out.push(0),
    }
}

fn put_value(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Text(s) => {
            out.push(0);
            put_str(out, s);
        }
        Value::Code(s) => {
            out.push(1);
            put_str(out, s);
        }
        Value::Integer(i) => {
            out.push(2);
            out.extend_from_slice(&i.to_le_bytes());
        }
        Value::Money(fen) => {
            out.push(3);
            out.extend_from_slice(&fen.to_le_bytes());
        }
        Value::Date(d) => {
            out.push(4);
            out.extend_from_slice(&d.year.to_le_bytes());
            out.extend_from_slice(&[d.month, d.day]);
        }
        Value::YearMonth(m) => {
            out.push(5);
            out.extend_from_slice(&m.year.to_le_bytes());
            out.push(m.month);
        }
        Value::Year(y) => {
            out.push(6);
            out.extend_from_slice(&y.to_le_bytes());
        }
        Value::Timestamp(t) => {
            out.push(7);
            out.extend_from_slice(&t.0.to_le_bytes());
        }
        Value::Bool(b) => {
            out.push(8);
            out.push(u8::from(*b));
        }
        Value::IdentityNumber(n) => {
            out.push(9);
            put_str(out, n.expose());
        }
        Value::CreditCode(c) => {
            out.push(10);
            put_str(out, c.as_str());
        }
        Value::Division(s) => {
            out.push(11);
            put_str(out, s);
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        Ok(self.take(N)?.try_into().expect("took N bytes"))
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, CodecError> {
        Ok(u16::from_le_bytes(self.array()?))
    }
    fn i32(&mut self) -> Result<i32, CodecError> {
        Ok(i32::from_le_bytes(self.array()?))
    }
    fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.array()?))
    }
    fn str(&mut self) -> Result<&'a str, CodecError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| CodecError::Invalid("text"))
    }
    fn string(&mut self) -> Result<String, CodecError> {
        self.str().map(str::to_string)
    }
    fn opt(&mut self) -> Result<Option<String>, CodecError> {
        match self.u8()? {
            0 => Ok(None),
            1 => self.string().map(Some),
            _ => Err(CodecError::Invalid("optional marker")),
        }
    }
    fn value(&mut self) -> Result<Value, CodecError> {
        Ok(match self.u8()? {
            0 => Value::Text(self.string()?),
            1 => Value::Code(self.string()?),
            2 => Value::Integer(self.i64()?),
            3 => Value::Money(self.i64()?),
            4 => {
                let year = self.i32()?;
                let [month, day] = self.array()?;
                Value::Date(Date { year, month, day })
            }
            5 => {
                let year = self.i32()?;
                let month = self.u8()?;
                Value::YearMonth(YearMonth { year, month })
            }
            6 => Value::Year(self.i32()?),
            7 => Value::Timestamp(Timestamp(self.i64()?)),
            8 => match self.u8()? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                _ => return Err(CodecError::Invalid("boolean")),
            },
            9 => {
                let s = self.string()?;
                if s.len() != 18 {
                    return Err(CodecError::Invalid("identity number"));
                }
                Value::IdentityNumber(IdentityNumber::from_validated(s))
            }
            10 => Value::CreditCode(CreditCode::from_validated(self.string()?)),
            11 => Value::Division(self.string()?),
            _ => return Err(CodecError::Invalid("value tag")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::open;

    fn sample_records() -> Vec<Record> {
        crate::Agency::ALL
            .into_iter()
            .flat_map(|agency| {
                let (parser, rows) = open(agency);
                rows.into_iter()
                    .filter_map(|row| parser.parse_row(row).ok())
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Every accepted sample row of every agency survives the round trip, and
    /// encodes smaller than its JSON.
    #[test]
    fn every_sample_record_round_trips() {
        let records = sample_records();
        assert!(records.len() > 50, "{}", records.len());
        let kinds: std::collections::HashSet<_> = records.iter().map(|r| r.kind).collect();
        assert_eq!(kinds.len(), RecordKind::ALL.len());
        for r in &records {
            let bin = r.to_binary();
            assert_eq!(&Record::from_binary(&bin).unwrap(), r);
            assert!(bin.len() < serde_json::to_vec(r).unwrap().len());
        }
    }

    /// Decoded names are the schema's own, not copies; a name the schema
    /// does not know (say, from a record sealed under an older schema) is
    /// kept as it was, wherever it sorts among the known ones.
    #[test]
    fn field_names_come_from_the_schema_and_unknown_ones_survive() {
        for r in sample_records() {
            let decoded = Record::from_binary(&r.to_binary()).unwrap();
            assert!(
                decoded
                    .fields
                    .keys()
                    .all(|k| matches!(k, FieldName::Borrowed(_))),
                "{}",
                r.kind
            );
            let mut older = r.clone();
            for name in ["aaa_retired", "m_retired", "zzz_retired"] {
                older
                    .fields
                    .insert(FieldName::Owned(name.into()), Value::Text("x".into()));
            }
            let decoded = Record::from_binary(&older.to_binary()).unwrap();
            assert_eq!(decoded, older);
            let known = decoded
                .fields
                .keys()
                .filter(|k| matches!(k, FieldName::Borrowed(_)))
                .count();
            assert_eq!(known, r.fields.len(), "{}", r.kind);
        }
    }

    /// Every prefix and every single-byte change of an encoding is either
    /// refused or decodes to some record: never a panic.
    #[test]
    fn damaged_bytes_are_refused_without_panicking() {
        for r in sample_records().iter().take(12) {
            let bin = r.to_binary();
            for cut in 0..bin.len() {
                assert!(Record::from_binary(&bin[..cut]).is_err());
            }
            for i in 0..bin.len() {
                for flip in [0x01u8, 0x80, 0xff] {
                    let mut bad = bin.clone();
                    bad[i] ^= flip;
                    let _ = Record::from_binary(&bad);
                }
            }
            let mut long = bin.clone();
            long.push(0);
            assert_eq!(Record::from_binary(&long), Err(CodecError::Trailing(1)));
        }
        assert_eq!(
            Record::from_binary(b"{\"kind\":1}"),
            Err(CodecError::UnknownForm(b'{'))
        );
    }
}
