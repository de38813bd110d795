//! Tax (税务): taxpayer standing per tax year (§5).
//!
//! The export is a spreadsheet's CSV: UTF-8 with a byte-order mark before the
//! header of field keys. Tax paid may be negative (refunds); every other amount
//! may not.

use crate::check::{Checker, put};
use crate::csv_rows::{self, Encoding};
use crate::model::{Record, RecordKind, SourceKey, Value};
use crate::{Adapter, Agency, BatchError, Format, RowError, RowParser, rules};
use std::collections::BTreeMap;

const KEYS: [&str; 10] = [
    "TYSHXYDM", "NSRMC", "NSRZT", "SSND", "YYSR", "NSE", "NSXYDJ", "QSBZ", "BGLX", "BGSJ",
];
const TYSHXYDM: usize = 0;
const NSRMC: usize = 1;
const NSRZT: usize = 2;
const SSND: usize = 3;
const YYSR: usize = 4;
const NSE: usize = 5;
const NSXYDJ: usize = 6;
const QSBZ: usize = 7;
const BGLX: usize = 8;
const BGSJ: usize = 9;

/// Taxpayer status (`NSRZT`): normal, suspended, deregistered, abnormal.
const STATUSES: &[&str] = &["03", "05", "07", "09"];
/// Tax credit rating (`NSXYDJ`).
const RATINGS: &[&str] = &["A", "B", "M", "C", "D"];
/// Tax arrears flag (`QSBZ`).
const FLAGS: &[&str] = &["0", "1"];

pub struct TaxAdapter;

impl Adapter for TaxAdapter {
    fn agency(&self) -> Agency {
        Agency::Tax
    }

    fn format(&self) -> Format {
        Format::CsvUtf8Bom
    }

    fn kind(&self) -> RecordKind {
        RecordKind::Taxpayer
    }

    fn open_batch(
        &self,
        declared: Format,
        header: Option<&[u8]>,
    ) -> Result<Box<dyn RowParser>, BatchError> {
        let header = crate::check_batch(self, declared, header)?.unwrap_or_default();
        let columns = csv_rows::map_header(header, Encoding::Utf8, &KEYS)?;
        Ok(Box::new(TaxParser { columns }))
    }
}

struct TaxParser {
    /// Row position of each column of [`KEYS`].
    columns: [usize; 10],
}

impl RowParser for TaxParser {
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>> {
        let fields = csv_rows::split::<10>(row).map_err(|e| vec![e])?;
        let raw = |col: usize| Encoding::Utf8.raw(fields.get(self.columns[col]));
        let mut c = Checker::default();

        let code = c.req("TYSHXYDM", raw(TYSHXYDM), rules::credit_code);
        let name = c.required("NSRMC", raw(NSRMC));
        let status = c.opt("NSRZT", raw(NSRZT), |s| rules::code_in(s, STATUSES));
        let year = c.req("SSND", raw(SSND), rules::year);
        let revenue = c.opt("YYSR", raw(YYSR), rules::non_negative_money);
        let paid = c.opt("NSE", raw(NSE), rules::money);
        let rating = c.opt("NSXYDJ", raw(NSXYDJ), |s| rules::code_in(s, RATINGS));
        let arrears = c.opt("QSBZ", raw(QSBZ), |s| rules::code_in(s, FLAGS));
        let change = c.req("BGLX", raw(BGLX), rules::change_type);
        let changed_at = c.req("BGSJ", raw(BGSJ), rules::timestamp);

        let (Some(code), Some(name), Some(year), Some(change), Some(changed_at)) =
            (code, name, year, change, changed_at)
        else {
            return Err(c.errors);
        };
        if !c.is_ok() {
            return Err(c.errors);
        }

        let code_value = |s: &str| Value::Code(s.to_owned());
        let mut f = BTreeMap::new();
        put(&mut f, "credit_code", Some(Value::CreditCode(code.clone())));
        put(
            &mut f,
            "taxpayer_name",
            Some(Value::Text(name.into_owned())),
        );
        put(&mut f, "taxpayer_status", status.map(code_value));
        put(&mut f, "tax_year", Some(Value::Year(year)));
        put(&mut f, "operating_revenue", revenue.map(Value::Money));
        put(&mut f, "tax_paid", paid.map(Value::Money));
        put(&mut f, "credit_rating", rating.map(code_value));
        put(
            &mut f,
            "tax_arrears",
            arrears.map(|a| Value::Bool(a == "1")),
        );
        Ok(Record {
            kind: RecordKind::Taxpayer,
            source_key: SourceKey::from_parts([code.as_str(), &format!("{year:04}")]),
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
    use crate::RowErrorCode as E;
    use crate::test_support::{assert_labels, open};

    #[test]
    fn sample_rows_match_their_labels() {
        assert_labels(Agency::Tax);
    }

    #[test]
    fn a_row_becomes_a_taxpayer_record() {
        let (p, rows) = open(Agency::Tax);
        let r = p.parse_row(rows[1]).unwrap();
        assert_eq!(r.kind, RecordKind::Taxpayer);
        assert_eq!(r.source_key.expose(), "91340209RDHMX1T962\u{1f}2024");
        assert_eq!(r.fields["tax_year"], Value::Year(2024));
        assert_eq!(r.fields["operating_revenue"], Value::Money(5_021_455_627));
        assert_eq!(r.fields["tax_paid"], Value::Money(22_090_777));
        assert_eq!(r.fields["credit_rating"], Value::Code("M".into()));
        assert_eq!(r.fields["taxpayer_status"], Value::Code("03".into()));
        assert_eq!(r.fields["tax_arrears"], Value::Bool(false));
    }

    #[test]
    fn refunds_may_be_negative_revenue_may_not() {
        let p = TaxAdapter
            .open_batch(Format::CsvUtf8Bom, Some(KEYS.join(",").as_bytes()))
            .unwrap();
        let row = "91340209RDHMX1T962,x,03,2024,\"1,000.00\",-120.50,A,1,1,20250101000000";
        let r = p.parse_row(row.as_bytes()).unwrap();
        assert_eq!(r.fields["tax_paid"], Value::Money(-12_050));
        assert_eq!(r.fields["operating_revenue"], Value::Money(100_000));
        let row = "91340209RDHMX1T962,x,04,24,-1,1.001,E,2,1,20250101000000";
        let got: Vec<_> = p
            .parse_row(row.as_bytes())
            .unwrap_err()
            .iter()
            .map(|e| (e.field, e.code))
            .collect();
        assert_eq!(
            got,
            [
                ("NSRZT", E::UnknownCode),
                ("SSND", E::BadDate),
                ("YYSR", E::BadAmount),
                ("NSE", E::BadAmount),
                ("NSXYDJ", E::UnknownCode),
                ("QSBZ", E::UnknownCode),
            ]
        );
    }

    #[test]
    fn invalid_utf8_rejects_the_field() {
        let p = TaxAdapter
            .open_batch(Format::CsvUtf8Bom, Some(KEYS.join(",").as_bytes()))
            .unwrap();
        let row = b"91340209RDHMX1T962,\xC3\x28,03,2024,1,1,A,0,1,20250101000000";
        let e = p.parse_row(row).unwrap_err();
        assert_eq!((e[0].field, e[0].code), ("NSRMC", E::Encoding));
    }
}
