//! The compliance console in a real browser: headless Chromium, driven
//! through chromedriver, against the real console process and a real
//! gateway loaded with the agencies' samples. One behaviour per file; one
//! test binary, so the gateway and the console are linked once. Screenshots
//! of each page go to `target/console-screenshots/`.

mod support;

mod checkpoint_history;
mod csv_download;
mod entry_inclusion;
mod language;
mod overview_tables_fit;
mod person_report;
mod privacy;
mod search;
mod tamper;
