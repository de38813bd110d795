//! `UnionExchange`: what the union platform receives, shaped by its policy.
//!
//! `Pull` streams the change feed of the requested kinds from a cursor (resumable:
//! no gap, no duplicate), optionally following new changes; `Lookup` gathers one
//! person's records across all kinds for a named case. Both check the consumer's
//! policy and purpose first (default deny, recorded), decrypt records only in
//! memory, release only what the policy names, and audit each delivery durably
//! before it is sent.

use crate::Gateway;
use crate::audit::repeats::Repeats;
use crate::audit::{
    self, AuditEvent, Denied, PersonLookedUp, PersonReidentified, RecordsDelivered, TextDigest,
};
use crate::authz::{self, RequiredOperation};
use crate::identity::Principal;
use crate::limits::RefusedCall;
use crate::metrics::{CaughtUp, Commit, KindTally, LookedUp, PageDelivered, Refused, Reidentified};
use crate::proto;
use crate::sealing::{decode_record, record_aad};
use crate::status::store_status;
use crate::store::StoredRecord;
use adapters::{Record, RecordKind};
use bytes::Bytes;
use policies::{ConsumerKeys, DeliveredField, Form, Policy, Pseudonymiser};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

/// Records read from the store per page (and per audit entry).
pub const PAGE: usize = 4096;

pub struct ExchangeService {
    pub gateway: Arc<Gateway>,
    /// Policy refusals: the first per caller, call and code in a window is
    /// audited as it happens, the repeats counted into one summary.
    refusals: Arc<Repeats<RefusedCall>>,
    /// Look-ups gathering from the store at once; the others wait their turn
    /// in arrival order (fair, and never more than the read connections).
    gathering: tokio::sync::Semaphore,
    /// Each consumer's keys, derived once (a handful of HMAC and AES key
    /// schedules: ≈ 1.5 % of a look-up's CPU when derived per call).
    consumer_keys: std::sync::Mutex<std::collections::HashMap<String, ConsumerKeys>>,
    /// The auditors' pseudonym domain, likewise.
    auditors: Pseudonymiser,
}

/// Look-ups that read, decrypt and shape at the same time.
const GATHERING_AT_ONCE: usize = 4;

/// Re-identifications a consumer may make per hour (on top of the general limits).
pub const REIDENTIFICATIONS_PER_HOUR: u32 = 20;
/// The sliding window of [`REIDENTIFICATIONS_PER_HOUR`].
const REIDENTIFICATION_WINDOW_MS: i64 = 3_600_000;
/// The shortest written justification accepted for a re-identification.
pub const MIN_JUSTIFICATION_CHARS: usize = 20;

impl ExchangeService {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        ExchangeService {
            auditors: audit::auditor_pseudonyms(&gateway.keys),
            refusals: crate::limits::refused_calls(
                gateway.store.clone(),
                std::time::Duration::from_secs(gateway.limits.refusal_window_secs),
            ),
            gateway,
            gathering: tokio::sync::Semaphore::new(GATHERING_AT_ONCE),
            consumer_keys: Default::default(),
        }
    }

    /// A consumer's keys, dated today. (One entry per consumer with a policy:
    /// only authorised consumers get here.)
    fn keys_for(&self, consumer: &str) -> ConsumerKeys {
        let mut keys = self
            .consumer_keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(consumer.to_string())
            .or_insert_with(|| {
                ConsumerKeys::derive(self.gateway.keys.pseudonym_secret_for(consumer), consumer)
            })
            .clone();
        keys.today = policies::ops::today_beijing();
        keys
    }

    /// Takes one of the consumer's re-identifications of the last hour
    /// (a sliding window kept in the store, so a restart does not reset it);
    /// `Err(seconds to wait)` over the limit.
    async fn take_reidentification(&self, consumer: &str) -> Result<Result<(), u64>, Status> {
        let store = self.gateway.store.clone();
        let consumer = consumer.to_string();
        let taken = tokio::task::spawn_blocking(move || {
            store.take_reidentification(
                &consumer,
                audit::now_ms(),
                REIDENTIFICATION_WINDOW_MS,
                REIDENTIFICATIONS_PER_HOUR,
            )
        })
        .await
        .map_err(|_| Status::internal("re-identification task failed"))?;
        match taken {
            Ok(Ok(())) => Ok(Ok(())),
            Ok(Err(wait_ms)) => Ok(Err((wait_ms as u64).div_ceil(1000).max(1))),
            Err(e) => {
                tracing::error!(error = %e, "re-identification count failed");
                Err(store_status(&e, "the store is unavailable"))
            }
        }
    }
}

fn form(f: Form) -> proto::FieldForm {
    match f {
        Form::Kept => proto::FieldForm::Kept,
        Form::Masked => proto::FieldForm::Masked,
        Form::Pseudonymised => proto::FieldForm::Pseudonymised,
        Form::Generalised => proto::FieldForm::Generalised,
        Form::Constant => proto::FieldForm::Constant,
        Form::Encrypted => proto::FieldForm::Encrypted,
        Form::Scrubbed => proto::FieldForm::Scrubbed,
    }
}

