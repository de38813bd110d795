//! The README's worked example, through the real binary: `gateway serve` on a
//! fresh directory creates its dev PKI, keys and data directory and says loudly
//! that it runs in dev mode; `gateway push` sends the hrss sample as agency hrss;
//! `gateway pull` writes the masked records as JSON Lines.

use gateway_tests::{sample, shipped_policies};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn serve_push_pull_from_a_fresh_directory() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.path().join("serve.log")).unwrap();
    let server = Killed(
        Command::new(binary())
            .args(["serve", "--listen", &addr])
            .current_dir(dir.path())
            .env("GATEWAY_POLICIES_DIR", shipped_policies())
            .env_remove("GATEWAY_CONFIG")
            .stdout(Stdio::null())
            .stderr(log.try_clone().unwrap())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(&addr).is_err() {
        assert!(Instant::now() < deadline, "gateway did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    for f in [
        "certs/dev/ca.pem",
        "certs/dev/server.pem",
        "certs/dev/agency/hrss.pem",
        "certs/dev/union/assistance.pem",
        "certs/dev/auditor/compliance.pem",
        "certs/dev/keys.toml",
        "data/gateway.db",
    ] {
        assert!(dir.path().join(f).exists(), "{f} was not created");
    }

    let push = Command::new(binary())
        .args(["push", "--file"])
        .arg(sample("hrss.csv"))
        .args(["--identity", "agency/hrss", "--addr", &addr])
        .arg("--report")
        .arg(dir.path().join("hrss.rejections.csv"))
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&push.stdout);
    assert!(
        push.status.success(),
        "push failed: {stdout} {}",
        String::from_utf8_lossy(&push.stderr)
    );
    assert!(stdout.contains("20 accepted"), "{stdout}");
    assert!(stdout.contains("id_checksum"), "{stdout}");

    let pull = Command::new(binary())
        .args([
            "pull",
            "--kind",
            "social_insurance",
            "--purpose",
            "hardship_screening",
            "--out",
            "out.jsonl",
        ])
        .args(["--identity", "union/assistance", "--addr", &addr])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        pull.status.success(),
        "pull failed: {}",
        String::from_utf8_lossy(&pull.stderr)
    );
    let out = std::fs::read_to_string(dir.path().join("out.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(!lines.is_empty());
    assert!(
        lines
            .iter()
            .all(|l| l["forms"]["person_id"] == "pseudonymised")
    );

    drop(server);
    let log = std::fs::read_to_string(dir.path().join("serve.log")).unwrap();
    assert!(
        log.contains("DEV MODE"),
        "dev mode must be announced loudly: {log}"
    );
}
