//! A person's report ("who saw this person") as JSON, in one form: the one
//! `gateway audit report --json` prints and the console's printed report is
//! checked against, so that the two can never drift apart.

use crate::proto;

/// RFC 3339 in UTC, to the millisecond.
pub fn format_ms(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// A subject report as `gateway audit report --json` prints it.
pub fn json(r: &proto::SubjectReportResponse) -> serde_json::Value {
    let items: Vec<_> = r
        .items
        .iter()
        .map(|i| {
            serde_json::json!({
                "seq": i.seq, "at": format_ms(i.at_unix_ms), "who": i.actor,
                "action": i.action, "purpose": i.purpose, "case_number": i.case_number,
                "kinds": i.kinds, "fields": i.fields, "policy_version": i.policy_version,
                "prev_seq": i.prev_seq,
            })
        })
        .collect();
    serde_json::json!({
        "subject": r.subject, "chain_complete": r.chain_complete,
        "problems": r.problems, "entries_checked": r.entries_checked,
        "checkpoint": r.checkpoint.as_ref().map(|c| c.note.clone()),
        "items": items,
    })
}
