//! Field spellings and row encodings of the simulated exports: the specification's
//! warts (both date formats, thousands separators, full-width digits, ideographic
//! spaces, legacy 15-digit numbers, the many spellings of "absent") and the
//! deliberate faults of bad rows, plus JSON Lines and CSV (GBK or UTF-8) writers.

use super::rng::Rng;
use crate::RowErrorCode;
use crate::model::civil_from_days;
use crate::rules;

/// One field value as an export writes it.
#[derive(Debug, Clone)]
pub(crate) enum V {
    /// A string (JSON string; CSV field).
    S(String),
    /// A JSON number (CSV field).
    N(String),
    /// JSON `null` (CSV empty field).
    Null,
}

/// One export row: the agency's field keys in export order, and whether a field
/// is to be written in an invalid byte sequence (GBK exports only).
#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub fields: Vec<(&'static str, V)>,
    pub bad_bytes_in: Option<&'static str>,
}

impl Row {
    pub fn s(&mut self, key: &'static str, value: impl Into<String>) {
        self.fields.push((key, V::S(value.into())));
    }
    pub fn n(&mut self, key: &'static str, value: impl ToString) {
        self.fields.push((key, V::N(value.to_string())));
    }
    pub fn v(&mut self, key: &'static str, value: V) {
        self.fields.push((key, value));
    }
    fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        self.fields
            .iter_mut()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
    fn text(&self, key: &str) -> String {
        match self.fields.iter().find(|(k, _)| *k == key) {
            Some((_, V::S(s) | V::N(s))) => rules::normalise(s).into_owned(),
            _ => String::new(),
        }
    }
}

