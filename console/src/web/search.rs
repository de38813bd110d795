//! Search: the filters of `gateway audit query` in a GET form (so a search
//! can be bookmarked and paged by links), or a person by identity number
//! through a POST form that is answered with a redirect to a held handle
//! (see the module above); results in a paged table and as CSV.

use super::{HeldWhat, Page, When, link, page, render, see_other, value_text, when};
use crate::i18n::Labels;
use crate::session::Session;
use crate::{App, IdNumber};
use askama::Template;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{IntoResponse, Response};
use gateway::audit::report::format_ms;
use gateway::audit::{CanonicalEntry, Value};
use gateway::proto;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::sync::Arc;

/// The search filters, as typed (a GET query; never an identity number).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct Filters {
    from: String,
    to: String,
    actor: String,
    action: String,
    outcome: String,
    kind: String,
    subject: String,
    after: String,
    size: String,
}

/// The person search: an identity number (and the page size), by POST.
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct PersonForm {
    id_number: IdNumber,
    size: String,
}

pub(super) const PAGE_SIZES: [u32; 5] = [10, 25, 50, 100, 200];

impl Filters {
    fn page_size(&self) -> u32 {
        self.size
            .parse()
            .ok()
            .filter(|n| PAGE_SIZES.contains(n))
            .unwrap_or(50)
    }

    fn after(&self) -> u64 {
        self.after.parse().unwrap_or(0)
    }

    /// The query string of these filters (without paging), for links.
    fn query_string(&self, after: Option<u64>) -> String {
        let mut pairs: Vec<(&str, String)> = [
            ("from", &self.from),
            ("to", &self.to),
            ("actor", &self.actor),
            ("action", &self.action),
            ("outcome", &self.outcome),
            ("kind", &self.kind),
            ("subject", &self.subject),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k, v.clone()))
        .collect();
        if self.page_size() != 50 {
            pairs.push(("size", self.page_size().to_string()));
        }
        if let Some(a) = after {
            pairs.push(("after", a.to_string()));
        }
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    }

    fn is_empty(&self) -> bool {
        self.query_string(None).is_empty() && self.after.is_empty()
    }

    /// The gateway query, or what is wrong with a filter.
    fn to_query(&self, offset: time::UtcOffset, t: &Labels) -> Result<proto::AuditQuery, String> {
        let time_of = |s: &str| -> Result<i64, String> {
            if s.is_empty() {
                return Ok(0);
            }
            parse_local(s, offset).ok_or_else(|| t.bad_time.to_string())
        };
        let subject = self.subject.trim().to_ascii_lowercase();
        if !subject.is_empty()
            && (subject.len() != 32 || !subject.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            return Err(t.bad_subject.to_string());
        }
        Ok(proto::AuditQuery {
            from_unix: time_of(self.from.trim())?,
            to_unix: time_of(self.to.trim())?,
            actor: self.actor.trim().to_string(),
            action: self.action.trim().to_string(),
            outcome: self.outcome.trim().to_string(),
            kind: self.kind.trim().to_string(),
            subject,
            after_seq: self.after(),
            page_size: self.page_size(),
            ..Default::default()
        })
    }
}

/// A `datetime-local` value (or a date) in the console's offset, as Unix seconds.
fn parse_local(s: &str, offset: time::UtcOffset) -> Option<i64> {
    use time::macros::format_description as fd;
    let s = s.replace(' ', "T");
    let dt =
        time::PrimitiveDateTime::parse(&s, fd!("[year]-[month]-[day]T[hour]:[minute]:[second]"))
            .or_else(|_| {
                time::PrimitiveDateTime::parse(&s, fd!("[year]-[month]-[day]T[hour]:[minute]"))
            })
            .or_else(|_| time::Date::parse(&s, fd!("[year]-[month]-[day]")).map(|d| d.midnight()))
            .ok()?;
    Some(dt.assume_offset(offset).unix_timestamp())
}

pub struct Choice {
    pub value: String,
    pub label: String,
}

pub struct Row {
    pub seq: u64,
    pub when: When,
    pub actor: String,
    pub action: String,
    pub action_label: String,
    pub outcome: String,
    pub outcome_label: String,
    pub kinds: String,
    pub summary: String,
    pub persons: usize,
    pub flagged: bool,
}

#[derive(Template)]
#[template(path = "search.html")]
struct SearchPage {
    page: Page,
    f: Filters,
    actions: Vec<Choice>,
    actors: Vec<String>,
    kinds: Vec<Choice>,
    outcomes: Vec<Choice>,
    sizes: Vec<u32>,
    size: u32,
    error: Option<String>,
    searched: bool,
    /// Results of a person search (under a held handle).
    person: bool,
    rows: Vec<Row>,
    next_after: u64,
    next_link: String,
    first_link: String,
    csv_link: String,
    shown: String,
}

