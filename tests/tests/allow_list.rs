//! One declarative allow-list: every method of every served descriptor set,
//! called over real mTLS by an agency, a union consumer and an auditor, is
//! refused by the role layer exactly where the table says; a path the table
//! does not list is `PERMISSION_DENIED` for every caller (not left to the
//! router), and recorded.

use bytes::Bytes;
use gateway::authz::{ROUTES, permits};
use gateway::identity::Principal;
use gateway_tests::{ServerState, TestPki, TestServer, audit_entries, raw};
use std::time::Duration;
use tonic::Status;

/// Calls `path` with one empty message; `Some(status)` when the call was
/// refused, `None` when it got anywhere (an answer, another error, or still
/// streaming after a moment).
async fn call(channel: tonic::transport::Channel, path: &'static str) -> Option<Status> {
    let answer = tokio::time::timeout(Duration::from_secs(3), async {
        let mut stream = raw::call(channel, path, vec![Bytes::new()], 1 << 20).await?;
        stream.message().await.map(|_| ())
    })
    .await;
    match answer {
        Ok(Err(status)) => Some(status),
        _ => None,
    }
}

fn role_denied(status: &Option<Status>) -> bool {
    status.as_ref().is_some_and(|s| {
        s.code() == tonic::Code::PermissionDenied
            && (s.message().contains("may not call") || s.message().contains("allow-list"))
    })
}

#[tokio::test]
async fn every_served_method_answers_each_role_as_the_table_says() {
    let mut pki = TestPki::new();
    let callers = [
        ("agency/hrss", Principal::Agency(adapters::Agency::Hrss)),
        ("union/assistance", Principal::Union("assistance".into())),
        (
            "auditor/compliance",
            Principal::Auditor("compliance".into()),
        ),
    ];
    for (id, _) in &callers {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    for (id, principal) in &callers {
        let channel = server.connect(&pki.client(id)).await.unwrap();
        for &(path, required, _) in ROUTES {
            let outcome = call(channel.clone(), path).await;
            assert_eq!(
                role_denied(&outcome),
                !permits(required, principal),
                "{id} calling {path}: {outcome:?}"
            );
        }
        for path in [
            "/exchange.v1.UnionExchange/Export",
            "/exchange.v2.Audit/Query",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
            "/exchange.v1.UnionExchange/340207197607111133-ZhangWei",
        ] {
            let outcome = call(channel.clone(), path).await;
            assert!(role_denied(&outcome), "{id} calling {path}: {outcome:?}");
        }
    }
    let denied = audit_entries(&server, &pki, "denied").await;
    assert!(
        denied
            .iter()
            .any(|e| e.details_json.contains("not_in_allow_list")),
        "{denied:?}"
    );
    // A path is the caller's text: an unlisted one is recorded by a fixed word.
    for e in &denied {
        let canonical = String::from_utf8_lossy(&e.canonical);
        for leaked in [
            "340207197607111133",
            "ZhangWei",
            "UnionExchange/Export",
            "v1alpha",
        ] {
            assert!(!canonical.contains(leaked), "{leaked} in {e:?}");
        }
    }
    server.stop().await;
}
