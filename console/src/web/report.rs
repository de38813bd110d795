//! The person report ("who saw this person"): the gateway's subject report
//! for an identity number typed into a POST form, each line's entry proved
//! included in the report's signed checkpoint and checked to name the
//! person with the back-pointer shown, the chain followed again here. The
//! result is held under a random handle and shown at a GET address, in
//! either language; the page prints as a subject-access answer.

use super::entry::check_inclusion;
use super::{CpView, HeldWhat, Mark, Page, cp_view, page, render, see_other, when};
use crate::i18n::{Labels, Msg};
use crate::ledger::{Verdict, now_ms};
use crate::session::Session;
use crate::{App, IdNumber};
use askama::Template;
use axum::extract::{Extension, Form, Path, State};
use axum::response::Response;
use gateway::audit::CanonicalEntry;
use gateway::proto;
use serde::Deserialize;
use std::sync::Arc;

pub struct ReportRow {
    pub seq: u64,
    pub when: super::When,
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

pub(super) async fn report_form(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
) -> Response {
    render(ReportPage {
        page: page(&app, &s, "report", "/report".into()),
        error: None,
        report: None,
    })
}

#[derive(Default, Deserialize)]
#[serde(default)]
pub(super) struct ReportForm {
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

/// A report as made and checked, in no language yet.
pub(crate) struct ReportData {
    /// The gateway's answer, or why there is none.
    result: Result<Checked, String>,
    id_masked: String,
    made_ms: i64,
}

struct Checked {
    subject: String,
    checkpoint: Option<(tlog::Checkpoint, String)>,
    signature: Verdict,
    chain: Verdict,
    /// Problems: the gateway's own (as it wrote them) and the console's.
    problems: Vec<Problem>,
    items: Vec<(proto::SubjectReportItem, Verdict)>,
}

enum Problem {
    Reported(String),
    Line(u64, Msg),
    Found(Msg),
}

/// Asks the gateway for the report and checks every line of it.
async fn make_report(app: &App, id: &IdNumber) -> ReportData {
    let made_ms = now_ms();
    let id_masked = id.masked();
    let r = match app.upstream.subject_report(id).await {
        Ok(r) => r,
        Err(e) => {
            return ReportData {
                result: Err(e.to_string()),
                id_masked,
                made_ms,
            };
        }
    };
    let observation = match &r.checkpoint {
        Some(cp) => Some(app.ledger.observe(&app.upstream, cp).await),
        None => None,
    };
    let signed = observation.as_ref().and_then(|o| o.trusted()).cloned();
    let no_checkpoint = Verdict::Failed(Msg::SignatureFailed("no checkpoint".into()));
    let mut problems: Vec<Problem> = r.problems.iter().cloned().map(Problem::Reported).collect();
    let mut chain_ok = r.chain_complete;
    let mut expected_prev = 0u64;
    let mut items = Vec::new();
    for item in &r.items {
        // Each line's entry: included in the report's signed checkpoint,
        // and naming the person with the back-pointer the report shows.
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
                .unwrap_or_else(|| no_checkpoint.clone()),
            Some(cp) => verify_item(app, item, &r.subject, cp).await,
        };
        if verdict.is_failed() {
            chain_ok = false;
            problems.push(Problem::Line(item.seq, verdict.msg().clone()));
        }
        // Exports name no one: they are listed outside the chain.
        if item.action != "audit_exported" {
            if item.prev_seq != expected_prev {
                chain_ok = false;
                problems.push(Problem::Found(Msg::ChainBroken {
                    seq: item.seq,
                    points_to: item.prev_seq,
                    found: expected_prev,
                }));
            }
            expected_prev = item.seq;
        }
        items.push((item.clone(), verdict));
    }
    let chain = if chain_ok && signed.is_some() {
        Verdict::Verified(Msg::ChainComplete {
            entries: r.entries_checked,
        })
    } else {
        Verdict::Failed(Msg::ChainIncomplete)
    };
    ReportData {
        result: Ok(Checked {
            subject: r.subject,
            checkpoint: observation
                .as_ref()
                .and_then(|o| o.checkpoint.clone().map(|c| (c, o.note.clone()))),
            signature: observation.map(|o| o.signature).unwrap_or(no_checkpoint),
            chain,
            problems,
            items,
        }),
        id_masked,
        made_ms,
    }
}

fn report_view(app: &App, d: &ReportData, t: &Labels) -> Result<ReportView, String> {
    let c = d.result.as_ref().map_err(|e| e.clone())?;
    let mut disclosures = Vec::new();
    let mut reads = Vec::new();
    for (item, verdict) in &c.items {
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
            verified: Mark::of(verdict, t),
        };
        if READ_ACTIONS.contains(&item.action.as_str()) {
            reads.push(row);
        } else {
            disclosures.push(row);
        }
    }
    Ok(ReportView {
        subject: c.subject.clone(),
        id_masked: d.id_masked.clone(),
        made_at: when(d.made_ms, app.config.utc_offset).shown,
        checkpoint: c
            .checkpoint
            .as_ref()
            .map(|(cp, note)| cp_view(cp, note, app.ledger.key())),
        signature: Mark::of(&c.signature, t),
        chain: Mark::of(&c.chain, t),
        problems: c
            .problems
            .iter()
            .map(|p| match p {
                Problem::Reported(text) => text.clone(),
                Problem::Line(seq, m) => format!("{} {seq}: {}", t.seq, t.msg(m)),
                Problem::Found(m) => t.msg(m),
            })
            .collect(),
        disclosures,
        reads,
    })
}

/// The report's POST: the report is made (the gateway audits it), held for
/// this session, and the browser sent on to its address.
pub(super) async fn report(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Form(form): Form<ReportForm>,
) -> Response {
    let id = form.id_number.normalised();
    if id.is_empty() {
        return render(ReportPage {
            page: page(&app, &s, "report", "/report".into()),
            error: Some(s.lang.labels().id_required.to_string()),
            report: None,
        });
    }
    let data = make_report(&app, &id).await;
    let handle = app
        .held
        .put(&app.rng, &s.sid, HeldWhat::Report(Box::new(data)));
    see_other(&format!("/report/{handle}"))
}

pub(super) async fn held_report(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
    Path(handle): Path<String>,
) -> Response {
    let t = s.lang.labels();
    let mut p = ReportPage {
        page: page(&app, &s, "report", format!("/report/{handle}")),
        error: None,
        report: None,
    };
    match app.held.get(&s.sid, &handle).as_deref() {
        Some(HeldWhat::Report(data)) => match report_view(&app, data, t) {
            Ok(view) => p.report = Some(view),
            Err(e) => p.error = Some(e),
        },
        _ => {
            p.page.back = "/report".into();
            p.error = Some(t.expired.to_string());
        }
    }
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