fn delivered_fields(fields: Vec<DeliveredField>) -> Vec<proto::DeliveredField> {
    fields
        .into_iter()
        .map(|f| proto::DeliveredField {
            name: f.name.to_string(),
            value: f.value,
            form: form(f.form) as i32,
        })
        .collect()
}

/// A union request whose purpose is checked against the caller's policy.
trait Purposed {
    fn purpose(&self) -> &str;
}

macro_rules! purposed {
    ($($t:ty),*) => {$(
        impl Purposed for $t {
            fn purpose(&self) -> &str {
                &self.purpose
            }
        }
    )*};
}
purposed!(
    proto::LookupRequest,
    proto::PullRequest,
    proto::ReidentifyRequest
);

/// A request from a consumer whose policy allows its purpose.
struct Authorised<T> {
    req: T,
    consumer: String,
    policies: Arc<policies::PolicySet>,
}

impl<T> Authorised<T> {
    fn policy(&self) -> &Policy {
        self.policies
            .get(&self.consumer)
            .expect("authorised consumer has a policy")
    }
}

impl ExchangeService {
    /// Resolves the caller's policy (from the identity its certificate gave,
    /// never from the request) and checks the request's purpose against it:
    /// the policy must list the purpose, and the purpose must grant the
    /// operation the allow-list ([`crate::authz`]) requires of this call.
    /// Refusals are audited (repeats folded); a purpose outside the policy
    /// is recorded as its length and keyed hash, never its text.
    async fn authorise<T: Purposed>(
        &self,
        request: Request<T>,
        rpc: &'static str,
    ) -> Result<Authorised<T>, Status> {
        let principal = request.extensions().get::<Principal>().cloned();
        let required = request.extensions().get::<RequiredOperation>().copied();
        let req = request.into_inner();
        let Some(Principal::Union(consumer)) = principal else {
            return Err(Status::permission_denied(
                "only union consumers may call this",
            ));
        };
        let set = self.gateway.policies();
        if let Err(refusal) = authz::authorise_purpose(&set, &consumer, req.purpose(), required) {
            let text = (refusal.code == "purpose_not_allowed")
                .then(|| TextDigest::of(&self.gateway.keys, req.purpose()));
            self.deny(
                &format!("union/{consumer}"),
                rpc,
                refusal.code,
                &refusal.message,
                text,
            )
            .await?;
            return Err(Status::permission_denied(refusal.message));
        }
        Ok(Authorised {
            req,
            consumer,
            policies: set,
        })
    }

    /// The case number of a call: of the configured form, and holding no
    /// personal identifier ([`adapters::rules::find_identifier`]), since it
    /// is recorded as sent. That refusal is audited by its code alone.
    async fn case_number<'a>(
        &self,
        actor: &str,
        rpc: &'static str,
        raw: &'a str,
    ) -> Result<&'a str, Status> {
        let case = case_number_of_form(&self.gateway.exchange.case_number_pattern, raw)?;
        if adapters::rules::find_identifier(case).is_some() {
            self.deny(
                actor,
                rpc,
                CASE_NUMBER_HOLDS_IDENTIFIER,
                CASE_NUMBER_HOLDS_IDENTIFIER_MESSAGE,
                None,
            )
            .await?;
            return Err(Status::invalid_argument(
                CASE_NUMBER_HOLDS_IDENTIFIER_MESSAGE,
            ));
        }
        Ok(case)
    }

    /// Records a refusal: the first of a window per caller, call and code as
    /// it happens (durably, before the caller hears of it), the repeats
    /// counted into one summary ([`crate::audit::repeats`]).
    async fn deny(
        &self,
        actor: &str,
        rpc: &str,
        code: &'static str,
        reason: &str,
        refused_text: Option<TextDigest>,
    ) -> Result<(), Status> {
        tracing::warn!(caller = actor, rpc, code, "call denied by policy");
        self.gateway.metrics.record(Refused { rpc, code });
        crate::limits::record_refusal(
            &self.refusals,
            &self.gateway.store,
            actor,
            rpc,
            code,
            reason,
            refused_text,
        )
        .await
    }
}

/// The case a look-up or re-identification is for: required, and of the
/// configured form (`[exchange] case_number_pattern`). It is recorded verbatim
/// in the append-only audit log, so anything else (a name, an address, a
/// sentence) is refused before anything is logged or audited, and the refusal
/// names the form, never the text. A case number of the form that holds a
/// personal identifier is refused by [`ExchangeService::case_number`].
fn case_number_of_form<'a>(
    pattern: &crate::config::CaseNumberPattern,
    raw: &'a str,
) -> Result<&'a str, Status> {
    let case = raw.trim();
    if !pattern.admits(case) {
        return Err(Status::invalid_argument(format!(
            "a case number of the configured form is required (the whole case number must match `{}`)",
            pattern.as_str()
        )));
    }
    Ok(case)
}

/// The refusal of a case number holding an identity or mobile number.
const CASE_NUMBER_HOLDS_IDENTIFIER: &str = "case_number_holds_identifier";
const CASE_NUMBER_HOLDS_IDENTIFIER_MESSAGE: &str = "case_number_holds_identifier: the case number holds a run of digits that is an identity or mobile number; case numbers are recorded as sent, so give the case's own number";

