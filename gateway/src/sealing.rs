//! Record sealing: how a canonical record becomes a stored row (keyed hashes
//! for its keys, the record encrypted and bound to its row) and how a row's
//! plaintext becomes a record again. A leaf beside the store: ingest seals
//! with it, the exchange and the re-index (`rotation`) open with it, and it
//! imports none of them, only the keys and the store's row type.

use crate::keys::Keys;
use crate::store::RecordWrite;
use adapters::{Record, RecordKind};

/// The additional data that binds a sealed record to its row.
pub fn record_aad(kind: RecordKind, key_hash: &[u8]) -> Vec<u8> {
    let kind = kind.id();
    let mut aad = Vec::with_capacity(kind.len() + 1 + key_hash.len());
    aad.extend_from_slice(kind.as_bytes());
    aad.push(0x1f);
    aad.extend_from_slice(key_hash);
    aad
}

/// Seals a canonical record for storage with `keys`: keyed hashes for its
/// keys, the record itself encrypted. Nothing raw leaves this function.
pub fn seal_record(keys: &Keys, record: &Record) -> RecordWrite {
    let kind = record.kind;
    let key_hash = keys.index_hash(
        &format!("record/{}", kind.id()),
        record.source_key.expose().as_bytes(),
    );
    let person_index = record
        .person
        .as_ref()
        .map(|p| keys.index_hash("person", p.expose().as_bytes()));
    let plaintext = record.to_binary();
    let sealed = keys.seal(&record_aad(kind, &key_hash), &plaintext);
    RecordWrite {
        kind,
        key_hash,
        person_index,
        enterprise: record.enterprise.as_ref().map(|c| c.as_str().to_string()),
        changed_at: record.changed_at.0,
        cancel: record.change == adapters::ChangeType::Cancel,
        sealed,
    }
}

/// A record's plaintext as sealed: the binary form, or JSON for records
/// sealed before it existed.
pub fn decode_record(plain: &[u8]) -> Result<Record, String> {
    match plain.first() {
        // (serde_json's message may quote the text: never passed on.)
        Some(b'{') => serde_json::from_slice(plain).map_err(|_| "invalid JSON".to_string()),
        _ => Record::from_binary(plain).map_err(|e| e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records sealed as JSON before the binary form stay readable, and both
    /// forms give the same record.
    #[test]
    fn records_decode_from_both_stored_forms() {
        let rows = include_bytes!("../../tests/fixtures/agencies/samples/housing.jsonl");
        let adapter = adapters::adapter_for(adapters::Agency::Housing).unwrap();
        let parser = adapter.open_batch(adapter.format(), None).unwrap();
        let record = rows
            .split(|b| *b == b'\n')
            .find_map(|row| parser.parse_row(row).ok())
            .expect("an accepted sample row");
        let json = serde_json::to_vec(&record).unwrap();
        assert_eq!(decode_record(&json).unwrap(), record);
        assert_eq!(decode_record(&record.to_binary()).unwrap(), record);
        assert!(decode_record(b"{not json").is_err());
        assert!(decode_record(b"").is_err());
    }
}
