//! Generic gRPC tooling works against the gateway: standard health checking and
//! server reflection, for any authenticated caller.

use gateway_tests::{ServerState, TestPki, TestServer};
use tonic_health::pb::{
    HealthCheckRequest, health_check_response::ServingStatus, health_client::HealthClient,
};
use tonic_reflection::pb::v1::{
    ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
    server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
};

#[tokio::test]
async fn health_reports_serving_and_reflection_lists_the_services() {
    let mut pki = TestPki::new();
    pki.issue("agency/tax");
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    let channel = server.connect(&pki.client("agency/tax")).await.unwrap();

    let mut health = HealthClient::new(channel.clone());
    for service in [
        "",
        "exchange.v1.AgencyIngest",
        "exchange.v1.UnionExchange",
        "exchange.v1.Audit",
    ] {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(status, ServingStatus::Serving as i32, "{service}");
    }

    let mut reflection = ServerReflectionClient::new(channel);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = reflection
        .server_reflection_info(tokio_stream::iter(vec![request]))
        .await
        .unwrap()
        .into_inner();
    let response = responses.message().await.unwrap().unwrap();
    let Some(MessageResponse::ListServicesResponse(list)) = response.message_response else {
        panic!("unexpected reflection response");
    };
    let names: Vec<String> = list.service.into_iter().map(|s| s.name).collect();
    for s in [
        "exchange.v1.AgencyIngest",
        "exchange.v1.UnionExchange",
        "exchange.v1.Audit",
        "grpc.health.v1.Health",
    ] {
        assert!(names.iter().any(|n| n == s), "{s} missing from {names:?}");
    }
    server.stop().await;
}
