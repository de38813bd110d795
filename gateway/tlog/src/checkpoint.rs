//! C2SP tlog checkpoints (<https://c2sp.org/tlog-checkpoint>): the signed
//! tree head the gateway publishes and compliance officers verify. The note
//! text is the origin line, the decimal tree size, the base64 root hash and
//! optional extension lines, each ending in a newline. Parsing is strict, so
//! that two parties never disagree about what a signed checkpoint says.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use thiserror::Error;

use crate::hash::{HASH_LEN, Hash};
use crate::keys::{Signer, Verifier};
use crate::note::{self, NoteError, OpenedNote};

/// Why a checkpoint body or signed checkpoint was rejected.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum CheckpointError {
    #[error("checkpoint text does not end with a newline")]
    MissingFinalNewline,
    #[error("checkpoint text contains an ASCII control character other than newline")]
    ControlCharacter,
    #[error("checkpoint needs origin, size and root hash lines")]
    TooFewLines,
    #[error("checkpoint origin is empty")]
    EmptyOrigin,
    /// Not ASCII decimal without leading zeroes, or above 2^64 - 1.
    #[error("invalid tree size {0:?}")]
    InvalidSize(String),
    #[error("root hash is not canonical standard base64")]
    InvalidRootEncoding,
    #[error("root hash has {0} bytes, expected {HASH_LEN}")]
    RootLength(usize),
    #[error("extension line {0} is empty")]
    EmptyExtension(usize),
    /// Origin and extension lines are single lines.
    #[error("origin or extension line contains a newline")]
    EmbeddedNewline,
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// A tree head: origin, size, root hash and extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
    extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint, validating the origin and extension lines.
    pub fn new(
        origin: &str,
        size: u64,
        root: Hash,
        extensions: Vec<String>,
    ) -> Result<Self, CheckpointError> {
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        for (i, line) in std::iter::once(origin)
            .chain(extensions.iter().map(String::as_str))
            .enumerate()
        {
            if line.contains('\n') {
                return Err(CheckpointError::EmbeddedNewline);
            }
            if line.bytes().any(|b| b < 0x20) {
                return Err(CheckpointError::ControlCharacter);
            }
            if i > 0 && line.is_empty() {
                return Err(CheckpointError::EmptyExtension(i));
            }
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    /// Parses a checkpoint body (the note text) strictly.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let body = text
            .strip_suffix('\n')
            .ok_or(CheckpointError::MissingFinalNewline)?;
        if body.bytes().any(|b| b < 0x20 && b != b'\n') {
            return Err(CheckpointError::ControlCharacter);
        }
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(CheckpointError::TooFewLines);
        };
        if origin.is_empty() {
            return Err(CheckpointError::EmptyOrigin);
        }
        let size = parse_size(size)?;
        let root = STANDARD
            .decode(root)
            .map_err(|_| CheckpointError::InvalidRootEncoding)?;
        let root: Hash = root
            .as_slice()
            .try_into()
            .map_err(|_| CheckpointError::RootLength(root.len()))?;
        let mut extensions = Vec::new();
        for (i, line) in lines.enumerate() {
            if line.is_empty() {
                return Err(CheckpointError::EmptyExtension(i + 1));
            }
            extensions.push(line.to_owned());
        }
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
            extensions,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    pub fn extensions(&self) -> &[String] {
        &self.extensions
    }

    /// The checkpoint body: the text that gets signed.
    pub fn to_text(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        for line in &self.extensions {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    /// The signed checkpoint note.
    pub fn sign(&self, signers: &[&Signer]) -> Result<String, CheckpointError> {
        note::sign(&self.to_text(), signers).map_err(|e| CheckpointError::Note(e.into()))
    }

    /// Verifies a signed checkpoint against `verifiers` (see
    /// [`crate::Note::verify`]) and parses its body.
    pub fn open(msg: &[u8], verifiers: &[Verifier]) -> Result<(Self, OpenedNote), CheckpointError> {
        let opened = note::open(msg, verifiers)?;
        let checkpoint = Self::parse(&opened.text)?;
        Ok((checkpoint, opened))
    }
}

/// ASCII decimal, no leading zeroes (except "0" itself), at most 2^64 - 1.
fn parse_size(s: &str) -> Result<u64, CheckpointError> {
    let invalid = || CheckpointError::InvalidSize(s.to_owned());
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return Err(invalid());
    }
    s.parse().map_err(|_| invalid())
}
