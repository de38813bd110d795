//! The union's canonical ("unionised") model: one vocabulary for all six agencies.
//!
//! A person is one subject across agencies, keyed by the normalised 18-digit
//! identity number; an enterprise is one subject keyed by its unified social
//! credit code. Every field carries a data [`Category`] that policies and their
//! lint reason about. The tables in `adapters/MODEL.md` document each kind.
//!
//! Types that hold personal identifiers ([`IdentityNumber`], [`SourceKey`]) do not
//! implement `Display` and redact themselves in `Debug`, so a raw identity number
//! cannot end up in a log line, an error message or a panic by accident. Reading
//! the raw value takes an explicit `expose()`.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The six agencies that push to the gateway. The id is the path segment of the
/// agency's certificate URI (`spiffe://<trust-domain>/agency/<id>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agency {
    PublicSecurity,
    Hrss,
    MarketRegulation,
    Tax,
    Housing,
    WorkSafety,
}

impl Agency {
    pub const ALL: [Agency; 6] = [
        Agency::PublicSecurity,
        Agency::Hrss,
        Agency::MarketRegulation,
        Agency::Tax,
        Agency::Housing,
        Agency::WorkSafety,
    ];

    pub const fn id(self) -> &'static str {
        match self {
            Agency::PublicSecurity => "public_security",
            Agency::Hrss => "hrss",
            Agency::MarketRegulation => "market_regulation",
            Agency::Tax => "tax",
            Agency::Housing => "housing",
            Agency::WorkSafety => "work_safety",
        }
    }

    pub fn from_id(id: &str) -> Option<Agency> {
        Agency::ALL.into_iter().find(|a| a.id() == id)
    }
}

impl fmt::Display for Agency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The native export formats named in the interface specification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// JSON Lines, UTF-8, one object per line.
    JsonLines,
    /// Comma-separated values, GBK-encoded, header row first.
    CsvGbk,
    /// Comma-separated values, UTF-8 with a byte-order mark, header row first.
    CsvUtf8Bom,
}

impl Format {
    pub const fn id(self) -> &'static str {
        match self {
            Format::JsonLines => "json_lines",
            Format::CsvGbk => "csv_gbk",
            Format::CsvUtf8Bom => "csv_utf8_bom",
        }
    }

    pub const fn is_csv(self) -> bool {
        matches!(self, Format::CsvGbk | Format::CsvUtf8Bom)
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// The kinds of canonical record, one per agency export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// Household registration (public security).
    Household,
    /// Social-insurance contributions (human resources & social security).
    SocialInsurance,
    /// Enterprise registry (market regulation).
    Enterprise,
    /// Taxpayer standing per tax year (tax).
    Taxpayer,
    /// Affordable-housing assistance applications (housing).
    HousingAssistance,
    /// Workplace accidents and injuries, one record per injured person (work safety).
    WorkInjury,
}

impl RecordKind {
    pub const ALL: [RecordKind; 6] = [
        RecordKind::Household,
        RecordKind::SocialInsurance,
        RecordKind::Enterprise,
        RecordKind::Taxpayer,
        RecordKind::HousingAssistance,
        RecordKind::WorkInjury,
    ];

