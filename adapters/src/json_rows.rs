//! Reading one JSON Lines row (public security, market regulation, housing, work
//! safety) into the agency's known fields, without building a generic JSON tree.
//!
//! Each row must be one JSON object. Strings are borrowed from the row where
//! possible; numbers are kept as their decimal text (agencies send counts as
//! numbers), so the same textual rules apply whatever the JSON type. Keys the
//! agency does not define are ignored; a key given twice rejects the row. Parser
//! messages are never passed on: they can quote the row's content.

use crate::check::Raw;
use crate::{RowError, RowErrorCode as E, rules};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use std::borrow::Cow;
use std::fmt;

/// One field's JSON value, reduced to what the rules need.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Text(Cow<'a, str>),
    /// A JSON number, as decimal text.
    Number(String),
    Null,
    /// A boolean, array or object: never a valid value for any agency field.
    Other,
}

impl Scalar<'_> {
    /// The normalised text of the value, `None` when absent.
    pub fn raw(&self) -> Raw<'_> {
        match self {
            Scalar::Text(s) => Ok(rules::clean(s)),
            Scalar::Number(s) => Ok(rules::clean(s)),
            Scalar::Null => Ok(None),
            Scalar::Other => Err(E::BadFormat),
        }
    }
}

/// The known fields of one row, in the order of the agency's key list.
pub(crate) struct Fields<'a, const N: usize>([Option<Scalar<'a>>; N]);

impl<const N: usize> Fields<'_, N> {
    /// The normalised text of field `i` (an index into the key list).
    pub fn raw(&self, i: usize) -> Raw<'_> {
        match self.0.get(i) {
            Some(Some(v)) => v.raw(),
            _ => Ok(None),
        }
    }
}

fn row_error(code: E, message: &'static str) -> RowError {
    RowError::new("row", code, message)
}

/// Parses one JSON Lines row into the fields named by `keys`.
pub(crate) fn parse<'a, const N: usize>(
    row: &'a [u8],
    keys: &'static [&'static str; N],
) -> Result<Fields<'a, N>, RowError> {
    let text = std::str::from_utf8(row)
        .map_err(|_| row_error(E::Encoding, "the row is not valid UTF-8"))?;
    let text = text.strip_prefix('\u{FEFF}').unwrap_or(text);
    let mut de = serde_json::Deserializer::from_str(text);
    let fields = de
        .deserialize_map(ObjectVisitor { keys })
        .and_then(|f| de.end().map(|()| f))
        .map_err(|e| {
            let message = if e.is_syntax() || e.is_eof() {
                "the row is not one well-formed JSON object"
            } else {
                "the row must be one JSON object with each field at most once"
            };
            row_error(E::BadFormat, message)
        })?;
    Ok(Fields(fields))
}

struct ObjectVisitor<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> Visitor<'de> for ObjectVisitor<N> {
    type Value = [Option<Scalar<'de>>; N];

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: [Option<Scalar<'de>>; N] = std::array::from_fn(|_| None);
        while let Some(key) = map.next_key_seed(KeySeed { keys: self.keys })? {
            match key {
                Some(i) => {
                    if out[i].is_some() {
                        return Err(de::Error::custom("duplicate field"));
                    }
                    out[i] = Some(map.next_value_seed(ScalarSeed)?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(out)
    }
}

/// Resolves a key to its index in the agency's key list (`None`: not ours).
struct KeySeed<const N: usize> {
    keys: &'static [&'static str; N],
}

impl<'de, const N: usize> DeserializeSeed<'de> for KeySeed<N> {
    type Value = Option<usize>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, const N: usize> Visitor<'de> for KeySeed<N> {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(self.keys.iter().position(|k| *k == v))
    }
}

struct ScalarSeed;

impl<'de> DeserializeSeed<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ScalarSeed {
    type Value = Scalar<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Scalar::Text(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Scalar::Number(v.to_string()))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Scalar::Number(v.to_string()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // The shortest text that reads back as the same double: a JSON number
        // written with at most two decimals comes back exactly as written.
        Ok(Scalar::Number(v.to_string()))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Scalar::Null)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Scalar::Other)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Scalar::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static KEYS: [&str; 3] = ["A", "B", "C"];

    fn texts(row: &str) -> Result<Vec<Raw<'static>>, RowError> {
        let f = parse(row.as_bytes(), &KEYS)?;
        Ok((0..3)
            .map(|i| f.raw(i).map(|o| o.map(|c| Cow::Owned(c.into_owned()))))
            .collect())
    }

    #[test]
    fn strings_numbers_and_absent_values() {
        let got = texts(r#"{"A": " x\u3000", "B": 12, "Z": [1, {"q": 2}]}"#).unwrap();
        assert_eq!(got, [Ok(Some("x".into())), Ok(Some("12".into())), Ok(None)]);
        let got = texts(r#"{"A": null, "B": 3521.5, "C": "NULL"}"#).unwrap();
        assert_eq!(got, [Ok(None), Ok(Some("3521.5".into())), Ok(None)]);
        let got = texts(r#"{"A": true, "B": [], "C": {}}"#).unwrap();
        assert_eq!(
            got,
            [Err(E::BadFormat), Err(E::BadFormat), Err(E::BadFormat)]
        );
        let got = texts(r#"{"A": "\u6c64\u6587"}"#).unwrap();
        assert_eq!(got[0], Ok(Some("汤文".into())));
    }

    #[test]
    fn malformed_rows() {
        for row in [
            "",
            "[]",
            "\"A\"",
            "{\"A\": 1",
            "{\"A\": 1} {}",
            "{\"A\": 1, \"A\": 2}",
            "{A: 1}",
        ] {
            let e = texts(row).err().unwrap();
            assert_eq!((e.field, e.code), ("row", E::BadFormat), "{row:?}");
        }
        let e = parse(b"{\"A\": \"\xFF\"}", &KEYS).err().unwrap();
        assert_eq!((e.field, e.code), ("row", E::Encoding));
    }

    #[test]
    fn error_messages_do_not_quote_the_row() {
        let e = texts(r#"{"A": "340208197803169486", "A": "x"}"#)
            .err()
            .unwrap();
        assert!(!e.message.contains("3402"));
        let e = texts(r#"{"A": "340208197803169486" "B": 1}"#)
            .err()
            .unwrap();
        assert!(!e.message.contains("3402"));
    }
}
