//! `gateway console` through the real binary: the subcommand documents the
//! console's flags, and serves the compliance console on a loopback port,
//! reading the real gateway's audit log as an auditor over mutual TLS and
//! showing it verified with the pinned key.

use gateway_tests::console::ConsoleProcess;
use gateway_tests::{ServerState, TestPki, TestServer, http_get};
use std::path::Path;
use std::process::Command;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

#[test]
fn console_help_names_its_flags() {
    let output = Command::new(binary())
        .args(["console", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    for flag in ["--identity", "--addr", "--listen", "--log-key", "--state"] {
        assert!(
            help.contains(flag),
            "`gateway console --help` lacks {flag}:\n{help}"
        );
    }
    // Listed among the gateway's commands.
    let output = Command::new(binary()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(
        help.lines().any(|l| l.trim_start().starts_with("console ")),
        "{help}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn console_serves_the_verified_overview_on_loopback() {
    let mut pki = TestPki::new();
    pki.issue("auditor/compliance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let console = ConsoleProcess::start(binary(), &["console"], &server, &pki, &state)
        .expect("start `gateway console`");
    let addr: std::net::SocketAddr = console
        .url
        .trim_start_matches("http://")
        .parse()
        .expect("the console's address");
    assert!(addr.ip().is_loopback(), "{addr}");

    let (status, page) = http_get(addr, "/").await;
    assert!(status.contains(" 200 "), "{status}: {page}");
    assert!(page.contains("auditor/compliance"), "{page}");
    assert!(
        page.contains("id=\"overall\" data-state=\"verified\""),
        "{page}"
    );

    drop(console);
    server.stop().await;
}
