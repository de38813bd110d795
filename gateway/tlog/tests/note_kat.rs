//! Known-answer tests for C2SP signed notes and the x/mod/sumdb/note key
//! encodings. Sources per case are in `fixtures/tlog_kat.json` (`source`
//! labels, expanded in its `_sources`).

mod common;

use common::*;
use serde_json::Value;
use tlog::{Checkpoint, KeyError, Note, NoteError, NoteFormatError, Signer, Verifier, note};

fn note_bytes(case: &Value) -> Vec<u8> {
    if let Some(text) = case["text"].as_str() {
        return text.as_bytes().to_vec();
    }
    if let Some(raw) = case["text_b64"].as_str() {
        return b64(raw);
    }
    let construct = &case["construct"];
    let mut text = str_of(construct, "prefix").to_owned();
    text.push_str(&str_of(construct, "line").repeat(u64_of(construct, "count") as usize));
    text.into_bytes()
}

fn names(value: &Value) -> Vec<String> {
    value.as_array().map_or_else(Vec::new, |a| {
        a.iter().map(|v| v.as_str().unwrap().to_owned()).collect()
    })
}

/// The precise format error for the malformed cases whose cause is unambiguous.
fn expected_format_error(desc: &str) -> Option<NoteFormatError> {
    Some(match desc {
        d if d.contains("101 signatures") => NoteFormatError::TooManySignatures,
        d if d.contains("decodes to < 5 bytes") => NoteFormatError::SignatureTooShort(3),
        d if d.contains("containing '+'") => NoteFormatError::InvalidKeyName("Enoch+Root".into()),
        d if d.contains("U+00A0") => NoteFormatError::InvalidKeyName("Enoch\u{a0}Root".into()),
        d if d.contains("empty key name") => NoteFormatError::InvalidKeyName(String::new()),
        d if d.contains("text only") => NoteFormatError::MissingSignatureBlock,
        d if d.contains("no signatures") => NoteFormatError::NoSignatures,
        d if d.contains("missing final newline") => NoteFormatError::MissingFinalNewline,
        d if d.contains("leading \\x01") => NoteFormatError::ControlCharacter,
        d if d.contains("invalid UTF-8") => NoteFormatError::NotUtf8,
        d if d.contains("non-signature line") => NoteFormatError::BadSignatureLine { line: 2 },
        _ => return None,
    })
}

/// Signed notes from golang/mod sumdb/note, transparency-dev/formats and the
/// C2SP spec: verified / rejected / malformed, with verified and ignored names.
#[test]
fn signed_notes() {
    let fixture = fixture();
    let mut counts = [0usize; 3];
    for case in cases(group(&fixture, "signed_notes"), "cases") {
        let desc = str_of(case, "desc");
        let verifiers: Vec<Verifier> = cases(case, "keys")
            .iter()
            .map(|k| Verifier::parse(k.as_str().unwrap()).unwrap())
            .collect();
        let msg = note_bytes(case);
        let result = note::open(&msg, &verifiers);
        match str_of(case, "expect") {
            "verified" => {
                counts[0] += 1;
                let opened = result.unwrap_or_else(|e| panic!("{desc}: {e}"));
                let verified: Vec<_> = opened.verified.iter().map(|s| s.name.clone()).collect();
                let ignored: Vec<_> = opened.unverified.iter().map(|s| s.name.clone()).collect();
                assert_eq!(verified, names(&case["verified"]), "{desc}");
                assert_eq!(ignored, names(&case["ignored"]), "{desc}");
                if let Some(body) = case["body"].as_str() {
                    assert_eq!(opened.text, body, "{desc}");
                }
                if let Some(want) = case["checkpoint"].as_array() {
                    let checkpoint = Checkpoint::parse(&opened.text).unwrap();
                    assert_eq!(checkpoint.origin(), want[0].as_str().unwrap(), "{desc}");
                    assert_eq!(checkpoint.size(), want[1].as_u64().unwrap(), "{desc}");
                    assert_eq!(
                        checkpoint.root(),
                        &hash_b64(want[2].as_str().unwrap()).unwrap(),
                        "{desc}"
                    );
                }
            }
            "rejected" => {
                counts[1] += 1;
                assert!(
                    matches!(
                        result,
                        Err(NoteError::InvalidSignature { .. } | NoteError::Unverified)
                    ),
                    "{desc}: {result:?}"
                );
                // Rejection is about trust, not format.
                Note::parse(&msg).unwrap_or_else(|e| panic!("{desc}: {e}"));
            }
            "malformed" => {
                counts[2] += 1;
                let Err(NoteError::Malformed(err)) = result else {
                    panic!("{desc}: {result:?}");
                };
                if let Some(want) = expected_format_error(desc) {
                    assert_eq!(err, want, "{desc}");
                }
            }
            other => panic!("unknown expectation {other}"),
        }
    }
    assert_eq!(counts, [11, 9, 13], "verified / rejected / malformed cases");
}

