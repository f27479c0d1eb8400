//! The libsecp256k1 paths of the adaptor module against schnorr_fun's implementation of the
//! same scheme: on random inputs, and on the edge cases a counterparty can craft.

use proptest::prelude::*;
use schnorr_fun::adaptor::EncryptedSign;
use schnorr_fun::fun::{g, s, G};

use super::*;
use crate::crypto::keys::libsecp_verifies;

type Inner = schnorr_fun::adaptor::EncryptedSignature;

fn one() -> Scalar<Public, NonZero> {
    Scalar::one()
}

fn reference_encrypt(x: &SecretKey, T: &AdaptorPoint, m: &[u8; 32], aux: &[u8; 32]) -> Inner {
    keys::signer(aux).encrypted_sign(x.keypair(), &T.0, Message::raw(m))
}

fn reference_verify(X: &PublicKey, T: &AdaptorPoint, m: &[u8; 32], enc: &Inner) -> bool {
    keys::verifier().verify_encrypted_signature(X.point(), &T.0, Message::raw(m), enc)
}

/// Our verdict and schnorr_fun's, which must agree.
fn both_verify(X: &PublicKey, T: &AdaptorPoint, m: &[u8; 32], enc: &Inner) -> (bool, bool) {
    let ours = EncryptedSignature(enc.clone()).verify(X, T, m).is_ok();
    (ours, reference_verify(X, T, m, enc))
}

fn reference_recover(T: &AdaptorPoint, enc: &Inner, sig: &Signature) -> Option<[u8; 32]> {
    keys::verifier()
        .recover_decryption_key(&T.0, enc, &sig.lift()?)
        .map(|t| t.to_bytes())
}

fn ours_recover(T: &AdaptorPoint, enc: &Inner, sig: &Signature) -> Option<[u8; 32]> {
    EncryptedSignature(enc.clone())
        .recover(T, sig)
        .ok()
        .map(|t| t.to_secret_bytes())
}

fn scalar(bytes: [u8; 32]) -> Scalar<Public, Zero> {
    Scalar::from_bytes_mod_order(bytes)
}

/// An adaptor secret whose point has the asked y parity.
fn secret_with_parity(even: bool) -> AdaptorSecret {
    (1u8..)
        .map(|i| AdaptorSecret::from_bytes([i; 32]).expect("valid scalar"))
        .find(|t| t.adaptor_point().0.is_y_even() == even)
        .expect("about half of all points have even y")
}

