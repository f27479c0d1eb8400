//! Property tests for adaptor signatures and signature price points, checked against
//! libsecp256k1's BIP340 verification, plus the official BIP340 test vectors.
#![allow(non_snake_case)]

use asyncpay::crypto::adaptor::{
    price_point, sells, AdaptorError, AdaptorSecret, EncryptedSignature,
};
use asyncpay::crypto::keys::{PublicKey, SecretKey, Signature};
use asyncpay::crypto::nonce::{MemoryCounterStore, NonceSeed, NonceSource};
use bitcoin::secp256k1::{self, Secp256k1};
use proptest::prelude::*;

/// libsecp256k1's verdict on a BIP340 signature over a raw 32-byte message.
fn libsecp_verifies(X: &PublicKey, m: &[u8; 32], sig: &Signature) -> bool {
    let secp = Secp256k1::verification_only();
    secp.verify_schnorr(
        &(*sig).into(),
        &secp256k1::Message::from_digest(*m),
        &(*X).into(),
    )
    .is_ok()
}

proptest! {
    #[test]
    fn encrypt_verify_decrypt_recover_round_trip(
        x in any::<[u8; 32]>(),
        t in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
        aux in any::<[u8; 32]>(),
    ) {
        // Invalid scalars occur with probability about 2^-128; skip them.
        let (Ok(x), Ok(t)) = (SecretKey::from_bytes(x), AdaptorSecret::from_bytes(t)) else {
            return Ok(());
        };
        let (X, T) = (x.public_key(), t.adaptor_point());
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &aux);
        let verified = enc.verify(&X, &T, &m).expect("verifies");
        prop_assert!(verified.is_for(&X, &T, &m));

        let sig = enc.decrypt(&t, &X, &m).expect("decrypts with the right secret");
        prop_assert!(libsecp_verifies(&X, &m, &sig));
        prop_assert_eq!(verified.decrypt(&t), Ok(sig));
        prop_assert_eq!(sig.nonce(), enc.nonce());

        let learned = enc.recover(&T, &sig).expect("signature decrypted from enc");
        prop_assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());
        prop_assert!(sells(&learned, &T));

        // The encoding survives a round trip.
        let bytes = enc.to_bytes();
        prop_assert_eq!(EncryptedSignature::from_bytes(&bytes).expect("own encoding"), enc);
    }

    #[test]
    fn price_point_matches_the_signature_made_with_the_committed_nonce(
        x in any::<[u8; 32]>(),
        seed in any::<[u8; 32]>(),
        start in 0u64..1_000_000,
        aux in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
    ) {
        let Ok(x) = SecretKey::from_bytes(x) else { return Ok(()); };
        let X = x.public_key();
        let mut store = MemoryCounterStore::new(start);
        let mut source = NonceSource::load(NonceSeed::from_bytes(seed), &store).expect("infallible");
        let nonce = source
            .reserve(&X, &aux)
            .expect("not exhausted")
            .persist(&mut store)
            .expect("infallible");

        // S's side: only R, X and m are known.
        let R = nonce.public_nonce();
        let T = price_point(&R, &X, &m).expect("not at infinity");

        // A's side, later: sign with the committed nonce.
        let sig = nonce.sign(&x, &m).expect("reserved for x");
        prop_assert_eq!(sig.nonce(), R);
        prop_assert!(libsecp_verifies(&X, &m, &sig));
        let s = AdaptorSecret::from_signature(&sig).expect("nonzero s");
        prop_assert!(sells(&s, &T));

        // S, having learned s from the PTLC claim, rebuilds A's signature.
        prop_assert_eq!(s.to_signature(&R), sig);
    }

    #[test]
    fn price_point_for_another_message_is_not_sold(
        x in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
        aux in any::<[u8; 32]>(),
    ) {
        prop_assume!(m != other);
        let Ok(x) = SecretKey::from_bytes(x) else { return Ok(()); };
        let sig = x.sign(&m, &aux);
        let T_other = price_point(&sig.nonce(), &x.public_key(), &other).expect("not at infinity");
        let s = AdaptorSecret::from_signature(&sig).expect("nonzero s");
        prop_assert!(!sells(&s, &T_other));
    }

    #[test]
    fn wrong_secret_fails(
        x in any::<[u8; 32]>(),
        t in any::<[u8; 32]>(),
        wrong in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
    ) {
        prop_assume!(t != wrong);
        let (Ok(x), Ok(t), Ok(wrong)) = (
            SecretKey::from_bytes(x),
            AdaptorSecret::from_bytes(t),
            AdaptorSecret::from_bytes(wrong),
        ) else {
            return Ok(());
        };
        let (X, T) = (x.public_key(), t.adaptor_point());
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32]);
        let is_wrong_secret = matches!(
            enc.decrypt(&wrong, &X, &m),
            Err(AdaptorError::WrongSecret { .. })
        );
        prop_assert!(is_wrong_secret);
        prop_assert!(!sells(&wrong, &T));

        // The genuine signature does not reveal a secret for the wrong point.
        let sig = enc.decrypt(&t, &X, &m).expect("right secret");
        let is_not_decrypted_from = matches!(
            enc.recover(&wrong.adaptor_point(), &sig),
            Err(AdaptorError::NotDecryptedFrom { .. })
        );
        prop_assert!(is_not_decrypted_from);
    }

    #[test]
    fn tampered_encrypted_signature_fails(
        x in any::<[u8; 32]>(),
        t in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
        byte in 0usize..65,
        bit in 0u8..8,
    ) {
        let (Ok(x), Ok(t)) = (SecretKey::from_bytes(x), AdaptorSecret::from_bytes(t)) else {
            return Ok(());
        };
        let (X, T) = (x.public_key(), t.adaptor_point());
        let mut bytes = EncryptedSignature::encrypt(&x, &T, &m, &[0; 32]).to_bytes();
        bytes[byte] ^= 1 << bit;
        // Either the bytes no longer parse, or they parse and fail verification.
        if let Ok(tampered) = EncryptedSignature::from_bytes(&bytes) {
            let is_invalid = matches!(
                tampered.verify(&X, &T, &m),
                Err(AdaptorError::InvalidEncryptedSignature { .. })
            );
            prop_assert!(is_invalid);
        }
    }
}

