//! The audit trail: typed events for everything security-relevant (pushes,
//! deliveries, look-ups, re-identifications, auditors' reads, denials,
//! refused connections, policy reloads, key rotations, start-ups), turned into entries of a
//! tamper-evident Merkle log that compliance officers query and verify offline.
//!
//! Events are structs, not strings scattered through the code, and none has a
//! field that could hold a raw personal identifier: persons appear only as
//! pseudonyms in the auditors' own domain (with a back-pointer to the person's
//! previous entry), deliveries only as field forms, counts and content hashes.
//! [`encoding`] defines the canonical bytes of an entry (its Merkle leaf, see
//! `ENCODING.md`); the store appends leaves and tree nodes in the same
//! transaction as the change recorded; [`log`] signs checkpoints; [`service`]
//! is the `Audit` gRPC service; [`export`] writes and verifies export files,
//! and [`verify_store`] checks a whole store's log offline the same way;
//! [`notes`] keeps free text an entry commits to beside the log, erasable.

pub mod encoding;
pub mod export;
pub mod log;
pub mod notes;
pub mod repeats;
pub mod report;
pub mod service;
pub mod verify_store;

pub use encoding::{CanonicalEntry, SubjectRef, Value};
pub use log::{AuditLog, CheckpointPolicy};
pub use service::AuditService;

use crate::store::Store;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tonic::Status;

/// An audit entry before it is appended (the store assigns its seq and the
/// subjects' back-pointers, then encodes it canonically).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub outcome: String,
    /// Record kinds concerned.
    pub kinds: Vec<String>,
    /// Persons concerned, as auditor-domain pseudonyms.
    pub subjects: Vec<String>,
    pub details: Value,
    /// Free text the details commit to, kept beside the log (sealed, erasable)
    /// and stored in the same transaction as the entry; never in the leaf.
    pub note: Option<notes::SealedNote>,
}

impl AuditEntry {
    /// This entry with a note beside it (its details hold the note's commitment).
    pub fn with_note(mut self, note: notes::SealedNote) -> AuditEntry {
        self.note = Some(note);
        self
    }

    /// The canonical bytes of this entry at `seq` with the given subject
    /// back-pointers (the leaf).
    pub fn encode(
        &self,
        seq: u64,
        subjects: &[SubjectRef],
    ) -> Result<Vec<u8>, encoding::EncodeError> {
        encoding::encode_parts(
            seq,
            self.at_ms,
            &self.actor,
            &self.action,
            &self.outcome,
            &self.kinds,
            subjects,
            &self.details,
        )
    }
}

/// The auditors' pseudonym domain: subjects in audit entries are tokens in it.
pub const AUDIT_DOMAIN: &str = "auditors";

/// The auditors' pseudonymiser: subjects in entries are its tokens. Its domain
/// stays bound to the pseudonym key it was first used with, whatever key is
/// active later, so that no person's chain of entries splits.
pub fn auditor_pseudonyms(keys: &crate::keys::Keys) -> policies::Pseudonymiser {
    let domain = AUDIT_DOMAIN;
    policies::Pseudonymiser::new(keys.pseudonym_secret_for(domain), domain)
}

/// SHA-256 commitment (hex) of what was delivered: the protobuf encodings of
/// the messages sent, each preceded by its length (u64, big-endian). Holds
/// nothing that would need erasing.
pub fn commitment<'a>(messages: impl IntoIterator<Item = &'a [u8]>) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for m in messages {
        ctx.update(&(m.len() as u64).to_be_bytes());
        ctx.update(m);
    }
    hex::encode(ctx.finish().as_ref())
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Outcome of an audited action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Denied,
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Denied => "denied",
            Outcome::Rejected => "rejected",
        }
    }
}

