//! Work safety (应急管理 / 安监): workplace accidents and injuries (§7).
//!
//! The export is JSON Lines, one row per injured person per accident. The accident
//! description (`SGMS`) is typed by inspectors and may contain identity numbers,
//! phone numbers and the injured person's name: they are replaced by placeholders
//! here, before the text leaves the adapter, so no consumer ever sees them in clear.

use crate::check::{Checker, put};
use crate::json_rows;
use crate::model::{Record, RecordKind, SourceKey, Value};
use crate::{Agency, RowError, RowParser, rules};
use std::collections::BTreeMap;

static KEYS: [&str; 12] = [
    "SGBH", "TYSHXYDM", "SSRZJHM", "SSRXM", "GZ", "SSBM", "SGRQ", "SGLX", "SHCD", "SGMS", "BGLX",
    "BGSJ",
];
const SGBH: usize = 0;
const TYSHXYDM: usize = 1;
const SSRZJHM: usize = 2;
const SSRXM: usize = 3;
const GZ: usize = 4;
const SSBM: usize = 5;
const SGRQ: usize = 6;
const SGLX: usize = 7;
const SHCD: usize = 8;
const SGMS: usize = 9;
const BGLX: usize = 10;
const BGSJ: usize = 11;

/// Accident types (GB 6441-1986), `01`–`20`.
const ACCIDENT_TYPES: &[&str] = &[
    "01", "02", "03", "04", "05", "06", "07", "08", "09", "10", "11", "12", "13", "14", "15", "16",
    "17", "18", "19", "20",
];
/// Injury severity (`SHCD`): minor, serious, fatal.
const SEVERITIES: &[&str] = &["1", "2", "3"];

pub const ID_PLACEHOLDER: &str = "[身份证号]";
pub const PHONE_PLACEHOLDER: &str = "[电话]";
pub const NAME_PLACEHOLDER: &str = "[姓名]";

/// Replaces, in normalised free text, the injured person's `name`, identity numbers
/// (18 characters with a valid province, birth date and check character, or legacy
/// 15 digits with a valid province and birth date) and phone numbers (mainland mobile, optionally after
/// `86`; Wuhu `0553` landlines with or without a dash) by placeholders. Other
/// numbers, including 18-digit ones with a wrong check character, are kept.
pub fn scrub_description(text: &str, name: Option<&str>) -> String {
    let text = rules::normalise_name(text);
    let text = match name.filter(|n| !n.is_empty()) {
        Some(n) => text.replace(n, NAME_PLACEHOLDER),
        None => text.into_owned(),
    };
    let b = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let (mut i, mut kept) = (0, 0);
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        let end = digit_run_end(b, start);
        let (placeholder, until) = classify(b, start, end);
        if let Some(p) = placeholder {
            // `start` and `until` sit next to ASCII bytes: both are char boundaries.
            out.push_str(&text[kept..start]);
            out.push_str(p);
            kept = until;
        }
        i = until.max(end);
    }
    out.push_str(&text[kept..]);
    out
}

fn digit_run_end(b: &[u8], start: usize) -> usize {
    let mut end = start;
    while end < b.len() && b[end].is_ascii_digit() {
        end += 1;
    }
    end
}

/// What the digit run `b[start..end]` is, and where the matched text ends.
/// Identity and mobile numbers are what [`rules::identifier_kind`] says
/// (the rule the gateway refuses them by elsewhere); the rest are the
/// phone forms a description may also hold.
fn classify(b: &[u8], start: usize, end: usize) -> (Option<&'static str>, usize) {
    let run = &b[start..end];
    // 17 digits and an X check character.
    let with_check = run.len() == 17 && matches!(b.get(end), Some(b'X' | b'x'));
    let (whole, until) = if with_check {
        (&b[start..end + 1], end + 1)
    } else {
        (run, end)
    };
    match rules::identifier_kind(whole) {
        Some(rules::IdentifierKind::Mobile) => return (Some(PHONE_PLACEHOLDER), until),
        Some(_) => return (Some(ID_PLACEHOLDER), until),
        None => {}
    }
    if (11..=12).contains(&run.len()) && run.starts_with(b"0553") {
        return (Some(PHONE_PLACEHOLDER), end);
    }
    // `0553-` followed by a run of seven or eight digits.
    if run == b"0553" && b.get(end) == Some(&b'-') {
        let next_end = digit_run_end(b, end + 1);
        if (7..=8).contains(&(next_end - end - 1)) {
            return (Some(PHONE_PLACEHOLDER), next_end);
        }
    }
    (None, end)
}

crate::json_adapter!(
    WorkSafetyAdapter,
    Agency::WorkSafety,
    RecordKind::WorkInjury,
    WorkInjuryParser
);

