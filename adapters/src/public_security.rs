//! Public security (公安 户籍): household registration (§2).
//!
//! The export is JSON Lines. Besides each field's own rule, the sex code and the
//! birth date must agree with the identity number (§1.3): a household record is
//! the reference for who a person is, so a contradiction rejects the row.

use crate::check::{Checker, put};
use crate::json_rows;
use crate::model::{Record, RecordKind, SourceKey, Value};
use crate::{Agency, RowError, RowErrorCode as E, RowParser, rules};
use std::collections::BTreeMap;

static KEYS: [&str; 12] = [
    "GMSFHM",
    "XM",
    "XBDM",
    "MZDM",
    "CSRQ",
    "HH",
    "YHZGX",
    "HJDZ_XZQHDM",
    "HJDZ_DZMC",
    "SWBS",
    "BGLX",
    "BGSJ",
];
const GMSFHM: usize = 0;
const XM: usize = 1;
const XBDM: usize = 2;
const MZDM: usize = 3;
const CSRQ: usize = 4;
const HH: usize = 5;
const YHZGX: usize = 6;
const HJDZ_XZQHDM: usize = 7;
const HJDZ_DZMC: usize = 8;
const SWBS: usize = 9;
const BGLX: usize = 10;
const BGSJ: usize = 11;

/// Relation to the head of household (`YHZGX`).
const RELATIONS: &[&str] = &["01", "02", "10", "50", "99"];
/// Deceased flag (`SWBS`).
const FLAGS: &[&str] = &["0", "1"];

crate::json_adapter!(
    PublicSecurityAdapter,
    Agency::PublicSecurity,
    RecordKind::Household,
    HouseholdParser
);

