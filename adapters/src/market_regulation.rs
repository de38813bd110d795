//! Market regulation (市场监管 企业登记): the enterprise registry (§4).
//!
//! The export is JSON Lines, one enterprise per row keyed by its credit code. The
//! legal representative is personal data and is typed as such; the registered
//! capital arrives in 10 000 yuan (万元) and is held exactly in fen of yuan.

use crate::check::{Checker, put};
use crate::json_rows;
use crate::model::{Record, RecordKind, SourceKey, Value};
use crate::{Agency, RowError, RowErrorCode as E, RowParser, rules};
use std::collections::BTreeMap;

static KEYS: [&str; 14] = [
    "TYSHXYDM",
    "QYMC",
    "QYLX",
    "FDDBR",
    "FDDBR_ZJHM",
    "DJZT",
    "CLRQ",
    "ZCZB",
    "HYDM",
    "CYRS",
    "ZS_XZQHDM",
    "ZS",
    "BGLX",
    "BGSJ",
];
const TYSHXYDM: usize = 0;
const QYMC: usize = 1;
const QYLX: usize = 2;
const FDDBR: usize = 3;
const FDDBR_ZJHM: usize = 4;
const DJZT: usize = 5;
const CLRQ: usize = 6;
const ZCZB: usize = 7;
const HYDM: usize = 8;
const CYRS: usize = 9;
const ZS_XZQHDM: usize = 10;
const ZS: usize = 11;
const BGLX: usize = 12;
const BGSJ: usize = 13;

/// Registration status (`DJZT`): active, revoked, deregistered, moved out.
const STATUSES: &[&str] = &["1", "2", "3", "4"];

/// An industry code (GB/T 4754-2017): a section letter `A`–`T` and 2–4 digits.
/// Code: `unknown_code`.
fn industry_code(s: &str) -> Result<(), E> {
    let b = s.as_bytes();
    let ok = (3..=5).contains(&b.len())
        && (b'A'..=b'T').contains(&b[0])
        && b[1..].iter().all(u8::is_ascii_digit);
    if ok { Ok(()) } else { Err(E::UnknownCode) }
}

/// Registered capital in 万元 → fen of yuan. Code: `bad_amount`.
fn capital(s: &str) -> Result<i64, E> {
    rules::non_negative_money(s)?
        .checked_mul(10_000)
        .ok_or(E::BadAmount)
}

crate::json_adapter!(
    MarketRegulationAdapter,
    Agency::MarketRegulation,
    RecordKind::Enterprise,
    EnterpriseParser
);

