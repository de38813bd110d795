//! Human resources & social security (人社): social-insurance contributions (§3).
//!
//! The export is GBK-encoded CSV with a Chinese header. Its rows are the basis of
//! the union's dynamic member data, so every field is validated and every failure
//! reported; a field that is not valid GBK rejects its row, not the batch.

use crate::check::{Checker, put};
use crate::csv_rows::{self, Encoding};
use crate::model::{Date, Record, RecordKind, SourceKey, Value};
use crate::{Adapter, Agency, BatchError, Format, RowError, RowParser, rules};
use std::collections::BTreeMap;

/// The export's columns: Chinese header name and the agency's field key.
const HEADERS: [&str; 11] = [
    "个人编号",
    "公民身份号码",
    "姓名",
    "单位统一社会信用代码",
    "单位名称",
    "险种类型",
    "缴费基数",
    "缴费年月",
    "缴费状态",
    "变更类型",
    "变更时间",
];
const GRBH: usize = 0;
const GMSFHM: usize = 1;
const XM: usize = 2;
const TYSHXYDM: usize = 3;
const DWMC: usize = 4;
const XZLX: usize = 5;
const JFJS: usize = 6;
const JFNY: usize = 7;
const JFZT: usize = 8;
const BGLX: usize = 9;
const BGSJ: usize = 10;

/// Insurance types (`XZLX`).
const INSURANCE_TYPES: &[&str] = &["110", "120", "210", "310", "410", "510"];
/// Contribution status (`JFZT`): paying, suspended, terminated.
const STATUSES: &[&str] = &["1", "2", "3"];

pub struct HrssAdapter;

impl Adapter for HrssAdapter {
    fn agency(&self) -> Agency {
        Agency::Hrss
    }

    fn format(&self) -> Format {
        Format::CsvGbk
    }

    fn kind(&self) -> RecordKind {
        RecordKind::SocialInsurance
    }

    fn open_batch(
        &self,
        declared: Format,
        header: Option<&[u8]>,
    ) -> Result<Box<dyn RowParser>, BatchError> {
        let header = crate::check_batch(self, declared, header)?.unwrap_or_default();
        let columns = csv_rows::map_header(header, Encoding::Gbk, &HEADERS)?;
        Ok(Box::new(HrssParser {
            columns,
            today: rules::today(),
        }))
    }
}

/// Parses the rows of one batch, with the column map of its header.
struct HrssParser {
    /// Row position of each column of [`HEADERS`].
    columns: [usize; 11],
    /// Birth dates after this day are in the future.
    today: Date,
}

