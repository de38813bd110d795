//! Fuzzes the `tax` adapter: open_batch + parse_row on arbitrary bytes.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    adapters_fuzz::run(adapters::Agency::Tax, data);
});