/// How a bad row is made bad.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Fault {
    IdChecksum,
    UsccChecksum,
    AreaCode,
    BadDate(&'static str),
    BadAmount,
    UnknownCode(&'static str),
    Missing,
    BadPhone,
    OutOfRange(&'static str),
    Encoding,
}

impl Fault {
    pub const fn code(self) -> RowErrorCode {
        match self {
            Fault::IdChecksum => RowErrorCode::IdChecksum,
            Fault::UsccChecksum => RowErrorCode::UsccChecksum,
            Fault::AreaCode => RowErrorCode::AreaCode,
            Fault::BadDate(_) => RowErrorCode::BadDate,
            Fault::BadAmount => RowErrorCode::BadAmount,
            Fault::UnknownCode(_) => RowErrorCode::UnknownCode,
            Fault::Missing => RowErrorCode::MissingField,
            Fault::BadPhone => RowErrorCode::BadPhone,
            Fault::OutOfRange(_) => RowErrorCode::OutOfRange,
            Fault::Encoding => RowErrorCode::Encoding,
        }
    }

    /// Breaks `field` of `row` so that the adapter must reject it with [`Fault::code`].
    pub fn apply(self, row: &mut Row, field: &'static str) {
        let current = row.text(field);
        let new = match self {
            Fault::IdChecksum => V::S(wrong_id_check(&current)),
            Fault::UsccChecksum => V::S(wrong_uscc_check(&current)),
            Fault::AreaCode => V::S("320102".into()),
            Fault::BadDate(s) | Fault::UnknownCode(s) => V::S(s.into()),
            Fault::BadAmount => V::S("12.345".into()),
            Fault::Missing => V::Null,
            Fault::BadPhone => V::S("1234567".into()),
            Fault::OutOfRange(s) => V::N(s.into()),
            Fault::Encoding => {
                row.bad_bytes_in = Some(field);
                return;
            }
        };
        if let Some(v) = row.get_mut(field) {
            *v = new;
        }
    }
}

/// An identity number (18, or legacy 15, digits) with a wrong check character.
fn wrong_id_check(id: &str) -> String {
    let mut b = id.as_bytes().to_vec();
    if b.len() == 15 {
        b.splice(6..6, *b"19");
        b.push(b'0');
    }
    if b.len() != 18 {
        return "340202199001011230".into();
    }
    let right = rules::id_check_char(&b[..17]).unwrap_or(b'0');
    const CHECK: &[u8; 11] = b"10X98765432";
    let at = CHECK.iter().position(|c| *c == right).unwrap_or(0);
    b[17] = CHECK[(at + 1) % 11];
    String::from_utf8(b).unwrap_or_default()
}

/// A credit code with a wrong check character (its organisation code stays valid).
fn wrong_uscc_check(code: &str) -> String {
    let mut b = code.as_bytes().to_vec();
    if b.len() != 18 {
        return "91340200MA2N0000X1".into();
    }
    let at = rules::USCC_ALPHABET
        .iter()
        .position(|c| *c == b[17])
        .unwrap_or(0);
    b[17] = rules::USCC_ALPHABET[(at + 1) % 31];
    String::from_utf8(b).unwrap_or_default()
}

// ─────────────────────────────── spellings (warts) ───────────────────────────────

/// Full-width ASCII (U+FF01–U+FF5E) for every printable ASCII character.
pub(crate) fn full_width(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(c as u32 + 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .collect()
}

/// Now and then surrounds a value with ASCII or ideographic spaces.
pub(crate) fn padded(s: String, r: &mut Rng, ppm: u32) -> String {
    if !r.ppm(ppm) {
        return s;
    }
    match r.below(3) {
        0 => format!("{s}\u{3000}"),
        1 => format!(" {s}\u{3000}"),
        _ => format!("  {s} "),
    }
}

/// An identity number as an agency clerk may have typed it: mostly as is, now and
/// then in its legacy 15-digit form (born before 1985, where `legacy` allows it),
/// with full-width digits, a lower-case `x`, or padded with spaces.
pub(crate) fn id_spelling(id: &str, birth_year: i32, legacy: bool, r: &mut Rng) -> String {
    let s = if legacy && birth_year < 1985 && r.ppm(150_000) {
        format!("{}{}", &id[..6], &id[8..17])
    } else if id.ends_with('X') && r.ppm(300_000) {
        id.to_ascii_lowercase()
    } else {
        id.to_owned()
    };
    let s = if r.ppm(10_000) { full_width(&s) } else { s };
    padded(s, r, 10_000)
}

/// A name with its interpunct (if any) in one of the spellings the specification
/// lists; `gbk` keeps to characters GBK can encode.
pub(crate) fn name_spelling(name: &str, gbk: bool, r: &mut Rng) -> String {
    let n = if name.contains('·') && !gbk {
        match r.below(3) {
            0 => name.replace('·', "\u{2022}"),
            1 => name.replace('·', "\u{30FB}"),
            _ => name.to_owned(),
        }
    } else {
        name.to_owned()
    };
    padded(n, r, 10_000)
}

/// An "absent" value in one of its spellings.
pub(crate) fn absent(r: &mut Rng, json: bool) -> V {
    match r.below(if json { 6 } else { 5 }) {
        0 => V::S(String::new()),
        1 => V::S("NULL".into()),
        2 => V::S("null".into()),
        3 => V::S("\\N".into()),
        4 => V::S("-".into()),
        _ => V::Null,
    }
}

/// A date as `YYYYMMDD` or `YYYY-MM-DD` (both occur, even within one file).
pub(crate) fn date(d: (i32, u8, u8), r: &mut Rng) -> String {
    let (y, m, d) = d;
    if r.ppm(500_000) {
        format!("{y:04}{m:02}{d:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02}")
    }
}

/// Beijing local seconds (since 1970-01-01 00:00 local) of a date.
pub(crate) fn local_seconds(y: i32, m: u8, d: u8) -> i64 {
    crate::model::days_from_civil(i64::from(y), u32::from(m), u32::from(d)) * 86_400
}

/// A change timestamp in either of its formats.
pub(crate) fn stamp(secs: i64, r: &mut Rng) -> String {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    let (hh, mm, ss) = (s / 3600, s / 60 % 60, s % 60);
    if r.ppm(500_000) {
        format!("{y:04}{m:02}{d:02}{hh:02}{mm:02}{ss:02}")
    } else {
        format!("{y:04}-{m:02}-{d:02} {hh:02}:{mm:02}:{ss:02}")
    }
}

/// The date of Beijing local seconds.
pub(crate) fn date_of(secs: i64) -> (i32, u8, u8) {
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    (y as i32, m as u8, d as u8)
}

/// A money amount in fen, spelled as exports do: two decimals, one, none when
/// whole, and (CSV exports only) thousands separators.
pub(crate) fn money(fen: i64, r: &mut Rng, csv: bool) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    let (yuan, cents) = (a / 100, a % 100);
    let int = if csv && yuan >= 1000 && r.ppm(250_000) {
        let digits = yuan.to_string();
        let mut out = String::with_capacity(digits.len() + digits.len() / 3);
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i) % 3 == 0 {
                out.push(',');
            }
            out.push(c);
        }
        out
    } else {
        yuan.to_string()
    };
    match r.below(10) {
        0 if cents == 0 => format!("{sign}{int}"),
        1 if cents % 10 == 0 => format!("{sign}{int}.{}", cents / 10),
        _ => format!("{sign}{int}.{cents:02}"),
    }
}