    pub const fn id(self) -> &'static str {
        match self {
            RecordKind::Household => "household",
            RecordKind::SocialInsurance => "social_insurance",
            RecordKind::Enterprise => "enterprise",
            RecordKind::Taxpayer => "taxpayer",
            RecordKind::HousingAssistance => "housing_assistance",
            RecordKind::WorkInjury => "work_injury",
        }
    }

    pub fn from_id(id: &str) -> Option<RecordKind> {
        RecordKind::ALL.into_iter().find(|k| k.id() == id)
    }

    /// The agency whose exports produce this kind.
    pub const fn source(self) -> Agency {
        match self {
            RecordKind::Household => Agency::PublicSecurity,
            RecordKind::SocialInsurance => Agency::Hrss,
            RecordKind::Enterprise => Agency::MarketRegulation,
            RecordKind::Taxpayer => Agency::Tax,
            RecordKind::HousingAssistance => Agency::Housing,
            RecordKind::WorkInjury => Agency::WorkSafety,
        }
    }

    /// The fields of this kind, in canonical order.
    pub fn schema(self) -> &'static [FieldSpec] {
        crate::model::schema::fields(self)
    }

    pub fn field(self, name: &str) -> Option<&'static FieldSpec> {
        self.schema().iter().find(|f| f.name == name)
    }

    /// The kind's field names in name order (the order records list them in
    /// binary form).
    pub fn field_names_sorted(self) -> &'static [&'static str] {
        static SORTED: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
        let all = SORTED.get_or_init(|| {
            RecordKind::ALL
                .iter()
                .map(|k| {
                    let mut names: Vec<&'static str> = k.schema().iter().map(|f| f.name).collect();
                    names.sort_unstable();
                    names
                })
                .collect()
        });
        let at = RecordKind::ALL
            .iter()
            .position(|k| *k == self)
            .expect("every kind is in ALL");
        &all[at]
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.id())
    }
}

/// What kind of data a field holds. Policies and the policy lint decide by
/// category how carefully a field must be released.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    /// Identity numbers and other numbers that single out a person.
    Identifier,
    Name,
    /// Phone numbers.
    Contact,
    Address,
    BirthDate,
    Ethnicity,
    /// Wages, contribution bases, incomes, subsidies, tax figures.
    Financial,
    HealthInjury,
    /// Employment facts: insurance types, contribution status, job, department.
    Employment,
    /// Facts about an enterprise (not personal data in itself).
    Enterprise,
    FreeText,
    /// Administrative facts that are not about a person: codes, dates of a process.
    Administrative,
}

impl Category {
    pub const fn id(self) -> &'static str {
        match self {
            Category::Identifier => "identifier",
            Category::Name => "name",
            Category::Contact => "contact",
            Category::Address => "address",
            Category::BirthDate => "birth_date",
            Category::Ethnicity => "ethnicity",
            Category::Financial => "financial",
            Category::HealthInjury => "health_injury",
            Category::Employment => "employment",
            Category::Enterprise => "enterprise",
            Category::FreeText => "free_text",
            Category::Administrative => "administrative",
        }
    }

    /// Categories that the policy lint refuses to see delivered in clear
    /// without a written justification.
    pub const fn is_sensitive(self) -> bool {
        matches!(
            self,
            Category::Identifier
                | Category::Ethnicity
                | Category::HealthInjury
                | Category::Financial
        )
    }

    /// Categories whose raw values must never appear in logs, errors or audit entries.
    pub const fn is_personal(self) -> bool {
        matches!(
            self,
            Category::Identifier
                | Category::Name
                | Category::Contact
                | Category::Address
                | Category::BirthDate
                | Category::Ethnicity
                | Category::Financial
                | Category::HealthInjury
                | Category::FreeText
        )
    }
}

/// The type of a canonical field's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueType {
    Text,
    /// A value from a code table (kept as the canonical code string).
    Code,
    Integer,
    /// Money held exactly, in fen (1/100 yuan).
    Money,
    Date,
    YearMonth,
    Year,
    Timestamp,
    Bool,
    IdentityNumber,
    CreditCode,
    /// A GB/T 2260 administrative division code.
    Division,
}

/// One field of a canonical record kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub name: &'static str,
    pub ty: ValueType,
    pub category: Category,
    /// The agency's source field key this field is read from.
    pub source: &'static str,
    pub description: &'static str,
}

/// A calendar date (Beijing local).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Date {
    pub year: i32,
    pub month: u8,
    pub day: u8,
}

impl fmt::Display for Date {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}-{:02}", self.year, self.month, self.day)
    }
}

