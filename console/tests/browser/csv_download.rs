//! The search results download as CSV: every matching entry (all pages),
//! one line each, as the gateway's `Audit.Query` gives them; for a person,
//! through a POST form.

use crate::support::*;
use gateway::proto::AuditQuery;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

async fn downloaded(dir: &Path, already: usize) -> Res<PathBuf> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let done: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "csv"))
            .collect();
        if done.len() > already {
            let mut done = done;
            done.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
            return Ok(done.pop().unwrap());
        }
        if Instant::now() > deadline {
            return Err("no CSV was downloaded".into());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn read_csv(path: &Path) -> Res<Vec<csv::StringRecord>> {
    let text = std::fs::read_to_string(path)?;
    let text = text.strip_prefix('\u{feff}').ok_or("no byte-order mark")?;
    let mut r = csv::Reader::from_reader(text.as_bytes());
    assert_eq!(
        r.headers()?.iter().collect::<Vec<_>>(),
        [
            "seq", "at_utc", "actor", "action", "outcome", "kinds", "subjects", "details"
        ]
    );
    Ok(r.records().collect::<Result<_, _>>()?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_search_downloads_as_csv() -> Res {
    let Some(env) = Env::start("the_search_downloads_as_csv").await else {
        return Ok(());
    };
    let downloads = env.browser.as_ref().unwrap().downloads.path().to_path_buf();
    // Ten to a page: the download holds all pages.
    env.goto("/search?outcome=ok&size=10").await?;
    env.find("#results").await?;
    env.click("#csv-download").await?;
    let file = downloaded(&downloads, 0).await?;
    let rows = read_csv(&file)?;
    let expected = env
        .query_all(AuditQuery {
            outcome: "ok".into(),
            ..Default::default()
        })
        .await;
    assert!(expected.len() > 10);
    let got: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    let want: Vec<u64> = expected.iter().map(|e| e.seq).collect();
    assert_eq!(got, want);
    for (r, e) in rows.iter().zip(&expected) {
        assert_eq!(&r[2], e.actor.as_str());
        assert_eq!(&r[3], e.action.as_str());
        assert_eq!(&r[4], "ok");
        assert_eq!(&r[7], e.details_json.as_str());
    }

    // A person's entries, through the POST form.
    env.goto("/search").await?;
    env.type_into("#p-id", PERSON).await?;
    env.click("#person-button").await?;
    env.find("#person-note").await?;
    let page_seqs = env.seqs("#results").await?;
    env.click("#csv-download").await?;
    let file = downloaded(&downloads, 1).await?;
    assert!(!file.to_string_lossy().contains(PERSON));
    let rows = read_csv(&file)?;
    let got: Vec<u64> = rows.iter().map(|r| r[0].parse().unwrap()).collect();
    // The page's entries, then the page's own (audited) read.
    assert_eq!(got[..page_seqs.len()], page_seqs[..]);
    let token = env.person_token();
    assert!(rows.iter().all(|r| r[6].contains(&token)));
    env.stop().await;
    Ok(())
}