/// Every kind of audited event. Its serialised fields are the entry's details
/// (integers, strings, booleans, lists and maps only; see `ENCODING.md`).
pub trait AuditEvent: Serialize {
    const ACTION: &'static str;
    fn outcome(&self) -> Outcome {
        Outcome::Ok
    }
    /// Persons concerned, as auditor-domain pseudonyms.
    fn subjects(&self) -> Vec<String> {
        Vec::new()
    }
    /// Record kinds concerned.
    fn kinds(&self) -> Vec<String> {
        Vec::new()
    }
    /// The entry's details: the serialised fields. Events on the hot paths
    /// (look-ups, deliveries) build them directly; a unit test holds them
    /// equal to [`details_via_serde`].
    fn details(&self) -> Value {
        details_via_serde(self)
    }
    fn entry(&self, actor: &str) -> AuditEntry {
        AuditEntry {
            at_ms: now_ms(),
            actor: actor.to_string(),
            action: Self::ACTION.to_string(),
            outcome: self.outcome().as_str().to_string(),
            kinds: self.kinds(),
            subjects: self.subjects(),
            details: {
                let mut details = self.details();
                if redact_identifiers(&mut details, None) {
                    tracing::warn!(
                        action = Self::ACTION,
                        "a personal identifier typed into a request was removed from its audit entry"
                    );
                }
                details
            },
            note: None,
        }
    }
}

/// An event's details from its `Serialize` form.
pub fn details_via_serde<E: Serialize + ?Sized>(event: &E) -> Value {
    let json = serde_json::to_value(event).expect("audit events serialise");
    Value::from_json(json).expect("audit events hold no floats")
}

/// A detail map from its entries.
fn detail_map<const N: usize>(entries: [(&str, Value); N]) -> Value {
    Value::Map(entries.map(|(k, v)| (k.to_string(), v)).into())
}

/// Detail keys whose values are hashes, never free text.
const HASH_KEYS: [&str; 5] = [
    "content_sha256",
    "justification_sha256",
    "policy_version",
    "policies",
    "serving",
];

/// Safety net for caller-typed text (purposes, case numbers, reasons quoting
/// them): an identity number (18 characters, or the old 15-digit form) or a
/// mobile number, as [`adapters::rules::find_identifier`] finds them, becomes
/// `[redacted]`, so no raw identifier reaches the log even if typed into the
/// wrong field. Returns whether anything was removed.
pub fn redact_identifiers(v: &mut Value, key: Option<&str>) -> bool {
    if key.is_some_and(|k| HASH_KEYS.contains(&k)) {
        return false;
    }
    match v {
        Value::Str(s) => match redact_text(s) {
            Some(clean) => {
                *s = clean;
                true
            }
            None => false,
        },
        Value::List(items) => items
            .iter_mut()
            .fold(false, |hit, item| redact_identifiers(item, None) | hit),
        Value::Map(m) => m.iter_mut().fold(false, |hit, (k, item)| {
            redact_identifiers(item, Some(k)) | hit
        }),
        _ => false,
    }
}

/// `None` when `s` holds nothing to redact. What counts as an identifier is
/// [`adapters::rules::identifier_kind`], the rule batch ids and case numbers
/// are refused by.
fn redact_text(s: &str) -> Option<String> {
    let mut found = Vec::new();
    adapters::rules::for_each_digit_run(s, |run, at| {
        if adapters::rules::identifier_kind(run).is_some() {
            found.push(at);
        }
        false
    });
    if found.is_empty() {
        return None;
    }
    let mut out = String::with_capacity(s.len());
    let mut kept = 0;
    for at in found {
        out.push_str(&s[kept..at.start]);
        out.push_str("[redacted]");
        kept = at.end;
    }
    out.push_str(&s[kept..]);
    Some(out)
}

/// An agency pushed a batch (committed, duplicate re-send or rejected whole).
#[derive(Debug, Serialize)]
pub struct BatchPushed<'a> {
    pub agency: &'a str,
    pub batch_id: &'a str,
    pub result: &'a str,
    pub rows: u64,
    pub accepted: u64,
    pub superseded: u64,
    pub rejected_by_code: BTreeMap<String, u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_error: Option<&'a str>,
}

impl AuditEvent for BatchPushed<'_> {
    const ACTION: &'static str = "batch_pushed";
    fn outcome(&self) -> Outcome {
        if self.batch_error.is_some() {
            Outcome::Rejected
        } else {
            Outcome::Ok
        }
    }
}

/// Records left the gateway for a union consumer.
#[derive(Debug, Serialize)]
pub struct RecordsDelivered<'a> {
    pub consumer: &'a str,
    pub purpose: &'a str,
    pub kinds: &'a [String],
    pub records: u64,
    pub removed: u64,
    pub from_cursor: u64,
    pub to_cursor: u64,
    /// The policy that shaped the records: the form each field was delivered
    /// in is its table, recorded once per version ([`PolicyRecorded`]).
    pub policy_version: &'a str,
    /// Commitment to the messages sent ([`commitment`]).
    pub content_sha256: String,
    /// The persons of the delivered records, as auditor-domain pseudonyms.
    #[serde(skip)]
    pub subjects: Vec<String>,
}

