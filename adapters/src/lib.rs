//! Agency adapters: the "sources → transforms" half of the gateway.
//!
//! Each of the six municipal agencies pushes its own native export (formats in
//! `tests/fixtures/agencies/SPECIFICATION.md`, the interface specification). An adapter
//! cleans, validates and turns each row into one of the union's canonical records
//! ([`model::Record`]), or rejects that row alone with a stable [`RowErrorCode`].
//! Agency field codes (`GMSFHM`, `JFJS`, …) never leave the adapter except as the
//! `field` of a rejection reported back to the agency that sent them.

#![forbid(unsafe_code)]

pub mod codec;
pub mod model;
pub mod rules;
pub mod simulate;

mod check;
#[cfg(test)]
mod compliance_tests;
mod csv_rows;
mod housing;
mod hrss;
mod json_rows;
mod market_regulation;
mod public_security;
mod tax;
#[cfg(test)]
mod test_support;
mod work_safety;

pub use model::{
    Agency, Category, ChangeType, CreditCode, Date, FieldSpec, Format, IdentityNumber, Record,
    RecordKind, SourceKey, Timestamp, Value, ValueType, YearMonth,
};

use std::fmt;

/// Stable, machine-readable rejection codes (specification §1.9). The string forms
/// are part of the wire contract with the agencies and must never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RowErrorCode {
    IdChecksum,
    IdBirthDate,
    IdFormat,
    UsccChecksum,
    UsccFormat,
    BadDate,
    BadAmount,
    BadPhone,
    BadFormat,
    OutOfRange,
    UnknownCode,
    MissingField,
    AreaCode,
    FieldMismatch,
    Encoding,
}

impl RowErrorCode {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::IdChecksum => "id_checksum",
            Self::IdBirthDate => "id_birth_date",
            Self::IdFormat => "id_format",
            Self::UsccChecksum => "uscc_checksum",
            Self::UsccFormat => "uscc_format",
            Self::BadDate => "bad_date",
            Self::BadAmount => "bad_amount",
            Self::BadPhone => "bad_phone",
            Self::BadFormat => "bad_format",
            Self::OutOfRange => "out_of_range",
            Self::UnknownCode => "unknown_code",
            Self::MissingField => "missing_field",
            Self::AreaCode => "area_code",
            Self::FieldMismatch => "field_mismatch",
            Self::Encoding => "encoding",
        }
    }
}

impl fmt::Display for RowErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One reason a row was rejected. `message` describes the rule that failed and
/// never contains the field's raw value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// The agency's own field key (`GMSFHM`), or `"row"` for a row-level problem
    /// such as malformed JSON or a wrong number of CSV columns.
    pub field: &'static str,
    pub code: RowErrorCode,
    pub message: String,
}

impl RowError {
    pub fn new(field: &'static str, code: RowErrorCode, message: impl Into<String>) -> Self {
        Self {
            field,
            code,
            message: message.into(),
        }
    }
}