/// A calendar month, e.g. a contribution month.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct YearMonth {
    pub year: i32,
    pub month: u8,
}

impl fmt::Display for YearMonth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.year, self.month)
    }
}

/// An instant, as seconds since the Unix epoch (UTC). Agencies send Beijing
/// time (UTC+8, no DST); adapters convert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// RFC 3339 in Beijing time, e.g. `2025-05-20T12:25:02+08:00`.
    pub fn to_beijing_rfc3339(self) -> String {
        // UTC day and second of day, then eight hours on (without adding
        // to the instant itself, which could overflow at the far end).
        let (mut days, mut rem) = (
            self.0.div_euclid(86_400),
            self.0.rem_euclid(86_400) + 8 * 3600,
        );
        if rem >= 86_400 {
            days += 1;
            rem -= 86_400;
        }
        let (y, m, d) = civil_from_days(days);
        let rem = rem as u32;
        let (hour, minute, second) = (rem / 3600, rem / 60 % 60, rem % 60);
        if !(0..=9999).contains(&y) {
            return format!("{y:04}-{m:02}-{d:02}T{hour:02}:{minute:02}:{second:02}+08:00");
        }
        // Every delivered record carries one: written digit by digit, as
        // `format!` with padding cost a few percent of a pull.
        let mut out = *b"0000-00-00T00:00:00+08:00";
        for (at, value, width) in [
            (0, y as u32, 4),
            (5, m, 2),
            (8, d, 2),
            (11, hour, 2),
            (14, minute, 2),
            (17, second, 2),
        ] {
            let mut v = value;
            for digit in out[at..at + width].iter_mut().rev() {
                *digit = b'0' + (v % 10) as u8;
                v /= 10;
            }
        }
        String::from_utf8(out.to_vec()).expect("ASCII digits")
    }
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (H. Hinnant).
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) → days since 1970-01-01, proleptic Gregorian (H. Hinnant).
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if m > 2 { m - 3 } else { m + 9 } as i64;
    let doy = (153 * mp + 2) / 5 + d as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A normalised, checksum-valid 18-character resident identity number.
///
/// No `Display`; `Debug` is redacted. Use [`IdentityNumber::expose`] where the raw
/// value is genuinely needed (keyed hashing, encryption at rest).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdentityNumber(String);

impl IdentityNumber {
    /// Wraps an already validated, normalised 18-character number.
    /// Use [`crate::rules::identity_number`] to validate raw input.
    pub fn from_validated(s: String) -> Self {
        debug_assert_eq!(s.len(), 18);
        IdentityNumber(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The birth date embedded in the number.
    pub fn birth_date(&self) -> Date {
        let b = self.0.as_bytes();
        let num = |r: std::ops::Range<usize>| -> u32 {
            b[r].iter()
                .fold(0u32, |acc, c| acc * 10 + u32::from(c - b'0'))
        };
        Date {
            year: num(6..10) as i32,
            month: num(10..12) as u8,
            day: num(12..14) as u8,
        }
    }

    /// True for an odd sequence number (male), false for even (female).
    pub fn is_male(&self) -> bool {
        (self.0.as_bytes()[16] - b'0') % 2 == 1
    }
}

impl fmt::Debug for IdentityNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityNumber(<redacted>)")
    }
}

/// A checksum-valid unified social credit code. Not personal data, so it prints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CreditCode(String);