impl AuditEvent for RecordsDelivered<'_> {
    const ACTION: &'static str = "records_delivered";
    fn details(&self) -> Value {
        detail_map([
            ("consumer", Value::Str(self.consumer.to_string())),
            ("purpose", Value::Str(self.purpose.to_string())),
            (
                "kinds",
                Value::List(self.kinds.iter().cloned().map(Value::Str).collect()),
            ),
            ("records", Value::U64(self.records)),
            ("removed", Value::U64(self.removed)),
            ("from_cursor", Value::U64(self.from_cursor)),
            ("to_cursor", Value::U64(self.to_cursor)),
            (
                "policy_version",
                Value::Str(self.policy_version.to_string()),
            ),
            ("content_sha256", Value::Str(self.content_sha256.clone())),
        ])
    }
    fn subjects(&self) -> Vec<String> {
        self.subjects.clone()
    }
    fn kinds(&self) -> Vec<String> {
        self.kinds.to_vec()
    }
}

/// A consumer looked up one person for a case.
#[derive(Debug, Serialize)]
pub struct PersonLookedUp<'a> {
    pub consumer: &'a str,
    pub purpose: &'a str,
    pub case_number: &'a str,
    /// The person's pseudonym in the auditors' own domain (in the entry's
    /// subjects, not its details).
    #[serde(skip)]
    pub subject: &'a str,
    pub records: u64,
    pub kinds: Vec<String>,
    /// The policy that shaped the profile (its field table: [`PolicyRecorded`]).
    pub policy_version: &'a str,
    /// Commitment to the response sent ([`commitment`]).
    pub content_sha256: String,
}

impl AuditEvent for PersonLookedUp<'_> {
    const ACTION: &'static str = "person_looked_up";
    fn details(&self) -> Value {
        detail_map([
            ("consumer", Value::Str(self.consumer.to_string())),
            ("purpose", Value::Str(self.purpose.to_string())),
            ("case_number", Value::Str(self.case_number.to_string())),
            ("records", Value::U64(self.records)),
            (
                "kinds",
                Value::List(self.kinds.iter().cloned().map(Value::Str).collect()),
            ),
            (
                "policy_version",
                Value::Str(self.policy_version.to_string()),
            ),
            ("content_sha256", Value::Str(self.content_sha256.clone())),
        ])
    }
    fn subjects(&self) -> Vec<String> {
        vec![self.subject.to_string()]
    }
    fn kinds(&self) -> Vec<String> {
        self.kinds.clone()
    }
}

/// A pseudonymised value was re-identified for a consumer (approved case).
#[derive(Debug, Serialize)]
pub struct PersonReidentified<'a> {
    pub consumer: &'a str,
    pub purpose: &'a str,
    pub case_number: &'a str,
    /// The field whose pseudonym was reversed, e.g. `social_insurance.person_id`.
    pub field: &'a str,
    /// Who approved the re-identification (an identity, never a person's data).
    pub approved_by: &'a str,
    /// Commitment to the officer's written reason, which is kept beside the
    /// log, sealed and erasable ([`notes`]): the text never enters the leaf.
    pub justification_sha256: &'a str,
    /// The reason's length in characters.
    pub justification_chars: u64,
    pub policy_version: &'a str,
    #[serde(skip)]
    pub subject: &'a str,
    #[serde(skip)]
    pub kinds: Vec<String>,
}

impl AuditEvent for PersonReidentified<'_> {
    const ACTION: &'static str = "person_reidentified";
    fn subjects(&self) -> Vec<String> {
        vec![self.subject.to_string()]
    }
    fn kinds(&self) -> Vec<String> {
        self.kinds.clone()
    }
}

/// A key was rotated (ids only; key material never enters the log).
#[derive(Debug, Serialize)]
pub struct KeyRotated<'a> {
    /// `encryption`, `pseudonym`, `index` or `audit_log`.
    pub key_kind: &'a str,
    pub old_key_id: &'a str,
    pub new_key_id: &'a str,
}

impl AuditEvent for KeyRotated<'_> {
    const ACTION: &'static str = "key_rotated";
}

