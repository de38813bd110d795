//! Reading the two CSV exports (hrss in GBK, tax in UTF-8 with a byte-order mark).
//!
//! The header is checked once per batch and turned into a column map; each row is
//! then split into exactly the header's number of fields. Rows without quotes are
//! split in place (no allocation); rows with quotes go through the `csv` crate.
//! Fields stay bytes until the adapter decodes them one by one, so a field in the
//! wrong encoding rejects that field (code `encoding`), never the whole batch.

use crate::check::{Raw, clean_cow};
use crate::{BatchError, RowError, RowErrorCode as E};
use std::borrow::Cow;

/// How a CSV export's bytes are turned into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Encoding {
    Gbk,
    Utf8,
}

impl Encoding {
    /// Decodes without replacement: `None` if the bytes are not valid.
    pub fn decode(self, bytes: &[u8]) -> Option<Cow<'_, str>> {
        match self {
            Encoding::Gbk => {
                encoding_rs::GBK.decode_without_bom_handling_and_without_replacement(bytes)
            }
            Encoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
        }
    }

    /// Decodes and normalises one field.
    pub fn raw(self, bytes: &[u8]) -> Raw<'_> {
        self.decode(bytes).map(clean_cow).ok_or(E::Encoding)
    }
}

/// Checks a header against the export's known column names and returns, for each
/// known column (in the order of `known`), its position in the rows.
pub(crate) fn map_header<const N: usize>(
    header: &[u8],
    encoding: Encoding,
    known: &[&'static str; N],
) -> Result<[usize; N], BatchError> {
    let header = strip_eol(header.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(header));
    let record = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(header)
        .byte_records()
        .next()
        .ok_or(BatchError::MissingHeader)?
        .map_err(|_| BatchError::BadHeader("it is not a CSV line"))?;
    let mut positions = [usize::MAX; N];
    for (at, bytes) in record.iter().enumerate() {
        let name = encoding
            .decode(bytes)
            .ok_or(BatchError::HeaderEncoding(at + 1))?;
        let name = crate::rules::normalise(&name);
        let Some(i) = known.iter().position(|k| *k == name) else {
            return Err(BatchError::UnknownColumn {
                position: at + 1,
                name: crate::safe_column_name(&name).then(|| name.into_owned()),
            });
        };
        if positions[i] != usize::MAX {
            return Err(BatchError::DuplicateColumn(known[i]));
        }
        positions[i] = at;
    }
    match positions.iter().position(|p| *p == usize::MAX) {
        Some(i) => Err(BatchError::MissingColumn(known[i])),
        None => Ok(positions),
    }
}

fn strip_eol(mut b: &[u8]) -> &[u8] {
    while let [rest @ .., b'\r' | b'\n'] = b {
        b = rest;
    }
    b
}

/// One row split into its `N` fields.
pub(crate) enum Fields<'a, const N: usize> {
    /// Unquoted row: fields borrowed from the row.
    Plain([&'a [u8]; N]),
    /// Quoted row: fields borrowed, except quoted ones with doubled quotes.
    Quoted([Cow<'a, [u8]>; N]),
}

impl<const N: usize> Fields<'_, N> {
    /// The raw bytes of the field at row position `at` (`at < N`).
    pub fn get(&self, at: usize) -> &[u8] {
        match self {
            Fields::Plain(f) => f.get(at).copied().unwrap_or_default(),
            Fields::Quoted(f) => f.get(at).map(|c| &**c).unwrap_or_default(),
        }
    }
}

fn width_error(found: usize, expected: usize) -> RowError {
    RowError::new(
        "row",
        E::BadFormat,
        format!("the row has {found} fields, the header has {expected}"),
    )
}

fn malformed() -> RowError {
    RowError::new(
        "row",
        E::BadFormat,
        "the row is not one well-formed CSV record",
    )
}

/// Splits one CSV record (without its line ending) into exactly `N` fields.
///
/// Quoting follows RFC 4180: a field that starts with `"` runs to the next `"`
/// not doubled, and must be followed by `,` or the end of the row; inside it,
/// commas, line breaks and doubled quotes are data. A `"` inside an unquoted field
/// is data. A line break outside quotes, an unterminated quoted field or text
/// after a closing quote makes the row malformed. (Hand-written rather than a
/// `csv::Reader` per row, which costs more than the rest of the row's checks.)
pub(crate) fn split<const N: usize>(row: &[u8]) -> Result<Fields<'_, N>, RowError> {
    let row = strip_eol(row);
    if !row.iter().any(|b| matches!(b, b'"' | b'\r' | b'\n')) {
        let mut fields: [&[u8]; N] = [&[]; N];
        let mut n = 0;
        for f in row.split(|b| *b == b',') {
            if let Some(slot) = fields.get_mut(n) {
                *slot = f;
            }
            n += 1;
        }
        return if n == N {
            Ok(Fields::Plain(fields))
        } else {
            Err(width_error(n, N))
        };
    }
    let mut fields: [Cow<'_, [u8]>; N] = std::array::from_fn(|_| Cow::Borrowed(&[][..]));
    let mut n = 0;
    let mut at = 0;
    loop {
        let field: Cow<'_, [u8]>;
        if row.get(at) == Some(&b'"') {
            // Quoted field: find its closing quote, unescaping doubled quotes.
            let mut owned: Option<Vec<u8>> = None;
            let mut from = at + 1;
            let mut i = from;
            loop {
                match row.get(i) {
                    None => return Err(malformed()),
                    Some(b'"') if row.get(i + 1) == Some(&b'"') => {
                        owned
                            .get_or_insert_with(Vec::new)
                            .extend_from_slice(&row[from..=i]);
                        i += 2;
                        from = i;
                    }
                    Some(b'"') => break,
                    Some(_) => i += 1,
                }
            }
            field = match owned {
                Some(mut v) => {
                    v.extend_from_slice(&row[from..i]);
                    Cow::Owned(v)
                }
                None => Cow::Borrowed(&row[from..i]),
            };
            at = i + 1;
            if !matches!(row.get(at), None | Some(b',')) {
                return Err(malformed());
            }
        } else {
            let end = row[at..]
                .iter()
                .position(|b| *b == b',')
                .map_or(row.len(), |p| at + p);
            if row[at..end].iter().any(|b| matches!(b, b'\r' | b'\n')) {
                return Err(malformed());
            }
            field = Cow::Borrowed(&row[at..end]);
            at = end;
        }
        if let Some(slot) = fields.get_mut(n) {
            *slot = field;
        }
        n += 1;
        if at >= row.len() {
            break;
        }
        at += 1; // the comma
        if at == row.len() {
            // A trailing comma: one more, empty field.
            n += 1;
            break;
        }
    }
    if n != N {
        return Err(width_error(n, N));
    }
    Ok(Fields::Quoted(fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: [&str; 3] = ["A", "B", "C"];

    #[test]
    fn header_in_any_order() {
        assert_eq!(
            map_header(b"C,A,B\r", Encoding::Utf8, &KNOWN),
            Ok([1, 2, 0])
        );
        assert_eq!(
            map_header(b"\xEF\xBB\xBFA,B,C", Encoding::Utf8, &KNOWN),
            Ok([0, 1, 2])
        );
        assert_eq!(
            map_header(b" A ,B,\"C\"", Encoding::Utf8, &KNOWN),
            Ok([0, 1, 2])
        );
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            map_header(b"A,B", Encoding::Utf8, &KNOWN),
            Err(BatchError::MissingColumn("C"))
        );
        assert_eq!(
            map_header(b"A,B,C,D", Encoding::Utf8, &KNOWN),
            Err(BatchError::UnknownColumn {
                position: 4,
                name: Some("D".into())
            })
        );
        assert_eq!(
            map_header(b"A,B,A,C", Encoding::Utf8, &KNOWN),
            Err(BatchError::DuplicateColumn("A"))
        );
        assert_eq!(
            map_header(b"A,\xFF,C", Encoding::Utf8, &KNOWN),
            Err(BatchError::HeaderEncoding(2))
        );
        // A data row sent as header: its values are not echoed.
        assert_eq!(
            map_header(b"340208197803169486,B,C", Encoding::Utf8, &KNOWN),
            Err(BatchError::UnknownColumn {
                position: 1,
                name: None
            })
        );
    }

    #[test]
    fn split_plain_and_quoted() {
        let f = split::<3>(b"a,,c\r").unwrap();
        assert!(matches!(f, Fields::Plain(_)));
        assert_eq!(
            (f.get(0), f.get(1), f.get(2)),
            (&b"a"[..], &b""[..], &b"c"[..])
        );
        let f = split::<3>(b"a,\"1,841.00\",\"x\"\"y\"").unwrap();
        assert!(matches!(f, Fields::Quoted(_)));
        assert_eq!(
            (f.get(0), f.get(1), f.get(2)),
            (&b"a"[..], &b"1,841.00"[..], &b"x\"y"[..])
        );
        let f = split::<3>(b"\"\",a\"b,\"l1\nl2\"").unwrap();
        assert_eq!(
            (f.get(0), f.get(1), f.get(2)),
            (&b""[..], &b"a\"b"[..], &b"l1\nl2"[..])
        );
        let f = split::<3>(b"\"a\",b,").unwrap();
        assert_eq!(
            (f.get(0), f.get(1), f.get(2)),
            (&b"a"[..], &b"b"[..], &b""[..])
        );
    }

    #[test]
    fn split_malformed_quoting() {
        for row in [
            &b"\"a,b,c"[..],
            b"\"a\"x,b,c",
            b"\"a\",b\nc,d",
            b"a,\"b\"\"c",
        ] {
            let e = split::<3>(row).err().unwrap();
            assert_eq!((e.field, e.code), ("row", E::BadFormat), "{row:?}");
        }
    }

    #[test]
    fn split_wrong_width() {
        for row in [&b"a,b"[..], b"a,b,c,d", b"", b"a,\"b,c\"", b"a,b\nc,d,e"] {
            let e = split::<3>(row).err().unwrap();
            assert_eq!((e.field, e.code), ("row", E::BadFormat), "{row:?}");
        }
    }
}
