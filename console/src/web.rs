//! The console's pages: routes, the handlers that call the gateway and
//! verify what it returns, and the view structs the templates render.
//! Templates (`console/templates/`) are compiled in by askama and escape
//! every value; the stylesheet is embedded. An identity number arrives only
//! in a POST body, is passed to the gateway, and is shown only masked.

use crate::i18n::{Labels, Msg};
use crate::ledger::{Observation, Verdict, now_ms, reprove};
use crate::session::{self, LANG_COOKIE, Session};
use crate::upstream::hashes;
use crate::{App, IdNumber, chart};
use askama::Template;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Extension, Form, Path, Query, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gateway::audit::{CanonicalEntry, Value};
use gateway::proto;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::sync::Arc;

const STYLESHEET: &str = include_str!("../assets/console.css");

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(overview))
        .route("/verify", post(verify_now))
        .route("/search", get(search).post(search_person))
        .route("/search.csv", get(search_csv).post(search_person_csv))
        .route("/entry/{seq}", get(entry))
        .route("/report", get(report_form).post(report))
        .route("/checkpoints", get(checkpoints))
        .route("/lang", post(switch_language))
        .route("/static/console.css", get(stylesheet))
        .layer(axum::middleware::from_fn(session::log_requests))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(
            app.clone(),
            session::guard,
        ))
        .with_state(app)
}

// ---------------------------------------------------------------------------
// Shared view pieces.

/// What every page's frame needs.
pub struct Page {
    pub t: &'static Labels,
    pub csrf: String,
    /// Where the language switch returns (a GET address, never with an identity number).
    pub back: String,
    pub nav: &'static str,
    pub identity: String,
    pub gateway: String,
    pub times_note: String,
}

fn page(app: &App, s: &Session, nav: &'static str, back: String) -> Page {
    let t = s.lang.labels();
    Page {
        t,
        csrf: s.csrf.clone(),
        back,
        nav,
        identity: app.config.identity.clone(),
        gateway: app.upstream.addr().to_string(),
        times_note: t.times_note(&offset_text(app.config.utc_offset)),
    }
}

fn offset_text(o: time::UtcOffset) -> String {
    let (h, m, _) = o.as_hms();
    format!(
        "{}{:02}:{:02}",
        if o.is_negative() { '-' } else { '+' },
        h.abs(),
        m.abs()
    )
}

/// A verification mark: its state (the `data-state` tests and styles read),
/// a symbol, a word and the sentence explaining it.
pub struct Mark {
    pub state: &'static str,
    pub symbol: &'static str,
    pub word: &'static str,
    pub text: String,
}

impl Mark {
    fn of(v: &Verdict, t: &Labels) -> Mark {
        let (symbol, word) = match v {
            Verdict::Verified(_) => ("✓", t.verified),
            Verdict::Failed(_) => ("✗", t.failed),
            Verdict::Info(Msg::FirstCheckpoint { .. }) => ("•", t.first_use),
            Verdict::Info(_) => ("•", t.not_checked),
        };
        Mark {
            state: v.state(),
            symbol,
            word,
            text: t.msg(v.msg()),
        }
    }
}

/// A time as shown (in the console's offset) and as machine-readable UTC.
pub struct When {
    pub shown: String,
    pub iso: String,
}

fn when(ms: i64, offset: time::UtcOffset) -> When {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else {
        return When {
            shown: ms.to_string(),
            iso: String::new(),
        };
    };
    let shown = t
        .to_offset(offset)
        .format(time::macros::format_description!(
            "[year]-[month]-[day] [hour]:[minute]:[second]"
        ))
        .unwrap_or_default();
    When {
        shown,
        iso: gateway::cli_audit::format_ms(ms),
    }
}

fn render(template: impl Template) -> Response {
    match template.render() {
        Ok(html) => Html(html).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "render error").into_response()
        }
    }
}

/// A checkpoint as shown.
pub struct CpView {
    pub origin: String,
    pub size: u64,
    pub root: String,
    pub note: String,
    pub key: String,
}

fn cp_view(c: &tlog::Checkpoint, note: &str, key: &tlog::Verifier) -> CpView {
    CpView {
        origin: c.origin().to_string(),
        size: c.size(),
        root: hex::encode(c.root()),
        note: note.to_string(),
        key: format!("{} ({:08x})", key.name(), key.key_id()),
    }
}

