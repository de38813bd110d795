//! One entry: its decoded fields and leaf hash, and its inclusion in the
//! signed checkpoint checked by the console from the bytes the store
//! returns, with links to the previous entry of each person it names.

use super::{CpView, Mark, Page, cp_view, page, render, value_text, when};
use crate::App;
use crate::i18n::Msg;
use crate::ledger::Verdict;
use crate::session::Session;
use crate::upstream::hashes;
use askama::Template;
use axum::extract::{Extension, Path, State};
use axum::response::Response;
use gateway::audit::{CanonicalEntry, Value};
use gateway::proto;
use std::sync::Arc;

pub struct SubjectView {
    pub token: String,
    pub prev_seq: u64,
}

pub struct EntryView {
    pub when: super::When,
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
pub(super) fn check_inclusion(
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

pub(super) async fn entry(
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
        p.error = Some(t.msg(&Msg::EntryGone));
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
