//! Subject back-pointers: each audit entry naming a person records the seq of
//! the previous entry naming them. Both backends hold the latest entry per
//! subject in memory ([`SubjectHeads`]), so that an append costs no index
//! look-up: a page of a bulk pull names thousands of persons, and their
//! look-ups and updates in a B-tree, inside the append, were most of what a
//! page cost.

use std::collections::HashMap;

/// The latest audit entry naming each subject: the back-pointer the next
/// entry naming it records. Auditor pseudonyms (32 lowercase hex characters)
/// are held as 128-bit integers; any other token as text.
#[derive(Default)]
pub(in crate::store) struct SubjectHeads {
    pub(in crate::store) hex: HashMap<u128, u64, BuildTokenHasher>,
    pub(in crate::store) other: HashMap<String, u64>,
}

/// A subject token as [`SubjectHeads`] keys it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(in crate::store) enum SubjectKey {
    Hex(u128),
    Text(String),
}

impl SubjectKey {
    pub(in crate::store) fn of(token: &str) -> SubjectKey {
        let lower_hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        if token.len() == 32
            && token.bytes().all(lower_hex)
            && let Ok(k) = u128::from_str_radix(token, 16)
        {
            return SubjectKey::Hex(k);
        }
        SubjectKey::Text(token.to_string())
    }
}

/// Pseudonyms are HMAC outputs, uniformly distributed already: their low 64
/// bits are a good hash, and far cheaper than SipHash.
#[derive(Default, Clone, Copy)]
pub(in crate::store) struct BuildTokenHasher;

#[derive(Default)]
pub(in crate::store) struct TokenHasher(u64);

impl std::hash::BuildHasher for BuildTokenHasher {
    type Hasher = TokenHasher;
    fn build_hasher(&self) -> TokenHasher {
        TokenHasher(0)
    }
}

impl std::hash::Hasher for TokenHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u128 keys; a plain FNV-1a keeps it correct anyway.
        for b in bytes {
            self.0 = (self.0 ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
    }
    fn write_u128(&mut self, k: u128) {
        self.0 = k as u64;
    }
}

/// Heads moved by a transaction not yet committed, over the kept ones.
pub(in crate::store) type HeadUpdates = HashMap<SubjectKey, u64, BuildTokenHasher>;

/// The subjects an entry at `seq` names, each once and in token order, with
/// their back-pointers (each one's latest entry: in `updates`, else in
/// `base`); their heads move on to `seq` in `updates`.
pub(in crate::store) fn chain(
    subjects: &[String],
    seq: u64,
    base: &SubjectHeads,
    updates: &mut HeadUpdates,
) -> Vec<crate::audit::SubjectRef> {
    let mut tokens: Vec<&String> = subjects.iter().collect();
    tokens.sort_unstable();
    tokens.dedup();
    let mut refs = Vec::with_capacity(tokens.len());
    for token in tokens {
        let key = SubjectKey::of(token);
        let prev_seq = updates.get(&key).copied().unwrap_or_else(|| base.get(&key));
        updates.insert(key, seq);
        refs.push(crate::audit::SubjectRef {
            token: token.clone(),
            prev_seq,
        });
    }
    refs
}

impl SubjectHeads {
    pub(in crate::store) fn get(&self, key: &SubjectKey) -> u64 {
        match key {
            SubjectKey::Hex(k) => self.hex.get(k).copied(),
            SubjectKey::Text(t) => self.other.get(t).copied(),
        }
        .unwrap_or(0)
    }

    pub(in crate::store) fn set(&mut self, key: SubjectKey, seq: u64) {
        match key {
            SubjectKey::Hex(k) => self.hex.insert(k, seq),
            SubjectKey::Text(t) => self.other.insert(t, seq),
        };
    }
}