proptest! {
    #[test]
    fn adaptor_signatures_match_the_reference(
        x in any::<[u8; 32]>(),
        t in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
        aux in any::<[u8; 32]>(),
        other in any::<[u8; 32]>(),
    ) {
        // Invalid scalars occur with probability about 2^-128; skip them.
        let (Ok(x), Ok(t), Ok(x2), Ok(t2)) = (
            SecretKey::from_bytes(x),
            AdaptorSecret::from_bytes(t),
            SecretKey::from_bytes(other),
            AdaptorSecret::from_bytes(other),
        ) else {
            return Ok(());
        };
        prop_assume!(other != m && x.public_key() != x2.public_key());
        let (X, T) = (x.public_key(), t.adaptor_point());

        // t·G and the sale check.
        prop_assert_eq!(T.0, g!(t.0 * G).normalize());
        prop_assert!(sells(&t, &T));
        prop_assert!(!sells(&t2, &T));

        // The same encrypted signature, byte for byte, with either negation flag.
        let enc = EncryptedSignature::encrypt(&x, &T, &m, &aux);
        prop_assert_eq!(&enc.0, &reference_encrypt(&x, &T, &m, &aux));
        prop_assert_eq!(both_verify(&X, &T, &m, &enc.0), (true, true));

        // Anything else is refused by both.
        let T2 = t2.adaptor_point();
        let mut tampered_s = enc.0.clone();
        tampered_s.s_hat = s!(tampered_s.s_hat + one()).public();
        let mut flipped = enc.0.clone();
        flipped.needs_negation = !flipped.needs_negation;
        let mut other_nonce = enc.0.clone();
        other_nonce.R = reference_encrypt(&x, &T, &other, &aux).R;
        for (X, T, m, enc) in [
            (&X, &T2, &m, &enc.0),
            (&x2.public_key(), &T, &m, &enc.0),
            (&X, &T, &other, &enc.0),
            (&X, &T, &m, &tampered_s),
            (&X, &T, &m, &flipped),
            (&X, &T, &m, &other_nonce),
        ] {
            prop_assert_eq!(both_verify(X, T, m, enc), (false, false));
        }

        // Decryption: the reference's signature, valid; a wrong secret, or an encrypted
        // signature that does not verify, gives an error rather than a bad signature.
        let sig = enc.decrypt(&t, &X, &m).expect("right secret");
        let expected = keys::verifier().decrypt_signature(t.0, enc.0.clone());
        prop_assert_eq!(sig.lift(), Some(expected));
        prop_assert!(libsecp_verifies(&X, &m, &sig));
        let wrong_secret = enc.decrypt(&t2, &X, &m);
        prop_assert!(matches!(wrong_secret, Err(AdaptorError::WrongSecret { .. })), "decrypted with a wrong secret");
        for bad in [&tampered_s, &flipped, &other_nonce] {
            let refused = EncryptedSignature(bad.clone()).decrypt(&t, &X, &m);
            prop_assert!(matches!(refused, Err(AdaptorError::WrongSecret { .. })), "decrypted a bad encrypted signature");
        }

        // Recovery: t from the decryption, nothing from anything else.
        prop_assert_eq!(ours_recover(&T, &enc.0, &sig), Some(t.to_secret_bytes()));
        prop_assert_eq!(reference_recover(&T, &enc.0, &sig), Some(t.to_secret_bytes()));
        let unrelated = x.sign(&m, &aux);
        let lifted = sig.lift().expect("a decrypted signature's R is a curve point");
        let same_nonce = Signature::from_inner(schnorr_fun::Signature {
            R: lifted.R,
            s: s!(lifted.s + one()).public(),
        });
        for (T, enc, sig) in [
            (&T2, &enc.0, &sig),
            (&T, &enc.0, &unrelated),
            (&T, &enc.0, &same_nonce),
            (&T, &flipped, &sig),
        ] {
            prop_assert_eq!(ours_recover(T, enc, sig), None);
            prop_assert_eq!(reference_recover(T, enc, sig), None);
        }
    }

    #[test]
    fn price_point_matches_the_reference(
        x in any::<[u8; 32]>(),
        k in any::<[u8; 32]>(),
        m in any::<[u8; 32]>(),
    ) {
        let (Ok(x), Ok(k)) = (SecretKey::from_bytes(x), SecretKey::from_bytes(k)) else {
            return Ok(());
        };
        let (X, R) = (x.public_key(), PublicNonce::from_point(*k.public_key().point()));
        let R_ = R.lift().expect("a public key's x is a curve point's");
        let e = keys::challenge(&R_, X.point(), &m);
        let X_ = X.point();
        let expected = g!(R_ + e * X_).normalize().non_zero().map(AdaptorPoint);
        prop_assert_eq!(price_point(&R, &X, &m).ok(), expected);
    }

    #[test]
    fn double_multiplication_matches_the_reference(
        a in any::<[u8; 32]>(),
        b in any::<[u8; 32]>(),
        X in any::<[u8; 32]>(),
    ) {
        let Some(X) = Point::<EvenY>::from_xonly_bytes(X) else {
            return Ok(());
        };
        let (a, b) = (scalar(a), scalar(b));
        let expected = g!(a * G - b * X).normalize().non_zero().map(|P| P.to_bytes());
        let ours = double_mul_variable_time(a, b, &X).map(|P| P.serialize());
        prop_assert_eq!(ours, expected);
    }
}

#[test]
fn double_multiplication_with_x_at_and_above_the_order() {
    // n, the group order, and n + 2 are x-coordinates of curve points (n + 1 is not).
    let n: [u8; 32] =
        hex::decode("fffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141")
            .expect("hex literal")
            .try_into()
            .expect("32 bytes");
    let mut n_plus_2 = n;
    n_plus_2[31] += 2;
    let at_order = Point::<EvenY>::from_xonly_bytes(n).expect("n is an x-coordinate");
    let above = Point::<EvenY>::from_xonly_bytes(n_plus_2).expect("n + 2 is an x-coordinate");
    for i in 1u8..=8 {
        let (a, b) = (scalar([i; 32]), scalar([i.wrapping_mul(37); 32]));
        // r = x mod n = 0 is no ECDSA signature: the caller falls back to the reference.
        assert!(double_mul_variable_time(a, b, &at_order).is_none());
        let expected = g!(a * G - b * above).normalize().to_bytes();
        assert_eq!(
            double_mul_variable_time(a, b, &above).map(|P| P.serialize()),
            Some(expected)
        );
    }
    // Verification with such a key still works through the fallback: a valid encrypted
    // signature cannot be made without the key's discrete log, so check refusals.
    let (t, m) = (secret_with_parity(true), [9u8; 32]);
    let T = t.adaptor_point();
    let enc = EncryptedSignature::encrypt(
        &SecretKey::from_bytes([3; 32]).expect("valid scalar"),
        &T,
        &m,
        &[0; 32],
    );
    for X in [at_order, above] {
        let X = PublicKey::from_xonly_bytes(X.to_xonly_bytes()).expect("a curve point");
        assert_eq!(both_verify(&X, &T, &m, &enc.0), (false, false));
    }
}

