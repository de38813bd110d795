//! Failures as gRPC statuses, in one place, so that every service answers
//! the same failure the same way:
//! - each kind of [`StoreError`] gets its code (callers log the failure with
//!   their context first; the status never carries the backend's message);
//! - a request body that does not decode is `INVALID_ARGUMENT` with one fixed
//!   message ([`undecodable`]), on every service. tonic answers `INTERNAL`
//!   with the decoder's description for the services it decodes for us (the
//!   generated ones, health, reflection), which blames the server for the
//!   caller's bytes; [`UndecodableLayer`] rewrites that answer.

use crate::store::StoreError;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use tonic::body::Body;
use tonic::{Code, Status};

/// The status for a store failure. `not_done` tells the caller what did not
/// happen (e.g. that a batch was not applied and may be re-sent), for the
/// failures after which repeating the call may succeed.
pub fn store_status(e: &StoreError, not_done: &str) -> Status {
    match e {
        // An unclassified backend failure left nothing done either (its
        // transaction did not commit): worth repeating, like unavailability.
        StoreError::Unavailable { .. } | StoreError::Backend { .. } => {
            Status::unavailable(not_done)
        }
        StoreError::Conflict { .. } => Status::aborted(not_done),
        StoreError::Corrupt { .. } => Status::data_loss("stored data is corrupt"),
        StoreError::Proof(p) => Status::invalid_argument(p.to_string()),
        // Found when the store is opened, before anything is served.
        StoreError::Schema(_) => Status::failed_precondition("the store's schema is not usable"),
    }
}

/// The fixed message for a request body that does not decode. It carries
/// nothing of the body: the decoder's description names fields and offsets
/// of what the caller sent.
pub const UNDECODABLE: &str =
    "the request body does not decode as the method's request message (protobuf)";

/// The answer to a request body that does not decode.
pub fn undecodable() -> Status {
    Status::invalid_argument(UNDECODABLE)
}

/// Whether `status` is tonic's answer to a request body it could not read:
/// the message did not decode (prost's error), a unary call sent no message,
/// the body ended inside a message, or its compression flag or compressed
/// bytes were bad. All are `INTERNAL` by tonic; the gateway's own handlers
/// never use these texts.
pub fn is_decode_failure(status: &Status) -> bool {
    const PREFIXES: [&str; 5] = [
        "failed to decode Protobuf message",
        "Missing request message.",
        "Unexpected EOF decoding stream.",
        "protocol error: received message with",
        "Error decompressing",
    ];
    status.code() == Code::Internal && PREFIXES.iter().any(|p| status.message().starts_with(p))
}

/// `status`, with a decode failure answered as [`undecodable`].
pub fn decode_failure_as_invalid(status: Status) -> Status {
    if is_decode_failure(&status) {
        undecodable()
    } else {
        status
    }
}

/// Answers a request body that does not decode with [`undecodable`] on
/// every service: tonic decodes a unary request before the handler runs and
/// answers a failure in the response headers (trailers-only), where this
/// layer finds it. (A streamed request's later messages are the handler's to
/// answer: `Push` maps them with [`decode_failure_as_invalid`].)
#[derive(Clone, Copy, Default)]
pub struct UndecodableLayer;

impl<S> tower::Layer<S> for UndecodableLayer {
    type Service = Undecodable<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Undecodable(inner)
    }
}

#[derive(Clone)]
pub struct Undecodable<S>(S);

impl<S> tower::Service<http::Request<Body>> for Undecodable<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<Body>) -> Self::Future {
        let answer = self.0.call(req);
        Box::pin(async move {
            let response = answer.await?;
            let failed = Status::from_header_map(response.headers())
                .is_some_and(|status| is_decode_failure(&status));
            Ok(if failed {
                undecodable().into_http()
            } else {
                response
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_kind_of_failure_has_its_code() {
        let cases = [
            (StoreError::unavailable("closing"), Code::Unavailable),
            (StoreError::backend("odd"), Code::Unavailable),
            (StoreError::conflict("raced"), Code::Aborted),
            (StoreError::corrupt("leaf 3 is missing"), Code::DataLoss),
            (
                StoreError::Proof(tlog::ProofError::InvalidSizes { size1: 0, size2: 1 }),
                Code::InvalidArgument,
            ),
        ];
        for (e, code) in cases {
            let status = store_status(&e, "nothing was done");
            assert_eq!(status.code(), code, "{e}");
            // The backend's own words stay in the logs.
            assert!(!status.message().contains("closing"), "{status:?}");
        }
    }

    #[test]
    fn decode_failures_become_invalid_argument_without_the_decoders_words() {
        let prost = <crate::proto::LookupRequest as prost::Message>::decode(&b"\x0b"[..])
            .unwrap_err()
            .to_string();
        for message in [
            prost.as_str(),
            "Missing request message.",
            "Unexpected EOF decoding stream.",
        ] {
            let mapped = decode_failure_as_invalid(Status::internal(message));
            assert_eq!(mapped.code(), Code::InvalidArgument, "{message}");
            assert_eq!(mapped.message(), UNDECODABLE);
        }
        // The gateway's own internal failures stay what they are.
        let own = decode_failure_as_invalid(Status::internal("pull task failed"));
        assert_eq!(own.code(), Code::Internal);
        let other = decode_failure_as_invalid(Status::out_of_range("too large"));
        assert_eq!(other.code(), Code::OutOfRange);
    }
}