impl RowParser for WorkInjuryParser {
    fn parse_row(&self, row: &[u8]) -> Result<Record, Vec<RowError>> {
        let row = json_rows::parse(row, &KEYS).map_err(|e| vec![e])?;
        let mut c = Checker::default();

        let accident = c.required("SGBH", row.raw(SGBH));
        let employer = c.req("TYSHXYDM", row.raw(TYSHXYDM), rules::credit_code);
        let person = c.req("SSRZJHM", row.raw(SSRZJHM), |s| {
            rules::identity_number(s, self.today)
        });
        let name = c.required("SSRXM", row.raw(SSRXM));
        let job = c.optional("GZ", row.raw(GZ));
        let department = c.optional("SSBM", row.raw(SSBM));
        let date = c.opt("SGRQ", row.raw(SGRQ), rules::date);
        let accident_type = c.opt("SGLX", row.raw(SGLX), |s| rules::code_in(s, ACCIDENT_TYPES));
        let severity = c.opt("SHCD", row.raw(SHCD), |s| rules::code_in(s, SEVERITIES));
        let description = c.optional("SGMS", row.raw(SGMS));
        let change = c.req("BGLX", row.raw(BGLX), rules::change_type);
        let changed_at = c.req("BGSJ", row.raw(BGSJ), rules::timestamp);

        let (
            Some(accident),
            Some(employer),
            Some(person),
            Some(name),
            Some(change),
            Some(changed_at),
        ) = (accident, employer, person, name, change, changed_at)
        else {
            return Err(c.errors);
        };
        if !c.is_ok() {
            return Err(c.errors);
        }

        let name = rules::normalise_name(&name).into_owned();
        let description = description.map(|d| scrub_description(&d, Some(&name)));
        let text = |s: std::borrow::Cow<'_, str>| Value::Text(s.into_owned());
        let code = |s: &str| Value::Code(s.to_owned());
        let source_key = SourceKey::from_parts([&*accident, person.expose()]);
        let mut f = BTreeMap::new();
        put(&mut f, "accident_number", Some(text(accident)));
        put(
            &mut f,
            "employer_credit_code",
            Some(Value::CreditCode(employer.clone())),
        );
        put(
            &mut f,
            "person_id",
            Some(Value::IdentityNumber(person.clone())),
        );
        put(&mut f, "name", Some(Value::Text(name)));
        put(&mut f, "job_type", job.map(text));
        put(&mut f, "department", department.map(text));
        put(&mut f, "accident_date", date.map(Value::Date));
        put(&mut f, "accident_type", accident_type.map(code));
        put(&mut f, "injury_severity", severity.map(code));
        put(&mut f, "description", description.map(Value::Text));
        Ok(Record {
            kind: RecordKind::WorkInjury,
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
    use crate::test_support::{assert_labels, labels, open};

    #[test]
    fn sample_rows_match_their_labels() {
        assert_labels(Agency::WorkSafety);
    }

    #[test]
    fn descriptions_leave_the_adapter_scrubbed() {
        let (p, rows) = open(Agency::WorkSafety);
        let mut with_pii = 0;
        for label in labels(Agency::WorkSafety).iter().filter(|l| l.accept) {
            let raw: serde_json::Value = serde_json::from_slice(rows[label.row - 1]).unwrap();
            let original = raw["SGMS"].as_str().unwrap();
            let r = p.parse_row(rows[label.row - 1]).unwrap();
            let Value::Text(d) = &r.fields["description"] else {
                panic!("description is text")
            };
            let name = raw["SSRXM"].as_str().unwrap();
            let id = r.person.as_ref().unwrap().expose();
            assert!(!d.contains(name) && !d.contains(id), "row {}", label.row);
            assert!(!d.bytes().any(|b| b.is_ascii_digit()), "row {}", label.row);
            if label.free_text_pii == Some(true) {
                with_pii += 1;
                assert_ne!(d, original);
                for p in [ID_PLACEHOLDER, PHONE_PLACEHOLDER, NAME_PLACEHOLDER] {
                    assert!(d.contains(p), "row {}: {p}", label.row);
                }
            } else {
                // Unchanged but for §1.2 normalisation (full-width `，` → `,`).
                assert_eq!(d, &rules::normalise(original), "row {}", label.row);
            }
        }
        assert_eq!(with_pii, 2);
    }

    #[test]
    fn scrub_known_answers() {
        let s = |t: &str| scrub_description(t, Some("付兰"));
        assert_eq!(
            s("伤者付兰，身份证340208197803169486，联系电话14167779214。"),
            "伤者[姓名]，身份证[身份证号]，联系电话[电话]。"
        );
        // An 18-digit number with a wrong check character is not an identity number.
        assert_eq!(
            s("设备编号340208197803169487"),
            "设备编号340208197803169487"
        );
        assert_eq!(s("证号11010519491231002x,"), "证号[身份证号],");
        assert_eq!(s("旧证340207760711113。"), "旧证[身份证号]。");
        assert_eq!(s("座机0553-4217233或05534217233"), "座机[电话]或[电话]");
        assert_eq!(s("+8613912345678"), "+[电话]");
        // Accident numbers, dates and short numbers survive.
        assert_eq!(
            s("AJ2025000000于2024-02-15，3人"),
            "AJ2025000000于2024-02-15，3人"
        );
        assert_eq!(s("12345678901"), "12345678901");
        assert_eq!(
            scrub_description("买买提•艾力受伤", Some("买买提·艾力")),
            "[姓名]受伤"
        );
        assert_eq!(scrub_description("无", None), "无");
    }
}