/// A re-index of the stored records under the active index key began (or
/// resumed after an interruption). Key ids only.
#[derive(Debug, Serialize)]
pub struct RecordsReindexStarted<'a> {
    /// The index key the records were indexed under (`unknown` for a store
    /// from before the key id was recorded).
    pub old_key_id: &'a str,
    pub new_key_id: &'a str,
    /// Records up to this feed position were re-indexed already (0: a new start).
    pub resume_after_seq: u64,
}

impl AuditEvent for RecordsReindexStarted<'_> {
    const ACTION: &'static str = "records_reindex_started";
}

/// Every stored record is now indexed under `new_key_id`.
#[derive(Debug, Serialize)]
pub struct RecordsReindexed<'a> {
    pub old_key_id: &'a str,
    pub new_key_id: &'a str,
    /// Records re-indexed (and sealed again), over all runs of this re-index.
    pub records: u64,
    /// Records that turned out to be another version of a record stored
    /// under the new key (pushed again while the old key's rows were not
    /// found): only the newer version is kept.
    pub merged: u64,
}

impl AuditEvent for RecordsReindexed<'_> {
    const ACTION: &'static str = "records_reindexed";
}

/// An operator re-pseudonymised a consumer: its domain is bound to another
/// pseudonym key, so all its pseudonyms and outstanding re-identification
/// tokens changed. Key ids only.
#[derive(Debug, Serialize)]
pub struct ConsumerRepseudonymised<'a> {
    pub consumer: &'a str,
    pub old_key_id: &'a str,
    pub new_key_id: &'a str,
}

impl AuditEvent for ConsumerRepseudonymised<'_> {
    const ACTION: &'static str = "consumer_repseudonymised";
}

/// An auditor asked for one person's report (the access is itself audited,
/// and chained to the person's entries).
#[derive(Debug, Serialize)]
pub struct SubjectReported<'a> {
    pub auditor: &'a str,
    /// Entries the report listed.
    pub entries: u64,
    #[serde(skip)]
    pub subject: &'a str,
}

impl AuditEvent for SubjectReported<'_> {
    const ACTION: &'static str = "subject_report";
    fn subjects(&self) -> Vec<String> {
        vec![self.subject.to_string()]
    }
}

/// An auditor read the note beside an entry (a re-identification's
/// justification): audited, and chained to the persons that entry names.
#[derive(Debug, Serialize)]
pub struct NoteRead<'a> {
    pub auditor: &'a str,
    /// The entry whose note was read.
    pub seq: u64,
    /// `opened`, `erased` (nothing left to read), `missing` or `unreadable`.
    pub result: &'a str,
    /// The opened text matched the commitment in the entry's leaf.
    pub commitment_ok: bool,
    #[serde(skip)]
    pub subjects: Vec<String>,
}

impl AuditEvent for NoteRead<'_> {
    const ACTION: &'static str = "note_read";
    fn subjects(&self) -> Vec<String> {
        self.subjects.clone()
    }
}

/// The note beside an entry was erased: the entry and its leaf are unchanged.
#[derive(Debug, Serialize)]
pub struct NoteErased<'a> {
    pub auditor: &'a str,
    /// The entry whose note was erased.
    pub seq: u64,
    /// A fixed code ([`notes::ERASE_REASONS`]), never free text.
    pub reason: &'a str,
    #[serde(skip)]
    pub subjects: Vec<String>,
}

impl AuditEvent for NoteErased<'_> {
    const ACTION: &'static str = "note_erased";
    fn subjects(&self) -> Vec<String> {
        self.subjects.clone()
    }
}

/// An auditor read one person's entries: `Audit.Query` filtered by that
/// person (identity number or pseudonym). Chained to the person's entries
/// like [`SubjectReported`]; one entry per call, so paging through a
/// person's entries writes one per page read.
#[derive(Debug, Serialize)]
pub struct AuditQueried<'a> {
    pub auditor: &'a str,
    /// The filters the query used, by name only (`subject_id_number` or
    /// `subject`, `action`, `kind`, ...): their values are caller text, and
    /// the person is already the entry's subject.
    pub filters: Vec<&'static str>,
    /// Entries the answer held.
    pub entries: u64,
    #[serde(skip)]
    pub subject: &'a str,
}

impl AuditEvent for AuditQueried<'_> {
    const ACTION: &'static str = "audit_queried";
    fn subjects(&self) -> Vec<String> {
        vec![self.subject.to_string()]
    }
}

