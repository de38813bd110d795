//! The gateway's secret keys and everything done with them: pseudonymisation
//! keys (handed to the policy engine), encryption of raw values at rest
//! (AES-256-GCM through ring) and the keyed index that finds a person's records
//! without storing the identity number.
//!
//! Keys live in a TOML key file outside the data directory (or come from the
//! environment); dev mode generates one. Every key has an id, and ciphertexts
//! name the key that sealed them, so keys can be rotated while old data stays
//! readable. Index and pseudonym keys rotate without loss through
//! [`crate::rotation`]: records are re-indexed under the active index key, and
//! each pseudonym domain keeps the pseudonym key it is bound to. Key material
//! never appears in `Debug` output or logs.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid key file {path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write key file {path}: {message}")]
    Write { path: PathBuf, message: String },
    #[error("no {0} key with id `{1}` is loaded")]
    UnknownKeyId(&'static str, String),
    #[error("a stored value failed authentication (corrupt or sealed by another key)")]
    Decrypt,
    #[error("stored ciphertext is malformed")]
    Malformed,
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    /// Id of the key that seals new data; older ids remain for reading.
    active_encryption: String,
    active_pseudonym: String,
    active_index: String,
    /// Ed25519 seed (32 bytes, base64) of the audit log's checkpoint signing key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    audit_log_key: Option<String>,
    #[serde(default)]
    encryption: Vec<KeyEntry>,
    #[serde(default)]
    pseudonym: Vec<KeyEntry>,
    #[serde(default)]
    index: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    id: String,
    /// 32 random bytes, base64.
    secret: String,
}

struct NamedKey<K> {
    id: String,
    key: K,
}

/// All loaded keys.
pub struct Keys {
    encryption: Vec<NamedKey<LessSafeKey>>,
    active_encryption: usize,
    pseudonym: Vec<NamedKey<Vec<u8>>>,
    active_pseudonym: usize,
    /// Pseudonym domains bound to a pseudonym key (its position in
    /// `pseudonym`): a domain keeps the key it was first used with, so a
    /// rotation does not change the pseudonyms its consumer already holds.
    /// Filled from the store at start-up ([`crate::rotation`]).
    pseudonym_domains: RwLock<HashMap<String, usize>>,
    index: Vec<NamedKey<hmac::Key>>,
    active_index: usize,
    audit_log_seed: [u8; 32],
    rng: SystemRandom,
}