/// A problem with a whole batch (it is rejected before any row is read).
///
/// The messages go back to the agency in its receipt and into the gateway's
/// logs, so they hold no text the agency sent unless it is in a fixed safe
/// form: a column is named by the adapter's own column name, by its position,
/// or by the agency's header text only when that is a [`safe_column_name`].
/// A header line can be anything (a data row sent as a header holds names and
/// identity numbers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("agency {agency} exports {expected}, but the batch declares {declared}")]
    FormatMismatch {
        agency: Agency,
        expected: Format,
        declared: Format,
    },
    #[error("the CSV header is missing")]
    MissingHeader,
    #[error("the CSV header lacks the required column `{0}`")]
    MissingColumn(&'static str),
    #[error("column {} of the CSV header{} is not in the export format", .position, shown_name(.name))]
    UnknownColumn {
        /// 1-based.
        position: usize,
        /// The header's text, only if it is a [`safe_column_name`].
        name: Option<String>,
    },
    #[error("the CSV header names the column `{0}` twice")]
    DuplicateColumn(&'static str),
    #[error("the CSV header cannot be read: {0}")]
    BadHeader(&'static str),
    #[error("column {0} of the CSV header is not valid in the export's encoding")]
    HeaderEncoding(usize),
}

fn shown_name(name: &Option<String>) -> String {
    name.as_ref()
        .map(|n| format!(" (`{n}`)"))
        .unwrap_or_default()
}

/// Whether an agency's header text may be repeated back as a column name:
/// 1 to 32 ASCII letters, digits and `_`, starting with a letter, and holding
/// no personal identifier ([`rules::find_identifier`]). Every export's own
/// column keys have this form (the Chinese titles of the hrss export do not:
/// an unknown one is named by position only, as a name or an address in a
/// header would be).
pub fn safe_column_name(name: &str) -> bool {
    let b = name.as_bytes();
    (1..=32).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
        && rules::find_identifier(name).is_none()
}

impl BatchError {
    /// Stable code for the batch-level rejection.
    pub const fn code(&self) -> &'static str {
        match self {
            Self::FormatMismatch { .. } => "format_mismatch",
            Self::MissingHeader => "missing_header",
            Self::MissingColumn(_) => "missing_column",
            Self::UnknownColumn { .. } => "unknown_column",
            Self::DuplicateColumn(_) => "duplicate_column",
            Self::BadHeader(_) | Self::HeaderEncoding(_) => "bad_header",
        }
    }
}

/// Parses the rows of one batch, after its header (if any) has been accepted.
pub trait RowParser: Send {
    /// Parses one raw row (bytes exactly as exported, without the line ending).
    /// Every rule that fails is reported, so the agency can fix a row in one go.
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>>;
}

/// One agency's adapter. Implementations are stateless and shared between batches.
pub trait Adapter: Send + Sync {
    fn agency(&self) -> Agency;
    /// The single native format this agency exports.
    fn format(&self) -> Format;
    /// The canonical record kind this agency's rows become.
    fn kind(&self) -> RecordKind;
    /// Checks the batch's declared format and CSV header, and returns a parser
    /// for its rows. `header` is the raw header line for CSV formats.
    fn open_batch(
        &self,
        declared: Format,
        header: Option<&[u8]>,
    ) -> Result<Box<dyn RowParser>, BatchError>;
}

/// The adapter for an agency. Which adapter runs is decided by the caller's
/// certificate, never by a request field: the gateway passes the agency it
/// extracted from the client certificate.
pub fn adapter_for(agency: Agency) -> Option<&'static dyn Adapter> {
    Some(match agency {
        Agency::PublicSecurity => &public_security::PublicSecurityAdapter,
        Agency::Hrss => &hrss::HrssAdapter,
        Agency::MarketRegulation => &market_regulation::MarketRegulationAdapter,
        Agency::Tax => &tax::TaxAdapter,
        Agency::Housing => &housing::HousingAdapter,
        Agency::WorkSafety => &work_safety::WorkSafetyAdapter,
    })
}

/// Declares a JSON Lines agency's adapter: its agency and record kind, and the
/// row parser (a struct holding the batch's `today`) it opens for each batch
/// after the shared batch-level checks.
#[macro_export]
#[doc(hidden)]
macro_rules! json_adapter {
    ($adapter:ident, $agency:expr, $kind:expr, $parser:ident) => {
        pub struct $adapter;

        impl $crate::Adapter for $adapter {
            fn agency(&self) -> $crate::Agency {
                $agency
            }

            fn format(&self) -> $crate::Format {
                $crate::Format::JsonLines
            }

            fn kind(&self) -> $crate::RecordKind {
                $kind
            }

            fn open_batch(
                &self,
                declared: $crate::Format,
                header: Option<&[u8]>,
            ) -> Result<Box<dyn $crate::RowParser>, $crate::BatchError> {
                $crate::check_batch(self, declared, header)?;
                Ok(Box::new($parser {
                    today: $crate::rules::today(),
                }))
            }
        }

        struct $parser {
            today: $crate::Date,
        }
    };
}

/// The batch-level checks every adapter shares: the declared format must be the
/// agency's own, and a CSV batch must carry its header (a JSON Lines batch has none).
fn check_batch<'h>(
    adapter: &dyn Adapter,
    declared: Format,
    header: Option<&'h [u8]>,
) -> Result<Option<&'h [u8]>, BatchError> {
    let expected = adapter.format();
    if declared != expected {
        return Err(BatchError::FormatMismatch {
            agency: adapter.agency(),
            expected,
            declared,
        });
    }
    let header = header.filter(|h| !h.is_empty());
    match (expected.is_csv(), header) {
        (true, None) => Err(BatchError::MissingHeader),
        (false, Some(_)) => Err(BatchError::BadHeader(
            "a JSON Lines batch has no header row",
        )),
        (_, h) => Ok(h),
    }
}