/// An auditor exported the log: every entry up to `tree_size`, so every
/// person named in them. The entry names no subject (the list would be
/// unbounded); a subject report lists the exports whose `tree_size` reaches
/// the person's first entry.
#[derive(Debug, Serialize)]
pub struct AuditExported<'a> {
    pub auditor: &'a str,
    /// The size of the checkpoint the export carries: its leaves are
    /// entries 1 to `tree_size`.
    pub tree_size: u64,
}

impl AuditEvent for AuditExported<'_> {
    const ACTION: &'static str = "audit_exported";
}

/// A call was refused after the TLS handshake (role matrix, policy, purpose,
/// limits).
#[derive(Debug, Serialize)]
pub struct Denied<'a> {
    pub rpc: &'a str,
    pub code: &'a str,
    pub reason: &'a str,
    /// In a summary ([`repeats`]): how many more refusals of this caller, call
    /// and code came within `within_secs` of its previous entry. Absent in an
    /// entry for one refusal.
    #[serde(skip_serializing_if = "is_zero")]
    pub repeated: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub within_secs: u64,
    /// Text the caller sent that the refusal concerns (a purpose outside its
    /// policy), as its length and a keyed hash: never the text, which could
    /// be anything typed into the field and would be permanent in the log.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused_text: Option<TextDigest>,
}

/// Caller text recorded without its content: enough to tell two attempts
/// apart, or to confirm a suspected value with the gateway's key, and
/// nothing to erase.
#[derive(Debug, Clone, Serialize)]
pub struct TextDigest {
    /// Length in characters.
    pub chars: u64,
    /// HMAC-SHA256 of the text in the gateway's `refused_text` pseudonym domain.
    pub keyed_hash: String,
}

impl TextDigest {
    pub fn of(keys: &crate::keys::Keys, text: &str) -> TextDigest {
        TextDigest {
            chars: text.chars().count() as u64,
            keyed_hash: policies::Pseudonymiser::new(
                keys.pseudonym_secret_for(REFUSED_TEXT_DOMAIN),
                REFUSED_TEXT_DOMAIN,
            )
            .token(text),
        }
    }
}

/// The pseudonym domain of [`TextDigest`]s.
pub const REFUSED_TEXT_DOMAIN: &str = "refused_text";

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl AuditEvent for Denied<'_> {
    const ACTION: &'static str = "denied";
    fn outcome(&self) -> Outcome {
        Outcome::Denied
    }
}

/// A TLS handshake failed: no, expired, revoked or foreign certificate.
#[derive(Debug, Serialize)]
pub struct ConnectionRefused<'a> {
    pub peer: &'a str,
    /// A stable code (`crate::tls::RefusalReason::code`), `several` in the
    /// summary of the peers past the tracked ones.
    pub code: &'a str,
    /// A fixed description of the code, never the handshake's error text
    /// (it carries the time of day, and for some errors what the peer sent).
    pub reason: &'a str,
    /// In a summary ([`repeats`]): how many more handshakes from this peer
    /// failed so within `within_secs` of its previous entry.
    #[serde(skip_serializing_if = "is_zero")]
    pub repeated: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub within_secs: u64,
}

impl AuditEvent for ConnectionRefused<'_> {
    const ACTION: &'static str = "connection_refused";
    fn outcome(&self) -> Outcome {
        Outcome::Denied
    }
}

/// An established connection was closed by the gateway: after a reload, a CRL
/// revokes its client certificate. The actor is the certificate's identity.
#[derive(Debug, Serialize)]
pub struct ConnectionClosed<'a> {
    /// `revoked_after_reload`.
    pub code: &'a str,
    pub peer: &'a str,
    /// The client certificate's serial number (hex).
    pub serial: &'a str,
}

impl AuditEvent for ConnectionClosed<'_> {
    const ACTION: &'static str = "connection_closed";
    fn outcome(&self) -> Outcome {
        Outcome::Denied
    }
}

/// The TLS material (server certificate and key, CA, CRLs) was reloaded
/// (SIGHUP): new handshakes use it.
#[derive(Debug, Serialize)]
pub struct TlsReloaded<'a> {
    /// The server certificate now served (serial number, hex).
    pub server_cert_serial: &'a str,
    pub crls: u64,
    /// Certificates the loaded CRLs revoke.
    pub revoked_certificates: u64,
    /// Established connections closed because the new CRLs revoke them.
    pub closed_connections: u64,
}