/// Opens a sealed record. A failure here means corruption or a missing key.
fn open_record(gateway: &Gateway, stored: &StoredRecord) -> Result<Record, Status> {
    let plain = gateway
        .keys
        .open(&record_aad(stored.kind, &stored.key_hash), &stored.sealed)
        .map_err(|e| {
            tracing::error!(seq = stored.seq, error = %e, "cannot open a stored record");
            Status::data_loss("a stored record cannot be decrypted")
        })?;
    decode_record(&plain).map_err(|e| {
        tracing::error!(seq = stored.seq, error = %e, "a stored record does not decode");
        Status::data_loss("a stored record cannot be decoded")
    })
}

/// A record shaped for delivery. Its own `policy_version` is left empty: a
/// pull event sets it (each event stands alone), a look-up answer states it
/// once for all its records (it was a fifth of an answer's bytes). The
/// change timestamp travels as the field `changed_at` when the policy names
/// it, in the form it says; the message's own `changed_at` stays empty.
fn deliver(policy: &Policy, keys: &ConsumerKeys, record: &Record) -> proto::DeliveredRecord {
    proto::DeliveredRecord {
        kind: record.kind.id().to_string(),
        record_id: keys.pseudonyms.record_id(record),
        fields: delivered_fields(policy.shape(record, keys)),
        ..Default::default()
    }
}

/// One page of the change feed, shaped for a consumer.
struct ShapedPage {
    /// Each event encoded once: these bytes are hashed for the audit entry
    /// and sent as they are (slices of one buffer per page).
    events: Vec<Bytes>,
    records: u64,
    removed: u64,
    /// The delivered records by kind (for metrics).
    kinds: KindTally,
    /// The delivered records' subjects, in the auditors' pseudonym domain (deduplicated).
    subjects: Vec<String>,
    /// Commitment (hash) to exactly what is sent, for the audit entry.
    commitment: String,
    /// The cursor the page was read from, and its last record's.
    from_cursor: u64,
    last_seq: u64,
    /// The version of the policy that shaped the page.
    policy_version: String,
}

/// Whether the version of `stored`'s record a consumer at `cursor` could
/// hold (the latest at or before it) was delivered to it: present, not
/// cancelled and admitted by the policy. A consumer reading from the start
/// holds nothing.
fn held_before(
    gateway: &Gateway,
    policy: &Policy,
    stored: &StoredRecord,
    cursor: u64,
) -> Result<bool, Status> {
    if cursor == 0 {
        return Ok(false);
    }
    let earlier = gateway
        .store
        .record_version_at(stored.kind, &stored.key_hash, cursor)
        .map_err(|e| {
            tracing::error!(error = %e, "record history read failed");
            store_status(&e, "the store is unavailable")
        })?;
    match earlier {
        Some(earlier) if !earlier.cancelled => Ok(policy.admits(&open_record(gateway, &earlier)?)),
        _ => Ok(false),
    }
}

fn shape_page(
    gateway: &Gateway,
    policy: &Policy,
    keys: &ConsumerKeys,
    auditors: &Pseudonymiser,
    from_cursor: u64,
    page: &[StoredRecord],
) -> Result<ShapedPage, Status> {
    let mut encoded = bytes::BytesMut::with_capacity(page.len() * 512);
    let mut ends = Vec::with_capacity(page.len());
    let (mut records, mut removed) = (0u64, 0u64);
    let mut kinds = KindTally::default();
    // The delivered records' subjects, each hashed into the auditors' domain
    // once (a page holds several records of one person).
    let mut people = Vec::new();
    for stored in page {
        let mut record = open_record(gateway, stored)?;
        if !policy.releases_kind(record.kind) {
            // A kind a reload withdrew while the page was read.
            continue;
        }
        // A cancelled record, or one the policy's row filter does not admit, is
        // announced as removed only to a consumer that could hold it: one
        // whose cursor is past a version of it the policy admits. Anyone else
        // learns nothing of it, not even that it exists.
        let event = if stored.cancelled || !policy.admits(&record) {
            if !held_before(gateway, policy, stored, from_cursor)? {
                continue;
            }
            removed += 1;
            proto::pull_event::Event::Removed(proto::RemovedRecord {
                kind: record.kind.id().to_string(),
                record_id: keys.pseudonyms.record_id(&record),
                changed_at: policy.changed_at(&record, keys).unwrap_or_default(),
            })
        } else {
            records += 1;
            kinds.add(record.kind);
            let delivered = proto::DeliveredRecord {
                policy_version: policy.version.clone(),
                ..deliver(policy, keys, &record)
            };
            people.extend(record.person.take());
            proto::pull_event::Event::Record(delivered)
        };
        prost::Message::encode(
            &proto::PullEvent {
                cursor: stored.seq,
                event: Some(event),
            },
            &mut encoded,
        )
        .expect("a BytesMut grows as needed");
        ends.push(encoded.len());
    }
    people.sort_unstable();
    people.dedup();
    let mut subjects: Vec<String> = people
        .iter()
        .map(|person| auditors.token(person.expose()))
        .collect();
    subjects.sort_unstable();
    let encoded = encoded.freeze();
    let mut start = 0;
    let events: Vec<Bytes> = ends
        .into_iter()
        .map(|end| {
            let event = encoded.slice(start..end);
            start = end;
            event
        })
        .collect();
    let commitment = audit::commitment(events.iter().map(|e| &e[..]));
    Ok(ShapedPage {
        events,
        records,
        removed,
        kinds,
        subjects,
        commitment,
        from_cursor,
        last_seq: page.last().map(|r| r.seq).unwrap_or(from_cursor),
        policy_version: policy.version.clone(),
    })
}