/// One row of bip340_test_vectors.csv.
struct Vector {
    index: usize,
    secret_key: Option<[u8; 32]>,
    public_key: [u8; 32],
    aux: Option<[u8; 32]>,
    message: Vec<u8>,
    signature: [u8; 64],
    valid: bool,
}

fn hex_array<const N: usize>(field: &str) -> [u8; N] {
    hex::decode(field)
        .expect("vector field is hex")
        .try_into()
        .expect("vector field has the expected length")
}

fn vectors() -> Vec<Vector> {
    include_str!("vectors/bip340_test_vectors.csv")
        .lines()
        .skip(1)
        .filter(|line| !line.trim().is_empty())
        .map(|line| {
            let fields: Vec<&str> = line.splitn(8, ',').collect();
            let optional = |f: &str| (!f.is_empty()).then(|| hex_array::<32>(f));
            Vector {
                index: fields[0].parse().expect("index"),
                secret_key: optional(fields[1]),
                public_key: hex_array(fields[2]),
                aux: optional(fields[3]),
                message: hex::decode(fields[4]).expect("message hex"),
                signature: hex_array(fields[5]),
                valid: fields[6] == "TRUE",
            }
        })
        .collect()
}

#[test]
fn bip340_vectors_sign_and_verify() {
    let vectors = vectors();
    assert_eq!(vectors.len(), 15, "bip340 vectors 0..=14");
    let mut signed = 0;
    for v in &vectors {
        // Our messages are sighashes; vectors with other lengths are out of scope.
        let Ok(m) = <[u8; 32]>::try_from(v.message.as_slice()) else {
            continue;
        };
        if let (Some(sk), Some(aux)) = (v.secret_key, v.aux) {
            let x = SecretKey::from_bytes(sk).expect("vector secret key is valid");
            assert_eq!(
                x.public_key().to_xonly_bytes(),
                v.public_key,
                "vector {}",
                v.index
            );
            let sig = x.sign(&m, &aux);
            assert_eq!(sig.to_bytes(), v.signature, "vector {}: signature", v.index);
            signed += 1;
        }
        let ours = PublicKey::from_xonly_bytes(v.public_key)
            .ok()
            .zip(Signature::from_bytes(v.signature).ok())
            .is_some_and(|(X, sig)| X.verify(&m, &sig).is_ok());
        assert_eq!(ours, v.valid, "vector {}: our verification", v.index);

        // libsecp256k1 must agree wherever it can parse the inputs.
        let secp = Secp256k1::verification_only();
        let theirs = secp256k1::XOnlyPublicKey::from_slice(&v.public_key)
            .ok()
            .zip(secp256k1::schnorr::Signature::from_slice(&v.signature).ok())
            .is_some_and(|(X, sig)| {
                secp.verify_schnorr(&sig, &secp256k1::Message::from_digest(m), &X)
                    .is_ok()
            });
        assert_eq!(
            theirs, v.valid,
            "vector {}: libsecp256k1 verification",
            v.index
        );
    }
    assert_eq!(signed, 4, "vectors 0..=3 carry a secret key");
}
