//! Test helpers: the agencies' labelled samples, read from the project's fixtures.
//!
//! The fixtures are compiled into the test binary, so the tests do not depend on
//! the working directory.

use crate::{Adapter, Agency, Format, Record, RowError, RowParser, adapter_for};

pub const LABELS: &str = include_str!("../../tests/fixtures/agencies/samples/labels.jsonl");

/// The sample export of an agency.
pub fn sample(agency: Agency) -> &'static [u8] {
    match agency {
        Agency::PublicSecurity => {
            include_bytes!("../../tests/fixtures/agencies/samples/public_security.jsonl")
        }
        Agency::Hrss => include_bytes!("../../tests/fixtures/agencies/samples/hrss.csv"),
        Agency::MarketRegulation => {
            include_bytes!("../../tests/fixtures/agencies/samples/market_regulation.jsonl")
        }
        Agency::Tax => include_bytes!("../../tests/fixtures/agencies/samples/tax.csv"),
        Agency::Housing => include_bytes!("../../tests/fixtures/agencies/samples/housing.jsonl"),
        Agency::WorkSafety => {
            include_bytes!("../../tests/fixtures/agencies/samples/work_safety.jsonl")
        }
    }
}

/// One line of `labels.jsonl`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Label {
    pub agency: String,
    pub row: usize,
    pub accept: bool,
    pub field: Option<String>,
    pub code: Option<String>,
    pub free_text_pii: Option<bool>,
}

pub fn labels(agency: Agency) -> Vec<Label> {
    LABELS
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str::<Label>(l).expect("labels.jsonl line"))
        .filter(|l| l.agency == agency.id())
        .collect()
}

/// Splits a sample file on `\n`, strips `\r`; returns (header, data rows).
pub fn split_sample(bytes: &[u8], csv: bool) -> (Option<&[u8]>, Vec<&[u8]>) {
    let mut lines = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty());
    let header = if csv { lines.next() } else { None };
    (header, lines.collect())
}

/// The sample's header and rows, and a parser opened on that header.
pub fn open(agency: Agency) -> (Box<dyn RowParser>, Vec<&'static [u8]>) {
    let adapter: &dyn Adapter = adapter_for(agency).expect("adapter installed");
    let (header, rows) = split_sample(sample(agency), adapter.format().is_csv());
    let parser = adapter
        .open_batch(adapter.format(), header)
        .expect("sample header accepted");
    (parser, rows)
}

/// Checks every labelled row of an agency's sample; returns the parse results.
pub fn assert_labels(agency: Agency) -> Vec<Result<Record, Vec<RowError>>> {
    let (parser, rows) = open(agency);
    let labels = labels(agency);
    assert_eq!(
        labels.len(),
        rows.len(),
        "one label per {agency} sample row"
    );
    let mut results = Vec::new();
    for label in &labels {
        let row = rows[label.row - 1];
        let got = parser.parse_row(row);
        match (&got, label.accept) {
            (Ok(_), true) => {}
            (Err(errors), true) => panic!(
                "{agency} row {} must be accepted, got {:?}",
                label.row,
                errors
                    .iter()
                    .map(|e| (e.field, e.code.as_str()))
                    .collect::<Vec<_>>()
            ),
            (Ok(_), false) => panic!("{agency} row {} must be rejected", label.row),
            (Err(errors), false) => {
                let (field, code) = (label.field.as_deref(), label.code.as_deref());
                assert!(
                    errors
                        .iter()
                        .any(|e| Some(e.field) == field && Some(e.code.as_str()) == code),
                    "{agency} row {}: expected {field:?} {code:?} among {:?}",
                    label.row,
                    errors
                        .iter()
                        .map(|e| (e.field, e.code.as_str()))
                        .collect::<Vec<_>>()
                );
            }
        }
        results.push(got);
    }
    results
}

/// The hrss export's Chinese column titles and the field keys they carry.
pub const HRSS_COLUMNS: [(&str, &str); 11] = [
    ("个人编号", "GRBH"),
    ("公民身份号码", "GMSFHM"),
    ("姓名", "XM"),
    ("单位统一社会信用代码", "TYSHXYDM"),
    ("单位名称", "DWMC"),
    ("险种类型", "XZLX"),
    ("缴费基数", "JFJS"),
    ("缴费年月", "JFNY"),
    ("缴费状态", "JFZT"),
    ("变更类型", "BGLX"),
    ("变更时间", "BGSJ"),
];

/// A format other than `f`, which the adapter for `f` must refuse.
pub fn other_format(f: Format) -> Format {
    match f {
        Format::JsonLines => Format::CsvGbk,
        Format::CsvGbk | Format::CsvUtf8Bom => Format::JsonLines,
    }
}
