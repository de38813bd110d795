//! The console's pages: the routes, what every page shares, and the
//! results of POSTs that named a person, held for a while under a random
//! handle. Each page has a module of its own with its handler and the view
//! struct its template renders. Templates (`console/templates/`) are
//! compiled in by askama and escape every value; the stylesheet is embedded.
//!
//! An identity number arrives only in a POST body. The POST is answered with
//! a redirect to a GET address that holds a random handle instead
//! (Post/Redirect/Get): the browser's history and session-restore files
//! keep the addresses and bodies of committed navigations, so a POST
//! answered with a page would leave the number in them.

mod checkpoints;
mod entry;
mod overview;
mod report;
mod search;

use crate::i18n::{Labels, Msg};
use crate::ledger::Verdict;
use crate::session::{self, LANG_COOKIE, Session};
use crate::{App, IdNumber};
use askama::Template;
use axum::Router;
use axum::extract::{Extension, Form, State};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use gateway::audit::Value;
use gateway::audit::report::format_ms;
use http::{HeaderValue, StatusCode, header};
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

const STYLESHEET: &str = include_str!("../../assets/console.css");

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(overview::overview))
        .route("/verify", post(overview::verify_now))
        .route("/search", get(search::search).post(search::search_person))
        .route("/search.csv", get(search::search_csv))
        .route("/search/person/{handle}", get(search::person_results))
        .route("/search/person/{handle}/csv", get(search::person_csv))
        .route("/entry/{seq}", get(entry::entry))
        .route("/report", get(report::report_form).post(report::report))
        .route("/report/{handle}", get(report::held_report))
        .route("/checkpoints", get(checkpoints::checkpoints))
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

pub(crate) fn page(app: &App, s: &Session, nav: &'static str, back: String) -> Page {
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

pub(crate) fn offset_text(o: time::UtcOffset) -> String {
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
    pub(crate) fn of(v: &Verdict, t: &Labels) -> Mark {
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

pub(crate) fn when(ms: i64, offset: time::UtcOffset) -> When {
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
        iso: format_ms(ms),
    }
}

pub(crate) fn render(template: impl Template) -> Response {
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

pub(crate) fn cp_view(c: &tlog::Checkpoint, note: &str, key: &tlog::Verifier) -> CpView {
    CpView {
        origin: c.origin().to_string(),
        size: c.size(),
        root: hex::encode(c.root()),
        note: note.to_string(),
        key: format!("{} ({:08x})", key.name(), key.key_id()),
    }
}

/// A detail value as text (lists and maps as compact JSON).
pub(crate) fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::U64(n) => n.to_string(),
        Value::Neg(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Null => "null".into(),
        other => other.to_json().to_string(),
    }
}

pub(crate) fn link(path: &str, query: &str) -> String {
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

// ---------------------------------------------------------------------------
// Results held for a GET after the POST that named a person.

/// What a POST naming a person left for its GET page.
pub(crate) enum HeldWhat {
    /// A person search: the number, kept here so the pages after the first
    /// and the CSV can ask the gateway again without the browser holding it.
    Person {
        id: IdNumber,
        size: String,
    },
    Report(Box<report::ReportData>),
}

struct HeldEntry {
    sid: String,
    at: Instant,
    what: Arc<HeldWhat>,
}

/// Held results, each for its session only, for half an hour.
#[derive(Default)]
pub(crate) struct Held {
    entries: std::sync::Mutex<HashMap<String, HeldEntry>>,
}

const HELD_FOR: Duration = Duration::from_secs(30 * 60);
const HELD_MAX: usize = 256;

impl Held {
    /// Keeps `what` for the session `sid`; returns its random handle.
    pub fn put(&self, rng: &ring::rand::SystemRandom, sid: &str, what: HeldWhat) -> String {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(rng, &mut bytes).expect("the system random source works");
        let handle = hex::encode(bytes);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries.retain(|_, e| e.at.elapsed() < HELD_FOR);
        while entries.len() >= HELD_MAX {
            let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.at)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            entries.remove(&oldest);
        }
        entries.insert(
            handle.clone(),
            HeldEntry {
                sid: sid.to_string(),
                at: Instant::now(),
                what: Arc::new(what),
            },
        );
        handle
    }

    /// What the session `sid` left under `handle`, if still held.
    pub fn get(&self, sid: &str, handle: &str) -> Option<Arc<HeldWhat>> {
        let entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        entries
            .get(handle)
            .filter(|e| e.sid == sid && e.at.elapsed() < HELD_FOR)
            .map(|e| e.what.clone())
    }
}

/// A POST answered by a GET address (303 See Other).
pub(crate) fn see_other(path: &str) -> Response {
    Redirect::to(path).into_response()
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
    fn times_read_as_the_command_line_prints_them() {
        assert_eq!(format_ms(1_767_225_600_123), "2026-01-01T00:00:00.123Z");
    }

    #[test]
    fn held_results_belong_to_their_session() {
        let held = Held::default();
        let rng = ring::rand::SystemRandom::new();
        let person = || HeldWhat::Person {
            id: IdNumber::new("340207197607111133"),
            size: String::new(),
        };
        let a = held.put(&rng, "session-a", person());
        let b = held.put(&rng, "session-a", person());
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(held.get("session-a", &a).is_some());
        assert!(held.get("session-b", &a).is_none());
        assert!(held.get("session-a", "0123").is_none());
    }
}
