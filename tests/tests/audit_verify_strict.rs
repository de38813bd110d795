//! `gateway audit verify` checks everything a line of an export states, not
//! only what the signed tree covers: an export written by the real `gateway
//! audit export` is edited the way someone who wants it to say something else
//! would (a seq or a leaf hash that disagrees with the entry on its line, a
//! line repeated or left out, a field the format does not have, an entry
//! emptied or withheld), and the real `gateway audit verify` exits non-zero
//! naming the line (its number in the file and its seq). The untouched export
//! verifies.

use crate::audit_support::*;
use gateway_tests::{ProcessServer, ServerState};
use std::path::Path;
use std::process::Command;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

/// `gateway audit verify FILE --key VKEY`: (exit code, stdout, stderr).
fn verify_cli(file: &Path, vkey: &Path) -> (Option<i32>, String, String) {
    let out = Command::new(binary())
        .args(["audit", "verify"])
        .arg(file)
        .arg("--key")
        .arg(vkey)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Replaces exactly one occurrence of `from` in `line`.
fn edit(line: &str, from: &str, to: &str) -> String {
    assert_eq!(line.matches(from).count(), 1, "`{from}` in {line}");
    line.replacen(from, to, 1)
}

fn field<'a>(line: &'a str, name: &str) -> &'a str {
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    match &v[name] {
        serde_json::Value::String(s) => {
            let start = line.find(s.as_str()).unwrap();
            &line[start..start + s.len()]
        }
        other => panic!("{name} is {other}"),
    }
}

#[tokio::test]
async fn verify_names_the_line_whose_statements_disagree_with_its_entry() {
    let pki = pki();
    let state = ServerState::new();
    let server = ProcessServer::start(binary(), &pki, &state);
    let addr = server.addr.to_string();
    let agency = gateway::client::connect(&addr, &pki.client("agency/hrss"))
        .await
        .unwrap();
    gateway::client::push_file(
        agency,
        &gateway_tests::sample("hrss.csv"),
        &Default::default(),
        |_| {},
    )
    .await
    .unwrap();
    let union = gateway::client::connect(&addr, &pki.client("union/assistance"))
        .await
        .unwrap();
    gateway::client::pull(union.clone(), pull_request(), |_| Ok(()))
        .await
        .unwrap();
    // A refusal after the delivery, so that the delivery is not the last entry.
    let outside = gateway::proto::PullRequest {
        purpose: "marketing".into(),
        ..pull_request()
    };
    gateway::client::pull(union, outside, |_| Ok(()))
        .await
        .unwrap_err();

    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("audit.jsonl");
    let run = Command::new(binary())
        .args(["audit", "export", "--out"])
        .arg(&export)
        .args(["--addr", &addr])
        .arg("--certs-dir")
        .arg(pki.dir.path())
        .args(["--identity", "auditor/compliance"])
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    drop(server);
    let vkey = state.data_dir().join("audit-log.vkey");

    let (code, stdout, stderr) = verify_cli(&export, &vkey);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("OK: "), "{stdout}");

    let text = std::fs::read_to_string(&export).unwrap();
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    // lines[0] is the header (file line 1); lines[k] holds entry k (file line k + 1).
    let delivered = lines
        .iter()
        .skip(1)
        .position(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            let bytes = base64::Engine::decode(
                &base64::engine::general_purpose::STANDARD,
                v["entry"].as_str().unwrap(),
            )
            .unwrap();
            gateway::audit::CanonicalEntry::decode(&bytes)
                .unwrap()
                .action
                == "records_delivered"
        })
        .expect("a delivery entry")
        + 1;
    let k = delivered;
    assert!(lines.len() > k + 1, "an entry after the delivery");
    let line_k = &lines[k];
    let next_hash = field(&lines[k + 1], "leaf_hash").to_string();
    let seq = |s: usize| format!("\"seq\":{s},");

    let mut cases: Vec<(&str, Vec<String>, String)> = Vec::new();
    let with = |k: usize, new: String| {
        let mut l = lines.clone();
        l[k] = new;
        l
    };
    cases.push((
        "a stated seq that is not the entry's",
        with(k, edit(line_k, &seq(k), &seq(k + 40))),
        format!(
            "line {} (seq {k}): it states seq {}, but its entry is entry {k}",
            k + 1,
            k + 40
        ),
    ));
    cases.push((
        "a stated leaf hash that is not the entry's",
        with(
            k,
            edit(line_k, field(line_k, "leaf_hash"), next_hash.as_str()),
        ),
        format!(
            "line {} (seq {k}): the leaf_hash it states is not the hash of its entry",
            k + 1
        ),
    ));
    let mut repeated = lines.clone();
    repeated.insert(k + 1, line_k.clone());
    cases.push((
        "a line repeated",
        repeated,
        format!(
            "line {} (seq {}): seq {k} again, as on line {}",
            k + 2,
            k + 1,
            k + 1
        ),
    ));
    let mut left_out = lines.clone();
    left_out.remove(k);
    cases.push((
        "a line left out",
        left_out,
        format!("line {}: entry {k} was dropped", k + 1),
    ));
    cases.push((
        "an unknown field in a line",
        with(
            k,
            edit(line_k, "\"entry\":", "\"comment\":\"x\",\"entry\":"),
        ),
        format!("line {} (seq {k}): unknown field `comment`", k + 1),
    ));
    cases.push((
        "an unknown field in the header",
        with(
            0,
            edit(
                &lines[0],
                "\"version\":",
                "\"signed_by\":\"x\",\"version\":",
            ),
        ),
        "line 1 (the header): unknown field `signed_by`".to_string(),
    ));
    cases.push((
        "a field stated twice",
        with(k, edit(line_k, &seq(k), &format!("{}{}", seq(k), seq(k)))),
        format!(
            "line {} (seq {k}): field `seq` appears more than once",
            k + 1
        ),
    ));
    let entry = field(line_k, "entry").to_string();
    cases.push((
        "an entry emptied",
        with(k, edit(line_k, &entry, "")),
        format!("line {} (seq {k}): `entry` must be", k + 1),
    ));
    cases.push((
        "an entry withheld",
        with(
            k,
            edit(line_k, &format!("\"entry\":\"{entry}\""), "\"entry\":null"),
        ),
        format!("line {}: entry {k} is missing", k + 1),
    ));
    cases.push((
        "the entry field left out",
        with(k, edit(line_k, &format!(",\"entry\":\"{entry}\""), "")),
        format!("line {} (seq {k}): field `entry` is missing", k + 1),
    ));
    let mut blank = lines.clone();
    blank.insert(k, String::new());
    cases.push((
        "a blank line",
        blank,
        format!("line {}: an empty line", k + 1),
    ));

    for (what, edited, expected) in cases {
        let path = dir.path().join("edited.jsonl");
        std::fs::write(&path, edited.join("\n") + "\n").unwrap();
        let (code, stdout, stderr) = verify_cli(&path, &vkey);
        assert_eq!(code, Some(1), "{what}: {stdout}{stderr}");
        assert!(!stdout.contains("OK"), "{what}: {stdout}");
        assert!(stderr.contains(&expected), "{what}: {stderr}");
    }
}
