//! The identity and role-matrix layer, in front of every service.
//!
//! It takes the peer certificate that the TLS handshake verified, turns it into a
//! [`Principal`] (see [`crate::identity`]) and enforces who may call what:
//! agencies may only push, union consumers may only pull and look up, auditors
//! may only use `Audit`; health checking and reflection are open to any
//! authenticated caller. Everything else is `PERMISSION_DENIED`, recorded in the
//! audit log before the caller gets the answer. Services read the principal from
//! the request extensions; no request field can change it.

use crate::audit::repeats::Repeats;
use crate::audit::{self, AuditEvent, Denied};
use crate::identity::{Principal, PrincipalCache};
use crate::limits::{RefusedCall, refused_calls};
use crate::metrics::{Metrics, Refused};
use crate::store::Store;
use policies::Operation;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};

/// What a path requires of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Agency,
    Union,
    Auditor,
    AnyAuthenticated,
}

/// Who may call what, in one table: every served method, the role its
/// caller must have and, for union calls, the operation the request's
/// purpose must grant in the caller's policy ([`policies::Operation`]). A
/// path the table does not name is refused, so a method or service added
/// later is closed until it is listed here (a test holds the table equal to
/// the served descriptor sets).
pub const ROUTES: &[(&str, Required, Option<Operation>)] = &[
    ("/exchange.v1.AgencyIngest/Push", Required::Agency, None),
    (
        "/exchange.v1.UnionExchange/Pull",
        Required::Union,
        Some(Operation::Pull),
    ),
    (
        "/exchange.v1.UnionExchange/Lookup",
        Required::Union,
        Some(Operation::Lookup),
    ),
    (
        "/exchange.v1.UnionExchange/Reidentify",
        Required::Union,
        Some(Operation::Reidentify),
    ),
    ("/exchange.v1.Audit/Query", Required::Auditor, None),
    ("/exchange.v1.Audit/SubjectReport", Required::Auditor, None),
    ("/exchange.v1.Audit/GetCheckpoint", Required::Auditor, None),
    ("/exchange.v1.Audit/ProveInclusion", Required::Auditor, None),
    (
        "/exchange.v1.Audit/ProveConsistency",
        Required::Auditor,
        None,
    ),
    ("/exchange.v1.Audit/Export", Required::Auditor, None),
    ("/exchange.v1.Audit/ReadNote", Required::Auditor, None),
    ("/exchange.v1.Audit/EraseNote", Required::Auditor, None),
    (
        "/grpc.health.v1.Health/Check",
        Required::AnyAuthenticated,
        None,
    ),
    (
        "/grpc.health.v1.Health/Watch",
        Required::AnyAuthenticated,
        None,
    ),
    (
        "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
        Required::AnyAuthenticated,
        None,
    ),
];

/// How a path the table does not list is named wherever it is recorded.
pub const UNLISTED: &str = "(a method not in the allow-list)";

/// The rule for a path, if the table lists it.
pub fn route(path: &str) -> Option<(Required, Option<Operation>)> {
    ROUTES
        .iter()
        .find(|(p, ..)| *p == path)
        .map(|&(_, required, op)| (required, op))
}

/// The operation a union call needs its purpose to grant, put in the
/// request's extensions by the layer from [`ROUTES`]: the service checks the
/// purpose against it ([`authorise_purpose`]) and refuses a call that has
/// none, so a handler cannot forget to say what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequiredOperation(pub Operation);

pub fn permits(required: Required, principal: &Principal) -> bool {
    matches!(
        (required, principal),
        (Required::AnyAuthenticated, _)
            | (Required::Agency, Principal::Agency(_))
            | (Required::Union, Principal::Union(_))
            | (Required::Auditor, Principal::Auditor(_))
    )
}

/// Why a union call's purpose does not let it proceed: a stable code, and
/// the message the caller gets (it never repeats the caller's text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PurposeRefusal {
    pub code: &'static str,
    pub message: String,
}

