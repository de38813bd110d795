//! Caller identity: the one place that turns a verified client certificate into a
//! [`Principal`]. Identity comes only from the certificate's SPIFFE-style URI SAN
//! (`spiffe://<trust-domain>/<role>/<name>`), never from a request field or the CN.

use adapters::Agency;
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use x509_parser::extensions::GeneralName;

/// Who is calling, as established by mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An agency system; its rows always go through this agency's adapter.
    Agency(Agency),
    /// A union consumer (a department of the union platform), named as in its policy.
    Union(String),
    /// A compliance officer.
    Auditor(String),
}

impl Principal {
    pub fn role(&self) -> &'static str {
        match self {
            Principal::Agency(_) => "agency",
            Principal::Union(_) => "union",
            Principal::Auditor(_) => "auditor",
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Principal::Agency(a) => a.id(),
            Principal::Union(n) | Principal::Auditor(n) => n,
        }
    }
}

/// `role/name`, the form used in audit entries and logs.
impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.role(), self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentityError {
    #[error("no client certificate was presented")]
    NoCertificate,
    #[error("the client certificate cannot be parsed")]
    Unparseable,
    #[error("the client certificate has no URI subject alternative name")]
    NoUri,
    #[error("the client certificate has more than one URI subject alternative name")]
    AmbiguousUri,
    #[error("the certificate URI is not spiffe://{expected}/<role>/<name>")]
    WrongTrustDomain { expected: String },
    #[error("the certificate URI names an unknown role `{0}`")]
    UnknownRole(String),
    #[error("the certificate names agency `{0}`, which is not one of the six known agencies")]
    UnknownAgency(String),
    #[error("the certificate URI has a malformed name")]
    BadName,
}

impl IdentityError {
    /// Stable short code for audit entries.
    pub fn code(&self) -> &'static str {
        match self {
            IdentityError::NoCertificate => "no_certificate",
            IdentityError::Unparseable => "unparseable_certificate",
            IdentityError::NoUri => "no_uri_san",
            IdentityError::AmbiguousUri => "ambiguous_uri_san",
            IdentityError::WrongTrustDomain { .. } => "wrong_trust_domain",
            IdentityError::UnknownRole(_) => "unknown_role",
            IdentityError::UnknownAgency(_) => "unknown_agency",
            IdentityError::BadName => "bad_name",
        }
    }
}

/// Extracts the principal from a DER certificate that rustls has already verified
/// against the configured CA and CRLs.
pub fn principal_from_cert(der: &[u8], trust_domain: &str) -> Result<Principal, IdentityError> {
    let (_, cert) =
        x509_parser::parse_x509_certificate(der).map_err(|_| IdentityError::Unparseable)?;
    let san = cert
        .subject_alternative_name()
        .map_err(|_| IdentityError::Unparseable)?
        .ok_or(IdentityError::NoUri)?;
    let mut uris = san.value.general_names.iter().filter_map(|n| match n {
        GeneralName::URI(u) => Some(*u),
        _ => None,
    });
    let uri = uris.next().ok_or(IdentityError::NoUri)?;
    if uris.next().is_some() {
        return Err(IdentityError::AmbiguousUri);
    }
    principal_from_uri(uri, trust_domain)
}

/// Principals of the certificates seen lately, for one trust domain. Every
/// call on a connection carries the same verified certificate, and parsing
/// it again for each call cost a few percent of a look-up. The principal
/// depends only on the certificate's bytes and the trust domain, so a hit is
/// exact; whether the certificate is still good (expiry, revocation) is the
/// handshake's business, not this cache's.
pub struct PrincipalCache {
    trust_domain: String,
    seen: Mutex<HashMap<Box<[u8]>, Principal>>,
}

/// Certificates remembered at most; past this the cache starts afresh.
const PRINCIPAL_CACHE_ENTRIES: usize = 1024;

impl PrincipalCache {
    pub fn new(trust_domain: &str) -> PrincipalCache {
        PrincipalCache {
            trust_domain: trust_domain.to_string(),
            seen: Mutex::default(),
        }
    }