impl CreditCode {
    pub fn from_validated(s: String) -> Self {
        CreditCode(s)
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The agency's key for a record (specification "Source key"), e.g.
/// (`GRBH`, `XZLX`, `JFNY`). It may contain personal identifiers, so it is
/// redacted in `Debug` and never stored in clear: the store keeps a keyed hash.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SourceKey(String);

impl SourceKey {
    /// Joins the key's parts with U+001F (unit separator), which cannot occur in
    /// normalised field values.
    pub fn from_parts<I, S>(parts: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut s = String::new();
        for (i, p) in parts.into_iter().enumerate() {
            if i > 0 {
                s.push('\u{1f}');
            }
            s.push_str(p.as_ref());
        }
        SourceKey(s)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SourceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SourceKey(<redacted>)")
    }
}

/// One canonical field value.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", content = "v", rename_all = "snake_case")]
pub enum Value {
    Text(String),
    Code(String),
    Integer(i64),
    /// Exact money in fen (1/100 yuan).
    Money(i64),
    Date(Date),
    YearMonth(YearMonth),
    Year(i32),
    Timestamp(Timestamp),
    Bool(bool),
    IdentityNumber(IdentityNumber),
    CreditCode(CreditCode),
    Division(String),
}

impl Value {
    /// The value as text, as delivered when a policy keeps it. Money is in yuan
    /// with two decimals.
    pub fn render(&self) -> String {
        match self {
            Value::Text(s) | Value::Code(s) | Value::Division(s) => s.clone(),
            Value::Integer(i) => i.to_string(),
            Value::Money(fen) => {
                let sign = if *fen < 0 { "-" } else { "" };
                let a = fen.unsigned_abs();
                format!("{sign}{}.{:02}", a / 100, a % 100)
            }
            Value::Date(d) => d.to_string(),
            Value::YearMonth(m) => m.to_string(),
            Value::Year(y) => format!("{y:04}"),
            Value::Timestamp(t) => t.to_beijing_rfc3339(),
            Value::Bool(b) => if *b { "true" } else { "false" }.to_string(),
            Value::IdentityNumber(id) => id.expose().to_string(),
            Value::CreditCode(c) => c.as_str().to_string(),
        }
    }
}

impl fmt::Debug for Value {
    /// Values are redacted wholesale: a `Value` does not know its field's category,
    /// and a record dumped with `{:?}` must not leak personal data.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tag = match self {
            Value::Text(_) => "Text",
            Value::Code(_) => "Code",
            Value::Integer(_) => "Integer",
            Value::Money(_) => "Money",
            Value::Date(_) => "Date",
            Value::YearMonth(_) => "YearMonth",
            Value::Year(_) => "Year",
            Value::Timestamp(_) => "Timestamp",
            Value::Bool(_) => "Bool",
            Value::IdentityNumber(_) => "IdentityNumber",
            Value::CreditCode(_) => "CreditCode",
            Value::Division(_) => "Division",
        };
        write!(f, "{tag}(<redacted>)")
    }
}

/// Change type of a row (specification §1.6, `BGLX`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeType {
    New,
    Update,
    Cancel,
}

impl ChangeType {
    pub const fn id(self) -> &'static str {
        match self {
            ChangeType::New => "new",
            ChangeType::Update => "update",
            ChangeType::Cancel => "cancel",
        }
    }
}

/// One canonical record produced by an adapter from one agency row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub kind: RecordKind,
    pub source_key: SourceKey,
    pub change: ChangeType,
    /// The agency's change timestamp (`BGSJ`): the record's version.
    pub changed_at: Timestamp,
    /// The person this record is about, if any (the subject key across agencies).
    pub person: Option<IdentityNumber>,
    /// The enterprise this record is about or names as employer, if any.
    pub enterprise: Option<CreditCode>,
    /// Field values by canonical field name; absent optional fields are omitted.
    pub fields: BTreeMap<FieldName, Value>,
}

/// A canonical field's name: the schema's own `&'static str` wherever the
/// name is in the schema (adapters and the binary decoder never allocate
/// one); owned only for a name outside it (a record sealed under an older
/// schema, in binary or JSON form).
pub type FieldName = std::borrow::Cow<'static, str>;

pub mod schema {
    //! The field tables of every canonical record kind (documented in `adapters/MODEL.md`).
    use super::{Category as C, FieldSpec, RecordKind, ValueType as T};