/// The second half of the allow-list, for union calls once their purpose is
/// read from the request: the consumer's policy must list the purpose and
/// the purpose must grant the operation the route requires.
pub fn authorise_purpose(
    set: &policies::PolicySet,
    consumer: &str,
    purpose: &str,
    required: Option<RequiredOperation>,
) -> Result<(), PurposeRefusal> {
    let Some(RequiredOperation(op)) = required else {
        return Err(PurposeRefusal {
            code: "no_operation",
            message: "this call names no operation in the gateway's allow-list".into(),
        });
    };
    let Some(policy) = set.get(consumer) else {
        return Err(PurposeRefusal {
            code: "no_policy",
            message: format!("no policy is in force for consumer {consumer}"),
        });
    };
    if !policy.allows_purpose(purpose) {
        return Err(PurposeRefusal {
            code: "purpose_not_allowed",
            message: format!(
                "the purpose is not one of consumer {consumer}'s purposes (allowed: {})",
                policy.purposes.join(", ")
            ),
        });
    }
    if !policy.grants(purpose, op) {
        let granting: Vec<&str> = policy
            .purposes
            .iter()
            .filter(|p| policy.grants(p, op))
            .map(String::as_str)
            .collect();
        return Err(PurposeRefusal {
            code: "operation_not_granted",
            message: if granting.is_empty() {
                format!("no purpose of consumer {consumer} grants `{op}`")
            } else {
                format!(
                    "purpose `{purpose}` of consumer {consumer} does not grant `{op}` (granted for: {})",
                    granting.join(", ")
                )
            },
        });
    }
    Ok(())
}

/// A refusal: who (if known), a stable code and a reason for the caller.
struct Refusal {
    actor: String,
    code: &'static str,
    reason: String,
}

fn authorise(
    extensions: &http::Extensions,
    path: &str,
    principals: &PrincipalCache,
) -> Result<(Principal, Option<RequiredOperation>), Refusal> {
    let cert = extensions
        .get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|info| info.peer_certs())
        .and_then(|certs| certs.first().cloned());
    let Some(cert) = cert else {
        return Err(Refusal {
            actor: audit::ANONYMOUS.to_string(),
            code: "no_certificate",
            reason: "no verified client certificate".to_string(),
        });
    };
    let principal = principals.principal(&cert).map_err(|e| Refusal {
        actor: audit::ANONYMOUS.to_string(),
        code: e.code(),
        reason: e.to_string(),
    })?;
    let Some((required, op)) = route(path) else {
        return Err(Refusal {
            actor: principal.to_string(),
            code: "not_in_allow_list",
            reason: "the method is not in the gateway's allow-list".to_string(),
        });
    };
    if !permits(required, &principal) {
        let allowed = match required {
            Required::Agency => "agencies",
            Required::Union => "union consumers",
            Required::Auditor => "auditors",
            Required::AnyAuthenticated => "authenticated callers",
        };
        return Err(Refusal {
            actor: principal.to_string(),
            code: "role_not_permitted",
            reason: format!("{principal} may not call {path}: only {allowed} may"),
        });
    }
    Ok((principal, op.map(RequiredOperation)))
}

/// Tower layer: see the module documentation.
#[derive(Clone)]
pub struct AuthzLayer {
    principals: Arc<PrincipalCache>,
    store: Arc<dyn Store>,
    /// Denials audited one by one once per window per caller, call and code;
    /// the rest are counted ([`crate::audit::repeats`]).
    refusals: Arc<Repeats<RefusedCall>>,
    metrics: Arc<Metrics>,
}

impl AuthzLayer {
    /// `refusal_window`: see [`crate::limits::LimitsConfig::refusal_window_secs`].
    pub fn new(
        trust_domain: &str,
        store: Arc<dyn Store>,
        refusal_window: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        AuthzLayer {
            principals: Arc::new(PrincipalCache::new(trust_domain)),
            refusals: refused_calls(store.clone(), refusal_window),
            store,
            metrics,
        }
    }

    /// Queues the summaries of the refusals counted so far (at shutdown).
    pub fn flush_refusals(&self) {
        self.refusals.flush();
    }
}

