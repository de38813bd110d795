//! An export of a log whose entries are large: each page of a bulk pull is
//! one entry naming up to 4,096 persons, so a few hundred pages in a row
//! are tens of megabytes. The export still arrives, in messages a client
//! decodes (gRPC clients refuse large messages), and verifies; a query for
//! such entries pages through them in answers a client with gRPC's default
//! limit decodes.

use crate::audit_support::*;
use gateway::audit::AuditEntry;
use gateway_tests::{ServerState, TestServer};

/// Entries like a full pull page's: 4,096 persons each.
const PAGES: u64 = 240;
const PERSONS_PER_PAGE: u64 = 4096;

#[tokio::test]
async fn an_export_of_bulk_pull_pages_arrives_in_decodable_messages() {
    let pki = pki();
    let state = ServerState::new();
    {
        let store = state.open_store();
        for group in 0..PAGES / 20 {
            let pages: Vec<AuditEntry> = (group * 20..group * 20 + 20)
                .map(|page| AuditEntry {
                    at_ms: 1_700_000_000_000 + page as i64,
                    actor: "union/assistance".into(),
                    action: "records_delivered".into(),
                    outcome: "ok".into(),
                    kinds: vec!["social_insurance".into()],
                    subjects: (0..PERSONS_PER_PAGE)
                        .map(|p| format!("{:032x}", page * PERSONS_PER_PAGE + p))
                        .collect(),
                    details: gateway::audit::Value::Map(Default::default()),
                    note: None,
                })
                .collect();
            store.append_audit(&pages).unwrap();
        }
    }
    let server = TestServer::start(&pki, &state).await;
    let out = tempfile::tempdir().unwrap();
    let path = out.path().join("audit.jsonl");
    let channel = server
        .connect(&pki.client("auditor/compliance"))
        .await
        .unwrap();
    let (size, leaves) = gateway_cli::cmd::audit::export_to_file(channel, &path)
        .await
        .expect("the export arrives");
    assert!(size > PAGES, "{size}");
    assert_eq!(leaves, size);
    let file = std::io::BufReader::new(std::fs::File::open(&path).unwrap());
    let verified = gateway::audit::export::verify(file, &verifier(&state), None).unwrap();
    assert_eq!(verified.size, size);

    // A query asking for a thousand of them a page.
    let mut auditor = auditor(&server, &pki).await;
    let (mut after, mut seen, mut pages) = (0, Vec::new(), 0);
    loop {
        let page = auditor
            .query(gateway::proto::AuditQuery {
                action: "records_delivered".into(),
                page_size: 1000,
                after_seq: after,
                ..Default::default()
            })
            .await
            .expect("a page a default client decodes")
            .into_inner();
        seen.extend(page.entries.iter().map(|e| e.seq));
        pages += 1;
        if page.next_after_seq == 0 {
            break;
        }
        assert!(!page.entries.is_empty() && page.next_after_seq > after);
        after = page.next_after_seq;
    }
    assert_eq!(seen, (1..=PAGES).collect::<Vec<_>>());
    assert!(pages > 1);
    server.stop().await;
}