#[test]
fn both_negation_flags_occur() {
    let x = SecretKey::from_bytes([1; 32]).expect("valid scalar");
    let T = secret_with_parity(true).adaptor_point();
    let flags: std::collections::BTreeSet<bool> = (0u8..32)
        .map(|i| {
            EncryptedSignature::encrypt(&x, &T, &[i; 32], &[i; 32])
                .0
                .needs_negation
        })
        .collect();
    assert_eq!(flags.len(), 2);
}

/// A signer who knows its key can make ŝ·G − c·X = −(R ± T): the same x-coordinate as the
/// right point but the other y. Both verifications refuse it, and so does decryption.
#[test]
fn negated_point_is_refused() {
    let x = SecretKey::from_bytes([4; 32]).expect("valid scalar");
    let (X, m) = (x.public_key(), [5u8; 32]);
    for (t_even, needs_negation) in [(true, true), (true, false), (false, true), (false, false)] {
        let t = secret_with_parity(t_even);
        let T = t.adaptor_point();
        // R = a·G ∓ T, so that R ± T = a·G, with a chosen so that R has even y.
        let (a, R) = (1u8..)
            .find_map(|i| {
                let a = Scalar::<Secret, NonZero>::from_bytes([i; 32])?;
                let T_ = T.0.conditional_negate(needs_negation);
                let R = g!(a * G + T_).normalize().non_zero()?;
                R.is_y_even().then(|| (a, R.into_point_with_even_y().0))
            })
            .expect("about half of all points have even y");
        let c = keys::challenge(&R, X.point(), &m);
        let x_ = x.keypair().secret_key();
        let honest = Inner {
            R,
            s_hat: s!(c * x_ + a).public(),
            needs_negation,
        };
        let negated = Inner {
            R,
            s_hat: s!(c * x_ - a).public(),
            needs_negation,
        };
        assert_eq!(both_verify(&X, &T, &m, &honest), (true, true));
        assert_eq!(both_verify(&X, &T, &m, &negated), (false, false));
        let sig = EncryptedSignature(honest.clone())
            .decrypt(&t, &X, &m)
            .expect("valid");
        assert!(libsecp_verifies(&X, &m, &sig));
        assert!(EncryptedSignature(negated).decrypt(&t, &X, &m).is_err());
        assert_eq!(ours_recover(&T, &honest, &sig), Some(t.to_secret_bytes()));
    }
}

/// ŝ·G − c·X at infinity (R = ∓T and ŝ = c·x): the reference accepts it, and it does
/// decrypt to a valid signature. The libsecp256k1 path cannot tell this case and falls
/// back to the reference.
#[test]
fn encrypted_signature_at_infinity_agrees_with_the_reference() {
    let x = SecretKey::from_bytes([6; 32]).expect("valid scalar");
    let (X, m) = (x.public_key(), [7u8; 32]);
    for needs_negation in [false, true] {
        // R − T = 0 needs T with even y; R + T = 0 needs T with odd y.
        let t = secret_with_parity(!needs_negation);
        let T = t.adaptor_point();
        let R =
            T.0.conditional_negate(needs_negation)
                .into_point_with_even_y()
                .0;
        let c = keys::challenge(&R, X.point(), &m);
        let x_ = x.keypair().secret_key();
        let enc = Inner {
            R,
            s_hat: s!(c * x_).public(),
            needs_negation,
        };
        assert!(verify_variable_time(X.point(), &T.0, &m, &enc).is_none());
        assert_eq!(both_verify(&X, &T, &m, &enc), (true, true));
        let sig = EncryptedSignature(enc.clone())
            .decrypt(&t, &X, &m)
            .expect("valid");
        assert!(libsecp_verifies(&X, &m, &sig));
        assert_eq!(ours_recover(&T, &enc, &sig), Some(t.to_secret_bytes()));
    }
}

#[test]
fn price_point_sum_at_infinity_and_zero_challenge() {
    let X = SecretKey::from_bytes([8; 32])
        .expect("valid scalar")
        .public_key();
    let X_ = X.point();
    // R = −e·X for some e with that point's y even.
    let (e, R) = (1u8..)
        .find_map(|i| {
            let e = scalar([i; 32]);
            let R = g!(-e * X_).normalize().non_zero()?;
            R.is_y_even().then(|| (e, R.into_point_with_even_y().0))
        })
        .expect("about half of all points have even y");
    assert_eq!(sum_variable_time(&R, X_, e), None);
    assert_eq!(
        sum_variable_time(&R, X_, Scalar::zero()).map(|T| T.to_bytes()),
        Some(R.to_bytes())
    );
}