    /// [`principal_from_cert`], remembered.
    pub fn principal(&self, der: &[u8]) -> Result<Principal, IdentityError> {
        if let Some(known) = self.lock().get(der) {
            return Ok(known.clone());
        }
        let principal = principal_from_cert(der, &self.trust_domain)?;
        let mut seen = self.lock();
        if seen.len() >= PRINCIPAL_CACHE_ENTRIES {
            seen.clear();
        }
        seen.insert(der.into(), principal.clone());
        Ok(principal)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<[u8]>, Principal>> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Parses `spiffe://<trust_domain>/<role>/<name>`.
pub fn principal_from_uri(uri: &str, trust_domain: &str) -> Result<Principal, IdentityError> {
    let wrong = || IdentityError::WrongTrustDomain {
        expected: trust_domain.to_string(),
    };
    let path = uri
        .strip_prefix("spiffe://")
        .and_then(|rest| rest.strip_prefix(trust_domain))
        .and_then(|rest| rest.strip_prefix('/'))
        .ok_or_else(wrong)?;
    let (role, name) = path.split_once('/').ok_or_else(wrong)?;
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_name {
        return Err(IdentityError::BadName);
    }
    match role {
        "agency" => Agency::from_id(name)
            .map(Principal::Agency)
            .ok_or_else(|| IdentityError::UnknownAgency(name.to_string())),
        "union" => Ok(Principal::Union(name.to_string())),
        "auditor" => Ok(Principal::Auditor(name.to_string())),
        other => Err(IdentityError::UnknownRole(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TD: &str = "exchange.wuhu.example";

    #[test]
    fn parses_each_role() {
        assert_eq!(
            principal_from_uri("spiffe://exchange.wuhu.example/agency/hrss", TD),
            Ok(Principal::Agency(Agency::Hrss))
        );
        assert_eq!(
            principal_from_uri("spiffe://exchange.wuhu.example/union/assistance", TD),
            Ok(Principal::Union("assistance".into()))
        );
        assert_eq!(
            principal_from_uri("spiffe://exchange.wuhu.example/auditor/compliance", TD)
                .unwrap()
                .to_string(),
            "auditor/compliance"
        );
    }

    #[test]
    fn the_principal_cache_answers_as_the_certificate_does() {
        use crate::pki::{Ca, Validity};
        use rustls::pki_types::{CertificateDer, pem::PemObject};
        let mut ca = Ca::new("test CA").unwrap();
        let mut der = |uri: &str| {
            let issued = ca.issue_client(uri, Validity::Days(1)).unwrap();
            CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
                .unwrap()
                .to_vec()
        };
        let hrss = der("spiffe://exchange.wuhu.example/agency/hrss");
        let union = der("spiffe://exchange.wuhu.example/union/assistance");
        let foreign = der("spiffe://evil.example/union/assistance");
        let cache = PrincipalCache::new(TD);
        for _ in 0..2 {
            assert_eq!(cache.principal(&hrss), Ok(Principal::Agency(Agency::Hrss)));
            assert_eq!(
                cache.principal(&union),
                Ok(Principal::Union("assistance".into()))
            );
            assert_eq!(
                cache.principal(&foreign).unwrap_err().code(),
                "wrong_trust_domain"
            );
        }
        // Past its bound the cache starts afresh and still answers.
        for i in 0..PRINCIPAL_CACHE_ENTRIES + 3 {
            let mut other = union.clone();
            other.extend_from_slice(&i.to_be_bytes());
            let _ = cache.principal(&other);
        }
        assert!(cache.lock().len() <= PRINCIPAL_CACHE_ENTRIES);
        assert_eq!(cache.principal(&hrss), Ok(Principal::Agency(Agency::Hrss)));
    }

    #[test]
    fn rejects_foreign_domains_roles_and_names() {
        for (uri, code) in [
            ("spiffe://evil.example/agency/hrss", "wrong_trust_domain"),
            (
                "spiffe://exchange.wuhu.example.evil/agency/hrss",
                "wrong_trust_domain",
            ),
            (
                "https://exchange.wuhu.example/agency/hrss",
                "wrong_trust_domain",
            ),
            ("spiffe://exchange.wuhu.example/admin/root", "unknown_role"),
            (
                "spiffe://exchange.wuhu.example/agency/police",
                "unknown_agency",
            ),
            ("spiffe://exchange.wuhu.example/union/a/b", "bad_name"),
            ("spiffe://exchange.wuhu.example/union/", "bad_name"),
        ] {
            assert_eq!(
                principal_from_uri(uri, TD).unwrap_err().code(),
                code,
                "{uri}"
            );
        }
    }
}
