//! Hostile input through the public gRPC contract. For a bounded time,
//! several tasks send the real server (in-process, real mutual TLS) random
//! `PushBatch` streams, `PullRequest`s, `LookupRequest`s,
//! `ReidentifyRequest`s (forged and damaged `reid1.` tokens among them) and
//! audit requests: arbitrary strings, sizes up to and past the message
//! limits, unknown enum values, undecodable bodies, methods outside the
//! allow-list, and every identity calling every method. A fuzzer that only
//! ever sends what the client sends would miss what an authenticated caller
//! who misbehaves can do; this one checks, for the whole run:
//! - no panic (panic hook and log lines) and no hang (every call has a
//!   deadline of its own; the server task is still running at the end);
//! - the process's peak memory grows by less than a stated bound (the server
//!   runs in this process, `/proc/self/status`);
//! - every answer is OK or a status the gateway defines for bad input, and a
//!   call its role or purpose does not allow is never answered OK;
//! - no personal value planted in the requests (or held in the samples) shows
//!   up in a log line or span field, an error message, a receipt or the audit
//!   log, and the log still verifies;
//! - afterwards the gateway takes the agencies' sample exports with their
//!   labelled outcomes and a pull gives what a fresh gateway gives.
//!
//! In the suite it runs for 3 s. Longer runs and replays (the seed is printed;
//! with `FUZZ_TASKS=1` a seed sends the same requests in the same order),
//! settings in README ("Hostile input"):
//! `FUZZ_SECS=600 FUZZ_SEED=<seed> cargo test --release -p gateway-tests --test e2e fuzz_grpc -- --nocapture`

use crate::audit_support;
use bytes::{BufMut, Bytes};
use gateway::client::{PushOptions, event_json, pull, push_file};
use gateway::limits::{Limit, LimitsConfig};
use gateway::proto;
use gateway_tests::{ServerState, TestPki, TestServer, labels, sample, valid_identity_number};
use policies::Operation;
use prost::Message;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tonic::transport::Channel;
use tonic::{Code, Status};

// ---------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------

/// The run's settings, from the environment (README, "Hostile input").
#[derive(Debug, Clone)]
struct Settings {
    /// How long new calls are started (`FUZZ_SECS`, default 3).
    secs: f64,
    /// `FUZZ_SEED` (decimal or 0x-hex); by default from the clock.
    seed: u64,
    /// Concurrent callers (`FUZZ_TASKS`, default 4).
    tasks: usize,
    /// Each call's own deadline (`FUZZ_CALL_TIMEOUT_SECS`, default 30): a call
    /// not finished by then is a hang.
    call_timeout: Duration,
    /// Bound on the growth of peak RSS over the run (`FUZZ_MAX_GROWTH_MIB`,
    /// default 768): the ceiling README states for a 10-minute release run,
    /// SQLite's page caches full and the largest messages in flight.
    max_growth_mib: u64,
    /// Messages above 1 MiB in flight at once (`FUZZ_BIG_AT_ONCE`, default 2).
    big_at_once: usize,
    /// Families of input left out (`FUZZ_SKIP`, comma-separated: many_rows,
    /// huge_rows, huge_text, malformed, bad_batch_id_text).
    skip: Vec<String>,
    /// `FUZZ_REPLAY=<call seed>`: sends only that call (printed with each
    /// failure) and the checks after it.
    replay: Option<u64>,
}

fn parse_u64(s: &str) -> Option<u64> {
    let s = s.trim();
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        let num = |name: &str, default: u64| {
            var(name)
                .map(|v| parse_u64(&v).unwrap_or_else(|| panic!("{name}={v} is not a number")))
                .unwrap_or(default)
        };
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Settings {
            secs: var("FUZZ_SECS")
                .map(|v| v.parse().expect("FUZZ_SECS is a number of seconds"))
                .unwrap_or(3.0),
            seed: num("FUZZ_SEED", clock),
            tasks: num("FUZZ_TASKS", 4).max(1) as usize,
            call_timeout: Duration::from_secs(num("FUZZ_CALL_TIMEOUT_SECS", 30)),
            max_growth_mib: num("FUZZ_MAX_GROWTH_MIB", 768),
            big_at_once: num("FUZZ_BIG_AT_ONCE", 2).max(1) as usize,
            skip: var("FUZZ_SKIP")
                .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
                .unwrap_or_default(),
            replay: var("FUZZ_REPLAY").map(|v| parse_u64(&v).expect("FUZZ_REPLAY is a seed")),
        }
    }
}

// ---------------------------------------------------------------------------
// A small seeded generator (xorshift64*), so that a seed replays a run.
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed: nearby seeds give unrelated streams, never 0.
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
    fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi.saturating_sub(lo) + 1)
    }
    /// True `n` times in `d`.
    fn odds(&mut self, n: u64, d: u64) -> bool {
        self.below(d) < n
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn bytes_in(&mut self, lo: u64, hi: u64) -> Vec<u8> {
        let n = self.range(lo, hi) as usize;
        self.bytes(n)
    }
}

// ---------------------------------------------------------------------------
// What the whole process shows: panics and log lines (and the personal
// values they must never hold). Installed once per test process.
// ---------------------------------------------------------------------------

static PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_LINES: AtomicU64 = AtomicU64::new(0);
static LOG_PANICKED: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());
static LOG_LEAK_COUNT: AtomicU64 = AtomicU64::new(0);
static LOG_RECORDED_COUNT: AtomicU64 = AtomicU64::new(0);
static PLANTED: RwLock<Option<Arc<regex::bytes::Regex>>> = RwLock::new(None);
static INSTALL: std::sync::Once = std::sync::Once::new();

/// Keeps the first few examples of a finding.
fn keep(list: &Mutex<Vec<String>>, what: String) {
    let mut list = list.lock().unwrap_or_else(|p| p.into_inner());
    if list.len() < 20 {
        list.push(what);
    }
}

fn planted() -> Option<Arc<regex::bytes::Regex>> {
    PLANTED.read().unwrap_or_else(|p| p.into_inner()).clone()
}

fn scan_log_line(line: &str) {
    LOG_LINES.fetch_add(1, Ordering::Relaxed);
    if line.contains("panicked") {
        keep(&LOG_PANICKED, line.chars().take(400).collect());
    }
    let Some(re) = planted() else { return };
    for m in re.find_iter(line.as_bytes()) {
        if recorded_by_design(&line[..m.start()], &String::from_utf8_lossy(m.as_bytes())) {
            LOG_RECORDED_COUNT.fetch_add(1, Ordering::Relaxed);
            continue;
        }
        LOG_LEAK_COUNT.fetch_add(1, Ordering::Relaxed);
        keep(
            &LOG_LEAKS,
            format!(
                "`{}` in: {}",
                String::from_utf8_lossy(m.as_bytes()),
                line.chars().take(300).collect::<String>()
            ),
        );
    }
}

/// Fields the gateway records verbatim once their value has the form it
/// accepts (a batch id of `[A-Za-z0-9._:-]{1,128}`, a case number of
/// `[exchange] case_number_pattern`) and holds no personal identifier. A
/// planted identity number (one the adapters accept) or mobile number there
/// is a failure like any other; a planted number that is no identifier (the
/// samples' 18-digit numbers with a wrong check character) has the accepted
/// form and is recorded: counted and reported, not failed.
const RECORDED_FIELDS: [&str; 2] = ["batch_id", "case_number"];

/// Whether a personal value found right after `before` (a log line up to
/// the match) is in the value of a [`RECORDED_FIELDS`] field (` name=value`;
/// such values hold no space) and is not an identifier.
fn recorded_by_design(before: &str, value: &str) -> bool {
    let token = &before[before.rfind(' ').map_or(0, |i| i + 1)..];
    !is_identifier(value)
        && RECORDED_FIELDS
            .iter()
            .any(|f| token.starts_with(&format!("{f}=")))
}

/// A planted value the gateway must refuse in a recorded field: an identity
/// number the adapters would accept, or a mobile number.
fn is_identifier(value: &str) -> bool {
    adapters::rules::parse_identity_number(value).is_ok() || adapters::rules::is_mobile(value)
}

/// Every span's and event's fields, as a log line or an OTLP exporter
/// would see them (at the gateway's default level, info).
struct ScanLayer;

struct Fields(String);

impl tracing::field::Visit for Fields {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, " {}={}", field.name(), value);
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for ScanLayer {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut f = Fields(format!("span {}:", attrs.metadata().name()));
        attrs.record(&mut f);
        scan_log_line(&f.0);
    }
    fn on_record(
        &self,
        _id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut f = Fields("span record:".into());
        values.record(&mut f);
        scan_log_line(&f.0);
    }
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut f = Fields(format!("{}:", event.metadata().level()));
        event.record(&mut f);
        scan_log_line(&f.0);
    }
}

fn install_observers() {
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            // The test crate's own assertions are not the gateway's panics.
            let ours = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/"));
            if !ours {
                keep(&PANICS, info.to_string());
            }
            previous(info);
        }));
        use tracing_subscriber::Layer as _;
        use tracing_subscriber::layer::SubscriberExt as _;
        let subscriber = tracing_subscriber::registry()
            .with(ScanLayer.with_filter(tracing_subscriber::filter::LevelFilter::INFO));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global log subscriber");
    });
}

// ---------------------------------------------------------------------------
// Raw gRPC: requests as bytes (so that sizes, enum values and undecodable
// bodies are under the fuzzer's control), answers decoded as the real types.
// ---------------------------------------------------------------------------

struct RawCodec<D>(std::marker::PhantomData<fn() -> D>);

impl<D> Default for RawCodec<D> {
    fn default() -> Self {
        RawCodec(std::marker::PhantomData)
    }
}

struct RawEncoder;

impl tonic::codec::Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl<D: Message + Default + Send + 'static> tonic::codec::Codec for RawCodec<D> {
    type Encode = Bytes;
    type Decode = D;
    type Encoder = RawEncoder;
    type Decoder = tonic_prost::ProstDecoder<D>;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

async fn grpc(channel: &Channel) -> Result<tonic::client::Grpc<Channel>, Status> {
    let mut g = tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(usize::MAX);
    g.ready()
        .await
        .map_err(|e| Status::unavailable(format!("client: connection not ready: {e}")))?;
    Ok(g)
}

fn path_of(path: &str) -> Result<http::uri::PathAndQuery, Status> {
    http::uri::PathAndQuery::try_from(path)
        .map_err(|e| Status::unavailable(format!("client: bad path: {e}")))
}

fn request<T>(body: T, grpc_timeout: Option<Duration>) -> tonic::Request<T> {
    let mut r = tonic::Request::new(body);
    if let Some(t) = grpc_timeout {
        r.set_timeout(t);
    }
    r
}

