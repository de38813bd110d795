//! The identity number typed into the person search, the report and the
//! CSV download reaches the gateway in request bodies only: it is in no URL
//! of the browser's history, no page title, no file of the browser's
//! profile (history, session restore, caches, form data) and no log line of
//! the console process or of the gateway's.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_identity_number_stays_out_of_urls_history_and_logs() -> Res {
    let Some(mut env) = Env::start("the_identity_number_stays_out_of_urls_history_and_logs").await
    else {
        return Ok(());
    };
    let mut urls = Vec::new();
    let mut titles = Vec::new();

    env.goto("/search").await?;
    env.type_into("#p-id", PERSON).await?;
    env.click("#person-button").await?;
    env.find("#person-note").await?;
    urls.push(env.b().current_url().await?.to_string());
    titles.push(env.b().title().await?);
    env.click("#csv-download").await?;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;

    env.goto("/report").await?;
    env.type_into("#r-id", PERSON).await?;
    env.click("#report-button").await?;
    env.find("#report").await?;
    urls.push(env.b().current_url().await?.to_string());
    titles.push(env.b().title().await?);
    // The report is shown at an address holding a random handle; switching
    // the language shows it again there.
    let report_url = env.b().current_url().await?.to_string();
    assert!(report_url.contains("/report/"), "{report_url}");
    env.click("#lang-switch").await?;
    env.find("html[lang='en']").await?;
    assert_eq!(env.b().current_url().await?.to_string(), report_url);
    env.find("#report").await?;
    urls.push(report_url);
    // Back and forward do not bring the number back into an address either.
    env.b().back().await?;
    urls.push(env.b().current_url().await?.to_string());

    for u in &urls {
        assert!(!u.contains(PERSON), "{u}");
    }
    for t in &titles {
        assert!(!t.contains(PERSON), "{t}");
    }

    // The browser's own history, as Chromium wrote it to its profile.
    let browser = env.browser.take().unwrap();
    let (_downloads, profile) = browser.close().await?;
    let history = profile.path().join("Default/History");
    let copy = profile.path().join("history-copy.sqlite");
    std::fs::copy(&history, &copy)?;
    let db = rusqlite::Connection::open(&copy)?;
    let visited: Vec<String> = db
        .prepare("SELECT url || ' ' || title FROM urls")?
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    assert!(
        visited.iter().any(|u| u.contains("/report")),
        "the history was read: {visited:?}"
    );
    for u in &visited {
        assert!(!u.contains(PERSON), "{u}");
    }
    // Nor anywhere else in the profile: session restore (which keeps the
    // bodies of committed POST navigations), caches, form data.
    let mut files = Vec::new();
    walk(profile.path(), &mut files);
    assert!(files.len() > 10, "the profile was read: {files:?}");
    let utf16: Vec<u8> = PERSON.encode_utf16().flat_map(u16::to_le_bytes).collect();
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        let found = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
        assert!(
            !found(PERSON.as_bytes()) && !found(&utf16),
            "the browser's profile holds the number in {}",
            f.display()
        );
    }

    // Both processes' logs, at debug level.
    let console_logs = env.console.logs();
    assert!(
        console_logs.iter().any(|l| l.contains("route=\"/report\"")),
        "the console's log was captured: {console_logs:?}"
    );
    for line in &console_logs {
        assert!(!line.contains(PERSON), "console log: {line}");
    }
    let gateway_logs = gateway_logs();
    assert!(
        gateway_logs.contains("subject report"),
        "the gateway's log was captured"
    );
    for line in gateway_logs.lines() {
        assert!(!line.contains(PERSON), "gateway log: {line}");
    }
    env.stop().await;
    Ok(())
}

fn walk(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            walk(&p, out)
        } else {
            out.push(p)
        }
    }
}
