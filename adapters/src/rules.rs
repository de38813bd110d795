//! The common rules of the interface specification (§1), shared by every adapter.
//!
//! Each rule is a small pure function over text that has already been normalised
//! with [`clean`] (or [`normalise`]): it returns the canonical value or the stable
//! [`RowErrorCode`] the row is rejected with. Nothing here ever echoes a raw value
//! or panics, whatever the input. "Today" (for birth dates that must not lie in the
//! future) is a parameter; [`today`] reads it from the system clock in Beijing time.

use crate::RowErrorCode as E;
use crate::model::{
    ChangeType, CreditCode, Date, IdentityNumber, Timestamp, YearMonth, days_from_civil,
};
use std::borrow::Cow;

// ───────────────────────────── §1.2 text normalisation ─────────────────────────────

/// Trims white space (including the ideographic space U+3000) and converts
/// full-width ASCII (U+FF01–U+FF5E) to ASCII. Borrows when nothing changes.
pub fn normalise(raw: &str) -> Cow<'_, str> {
    let trimmed = raw.trim_matches(char::is_whitespace);
    // Every full-width ASCII character is encoded as EF BC xx or EF BD xx.
    if !trimmed.as_bytes().contains(&0xEF) || !trimmed.chars().any(is_full_width_ascii) {
        return Cow::Borrowed(trimmed);
    }
    // Full-width ASCII never maps to white space, so the result stays trimmed.
    Cow::Owned(trimmed.chars().map(fold_full_width).collect())
}

fn is_full_width_ascii(c: char) -> bool {
    ('\u{FF01}'..='\u{FF5E}').contains(&c)
}

fn fold_full_width(c: char) -> char {
    if is_full_width_ascii(c) {
        char::from_u32(c as u32 - 0xFEE0).unwrap_or(c)
    } else {
        c
    }
}

/// The spellings that mean "absent" once normalised: empty, `NULL`, `null`, `\N`, `-`.
pub fn is_absent(normalised: &str) -> bool {
    matches!(normalised, "" | "NULL" | "null" | "\\N" | "-")
}

/// Normalises a raw field value; `None` when it is absent.
pub fn clean(raw: &str) -> Option<Cow<'_, str>> {
    let s = normalise(raw);
    (!is_absent(&s)).then_some(s)
}

/// Normalises the interpunct of minority names (`•` U+2022, `・` U+30FB) to `·`
/// U+00B7; every other character, CJK included, is kept unchanged.
pub fn normalise_name(s: &str) -> Cow<'_, str> {
    if s.contains(['\u{2022}', '\u{30FB}']) {
        Cow::Owned(s.replace(['\u{2022}', '\u{30FB}'], "\u{B7}"))
    } else {
        Cow::Borrowed(s)
    }
}

/// A name of `min..=max` characters (after [`normalise_name`]).
pub fn name(s: &str, min: usize, max: usize) -> Result<Cow<'_, str>, E> {
    let n = s.chars().count();
    if n < min || n > max {
        return Err(E::OutOfRange);
    }
    Ok(normalise_name(s))
}

// ─────────────────────────────── calendar helpers ───────────────────────────────

/// Today's date in Beijing (UTC+8), from the system clock.
pub fn today() -> Date {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2))
        .unwrap_or(0);
    date_of_days((secs + BEIJING_OFFSET).div_euclid(86_400))
}

const BEIJING_OFFSET: i64 = 8 * 3600;

fn date_of_days(days: i64) -> Date {
    let (y, m, d) = crate::model::civil_from_days(days);
    Date {
        year: i32::try_from(y).unwrap_or(i32::MAX),
        month: m as u8,
        day: d as u8,
    }
}

fn is_leap(year: i32) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap(year) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A real calendar date with a four-digit year (0001–9999).
pub fn calendar_date(year: i32, month: u8, day: u8) -> Option<Date> {
    ((1..=9999).contains(&year) && day >= 1 && day <= days_in_month(year, month)).then_some(Date {
        year,
        month,
        day,
    })
}

/// The value of an all-ASCII-digit slice (at most 18 digits), else `None`.
pub fn digits_value(b: &[u8]) -> Option<u64> {
    if b.is_empty() || b.len() > 18 || !b.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(b.iter().fold(0u64, |acc, c| acc * 10 + u64::from(c - b'0')))
}

fn num<T: TryFrom<u64>>(b: &[u8]) -> Option<T> {
    digits_value(b).and_then(|v| T::try_from(v).ok())
}

// ───────────────────────── §1.3 resident identity number ─────────────────────────

const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
const ID_CHECK: &[u8; 11] = b"10X98765432";

/// The check character of an identity number from its first 17 digits, or `None`
/// if they are not 17 ASCII digits.
pub fn id_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 || !first17.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let sum: u32 = first17
        .iter()
        .zip(ID_WEIGHTS)
        .map(|(c, w)| u32::from(c - b'0') * w)
        .sum();
    Some(ID_CHECK[(sum % 11) as usize])
}

/// Whether the two digits are a valid province code (GB/T 2260 first level).
pub fn is_province_code(code: u8) -> bool {
    matches!(code, 11..=15 | 21..=23 | 31..=37 | 41..=46 | 50..=54 | 61..=65 | 71 | 81 | 82)
}