async fn unary<D: Message + Default + Send + Sync + 'static>(
    channel: &Channel,
    path: &str,
    body: Bytes,
    grpc_timeout: Option<Duration>,
) -> Result<D, Status> {
    let mut g = grpc(channel).await?;
    g.unary(
        request(body, grpc_timeout),
        path_of(path)?,
        RawCodec::<D>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

async fn streaming<D: Message + Default + Send + Sync + 'static>(
    channel: &Channel,
    path: &str,
    bodies: impl tokio_stream::Stream<Item = Bytes> + Send + 'static,
    grpc_timeout: Option<Duration>,
) -> Result<tonic::Streaming<D>, Status> {
    let mut g = grpc(channel).await?;
    g.streaming(
        request(bodies, grpc_timeout),
        path_of(path)?,
        RawCodec::<D>::default(),
    )
    .await
    .map(tonic::Response::into_inner)
}

// ---------------------------------------------------------------------------
// Who calls, and what each identity may do.
// ---------------------------------------------------------------------------

const AGENCY_SAMPLES: [(&str, &str); 6] = [
    ("public_security", "public_security.jsonl"),
    ("hrss", "hrss.csv"),
    ("market_regulation", "market_regulation.jsonl"),
    ("tax", "tax.csv"),
    ("housing", "housing.jsonl"),
    ("work_safety", "work_safety.jsonl"),
];
const CONSUMERS: [&str; 5] = [
    "assistance",
    "organisation",
    "rights",
    "model_workers",
    "analytics",
];
const AUDITOR: &str = "auditor/compliance";
/// A consumer without a policy, an agency that does not exist, a role that
/// does not exist: certificates the CA did issue.
const ODD: [&str; 3] = ["union/ghost", "agency/nosuch", "robot/x"];
/// Identities held to tight limits, so that limit refusals are exercised too.
const TIGHT: [&str; 2] = ["union/rights", "agency/tax"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Agency,
    Union,
    Auditor,
    None,
}

fn role_of(identity: &str) -> Role {
    match identity.split_once('/') {
        Some(("agency", name)) if adapters::Agency::from_id(name).is_some() => Role::Agency,
        Some(("union", _)) => Role::Union,
        Some(("auditor", _)) => Role::Auditor,
        _ => Role::None,
    }
}

/// How an answer is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// OK or a status the gateway defines for bad input or limits.
    Defined,
    /// The caller's role may not call this method: PERMISSION_DENIED, always.
    WrongRole,
    /// The caller's policy does not grant this (no policy, a purpose outside
    /// it, or one that does not grant the operation): never OK.
    NotGranted,
    /// A body that does not decode (or barely does): answered as any call,
    /// INVALID_ARGUMENT with the gateway's fixed message when it does not
    /// decode, on every service.
    Malformed,
    /// A request over the configured size limit (`max_request_bytes`;
    /// `max_message_bytes` for a push): refused as too large.
    TooLarge,
}

/// tonic's own answers to a request body it could not read (INTERNAL, with
/// the decoder's description of the bytes): the gateway answers none of them.
fn is_decoder_message(m: &str) -> bool {
    [
        "failed to decode Protobuf message",
        "Missing request message.",
        "Unexpected EOF decoding stream.",
    ]
    .iter()
    .any(|p| m.starts_with(p))
}

/// `own_deadline`: the caller set a short `grpc-timeout`, so CANCELLED or
/// DEADLINE_EXCEEDED may answer any call.
fn verdict(expect: Expect, own_deadline: bool, result: &Result<(), Status>) -> Result<(), String> {
    let status = match result {
        Ok(()) => {
            return match expect {
                Expect::WrongRole | Expect::NotGranted | Expect::TooLarge => {
                    Err("answered OK".into())
                }
                _ => Ok(()),
            };
        }
        Err(s) => s,
    };
    let code = status.code();
    if is_decoder_message(status.message()) {
        return Err(format!("{code:?} with the decoder's message"));
    }
    if status.message() == gateway::status::UNDECODABLE && code != Code::InvalidArgument {
        return Err(format!("{code:?} for an undecodable body"));
    }
    if own_deadline && matches!(code, Code::Cancelled | Code::DeadlineExceeded) {
        return Ok(());
    }
    if expect == Expect::TooLarge {
        return if matches!(code, Code::OutOfRange | Code::ResourceExhausted) {
            Ok(())
        } else {
            Err(format!("{code:?} where a refusal as too large was due"))
        };
    }
    if expect == Expect::WrongRole {
        return if code == Code::PermissionDenied {
            Ok(())
        } else {
            Err(format!("{code:?} where PERMISSION_DENIED was due"))
        };
    }
    match code {
        Code::InvalidArgument
        | Code::PermissionDenied
        | Code::ResourceExhausted
        | Code::OutOfRange
        | Code::NotFound => Ok(()),
        _ => Err(format!("undefined answer {code:?}")),
    }
}

fn code_name(result: &Result<(), Status>) -> String {
    match result {
        Ok(()) => "OK".into(),
        Err(s) => format!("{:?}", s.code()),
    }
}

// ---------------------------------------------------------------------------
// The run's shared state.
// ---------------------------------------------------------------------------

struct SampleRows {
    format: i32,
    header: Vec<u8>,
    rows: Vec<Vec<u8>>,
}

#[derive(Default)]
struct Stats {
    /// rpc → code → calls.
    calls: BTreeMap<&'static str, BTreeMap<String, u64>>,
    failures: Vec<String>,
    failure_count: u64,
    batches: u64,
    rows: u64,
    bytes: u64,
    largest: usize,
}

struct Ctx {
    settings: Settings,
    channels: BTreeMap<String, Channel>,
    identities: Vec<String>,
    policies: Arc<policies::PolicySet>,
    /// Every purpose of every shipped policy, and a few near misses.
    purposes: Vec<String>,
    samples: BTreeMap<&'static str, SampleRows>,
    /// `reid1.` tokens the gateway issued to union/assistance.
    tokens: Vec<String>,
    /// Personal values: from the samples and made up (valid identity numbers,
    /// names, phone numbers). They are sent everywhere and must come back
    /// from nowhere but the records themselves.
    plants: Vec<String>,
    /// Identity numbers of people the samples hold (look-ups that find someone).
    known_ids: Vec<String>,
    stats: Mutex<Stats>,
    big: tokio::sync::Semaphore,
    stop_at: Instant,
    data_dir: PathBuf,
    /// The PostgreSQL store's url, on that suite.
    store_url: Option<String>,
    quota_resets: AtomicU64,
}

/// One call, as reported when it fails.
struct Call {
    rpc: &'static str,
    identity: String,
    expect: Expect,
    /// A short `grpc-timeout` was set.
    own_deadline: bool,
    seed: u64,
    what: String,
}

impl Ctx {
    fn on(&self, family: &str) -> bool {
        !self.settings.skip.iter().any(|s| s == family)
    }

    fn channel(&self, identity: &str) -> &Channel {
        &self.channels[identity]
    }

    fn fail(&self, call: &Call, problem: String) {
        let mut stats = self.stats.lock().unwrap();
        stats.failure_count += 1;
        if stats.failures.len() < 40 {
            stats.failures.push(format!(
                "{} as {} ({:?}{}): {problem}\n      request: {}\n      replay: FUZZ_REPLAY={:#x}",
                call.rpc,
                call.identity,
                call.expect,
                if call.own_deadline {
                    ", own deadline"
                } else {
                    ""
                },
                call.what,
                call.seed
            ));
        }
    }

    fn count(&self, rpc: &'static str, label: &str) {
        *self
            .stats
            .lock()
            .unwrap()
            .calls
            .entry(rpc)
            .or_default()
            .entry(label.to_string())
            .or_default() += 1;
    }

    /// Counts the answer and judges it: a defined status for its kind of
    /// call, and a message that repeats no planted value.
    fn done(&self, call: &Call, result: Result<(), Status>) {
        self.count(call.rpc, &code_name(&result));
        if let Err(problem) = verdict(call.expect, call.own_deadline, &result) {
            let message = result.as_ref().err().map(|s| s.message()).unwrap_or("");
            self.fail(call, format!("{problem}: {message:.300}"));
        }
        if let Err(s) = &result {
            self.no_plant(call, "status message", s.message().as_bytes());
        }
    }

    fn no_plant(&self, call: &Call, surface: &str, text: &[u8]) {
        if let Some(re) = planted()
            && let Some(m) = re.find(text)
        {
            self.fail(
                call,
                format!(
                    "a personal value (`{}`) in the {surface}: {:.300}",
                    String::from_utf8_lossy(m.as_bytes()),
                    String::from_utf8_lossy(text)
                ),
            );
        }
    }

    fn grants(&self, identity: &str, purpose: &str, op: Operation) -> bool {
        let consumer = identity.strip_prefix("union/").unwrap_or("");
        self.policies
            .get(consumer)
            .is_some_and(|p| p.allows_purpose(purpose) && p.grants(purpose, op))
    }

    /// The expectation for a union call from `identity` with `purpose`, of
    /// `size` bytes.
    fn union_expect(&self, identity: &str, purpose: &str, op: Operation, size: usize) -> Expect {
        if role_of(identity) != Role::Union {
            Expect::WrongRole
        } else if size > request_limit() {
            Expect::TooLarge
        } else if !self.grants(identity, purpose, op) {
            Expect::NotGranted
        } else {
            Expect::Defined
        }
    }