// ──────────────────────────────────── encoders ────────────────────────────────────

/// Appends a row as one JSON object and a newline.
pub(crate) fn write_json(out: &mut Vec<u8>, row: &Row) {
    out.push(b'{');
    for (i, (k, v)) in row.fields.iter().enumerate() {
        if i > 0 {
            out.extend_from_slice(b", ");
        }
        out.push(b'"');
        out.extend_from_slice(k.as_bytes());
        out.extend_from_slice(b"\": ");
        match v {
            V::S(s) => json_string(out, s),
            V::N(n) => out.extend_from_slice(n.as_bytes()),
            V::Null => out.extend_from_slice(b"null"),
        }
    }
    out.extend_from_slice(b"}\n");
}

fn json_string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    for c in s.chars() {
        match c {
            '"' => out.extend_from_slice(b"\\\""),
            '\\' => out.extend_from_slice(b"\\\\"),
            c if (c as u32) < 0x20 => {
                out.extend_from_slice(format!("\\u{:04x}", c as u32).as_bytes());
            }
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    out.push(b'"');
}

/// Appends a CSV line (CR LF, as spreadsheet exports end lines) in GBK or UTF-8,
/// quoting fields that hold a comma or a quote.
pub(crate) fn write_csv(out: &mut Vec<u8>, fields: &[&str], gbk: bool, bad_at: Option<usize>) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        let quote = f.contains([',', '"']);
        if quote {
            out.push(b'"');
        }
        let quoted;
        let text = if quote {
            quoted = f.replace('"', "\"\"");
            quoted.as_str()
        } else {
            f
        };
        if gbk {
            let (bytes, _, _) = encoding_rs::GBK.encode(text);
            out.extend_from_slice(&bytes);
        } else {
            out.extend_from_slice(text.as_bytes());
        }
        if bad_at == Some(i) {
            // 0xFF is a lead byte in neither GBK nor UTF-8.
            out.push(0xFF);
        }
        if quote {
            out.push(b'"');
        }
    }
    out.extend_from_slice(b"\r\n");
}

/// The text of a row's fields, in order, for a CSV line (`null` is an empty field).
pub(crate) fn csv_fields(row: &Row) -> (Vec<&str>, Option<usize>) {
    let fields = row
        .fields
        .iter()
        .map(|(_, v)| match v {
            V::S(s) | V::N(s) => s.as_str(),
            V::Null => "",
        })
        .collect();
    let bad = row
        .bad_bytes_in
        .and_then(|f| row.fields.iter().position(|(k, _)| *k == f));
    (fields, bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_and_spellings_follow_the_rules() {
        let id = "340202199001011237";
        let id = format!(
            "{}{}",
            &id[..17],
            rules::id_check_char(&id.as_bytes()[..17]).unwrap() as char
        );
        assert_eq!(
            rules::parse_identity_number(&wrong_id_check(&id)),
            Err(RowErrorCode::IdChecksum)
        );
        let legacy = format!("{}{}", &id[..6], &id[8..17]);
        assert_eq!(
            rules::parse_identity_number(&wrong_id_check(&legacy)),
            Err(RowErrorCode::IdChecksum)
        );
        assert!(rules::parse_identity_number(&full_width(&id)).is_ok());
        let mut r = Rng::derive(1, 1, 1);
        for fen in [0, 5, 120_000, 123_456_789, -4_500] {
            for _ in 0..20 {
                let m = money(fen, &mut r, true);
                assert_eq!(rules::money(&m), Ok(fen), "{m}");
            }
        }
        for _ in 0..20 {
            assert!(rules::date(&date((2024, 2, 29), &mut r)).is_ok());
            assert!(rules::timestamp(&stamp(local_seconds(2025, 3, 1) + 3_599, &mut r)).is_ok());
        }
    }
}
