//! Housing (住建 保障房): affordable-housing assistance applications (§6).
//!
//! The export is JSON Lines, one application per row. Applications carry the
//! applicant's contact phone, household size and income, so the phone format and
//! the amounts are checked strictly.

use crate::check::{Checker, put};
use crate::json_rows;
use crate::model::{Record, RecordKind, SourceKey, Value};
use crate::{Agency, RowError, RowParser, rules};
use std::collections::BTreeMap;

static KEYS: [&str; 14] = [
    "SQBH",
    "SQRZJHM",
    "SQRXM",
    "LXDH",
    "JTRKS",
    "JTYSR",
    "BZLX",
    "SHZT",
    "ZJBZJE",
    "FWDZ_XZQHDM",
    "FWDZ",
    "SQRQ",
    "BGLX",
    "BGSJ",
];
const SQBH: usize = 0;
const SQRZJHM: usize = 1;
const SQRXM: usize = 2;
const LXDH: usize = 3;
const JTRKS: usize = 4;
const JTYSR: usize = 5;
const BZLX: usize = 6;
const SHZT: usize = 7;
const ZJBZJE: usize = 8;
const FWDZ_XZQHDM: usize = 9;
const FWDZ: usize = 10;
const SQRQ: usize = 11;
const BGLX: usize = 12;
const BGSJ: usize = 13;

/// Assistance type (`BZLX`): public rental, low-rent, rent subsidy, economical purchase.
const TYPES: &[&str] = &["1", "2", "3", "4"];
/// Application status (`SHZT`): applied, approved, housed/paid, exited, rejected.
const STATUSES: &[&str] = &["1", "2", "3", "4", "5"];

crate::json_adapter!(
    HousingAdapter,
    Agency::Housing,
    RecordKind::HousingAssistance,
    HousingParser
);

impl RowParser for HousingParser {
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>> {
        let row = json_rows::parse(row, &KEYS).map_err(|e| vec![e])?;
        let mut c = Checker::default();

        let application = c.required("SQBH", row.raw(SQBH));
        let person = c.req("SQRZJHM", row.raw(SQRZJHM), |s| {
            rules::identity_number(s, self.today)
        });
        let name = c.required("SQRXM", row.raw(SQRXM));
        let phone = c.opt("LXDH", row.raw(LXDH), |s| {
            rules::phone(s).map(|()| s.to_owned())
        });
        let size = c.opt("JTRKS", row.raw(JTRKS), |s| rules::integer_in(s, 1, 20));
        let income = c.opt("JTYSR", row.raw(JTYSR), rules::non_negative_money);
        let kind = c.opt("BZLX", row.raw(BZLX), |s| rules::code_in(s, TYPES));
        let status = c.opt("SHZT", row.raw(SHZT), |s| rules::code_in(s, STATUSES));
        let subsidy = c.opt("ZJBZJE", row.raw(ZJBZJE), rules::non_negative_money);
        let division = c.opt("FWDZ_XZQHDM", row.raw(FWDZ_XZQHDM), rules::wuhu_division);
        let address = c.optional("FWDZ", row.raw(FWDZ));
        let applied = c.opt("SQRQ", row.raw(SQRQ), rules::date);
        let change = c.req("BGLX", row.raw(BGLX), rules::change_type);
        let changed_at = c.req("BGSJ", row.raw(BGSJ), rules::timestamp);

        let (Some(application), Some(person), Some(name), Some(change), Some(changed_at)) =
            (application, person, name, change, changed_at)
        else {
            return Err(c.errors);
        };
        if !c.is_ok() {
            return Err(c.errors);
        }

        let code = |s: &str| Value::Code(s.to_owned());
        let mut f = BTreeMap::new();
        let source_key = SourceKey::from_parts([&*application]);
        put(
            &mut f,
            "application_number",
            Some(Value::Text(application.into_owned())),
        );
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
        put(&mut f, "phone", phone.map(Value::Text));
        put(&mut f, "household_size", size.map(Value::Integer));
        put(&mut f, "household_income", income.map(Value::Money));
        put(&mut f, "assistance_type", kind.map(code));
        put(&mut f, "status", status.map(code));
        put(&mut f, "rent_subsidy", subsidy.map(Value::Money));
        put(
            &mut f,
            "dwelling_division",
            division.map(|d| Value::Division(d.to_owned())),
        );
        put(
            &mut f,
            "dwelling_address",
            address.map(|a| Value::Text(a.into_owned())),
        );
        put(&mut f, "applied_on", applied.map(Value::Date));
        Ok(Record {
            kind: RecordKind::HousingAssistance,
            source_key,
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
    use crate::RowErrorCode as E;
    use crate::test_support::{assert_labels, open};
    use crate::{Adapter, Format};

    #[test]
    fn sample_rows_match_their_labels() {
        assert_labels(Agency::Housing);
    }

    #[test]
    fn a_row_becomes_a_housing_assistance_record() {
        let (p, rows) = open(Agency::Housing);
        // Row 4: full-width identity number, no subsidy amount ("").
        let r = p.parse_row(rows[3]).unwrap();
        assert_eq!(r.kind, RecordKind::HousingAssistance);
        assert_eq!(r.person.unwrap().expose(), "110105197502220500");
        assert_eq!(r.source_key.expose(), "BZF20250000003");
        assert_eq!(r.fields["household_size"], Value::Integer(3));
        assert_eq!(r.fields["household_income"], Value::Money(543_770));
        assert_eq!(r.fields["phone"], Value::Text("17522238416".into()));
        assert!(!r.fields.contains_key("rent_subsidy"));
        // Row 5: a landline-free mobile and a subsidy of 162 yuan.
        let r = p.parse_row(rows[4]).unwrap();
        assert_eq!(r.fields["rent_subsidy"], Value::Money(16_200));
    }

    #[test]
    fn household_size_and_phone_rules() {
        let p = HousingAdapter.open_batch(Format::JsonLines, None).unwrap();
        let row = r#"{"SQBH": "B1", "SQRZJHM": "110105197502220500", "SQRXM": "方国", "LXDH": "0553-12345", "JTRKS": 21, "BGLX": "1", "BGSJ": "20250101000000"}"#;
        let got: Vec<_> = p
            .parse_row(row.as_bytes())
            .unwrap_err()
            .iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(got, [("LXDH", E::BadPhone), ("JTRKS", E::OutOfRange)]);
        let ok = row
            .replace("0553-12345", "0553-1234567")
            .replace("21", "20");
        assert!(p.parse_row(ok.as_bytes()).is_ok());
    }
}