/// A detail value as text (lists and maps as compact JSON).
fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::U64(n) => n.to_string(),
        Value::Neg(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => other.to_json().to_string(),
    }
}

/// One line of an entry's details for a results table: its short values,
/// without hashes.
fn summary(details: &Value) -> String {
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

// ---------------------------------------------------------------------------
// Overview.

pub struct Warning {
    pub text: String,
    pub seq: Option<u64>,
}

#[derive(Template)]
#[template(path = "overview.html")]
struct OverviewPage {
    page: Page,
    verified_at: String,
    verified_ago: String,
    overall: Mark,
    signature: Mark,
    consistency: Mark,
    log: Mark,
    chains: Mark,
    checkpoint: Option<CpView>,
    warnings: Vec<Warning>,
    chart: chart::Chart,
    deliveries: Vec<crate::scan::DeliveryRow>,
    denials: Vec<crate::scan::RefusalRow>,
    denials_total: u64,
    refused: Vec<crate::scan::RefusalRow>,
    refused_total: u64,
}

fn seq_of(m: &Msg) -> Option<u64> {
    match m {
        Msg::Altered { seq }
        | Msg::Missing { seq, .. }
        | Msg::OutOfOrder { seq, .. }
        | Msg::Undecodable { seq }
        | Msg::ProofFailed { seq, .. }
        | Msg::ChainBroken { seq, .. } => Some(*seq),
        _ => None,
    }
}

async fn overview(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> Response {
    let snap = app.snapshot(None).await;
    let t = s.lang.labels();
    let mut warnings = Vec::new();
    let mut warn = |m: &Msg| {
        warnings.push(Warning {
            text: t.msg(m),
            seq: seq_of(m),
        })
    };
    if let Some(e) = &snap.checkpoint_error {
        warn(&Msg::Gateway(e.clone()));
    }
    let none = Verdict::Info(Msg::NotChecked);
    let (signature, consistency) = match &snap.observation {
        Some(o) => (o.signature.clone(), o.consistency.clone()),
        None => (none.clone(), none.clone()),
    };
    if let Some(o) = &snap.observation
        && o.key_differs
    {
        warn(&Msg::KeyDiffers);
    }
    for v in [&signature, &consistency] {
        if v.is_failed() {
            warn(v.msg());
        }
    }
    if let Some(m) = &snap.stale {
        warn(m);
    }
    if snap.log.is_failed() {
        for m in &snap.log_problems {
            warn(m);
        }
    }
    if let Some(e) = &snap.scan_error {
        warn(&Msg::Gateway(e.clone()));
    }
    for m in &snap.chain_problems {
        warn(m);
    }
    if let Some(e) = app.ledger.write_error() {
        warn(&Msg::StateFile(e));
    }
    // Failed proofs recorded in the state file in the last week (they may
    // predate this run of the console).
    let week_ago = now_ms() - 7 * 86_400_000;
    for f in app.ledger.failures().await.iter().rev() {
        if f.at_ms >= week_ago && f.at_ms < snap.started_ms {
            let mut text = t.msg(&f.what);
            text.push_str(&format!(
                " ({})",
                when(f.at_ms, app.config.utc_offset).shown
            ));
            warnings.push(Warning { text, seq: None });
        }
    }
    let verdicts = [&signature, &consistency, &snap.log, &snap.chains];
    let overall = if verdicts.iter().any(|v| v.is_failed()) || snap.stale.is_some() {
        Verdict::Failed(Msg::NotChecked)
    } else if [&signature, &snap.log, &snap.chains]
        .iter()
        .all(|v| matches!(v, Verdict::Verified(_)))
    {
        Verdict::Verified(Msg::NotChecked)
    } else {
        Verdict::Info(Msg::NotChecked)
    };
    let mut overall = Mark::of(&overall, t);
    overall.text = match overall.state {
        "verified" => t.msg(snap.log.msg()),
        "failed" => warnings.first().map(|w| w.text.clone()).unwrap_or_default(),
        _ => t.msg(snap.log.msg()),
    };
    let checkpoint = snap.observation.as_ref().and_then(|o: &Observation| {
        o.checkpoint
            .as_ref()
            .map(|c| cp_view(c, &o.note, app.ledger.key()))
    });
    let at = when(snap.finished_ms, app.config.utc_offset);
    render(OverviewPage {
        page: page(&app, &s, "overview", "/".into()),
        verified_at: at.shown,
        verified_ago: t.ago((now_ms() - snap.finished_ms) / 1000),
        overall,
        signature: Mark::of(&signature, t),
        consistency: Mark::of(&consistency, t),
        log: Mark::of(&snap.log, t),
        chains: Mark::of(&snap.chains, t),
        checkpoint,
        warnings,
        chart: chart::build(&snap.stats.days, t),
        deliveries: snap.stats.deliveries.clone(),
        denials: snap.stats.denials.clone(),
        denials_total: snap.stats.denials_total,
        refused: snap.stats.refused.clone(),
        refused_total: snap.stats.refused_total,
    })
}

/// "Verify now": a full verification started after this request, then the overview.
async fn verify_now(State(app): State<Arc<App>>) -> Response {
    app.snapshot(Some(now_ms())).await;
    Redirect::to("/").into_response()
}

// ---------------------------------------------------------------------------
// Search.

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

/// The person search: the filters and an identity number, by POST.
#[derive(Default, Deserialize)]
#[serde(default)]
struct PersonForm {
    #[serde(flatten)]
    filters: Filters,
    id_number: IdNumber,
}

const PAGE_SIZES: [u32; 5] = [10, 25, 50, 100, 200];

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
    /// Results of a person search (paged by POST forms).
    person: bool,
    /// The identity number, only to page through a person's results by POST.
    id_number: String,
    rows: Vec<Row>,
    next_after: u64,
    next_link: String,
    first_link: String,
    csv_link: String,
    shown: String,
}

async fn search_page(app: &App, s: &Session, f: Filters, id: Option<IdNumber>) -> SearchPage {
    let t = s.lang.labels();
    let snap = app.snapshot.read().await.clone();
    let mut actions: std::collections::BTreeSet<String> =
        KNOWN_ACTIONS.iter().map(|a| a.to_string()).collect();
    let mut actors = std::collections::BTreeSet::new();
    if let Some(snap) = &snap {
        actions.extend(snap.stats.actions.iter().cloned());
        actors.extend(snap.stats.actors.iter().cloned());
    }
    let person = id.is_some();
    let searched = person || !f.is_empty();
    let mut error = None;
    let mut rows = Vec::new();
    let mut next_after = 0;
    if searched {
        match f.to_query(app.config.utc_offset, t) {
            Err(e) => error = Some(e),
            Ok(mut q) => {
                if let Some(id) = &id {
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
    SearchPage {
        page: page(
            app,
            s,
            "search",
            if person {
                "/search".into()
            } else {
                link("/search", &f.query_string(None))
            },
        ),
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
        person,
        id_number: id.map(|i| i.expose().to_string()).unwrap_or_default(),
        next_link: link("/search", &f.query_string(Some(next_after))),
        first_link: link("/search", &f.query_string(None)),
        csv_link: link("/search.csv", &f.query_string(None)),
        rows,
        next_after,
        shown,
        f,
    }
}

fn link(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
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

async fn search(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Query(f): Query<Filters>,
) -> Response {
    render(search_page(&app, &s, f, None).await)
}

async fn search_person(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Form(form): Form<PersonForm>,
) -> Response {
    let id = form.id_number.normalised();
    if id.is_empty() {
        let mut p = search_page(&app, &s, form.filters, None).await;
        p.error = Some(s.lang.labels().id_required.to_string());
        return render(p);
    }
    render(search_page(&app, &s, form.filters, Some(id)).await)
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
                    gateway::cli_audit::format_ms(e.at_unix_ms),
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

async fn search_csv(
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

async fn search_person_csv(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Form(form): Form<PersonForm>,
) -> Response {
    let t = s.lang.labels();
    let id = form.id_number.normalised();
    if id.is_empty() {
        return (StatusCode::BAD_REQUEST, t.id_required).into_response();
    }
    match form.filters.to_query(app.config.utc_offset, t) {
        Ok(mut q) => {
            q.subject = String::new();
            q.subject_id_number = id.expose().to_string();
            csv_response(app, q)
        }
        Err(e) => (StatusCode::BAD_REQUEST, e).into_response(),
    }
}

// ---------------------------------------------------------------------------
// Entry.

pub struct SubjectView {
    pub token: String,
    pub prev_seq: u64,
}

pub struct EntryView {
    pub when: When,
    pub actor: String,
    pub action: String,
    pub action_label: String,
    pub outcome_label: String,
    pub kinds: Vec<String>,
    pub subjects: Vec<SubjectView>,
    pub details: Vec<(String, String)>,
}

#[derive(Template)]
#[template(path = "entry.html")]
struct EntryPage {
    page: Page,
    heading: String,
    seq: u64,
    error: Option<String>,
    entry: Option<EntryView>,
    inclusion: Mark,
    signature: Mark,
    consistency: Mark,
    leaf_hash: String,
    signed_leaf: String,
    bytes_len: usize,
    checkpoint: Option<CpView>,
    flagged: bool,
}

/// Whether an entry's bytes, as the store returns them, are the leaf the
/// signed tree holds at its position.
fn check_inclusion(
    seq: u64,
    proof: &proto::InclusionProof,
    signed: Option<&tlog::Checkpoint>,
) -> Verdict {
    let Some(cp) = signed else {
        return Verdict::Info(Msg::NotChecked);
    };
    let failed = |why: String| Verdict::Failed(Msg::ProofFailed { seq, why });
    if proof.tree_size != cp.size() {
        return failed(format!(
            "proved for {} entries, the checkpoint has {}",
            proof.tree_size,
            cp.size()
        ));
    }
    let Ok(signed_leaf) = <tlog::Hash>::try_from(proof.leaf_hash.as_slice()) else {
        return failed("malformed leaf hash".into());
    };
    let Some(path) = hashes(&proof.hashes) else {
        return failed("malformed proof".into());
    };
    if let Err(e) = tlog::verify_inclusion(&signed_leaf, seq - 1, cp.size(), &path, cp.root()) {
        return failed(e.to_string());
    }
    if proof.canonical.is_empty() {
        return Verdict::Failed(Msg::EntryGone);
    }
    if tlog::leaf_hash(&proof.canonical) != signed_leaf {
        return Verdict::Failed(Msg::BytesDiffer);
    }
    Verdict::Verified(Msg::Included { size: cp.size() })
}

async fn entry(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(seq): Path<u64>,
) -> Response {
    let t = s.lang.labels();
    let mut p = EntryPage {
        page: page(&app, &s, "search", format!("/entry/{seq}")),
        heading: t.entry_heading(seq),
        seq,
        error: None,
        entry: None,
        inclusion: Mark::of(&Verdict::Info(Msg::NotChecked), t),
        signature: Mark::of(&Verdict::Info(Msg::NotChecked), t),
        consistency: Mark::of(&Verdict::Info(Msg::NotChecked), t),
        leaf_hash: String::new(),
        signed_leaf: String::new(),
        bytes_len: 0,
        checkpoint: None,
        flagged: app
            .snapshot
            .read()
            .await
            .as_ref()
            .is_some_and(|s| s.flagged.contains(&seq)),
    };
    if seq == 0 {
        p.error = Some(Msg::Missing { seq, more: 0 }).map(|m| t.msg(&m));
        return render(p);
    }
    let proof = match app.upstream.inclusion(seq, 0).await {
        Ok(proof) => proof,
        Err(e) => {
            p.error = Some(e.to_string());
            return render(p);
        }
    };
    let observation = match &proof.checkpoint {
        Some(cp) => Some(app.ledger.observe(&app.upstream, cp).await),
        None => None,
    };
    let signed = observation.as_ref().and_then(|o| o.trusted());
    let inclusion = match &observation {
        None => Verdict::Failed(Msg::SignatureFailed("no checkpoint".into())),
        Some(o) if o.checkpoint.is_none() => o.signature.clone(),
        Some(o) if o.consistency.is_failed() => o.consistency.clone(),
        Some(_) => check_inclusion(seq, &proof, signed),
    };
    p.inclusion = Mark::of(&inclusion, t);
    if let Some(o) = &observation {
        p.signature = Mark::of(&o.signature, t);
        p.consistency = Mark::of(&o.consistency, t);
        p.checkpoint = o
            .checkpoint
            .as_ref()
            .map(|c| cp_view(c, &o.note, app.ledger.key()));
    }
    p.signed_leaf = hex::encode(&proof.leaf_hash);
    p.bytes_len = proof.canonical.len();
    if !proof.canonical.is_empty() {
        p.leaf_hash = hex::encode(tlog::leaf_hash(&proof.canonical));
        match CanonicalEntry::decode(&proof.canonical) {
            Ok(e) => {
                p.entry = Some(EntryView {
                    when: when(e.at_ms, app.config.utc_offset),
                    action_label: t.action(&e.action),
                    outcome_label: t.outcome(&e.outcome),
                    actor: e.actor,
                    action: e.action,
                    kinds: e.kinds.iter().map(|k| t.kind(k)).collect(),
                    subjects: e
                        .subjects
                        .into_iter()
                        .map(|s| SubjectView {
                            token: s.token,
                            prev_seq: s.prev_seq,
                        })
                        .collect(),
                    details: match &e.details {
                        Value::Map(m) => {
                            m.iter().map(|(k, v)| (k.clone(), value_text(v))).collect()
                        }
                        other => vec![(String::new(), value_text(other))],
                    },
                })
            }
            Err(e) => p.error = Some(format!("{}: {e}", t.msg(&Msg::Undecodable { seq }))),
        }
    } else {
        p.error = Some(t.msg(&Msg::EntryGone));
    }
    render(p)
}

// ---------------------------------------------------------------------------
// Person report.

pub struct ReportRow {
    pub seq: u64,
    pub when: When,
    pub who: String,
    pub action: String,
    pub action_label: String,
    pub purpose: String,
    pub case_number: String,
    pub kinds: String,
    /// The fields that left, grouped by record kind.
    pub groups: Vec<FieldGroup>,
    pub verified: Mark,
}

/// One record kind's fields in a report line.
pub struct FieldGroup {
    pub kind: String,
    pub fields: Vec<FieldForm>,
}

pub struct FieldForm {
    /// `kind.field`, as the gateway names it.
    pub key: String,
    pub name: String,
    pub form: String,
    pub form_label: String,
}

fn field_groups(fields: &std::collections::HashMap<String, String>, t: &Labels) -> Vec<FieldGroup> {
    let mut by_kind: std::collections::BTreeMap<&str, Vec<FieldForm>> = Default::default();
    for (key, form) in fields {
        let (kind, name) = key.split_once('.').unwrap_or(("", key.as_str()));
        by_kind.entry(kind).or_default().push(FieldForm {
            key: key.clone(),
            name: name.to_string(),
            form: form.clone(),
            form_label: t.form(form),
        });
    }
    by_kind
        .into_iter()
        .map(|(kind, mut fields)| {
            fields.sort_by(|a, b| a.name.cmp(&b.name));
            FieldGroup {
                kind: t.kind(kind),
                fields,
            }
        })
        .collect()
}

pub struct ReportView {
    pub subject: String,
    pub id_masked: String,
    pub made_at: String,
    pub checkpoint: Option<CpView>,
    pub signature: Mark,
    pub chain: Mark,
    pub problems: Vec<String>,
    pub disclosures: Vec<ReportRow>,
    pub reads: Vec<ReportRow>,
}

#[derive(Template)]
#[template(path = "report.html")]
struct ReportPage {
    page: Page,
    error: Option<String>,
    report: Option<ReportView>,
}

async fn report_form(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> Response {
    render(ReportPage {
        page: page(&app, &s, "report", "/report".into()),
        error: None,
        report: None,
    })
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ReportForm {
    id_number: IdNumber,
}

/// Reads actions listed apart from the disclosures.
const READ_ACTIONS: [&str; 5] = [
    "subject_report",
    "audit_queried",
    "audit_exported",
    "note_read",
    "note_erased",
];

async fn report(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Form(form): Form<ReportForm>,
) -> Response {
    let t = s.lang.labels();
    let mut p = ReportPage {
        page: page(&app, &s, "report", "/report".into()),
        error: None,
        report: None,
    };
    let id = form.id_number.normalised();
    if id.is_empty() {
        p.error = Some(t.id_required.to_string());
        return render(p);
    }
    let r = match app.upstream.subject_report(&id).await {
        Ok(r) => r,
        Err(e) => {
            p.error = Some(e.to_string());
            return render(p);
        }
    };
    let observation = match &r.checkpoint {
        Some(cp) => Some(app.ledger.observe(&app.upstream, cp).await),
        None => None,
    };
    let signed = observation.as_ref().and_then(|o| o.trusted()).cloned();
    let mut problems: Vec<String> = r.problems.clone();
    // Each line's entry: included in the report's signed checkpoint, and
    // naming the person with the back-pointer the report shows.
    let mut disclosures = Vec::new();
    let mut reads = Vec::new();
    let mut chain_ok = r.chain_complete;
    let mut expected_prev = 0u64;
    for item in &r.items {
        let verdict = match &signed {
            None => observation
                .as_ref()
                .map(|o| {
                    if o.signature.is_failed() {
                        o.signature.clone()
                    } else {
                        o.consistency.clone()
                    }
                })
                .unwrap_or(Verdict::Failed(Msg::SignatureFailed(
                    "no checkpoint".into(),
                ))),
            Some(cp) => verify_item(&app, item, &r.subject, cp).await,
        };
        if verdict.is_failed() {
            chain_ok = false;
            problems.push(format!("{} {}: {}", t.seq, item.seq, t.msg(verdict.msg())));
        }
        if item.action != "audit_exported" {
            if item.prev_seq != expected_prev {
                chain_ok = false;
                problems.push(t.msg(&Msg::ChainBroken {
                    seq: item.seq,
                    points_to: item.prev_seq,
                    found: expected_prev,
                }));
            }
            expected_prev = item.seq;
        }
        let row = ReportRow {
            seq: item.seq,
            when: when(item.at_unix_ms, app.config.utc_offset),
            who: item.actor.clone(),
            action_label: t.action(&item.action),
            action: item.action.clone(),
            purpose: item.purpose.clone(),
            case_number: item.case_number.clone(),
            kinds: item
                .kinds
                .iter()
                .map(|k| t.kind(k))
                .collect::<Vec<_>>()
                .join("、"),
            groups: field_groups(&item.fields, t),
            verified: Mark::of(&verdict, t),
        };
        if READ_ACTIONS.contains(&item.action.as_str()) {
            reads.push(row);
        } else {
            disclosures.push(row);
        }
    }
    let chain = if chain_ok && signed.is_some() {
        Verdict::Verified(Msg::ChainComplete {
            entries: r.entries_checked,
        })
    } else {
        Verdict::Failed(Msg::ChainIncomplete)
    };
    p.report = Some(ReportView {
        subject: r.subject.clone(),
        id_masked: id.masked(),
        made_at: when(now_ms(), app.config.utc_offset).shown,
        checkpoint: observation.as_ref().and_then(|o| {
            o.checkpoint
                .as_ref()
                .map(|c| cp_view(c, &o.note, app.ledger.key()))
        }),
        signature: observation
            .as_ref()
            .map(|o| Mark::of(&o.signature, t))
            .unwrap_or_else(|| {
                Mark::of(
                    &Verdict::Failed(Msg::SignatureFailed("no checkpoint".into())),
                    t,
                )
            }),
        chain: Mark::of(&chain, t),
        problems,
        disclosures,
        reads,
    });
    render(p)
}

async fn verify_item(
    app: &App,
    item: &proto::SubjectReportItem,
    subject: &str,
    cp: &tlog::Checkpoint,
) -> Verdict {
    let proof = match app.upstream.inclusion(item.seq, cp.size()).await {
        Ok(p) => p,
        Err(e) => {
            return Verdict::Failed(Msg::ProofFailed {
                seq: item.seq,
                why: e.to_string(),
            });
        }
    };
    let v = check_inclusion(item.seq, &proof, Some(cp));
    if v.is_failed() {
        return v;
    }
    let Ok(entry) = CanonicalEntry::decode(&proof.canonical) else {
        return Verdict::Failed(Msg::Undecodable { seq: item.seq });
    };
    let names_the_person = if item.action == "audit_exported" {
        entry.action == "audit_exported"
    } else {
        entry
            .subjects
            .iter()
            .any(|s| s.token == subject && s.prev_seq == item.prev_seq)
    };
    if !names_the_person || entry.action != item.action || entry.actor != item.actor {
        return Verdict::Failed(Msg::NotThePerson);
    }
    v
}

// ---------------------------------------------------------------------------
// Checkpoints.

pub struct CpRow {
    pub size: u64,
    pub root: String,
    pub first_seen: String,
    pub signature: Mark,
    pub consistency: Mark,
}

#[derive(Template)]
#[template(path = "checkpoints.html")]
struct CheckpointsPage {
    page: Page,
    current: Option<CpView>,
    current_signature: Option<Mark>,
    current_consistency: Option<Mark>,
    error: Option<String>,
    rows: Vec<CpRow>,
    failures: Vec<(String, String)>,
    state_file: String,
}

/// Checkpoints shown (and re-proved) on the page.
const SHOWN_CHECKPOINTS: usize = 50;

async fn checkpoints(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> Response {
    let t = s.lang.labels();
    let mut p = CheckpointsPage {
        page: page(&app, &s, "checkpoints", "/checkpoints".into()),
        current: None,
        current_signature: None,
        current_consistency: None,
        error: None,
        rows: Vec::new(),
        failures: Vec::new(),
        state_file: app.ledger.path().display().to_string(),
    };
    match app.upstream.checkpoint().await {
        Ok(cp) => {
            let o = app.ledger.observe(&app.upstream, &cp).await;
            p.current = o
                .checkpoint
                .as_ref()
                .map(|c| cp_view(c, &o.note, app.ledger.key()));
            p.current_signature = Some(Mark::of(&o.signature, t));
            p.current_consistency = Some(Mark::of(&o.consistency, t));
        }
        Err(e) => p.error = Some(t.msg(&Msg::Gateway(e.to_string()))),
    }
    let history = app.ledger.history().await;
    let start = history.len().saturating_sub(SHOWN_CHECKPOINTS);
    for i in (start..history.len()).rev() {
        let c = &history[i];
        let signature = match app.ledger.open(&c.note) {
            Ok(opened) if opened.size() == c.size && hex::encode(opened.root()) == c.root => {
                Verdict::Verified(Msg::SignatureOk)
            }
            Ok(_) => Verdict::Failed(Msg::SignatureFailed(
                "the note and the saved size or root differ".into(),
            )),
            Err(m) => Verdict::Failed(m),
        };
        let consistency = if i == 0 {
            Verdict::Info(Msg::FirstCheckpoint { size: c.size })
        } else {
            reprove(&app.upstream, &history[i - 1], c).await
        };
        p.rows.push(CpRow {
            size: c.size,
            root: c.root.clone(),
            first_seen: when(c.first_seen_ms, app.config.utc_offset).shown,
            signature: Mark::of(&signature, t),
            consistency: Mark::of(&consistency, t),
        });
    }
    p.failures = app
        .ledger
        .failures()
        .await
        .iter()
        .rev()
        .map(|f| (when(f.at_ms, app.config.utc_offset).shown, t.msg(&f.what)))
        .collect();
    render(p)
}

// ---------------------------------------------------------------------------
// Language, assets, not found.

#[derive(Deserialize)]
struct LangForm {
    lang: String,
    #[serde(default)]
    back: String,
}

/// Only paths of this console: no scheme, no host, no backslash.
fn safe_back(back: &str) -> &str {
    let ok = back.starts_with('/')
        && !back.starts_with("//")
        && !back.contains('\\')
        && !back.chars().any(char::is_control);
    if ok { back } else { "/" }
}

async fn switch_language(Form(form): Form<LangForm>) -> Response {
    let lang = if form.lang == "en" { "en" } else { "zh" };
    let mut r = Redirect::to(safe_back(&form.back)).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!(
        "{LANG_COOKIE}={lang}; Path=/; Max-Age=31536000; SameSite=Strict"
    )) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
    r
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        STYLESHEET,
    )
        .into_response()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage {
    page: Page,
    message: String,
}

async fn not_found(State(app): State<Arc<App>>, Extension(s): Extension<Session>) -> Response {
    let mut r = render(ErrorPage {
        page: page(&app, &s, "", "/".into()),
        message: match s.lang {
            crate::i18n::Lang::Zh => "没有这个页面。".into(),
            crate::i18n::Lang::En => "There is no such page.".into(),
        },
    });
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_switch_returns_only_to_this_console() {
        assert_eq!(safe_back("/search?actor=a"), "/search?actor=a");
        assert_eq!(safe_back("//evil.example/"), "/");
        assert_eq!(safe_back("https://evil.example/"), "/");
        assert_eq!(safe_back("/\\evil"), "/");
    }

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
