//! Shared by the known-answer test binaries: the authored fixture
//! (`fixtures/tlog_kat.json`, compiled in, so tests need no outside files)
//! and decoders for its hex and base64 values.
#![allow(dead_code)]

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde_json::Value;
use tlog::Hash;

pub fn fixture() -> Value {
    serde_json::from_str(include_str!("../fixtures/tlog_kat.json")).expect("fixture is valid JSON")
}

pub fn group<'a>(fixture: &'a Value, name: &str) -> &'a Value {
    let group = &fixture[name];
    assert!(!group.is_null(), "fixture lacks group {name}");
    group
}

pub fn cases<'a>(value: &'a Value, key: &str) -> &'a Vec<Value> {
    let cases = value[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} is not an array"));
    assert!(!cases.is_empty(), "{key} is empty");
    cases
}

pub fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key]
        .as_str()
        .unwrap_or_else(|| panic!("{key} is not a string in {value}"))
}

pub fn u64_of(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} is not a u64 in {value}"))
}

pub fn b64(s: &str) -> Vec<u8> {
    STANDARD
        .decode(s)
        .unwrap_or_else(|e| panic!("bad base64 {s:?}: {e}"))
}

/// A base64 value as a 32-byte hash, or `None` if it is not one.
pub fn hash_b64(s: &str) -> Option<Hash> {
    STANDARD.decode(s).ok()?.try_into().ok()
}

pub fn hash_hex(s: &str) -> Hash {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s, &mut out).unwrap_or_else(|e| panic!("bad hash hex {s:?}: {e}"));
    out
}

/// A JSON array of base64 strings (or null) as hashes, `None` if any is not 32 bytes.
pub fn hashes_b64(value: &Value) -> Option<Vec<Hash>> {
    match value {
        Value::Null => Some(Vec::new()),
        Value::Array(items) => items.iter().map(|v| hash_b64(v.as_str()?)).collect(),
        other => panic!("not a hash list: {other}"),
    }
}

pub fn hashes_hex(value: &Value) -> Vec<Hash> {
    value
        .as_array()
        .expect("hash list")
        .iter()
        .map(|v| hash_hex(v.as_str().expect("hex string")))
        .collect()
}
