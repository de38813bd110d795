//! One compliance suite run over every adapter: labelled samples, canonical types,
//! no raw personal value in any rejection or debug output, no caller text in a
//! batch rejection unless it is of a fixed safe form, and no panic on any input
//! (random bytes and random mutations of the samples).

use crate::model::{Record, RecordKind, Value, ValueType};
use crate::test_support::{assert_labels, open, other_format, sample, split_sample};
use crate::{Adapter, Agency, BatchError, RowError, adapter_for};
use proptest::prelude::*;

fn value_type(v: &Value) -> ValueType {
    match v {
        Value::Text(_) => ValueType::Text,
        Value::Code(_) => ValueType::Code,
        Value::Integer(_) => ValueType::Integer,
        Value::Money(_) => ValueType::Money,
        Value::Date(_) => ValueType::Date,
        Value::YearMonth(_) => ValueType::YearMonth,
        Value::Year(_) => ValueType::Year,
        Value::Timestamp(_) => ValueType::Timestamp,
        Value::Bool(_) => ValueType::Bool,
        Value::IdentityNumber(_) => ValueType::IdentityNumber,
        Value::CreditCode(_) => ValueType::CreditCode,
        Value::Division(_) => ValueType::Division,
    }
}

fn adapter(agency: Agency) -> &'static dyn Adapter {
    adapter_for(agency).expect("every agency has an adapter")
}

/// Checks a record against its kind's schema.
fn assert_canonical(kind: RecordKind, r: &Record) {
    assert_eq!(r.kind, kind);
    for (name, value) in &r.fields {
        let spec = kind
            .field(name)
            .unwrap_or_else(|| panic!("{kind}.{name} is not in the schema"));
        assert_eq!(spec.ty, value_type(value), "{kind}.{name}");
    }
}

/// The sample row's raw values of the fields whose category is personal, as the
/// agency sent them (at least three characters, so that codes such as `01` that
/// also occur in fixed rule descriptions are not counted).
fn personal_values(agency: Agency, header: Option<&[u8]>, row: &[u8]) -> Vec<String> {
    let kind = adapter(agency).kind();
    let personal: Vec<&str> = kind
        .schema()
        .iter()
        .filter(|f| f.category.is_personal())
        .map(|f| f.source)
        .collect();
    let decode = |b: &[u8]| match agency {
        Agency::Hrss => encoding_rs::GBK.decode(b).0.into_owned(),
        _ => String::from_utf8_lossy(b).into_owned(),
    };
    let mut values = Vec::new();
    if let Some(header) = header {
        // Column names in the header are the Chinese titles (hrss) or the keys (tax).
        let names: Vec<String> = decode(header)
            .trim_start_matches('\u{FEFF}')
            .split(',')
            .map(str::to_owned)
            .collect();
        let cells: Vec<String> = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(row)
            .byte_records()
            .next()
            .and_then(Result::ok)
            .map(|r| r.iter().map(decode).collect())
            .unwrap_or_default();
        for (i, cell) in cells.into_iter().enumerate() {
            let key = match agency {
                Agency::Hrss => kind.schema().iter().find(|f| {
                    crate::test_support::HRSS_COLUMNS.iter().any(|(title, k)| {
                        names.get(i).is_some_and(|n| n == title) && *k == f.source
                    })
                }),
                _ => kind
                    .schema()
                    .iter()
                    .find(|f| names.get(i).is_some_and(|n| n == f.source)),
            };
            if key.is_some_and(|f| personal.contains(&f.source)) {
                values.push(cell);
            }
        }
    } else if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(row) {
        for (k, v) in map {
            if personal.contains(&k.as_str()) {
                values.push(match v {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                });
            }
        }
    }
    values
        .into_iter()
        .map(|v| v.trim_matches(char::is_whitespace).to_owned())
        .filter(|v| v.chars().count() >= 3)
        .collect()
}

#[test]
fn every_agency_has_a_consistent_adapter() {
    for agency in Agency::ALL {
        let a = adapter(agency);
        assert_eq!(a.agency(), agency);
        assert_eq!(a.kind().source(), agency);
        assert!(!a.kind().schema().is_empty(), "{agency}");
        let wrong = other_format(a.format());
        assert!(matches!(
            a.open_batch(wrong, None).err(),
            Some(BatchError::FormatMismatch { .. })
        ));
        if a.format().is_csv() {
            assert_eq!(
                a.open_batch(a.format(), None).err(),
                Some(BatchError::MissingHeader)
            );
        } else {
            assert!(matches!(
                a.open_batch(a.format(), Some(b"A,B")).err(),
                Some(BatchError::BadHeader(_))
            ));
        }
    }
}

