//! Transparency-log core for the gateway's tamper-evident audit log.
//!
//! The audit log must be verifiable offline by compliance officers, so this
//! crate implements the published, interoperable formats rather than an
//! ad-hoc scheme:
//!
//! * [RFC 9162] §2.1 Merkle tree hashing, inclusion and consistency proofs
//!   ([`hash`], [`reference`], [`store`], [`verify`], [`MemoryTree`]);
//! * [C2SP signed notes] with Ed25519 keys ([`keys`], [`note`]);
//! * [C2SP checkpoints] — signed tree heads ([`checkpoint`]).
//!
//! Proofs and roots are generated from stored complete-subtree hashes
//! ([`HashStore`]), touching O(log n) nodes, so a persistent store with tens
//! of millions of entries answers proofs in well under a millisecond.
//!
//! ```
//! use tlog::{Checkpoint, MemoryTree, Signer, leaf_hash, verify_inclusion};
//!
//! let mut tree = MemoryTree::new();
//! for entry in [&b"grant"[..], b"revoke", b"export"] {
//!     tree.append_entry(entry);
//! }
//! let proof = tree.inclusion_proof(1, 3).unwrap();
//! verify_inclusion(&leaf_hash(b"revoke"), 1, 3, &proof, &tree.root()).unwrap();
//!
//! let signer = Signer::from_seed("example.com/audit", [1; 32]).unwrap();
//! let head = Checkpoint::new("example.com/audit", 3, tree.root(), vec![]).unwrap();
//! let signed = head.sign(&[&signer]).unwrap();
//! let (opened, _) = Checkpoint::open(signed.as_bytes(), &[signer.verifier()]).unwrap();
//! assert_eq!(opened, head);
//! ```
//!
//! [RFC 9162]: https://www.rfc-editor.org/rfc/rfc9162.html#section-2.1
//! [C2SP signed notes]: https://c2sp.org/signed-note
//! [C2SP checkpoints]: https://c2sp.org/tlog-checkpoint
#![forbid(unsafe_code)]

pub mod checkpoint;
pub mod hash;
pub mod keys;
pub mod memory;
pub mod note;
pub mod reference;
pub mod store;
pub mod verify;

pub use checkpoint::{Checkpoint, CheckpointError};
pub use hash::{EMPTY_ROOT, HASH_LEN, Hash, leaf_hash, node_hash};
pub use keys::{KeyError, Signer, Verifier, key_id};
pub use memory::MemoryTree;
pub use note::{Note, NoteError, NoteFormatError, NoteSignature, OpenedNote};
pub use store::{
    Frontier, HashStore, Node, ProofError, appended_nodes, consistency_proof, inclusion_proof,
    root_at,
};
pub use verify::{VerifyError, verify_consistency, verify_inclusion};