/// Trust failures carry the offending key.
#[test]
fn invalid_signature_names_the_key() {
    let fixture = fixture();
    let case = cases(group(&fixture, "signed_notes"), "cases")
        .iter()
        .find(|c| str_of(c, "desc").starts_with("TestOpen: invalid signature"))
        .unwrap();
    let verifier = Verifier::parse(cases(case, "keys")[0].as_str().unwrap()).unwrap();
    assert_eq!(
        note::open(str_of(case, "text").as_bytes(), &[verifier]),
        Err(NoteError::InvalidSignature {
            name: "PeterNeumann".into(),
            key_id: 0xc74f20a3
        })
    );
}

/// C2SP spec examples, parsed without a verifier: the last blank line separates.
#[test]
fn note_parsing() {
    let fixture = fixture();
    for case in cases(group(&fixture, "note_parsing"), "cases") {
        let desc = str_of(case, "desc");
        let note =
            Note::parse(str_of(case, "text").as_bytes()).unwrap_or_else(|e| panic!("{desc}: {e}"));
        assert_eq!(note.text(), str_of(case, "body"), "{desc}");
        let sigs: Vec<(String, String, u64)> = note
            .signatures()
            .iter()
            .map(|s| {
                (
                    s.name.clone(),
                    format!("{:08x}", s.key_id),
                    s.signature.len() as u64,
                )
            })
            .collect();
        let want: Vec<(String, String, u64)> = cases(case, "sigs")
            .iter()
            .map(|s| {
                (
                    s[0].as_str().unwrap().into(),
                    s[1].as_str().unwrap().into(),
                    s[2].as_u64().unwrap(),
                )
            })
            .collect();
        assert_eq!(sigs, want, "{desc}");
        assert_eq!(
            note::open(str_of(case, "text").as_bytes(), &[]),
            Err(NoteError::Unverified)
        );
    }
}

fn expected_key_error(desc: &str) -> Option<KeyError> {
    Some(match desc {
        d if d.starts_with("unknown algorithm") => KeyError::UnsupportedAlgorithm(0x65),
        d if d.starts_with("static-ct") => KeyError::UnsupportedAlgorithm(0x05),
        d if d.starts_with("ECDSA") => KeyError::UnsupportedAlgorithm(0x02),
        d if d.contains("PRIVATE+KEY") => KeyError::InvalidKeyId("KEY".into()),
        d if d.starts_with("uppercase key ID") => KeyError::InvalidKeyId("C74F20A3".into()),
        d if d.starts_with("name changed") => KeyError::KeyIdMismatch {
            stated: 0xc74f20a3,
            computed: tlog::key_id("PeterNeumann2", &peter_key()),
        },
        d if d.starts_with("trailing") => KeyError::InvalidBase64,
        _ => return None,
    })
}