#[test]
fn every_schema_names_each_field_once_with_its_source() {
    for kind in RecordKind::ALL {
        let schema = kind.schema();
        for (i, f) in schema.iter().enumerate() {
            assert!(
                !f.source.is_empty() && !f.description.is_empty(),
                "{kind}.{}",
                f.name
            );
            assert!(
                schema[..i].iter().all(|g| g.name != f.name),
                "{kind}.{} twice",
                f.name
            );
        }
    }
}

#[test]
fn every_labelled_sample_row_and_record_shape() {
    for agency in Agency::ALL {
        let kind = adapter(agency).kind();
        for r in assert_labels(agency).iter().flatten() {
            assert_canonical(kind, r);
            if let Some(id) = &r.person {
                assert_eq!(id.expose().len(), 18);
            }
        }
    }
}

#[test]
fn no_raw_personal_value_in_errors_or_debug_output() {
    for agency in Agency::ALL {
        let a = adapter(agency);
        let (header, rows) = split_sample(sample(agency), a.format().is_csv());
        let (parser, _) = open(agency);
        let mut checked = 0;
        for row in rows {
            let values = personal_values(agency, header, row);
            assert!(!values.is_empty(), "{agency}: no personal values found");
            let result = parser.parse_row(row);
            let mut outputs = vec![format!("{result:?}")];
            if let Err(errors) = &result {
                outputs.extend(errors.iter().map(|e| e.message.clone()));
            }
            for out in &outputs {
                for v in &values {
                    assert!(!out.contains(v.as_str()), "{agency}: a raw value leaked");
                    checked += 1;
                }
            }
        }
        assert!(checked > 0);
    }
}

/// Parses one row with every adapter's sample parser; only panics matter.
fn parse_everywhere(agency: Agency, row: &[u8]) -> Result<Record, Vec<RowError>> {
    let (parser, _) = open(agency);
    let result = parser.parse_row(row);
    if let Err(errors) = &result {
        assert!(!errors.is_empty(), "a rejection names at least one reason");
    }
    result
}