/// Validates a normalised identity number (18 characters, or legacy 15 digits that
/// are upgraded) against `today`; see §1.3. Codes: `id_format`, `id_checksum`,
/// `id_birth_date`.
pub fn identity_number(s: &str, today: Date) -> Result<IdentityNumber, E> {
    let b = s.as_bytes();
    let mut id = [0u8; 18];
    match b.len() {
        18 => {
            if !b[..17].iter().all(u8::is_ascii_digit) {
                return Err(E::IdFormat);
            }
            id[..17].copy_from_slice(&b[..17]);
            id[17] = match b[17] {
                c @ b'0'..=b'9' => c,
                b'X' | b'x' => b'X',
                _ => return Err(E::IdFormat),
            };
        }
        15 => {
            if !b.iter().all(u8::is_ascii_digit) {
                return Err(E::IdFormat);
            }
            id[..6].copy_from_slice(&b[..6]);
            id[6..8].copy_from_slice(b"19");
            id[8..17].copy_from_slice(&b[6..15]);
            id[17] = id_check_char(&id[..17]).ok_or(E::IdFormat)?;
        }
        _ => return Err(E::IdFormat),
    }
    if !num::<u8>(&id[..2]).is_some_and(is_province_code) {
        return Err(E::IdFormat);
    }
    if id_check_char(&id[..17]) != Some(id[17]) {
        return Err(E::IdChecksum);
    }
    let birth = (|| calendar_date(num(&id[6..10])?, num(&id[10..12])?, num(&id[12..14])?))()
        .ok_or(E::IdBirthDate)?;
    let earliest = Date {
        year: 1900,
        month: 1,
        day: 1,
    };
    if birth < earliest || birth > today {
        return Err(E::IdBirthDate);
    }
    // Every byte is an ASCII digit or `X`, so this is valid UTF-8.
    let text = std::str::from_utf8(&id).map_err(|_| E::IdFormat)?;
    Ok(IdentityNumber::from_validated(text.to_owned()))
}

/// Normalises and validates a raw identity number against today's date (Beijing).
pub fn parse_identity_number(raw: &str) -> Result<IdentityNumber, E> {
    identity_number(&normalise(raw), today())
}

/// Whether `b` is 18 characters whose check character matches (17 digits then a
/// digit, `X` or `x`). Used to recognise identity numbers inside free text.
pub fn has_id_checksum(b: &[u8]) -> bool {
    b.len() == 18 && id_check_char(&b[..17]).is_some_and(|c| c == b[17].to_ascii_uppercase())
}

// ───────────────────────── §1.4 unified social credit code ─────────────────────────

/// The 31-character alphabet of unified social credit codes (no I, O, Z, S, V).
pub const USCC_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
const USCC_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];
const ORG_WEIGHTS: [u32; 8] = [3, 7, 9, 10, 5, 8, 4, 2];

fn uscc_index(c: u8) -> Option<u32> {
    USCC_ALPHABET.iter().position(|&a| a == c).map(|i| i as u32)
}

