//! C2SP signed notes (<https://c2sp.org/signed-note>): text ending in a
//! newline, a blank line, then signature lines `— <key name> <base64(key ID
//! || signature)>`. The audit log publishes its checkpoints as signed notes so
//! that any standard note verifier can check them.
//!
//! Parsing ([`Note::parse`]) only checks the format; [`Note::verify`] applies
//! the trust rules: signatures by unknown keys are ignored, every signature
//! by a known key must verify, and at least one must.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use crate::keys::{Signer, Verifier, is_valid_name};

/// Em dash (U+2014) and a space: the start of every signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// Notes with more signatures than this are rejected as malformed.
pub const MAX_SIGNATURES: usize = 100;

/// Why a note is malformed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NoteFormatError {
    #[error("note is not valid UTF-8")]
    NotUtf8,
    #[error("note contains an ASCII control character other than newline")]
    ControlCharacter,
    #[error("note does not end with a newline")]
    MissingFinalNewline,
    #[error("no blank line separates the text from the signatures")]
    MissingSignatureBlock,
    #[error("note has no signatures")]
    NoSignatures,
    #[error("signature line {line} is not of the form \"— <name> <base64>\"")]
    BadSignatureLine { line: usize },
    #[error("invalid key name {0:?} in a signature line")]
    InvalidKeyName(String),
    #[error("signature is not canonical standard base64")]
    SignatureEncoding,
    #[error("signature has {0} bytes, fewer than a key ID and one signature byte")]
    SignatureTooShort(usize),
    #[error("note has more than {MAX_SIGNATURES} signatures")]
    TooManySignatures,
}

/// Why a note was not accepted.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum NoteError {
    #[error("malformed note: {0}")]
    Malformed(#[from] NoteFormatError),
    /// A signature from a known key failed to verify.
    #[error("signature by {name} (key ID {key_id:08x}) does not verify")]
    InvalidSignature { name: String, key_id: u32 },
    /// No signature from a known key.
    #[error("note has no signature from a trusted key")]
    Unverified,
}

/// One signature line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    pub name: String,
    pub key_id: u32,
    /// The signature proper, without the 4-byte key ID.
    pub signature: Vec<u8>,
}

/// A syntactically valid, not yet verified, signed note.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    text: String,
    signatures: Vec<NoteSignature>,
}

/// A note whose signatures have been checked against a set of verifiers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenedNote {
    /// The signed text, including its final newline.
    pub text: String,
    /// Signatures that verified, in note order.
    pub verified: Vec<NoteSignature>,
    /// Signatures by unknown keys, ignored, in note order.
    pub unverified: Vec<NoteSignature>,
}

fn check_characters(s: &str) -> Result<(), NoteFormatError> {
    if s.bytes().any(|b| b < 0x20 && b != b'\n') {
        return Err(NoteFormatError::ControlCharacter);
    }
    Ok(())
}

impl Note {
    /// Parses a signed note, checking its format only.
    pub fn parse(msg: &[u8]) -> Result<Self, NoteFormatError> {
        let msg = std::str::from_utf8(msg).map_err(|_| NoteFormatError::NotUtf8)?;
        check_characters(msg)?;
        // The last blank line separates text and signatures.
        let split = msg
            .rfind("\n\n")
            .ok_or(NoteFormatError::MissingSignatureBlock)?;
        let (text, block) = (&msg[..=split], &msg[split + 2..]);
        if block.is_empty() {
            return Err(NoteFormatError::NoSignatures);
        }
        let block = block
            .strip_suffix('\n')
            .ok_or(NoteFormatError::MissingFinalNewline)?;
        let mut signatures = Vec::new();
        for (i, line) in block.split('\n').enumerate() {
            if signatures.len() == MAX_SIGNATURES {
                return Err(NoteFormatError::TooManySignatures);
            }
            signatures.push(parse_signature_line(line, i + 1)?);
        }
        Ok(Self {
            text: text.to_owned(),
            signatures,
        })
    }

    /// The signed text, including its final newline.
    pub fn text(&self) -> &str {
        &self.text
    }

    pub fn signatures(&self) -> &[NoteSignature] {
        &self.signatures
    }

    /// Checks the signatures against `verifiers`. A signature is by a known
    /// key when a verifier has the same name and key ID; each such signature
    /// must verify, the others are ignored, and at least one must be known.
    pub fn verify(self, verifiers: &[Verifier]) -> Result<OpenedNote, NoteError> {
        let mut verified = Vec::new();
        let mut unverified = Vec::new();
        for sig in self.signatures {
            let mut known = verifiers
                .iter()
                .filter(|v| v.name() == sig.name && v.key_id() == sig.key_id)
                .peekable();
            if known.peek().is_none() {
                unverified.push(sig);
            } else if known.any(|v| v.verify(self.text.as_bytes(), &sig.signature)) {
                verified.push(sig);
            } else {
                return Err(NoteError::InvalidSignature {
                    name: sig.name,
                    key_id: sig.key_id,
                });
            }
        }
        if verified.is_empty() {
            return Err(NoteError::Unverified);
        }
        Ok(OpenedNote {
            text: self.text,
            verified,
            unverified,
        })
    }
}

fn parse_signature_line(line: &str, number: usize) -> Result<NoteSignature, NoteFormatError> {
    let bad_line = NoteFormatError::BadSignatureLine { line: number };
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or(bad_line.clone())?;
    let (name, b64) = rest.split_once(' ').ok_or(bad_line)?;
    if !is_valid_name(name) {
        return Err(NoteFormatError::InvalidKeyName(name.to_owned()));
    }
    let raw = STANDARD
        .decode(b64)
        .map_err(|_| NoteFormatError::SignatureEncoding)?;
    if raw.len() < 5 {
        return Err(NoteFormatError::SignatureTooShort(raw.len()));
    }
    let (id, signature) = raw.split_at(4);
    Ok(NoteSignature {
        name: name.to_owned(),
        key_id: u32::from_be_bytes([id[0], id[1], id[2], id[3]]),
        signature: signature.to_vec(),
    })
}

/// Parses `msg` and verifies it against `verifiers` (see [`Note::verify`]).
pub fn open(msg: &[u8], verifiers: &[Verifier]) -> Result<OpenedNote, NoteError> {
    Note::parse(msg)?.verify(verifiers)
}

/// Signs `text` (which must end with a newline) with each signer, in order,
/// returning the signed note.
pub fn sign(text: &str, signers: &[&Signer]) -> Result<String, NoteFormatError> {
    if !text.ends_with('\n') {
        return Err(NoteFormatError::MissingFinalNewline);
    }
    check_characters(text)?;
    if signers.is_empty() {
        return Err(NoteFormatError::NoSignatures);
    }
    if signers.len() > MAX_SIGNATURES {
        return Err(NoteFormatError::TooManySignatures);
    }
    let mut note = String::with_capacity(text.len() + 1 + signers.len() * 110);
    note.push_str(text);
    note.push('\n');
    for signer in signers {
        let mut raw = Vec::with_capacity(68);
        raw.extend_from_slice(&signer.key_id().to_be_bytes());
        raw.extend_from_slice(&signer.sign(text.as_bytes()));
        note.push_str(SIGNATURE_PREFIX);
        note.push_str(signer.name());
        note.push(' ');
        note.push_str(&STANDARD.encode(raw));
        note.push('\n');
    }
    Ok(note)
}
