//! The overview: the latest full verification of the log (`scan`) with its
//! warnings, entries per day by action as a chart, deliveries by consumer
//! and purpose, and the refusals of the last seven days.

use super::{CpView, Mark, Page, cp_view, page, render, when};
use crate::i18n::Msg;
use crate::ledger::{Observation, Verdict, now_ms};
use crate::session::Session;
use crate::{App, chart};
use askama::Template;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Redirect, Response};
use std::sync::Arc;

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

pub(super) async fn overview(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
) -> Response {
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
pub(super) async fn verify_now(State(app): State<Arc<App>>) -> Response {
    app.snapshot(Some(now_ms())).await;
    Redirect::to("/").into_response()
}
