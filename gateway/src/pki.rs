//! Dev PKI: a certificate authority that issues the gateway's server certificate
//! and one client certificate per caller, with the caller's identity in a
//! SPIFFE-style URI SAN. `gateway certs init` uses it for `certs/dev/`, and the
//! test suite uses it for its CA tree (good, expired, revoked, foreign-CA).
//!
//! Never for production: there, certificates come from the city's own PKI.

use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
    RevocationReason, RevokedCertParams, SanType, SerialNumber,
};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid identity `{0}`: expected ROLE/NAME with ROLE agency, union or auditor")]
    BadIdentity(String),
}

/// A certificate and its private key, PEM-encoded.
#[derive(Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
    pub serial: Vec<u8>,
}

impl Issued {
    /// Writes `<stem>.pem` and `<stem>.key` (the key readable by the owner only).
    pub fn write(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), PkiError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}.key"));
        if let Some(parent) = cert.parent() {
            create_dir(parent)?;
        }
        write_file(&cert, self.cert_pem.as_bytes(), false)?;
        write_file(&key, self.key_pem.as_bytes(), true)?;
        Ok((cert, key))
    }
}

/// Validity window of an issued certificate.
#[derive(Debug, Clone, Copy)]
pub enum Validity {
    /// From an hour ago for this many days.
    Days(u64),
    /// Already expired: valid from 30 days ago until yesterday.
    Expired,
}

/// An in-memory certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    next_serial: u64,
}

impl Ca {
    /// A new self-signed CA with the given common name, valid ten years.
    pub fn new(common_name: &str) -> Result<Ca, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Exchange gateway dev PKI");
        dn.push(DnType::CommonName, common_name);
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.key_identifier_method = KeyIdMethod::Sha256;
        set_validity(&mut params, Validity::Days(3650));
        let key = KeyPair::generate()?;
        let cert = params.self_signed(&key)?;
        Ok(Ca {
            issuer: Issuer::new(params, key),
            cert_pem: cert.pem(),
            next_serial: 1,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    fn serial(&mut self) -> Vec<u8> {
        // Random high bytes keep serials unique across regenerated trees.
        let mut s = [0u8; 12];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut s[..4])
            .expect("system randomness");
        s[0] &= 0x7f;
        s[0] |= 0x01;
        s[4..].copy_from_slice(&self.next_serial.to_be_bytes());
        self.next_serial += 1;
        s.to_vec()
    }

    /// A TLS server certificate for the given DNS names and IP addresses.
    pub fn issue_server(&mut self, names: &[&str]) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        for name in names {
            params.subject_alt_names.push(match name.parse() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName((*name).try_into()?),
            });
        }
        params
            .distinguished_name
            .push(DnType::CommonName, "exchange gateway");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, Validity::Days(825))
    }

    /// A client certificate whose identity is the URI SAN `uri`.
    pub fn issue_client(&mut self, uri: &str, validity: Validity) -> Result<Issued, PkiError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.subject_alt_names.push(SanType::URI(uri.try_into()?));
        // The CN is informational only: identity is taken from the URI SAN.
        params.distinguished_name.push(DnType::CommonName, uri);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        self.sign(params, validity)
    }

    fn sign(
        &mut self,
        mut params: CertificateParams,
        validity: Validity,
    ) -> Result<Issued, PkiError> {
        let serial = self.serial();
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, validity);
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            serial,
        })
    }

    /// A CRL revoking the given serial numbers, valid for 30 days.
    pub fn crl(&self, revoked: &[&[u8]]) -> Result<String, PkiError> {
        self.crl_until(
            revoked,
            time::OffsetDateTime::now_utc() + time::Duration::days(30),
        )
    }

    /// A CRL revoking the given serial numbers whose `nextUpdate` is
    /// `next_update` (in the past: a stale CRL).
    pub fn crl_until(
        &self,
        revoked: &[&[u8]],
        next_update: time::OffsetDateTime,
    ) -> Result<String, PkiError> {
        let now = time::OffsetDateTime::now_utc();
        let params = CertificateRevocationListParams {
            this_update: now.min(next_update) - time::Duration::hours(1),
            next_update,
            crl_number: SerialNumber::from(1u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .iter()
                .map(|serial| RevokedCertParams {
                    serial_number: SerialNumber::from_slice(serial),
                    revocation_time: now - time::Duration::minutes(5),
                    reason_code: Some(RevocationReason::KeyCompromise),
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        };
        Ok(params.signed_by(&self.issuer)?.pem()?)
    }
}

fn set_validity(params: &mut CertificateParams, validity: Validity) {
    let now = time::OffsetDateTime::now_utc();
    let (from, to) = match validity {
        Validity::Days(days) => (
            now - time::Duration::hours(1),
            now + time::Duration::days(days as i64),
        ),
        Validity::Expired => (
            now - time::Duration::days(30),
            now - time::Duration::days(1),
        ),
    };
    params.not_before = from;
    params.not_after = to;
}

/// A caller identity as written on the command line and in file names: `agency/hrss`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityName {
    pub role: String,
    pub name: String,
}

impl IdentityName {
    pub fn parse(s: &str) -> Result<IdentityName, PkiError> {
        match s.split_once('/') {
            Some((role @ ("agency" | "union" | "auditor"), name))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
            {
                Ok(IdentityName {
                    role: role.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(PkiError::BadIdentity(s.to_string())),
        }
    }

    pub fn uri(&self, trust_domain: &str) -> String {
        format!("spiffe://{trust_domain}/{}/{}", self.role, self.name)
    }

    /// Path stem of this identity's files under a dev certificate directory.
    pub fn stem(&self) -> String {
        format!("{}/{}", self.role, self.name)
    }
}

/// What `certs init` wrote.
pub struct DevPki {
    pub dir: PathBuf,
    pub identities: Vec<IdentityName>,
}

/// Creates the dev CA, the server certificate (localhost, 127.0.0.1, ::1) and one
/// client certificate per identity under `dir`, plus an empty CRL.
pub fn init_dev_pki(
    dir: &Path,
    trust_domain: &str,
    identities: &[IdentityName],
) -> Result<DevPki, PkiError> {
    create_dir(dir)?;
    let mut ca = Ca::new("Exchange gateway DEV CA — not for production")?;
    write_file(&dir.join("ca.pem"), ca.cert_pem().as_bytes(), false)?;
    ca.issue_server(&["localhost", "127.0.0.1", "::1"])?
        .write(dir, "server")?;
    for id in identities {
        ca.issue_client(&id.uri(trust_domain), Validity::Days(365))?
            .write(dir, &id.stem())?;
    }
    write_file(&dir.join("crl.pem"), ca.crl(&[])?.as_bytes(), false)?;
    Ok(DevPki {
        dir: dir.to_path_buf(),
        identities: identities.to_vec(),
    })
}

fn create_dir(dir: &Path) -> Result<(), PkiError> {
    std::fs::create_dir_all(dir).map_err(|source| PkiError::Write {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file; secrets get mode 0600 on Unix.
pub(crate) fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), PkiError> {
    let err = |source| PkiError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(path, bytes).map_err(err)?;
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
    }
    #[cfg(not(unix))]
    let _ = secret;
    Ok(())
}
