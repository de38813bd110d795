//! Known-answer tests for C2SP tlog checkpoints: strict body parsing, and
//! signing/opening checkpoints as signed notes. Sources per case are in
//! `fixtures/tlog_kat.json`.

mod common;

use common::*;
use tlog::{
    Checkpoint, CheckpointError, MemoryTree, NoteError, Signer, Verifier, verify_consistency,
};

/// Checkpoint bodies from the C2SP spec, golang/mod sumdb/tlog and
/// transparency-dev/formats, parsed strictly (32-byte SHA-256 roots).
#[test]
fn checkpoint_bodies() {
    let fixture = fixture();
    let mut parsed = 0;
    for case in cases(group(&fixture, "checkpoints"), "cases") {
        let (desc, text) = (str_of(case, "desc"), str_of(case, "text"));
        let result = Checkpoint::parse(text);
        let strict = &case["strict"];
        if strict.as_str() == Some("error") {
            let err = result.expect_err(desc);
            if case["any_length_valid"].as_bool().unwrap() {
                // Valid apart from the root hash length: that must be the reason.
                assert!(
                    matches!(err, CheckpointError::RootLength(n) if n != 32),
                    "{desc}: {err:?}"
                );
            }
            continue;
        }
        let checkpoint = result.unwrap_or_else(|e| panic!("{desc}: {e}"));
        assert_eq!(checkpoint.origin(), str_of(strict, "origin"), "{desc}");
        assert_eq!(checkpoint.size(), u64_of(strict, "size"), "{desc}");
        assert_eq!(
            checkpoint.root(),
            &hash_b64(str_of(strict, "root_b64")).unwrap(),
            "{desc}"
        );
        let extensions: Vec<&str> = cases_or_empty(&strict["extensions"]);
        assert_eq!(checkpoint.extensions(), extensions.as_slice(), "{desc}");
        assert_eq!(checkpoint.to_text(), text, "{desc}: re-encoding");
        parsed += 1;
    }
    assert_eq!(parsed, 6);
}

fn cases_or_empty(value: &serde_json::Value) -> Vec<&str> {
    value.as_array().map_or_else(Vec::new, |a| {
        a.iter().map(|v| v.as_str().unwrap()).collect()
    })
}

/// The precise reason for the strict-parse failures whose cause is clear.
#[test]
fn checkpoint_errors_are_precise() {
    let cases: &[(&str, CheckpointError)] = &[
        (
            "go.sum database tree\n0xabcdef\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\n",
            CheckpointError::InvalidSize("0xabcdef".into()),
        ),
        (
            "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBTOOBIG=\n",
            CheckpointError::InvalidRootEncoding,
        ),
        (
            "go.sum database tree\n123456789012\nTszzRgjTG6xce+z2AG31kAXYKBgQVtCSCE40HmuwBb0=\nJOE",
            CheckpointError::MissingFinalNewline,
        ),
        (
            "Log\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n\n\n\n",
            CheckpointError::RootLength(37),
        ),
        (
            "o\n1\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n\n\n\n",
            CheckpointError::EmptyExtension(1),
        ),
        ("Head\n9944\n", CheckpointError::TooFewLines),
        (
            "\n9944\ndGhlIHZpZXcgZnJvbSB0aGUgdHJlZSB0b3BzIGlzIGdyZWF0IQ==\n",
            CheckpointError::EmptyOrigin,
        ),
        (
            "o\n0123\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n",
            CheckpointError::InvalidSize("0123".into()),
        ),
        (
            "o\n+5\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n",
            CheckpointError::InvalidSize("+5".into()),
        ),
        (
            "o\n-34\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n",
            CheckpointError::InvalidSize("-34".into()),
        ),
        (
            "o\n18446744073709551616\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n",
            CheckpointError::InvalidSize("18446744073709551616".into()),
        ),
        (
            "o\n1\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk\n",
            CheckpointError::InvalidRootEncoding,
        ),
        (
            "o\n1\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wl=\n",
            CheckpointError::InvalidRootEncoding,
        ),
        (
            "o\r\n1\r\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\r\n",
            CheckpointError::ControlCharacter,
        ),
        (
            "o\n1\nmb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\na\n\nb\n",
            CheckpointError::EmptyExtension(2),
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Checkpoint::parse(text).as_ref(), Err(want), "{text:?}");
    }
}

