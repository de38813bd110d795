//! Collects every failing field of one row, so an agency can fix a row in one go.
//!
//! Adapters feed each raw field through a [`Checker`]: it normalises, applies the
//! field's rule and records a [`RowError`] on failure. Error messages are fixed
//! texts chosen by the error code, so they can never contain a raw field value.

use crate::model::{FieldName, Value};
use crate::rules;
use crate::{RowError, RowErrorCode as E};
use std::borrow::Cow;
use std::collections::BTreeMap;

/// Puts a canonical field into a record's field map; absent values are omitted.
pub(crate) fn put(
    fields: &mut BTreeMap<FieldName, Value>,
    name: &'static str,
    value: Option<Value>,
) {
    if let Some(v) = value {
        fields.insert(Cow::Borrowed(name), v);
    }
}

/// A field as read from the row: its normalised text, `None` when absent, or the
/// code of a problem found while reading it (e.g. `encoding`).
pub(crate) type Raw<'a> = Result<Option<Cow<'a, str>>, E>;

/// Normalises a decoded field value (§1.2) without copying when nothing changes.
pub(crate) fn clean_cow(v: Cow<'_, str>) -> Option<Cow<'_, str>> {
    match v {
        Cow::Borrowed(s) => rules::clean(s),
        Cow::Owned(s) => {
            let cleaned = rules::clean(&s)?;
            let unchanged = matches!(&cleaned, Cow::Borrowed(t) if t.len() == s.len());
            if unchanged {
                drop(cleaned);
                Some(Cow::Owned(s))
            } else {
                Some(Cow::Owned(cleaned.into_owned()))
            }
        }
    }
}

/// The fixed description of a rejection code. Never includes the value.
pub(crate) const fn describe(code: E) -> &'static str {
    match code {
        E::IdChecksum => "the identity number's check character does not match its first 17 digits",
        E::IdBirthDate => {
            "the birth date in the identity number is not a real date, is in the future or is before 1900-01-01"
        }
        E::IdFormat => {
            "not an identity number (17 digits and a check character, or 15 legacy digits, with a valid province code)"
        }
        E::UsccChecksum => "a check character of the unified social credit code does not match",
        E::UsccFormat => {
            "not a unified social credit code (18 characters of the GB 32100 alphabet)"
        }
        E::BadDate => {
            "not a valid date (YYYYMMDD or YYYY-MM-DD), month (YYYYMM), year or timestamp"
        }
        E::BadAmount => {
            "not a valid amount (decimal yuan, at most two decimals, negative only where the field allows it)"
        }
        E::BadPhone => "not a mainland mobile number or a 0553- Wuhu landline",
        E::BadFormat => "the value does not have the field's required format",
        E::OutOfRange => "the value is outside the field's allowed range",
        E::UnknownCode => "the value is not in the field's code table",
        E::MissingField => "a required field is absent",
        E::AreaCode => "not a current Wuhu administrative division code",
        E::FieldMismatch => "the value disagrees with the identity number",
        E::Encoding => "the field's bytes are not valid in the batch's character encoding",
    }
}

/// Builds the error for `field` with the fixed description of `code`.
pub(crate) fn error(field: &'static str, code: E) -> RowError {
    RowError::new(field, code, describe(code))
}

/// Accumulates the errors of one row.
#[derive(Default)]
pub(crate) struct Checker {
    pub errors: Vec<RowError>,
}

impl Checker {
    pub fn fail(&mut self, field: &'static str, code: E) {
        self.errors.push(error(field, code));
    }

    /// Records the rule's error, if any.
    pub fn check<T>(&mut self, field: &'static str, r: Result<T, E>) -> Option<T> {
        r.map_err(|code| self.fail(field, code)).ok()
    }

    /// A field that may be absent; reading problems are still recorded.
    pub fn optional<'a>(&mut self, field: &'static str, raw: Raw<'a>) -> Option<Cow<'a, str>> {
        self.check(field, raw).flatten()
    }

    /// A field that must be present (`missing_field` otherwise).
    pub fn required<'a>(&mut self, field: &'static str, raw: Raw<'a>) -> Option<Cow<'a, str>> {
        match raw {
            Ok(Some(v)) => Some(v),
            Ok(None) => {
                self.fail(field, E::MissingField);
                None
            }
            Err(code) => {
                self.fail(field, code);
                None
            }
        }
    }

    /// A required field passed through its rule.
    pub fn req<T>(
        &mut self,
        field: &'static str,
        raw: Raw<'_>,
        rule: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let v = self.required(field, raw)?;
        self.check(field, rule(&v))
    }

    /// A required field's text, kept when it passes `rule`.
    pub fn req_text<'a>(
        &mut self,
        field: &'static str,
        raw: Raw<'a>,
        rule: impl FnOnce(&str) -> Result<(), E>,
    ) -> Option<Cow<'a, str>> {
        let v = self.required(field, raw)?;
        self.check(field, rule(&v))?;
        Some(v)
    }

    /// An optional field passed through its rule when present.
    pub fn opt<T>(
        &mut self,
        field: &'static str,
        raw: Raw<'_>,
        rule: impl FnOnce(&str) -> Result<T, E>,
    ) -> Option<T> {
        let v = self.optional(field, raw)?;
        self.check(field, rule(&v))
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_cow_keeps_or_copies() {
        assert!(matches!(
            clean_cow(Cow::Borrowed(" a ")),
            Some(Cow::Borrowed("a"))
        ));
        assert_eq!(
            clean_cow(Cow::Owned("汤文国".into())).as_deref(),
            Some("汤文国")
        );
        assert_eq!(
            clean_cow(Cow::Owned(" 汤文国\u{3000}".into())).as_deref(),
            Some("汤文国")
        );
        assert_eq!(clean_cow(Cow::Owned("NULL".into())), None);
    }

    #[test]
    fn checker_collects_every_failure() {
        let mut c = Checker::default();
        assert_eq!(c.req("A", Ok(None), |_| Ok(())), None);
        assert_eq!(c.opt("B", Ok(None), |_| Ok(())), None);
        assert_eq!(c.opt("C", Err(E::Encoding), |_| Ok(())), None);
        assert_eq!(
            c.req("D", Ok(Some("x".into())), |_| Err::<(), _>(E::BadFormat)),
            None
        );
        assert_eq!(c.req("E", Ok(Some("x".into())), |s| Ok(s.len())), Some(1));
        let got: Vec<_> = c.errors.iter().map(|e| (e.field, e.code)).collect();
        assert_eq!(
            got,
            [
                ("A", E::MissingField),
                ("C", E::Encoding),
                ("D", E::BadFormat)
            ]
        );
    }
}