impl<S> tower::Layer<S> for AuthzLayer {
    type Service = Authz<S>;
    fn layer(&self, inner: S) -> Self::Service {
        Authz {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Authz<S> {
    inner: S,
    layer: AuthzLayer,
}

impl<S> tower::Service<http::Request<Body>> for Authz<S>
where
    S: tower::Service<http::Request<Body>, Response = http::Response<Body>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<Body>) -> Self::Future {
        // A path is the caller's text: one the table does not list is named
        // by a fixed word in spans, logs, the audit log and the tally.
        let path = match route(req.uri().path()) {
            Some(_) => req.uri().path().to_string(),
            None => UNLISTED.to_string(),
        };
        match authorise(req.extensions(), req.uri().path(), &self.layer.principals) {
            Ok((principal, op)) => {
                let span = tracing::info_span!("rpc", rpc = %path, caller = %principal);
                req.extensions_mut().insert(principal);
                if let Some(op) = op {
                    req.extensions_mut().insert(op);
                }
                // Standard tower pattern: call the clone that was driven ready.
                let clone = self.inner.clone();
                let mut inner = std::mem::replace(&mut self.inner, clone);
                Box::pin(tracing::Instrument::instrument(inner.call(req), span))
            }
            Err(refusal) => {
                let (rpc, code) = (req.uri().path(), refusal.code);
                self.layer.metrics.record(Refused { rpc, code });
                let store = self.layer.store.clone();
                let refusals = self.layer.refusals.clone();
                Box::pin(async move {
                    tracing::warn!(rpc = %path, caller = %refusal.actor, code = refusal.code, "call denied");
                    let key = (refusal.actor.clone(), path.clone(), refusal.code);
                    if refusals.first(&key).await {
                        let entry = Denied {
                            rpc: &path,
                            code: refusal.code,
                            reason: &refusal.reason,
                            repeated: 0,
                            within_secs: 0,
                            refused_text: None,
                        }
                        .entry(&refusal.actor);
                        if let Err(status) = audit::record(&store, vec![entry]).await {
                            return Ok(status.into_http());
                        }
                    }
                    Ok(tonic::Status::permission_denied(refusal.reason).into_http())
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use adapters::Agency;

    #[test]
    fn role_matrix() {
        let agency = Principal::Agency(Agency::Hrss);
        let union = Principal::Union("assistance".into());
        let auditor = Principal::Auditor("compliance".into());
        let role = |path| route(path).expect("listed").0;
        let push = role("/exchange.v1.AgencyIngest/Push");
        let pull = role("/exchange.v1.UnionExchange/Pull");
        let query = role("/exchange.v1.Audit/Query");
        let health = role("/grpc.health.v1.Health/Check");
        assert!(permits(push, &agency) && !permits(push, &union) && !permits(push, &auditor));
        assert!(permits(pull, &union) && !permits(pull, &agency) && !permits(pull, &auditor));
        assert!(permits(query, &auditor) && !permits(query, &agency) && !permits(query, &union));
        assert!(permits(health, &agency) && permits(health, &union) && permits(health, &auditor));
        assert_eq!(
            route("/exchange.v1.UnionExchange/Lookup"),
            Some((Required::Union, Some(Operation::Lookup)))
        );
        assert_eq!(route("/exchange.v1.UnionExchange/Extract"), None);
        assert_eq!(route("/exchange.v2.Anything/Else"), None);
    }

    /// Every method of every served descriptor set is in the table, and
    /// the table names nothing that is not served: a new RPC fails here
    /// until someone decides who may call it.
    #[test]
    fn the_allow_list_names_exactly_the_served_methods() {
        use prost::Message as _;
        let mut served = Vec::new();
        for fds in [
            crate::proto::FILE_DESCRIPTOR_SET,
            tonic_health::pb::FILE_DESCRIPTOR_SET,
            tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        ] {
            let set = prost_types::FileDescriptorSet::decode(fds).unwrap();
            for file in set.file {
                for service in &file.service {
                    for method in &service.method {
                        served.push(format!(
                            "/{}.{}/{}",
                            file.package(),
                            service.name(),
                            method.name()
                        ));
                    }
                }
            }
        }
        served.sort();
        let mut listed: Vec<String> = ROUTES.iter().map(|(p, ..)| p.to_string()).collect();
        listed.sort();
        assert_eq!(listed, served);
    }
}