/// The check character (position 18) of a credit code from its first 17 characters.
pub fn uscc_check_char(first17: &[u8]) -> Option<u8> {
    if first17.len() != 17 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in first17.iter().zip(USCC_WEIGHTS) {
        sum += uscc_index(c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(USCC_ALPHABET[check as usize])
}

/// The GB 11714 organisation-code check character from its first eight characters
/// (digits, or letters worth 10 + their position in A–Z).
pub fn org_code_check_char(first8: &[u8]) -> Option<u8> {
    if first8.len() != 8 {
        return None;
    }
    let mut sum = 0u32;
    for (&c, w) in first8.iter().zip(ORG_WEIGHTS) {
        let v = match c {
            b'0'..=b'9' => u32::from(c - b'0'),
            b'A'..=b'Z' => 10 + u32::from(c - b'A'),
            _ => return None,
        };
        sum += v * w;
    }
    Some(match 11 - sum % 11 {
        10 => b'X',
        11 => b'0',
        v => b'0' + v as u8,
    })
}

/// Validates a normalised unified social credit code (§1.4). Codes: `uscc_format`,
/// `uscc_checksum`.
pub fn credit_code(s: &str) -> Result<CreditCode, E> {
    let b = s.as_bytes();
    if b.len() != 18
        || !b.iter().all(|c| USCC_ALPHABET.contains(c))
        || !matches!(b[0], b'1'..=b'9' | b'A' | b'N' | b'Y')
        || !b[2..8].iter().all(u8::is_ascii_digit)
    {
        return Err(E::UsccFormat);
    }
    if uscc_check_char(&b[..17]) != Some(b[17]) || org_code_check_char(&b[8..16]) != Some(b[16]) {
        return Err(E::UsccChecksum);
    }
    Ok(CreditCode::from_validated(s.to_owned()))
}

/// Normalises and validates a raw unified social credit code.
pub fn parse_credit_code(raw: &str) -> Result<CreditCode, E> {
    credit_code(&normalise(raw))
}

// ─────────────────────────── §1.5 dates, times, money ───────────────────────────

/// A date written `YYYYMMDD` or `YYYY-MM-DD`. Code: `bad_date`.
pub fn date(s: &str) -> Result<Date, E> {
    let b = s.as_bytes();
    let (y, m, d) = match b.len() {
        8 => (&b[..4], &b[4..6], &b[6..8]),
        10 if b[4] == b'-' && b[7] == b'-' => (&b[..4], &b[5..7], &b[8..10]),
        _ => return Err(E::BadDate),
    };
    (|| calendar_date(num(y)?, num(m)?, num(d)?))().ok_or(E::BadDate)
}

/// A month written `YYYYMM`. Code: `bad_date`.
pub fn year_month(s: &str) -> Result<YearMonth, E> {
    let b = s.as_bytes();
    if b.len() != 6 {
        return Err(E::BadDate);
    }
    let year = num::<i32>(&b[..4]).filter(|y| *y >= 1).ok_or(E::BadDate)?;
    let month = num::<u8>(&b[4..])
        .filter(|m| (1..=12).contains(m))
        .ok_or(E::BadDate)?;
    Ok(YearMonth { year, month })
}

/// A year written `YYYY`. Code: `bad_date`.
pub fn year(s: &str) -> Result<i32, E> {
    if s.len() != 4 {
        return Err(E::BadDate);
    }
    num::<i32>(s.as_bytes())
        .filter(|y| *y >= 1)
        .ok_or(E::BadDate)
}

/// A Beijing-time timestamp written `YYYYMMDDHHMMSS` or `YYYY-MM-DD HH:MM:SS`,
/// as UTC seconds. Code: `bad_date`.
pub fn timestamp(s: &str) -> Result<Timestamp, E> {
    let b = s.as_bytes();
    let (d, h, mi, se) = match b.len() {
        14 => (&b[..8], &b[8..10], &b[10..12], &b[12..14]),
        19 if b[10] == b' ' && b[13] == b':' && b[16] == b':' => {
            (&b[..10], &b[11..13], &b[14..16], &b[17..19])
        }
        _ => return Err(E::BadDate),
    };
    let day = date(std::str::from_utf8(d).map_err(|_| E::BadDate)?)?;
    let (h, mi, se) = (|| Some((num::<i64>(h)?, num::<i64>(mi)?, num::<i64>(se)?)))()
        .filter(|(h, mi, se)| *h < 24 && *mi < 60 && *se < 60)
        .ok_or(E::BadDate)?;
    let days = days_from_civil(
        i64::from(day.year),
        u32::from(day.month),
        u32::from(day.day),
    );
    Ok(Timestamp(
        days * 86_400 + h * 3600 + mi * 60 + se - BEIJING_OFFSET,
    ))
}

/// Decimal yuan → exact fen: optional `-`, digits with optional thousands
/// separators (`1,200`), at most two decimals. Negative amounts are returned as
/// such; the caller decides whether they are allowed. Code: `bad_amount`.
pub fn money(s: &str) -> Result<i64, E> {
    let (negative, body) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = match body.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (body, None),
    };
    if int.is_empty() {
        return Err(E::BadAmount);
    }
    let mut yuan: i64 = 0;
    let groups: Vec<&str> = int.split(',').collect();
    let grouped = groups.len() > 1;
    for (i, g) in groups.iter().enumerate() {
        let ok_len = match (grouped, i) {
            (false, _) => !g.is_empty(),
            (true, 0) => (1..=3).contains(&g.len()),
            (true, _) => g.len() == 3,
        };
        if !ok_len || !g.bytes().all(|c| c.is_ascii_digit()) {
            return Err(E::BadAmount);
        }
        for c in g.bytes() {
            yuan = yuan
                .checked_mul(10)
                .and_then(|v| v.checked_add(i64::from(c - b'0')))
                .ok_or(E::BadAmount)?;
        }
    }
    let fen_part = match frac {
        None => 0,
        Some(f) if (1..=2).contains(&f.len()) && f.bytes().all(|c| c.is_ascii_digit()) => {
            let v = num::<i64>(f.as_bytes()).ok_or(E::BadAmount)?;
            if f.len() == 1 { v * 10 } else { v }
        }
        Some(_) => return Err(E::BadAmount),
    };
    let fen = yuan
        .checked_mul(100)
        .and_then(|v| v.checked_add(fen_part))
        .ok_or(E::BadAmount)?;
    Ok(if negative { -fen } else { fen })
}

/// [`money`] that must not be negative. Code: `bad_amount`.
pub fn non_negative_money(s: &str) -> Result<i64, E> {
    money(s).and_then(|v| if v < 0 { Err(E::BadAmount) } else { Ok(v) })
}

/// A non-negative integer of plain ASCII digits in `min..=max`: `bad_format` when it
/// is not a number, `out_of_range` when it is outside the range.
pub fn integer_in(s: &str, min: i64, max: i64) -> Result<i64, E> {
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let v = num::<i64>(digits.as_bytes()).ok_or(E::BadFormat)?;
    let v = if negative { -v } else { v };
    if (min..=max).contains(&v) {
        Ok(v)
    } else {
        Err(E::OutOfRange)
    }
}

/// A string of exactly `min..=max` ASCII digits. Code: `bad_format`.
pub fn digit_string(s: &str, min: usize, max: usize) -> Result<(), E> {
    if (min..=max).contains(&s.len()) && s.bytes().all(|c| c.is_ascii_digit()) {
        Ok(())
    } else {
        Err(E::BadFormat)
    }
}

// ─────────────────────── §1.6 change type, §1.7 / §1.8 code tables ───────────────────────

/// `BGLX`: `1` new, `2` update, `3` cancel. Code: `unknown_code`.
pub fn change_type(s: &str) -> Result<ChangeType, E> {
    match s {
        "1" => Ok(ChangeType::New),
        "2" => Ok(ChangeType::Update),
        "3" => Ok(ChangeType::Cancel),
        _ => Err(E::UnknownCode),
    }
}

/// The current Wuhu division codes (GB/T 2260) with their names.
pub const WUHU_DIVISIONS: [(&str, &str); 8] = [
    ("340200", "芜湖市"),
    ("340202", "镜湖区"),
    ("340207", "鸠江区"),
    ("340209", "弋江区"),
    ("340210", "湾沚区"),
    ("340212", "繁昌区"),
    ("340223", "南陵县"),
    ("340281", "无为市"),
];

/// A current Wuhu division code for an address field. Code: `area_code`.
pub fn wuhu_division(s: &str) -> Result<&'static str, E> {
    WUHU_DIVISIONS
        .iter()
        .find(|(code, _)| *code == s)
        .map(|(code, _)| *code)
        .ok_or(E::AreaCode)
}

