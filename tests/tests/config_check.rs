//! `gateway config check`, through the real binary: a configuration unfit for
//! production gets one line per problem (`file: setting: problem`) and a
//! non-zero exit; a sound one gets `ok`.

use gateway_tests::{TestPki, shipped_policies};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

fn config_check(config: &Path, online: bool) -> Output {
    let mut command = Command::new(binary());
    command.args(["config", "check", "--config"]).arg(config);
    if online {
        command.arg("--online");
    }
    // Only the file speaks: nothing from this test's environment.
    for (var, _) in std::env::vars() {
        if var.starts_with("GATEWAY_") {
            command.env_remove(var);
        }
    }
    command.output().unwrap()
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn a_bad_configuration_lists_every_problem_and_fails() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    // The server key, readable by everyone.
    let key = dir.path().join("server.key");
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    chmod(&key, 0o644);
    // A policy directory with a broken policy.
    let policies = dir.path().join("policies");
    std::fs::create_dir(&policies).unwrap();
    std::fs::write(
        policies.join("broken.toml"),
        "consumer = \"broken\"\nversion = \n",
    )
    .unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            r#"dev_mode = true
keys_file = "{keys}"
policies_dir = "{policies}"
data_dir = "{data}"

[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
"#,
            keys = dir.path().join("missing-keys.toml").display(),
            policies = policies.display(),
            data = dir.path().join("data").display(),
            ca = pki.path("ca.pem").display(),
            cert = pki.path("server.pem").display(),
            key = key.display(),
        ),
    )
    .unwrap();

    let out = config_check(&config, false);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    let file = config.display().to_string();
    for (setting, says) in [
        ("dev_mode", "set dev_mode = false"),
        ("keys_file", "missing-keys.toml"),
        ("[tls] key", "readable by others (mode 0644)"),
        ("[tls] crls", "no certificate revocation source"),
        ("policies_dir", "broken.toml"),
    ] {
        let prefix = format!("{file}: {setting}: ");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&prefix) && l.contains(says)),
            "no `{prefix}… {says} …` line in:\n{stdout}"
        );
    }
    assert!(!lines.contains(&"ok"), "{stdout}");
}

/// A production configuration in `dir` (its key files there, with the
/// permissions `config check` wants), with the PKI's certificates.
fn production_config(dir: &Path, pki: &TestPki) -> String {
    let key = dir.join("server.key");
    std::fs::copy(pki.path("server.key"), &key).unwrap();
    chmod(&key, 0o600);
    let keys = dir.join("keys.toml");
    if !keys.exists() {
        gateway::keys::Keys::generate_file(&keys).unwrap();
    }
    chmod(&keys, 0o600);
    format!(
        r#"dev_mode = false
listen = "0.0.0.0:7443"
keys_file = "{keys}"
policies_dir = "{policies}"
data_dir = "{data}"

[tls]
ca = "{ca}"
cert = "{cert}"
key = "{key}"
crls = ["{crl}"]
"#,
        keys = keys.display(),
        policies = shipped_policies().display(),
        data = dir.join("data").display(),
        ca = pki.path("ca.pem").display(),
        cert = pki.path("server.pem").display(),
        key = key.display(),
        crl = pki.path("crl.pem").display(),
    )
}

#[test]
fn a_production_configuration_is_ok() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    std::fs::write(&config, production_config(dir.path(), &pki)).unwrap();

    let out = config_check(&config, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout.trim(), "ok");

    // --online: a store whose schema is newer than this build knows (a
    // rollback to an older binary) is a problem, naming both versions.
    let data = dir.path().join("data");
    drop(gateway::store::sqlite::SqliteStore::open(&data).unwrap());
    let newer = gateway::store::sqlite::SCHEMA_VERSION + 1;
    rusqlite::Connection::open(data.join("gateway.db"))
        .unwrap()
        .pragma_update(None, "user_version", newer)
        .unwrap();
    let out = config_check(&config, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("data_dir: ") && stdout.contains(&format!("schema is version {newer}")),
        "{stdout}"
    );

    // --online: a data directory that cannot be opened is a problem (here
    // a file stands where it should be).
    std::fs::remove_dir_all(&data).unwrap();
    std::fs::write(&data, b"not a directory").unwrap();
    let out = config_check(&config, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("{}: data_dir: ", config.display())),
        "{stdout}"
    );
    // Offline, nothing is tried.
    assert!(config_check(&config, false).status.success());
}

/// With `[store] url`, `--online` looks at the database server's store
/// instead of the data directory: it must answer, and hold a schema this
/// build can serve. The look changes nothing in the database.
#[test]
fn online_a_postgresql_store_is_probed_read_only() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("gateway.toml");
    let with_store = |url: &str| {
        let mut text = production_config(dir.path(), &pki);
        text.push_str(&format!("\n[store]\nurl = \"{url}\"\n"));
        std::fs::write(&config, text).unwrap();
    };

    // Nothing listens there.
    with_store("postgres://postgres@127.0.0.1:1/gateway?sslmode=disable&connect_timeout=2");
    let out = config_check(&config, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("[store] url: "),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline = config_check(&config, false);
    assert!(
        offline.status.success(),
        "{}",
        String::from_utf8_lossy(&offline.stdout)
    );

    // A database the gateway has not set up yet: fine, and still untouched.
    let db = gateway::store::postgres::testing::TestDatabase::create();
    with_store(db.url());
    let out = config_check(&config, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let tables = db.query_text("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'");
    assert_eq!(tables[0][0].as_deref(), Some("0"));

    // Set up by a newer gateway: a problem naming the version.
    drop(gateway::store::postgres::PgStore::open(db.url(), None).unwrap());
    db.query_text("INSERT INTO schema_version (version, applied_ms) VALUES (99, 0)");
    let out = config_check(&config, true);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("[store] url: ") && stdout.contains("schema is version 99"),
        "{stdout}"
    );
}