impl RowParser for HouseholdParser {
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>> {
        let row = json_rows::parse(row, &KEYS).map_err(|e| vec![e])?;
        let mut c = Checker::default();

        let person = c.req("GMSFHM", row.raw(GMSFHM), |s| {
            rules::identity_number(s, self.today)
        });
        let name = c.req_text("XM", row.raw(XM), |s| rules::name(s, 1, 30).map(drop));
        let sex = c.req("XBDM", row.raw(XBDM), rules::sex);
        let ethnicity = c.opt("MZDM", row.raw(MZDM), rules::ethnicity);
        let birth = c.req("CSRQ", row.raw(CSRQ), rules::date);
        let household = c.req_text("HH", row.raw(HH), |s| rules::digit_string(s, 9, 9));
        let relation = c.req("YHZGX", row.raw(YHZGX), |s| rules::code_in(s, RELATIONS));
        let division = c.req("HJDZ_XZQHDM", row.raw(HJDZ_XZQHDM), rules::wuhu_division);
        let address = c.required("HJDZ_DZMC", row.raw(HJDZ_DZMC));
        let deceased = c.opt("SWBS", row.raw(SWBS), |s| rules::code_in(s, FLAGS));
        let change = c.req("BGLX", row.raw(BGLX), rules::change_type);
        let changed_at = c.req("BGSJ", row.raw(BGSJ), rules::timestamp);

        if let Some(id) = &person {
            let disagrees = match sex {
                Some("1") => !id.is_male(),
                Some("2") => id.is_male(),
                _ => false,
            };
            if disagrees {
                c.fail("XBDM", E::FieldMismatch);
            }
            if birth.is_some_and(|b| b != id.birth_date()) {
                c.fail("CSRQ", E::FieldMismatch);
            }
        }

        let (
            Some(person),
            Some(name),
            Some(sex),
            Some(birth),
            Some(household),
            Some(relation),
            Some(division),
            Some(address),
            Some(change),
            Some(changed_at),
        ) = (
            person, name, sex, birth, household, relation, division, address, change, changed_at,
        )
        else {
            return Err(c.errors);
        };
        if !c.is_ok() {
            return Err(c.errors);
        }

        let mut f = BTreeMap::new();
        put(
            &mut f,
            "person_id",
            Some(Value::IdentityNumber(person.clone())),
        );
        put(
            &mut f,
            "name",
            Some(Value::Text(rules::normalise_name(&name).into_owned())),
        );
        put(&mut f, "sex", Some(Value::Code(sex.to_owned())));
        put(&mut f, "ethnicity", ethnicity.map(Value::Code));
        put(&mut f, "birth_date", Some(Value::Date(birth)));
        put(
            &mut f,
            "household_number",
            Some(Value::Text(household.into_owned())),
        );
        put(
            &mut f,
            "relation_to_head",
            Some(Value::Code(relation.to_owned())),
        );
        put(
            &mut f,
            "address_division",
            Some(Value::Division(division.to_owned())),
        );
        put(&mut f, "address", Some(Value::Text(address.into_owned())));
        put(&mut f, "deceased", Some(Value::Bool(deceased == Some("1"))));
        Ok(Record {
            kind: RecordKind::Household,
            source_key: SourceKey::from_parts([person.expose()]),
            change,
            changed_at,
            person: Some(person),
            enterprise: None,
            fields: f,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeType;
    use crate::test_support::{assert_labels, open};
    use crate::{Adapter, Format, model::Date};

    fn parse(row: &str) -> Result<Record, Vec<RowError>> {
        let p = PublicSecurityAdapter
            .open_batch(Format::JsonLines, None)
            .unwrap();
        p.parse_row(row.as_bytes())
    }

    fn codes(r: Result<Record, Vec<RowError>>) -> Vec<(&'static str, E)> {
        r.unwrap_err().iter().map(|e| (e.field, e.code)).collect()
    }

    const GOOD: &str = r#"{"GMSFHM": "340208197803169486", "XM": "付兰", "XBDM": "2", "MZDM": "1", "CSRQ": "1978-03-16", "HH": "607862197", "YHZGX": "02", "HJDZ_XZQHDM": "340212", "HJDZ_DZMC": "芜湖市花津南路149号", "BGLX": "3", "BGSJ": "2025-11-21 11:57:49"}"#;

    #[test]
    fn sample_rows_match_their_labels() {
        assert_labels(Agency::PublicSecurity);
    }

    #[test]
    fn a_row_becomes_a_household_record() {
        let r = parse(GOOD).unwrap();
        assert_eq!(r.kind, RecordKind::Household);
        assert_eq!(r.change, ChangeType::Cancel);
        assert_eq!(r.source_key.expose(), "340208197803169486");
        assert_eq!(r.fields["ethnicity"], Value::Code("01".into()));
        assert_eq!(r.fields["deceased"], Value::Bool(false));
        assert_eq!(
            r.fields["address_division"],
            Value::Division("340212".into())
        );
        assert_eq!(
            r.fields["birth_date"],
            Value::Date(Date {
                year: 1978,
                month: 3,
                day: 16
            })
        );
        assert!(r.enterprise.is_none());
    }

    #[test]
    fn sample_row_with_padded_identity_number() {
        let (p, rows) = open(Agency::PublicSecurity);
        // Row 9 (accepted) pads the number with a space and an ideographic space.
        let r = p.parse_row(rows[8]).unwrap();
        assert_eq!(r.person.unwrap().expose(), "340208197803169486");
    }

    #[test]
    fn sex_and_birth_date_must_agree_with_the_identity_number() {
        assert_eq!(
            codes(parse(&GOOD.replace(r#""XBDM": "2""#, r#""XBDM": "1""#))),
            [("XBDM", E::FieldMismatch)]
        );
        assert_eq!(
            codes(parse(&GOOD.replace("1978-03-16", "19780317"))),
            [("CSRQ", E::FieldMismatch)]
        );
        // Unknown and not-stated sex codes do not contradict anything.
        assert!(parse(&GOOD.replace(r#""XBDM": "2""#, r#""XBDM": "9""#)).is_ok());
    }

    #[test]
    fn field_rules() {
        let got = codes(parse(
            r#"{"GMSFHM": "340208197803169486", "XM": "一二三四五六七八九十一二三四五六七八九十一二三四五六七八九十一", "XBDM": "3", "MZDM": "99", "CSRQ": "1978-02-30", "HH": "60786219", "YHZGX": "03", "HJDZ_XZQHDM": "340221", "SWBS": "2", "BGLX": "0", "BGSJ": "x"}"#,
        ));
        assert_eq!(
            got,
            [
                ("XM", E::OutOfRange),
                ("XBDM", E::UnknownCode),
                ("MZDM", E::UnknownCode),
                ("CSRQ", E::BadDate),
                ("HH", E::BadFormat),
                ("YHZGX", E::UnknownCode),
                ("HJDZ_XZQHDM", E::AreaCode),
                ("HJDZ_DZMC", E::MissingField),
                ("SWBS", E::UnknownCode),
                ("BGLX", E::UnknownCode),
                ("BGSJ", E::BadDate),
            ]
        );
    }

    #[test]
    fn minority_name_interpunct_is_normalised() {
        let r = parse(&GOOD.replace("付兰", "买买提•艾力")).unwrap();
        assert_eq!(r.fields["name"], Value::Text("买买提·艾力".into()));
    }
}