/// Pages a pull shapes at once (each on its own blocking thread), delivered
/// in order.
const SHAPING_AHEAD: usize = 2;

/// The first stage of a pull: reads the feed page by page from the request's
/// cursor and hands each page to a blocking thread that decrypts and shapes it
/// (up to [`SHAPING_AHEAD`] pages at once); the next stage awaits them in
/// order. Waits for new commits when following. Ends at the limit, at the end
/// of the feed (not following), on shutdown, or when the later stages are gone.
///
/// Each page is shaped by the policy in force when it is read: a reload
/// reaches open (followed) streams at their next page. A reload that
/// withdraws the purpose's pull, or every kind the stream asked for, ends the
/// stream with `PERMISSION_DENIED` (audited).
async fn shape_pages(
    gateway: Arc<Gateway>,
    consumer: String,
    kind_ids: Vec<String>,
    req: proto::PullRequest,
    pages: tokio::sync::mpsc::Sender<ShapingPage>,
) {
    let keys = ConsumerKeys::derive(gateway.keys.pseudonym_secret_for(&consumer), &consumer);
    let auditors = audit::auditor_pseudonyms(&gateway.keys);
    let mut feed = gateway.feed.subscribe();
    let mut stopping = gateway.stopping.subscribe();
    let _open = req.follow.then(|| gateway.metrics.follow_stream(&consumer));
    let mut cursor = req.cursor;
    let mut remaining = if req.limit == 0 {
        u64::MAX
    } else {
        u64::from(req.limit)
    };
    while remaining > 0 {
        // A followed pull ends when the server drains, however far behind
        // it is (the consumer resumes from its cursor); a bounded one has
        // the shutdown grace to finish.
        if req.follow && *stopping.borrow() {
            let _ = pages.send(Err(stopping_status())).await;
            return;
        }
        let set = gateway.policies();
        let policy = match page_policy(&set, &consumer, &req.purpose, &kind_ids) {
            Ok((policy, ids)) => (policy, ids),
            Err(reason) => {
                let actor = format!("union/{consumer}");
                tracing::warn!(caller = %actor, "a reload withdrew what an open pull delivers");
                gateway.metrics.record(Refused {
                    rpc: PULL_PATH,
                    code: "policy_withdrawn",
                });
                let entry = Denied {
                    rpc: PULL_PATH,
                    code: "policy_withdrawn",
                    reason: &reason,
                    repeated: 0,
                    within_secs: 0,
                    refused_text: None,
                }
                .entry(&actor);
                let status = match audit::record(&gateway.store, vec![entry]).await {
                    Ok(()) => Status::permission_denied(reason),
                    Err(status) => status,
                };
                let _ = pages.send(Err(status)).await;
                return;
            }
        };
        let (policy, ids) = policy;
        let take = PAGE.min(remaining.try_into().unwrap_or(PAGE));
        let head = *feed.borrow();
        let store = gateway.store.clone();
        let stored = tokio::task::spawn_blocking(move || {
            let kinds: Vec<RecordKind> =
                ids.iter().filter_map(|k| RecordKind::from_id(k)).collect();
            store.read_feed(&kinds, cursor, take)
        })
        .await;
        let stored = match stored {
            Ok(Ok(stored)) => stored,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "feed read failed");
                let _ = pages
                    .send(Err(store_status(&e, "the store is unavailable")))
                    .await;
                return;
            }
            Err(_) => {
                let _ = pages.send(Err(Status::internal("pull task failed"))).await;
                return;
            }
        };
        let Some(last) = stored.last() else {
            // Nothing after the cursor up to the head read before: caught up.
            gateway.metrics.record(CaughtUp {
                consumer: &consumer,
                position: head,
            });
            if !req.follow {
                return;
            }
            // Wait for the next commit (or for the consumer to hang up).
            // (A drain ends the stream at the top of the loop.)
            tokio::select! {
                changed = feed.changed() => if changed.is_err() { return },
                _ = pages.closed() => return,
                _ = stopping.wait_for(|s| *s) => {}
            }
            continue;
        };
        let from_cursor = cursor;
        cursor = last.seq;
        remaining = remaining.saturating_sub(stored.len() as u64);
        // Decrypting and shaping is CPU work: blocking threads, never the
        // async workers.
        let (gw, k, aud) = (gateway.clone(), keys.clone(), auditors.clone());
        let shaping = tokio::task::spawn_blocking(move || {
            let policy = set.get(&policy).expect("checked above");
            shape_page(&gw, policy, &k, &aud, from_cursor, &stored)
        });
        if pages.send(Ok(shaping)).await.is_err() {
            return;
        }
    }
}

/// How a followed pull ends when the server drains: a status a client
/// retries elsewhere, from its cursor.
fn stopping_status() -> Status {
    Status::unavailable("the gateway is stopping")
}

