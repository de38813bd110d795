//! A request body that does not decode is the caller's error on every
//! service: `INVALID_ARGUMENT`, with one fixed message that carries nothing
//! of the body (not the decoder's description of it either), whether the
//! method is the gateway's own `Push`, a generated service's method, or the
//! health service. Sent as raw gRPC frames over mutual TLS to the real server.

use bytes::Bytes;
use gateway_tests::{ServerState, TestPki, TestServer, raw};
use tonic::{Code, Status};

/// One method of each service, and who may call it.
const METHODS: [(&str, &str); 5] = [
    ("/exchange.v1.AgencyIngest/Push", "agency/hrss"),
    ("/exchange.v1.UnionExchange/Lookup", "union/assistance"),
    ("/exchange.v1.UnionExchange/Pull", "union/assistance"),
    ("/exchange.v1.Audit/Query", "auditor/compliance"),
    ("/grpc.health.v1.Health/Check", "auditor/compliance"),
];

const PLANTED: &str = "340202198503150011";

/// Bodies that do not decode as any of the methods' requests, each carrying
/// a personal value.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut invalid_wire_type = vec![0x0a, PLANTED.len() as u8];
    invalid_wire_type.extend_from_slice(PLANTED.as_bytes());
    invalid_wire_type.push(0x0f);
    let mut cut_short = vec![0x0a, 0x40];
    cut_short.extend_from_slice(PLANTED.as_bytes());
    let mut not_utf8 = vec![0x0a, PLANTED.len() as u8 + 2];
    not_utf8.extend_from_slice(PLANTED.as_bytes());
    not_utf8.extend_from_slice(&[0xff, 0xfe]);
    // Field 0 and wire type 7: neither exists.
    let mut garbage = vec![0x07];
    garbage.extend_from_slice(PLANTED.as_bytes());
    garbage.extend_from_slice(&[0xff; 11]);
    vec![
        ("an invalid wire type", invalid_wire_type),
        ("a field longer than the body", cut_short),
        ("a string that is not UTF-8", not_utf8),
        ("bytes that are no message", garbage),
    ]
}

/// The call's status: its refusal, or the error its stream ends with.
async fn answer(
    server: &TestServer,
    pki: &TestPki,
    path: &'static str,
    as_: &str,
    body: Vec<u8>,
) -> Status {
    let channel = server.connect(&pki.client(as_)).await.unwrap();
    match raw::call(channel, path, vec![Bytes::from(body)], 1 << 20).await {
        Err(status) => status,
        Ok(mut answers) => loop {
            match answers.message().await {
                Err(status) => break status,
                Ok(Some(_)) => continue,
                Ok(None) => panic!("{path}: answered OK to an undecodable body"),
            }
        },
    }
}

#[tokio::test]
async fn an_undecodable_body_is_invalid_argument_on_every_service() {
    let mut pki = TestPki::new();
    for (_, id) in METHODS {
        pki.issue(id);
    }
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    for (path, as_) in METHODS {
        for (what, body) in bodies() {
            let status = answer(&server, &pki, path, as_, body.clone()).await;
            assert_eq!(
                (status.code(), status.message()),
                (Code::InvalidArgument, gateway::status::UNDECODABLE),
                "{path}, {what}"
            );
            let said = format!("{:?} {:?}", status.message(), status.metadata());
            assert!(!said.contains(PLANTED), "{path}, {what}: {said}");
            // Nor the decoder's description of the bytes.
            assert!(!said.contains("decode Protobuf"), "{path}, {what}: {said}");
        }
    }
    // A unary call that sends no message at all is answered the same way.
    for (path, as_) in &METHODS[1..] {
        let channel = server.connect(&pki.client(as_)).await.unwrap();
        let status = raw::call(channel, path, Vec::new(), 1 << 20)
            .await
            .err()
            .unwrap_or_else(|| panic!("{path}: answered a call without a message"));
        assert_eq!(status.code(), Code::InvalidArgument, "{path}: {status:?}");
    }
    assert!(server.is_running());
    server.stop().await;
}
