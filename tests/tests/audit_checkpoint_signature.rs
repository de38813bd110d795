//! Checkpoints are C2SP tlog-checkpoints in C2SP signed notes, signed with the
//! gateway's Ed25519 log key: they open with the pinned public key, and a
//! forged signature, a mutated body or another key's signature is rejected.

use crate::audit_support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gateway_tests::{ServerState, TRUST_DOMAIN, TestServer};

#[tokio::test]
async fn checkpoints_open_with_the_pinned_key_and_forgeries_do_not() {
    let pki = pki();
    let state = ServerState::new();
    let server = TestServer::start(&pki, &state).await;
    traffic(&server, &pki).await;
    let mut client = auditor(&server, &pki).await;
    let signed = checkpoint(&mut client).await;
    let v = verifier(&state);
    assert_eq!(signed.vkey, v.to_string());

    let (cp, opened) =
        tlog::Checkpoint::open(signed.note.as_bytes(), std::slice::from_ref(&v)).unwrap();
    assert_eq!(cp.origin(), format!("{TRUST_DOMAIN}/audit"));
    assert_eq!(cp.size(), signed.size);
    assert_eq!(cp.root().to_vec(), signed.root);
    assert_eq!(opened.verified.len(), 1);
    // Nothing new appended: the same checkpoint comes back.
    assert_eq!(checkpoint(&mut client).await.note, signed.note);

    // Forged signature: one bit of the Ed25519 signature flipped.
    let (body, sig_line) = signed.note.rsplit_once("\n\n").unwrap();
    let (prefix, b64) = sig_line.trim_end().rsplit_once(' ').unwrap();
    let mut raw = B64.decode(b64).unwrap();
    raw[10] ^= 0x80;
    let forged = format!("{body}\n\n{prefix} {}\n", B64.encode(&raw));
    assert!(tlog::Checkpoint::open(forged.as_bytes(), std::slice::from_ref(&v)).is_err());

    // Mutated body: a different tree size, or a different root.
    let bigger = signed.note.replacen(
        &format!("\n{}\n", cp.size()),
        &format!("\n{}\n", cp.size() + 1),
        1,
    );
    assert_ne!(bigger, signed.note);
    assert!(tlog::Checkpoint::open(bigger.as_bytes(), std::slice::from_ref(&v)).is_err());
    let root_b64 = B64.encode(cp.root());
    let mut other_root = *cp.root();
    other_root[0] ^= 1;
    let rerooted = signed.note.replacen(&root_b64, &B64.encode(other_root), 1);
    assert!(tlog::Checkpoint::open(rerooted.as_bytes(), std::slice::from_ref(&v)).is_err());

    // Signed by another key under the same name: not trusted.
    let impostor = tlog::Signer::from_seed(&format!("{TRUST_DOMAIN}/audit"), [42; 32]).unwrap();
    let fake = tlog::Checkpoint::new(cp.origin(), cp.size() + 5, [0; 32], vec![])
        .unwrap()
        .sign(&[&impostor])
        .unwrap();
    assert!(tlog::Checkpoint::open(fake.as_bytes(), std::slice::from_ref(&v)).is_err());
    server.stop().await;
}
