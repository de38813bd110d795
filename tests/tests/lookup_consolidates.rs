//! One visit instead of six offices: after all six agencies pushed their sample
//! exports, a look-up of one applicant returns their household registration,
//! social-insurance history, housing assistance and workplace injuries, plus
//! their employers' registration status and tax standing, all shaped by the
//! assistance department's policy, and the officer's summary shows them.

use gateway::client::{PushOptions, push_file};
use gateway_tests::{ServerState, TestPki, TestServer, sample};

const AGENCIES: [(&str, &str); 6] = [
    ("public_security", "public_security.jsonl"),
    ("hrss", "hrss.csv"),
    ("market_regulation", "market_regulation.jsonl"),
    ("tax", "tax.csv"),
    ("housing", "housing.jsonl"),
    ("work_safety", "work_safety.jsonl"),
];

#[tokio::test]
async fn lookup_consolidates_all_six_agencies_for_one_person() {
    let mut pki = TestPki::new();
    for (agency, _) in AGENCIES {
        pki.issue(&format!("agency/{agency}"));
    }
    pki.issue("union/assistance");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    for (agency, file) in AGENCIES {
        let channel = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        let summary = push_file(channel, &sample(file), &PushOptions::default(), |_| {})
            .await
            .unwrap();
        assert!(summary.accepted > 0, "{agency}: {summary:?}");
        assert!(
            summary.rejected_batches.is_empty(),
            "{agency}: {:?}",
            summary.rejected_batches
        );
    }

    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    // 汤文国, typed with a stray ideographic space as from a paper form.
    let answer = gateway_cli::cmd::lookup::lookup(
        union,
        "340208200412065617\u{3000}",
        "KN-2026-0100",
        "hardship_application",
    )
    .await
    .unwrap();
    let mut kinds: Vec<&str> = answer.records.iter().map(|r| r.kind.as_str()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(
        kinds,
        [
            "enterprise",
            "household",
            "housing_assistance",
            "social_insurance",
            "taxpayer",
            "work_injury"
        ],
        "{kinds:?}"
    );
    // The answer names the policy version that shaped it, once.
    assert!(
        answer.policy_version.starts_with("sha256:"),
        "{}",
        answer.policy_version
    );
    assert!(answer.records.iter().all(|r| r.policy_version.is_empty()));
    // Every person-bound record carries the same pseudonym, never the number.
    for r in &answer.records {
        if let Some(p) = r.fields.iter().find(|f| f.name == "person_id") {
            assert_eq!(p.value, answer.subject);
        }
    }
    let text = gateway_cli::cmd::lookup::summary(&answer, "KN-2026-0100", "hardship_application");
    assert!(
        !text.contains("340208200412065617") && !text.contains("汤文国"),
        "{text}"
    );
    for section in [
        "Household registration",
        "Social insurance",
        "Housing assistance",
        "Employers",
        "Workplace injuries",
    ] {
        assert!(text.contains(section), "{text}");
    }
    assert!(!text.contains("none released"), "{text}");
    assert!(text.contains("contribution base:"), "{text}");
    server.stop().await;
}