impl RowParser for HrssParser {
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>> {
        let fields = csv_rows::split::<11>(row).map_err(|e| vec![e])?;
        let raw = |col: usize| Encoding::Gbk.raw(fields.get(self.columns[col]));
        let mut c = Checker::default();

        let insured = c.req_text("GRBH", raw(GRBH), |s| rules::digit_string(s, 10, 20));
        let person = c.req("GMSFHM", raw(GMSFHM), |s| {
            rules::identity_number(s, self.today)
        });
        let name = c.required("XM", raw(XM));
        let employer = c.req("TYSHXYDM", raw(TYSHXYDM), rules::credit_code);
        let employer_name = c.required("DWMC", raw(DWMC));
        let insurance_type = c.req("XZLX", raw(XZLX), |s| rules::code_in(s, INSURANCE_TYPES));
        let base = c.opt("JFJS", raw(JFJS), rules::non_negative_money);
        let month = c.req("JFNY", raw(JFNY), rules::year_month);
        let status = c.opt("JFZT", raw(JFZT), |s| rules::code_in(s, STATUSES));
        let change = c.req("BGLX", raw(BGLX), rules::change_type);
        let changed_at = c.req("BGSJ", raw(BGSJ), rules::timestamp);

        let (
            Some(insured),
            Some(person),
            Some(name),
            Some(employer),
            Some(employer_name),
            Some(insurance_type),
            Some(month),
            Some(change),
            Some(changed_at),
        ) = (
            insured,
            person,
            name,
            employer,
            employer_name,
            insurance_type,
            month,
            change,
            changed_at,
        )
        else {
            return Err(c.errors);
        };
        if !c.is_ok() {
            return Err(c.errors);
        }

        let month_key = format!("{:04}{:02}", month.year, month.month);
        let source_key = SourceKey::from_parts([&*insured, insurance_type, &month_key]);
        let mut f = BTreeMap::new();
        put(
            &mut f,
            "person_id",
            Some(Value::IdentityNumber(person.clone())),
        );
        put(
            &mut f,
            "insured_number",
            Some(Value::Text(insured.into_owned())),
        );
        put(
            &mut f,
            "name",
            Some(Value::Text(rules::normalise_name(&name).into_owned())),
        );
        put(
            &mut f,
            "employer_credit_code",
            Some(Value::CreditCode(employer.clone())),
        );
        put(
            &mut f,
            "employer_name",
            Some(Value::Text(employer_name.into_owned())),
        );
        put(
            &mut f,
            "insurance_type",
            Some(Value::Code(insurance_type.to_owned())),
        );
        put(&mut f, "contribution_base", base.map(Value::Money));
        put(&mut f, "contribution_month", Some(Value::YearMonth(month)));
        put(
            &mut f,
            "contribution_status",
            status.map(|s| Value::Code(s.to_owned())),
        );
        Ok(Record {
            kind: RecordKind::SocialInsurance,
            source_key,
            change,
            changed_at,
            person: Some(person),
            enterprise: Some(employer),
            fields: f,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RowErrorCode as E;
    use crate::model::{ChangeType, Timestamp, YearMonth};
    use crate::test_support::{assert_labels, open, sample, split_sample};

    fn gbk(s: &str) -> Vec<u8> {
        encoding_rs::GBK.encode(s).0.into_owned()
    }

    fn header() -> Vec<u8> {
        gbk(&HEADERS.join(","))
    }

    fn parser() -> Box<dyn RowParser> {
        HrssAdapter
            .open_batch(Format::CsvGbk, Some(&header()))
            .unwrap()
    }

    const GOOD: &str = "3402000011,340212197303030095,黎海春,91340281BX68NFEG5M,芜湖伯特利新材料有限公司,510,14507.71,202412,2,1,20250520122502";

    #[test]
    fn sample_rows_match_their_labels() {
        let results = assert_labels(Agency::Hrss);
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 20);
    }

    #[test]
    fn a_sample_row_becomes_a_canonical_record() {
        let (parser, rows) = open(Agency::Hrss);
        // Row 2: 汤文国, base "1,841.00" (quoted), month 202410, status 3.
        let r = parser.parse_row(rows[1]).unwrap();
        assert_eq!(r.kind, RecordKind::SocialInsurance);
        assert_eq!(r.change, ChangeType::New);
        assert_eq!(r.changed_at, Timestamp(1_744_151_713));
        assert_eq!(r.person.as_ref().unwrap().expose(), "340208200412065617");
        assert_eq!(
            r.enterprise.as_ref().unwrap().as_str(),
            "913402124EX020EJ61"
        );
        assert_eq!(r.source_key.expose(), "3402000001\u{1f}510\u{1f}202410");
        assert_eq!(r.fields["contribution_base"], Value::Money(184_100));
        assert_eq!(
            r.fields["contribution_month"],
            Value::YearMonth(YearMonth {
                year: 2024,
                month: 10
            })
        );
        assert_eq!(r.fields["contribution_status"], Value::Code("3".into()));
        assert_eq!(r.fields["insurance_type"], Value::Code("510".into()));
        assert_eq!(r.fields["name"], Value::Text("汤文国".into()));
        assert_eq!(
            r.fields["employer_name"],
            Value::Text("芜湖伯特利汽车零部件有限公司".into())
        );
        assert_eq!(r.fields["insured_number"], Value::Text("3402000001".into()));
    }

    #[test]
    fn legacy_and_padded_identity_numbers_are_normalised() {
        let (parser, rows) = open(Agency::Hrss);
        // Row 3: " 340208200412065617\u{3000}" (leading space, trailing ideographic space).
        let r = parser.parse_row(rows[2]).unwrap();
        assert_eq!(r.person.unwrap().expose(), "340208200412065617");
        // Row 7: legacy 15-digit number, stored upgraded.
        let r = parser.parse_row(rows[6]).unwrap();
        assert_eq!(r.person.unwrap().expose(), "340207196111055700");
        assert_eq!(
            r.fields["person_id"],
            Value::IdentityNumber(crate::IdentityNumber::from_validated(
                "340207196111055700".into()
            ))
        );
    }

    #[test]
    fn every_failing_field_is_reported() {
        let row = gbk(
            "12,340212197303030090,,91340281BX68NFEG5N,芜湖,999,-1,202413,7,4,2025-13-01 00:00:00",
        );
        let errors = parser().parse_row(&row).unwrap_err();
        let got: Vec<_> = errors.iter().map(|e| (e.field, e.code)).collect();
        assert_eq!(
            got,
            [
                ("GRBH", E::BadFormat),
                ("GMSFHM", E::IdChecksum),
                ("XM", E::MissingField),
                ("TYSHXYDM", E::UsccChecksum),
                ("XZLX", E::UnknownCode),
                ("JFJS", E::BadAmount),
                ("JFNY", E::BadDate),
                ("JFZT", E::UnknownCode),
                ("BGLX", E::UnknownCode),
                ("BGSJ", E::BadDate),
            ]
        );
    }

    #[test]
    fn optional_fields_may_be_absent() {
        let row = gbk(&GOOD.replace(",14507.71,202412,2,", ",NULL,202412,,"));
        let r = parser().parse_row(&row).unwrap();
        assert!(!r.fields.contains_key("contribution_base"));
        assert!(!r.fields.contains_key("contribution_status"));
    }

    #[test]
    fn invalid_gbk_rejects_only_that_row_and_field() {
        let (header, rows) = split_sample(sample(Agency::Hrss), true);
        let parser = HrssAdapter.open_batch(Format::CsvGbk, header).unwrap();
        // Replace the name of a valid row by bytes that are not GBK.
        let mut bad = b"3402000011,340212197303030095,\xFF\xFE\x81,91340281BX68NFEG5M,".to_vec();
        bad.extend_from_slice(&gbk(
            "芜湖伯特利新材料有限公司,510,14507.71,202412,2,1,20250520122502",
        ));
        let errors = parser.parse_row(&bad).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert_eq!((errors[0].field, errors[0].code), ("XM", E::Encoding));
        assert!(!errors[0].message.contains("3402"));
        assert!(errors[0].message.is_ascii());
        // The other rows of the batch still parse as labelled.
        let ok = rows.iter().filter(|r| parser.parse_row(r).is_ok()).count();
        assert_eq!(ok, 20);
    }

    #[test]
    fn wrong_column_count_rejects_the_row() {
        let errors = parser()
            .parse_row(&gbk("3402000011,340212197303030095"))
            .unwrap_err();
        assert_eq!((errors[0].field, errors[0].code), ("row", E::BadFormat));
        let errors = parser().parse_row(&gbk(&format!("{GOOD},x"))).unwrap_err();
        assert_eq!((errors[0].field, errors[0].code), ("row", E::BadFormat));
    }

    #[test]
    fn header_columns_any_order_and_trailing_cr() {
        let mut cols = HEADERS;
        cols.reverse();
        let mut h = gbk(&cols.join(","));
        h.push(b'\r');
        let parser = HrssAdapter.open_batch(Format::CsvGbk, Some(&h)).unwrap();
        let mut fields: Vec<&str> = GOOD.split(',').collect();
        fields.reverse();
        assert!(parser.parse_row(&gbk(&fields.join(","))).is_ok());
    }

    #[test]
    fn batch_errors() {
        let err =
            |format, header: Option<&[u8]>| HrssAdapter.open_batch(format, header).err().unwrap();
        assert!(matches!(
            err(Format::CsvUtf8Bom, Some(&header())),
            BatchError::FormatMismatch { .. }
        ));
        assert_eq!(err(Format::CsvGbk, None), BatchError::MissingHeader);
        let missing = gbk(&HEADERS[..10].join(","));
        assert_eq!(
            err(Format::CsvGbk, Some(&missing)),
            BatchError::MissingColumn("变更时间")
        );
        let unknown = gbk(&format!("{},备注", HEADERS.join(",")));
        assert_eq!(
            err(Format::CsvGbk, Some(&unknown)),
            // A Chinese title is not of the safe form: named by position.
            BatchError::UnknownColumn {
                position: HEADERS.len() + 1,
                name: None
            }
        );
        let dup = gbk(&format!("{},姓名", HEADERS.join(",")));
        assert_eq!(
            err(Format::CsvGbk, Some(&dup)),
            BatchError::DuplicateColumn("姓名")
        );
        let mut bad = header();
        bad.extend_from_slice(b",\xFF");
        assert_eq!(
            err(Format::CsvGbk, Some(&bad)),
            BatchError::HeaderEncoding(HEADERS.len() + 1)
        );
        // A UTF-8 header is not the GBK header the agency declared.
        assert!(
            HrssAdapter
                .open_batch(Format::CsvGbk, Some(HEADERS.join(",").as_bytes()))
                .is_err()
        );
    }
}
