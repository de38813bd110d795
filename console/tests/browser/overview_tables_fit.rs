//! The overview's tables fit their cards: at the window widths officers use,
//! in both languages, no table is wider than the card that holds it (the
//! deliveries table's last column, re-identifications, was cut off in
//! English when it shared a row with the refusals).

use crate::support::*;

/// The ids of the tables on the page wider than their scroll box.
const OVERFLOWING: &str = "return [...document.querySelectorAll('main .scroll')]\
    .filter(s => s.scrollWidth > s.clientWidth)\
    .map(s => s.querySelector('table').id)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_overview_tables_fit_their_cards() -> Res {
    let Some(env) = Env::start("the_overview_tables_fit_their_cards").await else {
        return Ok(());
    };
    env.goto("/").await?;
    env.find("#deliveries").await?;
    for lang in ["zh-CN", "en"] {
        if lang == "en" {
            env.click("#lang-switch").await?;
            env.find("html[lang='en']").await?;
            env.find("#deliveries").await?;
        }
        for width in [1280, 1200, 1024] {
            env.b().set_window_size(width, 1000).await?;
            let overflowing = env.b().execute(OVERFLOWING, vec![]).await?;
            assert_eq!(
                overflowing,
                serde_json::json!([]),
                "{lang}, a {width} px window: these tables are cut off"
            );
            env.screenshot_width(&format!("overview-{lang}-{width}"), width)
                .await?;
        }
    }
    env.stop().await;
    Ok(())
}
