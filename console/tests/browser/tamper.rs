//! One byte of one stored entry is flipped under a running console: after
//! "verify now" the overview names the altered entry and shows no verified
//! mark for the log, and the entry's own page shows its inclusion failing.

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_store_shows_as_failed() -> Res {
    let Some(env) = Env::start("a_flipped_byte_in_the_store_shows_as_failed").await else {
        return Ok(());
    };
    let target: u64 = env.db().query_row(
        "SELECT MIN(seq) FROM audit_log WHERE action = 'records_delivered'",
        [],
        |r| r.get::<_, i64>(0),
    )? as u64;
    // Before: all verified.
    env.goto("/").await?;
    assert_eq!(env.attr("#overall", "data-state").await?, "verified");
    assert_eq!(env.attr("#log-verdict", "data-state").await?, "verified");
    env.goto(&format!("/entry/{target}")).await?;
    assert_eq!(
        env.attr("#inclusion-verdict", "data-state").await?,
        "verified"
    );

    // The attacker flips one byte in the middle of the delivery entry.
    let conn = env.db();
    let mut bytes: Vec<u8> = conn.query_row(
        "SELECT entry FROM audit_log WHERE seq = ?1",
        [target as i64],
        |r| r.get(0),
    )?;
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    conn.execute(
        "UPDATE audit_log SET entry = ?1 WHERE seq = ?2",
        rusqlite::params![bytes, target as i64],
    )?;
    drop(conn);

    env.goto("/").await?;
    env.click("#verify-now").await?;
    env.find("#warnings").await?;
    assert_eq!(env.attr("#overall", "data-state").await?, "failed");
    assert_eq!(env.attr("#log-verdict", "data-state").await?, "failed");
    let warnings = env.text("#warnings").await?;
    assert!(
        warnings.contains(&format!("条目 {target} 被篡改")),
        "{warnings}"
    );
    assert!(
        env.find(&format!("#warnings a[href='/entry/{target}']"))
            .await
            .is_ok()
    );
    env.screenshot("overview-tampered").await?;

    env.click(&format!("#warnings a[href='/entry/{target}']"))
        .await?;
    env.find("#inclusion-verdict").await?;
    assert_eq!(
        env.attr("#inclusion-verdict", "data-state").await?,
        "failed"
    );
    assert!(env.find("#entry-flagged").await.is_ok());
    let verdict = env.text("#inclusion-verdict").await?;
    assert!(verdict.contains("验证失败"), "{verdict}");
    assert!(!verdict.contains("已验证"), "{verdict}");
    env.screenshot("entry-tampered").await?;

    // The search marks the entry too.
    env.goto("/search?action=records_delivered").await?;
    assert!(
        env.find(&format!("#results tr.flagged[data-seq='{target}']"))
            .await
            .is_ok()
    );
    env.stop().await;
    Ok(())
}
