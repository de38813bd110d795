//! What every request and response goes through: the Host check (a page on
//! another site cannot reach a loopback console by rebinding its own name to
//! 127.0.0.1), the session cookie and the CSRF token every POST must carry,
//! the language cookie, and the headers that keep pages out of caches and
//! other sites' frames. Request logs name the route pattern, never the path
//! typed or a form's content.

use crate::App;
use crate::i18n::Lang;
use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use std::sync::Arc;

pub const SESSION_COOKIE: &str = "console_session";
pub const LANG_COOKIE: &str = "console_lang";
/// Largest form body read (the forms hold a few short fields).
const MAX_FORM_BYTES: usize = 16 * 1024;

/// The session of a request, put into its extensions by [`guard`].
#[derive(Clone)]
pub struct Session {
    /// The session id (the cookie's value): results held for a person
    /// search or report belong to it.
    pub sid: String,
    /// The token every form of this session carries.
    pub csrf: String,
    pub lang: Lang,
}

/// A random session id (128 bits, hex).
fn new_session_id(app: &App) -> String {
    let mut bytes = [0u8; 16];
    ring::rand::SecureRandom::fill(&app.rng, &mut bytes).expect("the system random source works");
    hex::encode(bytes)
}

fn valid_session_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The CSRF token of a session: a MAC of its random id under a key drawn
/// when the console started, so it cannot be guessed from the cookie alone
/// and needs no table of sessions.
fn csrf_token(app: &App, sid: &str) -> String {
    hex::encode(ring::hmac::sign(&app.csrf_key, sid.as_bytes()).as_ref())
}

fn csrf_ok(app: &App, sid: &str, token: Option<&str>) -> bool {
    let Some(tag) = token.and_then(|t| hex::decode(t).ok()) else {
        return false;
    };
    ring::hmac::verify(&app.csrf_key, sid.as_bytes(), &tag).is_ok()
}

pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn refuse(status: StatusCode, zh: &str, en: &str) -> Response {
    tracing::warn!(status = status.as_u16(), why = en, "request refused");
    let mut r = (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{zh}\n{en}\n"),
    )
        .into_response();
    secure_headers(r.headers_mut());
    r
}

/// Headers on every response.
pub fn secure_headers(h: &mut HeaderMap) {
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: &'static str| {
        h.insert(k, HeaderValue::from_static(v));
    };
    set(h, header::CACHE_CONTROL, "no-store");
    set(h, header::PRAGMA, "no-cache");
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::REFERRER_POLICY, "same-origin");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    );
}

/// Host check, session, CSRF check on POST, security headers.
pub async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("")
        .to_string();
    if let Some(allowed) = &app.allowed_hosts
        && !allowed.iter().any(|a| a.eq_ignore_ascii_case(&host))
    {
        return refuse(
            StatusCode::MISDIRECTED_REQUEST,
            "本控制台只接受本机地址的请求。",
            "This console answers requests for its loopback address only.",
        );
    }
    let headers = req.headers();
    let lang = Lang::from_cookie(cookie(headers, LANG_COOKIE));
    let existing = cookie(headers, SESSION_COOKIE)
        .filter(|s| valid_session_id(s))
        .map(str::to_string);
    let fresh = existing.is_none();
    let sid = existing.unwrap_or_else(|| new_session_id(&app));
    let mut req = req;
    if req.method() == Method::POST {
        let expired = || {
            refuse(
                StatusCode::FORBIDDEN,
                "表单已过期或并非来自本控制台：请重新加载页面后再试。",
                "The form expired or did not come from this console: reload the page and try again.",
            )
        };
        if fresh {
            return expired();
        }
        if let Some(origin) = req.headers().get(header::ORIGIN)
            && origin.as_bytes() != format!("http://{host}").as_bytes()
        {
            return expired();
        }
        let (parts, body) = req.into_parts();
        let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "表单过大。",
                "The form is too large.",
            );
        };
        let fields: Vec<(String, String)> =
            serde_urlencoded::from_bytes(&bytes).unwrap_or_default();
        let token = fields
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str());
        if !csrf_ok(&app, &sid, token) {
            return expired();
        }
        req = Request::from_parts(parts, Body::from(bytes));
    }
    req.extensions_mut().insert(Session {
        csrf: csrf_token(&app, &sid),
        sid: sid.clone(),
        lang,
    });
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    secure_headers(h);
    if fresh
        && let Ok(v) = HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict"
        ))
    {
        h.append(header::SET_COOKIE, v);
    }
    response
}

/// One log line per request: method, route pattern, status, duration. The
/// path as typed and every form field stay out of it.
pub async fn log_requests(req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "(no route)".into());
    let started = std::time::Instant::now();
    let response = next.run(req).await;
    tracing::info!(
        %method,
        route,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        "request"
    );
    response
}