impl fmt::Debug for Keys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keys")
            .field(
                "active_encryption",
                &self.encryption[self.active_encryption].id,
            )
            .field("pseudonym", &self.pseudonym[self.active_pseudonym].id)
            .field("index", &self.index[self.active_index].id)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Loads the key file; with `generate_if_missing` (dev mode) creates one first.
    /// `GATEWAY_KEYS` in the environment, if set, holds the file's TOML text itself.
    pub fn load(path: &Path, generate_if_missing: bool) -> Result<Keys, KeyError> {
        let text = match std::env::var("GATEWAY_KEYS") {
            Ok(text) => text,
            Err(_) => {
                if !path.exists() && generate_if_missing {
                    Self::generate_file(path)?;
                } else if generate_if_missing {
                    Self::add_audit_log_key(path)?;
                }
                std::fs::read_to_string(path).map_err(|source| KeyError::Read {
                    path: path.to_path_buf(),
                    source,
                })?
            }
        };
        Self::from_toml(&text).map_err(|message| KeyError::Invalid {
            path: path.to_path_buf(),
            message,
        })
    }

    /// Dev mode: a key file written before the audit log had a signing key
    /// gets one (the file is rewritten, mode 0600).
    fn add_audit_log_key(path: &Path) -> Result<(), KeyError> {
        let invalid = |message: String| KeyError::Invalid {
            path: path.to_path_buf(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let mut file: KeyFile = toml::from_str(&text).map_err(|e| invalid(e.to_string()))?;
        if file.audit_log_key.is_some() {
            return Ok(());
        }
        file.audit_log_key = Some(B64.encode(fresh_secret()));
        Self::write_file(path, &file)
    }

    fn write_file(path: &Path, file: &KeyFile) -> Result<(), KeyError> {
        let text = format!(
            "# Gateway secret keys. Generated for dev mode; keep out of version control.\n{}",
            toml::to_string(file).map_err(|e| KeyError::Write {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        );
        crate::pki::write_file(path, text.as_bytes(), true).map_err(|e| KeyError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Writes a new key file with one fresh key of each kind (mode 0600).
    pub fn generate_file(path: &Path) -> Result<(), KeyError> {
        let rng = SystemRandom::new();
        let fresh = |id: &str| -> KeyEntry {
            let mut b = [0u8; 32];
            rng.fill(&mut b).expect("system randomness");
            KeyEntry {
                id: id.to_string(),
                secret: B64.encode(b),
            }
        };
        let file = KeyFile {
            active_encryption: "enc-1".into(),
            active_pseudonym: "psn-1".into(),
            active_index: "idx-1".into(),
            audit_log_key: Some(B64.encode(fresh_secret())),
            encryption: vec![fresh("enc-1")],
            pseudonym: vec![fresh("psn-1")],
            index: vec![fresh("idx-1")],
        };
        let text = format!(
            "# Gateway secret keys. Generated for dev mode; keep out of version control.\n{}",
            toml::to_string(&file).map_err(|e| KeyError::Write {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?
        );
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| KeyError::Write {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        }
        crate::pki::write_file(path, text.as_bytes(), true).map_err(|e| KeyError::Write {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    fn from_toml(text: &str) -> Result<Keys, String> {
        let file: KeyFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let secret = |e: &KeyEntry| -> Result<Vec<u8>, String> {
            let b = B64
                .decode(e.secret.trim())
                .map_err(|_| format!("key `{}` is not base64", e.id))?;
            if b.len() != 32 {
                return Err(format!("key `{}` must be 32 bytes", e.id));
            }
            Ok(b)
        };
        let active = |list: &[KeyEntry], id: &str, what: &str| -> Result<usize, String> {
            list.iter()
                .position(|e| e.id == id)
                .ok_or_else(|| format!("active {what} key `{id}` is not in the file"))
        };
        let unique = |list: &[KeyEntry], what: &str| -> Result<(), String> {
            for (i, e) in list.iter().enumerate() {
                if list[..i].iter().any(|o| o.id == e.id) {
                    return Err(format!("{what} key id `{}` appears twice", e.id));
                }
            }
            Ok(())
        };
        unique(&file.encryption, "encryption")?;
        unique(&file.pseudonym, "pseudonym")?;
        unique(&file.index, "index")?;
        let pseudonym = file
            .pseudonym
            .iter()
            .map(|e| {
                Ok(NamedKey {
                    id: e.id.clone(),
                    key: secret(e)?,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let index = file
            .index
            .iter()
            .map(|e| {
                Ok(NamedKey {
                    id: e.id.clone(),
                    key: hmac::Key::new(hmac::HMAC_SHA256, &secret(e)?),
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        let mut encryption = Vec::new();
        for e in &file.encryption {
            let key = UnboundKey::new(&AES_256_GCM, &secret(e)?).map_err(|_| "bad AES key")?;
            encryption.push(NamedKey {
                id: e.id.clone(),
                key: LessSafeKey::new(key),
            });
        }
        let active_encryption = encryption
            .iter()
            .position(|k| k.id == file.active_encryption)
            .ok_or_else(|| {
                format!(
                    "active encryption key `{}` is not in the file",
                    file.active_encryption
                )
            })?;
        Ok(Keys {
            encryption,
            active_encryption,
            active_pseudonym: active(&file.pseudonym, &file.active_pseudonym, "pseudonym")?,
            pseudonym,
            pseudonym_domains: RwLock::default(),
            active_index: active(&file.index, &file.active_index, "index")?,
            index,
            audit_log_seed: {
                let text = file.audit_log_key.as_deref().ok_or(
                    "no audit_log_key (the audit log's Ed25519 signing seed, 32 bytes base64)",
                )?;
                B64.decode(text.trim())
                    .ok()
                    .and_then(|b| <[u8; 32]>::try_from(b).ok())
                    .ok_or("audit_log_key must be 32 bytes, base64")?
            },
            rng: SystemRandom::new(),
        })
    }

    /// Seed of the audit log's Ed25519 checkpoint signing key. Never log it.
    pub fn audit_log_seed(&self) -> [u8; 32] {
        self.audit_log_seed
    }

    /// The id of the key in use for each purpose (never key material).
    pub fn active_ids(&self) -> [(&'static str, &str); 3] {
        [
            ("encryption", &self.encryption[self.active_encryption].id),
            ("pseudonym", &self.pseudonym[self.active_pseudonym].id),
            ("index", &self.index[self.active_index].id),
        ]
    }

    /// The id of the active pseudonym key: the one new domains are bound to.
    pub fn active_pseudonym_id(&self) -> &str {
        &self.pseudonym[self.active_pseudonym].id
    }

    /// The id of the active index key: the one every stored record's keyed
    /// hashes are computed with once re-indexed ([`crate::rotation`]).
    pub fn active_index_id(&self) -> &str {
        &self.index[self.active_index].id
    }

    /// The secret from which a pseudonym domain's keys are derived (a
    /// consumer's pseudonyms and re-identification key, or the auditors'
    /// tokens, [`crate::audit::AUDIT_DOMAIN`]): the key the domain is bound
    /// to, or the active key for a domain not bound yet.
    pub fn pseudonym_secret_for(&self, domain: &str) -> &[u8] {
        let bound = self
            .pseudonym_domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .copied();
        &self.pseudonym[bound.unwrap_or(self.active_pseudonym)].key
    }

    /// The id of the pseudonym key `domain` is bound to, if bound.
    pub fn pseudonym_binding(&self, domain: &str) -> Option<&str> {
        let bound = self
            .pseudonym_domains
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(domain)
            .copied()?;
        Some(&self.pseudonym[bound].id)
    }

    /// Binds a pseudonym domain to the pseudonym key `key_id` (which must be
    /// in the key file). The store keeps the bindings; this is their copy in
    /// memory.
    pub fn bind_pseudonym_domain(&self, domain: &str, key_id: &str) -> Result<(), KeyError> {
        let at = self
            .pseudonym
            .iter()
            .position(|k| k.id == key_id)
            .ok_or_else(|| KeyError::UnknownKeyId("pseudonym", key_id.to_string()))?;
        self.pseudonym_domains
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(domain.to_string(), at);
        Ok(())
    }

    /// Keyed hash for indexes, with the active index key: `domain` separates
    /// what is hashed (a person, a record's source key), so equal strings in
    /// different roles never collide.
    pub fn index_hash(&self, domain: &str, value: &[u8]) -> Vec<u8> {
        let mut ctx = hmac::Context::with_key(&self.index[self.active_index].key);
        ctx.update(domain.as_bytes());
        ctx.update(&[0x1f]);
        ctx.update(value);
        ctx.sign().as_ref().to_vec()
    }

    /// Seals `plaintext` with the active key. `aad` binds the ciphertext to where
    /// it is stored, so a ciphertext moved to another row fails to open.
    /// Layout: key id length (1 byte) ‖ key id ‖ nonce (12) ‖ ciphertext+tag.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let k = &self.encryption[self.active_encryption];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("system randomness");
        let mut buf = plaintext.to_vec();
        k.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut buf,
            )
            .expect("AES-GCM sealing cannot fail for in-memory buffers");
        let mut out = Vec::with_capacity(1 + k.id.len() + NONCE_LEN + buf.len());
        out.push(k.id.len() as u8);
        out.extend_from_slice(k.id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        out
    }

    pub fn open(&self, aad: &[u8], sealed: &[u8]) -> Result<Vec<u8>, KeyError> {
        let (&id_len, rest) = sealed.split_first().ok_or(KeyError::Malformed)?;
        let id_len = usize::from(id_len);
        if rest.len() < id_len + NONCE_LEN {
            return Err(KeyError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let id = std::str::from_utf8(id).map_err(|_| KeyError::Malformed)?;
        let (nonce, ct) = rest.split_at(NONCE_LEN);
        let k = self
            .encryption
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| KeyError::UnknownKeyId("encryption", id.to_string()))?;
        let mut buf = ct.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| KeyError::Malformed)?;
        let plain = k
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| KeyError::Decrypt)?;
        let n = plain.len();
        buf.truncate(n);
        Ok(buf)
    }
}

fn fresh_secret() -> [u8; 32] {
    let mut b = [0u8; 32];
    SystemRandom::new().fill(&mut b).expect("system randomness");
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        Keys::load(&path, true).unwrap()
    }

    #[test]
    fn sealed_values_open_only_with_their_aad_and_are_not_plaintext() {
        let k = keys();
        let sealed = k.seal(b"row-1", "340207197607111133 马伟红".as_bytes());
        assert!(!sealed.windows(18).any(|w| w == b"340207197607111133"));
        assert_eq!(
            k.open(b"row-1", &sealed).unwrap(),
            "340207197607111133 马伟红".as_bytes()
        );
        assert!(matches!(k.open(b"row-2", &sealed), Err(KeyError::Decrypt)));
        let mut flipped = sealed.clone();
        *flipped.last_mut().unwrap() ^= 1;
        assert!(matches!(k.open(b"row-1", &flipped), Err(KeyError::Decrypt)));
    }

    #[test]
    fn index_hash_is_keyed_and_domain_separated() {
        let (a, b) = (keys(), keys());
        let v = b"340207197607111133";
        assert_eq!(a.index_hash("person", v), a.index_hash("person", v));
        assert_ne!(a.index_hash("person", v), b.index_hash("person", v));
        assert_ne!(a.index_hash("person", v), a.index_hash("record", v));
    }

    #[test]
    fn rotating_the_encryption_key_keeps_old_data_readable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        let old = Keys::load(&path, true).unwrap();
        let sealed_before = old.seal(b"row", b"340207197607111133");
        // Rotation: add a key, make it active, keep the old one for reading.
        let text = std::fs::read_to_string(&path).unwrap();
        let fresh = B64.encode([7u8; 32]);
        let rotated = text.replace(
            "active_encryption = \"enc-1\"",
            "active_encryption = \"enc-2\"",
        ) + &format!("\n[[encryption]]\nid = \"enc-2\"\nsecret = \"{fresh}\"\n");
        std::fs::write(&path, rotated).unwrap();
        let new = Keys::load(&path, false).unwrap();
        assert_eq!(
            new.open(b"row", &sealed_before).unwrap(),
            b"340207197607111133"
        );
        let sealed_after = new.seal(b"row", b"x");
        assert_eq!(&sealed_after[1..6], b"enc-2");
        assert!(matches!(
            old.open(b"row", &sealed_after),
            Err(KeyError::UnknownKeyId(..))
        ));
    }

    #[test]
    fn debug_output_names_key_ids_only() {
        let k = keys();
        let dbg = format!("{k:?}");
        assert!(dbg.contains("enc-1"));
        assert!(!dbg.contains("secret"));
    }
}
