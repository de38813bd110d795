//! `gateway pull` writes CSV and JSON Lines, and with `--cursor-file` a second
//! run carries on exactly where the first stopped: appended, with no gap and no
//! duplicate.

use gateway::client::{PushOptions, push_file};
use gateway_tests::{ProcessServer, ServerState, TestPki, sample};
use std::path::Path;
use std::process::Command;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_pull_resumes_from_its_cursor_file() {
    gateway::tls::install_crypto_provider();
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = ProcessServer::start(binary(), &pki, &state);
    let addr = server.addr.to_string();
    let agency = gateway::client::connect(&addr, &pki.client("agency/hrss"))
        .await
        .unwrap();
    push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();

    let work = tempfile::tempdir().unwrap();
    let pull = |extra: &[&str]| {
        let out = Command::new(binary())
            .args([
                "pull",
                "--kind",
                "social_insurance",
                "--purpose",
                "hardship_screening",
            ])
            .args(["--identity", "union/assistance", "--addr", &addr])
            .arg("--certs-dir")
            .arg(pki.dir.path())
            .args(extra)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    pull(&["--out", "all.jsonl"]);
    let all = std::fs::read_to_string(work.path().join("all.jsonl")).unwrap();
    let total = all.lines().count();
    assert!(total > 5);

    pull(&[
        "--out",
        "part.csv",
        "--cursor-file",
        "cursor",
        "--limit",
        "5",
    ]);
    let saved: u64 = std::fs::read_to_string(work.path().join("cursor"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    pull(&["--out", "part.csv", "--cursor-file", "cursor"]);
    let csv = std::fs::read_to_string(work.path().join("part.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("cursor,kind,record_id,changed_at,removed,person_id,"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(
        rows.len(),
        total,
        "resumed output must have every record exactly once"
    );
    let cursors: Vec<u64> = rows
        .iter()
        .map(|r| r.split(',').next().unwrap().parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|w| w[0] < w[1]), "{cursors:?}");
    assert_eq!(cursors[4], saved);
    // The masked name column: first character kept, the rest masked.
    let name_col = header.split(',').position(|c| c == "name").unwrap();
    assert!(
        rows.iter()
            .all(|r| r.split(',').nth(name_col).unwrap().ends_with('*'))
    );
    drop(server);
}