/// The search page; `person` is a held person search: its number and handle.
async fn search_page(
    app: &App,
    s: &Session,
    f: Filters,
    person: Option<(&IdNumber, &str)>,
) -> SearchPage {
    let t = s.lang.labels();
    let snap = app.snapshot.read().await.clone();
    let mut actions: std::collections::BTreeSet<String> =
        KNOWN_ACTIONS.iter().map(|a| a.to_string()).collect();
    let mut actors = std::collections::BTreeSet::new();
    if let Some(snap) = &snap {
        actions.extend(snap.stats.actions.iter().cloned());
        actors.extend(snap.stats.actors.iter().cloned());
    }
    let searched = person.is_some() || !f.is_empty();
    let mut error = None;
    let mut rows = Vec::new();
    let mut next_after = 0;
    if searched {
        match f.to_query(app.config.utc_offset, t) {
            Err(e) => error = Some(e),
            Ok(mut q) => {
                if let Some((id, _)) = person {
                    q.subject = String::new();
                    q.subject_id_number = id.expose().to_string();
                }
                match app.upstream.query(q).await {
                    Ok(p) => {
                        next_after = p.next_after_seq;
                        let flagged = snap.as_ref().map(|s| &s.flagged);
                        rows = p
                            .entries
                            .iter()
                            .map(|e| Row {
                                seq: e.seq,
                                when: when(e.at_unix_ms, app.config.utc_offset),
                                actor: e.actor.clone(),
                                action: e.action.clone(),
                                action_label: t.action(&e.action),
                                outcome: e.outcome.clone(),
                                outcome_label: t.outcome(&e.outcome),
                                kinds: e
                                    .kinds
                                    .iter()
                                    .map(|k| t.kind(k))
                                    .collect::<Vec<_>>()
                                    .join("、"),
                                summary: CanonicalEntry::decode(&e.canonical)
                                    .map(|d| summary(&d.details))
                                    .unwrap_or_else(|_| e.details_json.clone()),
                                persons: e.subjects.len(),
                                flagged: flagged.is_some_and(|f| f.contains(&e.seq)),
                            })
                            .collect();
                    }
                    Err(e) => error = Some(e.to_string()),
                }
            }
        }
    }
    let shown = t.shown(rows.len());
    // A person's pages live under the handle; a filter search under /search.
    let base = match person {
        Some((_, handle)) => format!("/search/person/{handle}"),
        None => "/search".to_string(),
    };
    let here = link(&base, &f.query_string(f.after.parse().ok()));
    SearchPage {
        page: page(app, s, "search", here),
        actions: actions
            .into_iter()
            .map(|a| Choice {
                label: t.action(&a),
                value: a,
            })
            .collect(),
        actors: actors.into_iter().collect(),
        kinds: adapters::RecordKind::ALL
            .iter()
            .map(|k| Choice {
                value: k.id().to_string(),
                label: t.kind(k.id()),
            })
            .collect(),
        outcomes: ["ok", "denied", "rejected"]
            .iter()
            .map(|o| Choice {
                value: o.to_string(),
                label: t.outcome(o),
            })
            .collect(),
        sizes: PAGE_SIZES.to_vec(),
        size: f.page_size(),
        error,
        searched,
        person: person.is_some(),
        next_link: link(&base, &f.query_string(Some(next_after))),
        first_link: link(&base, &f.query_string(None)),
        csv_link: match person {
            Some(_) => link(&format!("{base}/csv"), &f.query_string(None)),
            None => link("/search.csv", &f.query_string(None)),
        },
        rows,
        next_after,
        shown,
        f,
    }
}

/// Actions the search offers even before the log has shown them.
const KNOWN_ACTIONS: [&str; 10] = [
    "batch_pushed",
    "records_delivered",
    "person_looked_up",
    "person_reidentified",
    "denied",
    "connection_refused",
    "subject_report",
    "audit_queried",
    "audit_exported",
    "policy_recorded",
];

pub(super) async fn search(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Query(f): Query<Filters>,
) -> Response {
    render(search_page(&app, &s, f, None).await)
}

/// The person search's POST: the number is held for this session and the
/// browser sent on to its results' address.
pub(super) async fn search_person(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Form(form): Form<PersonForm>,
) -> Response {
    let id = form.id_number.normalised();
    if id.is_empty() {
        let mut p = search_page(&app, &s, Filters::default(), None).await;
        p.error = Some(s.lang.labels().id_required.to_string());
        return render(p);
    }
    let handle = app.held.put(
        &app.rng,
        &s.sid,
        HeldWhat::Person {
            id,
            size: form.size,
        },
    );
    see_other(&format!("/search/person/{handle}"))
}

/// The number held under `handle` for this session.
fn held_person(app: &App, s: &Session, handle: &str) -> Option<(IdNumber, String)> {
    match app.held.get(&s.sid, handle).as_deref() {
        Some(HeldWhat::Person { id, size }) => Some((id.clone(), size.clone())),
        _ => None,
    }
}