/// transparency-dev/formats log/note_test.go: the real sum.golang.org
/// checkpoint opens under its production key, and not once altered.
#[test]
fn sumdb_signed_checkpoint() {
    let fixture = fixture();
    let all = cases(group(&fixture, "signed_notes"), "cases");
    let find = |prefix: &str| {
        all.iter()
            .find(|c| str_of(c, "desc").starts_with(prefix))
            .unwrap()
    };
    let vkey =
        Verifier::parse("sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8")
            .unwrap();

    let good = find("TestSumDBNoteParsing");
    let (checkpoint, opened) =
        Checkpoint::open(str_of(good, "text").as_bytes(), std::slice::from_ref(&vkey)).unwrap();
    assert_eq!(
        (checkpoint.origin(), checkpoint.size()),
        ("go.sum database tree", 6476701)
    );
    assert_eq!(opened.verified[0].name, "sum.golang.org");

    for prefix in [
        "sumdb checkpoint with size changed",
        "sumdb checkpoint with one root character",
    ] {
        let result = Checkpoint::open(
            str_of(find(prefix), "text").as_bytes(),
            std::slice::from_ref(&vkey),
        );
        assert!(
            matches!(
                result,
                Err(CheckpointError::Note(NoteError::InvalidSignature { .. }))
            ),
            "{prefix}: {result:?}"
        );
    }
}

/// The gateway flow: append entries, sign checkpoints, and let an offline
/// verifier check a later checkpoint against an earlier one.
#[test]
fn sign_open_and_prove_consistency() {
    let signer = Signer::from_seed("gateway.example/audit", [42; 32]).unwrap();
    let verifier = signer.verifier();
    let mut tree = MemoryTree::new();
    for i in 0..1000u32 {
        tree.append_entry(format!("audit record {i}").as_bytes());
    }
    let old = Checkpoint::new(
        "gateway.example/audit",
        700,
        tree.root_at(700).unwrap(),
        vec![],
    )
    .unwrap();
    let new = Checkpoint::new(
        "gateway.example/audit",
        1000,
        tree.root(),
        vec!["extra".into()],
    )
    .unwrap();
    let (old_signed, new_signed) = (old.sign(&[&signer]).unwrap(), new.sign(&[&signer]).unwrap());

    let (old_opened, _) =
        Checkpoint::open(old_signed.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
    let (new_opened, _) =
        Checkpoint::open(new_signed.as_bytes(), std::slice::from_ref(&verifier)).unwrap();
    assert_eq!((&old_opened, &new_opened), (&old, &new));
    let proof = tree.consistency_proof(700, 1000).unwrap();
    verify_consistency(
        old_opened.size(),
        new_opened.size(),
        old_opened.root(),
        new_opened.root(),
        &proof,
    )
    .unwrap();

    let stranger = Signer::from_seed("gateway.example/audit", [43; 32])
        .unwrap()
        .verifier();
    assert_eq!(
        Checkpoint::open(new_signed.as_bytes(), &[stranger]),
        Err(CheckpointError::Note(NoteError::Unverified))
    );
}

#[test]
fn checkpoint_new_validates_lines() {
    let root = [0; 32];
    assert_eq!(
        Checkpoint::new("", 1, root, vec![]),
        Err(CheckpointError::EmptyOrigin)
    );
    assert_eq!(
        Checkpoint::new("a\nb", 1, root, vec![]),
        Err(CheckpointError::EmbeddedNewline)
    );
    assert_eq!(
        Checkpoint::new("o", 1, root, vec![String::new()]),
        Err(CheckpointError::EmptyExtension(1))
    );
    assert_eq!(
        Checkpoint::new("o", 1, root, vec!["x\ty".into()]),
        Err(CheckpointError::ControlCharacter)
    );
}