/// The value of `s` in a code table, as the table's own `'static` string.
/// Code: `unknown_code`.
pub fn code_in(s: &str, table: &[&'static str]) -> Result<&'static str, E> {
    table
        .iter()
        .copied()
        .find(|c| *c == s)
        .ok_or(E::UnknownCode)
}

/// Sex codes (GB/T 2261.1): `0` unknown, `1` male, `2` female, `9` not stated.
pub const SEX_CODES: &[&str] = &["0", "1", "2", "9"];

/// A sex code. Code: `unknown_code`.
pub fn sex(s: &str) -> Result<&'static str, E> {
    code_in(s, SEX_CODES)
}

/// An ethnicity code (GB/T 3304): `01`–`56`, `97`, `98`; a single digit is read
/// with a leading zero (`1` → `01`). Returns the two-digit code. Code: `unknown_code`.
pub fn ethnicity(s: &str) -> Result<String, E> {
    if !(1..=2).contains(&s.len()) {
        return Err(E::UnknownCode);
    }
    match num::<u8>(s.as_bytes()) {
        Some(v @ (1..=56 | 97 | 98)) => Ok(format!("{v:02}")),
        _ => Err(E::UnknownCode),
    }
}

// ───────────────────────────────── phone numbers ─────────────────────────────────

/// A mainland mobile number: `1[3-9]` followed by nine digits.
pub fn is_mobile(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 11
        && b[0] == b'1'
        && (b'3'..=b'9').contains(&b[1])
        && b.iter().all(u8::is_ascii_digit)
}

// ─────────────────────── personal identifiers inside other text ───────────────────────

/// A personal identifier found inside a value that is not meant to hold one
/// (a batch id, a case number, free text on its way to the audit log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdentifierKind {
    /// An 18-character resident identity number (GB 11643).
    IdentityNumber,
    /// A 15-digit identity number of the old form.
    LegacyIdentityNumber,
    /// A mainland mobile number, alone or after the country code `86`.
    Mobile,
}

/// Birth dates are only checked to be real dates here: a number typed into
/// the wrong field is an identifier whatever the clock says.
const ANY_BIRTH_DATE: Date = Date {
    year: 9999,
    month: 12,
    day: 31,
};

/// What one whole run of digits is (ASCII digits; for 18 characters the last
/// may be `X` or `x`). An identity number must be one an agency's export
/// would carry: valid province code, real birth date from 1900 and, for 18
/// characters, the GB 11643 check character. So date-like runs
/// (`20261205…`, province `20`) and most counters are not identifiers, and a
/// run of any other length never is.
pub fn identifier_kind(run: &[u8]) -> Option<IdentifierKind> {
    let text = std::str::from_utf8(run).ok()?;
    match run.len() {
        18 => identity_number(text, ANY_BIRTH_DATE)
            .is_ok()
            .then_some(IdentifierKind::IdentityNumber),
        15 => identity_number(text, ANY_BIRTH_DATE)
            .is_ok()
            .then_some(IdentifierKind::LegacyIdentityNumber),
        13 if text.starts_with("86") && is_mobile(&text[2..]) => Some(IdentifierKind::Mobile),
        11 => is_mobile(text).then_some(IdentifierKind::Mobile),
        _ => None,
    }
}

/// The first personal identifier held in `text`, if any. The text is split
/// into maximal runs of digits (ASCII or full-width; a 17-digit run takes a
/// following `X` as its check character), and each run is judged whole by
/// [`identifier_kind`]: `batch-110101199003074518` holds one, a run of
/// another length (a timestamp, a 20-digit counter) is never searched inside.
/// That keeps ordinary ids of dates and counters clear of false positives; an
/// identifier glued to further digits is not found, and is left to the
/// forms that bound such values.
pub fn find_identifier(text: &str) -> Option<IdentifierKind> {
    let mut found = None;
    for_each_digit_run(text, |run, _| {
        found = identifier_kind(run);
        found.is_some()
    });
    found
}

/// Calls `visit` with each maximal digit run of `text` (normalised to ASCII,
/// at most 19 characters kept: longer runs are no identifier) and the byte
/// range it spans, until `visit` returns true.
pub fn for_each_digit_run(
    text: &str,
    mut visit: impl FnMut(&[u8], std::ops::Range<usize>) -> bool,
) {
    let digit = |c: char| -> Option<u8> {
        match c {
            '0'..='9' => Some(c as u8),
            '\u{FF10}'..='\u{FF19}' => Some(b'0' + (c as u32 - 0xFF10) as u8),
            _ => None,
        }
    };
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if digit(c).is_none() {
            chars.next();
            continue;
        }
        let (mut run, mut len, mut end) = ([0u8; 19], 0usize, start);
        while let Some(&(at, c)) = chars.peek() {
            let Some(d) = digit(c) else { break };
            if len < run.len() {
                run[len] = d;
            }
            len += 1;
            end = at + c.len_utf8();
            chars.next();
        }
        if len == 17
            && let Some(&(at, c @ ('X' | 'x' | '\u{FF38}' | '\u{FF58}'))) = chars.peek()
        {
            run[17] = b'X';
            len = 18;
            end = at + c.len_utf8();
            chars.next();
        }
        if visit(&run[..len.min(run.len())], start..end) {
            return;
        }
    }
}