    const fn f(
        name: &'static str,
        ty: T,
        category: C,
        source: &'static str,
        description: &'static str,
    ) -> FieldSpec {
        FieldSpec {
            name,
            ty,
            category,
            source,
            description,
        }
    }

    pub static SOCIAL_INSURANCE: &[FieldSpec] = &[
        f(
            "person_id",
            T::IdentityNumber,
            C::Identifier,
            "GMSFHM",
            "the insured person's identity number",
        ),
        f(
            "insured_number",
            T::Text,
            C::Identifier,
            "GRBH",
            "the insured person's social-insurance number",
        ),
        f("name", T::Text, C::Name, "XM", "the insured person's name"),
        f(
            "employer_credit_code",
            T::CreditCode,
            C::Enterprise,
            "TYSHXYDM",
            "the employer's unified social credit code",
        ),
        f(
            "employer_name",
            T::Text,
            C::Enterprise,
            "DWMC",
            "the employer's name",
        ),
        f(
            "insurance_type",
            T::Code,
            C::Employment,
            "XZLX",
            "110 enterprise pension, 120 public-sector pension, 210 unemployment, 310 employee medical, 410 work injury, 510 maternity",
        ),
        f(
            "contribution_base",
            T::Money,
            C::Financial,
            "JFJS",
            "monthly contribution base (wage basis)",
        ),
        f(
            "contribution_month",
            T::YearMonth,
            C::Employment,
            "JFNY",
            "the month the contribution is for",
        ),
        f(
            "contribution_status",
            T::Code,
            C::Employment,
            "JFZT",
            "1 paying, 2 suspended, 3 terminated",
        ),
    ];

    pub static HOUSEHOLD: &[FieldSpec] = &[
        f(
            "person_id",
            T::IdentityNumber,
            C::Identifier,
            "GMSFHM",
            "the resident's identity number",
        ),
        f("name", T::Text, C::Name, "XM", "the resident's name"),
        f(
            "sex",
            T::Code,
            C::Identifier,
            "XBDM",
            "GB/T 2261.1: 0 unknown, 1 male, 2 female, 9 not stated; agrees with the identity number, which encodes it",
        ),
        f(
            "ethnicity",
            T::Code,
            C::Ethnicity,
            "MZDM",
            "GB/T 3304 two-digit code: 01-56, 97 other, 98 foreign origin",
        ),
        f(
            "birth_date",
            T::Date,
            C::BirthDate,
            "CSRQ",
            "date of birth; agrees with the identity number",
        ),
        f(
            "household_number",
            T::Text,
            C::Identifier,
            "HH",
            "the household's 9-digit number (户号)",
        ),
        f(
            "relation_to_head",
            T::Code,
            C::Administrative,
            "YHZGX",
            "01 self/head, 02 spouse, 10 child, 50 parent, 99 other",
        ),
        f(
            "address_division",
            T::Division,
            C::Address,
            "HJDZ_XZQHDM",
            "current Wuhu division code of the household address",
        ),
        f(
            "address",
            T::Text,
            C::Address,
            "HJDZ_DZMC",
            "household address",
        ),
        f(
            "deceased",
            T::Bool,
            C::HealthInjury,
            "SWBS",
            "whether the resident is recorded as deceased",
        ),
    ];

