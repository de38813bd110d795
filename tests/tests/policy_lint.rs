//! `gateway policy check` passes the shipped policies and fails a broken
//! directory with `file:line: message` for every problem; `gateway policy
//! preview` shows, field by field, what a consumer would receive.

use gateway_tests::{sample, shipped_policies};
use std::path::Path;
use std::process::Command;

fn gateway() -> Command {
    Command::new(Path::new(env!("CARGO_BIN_EXE_gateway-under-test")))
}

#[test]
fn the_shipped_policies_pass_and_a_broken_directory_fails_with_locations() {
    let ok = gateway()
        .args(["policy", "check"])
        .arg(shipped_policies())
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(String::from_utf8_lossy(&ok.stdout).contains("consumer assistance"));

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("rights.toml"),
        "consumer = \"rights\"\npurposes = [\"injury_analysis\"]\n\n[kinds.social_insurance.fields]\nperson_id = { op = \"keep\" }\ncontribution_base = { op = \"keep\" }\nshoe_size = { op = \"keep\" }\n",
    )
    .unwrap();
    let bad = gateway()
        .args(["policy", "check"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    for (line, what) in [
        (5, "identifier data delivered in clear"),
        (6, "financial data delivered in clear"),
        (7, "no field `shoe_size`"),
    ] {
        let at = format!("rights.toml:{line}: ");
        assert!(
            err.lines().any(|l| l.contains(&at) && l.contains(what)),
            "missing {at}{what} in:\n{err}"
        );
    }
}

#[test]
fn preview_shows_before_and_after_for_each_field() {
    let out = gateway()
        .args([
            "policy",
            "preview",
            "--consumer",
            "assistance",
            "--purpose",
            "hardship_screening",
            "--rows",
            "3",
            "--input",
        ])
        .arg(sample("hrss.csv"))
        .arg("--policies-dir")
        .arg(shipped_policies())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Row 1 is rejected (bad check digit); row 2 is shown field by field.
    assert!(text.contains("rejected: GMSFHM id_checksum"), "{text}");
    assert!(text.contains("汤文国") && text.contains("汤**"), "{text}");
    assert!(
        text.contains("(masked)") && text.contains("(pseudonymised)"),
        "{text}"
    );
    assert!(
        text.contains("insured_number") && text.contains("(not delivered)"),
        "{text}"
    );
}
