//! Dev mode generates a PKI and keys on the spot, so it is safe only on this
//! machine. Through the real binary: `gateway serve` without a configuration
//! file still starts in dev mode on loopback (the quickstart); dev mode on a
//! non-loopback address refuses to start, before it generates anything; and a
//! configuration file that does not state `dev_mode` is refused, naming the
//! file and the key, so that a production file that forgets it can no longer
//! fall into dev mode.

use gateway_tests::shipped_policies;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

enum Outcome {
    /// It exited: its exit code and what it wrote to stderr.
    Exited(Option<i32>, String),
    /// It accepted a connection on 127.0.0.1:`port` (then it was stopped):
    /// what it wrote to stderr.
    Served(String),
}

/// `gateway serve ARGS` in `dir` with a clean environment, until it exits or
/// serves on 127.0.0.1:`port`.
fn serve(dir: &Path, port: u16, args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let log_path = dir.join("serve.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut cmd = Command::new(binary());
    cmd.arg("serve")
        .args(args)
        .current_dir(dir)
        .env("GATEWAY_POLICIES_DIR", shipped_policies())
        .stdout(Stdio::null())
        .stderr(log);
    for var in ["GATEWAY_CONFIG", "GATEWAY_DEV_MODE", "GATEWAY_LISTEN"] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Outcome::Exited(status.code(), std::fs::read_to_string(&log_path).unwrap());
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            let _ = child.kill();
            let _ = child.wait();
            return Outcome::Served(std::fs::read_to_string(&log_path).unwrap());
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "gateway neither served nor exited: {}",
                std::fs::read_to_string(&log_path).unwrap()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_without_a_configuration_file_starts_in_dev_mode_on_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    match serve(dir.path(), port, &["--listen", &listen], &[]) {
        Outcome::Served(log) => assert!(log.contains("DEV MODE"), "{log}"),
        Outcome::Exited(code, log) => panic!("exited with {code:?}: {log}"),
    }
    assert!(dir.path().join("certs/dev/ca.pem").exists());
}

#[test]
fn dev_mode_on_a_non_loopback_address_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let everywhere = format!("0.0.0.0:{port}");
    let ipv6_everywhere = format!("[::]:{port}");
    // (command-line arguments, environment, the address refused)
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
    let cases: [Case; 3] = [
        (&["--listen", &everywhere], &[], &everywhere),
        (&[], &[("GATEWAY_LISTEN", &everywhere)], &everywhere),
        (&["--listen", &ipv6_everywhere], &[], &ipv6_everywhere),
    ];
    for (args, env, addr) in cases {
        match serve(dir.path(), port, args, env) {
            Outcome::Exited(code, log) => {
                assert_eq!(code, Some(1), "{log}");
                assert!(
                    log.contains(&format!("dev mode only on a loopback address, not {addr}")),
                    "{log}"
                );
            }
            Outcome::Served(log) => panic!("dev mode served on {addr}: {log}"),
        }
        // Refused before anything was generated.
        assert!(!dir.path().join("certs").exists());
        assert!(!dir.path().join("data").exists());
    }
}

#[test]
fn a_configuration_file_must_state_dev_mode() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, format!("listen = \"127.0.0.1:{port}\"\n")).unwrap();
    let config_arg = config.to_str().unwrap();
    match serve(dir.path(), port, &["--config", config_arg], &[]) {
        Outcome::Exited(code, log) => {
            assert_eq!(code, Some(1), "{log}");
            assert!(
                log.contains(&format!(
                    "configuration file {} does not state `dev_mode`",
                    config.display()
                )),
                "{log}"
            );
        }
        Outcome::Served(log) => panic!("served without dev_mode stated: {log}"),
    }
    assert!(!dir.path().join("certs").exists());

    // Stated, dev mode still only on loopback.
    std::fs::write(
        &config,
        format!("listen = \"0.0.0.0:{port}\"\ndev_mode = true\n"),
    )
    .unwrap();
    match serve(dir.path(), port, &["--config", config_arg], &[]) {
        Outcome::Exited(code, log) => {
            assert_eq!(code, Some(1), "{log}");
            assert!(log.contains("dev mode only on a loopback address"), "{log}");
        }
        Outcome::Served(log) => panic!("dev mode served on 0.0.0.0: {log}"),
    }

    // Stated and on loopback, it serves.
    std::fs::write(
        &config,
        format!("listen = \"127.0.0.1:{port}\"\ndev_mode = true\n"),
    )
    .unwrap();
    match serve(dir.path(), port, &["--config", config_arg], &[]) {
        Outcome::Served(log) => assert!(log.contains("DEV MODE"), "{log}"),
        Outcome::Exited(code, log) => panic!("exited with {code:?}: {log}"),
    }
}
