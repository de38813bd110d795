//! Notes beside the log: free text that oversight must keep for a while (a
//! re-identification's written justification) but that must not become
//! permanent. The log is append-only and its leaves can never change, and an
//! officer's justification may name people or places, so such text never
//! enters a leaf. The leaf holds a salted commitment to it; the text and its
//! salt are sealed (AES-256-GCM, bound to that commitment) in a table beside
//! the log, written in the same transaction as the entry. An auditor opens it
//! and checks it against the leaf; it can be erased, after which the leaf, and
//! so every checkpoint and proof, is unchanged, and the commitment tells
//! nothing about the text (its salt went with it). See `ENCODING.md`.

use crate::keys::Keys;
use ring::rand::SecureRandom as _;

/// Random bytes salting each note's commitment.
pub const SALT_LEN: usize = 16;

/// Detail keys whose value is a commitment to a note beside the log.
pub const COMMITMENT_KEYS: [&str; 1] = ["justification_sha256"];

/// Why a note is erased: a fixed code in the erasure's own entry, never free
/// text (which would be permanent there).
pub const ERASE_REASONS: [&str; 3] = ["retention_expired", "subject_request", "entered_in_error"];

/// A note ready to be stored with its entry.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedNote {
    /// `hex(SHA-256(salt ‖ text))`: what the entry's details hold.
    pub commitment: String,
    /// `salt ‖ text` sealed with the active encryption key, its associated
    /// data [`aad`] of the commitment.
    pub sealed: Vec<u8>,
}

impl std::fmt::Debug for SealedNote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedNote")
            .field("commitment", &self.commitment)
            .finish_non_exhaustive()
    }
}

/// The commitment to `text` under `salt` (lower-case hex).
pub fn commitment(salt: &[u8], text: &str) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt);
    ctx.update(text.as_bytes());
    hex::encode(ctx.finish().as_ref())
}

/// The associated data a note is sealed with: it opens only beside the entry
/// whose leaf holds this commitment.
pub fn aad(commitment: &str) -> Vec<u8> {
    format!("audit-note\0{commitment}").into_bytes()
}

impl SealedNote {
    /// Salts, commits to and seals `text`.
    pub fn seal(keys: &Keys, text: &str) -> SealedNote {
        let mut salt = [0u8; SALT_LEN];
        ring::rand::SystemRandom::new()
            .fill(&mut salt)
            .expect("system randomness");
        let commitment = commitment(&salt, text);
        let mut plain = Vec::with_capacity(SALT_LEN + text.len());
        plain.extend_from_slice(&salt);
        plain.extend_from_slice(text.as_bytes());
        SealedNote {
            sealed: keys.seal(&aad(&commitment), &plain),
            commitment,
        }
    }
}

/// A note opened beside its entry.
#[derive(Debug, PartialEq, Eq)]
pub struct OpenedNote {
    pub text: String,
    /// `SHA-256(salt ‖ text)` equals the commitment in the entry's leaf.
    pub commitment_ok: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NoteError {
    /// Wrong or missing key, or the sealed bytes were altered or belong to
    /// another entry.
    #[error("the note cannot be opened beside this entry")]
    Open,
    #[error("the note is malformed")]
    Malformed,
}

/// Opens a stored note for the entry whose leaf holds `leaf_commitment`, and
/// checks the text against that commitment.
pub fn open(keys: &Keys, leaf_commitment: &str, sealed: &[u8]) -> Result<OpenedNote, NoteError> {
    let plain = keys
        .open(&aad(leaf_commitment), sealed)
        .map_err(|_| NoteError::Open)?;
    if plain.len() < SALT_LEN {
        return Err(NoteError::Malformed);
    }
    let (salt, text) = plain.split_at(SALT_LEN);
    let text = String::from_utf8(text.to_vec()).map_err(|_| NoteError::Malformed)?;
    Ok(OpenedNote {
        commitment_ok: commitment(salt, &text) == leaf_commitment,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> Keys {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys.toml");
        Keys::load(&path, true).unwrap()
    }

    /// A note opens only beside its own commitment, matches it, and its
    /// sealed form and commitment hold none of its text.
    #[test]
    fn a_note_opens_beside_its_commitment_only() {
        let keys = keys();
        let text = "Visited 王小明 at 芜湖市镜湖区 12 Road to offer assistance.";
        let note = SealedNote::seal(&keys, text);
        assert_eq!(note.commitment.len(), 64);
        assert!(!note.sealed.windows(6).any(|w| w == "王小明".as_bytes()));
        let opened = open(&keys, &note.commitment, &note.sealed).unwrap();
        assert_eq!(opened.text, text);
        assert!(opened.commitment_ok);
        // Salted: the same text twice gives two unrelated commitments.
        let again = SealedNote::seal(&keys, text);
        assert_ne!(again.commitment, note.commitment);
        // Moved beside another entry, or altered, it does not open.
        assert!(matches!(
            open(&keys, &again.commitment, &note.sealed),
            Err(NoteError::Open)
        ));
        let mut altered = note.sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert!(open(&keys, &note.commitment, &altered).is_err());
        assert!(!format!("{note:?}").contains("sealed"));
    }
}
