//! `gateway push` through the real binary: the end summary counts rejected rows by
//! code, and the report file (`--report`, default `<file>.rejections.csv`) lists
//! every rejected row of the hrss sample by file row number, field, code and
//! message, without a raw personal value.

use gateway_tests::{ServerState, TestPki, TestServer, hrss_personal_values, labels, sample};
use std::path::Path;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_reports_every_rejected_row_of_the_hrss_sample() {
    let mut pki = TestPki::new();
    pki.issue("agency/hrss");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let out = tempfile::tempdir().unwrap();
    let report = out.path().join("report.csv");

    let certs_dir = pki.path("ca.pem").parent().unwrap().to_path_buf();
    let mut cmd = std::process::Command::new(binary());
    cmd.args(["push", "--file"])
        .arg(sample("hrss.csv"))
        .args(["--identity", "agency/hrss", "--batch-rows", "7"])
        .arg("--addr")
        .arg(server.addr.to_string())
        .arg("--certs-dir")
        .arg(&certs_dir)
        .arg("--report")
        .arg(&report)
        .env_remove("GATEWAY_ADDR");
    let output = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "push failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );

    let labels = labels("hrss");
    let rejected: Vec<_> = labels.iter().filter(|l| !l.accept).collect();
    let accepted = labels.len() - rejected.len();
    assert!(stdout.contains(&format!("{accepted} accepted")), "{stdout}");
    assert!(
        stdout.contains(&format!("{} rejected", rejected.len())),
        "{stdout}"
    );
    assert!(stdout.contains("  id_checksum: 2 rows"), "{stdout}");
    assert!(stdout.contains("  bad_amount: 2 rows"), "{stdout}");

    let text = std::fs::read_to_string(&report).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("row,field,code,message"));
    let rows: Vec<(u64, String, String)> = lines
        .map(|l| {
            let mut parts = l.splitn(4, ',');
            let row = parts.next().unwrap().parse().unwrap();
            let field = parts.next().unwrap().to_string();
            let code = parts.next().unwrap().to_string();
            assert!(
                !parts.next().unwrap_or_default().is_empty(),
                "a message: {l}"
            );
            (row, field, code)
        })
        .collect();
    // Exactly the labelled rows, each with its labelled field and code.
    let mut listed: Vec<u64> = rows.iter().map(|r| r.0).collect();
    listed.dedup();
    assert_eq!(
        listed,
        rejected.iter().map(|l| l.row).collect::<Vec<_>>(),
        "{text}"
    );
    for l in &rejected {
        assert!(
            rows.iter().any(|(row, field, code)| *row == l.row
                && Some(field.as_str()) == l.field.as_deref()
                && Some(code.as_str()) == l.code.as_deref()),
            "row {} {:?}/{:?} not in the report:\n{text}",
            l.row,
            l.field,
            l.code
        );
    }
    let (ids, names) = hrss_personal_values();
    for v in ids.iter().chain(names.iter()) {
        assert!(!text.contains(v.as_str()), "the report echoes a raw value");
        assert!(
            !stdout.contains(v.as_str()),
            "the summary echoes a raw value"
        );
    }
    server.stop().await;
}
