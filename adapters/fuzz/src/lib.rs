//! What every fuzz target does with libFuzzer's bytes: open a batch and parse
//! rows, which must never panic whatever the input (specification §1.9: a bad row
//! is rejected on its own, a bad header rejects the batch with a message).
//!
//! For CSV agencies the input is tried twice: with its own first line as the
//! header (header checking is fuzzed), and under the agency's real header (so
//! that the row parser is reached even when the fuzzer has not found a header).

use adapters::{Agency, adapter_for};

/// The first line of an agency's sample export: the real CSV header.
fn sample_header(agency: Agency) -> Option<&'static [u8]> {
    let sample: &'static [u8] = match agency {
        Agency::Hrss => include_bytes!("../../../tests/fixtures/agencies/samples/hrss.csv"),
        Agency::Tax => include_bytes!("../../../tests/fixtures/agencies/samples/tax.csv"),
        _ => return None,
    };
    sample
        .split(|b| *b == b'\n')
        .next()
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

fn lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    data.split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
}

pub fn run(agency: Agency, data: &[u8]) {
    let Some(adapter) = adapter_for(agency) else {
        return;
    };
    let format = adapter.format();
    if format.is_csv() {
        let mut rows = lines(data);
        if let Some(header) = rows.next()
            && let Ok(parser) = adapter.open_batch(format, Some(header))
        {
            rows.for_each(|row| drop(parser.parse_row(row)));
        }
        if let Ok(parser) = adapter.open_batch(format, sample_header(agency)) {
            lines(data).for_each(|row| drop(parser.parse_row(row)));
        }
    } else if let Ok(parser) = adapter.open_batch(format, None) {
        lines(data).for_each(|row| drop(parser.parse_row(row)));
    }
}