/// The consumer's policy in force (by name, in `set`) and the kinds of the
/// stream it still releases, or why the stream must end.
fn page_policy(
    set: &policies::PolicySet,
    consumer: &str,
    purpose: &str,
    kind_ids: &[String],
) -> Result<(String, Vec<String>), String> {
    let pull = Some(RequiredOperation(policies::Operation::Pull));
    authz::authorise_purpose(set, consumer, purpose, pull).map_err(|r| r.message)?;
    let policy = set.get(consumer).expect("authorised above");
    let ids: Vec<String> = kind_ids
        .iter()
        .filter(|k| RecordKind::from_id(k).is_some_and(|k| policy.releases_kind(k)))
        .cloned()
        .collect();
    if ids.is_empty() {
        return Err(format!(
            "the policy of consumer {consumer} no longer releases the kinds of this pull"
        ));
    }
    Ok((consumer.to_string(), ids))
}

/// A pull's response stream: the events of each audited page in turn, out of
/// the page's own vector (no hand-off per event), or the error that ended it.
struct AuditedEvents {
    pages: tokio::sync::mpsc::Receiver<Result<Vec<Bytes>, Status>>,
    page: std::vec::IntoIter<Bytes>,
}

impl Stream for AuditedEvents {
    type Item = Result<Bytes, Status>;

