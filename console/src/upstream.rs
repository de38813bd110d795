//! The console's only way to the data: the gateway's `Audit` gRPC service,
//! called as the configured auditor over the same mutual TLS as the command
//! line (`gateway::client::connect`). The channel is opened on first use and
//! kept (tonic reconnects it), so the console starts even while the gateway
//! is down and says so on its pages instead of refusing to run.

use gateway::client::{self, ClientTls};
use gateway::proto::{self, audit_client::AuditClient};
use tokio::sync::Mutex;
use tonic::transport::Channel;

/// Why a call to the gateway failed. Its text is shown to the officer: the
/// gateway's messages never hold a personal identifier, and neither do ours.
#[derive(Debug, Clone, thiserror::Error)]
pub enum UpstreamError {
    #[error("cannot connect to the gateway at {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("the gateway answered {code:?}: {message}")]
    Status { code: tonic::Code, message: String },
}

impl From<tonic::Status> for UpstreamError {
    fn from(s: tonic::Status) -> Self {
        UpstreamError::Status {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
}

pub struct Upstream {
    addr: String,
    tls: ClientTls,
    channel: Mutex<Option<Channel>>,
}

impl Upstream {
    pub fn new(addr: String, tls: ClientTls) -> Upstream {
        Upstream {
            addr,
            tls,
            channel: Mutex::new(None),
        }
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    async fn client(&self) -> Result<AuditClient<Channel>, UpstreamError> {
        let mut slot = self.channel.lock().await;
        let channel = match &*slot {
            Some(c) => c.clone(),
            None => {
                let c = client::connect(&self.addr, &self.tls).await.map_err(|e| {
                    UpstreamError::Connect {
                        addr: self.addr.clone(),
                        reason: format!("{e:#}"),
                    }
                })?;
                *slot = Some(c.clone());
                c
            }
        };
        Ok(AuditClient::new(channel).max_decoding_message_size(gateway::MAX_MESSAGE_BYTES))
    }

    pub async fn query(&self, q: proto::AuditQuery) -> Result<proto::AuditPage, UpstreamError> {
        Ok(self.client().await?.query(q).await?.into_inner())
    }

    /// One person's report. The identity number goes into the request body
    /// only; the gateway audits the report.
    pub async fn subject_report(
        &self,
        id_number: &crate::IdNumber,
    ) -> Result<proto::SubjectReportResponse, UpstreamError> {
        let request = proto::SubjectReportRequest {
            id_number: id_number.expose().to_string(),
        };
        Ok(self
            .client()
            .await?
            .subject_report(request)
            .await?
            .into_inner())
    }

    pub async fn checkpoint(&self) -> Result<proto::SignedCheckpoint, UpstreamError> {
        Ok(self
            .client()
            .await?
            .get_checkpoint(proto::GetCheckpointRequest {})
            .await?
            .into_inner())
    }

    /// The inclusion proof of entry `seq` in the tree of `tree_size` entries
    /// (0: a checkpoint covering the current log, signed now if it grew).
    pub async fn inclusion(
        &self,
        seq: u64,
        tree_size: u64,
    ) -> Result<proto::InclusionProof, UpstreamError> {
        Ok(self
            .client()
            .await?
            .prove_inclusion(proto::InclusionRequest { seq, tree_size })
            .await?
            .into_inner())
    }

    pub async fn consistency(
        &self,
        from_size: u64,
        to_size: u64,
    ) -> Result<proto::ConsistencyProof, UpstreamError> {
        Ok(self
            .client()
            .await?
            .prove_consistency(proto::ConsistencyRequest { from_size, to_size })
            .await?
            .into_inner())
    }
}

/// 32-byte hashes from a proof's raw bytes; `None` if one has another length.
pub fn hashes(raw: &[Vec<u8>]) -> Option<Vec<tlog::Hash>> {
    raw.iter().map(|h| h.as_slice().try_into().ok()).collect()
}
