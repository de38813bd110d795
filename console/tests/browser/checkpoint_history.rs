//! The checkpoints page lists the signed checkpoints the console has seen,
//! newest first, each signature checked with the pinned key and each one
//! proved consistent with the one before; the history survives a restart of
//! the console, which then proves the gateway's next checkpoint consistent
//! with the last one it saw.

use crate::support::*;
use fantoccini::Locator;

async fn history(env: &Env) -> Res<Vec<(u64, String, String)>> {
    let mut out = Vec::new();
    for tr in env.b().find_all(Locator::Css("#history tbody tr")).await? {
        let marks = tr.find_all(Locator::Css(".mark")).await?;
        out.push((
            tr.attr("data-size").await?.unwrap_or_default().parse()?,
            marks[0].attr("data-state").await?.unwrap_or_default(),
            marks[1].attr("data-state").await?.unwrap_or_default(),
        ));
    }
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_history_is_kept_and_proved_consistent() -> Res {
    let Some(mut env) = Env::start("the_checkpoint_history_is_kept_and_proved_consistent").await
    else {
        return Ok(());
    };
    env.goto("/").await?;
    env.find("#log-verdict").await?;
    env.one_entry().await;
    env.goto("/checkpoints").await?;
    env.find("#history").await?;
    let seen = history(&env).await?;
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert!(seen[0].0 > seen[1].0);
    assert_eq!(seen[0].1, "verified");
    assert_eq!(seen[0].2, "verified");
    assert_eq!(seen[1].2, "info", "the first one is trusted on first use");

    // A new console process on the same state file.
    env.restart_console()?;
    env.one_entry().await;
    env.goto("/checkpoints").await?;
    env.find("#history").await?;
    assert_eq!(
        env.attr("#consistency-verdict", "data-state").await?,
        "verified"
    );
    let text = env.text("#current-heading + dl").await?;
    assert!(
        text.contains(&format!("{} → {}", seen[0].0, seen[0].0 + 1)),
        "{text}"
    );
    let after = history(&env).await?;
    assert_eq!(after.len(), 3, "{after:?}");
    assert_eq!(&after[1..], &seen[..]);
    assert!(
        after[..2]
            .iter()
            .all(|(_, sig, cons)| sig == "verified" && cons == "verified"),
        "{after:?}"
    );
    env.screenshot("checkpoints").await?;
    env.stop().await;
    Ok(())
}