    fn poll_next(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Self::Item>> {
        use std::task::Poll;
        loop {
            if let Some(event) = self.page.next() {
                return Poll::Ready(Some(Ok(event)));
            }
            match self.pages.poll_recv(cx) {
                Poll::Ready(Some(Ok(events))) => self.page = events.into_iter(),
                Poll::Ready(Some(Err(status))) => return Poll::Ready(Some(Err(status))),
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// A page being shaped, or why the feed could not be read.
type ShapingPage = Result<tokio::task::JoinHandle<Result<ShapedPage, Status>>, Status>;

/// One person's profile for a look-up: their own records, then their
/// employers' registry and tax records, each shaped by the policy. Never
/// wider than a pull by the same consumer: only records the policy releases
/// and admits, and employers only as named in clear by such a record.
///
/// Reading, decrypting and shaping take turns (`gathering`): each read is
/// started and each answer shaped during a turn, on the worker (a
/// few hundred microseconds from warm local reads; on a blocking thread the
/// hand-off cost more than it protected), and a read that crosses a network
/// is awaited between turns, holding no thread.
async fn gather_profile(
    gateway: &Gateway,
    gathering: &tokio::sync::Semaphore,
    policy: &Policy,
    keys: &ConsumerKeys,
    person: &adapters::IdentityNumber,
) -> Result<Vec<proto::DeliveredRecord>, Status> {
    let unavailable = |e: crate::store::StoreError| {
        tracing::error!(error = %e, "lookup failed");
        store_status(&e, "the store is unavailable")
    };
    let turn = || async {
        gathering
            .acquire()
            .await
            .map_err(|_| Status::unavailable("the gateway is stopping"))
    };
    let employer_kinds: Vec<RecordKind> = [RecordKind::Enterprise, RecordKind::Taxpayer]
        .into_iter()
        .filter(|k| policy.releases_kind(*k))
        .collect();
    let reading = {
        let _turn = turn().await?;
        let index = gateway
            .keys
            .index_hash("person", person.expose().as_bytes());
        gateway.store.records_for_person_async(&index)
    };
    let stored = reading.await.map_err(unavailable)?;
    let mut records = Vec::new();
    let readings = {
        let _turn = turn().await?;
        let mut employers: Vec<String> = Vec::new();
        for s in stored.iter() {
            let r = open_record(gateway, s)?;
            if !(policy.releases_kind(r.kind) && policy.admits(&r)) {
                continue;
            }
            if let Some(code) = policy.delivered_employer(&r)
                && !employers.iter().any(|e| e == code)
            {
                employers.push(code.to_string());
            }
            records.push(deliver(policy, keys, &r));
        }
        // The applicant's employers, as the registry and the tax office
        // know them: read together.
        if employer_kinds.is_empty() {
            Vec::new()
        } else {
            employers
                .iter()
                .map(|code| {
                    gateway
                        .store
                        .records_for_enterprise_async(code, &employer_kinds)
                })
                .collect()
        }
    };
    for employer in futures_util::future::join_all(readings).await {
        let employer = employer.map_err(unavailable)?;
        let _turn = turn().await?;
        for s in employer.iter() {
            let r = open_record(gateway, s)?;
            if policy.admits(&r) {
                records.push(deliver(policy, keys, &r));
            }
        }
    }
    Ok(records)
}

type EventStream = Pin<Box<dyn Stream<Item = Result<proto::PullEvent, Status>> + Send>>;

/// Pull events as sent: encoded once, when shaped.
type EncodedEvents = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;

/// The gRPC path of `Pull`.
pub const PULL_PATH: &str = "/exchange.v1.UnionExchange/Pull";
/// The gRPC path of `Lookup`.
pub const LOOKUP_PATH: &str = "/exchange.v1.UnionExchange/Lookup";

impl ExchangeService {
    /// The look-up answer, encoded once: the audit entry's commitment is the
    /// hash of these bytes and they are what is sent (see [`LookupRoute`]).
    async fn lookup_encoded(
        &self,
        request: Request<proto::LookupRequest>,
    ) -> Result<Response<Bytes>, Status> {
        let started = std::time::Instant::now();
        let authorised = self.authorise(request, LOOKUP_PATH).await?;
        let (req, consumer, policy) = (&authorised.req, &authorised.consumer, authorised.policy());
        let case = self
            .case_number(&format!("union/{consumer}"), LOOKUP_PATH, &req.case_number)
            .await?;
        let person = adapters::rules::parse_identity_number(&req.id_number).map_err(|code| {
            Status::invalid_argument(format!("the identity number is not valid ({code})"))
        })?;
        let keys = self.keys_for(consumer);
        let records =
            gather_profile(&self.gateway, &self.gathering, policy, &keys, &person).await?;
        let mut kinds: Vec<String> = records.iter().map(|r| r.kind.clone()).collect();
        kinds.sort();
        kinds.dedup();
        // The subject is the person's `person_id` exactly as the answer's
        // records deliver it, and only if they do: a policy that does not
        // release the field gets no handle on the person either.
        let subject = records
            .iter()
            .flat_map(|r| &r.fields)
            .find(|f| f.name == "person_id")
            .map(|f| f.value.clone())
            .unwrap_or_default();
        let response = proto::LookupResponse {
            subject,
            records,
            policy_version: policy.version.clone(),
        };
        let encoded = Bytes::from(prost::Message::encode_to_vec(&response));
        let entry = PersonLookedUp {
            consumer,
            purpose: &req.purpose,
            case_number: case,
            subject: &self.auditors.token(person.expose()),
            records: response.records.len() as u64,
            kinds,
            policy_version: &policy.version,
            content_sha256: audit::commitment([&encoded[..]]),
        }
        .entry(&format!("union/{consumer}"));
        // Audited durably before the answer leaves.
        let audited = audit::record(&self.gateway.store, vec![entry]);
        self.gateway
            .metrics
            .time_commit_async(Commit::Lookup, audited)
            .await?;
        let elapsed = started.elapsed();
        self.gateway.metrics.record(LookedUp { consumer, elapsed });
        Ok(Response::new(encoded))
    }

    /// The pull stream, each event already encoded (see [`PullRoute`]).
    async fn pull_encoded(
        &self,
        request: Request<proto::PullRequest>,
    ) -> Result<Response<EncodedEvents>, Status> {
        const RPC: &str = PULL_PATH;
        let authorised = self.authorise(request, RPC).await?;
        let policy = Arc::new(authorised.policy().clone());
        let Authorised { req, consumer, .. } = authorised;

        let mut kinds = Vec::new();
        for k in &req.kinds {
            // (The caller's text is not repeated back: it is not validated.)
            let kind = RecordKind::from_id(k).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "unknown record kind; known kinds: {}",
                    RecordKind::ALL.map(|k| k.id()).join(", ")
                ))
            })?;
            if !policy.releases_kind(kind) {
                let reason =
                    format!("the policy of consumer {consumer} does not release kind `{k}`");
                self.deny(
                    &format!("union/{consumer}"),
                    RPC,
                    "kind_not_released",
                    &reason,
                    None,
                )
                .await?;
                return Err(Status::permission_denied(reason));
            }
            if !kinds.contains(&kind) {
                kinds.push(kind);
            }
        }
        if kinds.is_empty() {
            kinds = policy.kinds.keys().copied().collect();
        }
        drop(policy);
        tracing::info!(
            consumer = %consumer,
            purpose = %req.purpose,
            kinds = ?kinds.iter().map(|k| k.id()).collect::<Vec<_>>(),
            cursor = req.cursor,
            follow = req.follow,
            "pull"
        );

        // Three stages, so reading and shaping the next page, the durable audit
        // entry of this one and sending the previous one overlap: the shaper
        // reads pages from the feed, the auditor records each page's delivery
        // before passing it on, and the response stream yields the audited
        // pages' events one by one as the connection takes them. Every channel
        // is bounded: a slow consumer stops the shaper (backpressure).
        // Errors travel down the same channels, so they arrive after the pages
        // before them.
        let (shaped_tx, mut shaped_rx) = tokio::sync::mpsc::channel(SHAPING_AHEAD - 1);
        let (audited_tx, audited_rx) = tokio::sync::mpsc::channel(1);
        let gateway = self.gateway.clone();
        let kind_ids: Vec<String> = kinds.iter().map(|k| k.id().to_string()).collect();
        tokio::spawn(shape_pages(
            gateway.clone(),
            consumer.clone(),
            kind_ids.clone(),
            req.clone(),
            shaped_tx,
        ));
        tokio::spawn(async move {
            loop {
                let page = tokio::select! {
                    page = shaped_rx.recv() => match page {
                        Some(page) => page,
                        None => return,
                    },
                    // The consumer hung up (while the stream waits for changes):
                    // dropping `shaped_rx` stops the shaper.
                    _ = audited_tx.closed() => return,
                };
                let page = match page {
                    Ok(shaping) => shaping
                        .await
                        .unwrap_or_else(|_| Err(Status::internal("pull task failed"))),
                    Err(status) => Err(status),
                };
                let page: ShapedPage = match page {
                    Ok(page) => page,
                    Err(status) => {
                        let _ = audited_tx.send(Err(status)).await;
                        return;
                    }
                };
                let entry = RecordsDelivered {
                    consumer: &consumer,
                    purpose: &req.purpose,
                    kinds: &kind_ids,
                    records: page.records,
                    removed: page.removed,
                    from_cursor: page.from_cursor,
                    to_cursor: page.last_seq,
                    policy_version: &page.policy_version,
                    content_sha256: page.commitment,
                    subjects: page.subjects,
                }
                .entry(&format!("union/{consumer}"));
                // Audited durably before a single record of the page is sent.
                let audited = audit::record(&gateway.store, vec![entry]);
                let audited = gateway.metrics.time_commit_async(Commit::PullPage, audited);
                if let Err(status) = audited.await {
                    let _ = audited_tx.send(Err(status)).await;
                    return;
                }
                if audited_tx.send(Ok(page.events)).await.is_err() {
                    return;
                }
                let (records, to_cursor) = (&page.kinds, page.last_seq);
                gateway.metrics.record(PageDelivered {
                    consumer: &consumer,
                    purpose: &req.purpose,
                    records,
                    to_cursor,
                });
            }
        });
        let events = AuditedEvents {
            pages: audited_rx,
            page: Vec::new().into_iter(),
        };
        Ok(Response::new(Box::pin(events) as EncodedEvents))
    }
}

#[tonic::async_trait]
impl proto::union_exchange_server::UnionExchange for ExchangeService {
    type PullStream = EventStream;