impl RowParser for EnterpriseParser {
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>> {
        let row = json_rows::parse(row, &KEYS).map_err(|e| vec![e])?;
        let mut c = Checker::default();

        let code = c.req("TYSHXYDM", row.raw(TYSHXYDM), rules::credit_code);
        let name = c.required("QYMC", row.raw(QYMC));
        let entity_type = c.optional("QYLX", row.raw(QYLX));
        let representative = c.required("FDDBR", row.raw(FDDBR));
        let representative_id = c.opt("FDDBR_ZJHM", row.raw(FDDBR_ZJHM), |s| {
            rules::identity_number(s, self.today)
        });
        let status = c.opt("DJZT", row.raw(DJZT), |s| rules::code_in(s, STATUSES));
        let established = c.opt("CLRQ", row.raw(CLRQ), rules::date);
        let capital = c.opt("ZCZB", row.raw(ZCZB), capital);
        let industry = c.opt("HYDM", row.raw(HYDM), |s| {
            industry_code(s).map(|()| s.to_owned())
        });
        let employees = c.opt("CYRS", row.raw(CYRS), |s| rules::integer_in(s, 0, i64::MAX));
        let division = c.opt("ZS_XZQHDM", row.raw(ZS_XZQHDM), rules::wuhu_division);
        let address = c.optional("ZS", row.raw(ZS));
        let change = c.req("BGLX", row.raw(BGLX), rules::change_type);
        let changed_at = c.req("BGSJ", row.raw(BGSJ), rules::timestamp);

        let (Some(code), Some(name), Some(representative), Some(change), Some(changed_at)) =
            (code, name, representative, change, changed_at)
        else {
            return Err(c.errors);
        };
        if !c.is_ok() {
            return Err(c.errors);
        }

        let text = |s: std::borrow::Cow<'_, str>| Value::Text(s.into_owned());
        let mut f = BTreeMap::new();
        put(&mut f, "credit_code", Some(Value::CreditCode(code.clone())));
        put(&mut f, "enterprise_name", Some(text(name)));
        put(&mut f, "entity_type", entity_type.map(text));
        put(
            &mut f,
            "legal_representative",
            Some(Value::Text(
                rules::normalise_name(&representative).into_owned(),
            )),
        );
        put(
            &mut f,
            "legal_representative_id",
            representative_id.map(Value::IdentityNumber),
        );
        put(
            &mut f,
            "registration_status",
            status.map(|s| Value::Code(s.to_owned())),
        );
        put(&mut f, "established_on", established.map(Value::Date));
        put(&mut f, "registered_capital", capital.map(Value::Money));
        put(&mut f, "industry_code", industry.map(Value::Code));
        put(&mut f, "employee_count", employees.map(Value::Integer));
        put(
            &mut f,
            "address_division",
            division.map(|d| Value::Division(d.to_owned())),
        );
        put(&mut f, "address", address.map(text));
        Ok(Record {
            kind: RecordKind::Enterprise,
            source_key: SourceKey::from_parts([code.as_str()]),
            change,
            changed_at,
            person: None,
            enterprise: Some(code),
            fields: f,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{assert_labels, open};
    use crate::{Adapter, Format};

    #[test]
    fn sample_rows_match_their_labels() {
        assert_labels(Agency::MarketRegulation);
    }

    #[test]
    fn a_row_becomes_an_enterprise_record() {
        let (p, rows) = open(Agency::MarketRegulation);
        let r = p.parse_row(rows[0]).unwrap();
        assert_eq!(r.kind, RecordKind::Enterprise);
        assert_eq!(r.source_key.expose(), "91340281BX68NFEG5M");
        assert_eq!(r.enterprise.unwrap().as_str(), "91340281BX68NFEG5M");
        assert!(r.person.is_none());
        // 29029.72 万元 = 290 297 200 yuan.
        assert_eq!(r.fields["registered_capital"], Value::Money(29_029_720_000));
        assert_eq!(r.fields["employee_count"], Value::Integer(4305));
        assert_eq!(r.fields["industry_code"], Value::Code("C3982".into()));
        assert_eq!(
            r.fields["address_division"],
            Value::Division("340281".into())
        );
        assert!(matches!(
            r.fields["legal_representative_id"],
            Value::IdentityNumber(_)
        ));
    }

    #[test]
    fn industry_codes() {
        for ok in ["C3670", "A01", "T9700", "G543"] {
            assert_eq!(industry_code(ok), Ok(()), "{ok}");
        }
        for bad in ["Z99", "U12", "C3", "C36700", "c3670", "C36A0", ""] {
            assert_eq!(industry_code(bad), Err(E::UnknownCode), "{bad}");
        }
    }

    #[test]
    fn capital_and_headcount_rules() {
        assert_eq!(capital("9326"), Ok(9_326_000_000));
        assert_eq!(capital("-1"), Err(E::BadAmount));
        assert_eq!(capital("92233720368547758"), Err(E::BadAmount));
        let p = MarketRegulationAdapter
            .open_batch(Format::JsonLines, None)
            .unwrap();
        let row = r#"{"TYSHXYDM": "91340281BX68NFEG5M", "QYMC": "x", "FDDBR": "y", "CYRS": -3, "ZCZB": "1.234", "BGLX": "1", "BGSJ": "20250101000000"}"#;
        let got: Vec<_> = p
            .parse_row(row.as_bytes())
            .unwrap_err()
            .iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(got, [("ZCZB", E::BadAmount), ("CYRS", E::OutOfRange)]);
    }
}