/// A Wuhu landline: `0553-` followed by seven or eight digits.
pub fn is_wuhu_landline(s: &str) -> bool {
    s.strip_prefix("0553-")
        .is_some_and(|n| (7..=8).contains(&n.len()) && n.bytes().all(|c| c.is_ascii_digit()))
}

/// A contact phone: mobile or Wuhu landline. Code: `bad_phone`.
pub fn phone(s: &str) -> Result<(), E> {
    if is_mobile(s) || is_wuhu_landline(s) {
        Ok(())
    } else {
        Err(E::BadPhone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: Date = Date {
        year: 2026,
        month: 6,
        day: 30,
    };

    fn id(s: &str) -> Result<String, E> {
        identity_number(s, TODAY).map(|i| i.expose().to_owned())
    }

    #[test]
    fn normalise_trims_and_folds_full_width() {
        assert_eq!(normalise("  abc\u{3000}"), "abc");
        assert_eq!(normalise("\u{3000}３４０２Ｘ\t"), "3402X");
        assert_eq!(normalise("！～"), "!~");
        assert!(matches!(normalise(" x "), Cow::Borrowed("x")));
        assert_eq!(normalise("芜湖市"), "芜湖市");
        assert_eq!(normalise("\u{3000}"), "");
    }

    #[test]
    fn absent_markers() {
        for s in [
            "",
            " ",
            "NULL",
            "null",
            "\\N",
            "-",
            "\u{3000}-\u{3000}",
            "－",
        ] {
            assert!(clean(s).is_none(), "{s:?} should be absent");
        }
        for s in ["0", "Null", "--", "N"] {
            assert!(clean(s).is_some(), "{s:?} should be present");
        }
    }

    #[test]
    fn interpuncts_become_middle_dot() {
        assert_eq!(normalise_name("买买提•艾力"), "买买提·艾力");
        assert_eq!(normalise_name("买买提・艾力"), "买买提·艾力");
        assert_eq!(normalise_name("买买提·艾力"), "买买提·艾力");
        assert_eq!(normalise_name("汤文国"), "汤文国");
        assert_eq!(name("", 1, 30), Err(E::OutOfRange));
        assert_eq!(name(&"张".repeat(31), 1, 30), Err(E::OutOfRange));
        assert_eq!(name(&"张".repeat(30), 1, 30).unwrap().chars().count(), 30);
    }

    #[test]
    fn identity_number_known_answers() {
        assert_eq!(id_check_char(b"11010519491231002"), Some(b'X'));
        assert_eq!(id_check_char(b"34020819780316948"), Some(b'6'));
        assert_eq!(id_check_char(b"3402081978031694"), None);
        assert_eq!(
            id("11010519491231002X").as_deref(),
            Ok("11010519491231002X")
        );
        assert_eq!(
            id("11010519491231002x").as_deref(),
            Ok("11010519491231002X")
        );
        assert_eq!(
            id("340208197803169486").as_deref(),
            Ok("340208197803169486")
        );
        assert_eq!(id("340208197803169487"), Err(E::IdChecksum));
        assert_eq!(id("340207200409284350"), Err(E::IdChecksum));
    }

    #[test]
    fn identity_number_format() {
        for s in [
            "",
            "34020819780316948",
            "3402081978031694866",
            "34020819780316948A",
            "3402081978031694X6",
            "340208１97803169486",
            "34020819780316",
        ] {
            assert_eq!(id(s), Err(E::IdFormat), "{s:?}");
        }
        // Province prefixes: 10, 16, 90 do not exist; 71, 81, 82 do.
        assert_eq!(id("100105194912310025"), Err(E::IdFormat));
        assert_eq!(id("900105194912310025"), Err(E::IdFormat));
        for p in ["71", "81", "82", "65", "11"] {
            let mut s = format!("{p}010519491231002");
            s.push(id_check_char(s.as_bytes()).unwrap() as char);
            assert!(id(&s).is_ok(), "province {p}");
        }
    }

    fn with_check(first17: &str) -> String {
        let mut s = first17.to_owned();
        s.push(id_check_char(s.as_bytes()).unwrap() as char);
        s
    }

    #[test]
    fn identity_number_birth_date() {
        // Not a calendar date (Feb 30; Feb 29 of a non-leap year; month 13).
        assert_eq!(id(&with_check("34020819780230948")), Err(E::IdBirthDate));
        assert_eq!(id(&with_check("34020819010229948")), Err(E::IdBirthDate));
        assert_eq!(id(&with_check("34020819781316948")), Err(E::IdBirthDate));
        assert!(id(&with_check("34020820000229948")).is_ok());
        // Before 1900-01-01, and in the future relative to the injected today.
        assert_eq!(id(&with_check("34020818991231948")), Err(E::IdBirthDate));
        assert!(id(&with_check("34020819000101948")).is_ok());
        assert!(id(&with_check("34020820260630948")).is_ok());
        assert_eq!(id(&with_check("34020820260701948")), Err(E::IdBirthDate));
    }

    #[test]
    fn identity_number_old_area_codes_are_valid() {
        // 340221 芜湖县, 340225 无为县, 340208 三山区 no longer exist but stay valid.
        assert!(id("340221199307109054").is_ok());
        assert!(id("340225196509086630").is_ok());
        assert!(id("340208200412065617").is_ok());
    }

    #[test]
    fn legacy_fifteen_digit_upgrade() {
        assert_eq!(id("340207611105570").as_deref(), Ok("340207196111055700"));
        assert_eq!(id("340207760711113").as_deref(), Ok("340207197607111133"));
        assert_eq!(id("340104820921377").as_deref(), Ok("340104198209213775"));
        assert_eq!(id("340104821321377"), Err(E::IdBirthDate));
        assert_eq!(id("34010482092137X"), Err(E::IdFormat));
        assert_eq!(id("990104820921377"), Err(E::IdFormat));
    }

    #[test]
    fn parse_identity_number_normalises_and_uses_the_clock() {
        let n = parse_identity_number(" ３４０２０８１９７８０３１６９４８６\u{3000}").unwrap();
        assert_eq!(n.expose(), "340208197803169486");
        assert_eq!(format!("{n:?}"), "IdentityNumber(<redacted>)");
        assert!(today().year >= 2025);
    }

    #[test]
    fn id_checksum_recogniser() {
        assert!(has_id_checksum(b"11010519491231002x"));
        assert!(has_id_checksum(b"340208197803169486"));
        assert!(!has_id_checksum(b"340208197803169487"));
        assert!(!has_id_checksum(b"34020819780316948"));
    }

    #[test]
    fn identifiers_are_found_as_whole_digit_runs() {
        use IdentifierKind::*;
        let found = [
            ("batch-340208197803169486", IdentityNumber),
            ("340208197803169486", IdentityNumber),
            ("KN-11010519491231002x", IdentityNumber),
            ("a11010519491231002X.b", IdentityNumber),
            ("KN-３４０２０８１９７８０３１６９４８６", IdentityNumber),
            ("old:340208780316948", LegacyIdentityNumber),
            ("case13812345678", Mobile),
            ("x-8613812345678-y", Mobile),
            ("2026-12-05.19912345678", Mobile),
        ];
        for (text, kind) in found {
            assert_eq!(find_identifier(text), Some(kind), "{text}");
        }
        // A date and a counter that happen to carry a valid check character:
        // province `20` does not exist.
        let mut dated = b"20261205100000123".to_vec();
        dated.push(id_check_char(&dated).unwrap());
        let dated = String::from_utf8(dated).unwrap();
        let clear = [
            "2026-12-05T10:00:00.batch-000123",
            "hrss-20261205-000123",
            "20261205100000123",
            dated.as_str(),
            "batch-1733392800000",
            "batch-17333928000001234567",
            "340208197803169487",
            "34020819781316948X",
            "12345678901",
            "f1a-13812345678901",
            "550e8400-e29b-41d4-a716-446655440000",
            "KN-2026-0042",
            "",
        ];
        for text in clear {
            assert_eq!(find_identifier(text), None, "{text}");
        }
    }

    #[test]
    fn digit_runs_span_their_bytes() {
        let mut runs = Vec::new();
        for_each_digit_run("a12ｂ３4x5", |run, at| {
            runs.push((run.to_vec(), at));
            false
        });
        assert_eq!(
            runs,
            [
                (b"12".to_vec(), 1..3),
                (b"34".to_vec(), 6..10),
                (b"5".to_vec(), 11..12)
            ]
        );
    }

    #[test]
    fn credit_code_known_answers() {
        // The standard's own example, and sample codes.
        for s in [
            "91350100M000100Y43",
            "91340281BX68NFEG5M",
            "91340209RDHMX1T962",
            "913402124EX020EJ61",
        ] {
            assert_eq!(
                credit_code(s).map(|c| c.as_str().to_owned()).as_deref(),
                Ok(s)
            );
        }
        assert_eq!(uscc_check_char(b"91350100M000100Y4"), Some(b'3'));
        assert_eq!(org_code_check_char(b"M000100Y"), Some(b'4'));
        assert_eq!(org_code_check_char(b"BX68NFEG"), Some(b'5'));
        assert_eq!(credit_code("91340209RDHMX1T963"), Err(E::UsccChecksum));
        assert_eq!(credit_code("91340281BX68NFEG5N"), Err(E::UsccChecksum));
    }

    #[test]
    fn credit_code_org_check_is_enforced_separately() {
        // Position 17 altered and position 18 recomputed: the mod-31 check holds,
        // the organisation-code check does not.
        let mut s = b"91350100M000100Y4".to_vec();
        s[16] = b'5';
        s.push(uscc_check_char(&s).unwrap());
        assert_eq!(
            credit_code(std::str::from_utf8(&s).unwrap()),
            Err(E::UsccChecksum)
        );
    }

    #[test]
    fn org_code_check_maps_ten_and_eleven() {
        // Sum ≡ 1 (mod 11) → 10 → X; sum ≡ 0 → 11 → 0.
        assert_eq!(org_code_check_char(b"00000006"), Some(b'X')); // 6·2 = 12 ≡ 1
        assert_eq!(org_code_check_char(b"00000003"), Some(b'5')); // 3·2 = 6 → 11-6
        assert_eq!(org_code_check_char(b"00000000"), Some(b'0'));
        assert_eq!(org_code_check_char(b"10000000"), Some(b'8')); // 3 → 11-3
        assert_eq!(org_code_check_char(b"A0000000"), Some(b'3')); // 30 mod 11 = 8
    }

    #[test]
    fn credit_code_format() {
        for s in [
            "",
            "91350100M000100Y4",
            "91350100M000100Y433",
            "91350100M000100I43", // I is not in the alphabet
            "91350100m000100Y43", // lower case
            "Z1350100M000100Y43", // bad registration authority
            "9135A100M000100Y43", // area code must be digits
        ] {
            assert_eq!(credit_code(s), Err(E::UsccFormat), "{s:?}");
        }
    }

    #[test]
    fn dates() {
        let d = |y, m, dd| Date {
            year: y,
            month: m,
            day: dd,
        };
        assert_eq!(date("20240229"), Ok(d(2024, 2, 29)));
        assert_eq!(date("2024-02-29"), Ok(d(2024, 2, 29)));
        for s in [
            "20230229",
            "2023-02-29",
            "2024-0229",
            "2024/02/29",
            "240229",
            "20241301",
            "20240100",
            "2024-2-29",
            "00000101",
        ] {
            assert_eq!(date(s), Err(E::BadDate), "{s:?}");
        }
        assert_eq!(
            year_month("202412"),
            Ok(YearMonth {
                year: 2024,
                month: 12
            })
        );
        for s in ["202413", "202400", "2024-12", "20241"] {
            assert_eq!(year_month(s), Err(E::BadDate), "{s:?}");
        }
        assert_eq!(year("2025"), Ok(2025));
        assert_eq!(year("25"), Err(E::BadDate));
    }

    #[test]
    fn timestamps_are_beijing_time() {
        // 2025-05-20 12:25:02 +08:00 = 2025-05-20T04:25:02Z = 1747715102.
        assert_eq!(timestamp("20250520122502"), Ok(Timestamp(1_747_715_102)));
        assert_eq!(
            timestamp("2025-05-20 12:25:02"),
            Ok(Timestamp(1_747_715_102))
        );
        assert_eq!(timestamp("19700101080000"), Ok(Timestamp(0)));
        assert_eq!(
            Timestamp(1_747_715_102).to_beijing_rfc3339(),
            "2025-05-20T12:25:02+08:00"
        );
        for s in [
            "20250520242502",
            "20250520126002",
            "2025-05-20T12:25:02",
            "2025052012250",
            "20250230122502",
        ] {
            assert_eq!(timestamp(s), Err(E::BadDate), "{s:?}");
        }
    }

    #[test]
    fn money_is_exact_fen() {
        assert_eq!(money("3521.5"), Ok(352_150));
        assert_eq!(money("3521.50"), Ok(352_150));
        assert_eq!(money("3521"), Ok(352_100));
        assert_eq!(money("1,200.00"), Ok(120_000));
        assert_eq!(money("1,841.00"), Ok(184_100));
        assert_eq!(money("12,345,678.09"), Ok(1_234_567_809));
        assert_eq!(money("0.01"), Ok(1));
        assert_eq!(money("-12.00"), Ok(-1200));
        assert_eq!(non_negative_money("-12.00"), Err(E::BadAmount));
        assert_eq!(non_negative_money("0"), Ok(0));
        for s in [
            "12.345",
            "",
            ".5",
            "5.",
            "1,20.00",
            "1200,000",
            ",100",
            "1,,200",
            "1.2.3",
            "+5",
            "1e3",
            "12 34",
            "--1",
            "99999999999999999999",
        ] {
            assert_eq!(money(s), Err(E::BadAmount), "{s:?}");
        }
    }

    #[test]
    fn integers_and_digit_strings() {
        assert_eq!(integer_in("6", 1, 20), Ok(6));
        assert_eq!(integer_in("0", 1, 20), Err(E::OutOfRange));
        assert_eq!(integer_in("21", 1, 20), Err(E::OutOfRange));
        assert_eq!(integer_in("-1", 0, i64::MAX), Err(E::OutOfRange));
        assert_eq!(integer_in("6.5", 1, 20), Err(E::BadFormat));
        assert_eq!(digit_string("147952316", 9, 9), Ok(()));
        assert_eq!(digit_string("14795231", 9, 9), Err(E::BadFormat));
        assert_eq!(digit_string("14795231a", 9, 9), Err(E::BadFormat));
    }

    #[test]
    fn change_types() {
        assert_eq!(change_type("1"), Ok(ChangeType::New));
        assert_eq!(change_type("2"), Ok(ChangeType::Update));
        assert_eq!(change_type("3"), Ok(ChangeType::Cancel));
        assert_eq!(change_type("7"), Err(E::UnknownCode));
        assert_eq!(change_type("01"), Err(E::UnknownCode));
    }

    #[test]
    fn wuhu_divisions() {
        for code in [
            "340200", "340202", "340207", "340209", "340210", "340212", "340223", "340281",
        ] {
            assert_eq!(wuhu_division(code), Ok(code));
        }
        // Former codes (芜湖县, 无为县, 三山区) and other cities are refused.
        for code in ["340221", "340225", "340208", "320102", "3402", ""] {
            assert_eq!(wuhu_division(code), Err(E::AreaCode), "{code:?}");
        }
    }

    #[test]
    fn sex_and_ethnicity_tables() {
        for s in ["0", "1", "2", "9"] {
            assert_eq!(sex(s), Ok(s));
        }
        assert_eq!(sex("3"), Err(E::UnknownCode));
        assert_eq!(ethnicity("1").as_deref(), Ok("01"));
        assert_eq!(ethnicity("01").as_deref(), Ok("01"));
        assert_eq!(ethnicity("56").as_deref(), Ok("56"));
        assert_eq!(ethnicity("97").as_deref(), Ok("97"));
        assert_eq!(ethnicity("98").as_deref(), Ok("98"));
        for s in ["0", "00", "57", "96", "99", "001", "x"] {
            assert_eq!(ethnicity(s), Err(E::UnknownCode), "{s:?}");
        }
    }

    #[test]
    fn phones() {
        assert_eq!(phone("13132059871"), Ok(()));
        assert_eq!(phone("19912345678"), Ok(()));
        assert_eq!(phone("0553-4217233"), Ok(()));
        assert_eq!(phone("0553-42172331"), Ok(()));
        for s in [
            "1234567",
            "12132059871",
            "1313205987",
            "0553-421723",
            "0553-421723312",
            "0551-4217233",
            "05534217233",
        ] {
            assert_eq!(phone(s), Err(E::BadPhone), "{s:?}");
        }
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        const PROVINCES: [u8; 34] = [
            11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43, 44, 45, 46, 50,
            51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82,
        ];

        /// A valid 18-character identity number born between 1900-01-01 and TODAY.
        fn valid_id() -> impl Strategy<Value = String> {
            let first = days_from_civil(1900, 1, 1);
            let last = days_from_civil(2026, 6, 30);
            (
                proptest::sample::select(PROVINCES.to_vec()),
                0..10_000u32,
                first..=last,
                0..1000u32,
            )
                .prop_map(|(p, area, days, seq)| {
                    let d = date_of_days(days);
                    let s = format!(
                        "{p:02}{area:04}{:04}{:02}{:02}{seq:03}",
                        d.year, d.month, d.day
                    );
                    with_check(&s)
                })
        }

        /// A valid unified social credit code.
        fn valid_uscc() -> impl Strategy<Value = String> {
            let alphabet = USCC_ALPHABET.to_vec();
            (
                proptest::sample::select(b"123456789ANY".to_vec()),
                proptest::sample::select(alphabet.clone()),
                0..1_000_000u32,
                proptest::collection::vec(proptest::sample::select(alphabet), 8),
            )
                .prop_map(|(authority, kind, area, org)| {
                    let mut b = vec![authority, kind];
                    b.extend_from_slice(format!("{area:06}").as_bytes());
                    b.extend_from_slice(&org);
                    b.push(org_code_check_char(&org).unwrap());
                    b.push(uscc_check_char(&b).unwrap());
                    String::from_utf8(b).unwrap()
                })
        }

        /// Replaces the character at `at` by another one from `set`.
        fn mutate(s: &str, at: usize, pick: usize, set: &[u8]) -> String {
            let mut b = s.as_bytes().to_vec();
            let others: Vec<u8> = set.iter().copied().filter(|c| *c != b[at]).collect();
            b[at] = others[pick % others.len()];
            String::from_utf8(b).unwrap()
        }

        proptest! {
            #[test]
            fn generated_identity_numbers_are_accepted(s in valid_id()) {
                prop_assert_eq!(id(&s), Ok(s.clone()));
                prop_assert!(has_id_checksum(s.as_bytes()));
            }

            #[test]
            fn legacy_numbers_upgrade_to_their_18_digit_form(s in valid_id()) {
                prop_assume!(&s[6..8] == "19");
                let legacy = format!("{}{}", &s[..6], &s[8..17]);
                prop_assert_eq!(id(&legacy), Ok(s.clone()));
            }

            #[test]
            fn mutated_identity_numbers_are_rejected(s in valid_id(), at in 0..18usize, pick in any::<usize>()) {
                let m = mutate(&s, at, pick, b"0123456789X");
                prop_assert!(id(&m).is_err());
            }

            #[test]
            fn generated_credit_codes_are_accepted(s in valid_uscc()) {
                prop_assert_eq!(credit_code(&s).map(|c| c.as_str().to_owned()), Ok(s));
            }

            #[test]
            fn mutated_credit_codes_are_rejected(s in valid_uscc(), at in 0..18usize, pick in any::<usize>()) {
                let m = mutate(&s, at, pick, USCC_ALPHABET);
                prop_assert!(credit_code(&m).is_err());
            }

            #[test]
            fn rules_never_panic(s in "\\PC{0,40}") {
                let _ = normalise(&s);
                let _ = parse_identity_number(&s);
                let _ = parse_credit_code(&s);
                let _ = date(&s);
                let _ = year_month(&s);
                let _ = timestamp(&s);
                let _ = money(&s);
                let _ = integer_in(&s, 0, 10);
                let _ = ethnicity(&s);
                let _ = phone(&s);
            }

            #[test]
            fn money_round_trips(fen in -10_000_000_000_000i64..10_000_000_000_000) {
                let text = format!("{}{}.{:02}", if fen < 0 { "-" } else { "" }, fen.unsigned_abs() / 100, fen.unsigned_abs() % 100);
                prop_assert_eq!(money(&text), Ok(fen));
            }
        }
    }
}