    /// Served by [`PullRoute`] in the gateway (events encoded once); this
    /// form decodes them again, for a caller of the generated service alone.
    async fn pull(
        &self,
        request: Request<proto::PullRequest>,
    ) -> Result<Response<Self::PullStream>, Status> {
        let events = self.pull_encoded(request).await?.into_inner();
        Ok(Response::new(Box::pin(tokio_stream::StreamExt::map(
            events,
            |event| {
                event.and_then(|bytes| {
                    <proto::PullEvent as prost::Message>::decode(bytes)
                        .map_err(|_| Status::internal("an encoded event does not decode"))
                })
            },
        ))))
    }

    async fn lookup(
        &self,
        request: Request<proto::LookupRequest>,
    ) -> Result<Response<proto::LookupResponse>, Status> {
        let encoded = self.lookup_encoded(request).await?.into_inner();
        let response = prost::Message::decode(encoded)
            .map_err(|e| Status::internal(format!("look-up response does not decode: {e}")))?;
        Ok(Response::new(response))
    }

    async fn reidentify(
        &self,
        request: Request<proto::ReidentifyRequest>,
    ) -> Result<Response<proto::ReidentifyResponse>, Status> {
        const RPC: &str = "/exchange.v1.UnionExchange/Reidentify";
        let authorised = self.authorise(request, RPC).await?;
        let (req, consumer, policy) = (&authorised.req, &authorised.consumer, authorised.policy());
        let actor = format!("union/{consumer}");
        let case = self.case_number(&actor, RPC, &req.case_number).await?;
        let justification = policies::ops::scrub(req.justification.trim());
        if justification.chars().count() < MIN_JUSTIFICATION_CHARS
            || justification.chars().count() > 1000
        {
            return Err(Status::invalid_argument(format!(
                "a written justification of {MIN_JUSTIFICATION_CHARS}–1000 characters is required"
            )));
        }
        if let Err(wait) = self.take_reidentification(consumer).await? {
            let reason = format!(
                "consumer {consumer} reached {REIDENTIFICATIONS_PER_HOUR} re-identifications in the last hour; retry in {wait} s"
            );
            self.deny(&actor, RPC, "reidentification_rate", &reason, None)
                .await?;
            return Err(Status::resource_exhausted(reason));
        }
        let keys = self.keys_for(consumer);
        let Some(sealed) = keys.reidentify(req.token.trim()) else {
            self.deny(
                &actor,
                RPC,
                "invalid_token",
                "the token was not issued to this consumer or is damaged",
                None,
            )
            .await?;
            return Err(Status::invalid_argument(
                "the token was not issued to this consumer or is damaged",
            ));
        };
        // A token opens only while the policy in force still delivers its
        // field sealed: a reload that stops releasing the field (or releases
        // it in another form) withdraws every token issued for it.
        if !policy.seals(&sealed.field) {
            let reason = format!(
                "the policy of consumer {consumer} no longer delivers {} sealed for re-identification",
                sealed.field
            );
            self.deny(&actor, RPC, "field_no_longer_sealed", &reason, None)
                .await?;
            return Err(Status::permission_denied(reason));
        }
        let subject = if sealed.subject.is_empty() {
            String::new()
        } else {
            self.auditors.token(&sealed.subject)
        };
        let kind = sealed
            .field
            .split('.')
            .next()
            .unwrap_or_default()
            .to_string();
        // The justification may name people or places: it is kept beside
        // the log, sealed and erasable; the leaf holds a salted commitment.
        let note = audit::notes::SealedNote::seal(&self.gateway.keys, &justification);
        let commitment = note.commitment.clone();
        let entry = PersonReidentified {
            consumer,
            purpose: &req.purpose,
            case_number: case,
            field: &sealed.field,
            approved_by: &actor,
            justification_sha256: &commitment,
            justification_chars: justification.chars().count() as u64,
            policy_version: &policy.version,
            subject: &subject,
            kinds: vec![kind],
        }
        .entry(&actor)
        .with_note(note);
        // Audited durably, with its note, before the value is released.
        let audited = audit::record(&self.gateway.store, vec![entry]);
        self.gateway
            .metrics
            .time_commit_async(Commit::Reidentification, audited)
            .await?;
        self.gateway.metrics.record(Reidentified { consumer });
        tracing::info!(consumer = %consumer, field = %sealed.field, "re-identification released");
        Ok(Response::new(proto::ReidentifyResponse {
            field: sealed.field,
            value: sealed.value,
        }))
    }
}

/// The union exchange as served: `Pull` and `Lookup` through [`PullRoute`]
/// and [`LookupRoute`], every other method through the generated service.
#[derive(Clone)]
pub struct UnionExchangeRoutes {
    generated: proto::union_exchange_server::UnionExchangeServer<ExchangeService>,
    pull: PullRoute,
    lookup: LookupRoute,
    /// `[limits] max_request_bytes`: every route decodes at most this much
    /// (tonic's own default, 4 MiB, is not the configured limit).
    max_request_bytes: usize,
}

impl UnionExchangeRoutes {
    pub fn new(gateway: Arc<Gateway>) -> Self {
        let max_request_bytes = gateway.limits.max_request_bytes;
        let service = Arc::new(ExchangeService::new(gateway));
        UnionExchangeRoutes {
            generated: proto::union_exchange_server::UnionExchangeServer::from_arc(service.clone())
                .max_decoding_message_size(max_request_bytes),
            pull: PullRoute(service.clone()),
            lookup: LookupRoute(service),
            max_request_bytes,
        }
    }
}

impl tonic::server::NamedService for UnionExchangeRoutes {
    const NAME: &'static str = <proto::union_exchange_server::UnionExchangeServer<
        ExchangeService,
    > as tonic::server::NamedService>::NAME;
}

type RouteFuture = Pin<
    Box<
        dyn std::future::Future<
                Output = Result<http::Response<tonic::body::Body>, std::convert::Infallible>,
            > + Send,
    >,
>;

impl tower::Service<http::Request<tonic::body::Body>> for UnionExchangeRoutes {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = RouteFuture;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        match request.uri().path() {
            PULL_PATH => {
                let pull = self.pull.clone();
                let max = self.max_request_bytes;
                Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(EncodedOnce::default())
                        .apply_max_message_size_config(Some(max), None);
                    Ok(grpc.server_streaming(pull, request).await)
                })
            }
            LOOKUP_PATH => {
                let lookup = self.lookup.clone();
                let max = self.max_request_bytes;
                Box::pin(async move {
                    let mut grpc = tonic::server::Grpc::new(EncodedOnce::default())
                        .apply_max_message_size_config(Some(max), None);
                    Ok(grpc.unary(lookup, request).await)
                })
            }
            _ => self.generated.call(request),
        }
    }
}

