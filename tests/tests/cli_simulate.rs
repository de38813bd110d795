//! `gateway simulate` through the real binary: writes the six native exports,
//! prints a summary with rows per file, and the same seed gives the same bytes.

use std::path::Path;
use std::process::Command;

fn binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gateway-under-test"))
}

const FILES: [&str; 6] = [
    "public_security.jsonl",
    "hrss.csv",
    "market_regulation.jsonl",
    "tax.csv",
    "housing.jsonl",
    "work_safety.jsonl",
];

fn simulate(out: &Path, seed: &str) -> String {
    let output = Command::new(binary())
        .args(["simulate", "--scale", "small", "--seed", seed, "--out"])
        .arg(out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "simulate failed: {stdout} {}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[test]
fn simulate_writes_six_exports_deterministically() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("c"),
    );
    let summary = simulate(&a, "5");
    simulate(&b, "5");
    simulate(&c, "6");
    for f in FILES {
        assert!(summary.contains(f), "{f} in the summary: {summary}");
        let (x, y, z) = (
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            std::fs::read(c.join(f)).unwrap(),
        );
        assert!(!x.is_empty(), "{f} is empty");
        assert!(x == y, "{f}: the same seed gave different bytes");
        assert!(x != z, "{f}: another seed gave the same bytes");
    }
    assert!(
        summary.contains("rows") && summary.contains(" s"),
        "{summary}"
    );
    // Native encodings: GBK for hrss (not UTF-8: its Chinese header), BOM for tax.
    let hrss = std::fs::read(a.join("hrss.csv")).unwrap();
    assert!(std::str::from_utf8(&hrss).is_err());
    assert!(
        std::fs::read(a.join("tax.csv"))
            .unwrap()
            .starts_with(b"\xEF\xBB\xBF")
    );
}