fn agency_strategy() -> impl Strategy<Value = Agency> {
    proptest::sample::select(Agency::ALL.to_vec())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(agency in agency_strategy(), row in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_everywhere(agency, &row);
    }

    #[test]
    fn random_headers_never_panic(agency in agency_strategy(), header in proptest::collection::vec(any::<u8>(), 0..200)) {
        let a = adapter(agency);
        let _ = a.open_batch(a.format(), Some(&header));
    }

    #[test]
    fn mutated_sample_rows_never_panic(
        agency in agency_strategy(),
        pick in any::<proptest::sample::Index>(),
        edits in proptest::collection::vec((any::<proptest::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let a = adapter(agency);
        let (_, rows) = split_sample(sample(agency), a.format().is_csv());
        let mut row = pick.get(&rows).to_vec();
        for (at, byte, op) in edits {
            let i = if row.is_empty() { 0 } else { at.index(row.len()) };
            match op {
                0 if !row.is_empty() => row[i] = byte,
                1 => row.insert(i, byte),
                _ if !row.is_empty() => { row.remove(i); }
                _ => row.push(byte),
            }
        }
        if let Ok(r) = parse_everywhere(agency, &row) {
            assert_canonical(a.kind(), &r);
        }
    }
}

/// The only text of the agency's own in a batch rejection may be a column
/// name of the safe form; the rest of every message is fixed text, positions
/// and the adapter's own column names.
fn assert_only_safe_caller_text(agency: Agency, e: &BatchError) {
    if let BatchError::UnknownColumn {
        name: Some(name), ..
    } = e
    {
        assert!(
            crate::safe_column_name(name),
            "{agency}: {e} names a column not of the safe form"
        );
    }
}

/// The agency's sample header with `column` inserted as column `at` (0-based),
/// in the export's encoding.
fn header_with(agency: Agency, column: &str, at: usize) -> (Vec<u8>, usize) {
    let (header, _) = split_sample(sample(agency), true);
    let header = header.expect("a CSV sample has a header");
    let (text, bom) = match agency {
        Agency::Hrss => (encoding_rs::GBK.decode(header).0.into_owned(), false),
        _ => (
            String::from_utf8_lossy(header)
                .trim_start_matches('\u{FEFF}')
                .to_owned(),
            true,
        ),
    };
    let mut columns: Vec<&str> = text.split(',').collect();
    let at = at % (columns.len() + 1);
    columns.insert(at, column);
    let joined = columns.join(",");
    let bytes = match agency {
        Agency::Hrss => encoding_rs::GBK.encode(&joined).0.into_owned(),
        _ => {
            let mut b = if bom {
                b"\xEF\xBB\xBF".to_vec()
            } else {
                Vec::new()
            };
            b.extend_from_slice(joined.as_bytes());
            b
        }
    };
    (bytes, at)
}

/// Personal values and other text an agency might put in a header by
/// mistake (a data row sent as the header): none of the safe form.
fn hostile_column() -> impl Strategy<Value = String> {
    prop_oneof![
        // An identity number, valid or not, and one glued to a safe-looking name.
        "[1-6][0-9]{16}[0-9X]",
        "COL_[1-6][0-9]{16}[0-9X]",
        "1[3-9][0-9]{9}",
        "X1[3-9][0-9]{9}",
        "[\u{4e00}-\u{9fa5}]{3,6}",
        "[a-z]{2,8} [a-z]{2,8}",
        "[A-Za-z0-9_]{33,40}",
        "[^,\"\r\n]{3,24}",
    ]
}

#[test]
fn safe_column_names() {
    for ok in ["EXTRA", "NSRSBH", "col_7", "A"] {
        assert!(crate::safe_column_name(ok), "{ok}");
    }
    for bad in [
        "",
        "7col",
        "备注",
        "has space",
        "COL_340208197803169486",
        "X13812345678",
        &"A".repeat(33),
    ] {
        assert!(!crate::safe_column_name(bad), "{bad}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A header column the export does not have is named by position; its
    /// text is repeated only when of the safe form.
    #[test]
    fn an_unknown_column_is_named_without_echoing_caller_text(
        agency in proptest::sample::select(vec![Agency::Hrss, Agency::Tax]),
        column in hostile_column(),
        at in any::<usize>(),
    ) {
        let a = adapter(agency);
        let (header, at) = header_with(agency, &column, at);
        let e = a.open_batch(a.format(), Some(&header)).err();
        // The inserted text may be garbled by the export's encoding or be
        // read as several columns: the batch is refused either way.
        let e = e.expect("a header with an extra column is refused");
        assert_only_safe_caller_text(agency, &e);
        let message = e.to_string();
        let trimmed = crate::rules::normalise(&column);
        if !crate::safe_column_name(&trimmed) && trimmed.chars().count() >= 3 {
            prop_assert!(!message.contains(trimmed.as_ref()), "{agency}: {message}");
        }
        if let BatchError::UnknownColumn { position, .. } = e
            && trimmed.chars().all(|c| !c.is_control())
            && !column.contains(['"', ','])
        {
            prop_assert_eq!(position, at + 1);
        }
    }

    #[test]
    fn random_headers_are_refused_without_echoing_caller_text(
        agency in agency_strategy(),
        header in proptest::collection::vec(any::<u8>(), 0..200),
    ) {
        let a = adapter(agency);
        if let Err(e) = a.open_batch(a.format(), Some(&header)) {
            assert_only_safe_caller_text(agency, &e);
        }
    }
}

/// The field tables of `MODEL.md`, rendered from the schema.
fn model_tables() -> String {
    let mut out = String::new();
    for kind in RecordKind::ALL {
        let a = adapter(kind.source());
        out.push_str(&format!(
            "## `{kind}` — from `{}` ({})\n\n| field | type | category | source field | meaning |\n|---|---|---|---|---|\n",
            kind.source(),
            a.format()
        ));
        for f in kind.schema() {
            let ty = serde_json::to_value(f.ty).unwrap();
            let ty = ty.as_str().unwrap();
            out.push_str(&format!(
                "| `{}` | {ty} | {} | `{}` | {} |\n",
                f.name,
                f.category.id(),
                f.source,
                f.description
            ));
        }
        out.push('\n');
    }
    out
}

#[test]
fn model_md_documents_the_schema() {
    let doc = include_str!("../MODEL.md");
    let tables = model_tables();
    assert!(
        doc.contains(tables.trim_end()),
        "adapters/MODEL.md is out of date; regenerate with \
         `cargo test -p adapters -- --ignored print_model_tables --nocapture`"
    );
}

#[test]
#[ignore = "prints the tables of MODEL.md"]
fn print_model_tables() {
    print!("{}", model_tables());
}