    pub static ENTERPRISE: &[FieldSpec] = &[
        f(
            "credit_code",
            T::CreditCode,
            C::Enterprise,
            "TYSHXYDM",
            "the enterprise's unified social credit code",
        ),
        f(
            "enterprise_name",
            T::Text,
            C::Enterprise,
            "QYMC",
            "registered name",
        ),
        f(
            "entity_type",
            T::Text,
            C::Enterprise,
            "QYLX",
            "entity type, as registered (free text)",
        ),
        f(
            "legal_representative",
            T::Text,
            C::Name,
            "FDDBR",
            "the legal representative's name",
        ),
        f(
            "legal_representative_id",
            T::IdentityNumber,
            C::Identifier,
            "FDDBR_ZJHM",
            "the legal representative's identity number",
        ),
        f(
            "registration_status",
            T::Code,
            C::Enterprise,
            "DJZT",
            "1 active, 2 revoked, 3 deregistered, 4 moved out",
        ),
        f(
            "established_on",
            T::Date,
            C::Enterprise,
            "CLRQ",
            "date of establishment",
        ),
        f(
            "registered_capital",
            T::Money,
            C::Enterprise,
            "ZCZB",
            "registered capital (sent in 10 000 yuan, held in fen of yuan)",
        ),
        f(
            "industry_code",
            T::Code,
            C::Enterprise,
            "HYDM",
            "GB/T 4754-2017 industry code, e.g. C3670",
        ),
        f(
            "employee_count",
            T::Integer,
            C::Enterprise,
            "CYRS",
            "number of employees",
        ),
        f(
            "address_division",
            T::Division,
            C::Enterprise,
            "ZS_XZQHDM",
            "current Wuhu division code of the registered address",
        ),
        f(
            "address",
            T::Text,
            C::Enterprise,
            "ZS",
            "registered address (an enterprise's, public in the registry)",
        ),
    ];

    pub static TAXPAYER: &[FieldSpec] = &[
        f(
            "credit_code",
            T::CreditCode,
            C::Enterprise,
            "TYSHXYDM",
            "the taxpayer's unified social credit code",
        ),
        f(
            "taxpayer_name",
            T::Text,
            C::Enterprise,
            "NSRMC",
            "the taxpayer's name",
        ),
        f(
            "taxpayer_status",
            T::Code,
            C::Enterprise,
            "NSRZT",
            "03 normal, 05 suspended, 07 deregistered, 09 abnormal",
        ),
        f(
            "tax_year",
            T::Year,
            C::Administrative,
            "SSND",
            "the tax year",
        ),
        f(
            "operating_revenue",
            T::Money,
            C::Financial,
            "YYSR",
            "operating revenue",
        ),
        f(
            "tax_paid",
            T::Money,
            C::Financial,
            "NSE",
            "tax paid (negative: refund)",
        ),
        f(
            "credit_rating",
            T::Code,
            C::Enterprise,
            "NSXYDJ",
            "tax credit rating: A, B, M, C, D",
        ),
        f(
            "tax_arrears",
            T::Bool,
            C::Financial,
            "QSBZ",
            "whether the taxpayer is in arrears",
        ),
    ];

    pub static HOUSING_ASSISTANCE: &[FieldSpec] = &[
        f(
            "application_number",
            T::Text,
            C::Identifier,
            "SQBH",
            "the application's number",
        ),
        f(
            "person_id",
            T::IdentityNumber,
            C::Identifier,
            "SQRZJHM",
            "the applicant's identity number",
        ),
        f("name", T::Text, C::Name, "SQRXM", "the applicant's name"),
        f(
            "phone",
            T::Text,
            C::Contact,
            "LXDH",
            "the applicant's mobile or 0553 landline number",
        ),
        f(
            "household_size",
            T::Integer,
            C::Financial,
            "JTRKS",
            "household size, part of the means test (1-20)",
        ),
        f(
            "household_income",
            T::Money,
            C::Financial,
            "JTYSR",
            "household monthly income",
        ),
        f(
            "assistance_type",
            T::Code,
            C::Administrative,
            "BZLX",
            "1 public rental, 2 low-rent, 3 rent subsidy, 4 economical purchase housing",
        ),
        f(
            "status",
            T::Code,
            C::Administrative,
            "SHZT",
            "1 applied, 2 approved, 3 housed / subsidy paid, 4 exited, 5 rejected",
        ),
        f(
            "rent_subsidy",
            T::Money,
            C::Financial,
            "ZJBZJE",
            "monthly rent subsidy",
        ),
        f(
            "dwelling_division",
            T::Division,
            C::Address,
            "FWDZ_XZQHDM",
            "current Wuhu division code of the dwelling",
        ),
        f(
            "dwelling_address",
            T::Text,
            C::Address,
            "FWDZ",
            "the dwelling's address",
        ),
        f(
            "applied_on",
            T::Date,
            C::Administrative,
            "SQRQ",
            "application date",
        ),
    ];