    /// Runs `f` under the call's own deadline; a call past it is a hang.
    async fn bounded<T>(
        &self,
        call: &Call,
        f: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Option<Result<T, Status>> {
        match tokio::time::timeout(self.settings.call_timeout, f).await {
            Ok(r) => Some(r),
            Err(_) => {
                self.count(call.rpc, "HANG");
                self.fail(
                    call,
                    format!(
                        "no answer within {} s (hang)",
                        self.settings.call_timeout.as_secs()
                    ),
                );
                None
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Generators.
// ---------------------------------------------------------------------------

/// Largest request of every call but a push (`[limits] max_request_bytes`).
fn request_limit() -> usize {
    LimitsConfig::default().max_request_bytes
}
/// Messages above this size need one of the `big` permits.
const BIG: usize = 1024 * 1024;

const ODD_CHARS: [char; 24] = [
    '\0',
    '\u{7f}',
    '\u{202e}',
    '\u{feff}',
    '\u{3000}',
    '"',
    '\'',
    '\\',
    '\n',
    '\r',
    '\t',
    '%',
    '{',
    '}',
    '$',
    '/',
    '.',
    '🙂',
    '张',
    'ß',
    '\u{10ffff}',
    '\u{fffd}',
    ',',
    '\u{1f}',
];

const NASTY: [&str; 10] = [
    "' OR 1=1 --",
    "%s%s%s%n",
    "{}{:?}",
    "${jndi:ldap://x/a}",
    "../../../../etc/passwd",
    "\u{1b}[31mred",
    "NaN",
    "-0",
    "null",
    "reid1.",
];

fn ascii(rng: &mut Rng, n: usize) -> String {
    const A: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.:/ ";
    (0..n).map(|_| *rng.pick(A) as char).collect()
}

fn ascii_in(rng: &mut Rng, lo: u64, hi: u64) -> String {
    let n = rng.range(lo, hi) as usize;
    ascii(rng, n)
}

fn odd_in(rng: &mut Rng, lo: u64, hi: u64) -> String {
    let n = rng.range(lo, hi) as usize;
    odd_text(rng, n)
}

fn odd_text(rng: &mut Rng, n: usize) -> String {
    (0..n)
        .map(|_| {
            if rng.odds(1, 2) {
                *rng.pick(&ODD_CHARS)
            } else {
                char::from_u32(rng.below(0x3_0000) as u32).unwrap_or('?')
            }
        })
        .collect()
}

/// An arbitrary string: empty, plausible, hostile, a planted personal value,
/// long, or (when `big` is allowed) near or past the 4 MiB message limit.
fn text(rng: &mut Rng, ctx: &Ctx, big: bool) -> String {
    match rng.below(16) {
        0 => String::new(),
        1 | 2 => ascii_in(rng, 1, 24),
        3 => rng.pick(&ctx.purposes).clone(),
        4 => odd_in(rng, 1, 64),
        5 => rng.pick(&ctx.plants).clone(),
        6 => format!("{} {}", ascii(rng, 4), rng.pick(&ctx.plants)),
        7 => rng.pick(&NASTY).to_string(),
        8 => (0..rng.range(1, 40))
            .map(|_| (b'0' + rng.below(10) as u8) as char)
            .collect(),
        9 => ascii_in(rng, 1024, 65536),
        10 => odd_in(rng, 256, 8192),
        11 if big && ctx.on("huge_text") => {
            // Just under or just past the limit, with the rest of the message around it.
            let n = if rng.odds(1, 2) {
                request_limit() - rng.range(64, 4096) as usize
            } else {
                request_limit() + rng.below(4096) as usize
            };
            "x".repeat(n)
        }
        _ => format!("{}{}", rng.pick(&ctx.purposes), odd_text(rng, 2)),
    }
}

/// A purpose: mostly one of the caller's own (one that grants `op`, more
/// often than not), otherwise anything.
fn purpose(rng: &mut Rng, ctx: &Ctx, identity: &str, op: Operation, big: bool) -> String {
    let Some(policy) = identity
        .strip_prefix("union/")
        .and_then(|c| ctx.policies.get(c))
    else {
        return text(rng, ctx, big);
    };
    let granting: Vec<&String> = policy
        .purposes
        .iter()
        .filter(|p| policy.grants(p, op))
        .collect();
    match rng.below(10) {
        0..=4 if !granting.is_empty() => (*rng.pick(&granting)).clone(),
        0..=6 => rng.pick(&policy.purposes).clone(),
        _ => text(rng, ctx, big),
    }
}

fn case_number(rng: &mut Rng, ctx: &Ctx, big: bool) -> String {
    match rng.below(6) {
        0..=2 => format!("KN-2026-{:04}", rng.below(10_000)),
        // Right form, longest allowed and one past it.
        3 => "A".repeat(if rng.odds(1, 2) { 64 } else { 65 }),
        // A personal value in a case number that is not of the form, and
        // in one that is.
        4 => format!("case of {}", rng.pick(&ctx.plants)),
        5 if rng.odds(1, 2) => format!("KN-{}", rng.pick(&ctx.plants)),
        _ => text(rng, ctx, big),
    }
}

fn identity_number(rng: &mut Rng, ctx: &Ctx, big: bool) -> String {
    match rng.below(8) {
        0..=2 => rng.pick(&ctx.known_ids).clone(),
        3 => valid_identity_number("340202", "19850315", rng.below(1000) as u32),
        4 => {
            // A valid number with one character changed.
            let mut id: Vec<char> = rng.pick(&ctx.known_ids).chars().collect();
            let i = rng.below(id.len() as u64) as usize;
            id[i] = *rng.pick(&['0', '9', 'X', 'x', ' ', '张']);
            id.into_iter().collect()
        }
        5 => format!(" {}\u{3000}", rng.pick(&ctx.known_ids)),
        _ => text(rng, ctx, big),
    }
}

fn token(rng: &mut Rng, ctx: &Ctx, big: bool) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let issued = || {
        ctx.tokens
            .first()
            .cloned()
            .unwrap_or_else(|| "reid1.".into())
    };
    match rng.below(9) {
        0 | 1 => rng.pick(&ctx.tokens).clone(),
        2 => {
            let t = rng.pick(&ctx.tokens).clone();
            let cut = rng.below(t.len() as u64) as usize;
            t[..cut].to_string()
        }
        3 => {
            // One character of an issued token changed.
            let mut t: Vec<u8> = rng.pick(&ctx.tokens).clone().into_bytes();
            let i = rng.range(6, t.len() as u64 - 1) as usize;
            t[i] = *rng.pick(b"AZaz09-_=+/.");
            String::from_utf8_lossy(&t).into_owned()
        }
        4 => {
            let n = rng.below(200) as usize;
            format!("reid1.{}", b64.encode(rng.bytes(n)))
        }
        5 => format!("{}{}", issued(), ascii(rng, 3)),
        6 => format!("reid1.{}", ascii_in(rng, 0, 299)),
        7 => format!("REID1.{}", &issued()[6..]),
        _ => text(rng, ctx, big),
    }
}

fn justification(rng: &mut Rng, ctx: &Ctx, big: bool) -> String {
    match rng.below(6) {
        0 | 1 => "Screening flagged suspended contributions; contact to offer assistance.".into(),
        2 => format!(
            "Applicant {} asked us to call back about the case.",
            rng.pick(&ctx.plants)
        ),
        3 => "x".repeat(rng.range(995, 1005) as usize),
        _ => text(rng, ctx, big),
    }
}

fn varint_len(v: u64) -> usize {
    prost::encoding::encoded_len_varint(v)
}

/// A push batch, encoded by hand so that any row count and size fits in
/// memory on this side too (a message of millions of empty rows is a
/// repeated two-byte pattern here, not millions of vectors).
struct Batch {
    id: String,
    format: i32,
    header: Vec<u8>,
    rows: Vec<Vec<u8>>,
    /// Repeated rows appended after `rows`: (row, copies).
    repeated: Option<(Vec<u8>, usize)>,
    first_row: u64,
}

impl Batch {
    fn row_count(&self) -> usize {
        self.rows.len() + self.repeated.as_ref().map_or(0, |r| r.1)
    }

    fn encoded_len(&self) -> usize {
        let field = |n: usize| 1 + varint_len(n as u64) + n;
        field(self.id.len())
            + 1
            + varint_len(self.format as i64 as u64)
            + field(self.header.len())
            + self.rows.iter().map(|r| field(r.len())).sum::<usize>()
            + self
                .repeated
                .as_ref()
                .map_or(0, |(r, n)| field(r.len()) * n)
            + 1
            + varint_len(self.first_row)
    }

    fn encode(&self) -> Bytes {
        use prost::encoding::encode_varint;
        let mut b = Vec::with_capacity(self.encoded_len());
        let bytes_field = |b: &mut Vec<u8>, tag: u8, v: &[u8]| {
            b.push(tag);
            encode_varint(v.len() as u64, b);
            b.extend_from_slice(v);
        };
        bytes_field(&mut b, 0x0a, self.id.as_bytes());
        b.push(0x10);
        encode_varint(self.format as i64 as u64, &mut b);
        bytes_field(&mut b, 0x1a, &self.header);
        for r in &self.rows {
            bytes_field(&mut b, 0x22, r);
        }
        if let Some((r, n)) = &self.repeated {
            let mut one = Vec::new();
            bytes_field(&mut one, 0x22, r);
            for _ in 0..*n {
                b.extend_from_slice(&one);
            }
        }
        b.push(0x28);
        encode_varint(self.first_row, &mut b);
        Bytes::from(b)
    }

    fn describe(&self) -> String {
        let rows: usize = self.rows.iter().map(Vec::len).sum();
        format!(
            "batch id {:?} ({} bytes), format {}, header {} bytes, {} rows ({} bytes listed{}), first_row {}, {} bytes encoded",
            self.id.chars().take(40).collect::<String>(),
            self.id.len(),
            self.format,
            self.header.len(),
            self.row_count(),
            rows,
            self.repeated
                .as_ref()
                .map_or(String::new(), |(r, n)| format!(
                    ", then {n} copies of a {}-byte row",
                    r.len()
                )),
            self.first_row,
            self.encoded_len()
        )
    }
}

/// The push message limit (`[limits] max_message_bytes`).
fn push_limit() -> usize {
    LimitsConfig::default().max_message_bytes
}

/// What a batch is held to before its rows are decoded.
fn batch_limits() -> (u64, usize, usize) {
    let l = LimitsConfig::default();
    (
        l.max_rows_per_batch,
        l.max_row_bytes,
        l.max_rejections_listed,
    )
}

/// As the gateway validates batch ids: of the accepted form, and holding no
/// identity or mobile number as a whole run of digits.
fn valid_batch_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'))
        && adapters::rules::find_identifier(id).is_none()
}

fn mutate_bytes(rng: &mut Rng, mut row: Vec<u8>) -> Vec<u8> {
    for _ in 0..rng.range(1, 4) {
        match rng.below(5) {
            0 if !row.is_empty() => {
                let i = rng.below(row.len() as u64) as usize;
                row[i] = rng.next() as u8;
            }
            1 => row.truncate(rng.below(row.len() as u64 + 1) as usize),
            2 => {
                let i = rng.below(row.len() as u64 + 1) as usize;
                let junk = rng.bytes_in(1, 8);
                row.splice(i..i, junk);
            }
            3 => {
                let copy = row.clone();
                row.extend_from_slice(&copy);
            }
            _ => {
                // Invalid UTF-8 and GBK lead bytes without their trail byte.
                let i = rng.below(row.len() as u64 + 1) as usize;
                row.splice(i..i, [0xff, 0x81, 0xc0]);
            }
        }
    }
    row
}

fn json_value(rng: &mut Rng, ctx: &Ctx) -> serde_json::Value {
    use serde_json::json;
    match rng.below(10) {
        0 => json!(null),
        1 => json!(rng.next() as i64),
        2 => json!(-1),
        3 => json!(1e308),
        4 => json!(true),
        5 => json!([1, "2", null]),
        6 => json!({"a": {"b": []}}),
        7 => json!(rng.pick(&ctx.plants)),
        8 => json!(odd_in(rng, 0, 300)),
        _ => json!(ascii_in(rng, 0, 30)),
    }
}

/// A sample row of the agency, changed a little (or, for hrss, a synthetic
/// row of a person the samples do not hold, so that the sample's own records
/// are not superseded before the final check).
fn plausible_row(rng: &mut Rng, ctx: &Ctx, agency: &str) -> Vec<u8> {
    let base = if agency == "hrss" {
        let ts = format!("2025{:02}{:02}120000", rng.range(1, 12), rng.range(1, 28));
        gateway_tests::synthetic_hrss_row(
            7_000_000 + rng.below(100_000),
            *rng.pick(&['1', '2', '3', '9']),
            &ts,
        )
    } else {
        rng.pick(&ctx.samples[agency].rows).clone()
    };
    if rng.odds(1, 4) {
        return base;
    }
    if ctx.samples[agency].format == proto::NativeFormat::JsonLines as i32
        && rng.odds(2, 3)
        && let Ok(serde_json::Value::Object(mut o)) = serde_json::from_slice(&base)
    {
        let keys: Vec<String> = o.keys().cloned().collect();
        match rng.below(4) {
            0 => {
                o.remove(rng.pick(&keys));
            }
            1 => {
                o.insert(ascii(rng, 6), json_value(rng, ctx));
            }
            _ => {
                let k = rng.pick(&keys).clone();
                o.insert(k, json_value(rng, ctx));
            }
        }
        return serde_json::to_vec(&o).unwrap();
    }
    if rng.odds(1, 2) {
        // One CSV column replaced.
        let mut cols: Vec<Vec<u8>> = base.split(|b| *b == b',').map(<[u8]>::to_vec).collect();
        let i = rng.below(cols.len() as u64) as usize;
        cols[i] = match rng.below(4) {
            0 => Vec::new(),
            1 => rng.pick(&ctx.plants).as_bytes().to_vec(),
            2 => encoding_rs::GBK.encode(&odd_text(rng, 8)).0.into_owned(),
            _ => rng.bytes_in(0, 19),
        };
        return cols.join(&b","[..]);
    }
    mutate_bytes(rng, base)
}

fn header(rng: &mut Rng, ctx: &Ctx, agency: &str, big: bool) -> Vec<u8> {
    let real = ctx
        .samples
        .get(agency)
        .map(|s| s.header.clone())
        .unwrap_or_default();
    match rng.below(10) {
        0..=4 => real,
        5 => {
            let mut cols: Vec<&[u8]> = real.split(|b| *b == b',').collect();
            let i = rng.below(cols.len() as u64) as usize;
            let j = rng.below(cols.len() as u64) as usize;
            cols.swap(i, j);
            if rng.odds(1, 2) {
                let dup = cols[i];
                cols.push(dup);
            }
            cols.join(&b","[..])
        }
        6 => format!(
            "{},{}",
            String::from_utf8_lossy(&real),
            rng.pick(&ctx.plants)
        )
        .into_bytes(),
        7 => Vec::new(),
        8 if big => rng.bytes_in(64 * 1024, 2 * 1024 * 1024),
        _ => mutate_bytes(rng, real),
    }
}

fn batch_id(rng: &mut Rng, ctx: &Ctx, seq: u64, earlier: &[String], big: bool) -> String {
    match rng.below(20) {
        0..=11 => format!("f{seq:x}-{:x}", rng.next()),
        12 if !earlier.is_empty() => rng.pick(earlier).clone(),
        13 => {
            const OK: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-";
            let n = *rng.pick(&[1u64, 127, 128]) as usize;
            (0..n).map(|_| *rng.pick(OK) as char).collect()
        }
        14 => "b".repeat(129),
        15 => String::new(),
        // Invalid ids holding a personal value: refused before anything is
        // logged or audited, so the value must not appear anywhere.
        16 if ctx.on("bad_batch_id_text") => {
            format!("{} {}", rng.pick(&ctx.plants), rng.below(100))
        }
        // Ids of the accepted form holding a personal value: an identifier
        // is refused and never repeated either.
        17 if ctx.on("bad_batch_id_text") => {
            let plant = rng.pick(&ctx.plants);
            match rng.below(3) {
                0 => plant.clone(),
                1 => format!("b-{plant}"),
                _ => format!("{plant}.{seq:x}"),
            }
        }
        18 => odd_in(rng, 1, 200),
        19 if big => "c".repeat(rng.range(BIG as u64, 4 * BIG as u64) as usize),
        _ => format!("f{seq:x}-{:x}", rng.next()),
    }
}

fn format_code(rng: &mut Rng, ctx: &Ctx, agency: &str) -> i32 {
    let own = ctx
        .samples
        .get(agency)
        .map_or(proto::NativeFormat::JsonLines as i32, |s| s.format);
    match rng.below(10) {
        0..=6 => own,
        7 => rng.range(0, 3) as i32,
        _ => *rng.pick(&[4, 99, -1, i32::MIN, i32::MAX]),
    }
}

fn batch(rng: &mut Rng, ctx: &Ctx, agency: &str, seq: u64, earlier: &[String], big: bool) -> Batch {
    let mut b = Batch {
        id: batch_id(rng, ctx, seq, earlier, big),
        format: format_code(rng, ctx, agency),
        header: header(rng, ctx, agency, big),
        rows: Vec::new(),
        repeated: None,
        first_row: {
            let any = rng.next();
            *rng.pick(&[0, 0, 1, 1, 7, u64::MAX, u64::MAX - 3, any])
        },
    };
    let sample_agency = if ctx.samples.contains_key(agency) {
        agency
    } else {
        "housing"
    };
    match rng.below(12) {
        0..=4 => {
            let n = rng.range(0, 300);
            b.rows = (0..n)
                .map(|_| plausible_row(rng, ctx, sample_agency))
                .collect();
        }
        5 | 6 => {
            let n = rng.range(0, 500);
            b.rows = (0..n).map(|_| rng.bytes_in(0, 512)).collect();
        }
        7 => b.rows = vec![Vec::new(); rng.range(1, 100) as usize],
        // Many rows: the most a batch may hold, one more, and on up to the
        // message limit.
        8 | 9 if big && ctx.on("many_rows") => {
            let row = match rng.below(3) {
                0 => Vec::new(),
                1 => vec![b'x'],
                _ => plausible_row(rng, ctx, sample_agency),
            };
            let per = 1 + varint_len(row.len() as u64) + row.len();
            let to_limit = (push_limit() - 4096) / per;
            let max_rows = batch_limits().0 as usize;
            let n = *rng.pick(&[
                max_rows,
                max_rows + 1,
                65_536,
                1_000_000,
                to_limit,
                to_limit + 4096 / per + 1,
            ]);
            b.repeated = Some((row, n.min(to_limit + 4096 / per + 1)));
        }
        // Huge rows: past any sensible per-row limit, and one just under or
        // just past the message limit.
        10 | 11 if big && ctx.on("huge_rows") => {
            if rng.odds(1, 2) {
                b.rows = (0..rng.range(1, 3))
                    .map(|_| vec![b'a'; rng.range(64 * 1024 + 1, 4 * BIG as u64) as usize])
                    .collect();
            } else {
                let fixed = b.encoded_len();
                let target = if rng.odds(1, 2) {
                    push_limit() - rng.below(64) as usize
                } else {
                    push_limit() + 1 + rng.below(64) as usize
                };
                let n = target - fixed - 1 - 4;
                b.rows = vec![vec![b'z'; n]];
            }
        }
        _ => {
            b.rows = (0..rng.range(1, 20))
                .map(|_| plausible_row(rng, ctx, sample_agency))
                .collect();
        }
    }
    b
}

// ---------------------------------------------------------------------------
// The calls.
// ---------------------------------------------------------------------------

const PUSH: &str = "/exchange.v1.AgencyIngest/Push";
const PULL: &str = "/exchange.v1.UnionExchange/Pull";
const LOOKUP: &str = "/exchange.v1.UnionExchange/Lookup";
const REIDENTIFY: &str = "/exchange.v1.UnionExchange/Reidentify";

fn own_deadline(rng: &mut Rng) -> Option<Duration> {
    rng.odds(1, 30)
        .then(|| Duration::from_millis(rng.range(1, 50)))
}

async fn push(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64, big: bool) {
    let agency = identity.strip_prefix("agency/").unwrap_or("housing");
    let expect = if role_of(identity) == Role::Agency {
        Expect::Defined
    } else {
        Expect::WrongRole
    };
    let count = if big {
        rng.range(1, 2)
    } else if rng.odds(1, 8) {
        rng.range(16, 64)
    } else {
        rng.range(1, 8)
    };
    let mut batches = Vec::new();
    let mut ids = Vec::new();
    for i in 0..count {
        let b = batch(rng, ctx, agency, seed ^ i, &ids, big);
        ids.push(b.id.clone());
        batches.push(b);
    }
    let bodies: Vec<Bytes> = batches.iter().map(Batch::encode).collect();
    // A message over the limit ends the stream; the batches before it are answered.
    let too_large = batches.iter().position(|b| b.encoded_len() > push_limit());
    let expect = if expect == Expect::Defined && too_large.is_some() {
        Expect::TooLarge
    } else {
        expect
    };
    let pause = rng
        .odds(1, 10)
        .then(|| Duration::from_millis(rng.range(1, 200)));
    // Sometimes the agency hangs up after the first receipts.
    let hang_up_after = rng.odds(1, 12).then(|| rng.below(count) as usize);
    let deadline = own_deadline(rng);
    let call = Call {
        rpc: match expect {
            Expect::WrongRole => "Push (wrong role)",
            Expect::TooLarge => "Push (too large)",
            _ => "Push",
        },
        identity: identity.into(),
        expect,
        own_deadline: deadline.is_some(),
        seed,
        what: format!(
            "{count} batches{}; first: {}",
            pause.map_or(String::new(), |p| format!(", {p:?} apart")),
            batches[0].describe()
        ),
    };
    {
        let mut stats = ctx.stats.lock().unwrap();
        stats.batches += count;
        stats.rows += batches.iter().map(|b| b.row_count() as u64).sum::<u64>();
        stats.bytes += bodies.iter().map(|b| b.len() as u64).sum::<u64>();
        stats.largest = stats
            .largest
            .max(bodies.iter().map(Bytes::len).max().unwrap_or(0));
    }
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let sender = tokio::spawn(async move {
        for body in bodies {
            if let Some(p) = pause {
                tokio::time::sleep(p).await;
            }
            if tx.send(body).await.is_err() {
                return;
            }
        }
    });
    let channel = ctx.channel(identity).clone();
    let outcome = ctx
        .bounded(&call, async {
            let mut receipts = Vec::new();
            let mut stream = match streaming::<proto::BatchReceipt>(
                &channel,
                PUSH,
                tokio_stream::wrappers::ReceiverStream::new(rx),
                deadline,
            )
            .await
            {
                Ok(s) => s,
                Err(status) => return Ok((receipts, Err(status), false)),
            };
            loop {
                match stream.message().await {
                    Ok(Some(r)) => {
                        receipts.push(r);
                        if Some(receipts.len()) == hang_up_after {
                            return Ok((receipts, Ok(()), true));
                        }
                    }
                    Ok(None) => return Ok((receipts, Ok(()), false)),
                    Err(status) => return Ok((receipts, Err(status), false)),
                }
            }
        })
        .await;
    sender.abort();
    let Some(Ok((receipts, result, hung_up))) = outcome else {
        return;
    };
    if result.is_ok() && !hung_up && receipts.len() != batches.len() {
        ctx.fail(
            &call,
            format!(
                "{} receipts for {} batches on a stream that ended OK",
                receipts.len(),
                batches.len()
            ),
        );
    }
    let answerable = too_large.unwrap_or(batches.len());
    if receipts.len() > answerable {
        ctx.fail(
            &call,
            format!(
                "{} receipts for {} batches (message {too_large:?} over the limit)",
                receipts.len(),
                batches.len()
            ),
        );
    }
    for (r, b) in receipts.iter().zip(&batches) {
        check_receipt(ctx, &call, r, b);
        let outcome = proto::BatchOutcome::try_from(r.outcome)
            .map(|o| {
                o.as_str_name()
                    .trim_start_matches("BATCH_OUTCOME_")
                    .to_ascii_lowercase()
            })
            .unwrap_or_else(|_| r.outcome.to_string());
        match &r.batch_error {
            Some(e) => ctx.count("(receipts)", &format!("{outcome}: {}", e.code)),
            None => ctx.count("(receipts)", &outcome),
        }
    }
    if hung_up {
        ctx.count(call.rpc, "hung up by the caller");
    } else {
        ctx.done(&call, result);
    }
}

/// One receipt per batch, in order, naming its batch (a valid id; an
/// invalid one is never echoed), with a defined outcome, consistent counts,
/// a batch over a size limit rejected whole before its rows are read, at
/// most the configured number of rejections listed, and no personal value
/// in what it says.
fn check_receipt(ctx: &Ctx, call: &Call, r: &proto::BatchReceipt, b: &Batch) {
    let n = b.row_count() as u64;
    let (max_rows, max_row_bytes, max_listed) = batch_limits();
    let over_size = n > max_rows
        || b.header.len() > max_row_bytes
        || b.rows.iter().any(|r| r.len() > max_row_bytes)
        || b.repeated
            .as_ref()
            .is_some_and(|(r, _)| r.len() > max_row_bytes);
    let mut problems = Vec::new();
    let shown = if valid_batch_id(&b.id) {
        b.id.as_str()
    } else {
        ""
    };
    if r.batch_id != shown {
        problems.push(format!(
            "names batch id {:?}",
            r.batch_id.chars().take(40).collect::<String>()
        ));
    }
    if r.rows_received != n {
        problems.push(format!("{} rows received of {n}", r.rows_received));
    }
    if r.rejections.len() > max_listed {
        problems.push(format!(
            "{} rejections listed (limit {max_listed})",
            r.rejections.len()
        ));
    }
    let outcome = proto::BatchOutcome::try_from(r.outcome);
    if over_size {
        let code = r.batch_error.as_ref().map_or("", |e| e.code.as_str());
        if outcome != Ok(proto::BatchOutcome::Rejected)
            || !matches!(code, "too_many_rows" | "row_too_large" | "header_too_large")
        {
            problems.push(format!(
                "a batch over a size limit answered {:?} ({code})",
                outcome
            ));
        }
    }
    match outcome {
        Ok(proto::BatchOutcome::Committed) | Ok(proto::BatchOutcome::Duplicate) => {
            if r.batch_error.is_some() {
                problems.push("a batch error on an accepted batch".into());
            }
            if r.accepted > n || r.superseded > r.accepted {
                problems.push(format!(
                    "counts: accepted {}, superseded {} of {n} rows",
                    r.accepted, r.superseded
                ));
            }
            if r.rejections
                .iter()
                .any(|x| x.row == 0 || u64::from(x.row) > n)
            {
                problems.push("a rejection names a row the batch does not have".into());
            }
        }
        Ok(proto::BatchOutcome::Rejected) => {
            let e = r.batch_error.clone().unwrap_or_default();
            if e.code.is_empty() || r.accepted != 0 {
                problems.push(format!("a rejection without a code ({e:?})"));
            }
            // The message names a column by position, or by the caller's
            // header text only when that is of a safe form (ASCII letters,
            // digits, `_`): never a planted value.
            let message = e.message.clone();
            ctx.no_plant(call, "batch error", message.as_bytes());
            ctx.no_plant(call, "batch error code", e.code.as_bytes());
        }
        _ => problems.push(format!("undefined outcome {}", r.outcome)),
    }
    for x in r.rejections.iter().take(50) {
        ctx.no_plant(call, "row rejection", x.message.as_bytes());
        ctx.no_plant(call, "row rejection field", x.field.as_bytes());
        ctx.no_plant(call, "row rejection code", x.code.as_bytes());
    }
    if !problems.is_empty() {
        ctx.fail(
            call,
            format!("receipt of `{:.40}`: {}", b.id, problems.join("; ")),
        );
    }
}

async fn pull_call(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64, big: bool) {
    let kinds: Vec<String> = match rng.below(6) {
        0 | 1 => Vec::new(),
        2 | 3 => (0..rng.range(1, 3))
            .map(|_| rng.pick(&adapters::RecordKind::ALL).id().to_string())
            .collect(),
        4 => (0..rng.range(1, 4))
            .map(|_| text(rng, ctx, false))
            .collect(),
        _ => vec![
            rng.pick(&adapters::RecordKind::ALL).id().to_string();
            rng.range(100, 20_000) as usize
        ],
    };
    let (any_cursor, near_cursor, any_limit) = (rng.next(), rng.below(5000), rng.below(10_000));
    let req = proto::PullRequest {
        kinds,
        purpose: purpose(rng, ctx, identity, Operation::Pull, big),
        cursor: *rng.pick(&[0, 0, 1, near_cursor, u64::MAX, u64::MAX - 1, any_cursor]),
        limit: *rng.pick(&[0, 0, 1, 5, any_limit as u32, u32::MAX]),
        follow: rng.odds(1, 4),
    };
    let deadline = own_deadline(rng);
    let expect = ctx.union_expect(identity, &req.purpose, Operation::Pull, req.encoded_len());
    let call = Call {
        rpc: match expect {
            Expect::WrongRole => "Pull (wrong role)",
            Expect::NotGranted => "Pull (not granted)",
            Expect::TooLarge => "Pull (too large)",
            _ => "Pull",
        },
        identity: identity.into(),
        expect,
        own_deadline: deadline.is_some(),
        seed,
        what: format!(
            "{} kinds ({:?}…), purpose {:?} ({} bytes), cursor {}, limit {}, follow {}",
            req.kinds.len(),
            req.kinds
                .first()
                .map(|k| k.chars().take(30).collect::<String>()),
            req.purpose.chars().take(40).collect::<String>(),
            req.purpose.len(),
            req.cursor,
            req.limit,
            req.follow
        ),
    };
    let max_events = *rng.pick(&[0u64, 1, 10, 300, 5000]);
    let window = Duration::from_millis(rng.range(0, 600));
    let body = Bytes::from(req.encode_to_vec());
    let channel = ctx.channel(identity).clone();
    let start_cursor = req.cursor;
    let follow = req.follow;
    let outcome = ctx
        .bounded(&call, async {
            let mut g = grpc(&channel).await?;
            let mut stream = g
                .server_streaming(
                    request(body, deadline),
                    path_of(PULL)?,
                    RawCodec::<proto::PullEvent>::default(),
                )
                .await?
                .into_inner();
            let until = tokio::time::Instant::now() + window;
            let mut last = start_cursor;
            let mut n = 0u64;
            loop {
                if n >= max_events && max_events > 0 {
                    return Ok(None);
                }
                let next = if follow {
                    match tokio::time::timeout_at(until, stream.message()).await {
                        Ok(next) => next?,
                        Err(_) => return Ok(None),
                    }
                } else {
                    stream.message().await?
                };
                let Some(event) = next else {
                    return Ok(None);
                };
                if event.cursor <= last {
                    return Ok(Some(format!(
                        "event cursor {} after {last}: not after the cursor asked for",
                        event.cursor
                    )));
                }
                last = event.cursor;
                n += 1;
            }
        })
        .await;
    match outcome {
        None => {}
        Some(Ok(problem)) => {
            if let Some(p) = problem {
                ctx.fail(&call, p);
            }
            ctx.done(&call, Ok(()));
        }
        Some(Err(status)) => ctx.done(&call, Err(status)),
    }
}

async fn lookup_call(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64, big: bool) {
    let req = proto::LookupRequest {
        id_number: identity_number(rng, ctx, big),
        case_number: case_number(rng, ctx, big),
        purpose: purpose(rng, ctx, identity, Operation::Lookup, big),
    };
    let deadline = own_deadline(rng);
    let expect = ctx.union_expect(identity, &req.purpose, Operation::Lookup, req.encoded_len());
    let call = Call {
        rpc: match expect {
            Expect::WrongRole => "Lookup (wrong role)",
            Expect::NotGranted => "Lookup (not granted)",
            Expect::TooLarge => "Lookup (too large)",
            _ => "Lookup",
        },
        identity: identity.into(),
        expect,
        own_deadline: deadline.is_some(),
        seed,
        what: format!(
            "id_number {:?} ({} bytes), case {:?} ({} bytes), purpose {:?} ({} bytes)",
            req.id_number.chars().take(30).collect::<String>(),
            req.id_number.len(),
            req.case_number.chars().take(30).collect::<String>(),
            req.case_number.len(),
            req.purpose.chars().take(30).collect::<String>(),
            req.purpose.len()
        ),
    };
    let channel = ctx.channel(identity).clone();
    let body = Bytes::from(req.encode_to_vec());
    if let Some(r) = ctx
        .bounded(
            &call,
            unary::<proto::LookupResponse>(&channel, LOOKUP, body, deadline),
        )
        .await
    {
        ctx.done(&call, r.map(drop));
    }
}

async fn reidentify_call(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64, big: bool) {
    let req = proto::ReidentifyRequest {
        token: token(rng, ctx, big),
        case_number: case_number(rng, ctx, big),
        purpose: purpose(rng, ctx, identity, Operation::Reidentify, big),
        justification: justification(rng, ctx, big),
    };
    let deadline = own_deadline(rng);
    let expect = ctx.union_expect(
        identity,
        &req.purpose,
        Operation::Reidentify,
        req.encoded_len(),
    );
    let issued = ctx.tokens.contains(&req.token.trim().to_string());
    let call = Call {
        rpc: match expect {
            Expect::WrongRole => "Reidentify (wrong role)",
            Expect::NotGranted => "Reidentify (not granted)",
            Expect::TooLarge => "Reidentify (too large)",
            _ => "Reidentify",
        },
        identity: identity.into(),
        expect,
        own_deadline: deadline.is_some(),
        seed,
        what: format!(
            "token {:?} ({} bytes, issued: {issued}), case {:?}, purpose {:?}, justification {} chars",
            req.token.chars().take(40).collect::<String>(),
            req.token.len(),
            req.case_number.chars().take(30).collect::<String>(),
            req.purpose.chars().take(30).collect::<String>(),
            req.justification.chars().count()
        ),
    };
    let channel = ctx.channel(identity).clone();
    let body = Bytes::from(req.encode_to_vec());
    let Some(result) = ctx
        .bounded(
            &call,
            unary::<proto::ReidentifyResponse>(&channel, REIDENTIFY, body, deadline),
        )
        .await
    else {
        return;
    };
    if result.is_ok() && !issued {
        ctx.fail(&call, "a token the gateway never issued was opened".into());
    }
    if let Err(s) = &result
        && s.code() == Code::ResourceExhausted
        && s.message().contains("re-identifications in the last hour")
    {
        // The hourly quota is spent: let the hour pass (the store keeps the
        // sliding window), so that later calls reach the token checks again.
        reset_reidentification_quota(&ctx.data_dir, ctx.store_url.as_deref());
        ctx.quota_resets.fetch_add(1, Ordering::Relaxed);
    }
    ctx.done(&call, result.map(drop));
}

fn reset_reidentification_quota(data_dir: &std::path::Path, store_url: Option<&str>) {
    if let Some(url) = store_url {
        gateway::store::postgres::testing::query_text(url, "DELETE FROM reidentifications");
        return;
    }
    let db = rusqlite::Connection::open(data_dir.join("gateway.db")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    db.execute("DELETE FROM reidentifications", []).unwrap();
}

async fn audit_call(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64, big: bool) {
    let expect = if role_of(identity) == Role::Auditor {
        Expect::Defined
    } else {
        Expect::WrongRole
    };
    let (near_seq, near_size, any_time) = (rng.below(100_000), rng.below(100_000), rng.next());
    let seq = *rng.pick(&[0, 1, 2, near_seq, u64::MAX, i64::MAX as u64 + 1]);
    let size = *rng.pick(&[0, 1, near_size, u64::MAX]);
    let (rpc, path, body, streamed): (&'static str, &str, Vec<u8>, bool) = match rng.below(12) {
        0..=4 => {
            let q = proto::AuditQuery {
                from_unix: *rng.pick(&[0, -1, i64::MIN, i64::MAX, any_time as i64]),
                to_unix: *rng.pick(&[0, 0, -1, i64::MIN, i64::MAX, (any_time >> 1) as i64]),
                actor: if rng.odds(1, 2) {
                    String::new()
                } else {
                    text(rng, ctx, big)
                },
                action: if rng.odds(1, 2) {
                    String::new()
                } else {
                    rng.pick(&["denied", "batch_pushed", "person_looked_up"])
                        .to_string()
                },
                outcome: if rng.odds(1, 2) {
                    String::new()
                } else {
                    text(rng, ctx, false)
                },
                after_seq: *rng.pick(&[0, seq]),
                page_size: *rng.pick(&[0, 1, 1000, 1001, u32::MAX]),
                kind: if rng.odds(2, 3) {
                    String::new()
                } else {
                    text(rng, ctx, false)
                },
                subject: match rng.below(6) {
                    0 => hex::encode(rng.bytes(16)),
                    1 => text(rng, ctx, false),
                    _ => String::new(),
                },
                subject_id_number: if rng.odds(1, 3) {
                    identity_number(rng, ctx, false)
                } else {
                    String::new()
                },
            };
            (
                "Audit.Query",
                "/exchange.v1.Audit/Query",
                q.encode_to_vec(),
                false,
            )
        }
        5 => (
            "Audit.SubjectReport",
            "/exchange.v1.Audit/SubjectReport",
            proto::SubjectReportRequest {
                id_number: identity_number(rng, ctx, big),
            }
            .encode_to_vec(),
            false,
        ),
        6 => (
            "Audit.GetCheckpoint",
            "/exchange.v1.Audit/GetCheckpoint",
            Vec::new(),
            false,
        ),
        7 => (
            "Audit.ProveInclusion",
            "/exchange.v1.Audit/ProveInclusion",
            proto::InclusionRequest {
                seq,
                tree_size: size,
            }
            .encode_to_vec(),
            false,
        ),
        8 => (
            "Audit.ProveConsistency",
            "/exchange.v1.Audit/ProveConsistency",
            proto::ConsistencyRequest {
                from_size: seq,
                to_size: size,
            }
            .encode_to_vec(),
            false,
        ),
        9 => (
            "Audit.ReadNote",
            "/exchange.v1.Audit/ReadNote",
            proto::ReadNoteRequest { seq }.encode_to_vec(),
            false,
        ),
        10 => (
            "Audit.EraseNote",
            "/exchange.v1.Audit/EraseNote",
            proto::EraseNoteRequest {
                seq,
                reason: if rng.odds(1, 2) {
                    rng.pick(&["retention_expired", "subject_request", "entered_in_error"])
                        .to_string()
                } else {
                    text(rng, ctx, big)
                },
            }
            .encode_to_vec(),
            false,
        ),
        _ => (
            "Audit.Export",
            "/exchange.v1.Audit/Export",
            Vec::new(),
            true,
        ),
    };
    let deadline = own_deadline(rng);
    let expect = if expect == Expect::Defined && body.len() > request_limit() {
        Expect::TooLarge
    } else {
        expect
    };
    let call = Call {
        rpc: match expect {
            Expect::WrongRole => "Audit.* (wrong role)",
            Expect::TooLarge => "Audit.* (too large)",
            _ => rpc,
        },
        identity: identity.into(),
        expect,
        own_deadline: deadline.is_some(),
        seed,
        what: format!("{rpc}, {} bytes, seq {seq}, size {size}", body.len()),
    };
    let channel = ctx.channel(identity).clone();
    let body = Bytes::from(body);
    let chunks = rng.range(0, 3);
    let result = if streamed {
        ctx.bounded(&call, async {
            let mut g = grpc(&channel).await?;
            let mut s = g
                .server_streaming(
                    request(body, deadline),
                    path_of(path)?,
                    RawCodec::<proto::ExportChunk>::default(),
                )
                .await?
                .into_inner();
            for _ in 0..chunks {
                if s.message().await?.is_none() {
                    break;
                }
            }
            Ok(())
        })
        .await
    } else if rpc == "Audit.Query" {
        let (limit, after) = proto::AuditQuery::decode(&body[..])
            .map(|q| {
                let limit = if q.page_size == 0 {
                    100
                } else {
                    q.page_size.min(1000)
                };
                (limit as usize, q.after_seq)
            })
            .unwrap_or((1000, 0));
        match ctx
            .bounded(
                &call,
                unary::<proto::AuditPage>(&channel, path, body, deadline),
            )
            .await
        {
            None => None,
            Some(Ok(page)) => {
                if page.entries.len() > limit {
                    ctx.fail(
                        &call,
                        format!("{} entries on a page of {limit}", page.entries.len()),
                    );
                }
                if let Some(e) = page.entries.iter().find(|e| e.seq <= after) {
                    ctx.fail(
                        &call,
                        format!("entry {} on a page of entries after {after}", e.seq),
                    );
                }
                Some(Ok(()))
            }
            Some(Err(s)) => Some(Err(s)),
        }
    } else {
        ctx.bounded(&call, unary::<()>(&channel, path, body, deadline))
            .await
    };
    if let Some(r) = result {
        ctx.done(&call, r);
    }
}

async fn health_call(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64) {
    let service = match rng.below(4) {
        0 => String::new(),
        1 => "exchange.v1.UnionExchange".into(),
        _ => text(rng, ctx, false),
    };
    let call = Call {
        rpc: "Health.Check",
        identity: identity.into(),
        expect: if role_of(identity) == Role::None {
            Expect::WrongRole
        } else {
            Expect::Defined
        },
        own_deadline: false,
        seed,
        what: format!("service {:?}", service.chars().take(40).collect::<String>()),
    };
    let body = Bytes::from(tonic_health::pb::HealthCheckRequest { service }.encode_to_vec());
    let channel = ctx.channel(identity).clone();
    if let Some(r) = ctx
        .bounded(
            &call,
            unary::<tonic_health::pb::HealthCheckResponse>(
                &channel,
                "/grpc.health.v1.Health/Check",
                body,
                None,
            ),
        )
        .await
    {
        ctx.done(&call, r.map(drop));
    }
}

/// A body that does not decode (or barely does) to a listed method, or any
/// body to a method the allow-list does not name.
async fn raw_call(ctx: &Ctx, rng: &mut Rng, identity: &str, seed: u64) {
    const UNLISTED: [&str; 8] = [
        "/exchange.v1.UnionExchange/Extract",
        "/exchange.v1.Audit/Delete",
        "/exchange.v2.AgencyIngest/Push",
        "/grpc.health.v1.Health/Other",
        "/exchange.v1.AgencyIngest/Push/again",
        "/",
        "//",
        "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    ];
    let listed = gateway::authz::ROUTES;
    let (path, required) = if rng.odds(1, 3) {
        let p = if rng.odds(1, 2) {
            rng.pick(&UNLISTED).to_string()
        } else {
            format!(
                "/{}/{}",
                ascii(rng, 12).replace([' ', '/'], "_"),
                ascii(rng, 6).replace([' ', '/'], "_")
            )
        };
        (p, None)
    } else {
        let (p, required, _) = rng.pick(listed);
        (p.to_string(), Some(*required))
    };
    let mut body = match rng.below(4) {
        0 => rng.bytes_in(0, 4096),
        1 => Vec::new(),
        // A string field holding bytes that are not UTF-8.
        2 => {
            let mut b = vec![0x12, 4];
            b.extend_from_slice(&[0xff, 0xfe, 0x80, 0xc0]);
            b
        }
        _ => {
            // A valid request cut short.
            let mut b = proto::LookupRequest {
                id_number: rng.pick(&ctx.known_ids).clone(),
                case_number: "KN-1".into(),
                purpose: "hardship_application".into(),
            }
            .encode_to_vec();
            b.truncate(rng.below(b.len() as u64) as usize);
            b
        }
    };
    if rng.odds(1, 8) {
        body.extend_from_slice(&rng.bytes(3));
    }
    use gateway::authz::Required;
    let role = role_of(identity);
    let expect = match required {
        None => Expect::WrongRole,
        Some(Required::AnyAuthenticated) if role != Role::None => Expect::Malformed,
        Some(Required::Agency) if role == Role::Agency => Expect::Malformed,
        Some(Required::Union) if role == Role::Union => Expect::Malformed,
        Some(Required::Auditor) if role == Role::Auditor => Expect::Malformed,
        Some(_) => Expect::WrongRole,
    };
    let call = Call {
        rpc: match (expect, required) {
            (_, None) => "unlisted method",
            (Expect::WrongRole, _) => "malformed body (wrong role)",
            (_, Some(Required::Agency)) => "malformed body: AgencyIngest",
            (_, Some(Required::Union)) => "malformed body: UnionExchange",
            (_, Some(Required::Auditor)) => "malformed body: Audit",
            (_, Some(Required::AnyAuthenticated)) => "malformed body: health, reflection",
        },
        identity: identity.into(),
        expect,
        own_deadline: false,
        seed,
        what: format!(
            "{path} with {} bytes: {}",
            body.len(),
            hex::encode(&body[..body.len().min(48)])
        ),
    };
    let channel = ctx.channel(identity).clone();
    let n_messages = *rng.pick(&[1usize, 1, 1, 0, 2]);
    let bodies: Vec<Bytes> = vec![Bytes::from(body); n_messages];
    let result = ctx
        .bounded(&call, async {
            let mut s = streaming::<()>(&channel, &path, tokio_stream::iter(bodies), None).await?;
            // The first answer is due; after it, a stream may stay open by
            // design (`Health/Watch`): the caller hangs up after a pause.
            if s.message().await?.is_some() {
                for _ in 0..2 {
                    match tokio::time::timeout(Duration::from_millis(500), s.message()).await {
                        Ok(next) => {
                            if next?.is_none() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
            }
            Ok(())
        })
        .await;
    if let Some(r) = result {
        ctx.done(&call, r);
    }
}

/// One call, chosen and built from its own seed.
async fn one_call(ctx: &Ctx, seed: u64) {
    let mut rng = Rng::new(seed);
    // Large messages only a few at a time (they cost memory on this side
    // too); a call that may send one waits for its turn, so that its seed
    // alone decides what it sends.
    let permit = if rng.odds(1, 12) {
        Some(ctx.big.acquire().await.expect("never closed"))
    } else {
        None
    };
    let big = permit.is_some();
    let kind = rng.below(100);
    // Mostly the role the method is for; sometimes anyone.
    let anyone = rng.odds(1, 8);
    let pick_role = |rng: &mut Rng, prefix: &str| -> String {
        let of_role: Vec<&String> = ctx
            .identities
            .iter()
            .filter(|i| i.starts_with(prefix))
            .collect();
        if anyone || of_role.is_empty() {
            rng.pick(&ctx.identities).clone()
        } else {
            (*rng.pick(&of_role)).clone()
        }
    };
    match kind {
        0..=29 => {
            let id = pick_role(&mut rng, "agency/");
            push(ctx, &mut rng, &id, seed, big).await
        }
        30..=44 => {
            let id = pick_role(&mut rng, "union/");
            pull_call(ctx, &mut rng, &id, seed, big).await
        }
        45..=59 => {
            let id = pick_role(&mut rng, "union/");
            lookup_call(ctx, &mut rng, &id, seed, big).await
        }
        60..=72 => {
            // The consumer that may re-identify, mostly.
            let id = if rng.odds(3, 4) && !anyone {
                "union/assistance".to_string()
            } else {
                pick_role(&mut rng, "union/")
            };
            reidentify_call(ctx, &mut rng, &id, seed, big).await
        }
        73..=88 => {
            let id = pick_role(&mut rng, "auditor/");
            audit_call(ctx, &mut rng, &id, seed, big).await
        }
        89..=91 => {
            let id = rng.pick(&ctx.identities).clone();
            health_call(ctx, &mut rng, &id, seed).await
        }
        _ if ctx.on("malformed") => {
            let id = rng.pick(&ctx.identities).clone();
            raw_call(ctx, &mut rng, &id, seed).await
        }
        _ => {}
    }
    drop(permit);
}

// ---------------------------------------------------------------------------
// Set-up and final checks.
// ---------------------------------------------------------------------------

fn load_samples() -> BTreeMap<&'static str, SampleRows> {
    let mut out = BTreeMap::new();
    for (agency, file) in AGENCY_SAMPLES {
        let path = sample(file);
        let format = gateway::client::detect_format(&path).unwrap();
        let mut reader =
            gateway::client::RowReader::new(std::fs::File::open(&path).unwrap(), format.is_csv());
        let header = if format.is_csv() {
            reader.next_row().unwrap().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut rows = Vec::new();
        while let Some(r) = reader.next_row().unwrap() {
            rows.push(r);
        }
        out.insert(
            agency,
            SampleRows {
                format: gateway::client::native(format) as i32,
                header,
                rows,
            },
        );
    }
    out
}

/// The personal values the samples hold (identity numbers, valid ones
/// apart, mobile numbers, names, addresses), and made-up ones of the same kinds.
fn personal_values(rng: &mut Rng) -> (Vec<String>, Vec<String>) {
    let mut ids = Vec::new();
    let mut others = Vec::new();
    let id_re = regex::Regex::new(r"\b\d{17}[\dX]\b").unwrap();
    let phone_re = regex::Regex::new(r"\b1[3-9]\d{9}\b").unwrap();
    for (_, file) in AGENCY_SAMPLES {
        let bytes = std::fs::read(sample(file)).unwrap();
        let text = match std::str::from_utf8(&bytes) {
            Ok(t) => t.to_string(),
            Err(_) => encoding_rs::GBK.decode(&bytes).0.into_owned(),
        };
        for m in id_re.find_iter(&text) {
            if adapters::rules::parse_identity_number(m.as_str()).is_ok() {
                ids.push(m.as_str().to_string());
            } else {
                others.push(m.as_str().to_string());
            }
        }
        others.extend(phone_re.find_iter(&text).map(|m| m.as_str().to_string()));
        for line in text.lines() {
            if let Ok(serde_json::Value::Object(o)) = serde_json::from_str(line) {
                // Names and addresses.
                for key in ["SQRXM", "XM", "SSRXM", "FWDZ", "HJDZ_DZMC"] {
                    if let Some(serde_json::Value::String(value)) = o.get(key)
                        && value.chars().count() >= 2
                    {
                        others.push(value.clone());
                    }
                }
            }
        }
    }
    let (_, names) = gateway_tests::hrss_personal_values();
    others.extend(names.into_iter().filter(|n| n.chars().count() >= 2));
    for i in 0..8 {
        ids.push(valid_identity_number(
            "340221",
            &format!(
                "19{:02}0{}1{}",
                50 + rng.below(49),
                1 + i % 9,
                rng.below(10)
            ),
            rng.below(1000) as u32,
        ));
        others.push(format!(
            "1{}{:09}",
            rng.range(3, 9),
            rng.below(1_000_000_000)
        ));
    }
    others.extend(["欧阳娜娜", "司马相如", "诸葛孔明"].map(String::from));
    ids.sort();
    ids.dedup();
    others.sort();
    others.dedup();
    (ids, others)
}

/// A pull as union/assistance of social insurance from `cursor`, each event
/// without what depends on the gateway's keys (pseudonyms, sealed values,
/// cursors), so that two gateways' answers compare.
async fn shaped_social_insurance(server: &TestServer, pki: &TestPki, cursor: u64) -> Vec<String> {
    let channel = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut events = Vec::new();
    pull(
        channel,
        proto::PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            cursor,
            ..Default::default()
        },
        |e| {
            let mut v = event_json(e);
            v["cursor"] = serde_json::Value::Null;
            v["record_id"] = serde_json::Value::Null;
            let forms = v["forms"].clone();
            if let Some(fields) = v["fields"].as_object_mut() {
                for (name, value) in fields.iter_mut() {
                    if matches!(forms[name].as_str(), Some("pseudonymised" | "encrypted")) {
                        *value = serde_json::Value::Null;
                    }
                }
            }
            events.push(v.to_string());
            Ok(())
        },
    )
    .await
    .unwrap();
    events
}

/// Every sample export, pushed as its agency, gives each labelled outcome.
async fn push_samples_as_labelled(server: &TestServer, pki: &TestPki) -> Vec<String> {
    let mut problems = Vec::new();
    for (agency, file) in AGENCY_SAMPLES {
        let channel = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        let summary = match push_file(channel, &sample(file), &PushOptions::default(), |_| {}).await
        {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("{agency}: the sample push failed: {e:#}"));
                continue;
            }
        };
        let labels = labels(agency);
        let accepted = labels.iter().filter(|l| l.accept).count() as u64;
        if summary.rows != labels.len() as u64
            || summary.accepted != accepted
            || !summary.rejected_batches.is_empty()
        {
            problems.push(format!(
                "{agency}: {} rows, {} accepted, batches rejected {:?}; labels: {} rows, {accepted} accepted",
                summary.rows,
                summary.accepted,
                summary.rejected_batches,
                labels.len()
            ));
        }
        for l in labels.iter().filter(|l| !l.accept) {
            let found = summary.rejections.iter().any(|r| {
                r.row == l.row
                    && Some(r.field.as_str()) == l.field.as_deref()
                    && Some(r.code.as_str()) == l.code.as_deref()
            });
            if !found {
                problems.push(format!("{agency} row {}: not rejected as labelled", l.row));
            }
        }
    }
    problems
}

/// The `reid1.` tokens union/assistance receives for the housing sample.
async fn issued_tokens(server: &TestServer, pki: &TestPki) -> Vec<String> {
    let channel = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut tokens = Vec::new();
    pull(
        channel,
        proto::PullRequest {
            kinds: vec!["housing_assistance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |e| {
            let v = event_json(e);
            if let Some(t) = v["fields"]["phone"].as_str() {
                tokens.push(t.to_string());
            }
            Ok(())
        },
    )
    .await
    .unwrap();
    tokens
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn pki() -> TestPki {
    let mut pki = TestPki::new();
    for (agency, _) in AGENCY_SAMPLES {
        pki.issue(&format!("agency/{agency}"));
    }
    for c in CONSUMERS {
        pki.issue(&format!("union/{c}"));
    }
    pki.issue(AUDITOR);
    for odd in ODD {
        pki.issue(odd);
    }
    pki
}

fn limits() -> LimitsConfig {
    // High enough that most calls reach the services; two identities are
    // held tight, so that limit refusals are part of the run too.
    let mut limits = LimitsConfig {
        rate_per_second: 100_000.0,
        burst: 100_000,
        max_concurrent: 64,
        // (The batch rate keeps its default: streams of many batches meet it.)
        ..Default::default()
    };
    for id in TIGHT {
        limits.identities.insert(
            id.into(),
            Limit {
                rate_per_second: 20.0,
                burst: 10,
                max_concurrent: 2,
            },
        );
    }
    limits
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzz_grpc() {
    install_observers();
    let settings = Settings::from_env();
    let mut setup_rng = Rng::new(settings.seed ^ 0x5EED);
    let (known_ids, others) = personal_values(&mut setup_rng);
    let plants: Vec<String> = known_ids.iter().chain(&others).cloned().collect();
    let pattern = plants
        .iter()
        .map(|p| regex::escape(p))
        .collect::<Vec<_>>()
        .join("|");
    *PLANTED.write().unwrap() = Some(Arc::new(regex::bytes::Regex::new(&pattern).unwrap()));

    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start_with_limits(&pki, &state, limits()).await;
    // Tokens to forge from: the housing sample, pulled by the consumer allowed
    // to re-identify.
    let housing = server.connect(&pki.client("agency/housing")).await.unwrap();
    push_file(
        housing,
        &sample("housing.jsonl"),
        &PushOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    let tokens = issued_tokens(&server, &pki).await;
    assert!(!tokens.is_empty(), "the housing sample gives tokens");

    let mut identities: Vec<String> = AGENCY_SAMPLES
        .iter()
        .map(|(a, _)| format!("agency/{a}"))
        .chain(CONSUMERS.iter().map(|c| format!("union/{c}")))
        .chain([AUDITOR.to_string()])
        .chain(ODD.iter().map(|s| s.to_string()))
        .collect();
    identities.sort();
    let mut channels = BTreeMap::new();
    for id in &identities {
        // (Built by hand: `ClientTls::dev` refuses a role that does not exist.)
        let tls = gateway::client::ClientTls {
            ca: pki.path("ca.pem"),
            identity: Some((
                pki.path(&format!("{id}.pem")),
                pki.path(&format!("{id}.key")),
            )),
            server_name: "localhost".into(),
        };
        channels.insert(id.clone(), server.connect(&tls).await.unwrap());
    }
    let policies = server.gateway.policies();
    let mut purposes: Vec<String> = policies
        .consumers()
        .flat_map(|c| policies.get(c).unwrap().purposes.clone())
        .collect();
    purposes
        .extend(["statistic", "HARDSHIP_APPLICATION", "hardship_application "].map(String::from));
    purposes.sort();
    purposes.dedup();

    let ctx = Arc::new(Ctx {
        big: tokio::sync::Semaphore::new(settings.big_at_once),
        stop_at: Instant::now() + Duration::from_secs_f64(settings.secs),
        settings: settings.clone(),
        channels,
        identities,
        policies,
        purposes,
        samples: load_samples(),
        tokens,
        plants,
        known_ids,
        stats: Mutex::default(),
        data_dir: state.data_dir(),
        store_url: state.store_config().url,
        quota_resets: AtomicU64::new(0),
    });

    let panics_before = PANICS.lock().unwrap().len();
    let log_panicked_before = LOG_PANICKED.lock().unwrap().len();
    let leaks_before = LOG_LEAK_COUNT.load(Ordering::Relaxed);
    let recorded_before = LOG_RECORDED_COUNT.load(Ordering::Relaxed);
    let lines_before = LOG_LINES.load(Ordering::Relaxed);
    // The peak since now (the kernel resets VmHWM to the current RSS).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let rss_before = status_kib("VmRSS:");
    let hwm_before = status_kib("VmHWM:");
    // RSS over the run: a leak climbs to the end, caches and the
    // allocator's retained memory level off.
    // With the counting allocator (feature `alloc-stats`), the live Rust
    // heap beside it: what the program holds, against what the allocator
    // keeps from the system.
    let live_before = crate::live_heap_bytes();
    let rss_samples: Arc<Mutex<Vec<(Instant, u64, u64)>>> = Arc::default();
    let sampler = {
        let samples = rss_samples.clone();
        tokio::spawn(async move {
            loop {
                let rss = status_kib("VmRSS:");
                let live = crate::live_heap_bytes().unwrap_or(0) / 1024;
                samples.lock().unwrap().push((Instant::now(), rss, live));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };

    println!(
        "fuzz_grpc: seed {:#x}, {} s, {} tasks, call deadline {} s, memory bound {} MiB{}{}",
        settings.seed,
        settings.secs,
        settings.tasks,
        settings.call_timeout.as_secs(),
        settings.max_growth_mib,
        if settings.skip.is_empty() {
            String::new()
        } else {
            format!(", without {}", settings.skip.join(","))
        },
        settings
            .replay
            .map_or(String::new(), |s| format!(", replaying call {s:#x}"))
    );
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    if let Some(seed) = settings.replay {
        let ctx = ctx.clone();
        workers.spawn(async move { one_call(&ctx, seed).await });
    } else {
        for task in 0..settings.tasks {
            let ctx = ctx.clone();
            workers.spawn(async move {
                let mut rng = Rng::new(ctx.settings.seed ^ (task as u64).wrapping_mul(0x9E37_79B9));
                while Instant::now() < ctx.stop_at {
                    one_call(&ctx, rng.next()).await;
                }
            });
        }
    }
    // Every call has its own deadline, so the workers end soon after the run.
    let all_done = tokio::time::timeout(
        Duration::from_secs_f64(settings.secs) + settings.call_timeout + Duration::from_secs(30),
        async {
            while let Some(r) = workers.join_next().await {
                r.expect("a fuzz task panicked");
            }
        },
    )
    .await;
    let ran = started.elapsed();
    sampler.abort();
    // What is still held once the calls have ended, the server still up.
    let live_after = crate::live_heap_bytes();
    let rss_after = status_kib("VmRSS:");
    let hwm_after = status_kib("VmHWM:");
    let samples = rss_samples.lock().unwrap().clone();
    let peak = samples.iter().map(|s| s.1).fold(hwm_after, u64::max);
    // The highest RSS in each tenth of the run.
    let tenths_of = |value: fn(&(Instant, u64, u64)) -> u64| -> Vec<String> {
        (0..10)
            .filter_map(|i| {
                let lo = ran.mul_f64(f64::from(i) / 10.0);
                let hi = ran.mul_f64(f64::from(i + 1) / 10.0);
                samples
                    .iter()
                    .filter(|(at, ..)| {
                        let t = at.duration_since(started);
                        t >= lo && t < hi
                    })
                    .map(value)
                    .max()
                    .map(|kib| format!("{}", kib / 1024))
            })
            .collect()
    };
    let tenths = tenths_of(|s| s.1);

    let mut failures = Vec::new();
    if all_done.is_err() {
        failures.push("the fuzz tasks did not finish: a call outlived its own deadline".into());
    }
    if !server.is_running() {
        failures.push("the server task has ended".into());
    }

    // The gateway still serves: health, the samples with their labelled
    // outcomes, and a pull that gives what a fresh gateway gives.
    let auditor = server.connect(&pki.client(AUDITOR)).await.unwrap();
    if let Err(e) = tonic_health::pb::health_client::HealthClient::new(auditor.clone())
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
    {
        failures.push(format!("health check after the run: {e}"));
    }
    let head = *server.gateway.feed.borrow();
    failures.extend(push_samples_as_labelled(&server, &pki).await);
    let after_run = shaped_social_insurance(&server, &pki, head).await;
    let fresh_state = ServerState::new();
    let fresh = TestServer::start(&pki, &fresh_state).await;
    let housing = fresh.connect(&pki.client("agency/housing")).await.unwrap();
    push_file(
        housing,
        &sample("housing.jsonl"),
        &PushOptions::default(),
        |_| {},
    )
    .await
    .unwrap();
    let fresh_head = *fresh.gateway.feed.borrow();
    assert!(push_samples_as_labelled(&fresh, &pki).await.is_empty());
    let expected = shaped_social_insurance(&fresh, &pki, fresh_head).await;
    fresh.stop().await;
    if after_run.is_empty() || after_run != expected {
        failures.push(format!(
            "the pull after the run gave {} events, a fresh gateway {}; first difference: {:?}",
            after_run.len(),
            expected.len(),
            after_run.iter().zip(&expected).find(|(a, b)| a != b)
        ));
    }

    // The audit log still verifies, and holds no planted personal value.
    let dir = tempfile::tempdir().unwrap();
    let export = audit_support::export(&server, &pki, dir.path(), "after-fuzz.jsonl").await;
    if let Err(e) = audit_support::verify_file(&export, &state, None) {
        failures.push(format!(
            "the audit log does not verify after the run: {e:?}"
        ));
    }
    let mut audit_client =
        proto::audit_client::AuditClient::new(auditor).max_decoding_message_size(usize::MAX);
    let re = planted().unwrap();
    let (mut entries, mut after, mut audit_leaks) = (0u64, 0u64, Vec::new());
    let mut audit_recorded = 0u64;
    loop {
        let page = audit_client
            .query(proto::AuditQuery {
                after_seq: after,
                page_size: 1000,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        for e in &page.entries {
            entries += 1;
            // The values of fields recorded once of their accepted form
            // that hold no identifier (see RECORDED_FIELDS).
            let details: serde_json::Value =
                serde_json::from_str(&e.details_json).unwrap_or_default();
            let recorded: Vec<&str> = RECORDED_FIELDS
                .iter()
                .filter_map(|f| details[f].as_str())
                .collect();
            let mut by_design = false;
            for text in [e.details_json.as_bytes(), &e.canonical[..]] {
                for m in re.find_iter(text) {
                    let value = String::from_utf8_lossy(m.as_bytes());
                    if !is_identifier(&value) && recorded.iter().any(|r| r.contains(value.as_ref()))
                    {
                        by_design = true;
                    } else if audit_leaks.len() < 10 {
                        audit_leaks.push(format!(
                            "entry {} ({}): `{value}` in {:.300}",
                            e.seq, e.action, e.details_json
                        ));
                    }
                }
            }
            audit_recorded += u64::from(by_design);
        }
        if page.next_after_seq == 0 {
            break;
        }
        after = page.next_after_seq;
    }
    if !server.is_running() {
        failures.push("the server task ended during the final checks".into());
    }
    server.stop().await;

    // The report.
    let stats = ctx.stats.lock().unwrap();
    let calls: u64 = stats
        .calls
        .iter()
        .filter(|(rpc, _)| !rpc.starts_with('('))
        .flat_map(|(_, c)| c.values())
        .sum();
    let mut by_code: BTreeMap<&str, u64> = BTreeMap::new();
    for (_, codes) in stats.calls.iter().filter(|(rpc, _)| !rpc.starts_with('(')) {
        for (code, n) in codes {
            *by_code.entry(code).or_default() += n;
        }
    }
    println!(
        "fuzz_grpc: seed {:#x}: {calls} calls in {:.1} s ({:.0}/s); {} batches, {} rows, {:.1} MiB pushed, largest message {:.1} MiB; re-identification quota reset {} times",
        settings.seed,
        ran.as_secs_f64(),
        calls as f64 / ran.as_secs_f64(),
        stats.batches,
        stats.rows,
        stats.bytes as f64 / 1048576.0,
        stats.largest as f64 / 1048576.0,
        ctx.quota_resets.load(Ordering::Relaxed)
    );
    for (rpc, codes) in &stats.calls {
        let total: u64 = codes.values().sum();
        let detail: Vec<String> = codes.iter().map(|(c, n)| format!("{c} {n}")).collect();
        println!("  {rpc:<40} {total:>7}  {}", detail.join(", "));
    }
    println!(
        "  by code: {}",
        by_code
            .iter()
            .map(|(c, n)| format!("{c} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "  memory: RSS {} MiB before, {} MiB after; peak {} MiB (growth {} MiB, bound {} MiB; VmHWM before the run {} MiB)",
        rss_before / 1024,
        rss_after / 1024,
        peak / 1024,
        peak.saturating_sub(rss_before) / 1024,
        settings.max_growth_mib,
        hwm_before / 1024
    );
    // A leak climbs to the end; caches and allocator free lists level off.
    let half = started + ran / 2;
    let highest = |second: bool| {
        samples
            .iter()
            .filter(|(at, ..)| (*at >= half) == second)
            .map(|s| s.1 / 1024)
            .max()
            .unwrap_or(0)
    };
    println!(
        "  RSS by tenth of the run (MiB, highest): {}; highest in the first half {} MiB, in the second {} MiB",
        tenths.join(" "),
        highest(false),
        highest(true)
    );
    if let (Some(before), Some(after)) = (live_before, live_after) {
        println!(
            "  live heap: {} MiB before, {} MiB after the calls; by tenth of the run (MiB, highest): {}",
            before / 1048576,
            after / 1048576,
            tenths_of(|s| s.2).join(" ")
        );
    }
    println!(
        "  log lines and spans scanned: {}; audit entries scanned: {entries}",
        LOG_LINES.load(Ordering::Relaxed) - lines_before
    );
    println!(
        "  planted numbers that are no identifier recorded as a batch id or case number (accepted forms, not failed): {} in log lines, {audit_recorded} audit entries",
        LOG_RECORDED_COUNT.load(Ordering::Relaxed) - recorded_before
    );

    let growth_mib = peak.saturating_sub(rss_before) / 1024;
    if growth_mib >= settings.max_growth_mib {
        failures.push(format!(
            "peak memory grew by {growth_mib} MiB (bound {} MiB)",
            settings.max_growth_mib
        ));
    }
    let panics = PANICS.lock().unwrap()[panics_before..].to_vec();
    if !panics.is_empty() {
        failures.push(format!("panics: {panics:#?}"));
    }
    let logged = LOG_PANICKED.lock().unwrap()[log_panicked_before..].to_vec();
    if !logged.is_empty() {
        failures.push(format!("log lines say `panicked`: {logged:#?}"));
    }
    let leaks = LOG_LEAK_COUNT.load(Ordering::Relaxed) - leaks_before;
    if leaks > 0 {
        failures.push(format!(
            "{leaks} log lines or span fields hold a personal value: {:#?}",
            LOG_LEAKS.lock().unwrap()
        ));
    }
    if !audit_leaks.is_empty() {
        failures.push(format!(
            "audit entries hold a personal value: {audit_leaks:#?}"
        ));
    }
    if stats.failure_count > 0 {
        failures.push(format!(
            "{} calls failed their checks; the first {}:\n    {}",
            stats.failure_count,
            stats.failures.len(),
            stats.failures.join("\n    ")
        ));
    }
    assert!(
        failures.is_empty(),
        "fuzz_grpc (seed {:#x}, FUZZ_SEED={} to replay):\n  {}",
        settings.seed,
        settings.seed,
        failures.join("\n  ")
    );
}
