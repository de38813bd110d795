//! The simulated exports go through the real adapters: exactly the rows made bad
//! on purpose are rejected, each with its recorded field and code; everything
//! else (warts included) is accepted; and a seed always gives the same bytes.

use super::*;
use crate::{Record, RowError, adapter_for};
use std::collections::BTreeSet;

fn export(seed: u64, agency: Agency) -> (Vec<u8>, ExportStats) {
    let mut out = Vec::new();
    let stats = Simulation::new(seed, Scale::Small)
        .write(agency, &mut out)
        .unwrap();
    (out, stats)
}

fn parse_all(agency: Agency, bytes: &[u8]) -> Vec<Result<Record, Vec<RowError>>> {
    let adapter = adapter_for(agency).unwrap();
    let mut lines = bytes
        .split(|b| *b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty());
    let header = adapter.format().is_csv().then(|| lines.next().unwrap());
    let parser = adapter.open_batch(adapter.format(), header).unwrap();
    lines.map(|l| parser.parse_row(l)).collect()
}

#[test]
fn small_exports_are_accepted_except_their_bad_rows() {
    let mut total = 0u64;
    let mut bad = 0u64;
    for agency in Agency::ALL {
        let (bytes, stats) = export(42, agency);
        assert_eq!(stats.bytes, bytes.len() as u64);
        let results = parse_all(agency, &bytes);
        assert_eq!(results.len() as u64, stats.rows, "{agency}");
        assert!(stats.rows >= 20, "{agency}: {} rows", stats.rows);
        let expected: std::collections::BTreeMap<u64, &BadRow> =
            stats.bad_rows.iter().map(|b| (b.row, b)).collect();
        for (i, got) in results.iter().enumerate() {
            let n = i as u64 + 1;
            match (got, expected.get(&n)) {
                (Ok(_), None) => {}
                (Err(errors), None) => panic!(
                    "{agency} row {n} must be accepted, got {:?}",
                    errors.iter().map(|e| (e.field, e.code)).collect::<Vec<_>>()
                ),
                (Ok(_), Some(b)) => panic!("{agency} row {n} must be rejected: {b:?}"),
                (Err(errors), Some(b)) => assert!(
                    errors
                        .iter()
                        .any(|e| e.field == b.field && e.code == b.code),
                    "{agency} row {n}: expected {b:?} among {:?}",
                    errors.iter().map(|e| (e.field, e.code)).collect::<Vec<_>>()
                ),
            }
        }
        total += stats.rows;
        bad += stats.bad_rows.len() as u64;
    }
    // About 0.5 % bad rows overall.
    assert!(bad > 0 && bad * 1000 <= total * 15, "{bad} bad of {total}");
}

#[test]
fn a_seed_always_gives_the_same_bytes() {
    for agency in Agency::ALL {
        let (a, _) = export(7, agency);
        let (b, _) = export(7, agency);
        assert!(a == b, "{agency}: two runs differ");
        let (c, _) = export(8, agency);
        assert!(a != c, "{agency}: another seed gives the same export");
    }
}

#[test]
fn exports_carry_the_specifications_warts() {
    let text = |agency| {
        let (bytes, _) = export(42, agency);
        match agency {
            Agency::Hrss => encoding_rs::GBK.decode(&bytes).0.into_owned(),
            _ => String::from_utf8_lossy(&bytes).into_owned(),
        }
    };
    let hrss = text(Agency::Hrss);
    let ps = text(Agency::PublicSecurity);
    let tax = text(Agency::Tax);
    let ws = text(Agency::WorkSafety);
    let all = [
        &hrss,
        &ps,
        &tax,
        &ws,
        &text(Agency::Housing),
        &text(Agency::MarketRegulation),
    ];
    let any = |f: &dyn Fn(&str) -> bool| all.iter().any(|t| t.lines().any(f));
    assert!(tax.starts_with('\u{FEFF}'), "tax export has a BOM");
    assert!(any(&|l| l.contains('\u{3000}')), "ideographic spaces");
    assert!(
        any(&|l| l.chars().any(|c| ('０'..='９').contains(&c))),
        "full-width digits"
    );
    assert!(
        hrss.lines().any(|l| l.contains(",\"") && l.contains(",0")),
        "quoted amounts"
    );
    assert!(
        tax.lines().any(|l| l.contains("\"")),
        "thousands separators in CSV"
    );
    assert!(ps.contains("\"BGLX\": \"3\""), "cancels");
    assert!(ps.contains("-") && ps.contains("\"CSRQ\": \"19"), "dates");
    // Legacy 15-digit identity numbers in household and social-insurance rows.
    let legacy = |t: &str| {
        t.split([',', '"'])
            .any(|f| f.len() == 15 && f.bytes().all(|b| b.is_ascii_digit()))
    };
    assert!(legacy(&ps) && legacy(&hrss), "legacy identity numbers");
    // Both date spellings in one file.
    let birth_dates: Vec<&str> = ps
        .split("\"CSRQ\": \"")
        .skip(1)
        .map(|rest| &rest[..rest.find('"').unwrap()])
        .collect();
    assert!(birth_dates.iter().any(|d| d.len() == 8) && birth_dates.iter().any(|d| d.len() == 10));
    // Free text carrying identity numbers, which the adapter scrubs.
    let (bytes, _) = export(42, Agency::WorkSafety);
    let scrubbed = parse_all(Agency::WorkSafety, &bytes)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.fields
                .get("description")
                .is_some_and(|d| d.render().contains(crate::work_safety::ID_PLACEHOLDER))
        })
        .count();
    assert!(scrubbed > 0, "free text with identity numbers");
    assert!(ws.contains("身份证号"));
}

#[test]
fn hardship_is_about_one_person_in_forty_two() {
    let sim = Simulation::new(42, Scale::Small);
    let n = sim.hardship_persons();
    assert!((35..=90).contains(&n), "{n} persons in hardship of 2000");
    // In the social-insurance export their contributions are suspended.
    let (bytes, _) = export(42, Agency::Hrss);
    let suspended: BTreeSet<String> = parse_all(Agency::Hrss, &bytes)
        .into_iter()
        .flatten()
        .filter(|r| {
            r.fields
                .get("contribution_status")
                .is_some_and(|v| v.render() == "2")
        })
        .filter_map(|r| r.person.map(|p| p.expose().to_owned()))
        .collect();
    assert!(
        suspended.len() as u64 >= n / 2,
        "{} suspended",
        suspended.len()
    );
}
