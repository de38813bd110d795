//! Simplified Chinese by default; one button switches every label to
//! English, the choice is kept across pages, and the same button switches back.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_language_switches() -> Res {
    let Some(env) = Env::start("the_language_switches").await else {
        return Ok(());
    };
    env.goto("/").await?;
    assert_eq!(env.attr("html", "lang").await?, "zh-CN");
    assert_eq!(env.text("#nav-overview").await?, "总览");
    assert_eq!(
        env.text("#chart-heading").await?,
        "每日条目数（按操作，近 14 天）"
    );
    assert_eq!(env.attr("#log-verdict", "data-state").await?, "verified");
    env.screenshot("overview").await?;
    // The README's picture (docs/console.png): the top of the overview.
    env.screenshot_window("readme-overview", 1200, 1300).await?;

    env.click("#lang-switch").await?;
    env.find("html[lang='en']").await?;
    assert!(env.b().current_url().await?.as_str().ends_with('/'));
    assert_eq!(env.text("#nav-overview").await?, "Overview");
    assert_eq!(env.text("#nav-search").await?, "Search");
    assert_eq!(env.text("#verify-now").await?, "Verify now");
    let body = env.text("main").await?;
    assert!(
        !body.chars().any(|c| ('\u{4e00}'..='\u{9fff}').contains(&c)),
        "{body}"
    );
    env.screenshot("overview-en").await?;

    // Kept across pages.
    env.click("#nav-checkpoints").await?;
    env.find("#history").await?;
    assert_eq!(env.attr("html", "lang").await?, "en");
    assert_eq!(env.text("h1").await?, "Signed checkpoint history");
    env.screenshot("checkpoints-en").await?;
    env.goto("/search?actor=union/assistance").await?;
    env.find("#results").await?;
    assert_eq!(env.text("#search-button").await?, "Search");

    // And back, to the same page with its filters.
    env.click("#lang-switch").await?;
    env.find("html[lang='zh-CN']").await?;
    assert!(
        env.b()
            .current_url()
            .await?
            .as_str()
            .ends_with("/search?actor=union%2Fassistance")
    );
    assert_eq!(env.text("#search-button").await?, "检索");
    env.stop().await;
    Ok(())
}
