//! Raw personal values are encrypted at rest: after pushing the hrss sample and
//! pulling it, no identity number or name from it appears anywhere in the data
//! directory (database, write-ahead log), in any encoding it arrived in, nor,
//! on PostgreSQL, in any row of any table of the database.

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::PullRequest;
use gateway_tests::{ServerState, TestPki, TestServer, hrss_personal_values, sample};

fn files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[tokio::test]
async fn no_raw_identity_number_or_name_is_stored_in_clear() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let summary = push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    assert!(summary.accepted > 0);
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    pull(
        union,
        PullRequest {
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |_| Ok(()),
    )
    .await
    .unwrap();

    let (ids, names) = hrss_personal_values();
    let mut needles: Vec<Vec<u8>> = Vec::new();
    for v in ids.iter().chain(names.iter()) {
        needles.push(v.as_bytes().to_vec());
        needles.push(encoding_rs::GBK.encode(v).0.into_owned());
    }
    if let Some(db) = state.database() {
        // The subject index is written after the commit: wait for it, so
        // its rows are searched too.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while db.query_text(
            "SELECT (SELECT size FROM audit_head) = (SELECT indexed_through FROM audit_subject_index)",
        )[0][0]
            .as_deref()
            != Some("t")
        {
            assert!(std::time::Instant::now() < deadline, "the subject index stays behind");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        // Every row of every table as text: text columns as they are,
        // binary ones as `\x` and lowercase hex.
        let tables =
            db.query_text("SELECT tablename FROM pg_tables WHERE schemaname = current_schema()");
        assert!(tables.len() > 10, "{tables:?}");
        let mut rows = 0;
        for table in tables.iter().filter_map(|t| t[0].as_deref()) {
            for row in db.query_text(&format!("SELECT t::text FROM {table} t")) {
                let text = row[0].clone().unwrap_or_default();
                rows += 1;
                for n in &needles {
                    assert!(
                        !text.contains(&String::from_utf8_lossy(n).into_owned())
                            && !text.contains(&hex::encode(n)),
                        "table {table} holds a raw personal value in clear"
                    );
                }
            }
        }
        assert!(rows > 50, "only {rows} rows stored");
        server.stop().await;
        return;
    }
    let stored = files(&state.data_dir());
    assert!(!stored.is_empty());
    for path in &stored {
        let bytes = std::fs::read(path).unwrap();
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_slice()),
                "{} holds a raw personal value in clear",
                path.display()
            );
        }
    }
    server.stop().await;
}
