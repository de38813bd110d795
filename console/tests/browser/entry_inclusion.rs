//! An entry opened from the search shows its decoded fields and leaf hash,
//! and its inclusion in the signed checkpoint as verified by the console;
//! the person's previous entry is one click away.

use crate::support::*;
use gateway::proto::{AuditQuery, InclusionRequest};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_shows_its_inclusion_verified() -> Res {
    let Some(env) = Env::start("an_entry_shows_its_inclusion_verified").await else {
        return Ok(());
    };
    let lookups = env
        .query_all(AuditQuery {
            action: "person_looked_up".into(),
            ..Default::default()
        })
        .await;
    let second = lookups.last().expect("two look-ups");
    let prev = second.subjects[0].prev_seq;
    assert!(prev > 0);

    env.goto("/search?action=person_looked_up").await?;
    env.click(&format!("#results tr[data-seq='{}'] a.seq", second.seq))
        .await?;
    env.find("#inclusion-verdict").await?;
    assert!(
        env.b()
            .current_url()
            .await?
            .as_str()
            .ends_with(&format!("/entry/{}", second.seq))
    );
    assert_eq!(
        env.attr("#inclusion-verdict", "data-state").await?,
        "verified"
    );
    assert_eq!(
        env.attr("#signature-verdict", "data-state").await?,
        "verified"
    );
    assert_eq!(env.text("#entry-actor").await?, "union/assistance");
    assert_eq!(
        env.attr("#entry-action", "data-action").await?,
        "person_looked_up"
    );
    // The leaf hash shown is the hash of the entry's canonical bytes.
    let proof = env
        .auditor()
        .await
        .prove_inclusion(InclusionRequest {
            seq: second.seq,
            tree_size: 0,
        })
        .await?
        .into_inner();
    assert_eq!(
        env.text("#leaf-hash").await?,
        hex::encode(tlog::leaf_hash(&proof.canonical))
    );
    let details = env.text("#details").await?;
    assert!(details.contains("KN-2026-0002"), "{details}");
    env.screenshot("entry").await?;

    // The person's previous entry.
    env.click("a.prev-entry").await?;
    env.find("#inclusion-verdict").await?;
    assert!(
        env.b()
            .current_url()
            .await?
            .as_str()
            .ends_with(&format!("/entry/{prev}"))
    );
    assert_eq!(
        env.attr("#inclusion-verdict", "data-state").await?,
        "verified"
    );
    env.stop().await;
    Ok(())
}
