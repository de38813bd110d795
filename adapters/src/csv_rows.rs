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
        .map_err(|_| BatchError::BadHeader("it is not a CSV line".into()))?;
    let mut positions = [usize::MAX; N];
    for (at, bytes) in record.iter().enumerate() {
        let name = encoding.decode(bytes).ok_or_else(|| {
            BatchError::BadHeader(format!(
                "column {} is not valid in the export's encoding",
                at + 1
            ))
        })?;
        let name = crate::rules::normalise(&name);
        let Some(i) = known.iter().position(|k| *k == name) else {
            return Err(BatchError::UnknownColumn(shown_column(&name, at)));
        };
        if positions[i] != usize::MAX {
            return Err(BatchError::DuplicateColumn(known[i].to_owned()));
        }
        positions[i] = at;
    }
    match positions.iter().position(|p| *p == usize::MAX) {
        Some(i) => Err(BatchError::MissingColumn(known[i].to_owned())),
        None => Ok(positions),
    }
}

/// An unknown column's name as reported back: a header that is in fact a data row
/// would otherwise echo personal data, so names with digits or of unusual length
/// are replaced by their position.
fn shown_column(name: &str, at: usize) -> String {
    let plausible = (1..=32).contains(&name.chars().count())
        && !name.chars().any(|c| c.is_ascii_digit() || c.is_control());
    if plausible {
        name.to_owned()
    } else {
        format!("#{} (name not shown)", at + 1)
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
    /// Quoted row, parsed by the `csv` crate.
    Quoted(csv::ByteRecord),
}

impl<const N: usize> Fields<'_, N> {
    /// The raw bytes of the field at row position `at` (`at < N`).
    pub fn get(&self, at: usize) -> &[u8] {
        match self {
            Fields::Plain(f) => f.get(at).copied().unwrap_or_default(),
            Fields::Quoted(r) => r.get(at).unwrap_or_default(),
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

/// Splits one CSV record (without its line ending) into exactly `N` fields.
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
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .buffer_capacity(row.len().clamp(64, 1 << 16))
        .from_reader(row);
    let mut record = csv::ByteRecord::new();
    let malformed = || {
        RowError::new(
            "row",
            E::BadFormat,
            "the row is not one well-formed CSV record",
        )
    };
    if !reader
        .read_byte_record(&mut record)
        .map_err(|_| malformed())?
    {
        return Err(width_error(0, N));
    }
    let mut extra = csv::ByteRecord::new();
    if reader
        .read_byte_record(&mut extra)
        .map_err(|_| malformed())?
    {
        return Err(malformed());
    }
    if record.len() != N {
        return Err(width_error(record.len(), N));
    }
    Ok(Fields::Quoted(record))
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
            Err(BatchError::MissingColumn("C".into()))
        );
        assert_eq!(
            map_header(b"A,B,C,D", Encoding::Utf8, &KNOWN),
            Err(BatchError::UnknownColumn("D".into()))
        );
        assert_eq!(
            map_header(b"A,B,A,C", Encoding::Utf8, &KNOWN),
            Err(BatchError::DuplicateColumn("A".into()))
        );
        assert!(matches!(
            map_header(b"A,\xFF,C", Encoding::Utf8, &KNOWN),
            Err(BatchError::BadHeader(_))
        ));
        // A data row sent as header: its values are not echoed.
        assert_eq!(
            map_header(b"340208197803169486,B,C", Encoding::Utf8, &KNOWN),
            Err(BatchError::UnknownColumn("#1 (name not shown)".into()))
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
    }

    #[test]
    fn split_wrong_width() {
        for row in [&b"a,b"[..], b"a,b,c,d", b"", b"a,\"b,c\"", b"a,b\nc,d,e"] {
            let e = split::<3>(row).err().unwrap();
            assert_eq!((e.field, e.code), ("row", E::BadFormat), "{row:?}");
        }
    }
}