/// Paging through a held person search (`?after=`, `?size=`).
#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct Paging {
    after: String,
    size: String,
}

pub(super) async fn person_results(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(handle): Path<String>,
    Query(paging): Query<Paging>,
) -> Response {
    let Some((id, size)) = held_person(&app, &s, &handle) else {
        let mut p = search_page(&app, &s, Filters::default(), None).await;
        p.error = Some(s.lang.labels().expired.to_string());
        return render(p);
    };
    let f = Filters {
        after: paging.after,
        size: if paging.size.is_empty() {
            size
        } else {
            paging.size
        },
        ..Default::default()
    };
    render(search_page(&app, &s, f, Some((&id, &handle))).await)
}

// ---------------------------------------------------------------------------
// CSV.

fn csv_response(app: Arc<App>, mut q: proto::AuditQuery) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    q.after_seq = 0;
    q.page_size = 1000;
    tokio::spawn(async move {
        let mut first = true;
        loop {
            let page = match app.upstream.query(q.clone()).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::warn!(error = %e, "the CSV download stopped");
                    let _ = tx.send(Err(std::io::Error::other(e.to_string()))).await;
                    return;
                }
            };
            let mut w = csv::Writer::from_writer(if first {
                // A byte-order mark, so that spreadsheet programs read UTF-8.
                "\u{feff}".as_bytes().to_vec()
            } else {
                Vec::new()
            });
            if first {
                first = false;
                let _ = w.write_record([
                    "seq", "at_utc", "actor", "action", "outcome", "kinds", "subjects", "details",
                ]);
            }
            for e in &page.entries {
                let subjects: Vec<String> = e
                    .subjects
                    .iter()
                    .map(|s| format!("{}:{}", s.token, s.prev_seq))
                    .collect();
                let _ = w.write_record([
                    e.seq.to_string(),
                    format_ms(e.at_unix_ms),
                    cell(&e.actor),
                    cell(&e.action),
                    cell(&e.outcome),
                    cell(&e.kinds.join(";")),
                    subjects.join(";"),
                    cell(&e.details_json),
                ]);
            }
            let bytes = w.into_inner().unwrap_or_default();
            if tx.send(Ok(Bytes::from(bytes))).await.is_err() {
                return;
            }
            if page.next_after_seq == 0 {
                return;
            }
            q.after_seq = page.next_after_seq;
        }
    });
    let name = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "audit-[year][month][day]-[hour][minute][second].csv"
        ))
        .unwrap_or_else(|_| "audit.csv".into());
    let mut r = Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)).into_response();
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/csv; charset=utf-8"),
    );
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

/// A cell a spreadsheet will not run as a formula.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

pub(super) async fn search_csv(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Query(f): Query<Filters>,
) -> Response {
    let t = s.lang.labels();
    match f.to_query(app.config.utc_offset, t) {
        Ok(q) => csv_response(app, q),
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

pub(super) async fn person_csv(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(handle): Path<String>,
) -> Response {
    let t = s.lang.labels();
    let Some((id, _)) = held_person(&app, &s, &handle) else {
        return (StatusCode::NOT_FOUND, t.expired).into_response();
    };
    let q = proto::AuditQuery {
        subject_id_number: id.expose().to_string(),
        ..Default::default()
    };
    csv_response(app, q)
}

/// One line of an entry's details for a results table: its short values,
/// without hashes.
pub(super) fn summary(details: &Value) -> String {
    let Value::Map(m) = details else {
        return value_text(details);
    };
    let mut out = String::new();
    for (k, v) in m {
        // Hashes, and what the table's own columns show already.
        if k.ends_with("sha256")
            || [
                "policy_version",
                "policies",
                "serving",
                "kinds",
                "consumer",
                "auditor",
            ]
            .contains(&k.as_str())
        {
            continue;
        }
        let text = match v {
            Value::Map(_) => continue,
            Value::List(l) if l.len() > 6 => format!("[{} …]", l.len()),
            Value::List(l) => l.iter().map(value_text).collect::<Vec<_>>().join(", "),
            other => value_text(other),
        };
        if !out.is_empty() {
            out.push_str(" · ");
        }
        out.push_str(k);
        out.push_str(": ");
        out.push_str(&text);
        if out.chars().count() > 160 {
            out = out.chars().take(160).collect();
            out.push('…');
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_times_are_read_in_the_console_offset() {
        let cst = time::UtcOffset::from_hms(8, 0, 0).unwrap();
        assert_eq!(parse_local("2026-01-01T08:00", cst), Some(1_767_225_600));
        assert_eq!(parse_local("2026-01-01", cst), Some(1_767_196_800));
        assert_eq!(parse_local("yesterday", cst), None);
    }

    #[test]
    fn formulas_are_defused() {
        assert_eq!(cell("=1+1"), "'=1+1");
        assert_eq!(cell("union/assistance"), "union/assistance");
    }
}