fn peter_key() -> [u8; 32] {
    *Verifier::parse("PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
        .unwrap()
        .public_key()
}

/// Verifier key strings, valid and invalid.
#[test]
fn verifier_keys() {
    let fixture = fixture();
    let group = group(&fixture, "verifier_keys");
    for case in cases(group, "cases") {
        let (desc, vkey) = (str_of(case, "desc"), str_of(case, "vkey"));
        let result = Verifier::parse(vkey);
        if case["valid"].as_bool().unwrap() {
            let verifier = result.unwrap_or_else(|e| panic!("{desc}: {e}"));
            assert_eq!(verifier.name(), str_of(case, "name"), "{desc}");
            assert_eq!(
                format!("{:08x}", verifier.key_id()),
                str_of(case, "key_id"),
                "{desc}"
            );
            assert_eq!(verifier.to_string(), vkey, "{desc}: round trip");
            assert_eq!(
                verifier.key_id(),
                tlog::key_id(verifier.name(), verifier.public_key())
            );
        } else {
            let err = result.expect_err(desc);
            if let Some(want) = expected_key_error(desc) {
                assert_eq!(err, want, "{desc}");
            }
        }
    }
}

/// golang/mod sumdb/note TestNewVerifier: every proper substring and every
/// single-byte increment of a valid verifier key is rejected.
#[test]
fn verifier_key_mangling() {
    let fixture = fixture();
    let group = group(&fixture, "verifier_keys");
    for vkey in cases(group, "mangle_all_substrings_and_increments") {
        let vkey = vkey.as_str().unwrap();
        Verifier::parse(vkey).unwrap();
        for start in 0..vkey.len() {
            for end in start..=vkey.len() {
                if (start, end) != (0, vkey.len()) {
                    let sub = &vkey[start..end];
                    assert!(Verifier::parse(sub).is_err(), "substring {sub:?} accepted");
                }
            }
        }
        for i in 0..vkey.len() {
            let mut bytes = vkey.as_bytes().to_vec();
            bytes[i] += 1;
            let mangled = String::from_utf8(bytes).unwrap();
            assert!(
                Verifier::parse(&mangled).is_err(),
                "increment {mangled:?} accepted"
            );
        }
    }
}

/// Signer key strings: parse, derive the matching verifier key, re-encode,
/// and reproduce the golden signed note (Ed25519 is deterministic).
#[test]
fn signer_keys() {
    let fixture = fixture();
    for case in cases(group(&fixture, "signer_keys"), "cases") {
        let (desc, skey, vkey) = (
            str_of(case, "desc"),
            str_of(case, "skey"),
            str_of(case, "vkey"),
        );
        let signer = Signer::parse(skey).unwrap_or_else(|e| panic!("{desc}: {e}"));
        assert_eq!(signer.verifier().to_string(), vkey, "{desc}");
        assert_eq!(signer.to_skey(), skey, "{desc}");
        assert!(
            !format!("{signer:?}").contains(&skey[skey.len() - 20..]),
            "Debug leaks the seed"
        );
        assert_eq!(
            Verifier::parse(skey),
            Err(KeyError::InvalidKeyId("KEY".into())),
            "{desc}"
        );
        assert_eq!(
            Signer::parse(vkey).unwrap_err(),
            KeyError::NotSignerKey,
            "{desc}"
        );

        let text = case["sign_text"]
            .as_str()
            .unwrap_or("audit log test message\n");
        let signed = note::sign(text, &[&signer]).unwrap();
        if let Some(want) = case["want_note"].as_str() {
            assert_eq!(signed, want, "{desc}");
        }
        let opened = note::open(signed.as_bytes(), &[Verifier::parse(vkey).unwrap()]).unwrap();
        assert_eq!(opened.text, text);
    }
}

/// A signer key whose stated key ID does not match its seed is rejected.
#[test]
fn signer_key_id_must_match() {
    let skey = "PRIVATE+KEY+PeterNeumann+c74f20a4+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz";
    assert_eq!(
        Signer::parse(skey).unwrap_err(),
        KeyError::KeyIdMismatch {
            stated: 0xc74f20a4,
            computed: 0xc74f20a3
        }
    );
}

/// Signing refuses text that could not be parsed back.
#[test]
fn sign_rejects_bad_text() {
    let signer = Signer::from_seed("example.com/log", [7; 32]).unwrap();
    assert_eq!(
        note::sign("no newline", &[&signer]),
        Err(NoteFormatError::MissingFinalNewline)
    );
    assert_eq!(
        note::sign("tab\there\n", &[&signer]),
        Err(NoteFormatError::ControlCharacter)
    );
    assert_eq!(
        note::sign("fine\n", &[]),
        Err(NoteFormatError::NoSignatures)
    );
    assert_eq!(
        Signer::from_seed("bad name", [7; 32]).unwrap_err(),
        KeyError::InvalidName("bad name".into())
    );
}

/// Multiple signers, a text with blank lines, and a generated key round-trip.
#[test]
fn sign_open_round_trip() {
    let log = Signer::generate("gateway.example/audit").unwrap();
    let witness = Signer::from_seed("witness.example", [9; 32]).unwrap();
    let text = "line one\n\nline three after a blank line\n";
    let signed = note::sign(text, &[&log, &witness]).unwrap();
    let opened = note::open(signed.as_bytes(), &[log.verifier()]).unwrap();
    assert_eq!(opened.text, text);
    assert_eq!(opened.verified.len(), 1);
    assert_eq!(opened.unverified[0].name, "witness.example");
    let both = note::open(signed.as_bytes(), &[witness.verifier(), log.verifier()]).unwrap();
    assert_eq!(both.verified.len(), 2);
    assert_eq!(
        Verifier::parse(&log.verifier().to_string()).unwrap(),
        log.verifier()
    );
    let regenerated = Signer::parse(&log.to_skey()).unwrap();
    assert_eq!(regenerated.verifier(), log.verifier());
    // Tampering with the text after signing is caught.
    let tampered = signed.replacen("line one", "line 1", 1);
    assert!(matches!(
        note::open(tampered.as_bytes(), &[log.verifier()]),
        Err(NoteError::InvalidSignature { .. })
    ));
}
