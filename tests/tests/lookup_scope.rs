//! A look-up is never wider than a pull: for every consumer of the shipped
//! set and every purpose that grants look-ups, each answer holds only
//! records that consumer's pull (same purpose) delivers, field for field and
//! form for form; employers' registry and tax records come only through a
//! record the answer itself delivers with the employer named in clear; and
//! the answer's `subject` is the `person_id` its records carry, or nothing.

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::{
    self, DeliveredRecord, LookupRequest, PullRequest, pull_event::Event,
    union_exchange_client::UnionExchangeClient,
};
use gateway_tests::{ServerState, TestPki, TestServer, sample, synthetic_hrss_row};
use std::collections::{BTreeMap, BTreeSet};

/// The identity numbers (valid check character) written in a sample file.
fn identity_numbers(text: &str) -> BTreeSet<String> {
    let bytes = text.as_bytes();
    let mut out = BTreeSet::new();
    for start in 0..bytes.len().saturating_sub(17) {
        let run = &bytes[start..start + 18];
        let before = start.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(start + 18).copied();
        if run[..17].iter().all(u8::is_ascii_digit)
            && (run[17].is_ascii_digit() || run[17] == b'X')
            && !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric())
            && adapters::rules::has_id_checksum(run)
        {
            out.insert(String::from_utf8(run.to_vec()).unwrap());
        }
    }
    out
}

/// What a record is as delivered, except sealed values, whose tokens are
/// fresh at every delivery: for those the form alone.
fn shape(r: &DeliveredRecord) -> (String, String, BTreeMap<String, (String, i32)>) {
    let fields = r
        .fields
        .iter()
        .map(|f| {
            let value = if f.form == proto::FieldForm::Encrypted as i32 {
                String::new()
            } else {
                f.value.clone()
            };
            (f.name.clone(), (value, f.form))
        })
        .collect();
    (r.kind.clone(), r.record_id.clone(), fields)
}

/// One employed person who pays only to medical insurance (310) at an
/// employer both the registry and the tax office know: a consumer whose
/// filter admits only work-injury insurance (rights) must not learn where
/// the person works.
const EMPLOYER: &str = "91340207Y2L8WFB30P";

#[tokio::test]
async fn every_lookup_answer_is_part_of_the_same_consumers_pull() {
    let consumers = [
        ("assistance", "hardship_application"),
        ("model_workers", "model_worker_vetting"),
        ("rights", "rights_protection"),
    ];
    let agencies = [
        ("hrss", "hrss.csv"),
        ("public_security", "public_security.jsonl"),
        ("market_regulation", "market_regulation.jsonl"),
        ("tax", "tax.csv"),
        ("housing", "housing.jsonl"),
        ("work_safety", "work_safety.jsonl"),
    ];
    let mut pki = TestPki::new();
    for (agency, _) in agencies {
        pki.issue(&format!("agency/{agency}"));
    }
    for (consumer, _) in consumers {
        pki.issue(&format!("union/{consumer}"));
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let mut people = BTreeSet::new();
    for (agency, file) in agencies {
        let channel = server
            .connect(&pki.client(&format!("agency/{agency}")))
            .await
            .unwrap();
        push_file(channel, &sample(file), &PushOptions::default(), |_| {})
            .await
            .unwrap();
        let bytes = std::fs::read(sample(file)).unwrap();
        let text = if file.ends_with(".csv") {
            encoding_rs::GBK.decode(&bytes).0.into_owned()
        } else {
            String::from_utf8(bytes).unwrap()
        };
        people.extend(identity_numbers(&text));
    }
    // The medical-insurance-only worker (synthetic row 7: insurance type 310).
    let hrss = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let receipt = gateway_tests::push_hrss_rows(
        &hrss,
        "medical-only",
        vec![synthetic_hrss_row(7, '1', "20250101120000")],
    )
    .await;
    assert_eq!(receipt.accepted, 1);
    let medical_only = gateway_tests::valid_identity_number("340202", "19850315", 7);
    people.insert(medical_only.clone());
    assert!(people.len() >= 10, "{} people in the samples", people.len());

    for (consumer, purpose) in consumers {
        let channel = server
            .connect(&pki.client(&format!("union/{consumer}")))
            .await
            .unwrap();
        let mut feed = BTreeSet::new();
        pull(
            channel.clone(),
            PullRequest {
                purpose: purpose.into(),
                ..Default::default()
            },
            |e| {
                if let Some(Event::Record(r)) = &e.event {
                    feed.insert(shape(r));
                }
                Ok(())
            },
        )
        .await
        .unwrap();
        let mut client = UnionExchangeClient::new(channel);
        let mut answered = 0;
        for (i, person) in people.iter().enumerate() {
            let answer = client
                .lookup(LookupRequest {
                    id_number: person.clone(),
                    case_number: format!("KN-2026-{i:04}"),
                    purpose: purpose.into(),
                })
                .await
                .unwrap()
                .into_inner();
            let mut employers = BTreeSet::new();
            let mut person_ids = BTreeSet::new();
            for r in &answer.records {
                assert!(
                    feed.contains(&shape(r)),
                    "{consumer}: a look-up delivered a {} record its pull does not",
                    r.kind
                );
                for f in &r.fields {
                    if f.name == "person_id" {
                        person_ids.insert(f.value.clone());
                    }
                    if f.name == "employer_credit_code" && f.form == proto::FieldForm::Kept as i32 {
                        employers.insert(f.value.clone());
                    }
                }
            }
            for r in &answer.records {
                if r.kind == "enterprise" || r.kind == "taxpayer" {
                    let code = &r
                        .fields
                        .iter()
                        .find(|f| f.name == "credit_code")
                        .unwrap()
                        .value;
                    assert!(
                        employers.contains(code),
                        "{consumer}: an employer reached through a record the answer does not deliver"
                    );
                }
            }
            match person_ids.len() {
                0 => assert_eq!(
                    answer.subject, "",
                    "{consumer}: a subject without person_id"
                ),
                1 => assert_eq!(Some(&answer.subject), person_ids.first()),
                _ => panic!("{consumer}: one person, several person_id values"),
            }
            answered += usize::from(!answer.records.is_empty());
        }
        assert!(
            answered >= 3,
            "{consumer}: only {answered} non-empty answers"
        );
        if consumer == "rights" {
            // The medical-only worker: nothing the rights department may see.
            let answer = client
                .lookup(LookupRequest {
                    id_number: medical_only.clone(),
                    case_number: "KN-2026-9999".into(),
                    purpose: purpose.into(),
                })
                .await
                .unwrap()
                .into_inner();
            assert!(
                answer.records.is_empty() && answer.subject.is_empty(),
                "rights learnt {EMPLOYER} employs the person: {:?}",
                answer.records.iter().map(|r| &r.kind).collect::<Vec<_>>()
            );
        }
    }
    server.stop().await;
}
