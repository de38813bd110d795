//! Ed25519 note keys: C2SP signed-note key names and key IDs, and the text
//! encodings of golang.org/x/mod/sumdb/note, so that keys are exchanged in the
//! same form the Go and transparency-dev tooling reads:
//!
//! * verifier key: `<name>+<hex key ID>+<base64(0x01 || 32-byte public key)>`
//! * signer key:   `PRIVATE+KEY+<name>+<hex key ID>+<base64(0x01 || 32-byte seed)>`

use std::fmt;
use std::str::FromStr;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use thiserror::Error;

use crate::hash::sha256;

/// Signature type identifier byte for Ed25519 (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key or key string was rejected.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum KeyError {
    /// Signer keys start with `PRIVATE+KEY+`.
    #[error("signer key does not start with PRIVATE+KEY+")]
    NotSignerKey,
    /// Fewer than three `+`-separated fields.
    #[error("key string needs the fields <name>+<key ID>+<key>")]
    MissingField,
    /// Key names must be non-empty, without Unicode spaces or `+`.
    #[error("invalid key name {0:?}")]
    InvalidName(String),
    /// Key IDs are exactly eight lowercase hex digits.
    #[error("key ID {0:?} is not eight lowercase hex digits")]
    InvalidKeyId(String),
    /// The key field is not canonical padded standard base64.
    #[error("key is not canonical standard base64")]
    InvalidBase64,
    /// The key field decodes to nothing, not even an algorithm byte.
    #[error("key is empty")]
    EmptyKey,
    /// Only Ed25519 (0x01) is supported.
    #[error("unsupported signature algorithm 0x{0:02x}")]
    UnsupportedAlgorithm(u8),
    /// Ed25519 public keys and seeds are 32 bytes.
    #[error("Ed25519 key material must be 32 bytes, got {0}")]
    KeyLength(usize),
    /// The stated key ID is not the one derived from name and key.
    #[error("stated key ID {stated:08x} differs from computed {computed:08x}")]
    KeyIdMismatch { stated: u32, computed: u32 },
    /// ring refused the seed.
    #[error("Ed25519 seed rejected")]
    SeedRejected,
    /// The system random number generator failed.
    #[error("system randomness unavailable")]
    Randomness,
}

/// Whether `name` is a valid key name: non-empty, no Unicode space, no `+`.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// Ed25519 key ID: the first four bytes, big-endian, of
/// `SHA-256(name || 0x0A || 0x01 || public_key)`.
pub fn key_id(name: &str, public_key: &[u8; 32]) -> u32 {
    let digest = sha256(&[name.as_bytes(), b"\n", &[ALG_ED25519], public_key]);
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Splits `<name>+<key ID>+<base64(0x01 || key)>` into its checked parts.
fn parse_fields(s: &str) -> Result<(&str, u32, [u8; 32]), KeyError> {
    let mut fields = s.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(KeyError::MissingField);
    };
    if !is_valid_name(name) {
        return Err(KeyError::InvalidName(name.to_owned()));
    }
    let is_lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if id_hex.len() != 8 || !id_hex.bytes().all(is_lower_hex) {
        return Err(KeyError::InvalidKeyId(id_hex.to_owned()));
    }
    let mut id = [0u8; 4];
    hex::decode_to_slice(id_hex, &mut id).map_err(|_| KeyError::InvalidKeyId(id_hex.to_owned()))?;
    let raw = STANDARD
        .decode(key_b64)
        .map_err(|_| KeyError::InvalidBase64)?;
    let (&alg, key) = raw.split_first().ok_or(KeyError::EmptyKey)?;
    if alg != ALG_ED25519 {
        return Err(KeyError::UnsupportedAlgorithm(alg));
    }
    let key: [u8; 32] = key.try_into().map_err(|_| KeyError::KeyLength(key.len()))?;
    Ok((name, u32::from_be_bytes(id), key))
}

fn encode_key(name: &str, key_id: u32, key: &[u8; 32]) -> String {
    let mut raw = Vec::with_capacity(33);
    raw.push(ALG_ED25519);
    raw.extend_from_slice(key);
    format!("{name}+{key_id:08x}+{}", STANDARD.encode(raw))
}

/// An Ed25519 note verifier: key name, key ID and public key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    public_key: [u8; 32],
}

impl Verifier {
    /// A verifier for `public_key` under `name`, deriving the key ID.
    pub fn new(name: &str, public_key: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName(name.to_owned()));
        }
        let key_id = key_id(name, &public_key);
        Ok(Self {
            name: name.to_owned(),
            key_id,
            public_key,
        })
    }

    /// Parses a verifier key string exactly (no surrounding whitespace).
    pub fn parse(vkey: &str) -> Result<Self, KeyError> {
        let (name, stated, public_key) = parse_fields(vkey)?;
        let verifier = Self::new(name, public_key)?;
        if verifier.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: verifier.key_id,
            });
        }
        Ok(verifier)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    pub fn public_key(&self) -> &[u8; 32] {
        &self.public_key
    }

    /// Whether `signature` is a valid Ed25519 signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&ED25519, &self.public_key)
            .verify(message, signature)
            .is_ok()
    }
}

/// Formats as the verifier key string.
impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&encode_key(&self.name, self.key_id, &self.public_key))
    }
}

impl FromStr for Verifier {
    type Err = KeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// An Ed25519 note signer. Its `Debug` output omits the secret seed.
pub struct Signer {
    name: String,
    key_id: u32,
    seed: [u8; 32],
    key_pair: Ed25519KeyPair,
}

impl Signer {
    /// A signer for the Ed25519 key with the given 32-byte seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Self, KeyError> {
        if !is_valid_name(name) {
            return Err(KeyError::InvalidName(name.to_owned()));
        }
        let key_pair =
            Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|_| KeyError::SeedRejected)?;
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(key_pair.public_key().as_ref());
        let key_id = key_id(name, &public_key);
        Ok(Self {
            name: name.to_owned(),
            key_id,
            seed,
            key_pair,
        })
    }

    /// A signer with a fresh random seed from the system RNG.
    pub fn generate(name: &str) -> Result<Self, KeyError> {
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .map_err(|_| KeyError::Randomness)?;
        Self::from_seed(name, seed)
    }

    /// Parses a `PRIVATE+KEY+...` signer key string exactly.
    pub fn parse(skey: &str) -> Result<Self, KeyError> {
        let rest = skey
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or(KeyError::NotSignerKey)?;
        let (name, stated, seed) = parse_fields(rest)?;
        let signer = Self::from_seed(name, seed)?;
        if signer.key_id != stated {
            return Err(KeyError::KeyIdMismatch {
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The matching verifier.
    pub fn verifier(&self) -> Verifier {
        let mut public_key = [0u8; 32];
        public_key.copy_from_slice(self.key_pair.public_key().as_ref());
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            public_key,
        }
    }

    /// Ed25519 signature of `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        let mut signature = [0u8; 64];
        signature.copy_from_slice(self.key_pair.sign(message).as_ref());
        signature
    }

    /// The secret signer key string (`PRIVATE+KEY+...`). Handle with care.
    pub fn to_skey(&self) -> String {
        format!(
            "{PRIVATE_KEY_PREFIX}{}",
            encode_key(&self.name, self.key_id, &self.seed)
        )
    }
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Signer")
            .field("name", &self.name)
            .field("key_id", &format_args!("{:08x}", self.key_id))
            .finish_non_exhaustive()
    }
}