/// `Pull` sending each event as the bytes it was hashed from for its audit
/// entry: encoded once, where the generated service would encode it again
/// (the second encode was ≈ 8 % of a pull's CPU).
#[derive(Clone)]
struct PullRoute(Arc<ExchangeService>);

impl tonic::server::ServerStreamingService<proto::PullRequest> for PullRoute {
    type Response = Bytes;
    type ResponseStream = EncodedEvents;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<EncodedEvents>, Status>> + Send>>;

    fn call(&mut self, request: Request<proto::PullRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.pull_encoded(request).await })
    }
}

/// `Lookup` sending the answer as the bytes its audit entry committed to:
/// encoded once, where the generated service would encode it again.
#[derive(Clone)]
struct LookupRoute(Arc<ExchangeService>);

impl tonic::server::UnaryService<proto::LookupRequest> for LookupRoute {
    type Response = Bytes;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Response<Bytes>, Status>> + Send>>;

    fn call(&mut self, request: Request<proto::LookupRequest>) -> Self::Future {
        let service = self.0.clone();
        Box::pin(async move { service.lookup_encoded(request).await })
    }
}

/// Decodes the request `R`; encodes messages that are already encoded.
struct EncodedOnce<R>(std::marker::PhantomData<fn() -> R>);

impl<R> Default for EncodedOnce<R> {
    fn default() -> Self {
        EncodedOnce(std::marker::PhantomData)
    }
}

impl<R: prost::Message + Default + Send + 'static> tonic::codec::Codec for EncodedOnce<R> {
    type Encode = Bytes;
    type Decode = R;
    type Encoder = EncodedEncoder;
    type Decoder = tonic_prost::ProstDecoder<R>;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct EncodedEncoder;

impl tonic::codec::Encoder for EncodedEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), Status> {
        bytes::BufMut::put_slice(dst, &item);
        Ok(())
    }
}