impl AuditEvent for TlsReloaded<'_> {
    const ACTION: &'static str = "tls_reloaded";
}

/// A TLS reload failed (a file unreadable or invalid); the previous material
/// keeps serving.
#[derive(Debug, Serialize)]
pub struct TlsReloadRefused<'a> {
    /// A stable code (`crate::tls::TlsError::code`).
    pub code: &'a str,
    /// The error (configured paths and parser messages, no caller data).
    pub problem: &'a str,
}

impl AuditEvent for TlsReloadRefused<'_> {
    const ACTION: &'static str = "tls_reload_refused";
    fn outcome(&self) -> Outcome {
        Outcome::Rejected
    }
}

/// A CRL in force is past its `nextUpdate`: revocations published since are
/// unseen. With `stale_crl = "refuse"` (outcome `rejected`) handshakes of
/// certificates it covers fail until a fresh CRL is loaded.
#[derive(Debug, Serialize)]
pub struct CrlStale<'a> {
    pub crl: &'a str,
    /// RFC 3339.
    pub next_update: &'a str,
    /// `refuse` or `accept`.
    pub policy: &'a str,
}

impl AuditEvent for CrlStale<'_> {
    const ACTION: &'static str = "crl_stale";
    fn outcome(&self) -> Outcome {
        if self.policy == "accept" {
            Outcome::Ok
        } else {
            Outcome::Rejected
        }
    }
}

/// The gateway started serving.
#[derive(Debug, Serialize)]
pub struct GatewayStarted<'a> {
    pub version: &'a str,
    pub dev_mode: bool,
    pub policies: BTreeMap<String, String>,
}

impl AuditEvent for GatewayStarted<'_> {
    const ACTION: &'static str = "gateway_started";
}

/// The gateway stopped serving (a clean shutdown): written after every
/// entry queued before it, so its presence says the log was flushed.
#[derive(Debug, Serialize)]
pub struct GatewayStopped {
    /// Whether every open call ended within the shutdown grace (false: the
    /// ones left were cut off).
    pub drained: bool,
}

impl AuditEvent for GatewayStopped {
    const ACTION: &'static str = "gateway_stopped";
}

/// A policy in force, as deliveries and look-ups reference it by version:
/// which purposes it serves and the form every field of every kind it
/// releases leaves in. Recorded for every policy when the gateway starts and
/// when the policies are reloaded, so each delivery entry names its policy's
/// version (a content hash) instead of repeating the table, and an auditor
/// reads the table here.
#[derive(Debug, Serialize)]
pub struct PolicyRecorded<'a> {
    pub consumer: &'a str,
    pub policy_version: &'a str,
    pub purposes: &'a [String],
    /// `kind.field` → form (kept, masked, pseudonymised, generalised,
    /// constant, encrypted, scrubbed).
    pub fields: BTreeMap<String, &'static str>,
}

impl AuditEvent for PolicyRecorded<'_> {
    const ACTION: &'static str = "policy_recorded";
}

impl PolicyRecorded<'_> {
    /// One entry per policy of the set, in consumer order.
    pub fn entries(set: &policies::PolicySet) -> Vec<AuditEntry> {
        set.policies
            .values()
            .map(|p| {
                let kinds: Vec<_> = p.kinds.keys().copied().collect();
                PolicyRecorded {
                    consumer: &p.consumer,
                    policy_version: &p.version,
                    purposes: &p.purposes,
                    fields: p.forms(&kinds),
                }
                .entry(GATEWAY)
            })
            .collect()
    }
}

/// The policy directory was reloaded (SIGHUP).
#[derive(Debug, Serialize)]
pub struct PoliciesReloaded {
    /// Consumer → policy content hash now in force.
    pub policies: BTreeMap<String, String>,
}

impl AuditEvent for PoliciesReloaded {
    const ACTION: &'static str = "policies_reloaded";
}

/// A policy reload was refused because a file is broken; the previous set serves on.
#[derive(Debug, Serialize)]
pub struct PolicyReloadRefused<'a> {
    /// The lint's `file:line: message` lines (policy files hold no personal data).
    pub problems: &'a str,
    pub serving: BTreeMap<String, String>,
}

