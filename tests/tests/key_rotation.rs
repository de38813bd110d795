//! Rotating the encryption key (a new key made active in the key file, the old one
//! kept) keeps everything stored before readable, and the restart records the
//! rotation in the audit log with key ids only.

use gateway::client::{PushOptions, pull, push_file};
use gateway::proto::PullRequest;
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, sample};

#[tokio::test]
async fn a_rotated_encryption_key_is_recorded_and_old_data_stays_readable() {
    let mut pki = TestPki::new();
    for id in ["agency/hrss", "union/assistance", "auditor/compliance"] {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let agency = server.connect(&pki.client("agency/hrss")).await.unwrap();
    let pushed = push_file(agency, &sample("hrss.csv"), &PushOptions::default(), |_| {})
        .await
        .unwrap();
    server.stop().await;

    let keys = std::fs::read_to_string(state.keys_file()).unwrap();
    let rotated = keys.replace(
        "active_encryption = \"enc-1\"",
        "active_encryption = \"enc-2\"",
    ) + "\n[[encryption]]\nid = \"enc-2\"\nsecret = \"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"\n";
    assert_ne!(keys, rotated);
    std::fs::write(state.keys_file(), rotated).unwrap();

    let server = TestServer::start(&pki, &state).await;
    let union = server
        .connect(&pki.client("union/assistance"))
        .await
        .unwrap();
    let mut n = 0u64;
    pull(
        union,
        PullRequest {
            kinds: vec!["social_insurance".into()],
            purpose: "hardship_screening".into(),
            ..Default::default()
        },
        |_| {
            n += 1;
            Ok(())
        },
    )
    .await
    .unwrap();
    assert!(n > 0 && n <= pushed.accepted);
    let rotations = audit_entries(&server, &pki, "key_rotated").await;
    assert_eq!(rotations.len(), 1, "{rotations:?}");
    assert!(
        rotations[0].details_json.contains("enc-1") && rotations[0].details_json.contains("enc-2")
    );
    assert!(
        !rotations[0].details_json.contains("AAECAwQF"),
        "key material in the audit log"
    );
    server.stop().await;
}