    pub static WORK_INJURY: &[FieldSpec] = &[
        f(
            "accident_number",
            T::Text,
            C::Administrative,
            "SGBH",
            "the accident's number",
        ),
        f(
            "employer_credit_code",
            T::CreditCode,
            C::Enterprise,
            "TYSHXYDM",
            "the enterprise where the accident happened",
        ),
        f(
            "person_id",
            T::IdentityNumber,
            C::Identifier,
            "SSRZJHM",
            "the injured person's identity number",
        ),
        f(
            "name",
            T::Text,
            C::Name,
            "SSRXM",
            "the injured person's name",
        ),
        f(
            "job_type",
            T::Text,
            C::Employment,
            "GZ",
            "job type (工种), free text",
        ),
        f(
            "department",
            T::Text,
            C::Employment,
            "SSBM",
            "department within the enterprise, free text",
        ),
        f(
            "accident_date",
            T::Date,
            C::Administrative,
            "SGRQ",
            "date of the accident",
        ),
        f(
            "accident_type",
            T::Code,
            C::HealthInjury,
            "SGLX",
            "GB 6441-1986 accident type 01-20",
        ),
        f(
            "injury_severity",
            T::Code,
            C::HealthInjury,
            "SHCD",
            "1 minor, 2 serious, 3 fatal",
        ),
        f(
            "description",
            T::Text,
            C::FreeText,
            "SGMS",
            "accident description; identity numbers, phone numbers and the injured person's name are replaced by placeholders",
        ),
    ];

    pub fn fields(kind: RecordKind) -> &'static [FieldSpec] {
        match kind {
            RecordKind::Household => HOUSEHOLD,
            RecordKind::SocialInsurance => SOCIAL_INSURANCE,
            RecordKind::Enterprise => ENTERPRISE,
            RecordKind::Taxpayer => TAXPAYER,
            RecordKind::HousingAssistance => HOUSING_ASSISTANCE,
            RecordKind::WorkInjury => WORK_INJURY,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Timestamp, civil_from_days};

    /// The plain `format!` form, as it was written before.
    fn formatted(t: i64) -> String {
        let secs = i128::from(t) + 8 * 3600;
        let (y, m, d) = civil_from_days(secs.div_euclid(86_400) as i64);
        let rem = secs.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}+08:00",
            rem / 3600,
            (rem / 60) % 60,
            rem % 60
        )
    }

    #[test]
    fn beijing_time_is_written_as_format_writes_it() {
        let mut t: i64 = -62_167_248_000; // 0000-01-01T08:00:00+08:00
        // Every month or so, at varying times of day, from year 0 to past
        // 9999; plus the edges.
        while t < 253_402_300_800 + 86_400 * 400 {
            assert_eq!(Timestamp(t).to_beijing_rfc3339(), formatted(t), "{t}");
            t += 29 * 86_400 + 5 * 3_607 + 13;
        }
        for t in [
            i64::MIN,
            i64::MAX,
            -62_167_248_001,
            -1,
            0,
            1_747_715_102,
            253_402_271_999,
            253_402_272_000,
        ] {
            assert_eq!(Timestamp(t).to_beijing_rfc3339(), formatted(t), "{t}");
        }
        assert_eq!(
            Timestamp(0).to_beijing_rfc3339(),
            "1970-01-01T08:00:00+08:00"
        );
        assert_eq!(
            Timestamp(253_402_271_999).to_beijing_rfc3339(),
            "9999-12-31T23:59:59+08:00"
        );
    }
}