impl AuditEvent for PolicyReloadRefused<'_> {
    const ACTION: &'static str = "policy_reload_refused";
    fn outcome(&self) -> Outcome {
        Outcome::Rejected
    }
}

/// Actor name for events with no authenticated caller.
pub const ANONYMOUS: &str = "anonymous";
/// Actor name for the gateway's own events.
pub const GATEWAY: &str = "gateway";

/// Appends entries durably off the async runtime. Audit failure is not silent:
/// the caller decides whether to refuse the operation (it should).
pub async fn record(store: &Arc<dyn Store>, entries: Vec<AuditEntry>) -> Result<(), Status> {
    store.append_audit_queued(entries).await.map_err(|e| {
        tracing::error!(error = %e, "audit append failed");
        crate::status::store_status(&e, "the audit log is unavailable; nothing was done")
    })
}

/// Appends entries through the group commit without waiting for them (events
/// whose caller has nothing to refuse, such as a refused connection). A
/// failure is logged with `what`.
pub fn record_detached(store: &dyn Store, entries: Vec<AuditEntry>, what: &'static str) {
    let append = store.append_audit_queued(entries);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Err(e) = append.await {
                    tracing::error!(error = %e, "{what}");
                }
            });
        }
        // Off the runtime (e.g. at shutdown): the store logs a failure that
        // no one awaits.
        Err(_) => drop(append),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hot-path events' hand-built details are exactly their serialised
    /// fields (same keys, same values), so entries do not depend on which
    /// path built them.
    #[test]
    fn hand_built_details_equal_the_serialised_ones() {
        let kinds = vec!["household".to_string(), "social_insurance".to_string()];
        let delivered = RecordsDelivered {
            consumer: "assistance",
            purpose: "hardship_screening",
            kinds: &kinds,
            records: 7,
            removed: 2,
            from_cursor: 10,
            to_cursor: 19,
            policy_version: "ab12",
            content_sha256: "cd34".into(),
            subjects: vec!["0f".repeat(16)],
        };
        assert_eq!(delivered.details(), details_via_serde(&delivered));
        let looked_up = PersonLookedUp {
            consumer: "assistance",
            purpose: "hardship_application",
            case_number: "KN-2026-0042",
            subject: "00ff00ff00ff00ff00ff00ff00ff00ff",
            records: 5,
            kinds,
            policy_version: "ab12",
            content_sha256: "cd34".into(),
        };
        assert_eq!(looked_up.details(), details_via_serde(&looked_up));
    }

    /// The gateway's own pseudonym domains are names no policy may give a
    /// consumer.
    #[test]
    fn the_gateways_domains_are_reserved_consumer_names() {
        for domain in [AUDIT_DOMAIN, REFUSED_TEXT_DOMAIN] {
            assert!(policies::RESERVED_CONSUMERS.contains(&domain), "{domain}");
        }
    }

    #[test]
    fn identifiers_typed_into_free_text_are_redacted() {
        let mut v = Value::from_json(serde_json::json!({
            "purpose": "purpose `340207197607111133` is not allowed",
            "case_number": "KN-３４０２０７１９７６０７１１１１３３",
            "reason": "call 13812345678 or 34020719760711x",
            "batch_id": "hrss-5f3a9b0c1d2e4f60-0001",
            "rows": 24,
            "policy_version": "sha256:13812345678abc",
            "kinds": ["340207197607111133"],
        }))
        .unwrap();
        assert!(redact_identifiers(&mut v, None));
        let text = v.to_json().to_string();
        for leaked in ["340207197607111133", "call 13812345678", "３４０２０７"] {
            assert!(!text.contains(leaked), "{text}");
        }
        assert_eq!(
            v.str("purpose"),
            Some("purpose `[redacted]` is not allowed")
        );
        assert_eq!(v.str("case_number"), Some("KN-[redacted]"));
        assert_eq!(v.str("reason"), Some("call [redacted] or 34020719760711x"));
        assert_eq!(v.str("batch_id"), Some("hrss-5f3a9b0c1d2e4f60-0001"));
        assert_eq!(v.str("policy_version"), Some("sha256:13812345678abc"));
        // Case numbers and counts are left alone.
        let mut clean = Value::from_json(serde_json::json!({"case": "KN-2026-0042"})).unwrap();
        assert!(!redact_identifiers(&mut clean, None));
    }
}
