//! The checkpoints this console has seen (its state file), newest first,
//! each signature checked again with the pinned key and the consistency
//! between neighbours proved again by the gateway and checked here.

use super::{CpView, Mark, Page, cp_view, page, render, when};
use crate::App;
use crate::i18n::Msg;
use crate::ledger::{Verdict, reprove};
use crate::session::Session;
use askama::Template;
use axum::extract::{Extension, State};
use axum::response::Response;
use std::sync::Arc;

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

pub(super) async fn checkpoints(
    State(app): State<Arc<App>>,
    Extension(s): Extension<Session>,
) -> Response {
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
