//! Search by actor (a GET form: the filters are in the address, bookmarkable)
//! and by person (the identity number in a POST form): the table holds
//! exactly the entries the gateway's `Audit.Query` gives an auditor.

use crate::support::*;
use gateway::proto::AuditQuery;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_by_actor_and_by_person() -> Res {
    let Some(env) = Env::start("search_by_actor_and_by_person").await else {
        return Ok(());
    };
    env.goto("/search").await?;
    env.type_into("#f-actor", "union/assistance").await?;
    env.click("#search-button").await?;
    env.find("#results").await?;
    let url = env.b().current_url().await?;
    assert!(url.as_str().contains("actor=union%2Fassistance"), "{url}");
    let shown = env.seqs("#results").await?;
    let rows = env.rows("#results").await?;
    assert!(rows.iter().all(|r| r[2] == "union/assistance"), "{rows:?}");
    let expected: Vec<u64> = env
        .query_all(AuditQuery {
            actor: "union/assistance".into(),
            ..Default::default()
        })
        .await
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(shown, expected);
    // A pull page, two look-ups and the denial.
    assert!(shown.len() >= 4, "{rows:?}");
    env.screenshot("search").await?;

    // By person: typed into the POST form.
    env.type_into("#p-id", PERSON).await?;
    env.click("#person-button").await?;
    env.find("#person-note").await?;
    let shown = env.seqs("#results").await?;
    // The gateway holds these entries about the person (through its
    // pseudonym); the last one is the console's own read, recorded after
    // the page was answered.
    let about: Vec<_> = env
        .query_all(AuditQuery {
            subject: env.person_token(),
            ..Default::default()
        })
        .await;
    let console_read = about
        .iter()
        .rev()
        .find(|e| e.action == "audit_queried" && e.actor == "auditor/compliance")
        .expect("the console's search was audited")
        .seq;
    let expected: Vec<u64> = about
        .iter()
        .map(|e| e.seq)
        .filter(|s| *s < console_read)
        .collect();
    assert_eq!(shown, expected);
    let actions: Vec<String> = env
        .rows("#results")
        .await?
        .into_iter()
        .map(|r| r[3].clone())
        .collect();
    assert!(actions.contains(&"记录交付".to_string()), "{actions:?}");
    assert!(actions.contains(&"个人查询".to_string()), "{actions:?}");
    env.screenshot("search-person").await?;
    env.stop().await;
    Ok(())
}
