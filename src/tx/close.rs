//! The cooperative close: both parties spend the funding output through its key path with
//! a MuSig2 signature (BIP327) for the funding output key.
//!
//! The close is version 2, nLockTime 0, one input (the funding output, nSequence
//! `0xfffffffd`), with the outputs the parties agreed; the fee is whatever the outputs leave
//! of the channel's value. The witness is one 64-byte signature.
//!
//! Signing takes two rounds: each party makes a [`CloseNonce`] and sends its public half;
//! with both public nonces each makes a [`partial_sign`]ature and sends it; either one
//! [`combine`]s them. A [`CloseNonce`] is consumed by signing and cannot be cloned or
//! serialised, so it cannot sign twice; its session id must be fresh for every attempt and
//! stored before the public nonce leaves the party (the caller's job, as for every nonce).
//!
//! ```
//! use asyncpay::tx::close::{combine, cooperative_close, partial_sign, CloseNonce};
//! use asyncpay::tx::{ChannelKeys, Funding, Party};
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut};
//!
//! let secp = Secp256k1::new();
//! let key = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
//! let (a, s) = (key(1), key(2));
//! let keys = ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0);
//! let funding = Funding::new(keys, Amount::from_sat(100_000));
//! let to = |k: &Keypair, sats| TxOut {
//!     value: Amount::from_sat(sats),
//!     script_pubkey: ScriptBuf::new_p2tr(&secp, k.x_only_public_key().0, None),
//! };
//! let tx = cooperative_close(&funding, OutPoint::null(), vec![to(&a, 59_800), to(&s, 40_000)])?;
//!
//! let nonce_a = CloseNonce::new(&funding, &a, &[1; 32], &[11; 32]);
//! let nonce_s = CloseNonce::new(&funding, &s, &[2; 32], &[22; 32]);
//! let nonces = [nonce_a.public(), nonce_s.public()];
//! let part_a = partial_sign(&funding, &tx, Party::A, &a, nonce_a, &nonces)?;
//! let part_s = partial_sign(&funding, &tx, Party::S, &s, nonce_s, &nonces)?;
//! let signed = combine(&funding, &tx, &nonces, [part_a, part_s])?;
//! assert_eq!(signed.input[0].witness.len(), 1);
//! # Ok::<(), asyncpay::tx::TxError>(())
//! ```

use core::fmt;

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{self, Keypair};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::transaction::Version;
use bitcoin::{absolute, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness};
use schnorr_fun::binonce::{Nonce, NonceKeyPair};
use schnorr_fun::fun::{marker::*, KeyPair, Scalar};
use schnorr_fun::Message;

use super::funding::{musig, Funding, Party};
use super::{dust_limit, TxError};

/// A public MuSig2 nonce: two compressed points.
pub type PublicCloseNonce = [u8; 66];

/// A MuSig2 partial signature: one scalar.
pub type PartialSignature = [u8; 32];

/// The unsigned cooperative close of the funding output at `outpoint`.
pub fn cooperative_close(
    funding: &Funding,
    outpoint: OutPoint,
    outputs: Vec<TxOut>,
) -> Result<Transaction, TxError> {
    let mut total = Amount::ZERO;
    for out in &outputs {
        let limit = dust_limit(&out.script_pubkey);
        if out.value < limit {
            return Err(TxError::Dust {
                value: out.value,
                limit,
            });
        }
        total = total.checked_add(out.value).unwrap_or(Amount::MAX);
    }
    if total > funding.value() {
        return Err(TxError::InsufficientValue {
            needed: total,
            available: funding.value(),
        });
    }
    Ok(Transaction {
        version: Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: outpoint,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: outputs,
    })
}

/// The BIP341 key-path sighash (default hash type) of the close.
pub fn close_sighash(funding: &Funding, tx: &Transaction) -> Result<[u8; 32], TxError> {
    let spent = funding.txout();
    SighashCache::new(tx)
        .taproot_key_spend_signature_hash(
            0,
            &Prevouts::All(std::slice::from_ref(&spent)),
            TapSighashType::Default,
        )
        .map(|h| h.to_byte_array())
        .map_err(TxError::from)
}

/// A party's secret MuSig2 nonce pair for one close attempt.
pub struct CloseNonce {
    secret: NonceKeyPair,
}

impl CloseNonce {
    /// Derives the nonce from the signer's key, the funding output's key, a session id
    /// that is never reused and fresh randomness, all supplied by the caller.
    pub fn new(
        funding: &Funding,
        signer: &Keypair,
        session_id: &[u8; 32],
        rand: &[u8; 32],
    ) -> Self {
        let agg = funding.tweaked_musig_key();
        let secret = Scalar::from(signer.secret_key());
        let mut session = [0u8; 64];
        session[..32].copy_from_slice(session_id);
        session[32..].copy_from_slice(rand);
        let mut rng: rand::rngs::StdRng = musig().seed_nonce_rng(&agg, &secret, &session);
        CloseNonce {
            secret: NonceKeyPair::random(&mut rng),
        }
    }

    /// The public nonce to send to the other party.
    pub fn public(&self) -> PublicCloseNonce {
        self.secret.public().to_bytes()
    }
}

impl fmt::Debug for CloseNonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CloseNonce(public: {})", hex::encode(self.public()))
    }
}

fn session(
    funding: &Funding,
    tx: &Transaction,
    nonces: &[PublicCloseNonce; 2],
) -> Result<
    (
        schnorr_fun::musig::AggKey<EvenY>,
        schnorr_fun::musig::SignSession,
    ),
    TxError,
> {
    let parse = |bytes: &PublicCloseNonce| {
        Nonce::from_bytes(*bytes).ok_or(TxError::Malformed {
            what: "MuSig2 public nonce",
        })
    };
    let nonces = vec![parse(&nonces[0])?, parse(&nonces[1])?];
    let agg = funding.tweaked_musig_key();
    let m = close_sighash(funding, tx)?;
    let session = musig().start_sign_session(&agg, nonces, Message::raw(&m));
    Ok((agg, session))
}

/// `party`'s partial signature on the close, consuming its nonce. `nonces` are A's and
/// S's public nonces, in that order.
pub fn partial_sign(
    funding: &Funding,
    tx: &Transaction,
    party: Party,
    signer: &Keypair,
    nonce: CloseNonce,
    nonces: &[PublicCloseNonce; 2],
) -> Result<PartialSignature, TxError> {
    if signer.x_only_public_key().0 != funding.keys().of(party) {
        return Err(TxError::WrongKey { party });
    }
    if nonce.public() != nonces[party.index()] {
        return Err(TxError::NonceMismatch { party });
    }
    let (agg, session) = session(funding, tx, nonces)?;
    // The aggregate holds the even-y key; sign with the matching secret.
    let keypair = KeyPair::<EvenY>::new_xonly(Scalar::from(signer.secret_key()));
    let keypair = KeyPair::<Normal>::new(*keypair.secret_key());
    let partial = musig().sign(&agg, &session, party.index(), &keypair, nonce.secret);
    Ok(partial.to_bytes())
}

fn parse_partial(bytes: &PartialSignature) -> Result<Scalar<Public, Zero>, TxError> {
    Scalar::<Public, Zero>::from_bytes(*bytes).ok_or(TxError::Malformed {
        what: "MuSig2 partial signature",
    })
}

/// Checks the other party's partial signature.
pub fn verify_partial(
    funding: &Funding,
    tx: &Transaction,
    party: Party,
    partial: &PartialSignature,
    nonces: &[PublicCloseNonce; 2],
) -> Result<(), TxError> {
    let (agg, session) = session(funding, tx, nonces)?;
    if musig().verify_partial_signature(&agg, &session, party.index(), parse_partial(partial)?) {
        Ok(())
    } else {
        Err(TxError::InvalidSignature {
            party: match party {
                Party::A => "A's partial close",
                Party::S => "S's partial close",
            },
        })
    }
}

/// The signed close from both partial signatures (A's, then S's); the aggregate signature is
/// checked against the funding output key.
pub fn combine(
    funding: &Funding,
    tx: &Transaction,
    nonces: &[PublicCloseNonce; 2],
    partials: [PartialSignature; 2],
) -> Result<Transaction, TxError> {
    for party in [Party::A, Party::S] {
        verify_partial(funding, tx, party, &partials[party.index()], nonces)?;
    }
    let (agg, session) = session(funding, tx, nonces)?;
    let sig = musig().combine_partial_signatures(
        &agg,
        &session,
        [parse_partial(&partials[0])?, parse_partial(&partials[1])?],
    );
    let sig = secp256k1::schnorr::Signature::from_slice(&sig.to_bytes()).map_err(|_| {
        TxError::Malformed {
            what: "aggregate signature",
        }
    })?;
    let m = secp256k1::Message::from_digest(close_sighash(funding, tx)?);
    let output_key = funding.spend_info().output_key().to_x_only_public_key();
    super::secp()
        .verify_schnorr(&sig, &m, &output_key)
        .map_err(|_| TxError::InvalidSignature {
            party: "aggregate close",
        })?;
    let mut signed = tx.clone();
    signed.input[0].witness = Witness::from_slice(&[sig.serialize()]);
    Ok(signed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::ChannelKeys;
    use bitcoin::secp256k1::Secp256k1;

    use crate::tx::test_keypair as kp;

    fn setup() -> (Funding, Transaction, Keypair, Keypair) {
        // Key 3's point has odd y: exercises the even-y normalisation.
        let (a, s) = (kp(3), kp(4));
        let funding = Funding::new(
            ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0),
            Amount::from_sat(50_000),
        );
        let out = TxOut {
            value: Amount::from_sat(49_000),
            script_pubkey: ScriptBuf::new_p2tr(&Secp256k1::new(), a.x_only_public_key().0, None),
        };
        let tx = cooperative_close(&funding, OutPoint::null(), vec![out]).unwrap();
        (funding, tx, a, s)
    }

    #[test]
    fn musig_close_signs_for_the_output_key() {
        for (ba, bs) in [(3u8, 4u8), (5, 6), (7, 8)] {
            let (a, s) = (kp(ba), kp(bs));
            let funding = Funding::new(
                ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0),
                Amount::from_sat(50_000),
            );
            let tx = cooperative_close(&funding, OutPoint::null(), vec![]).unwrap();
            let na = CloseNonce::new(&funding, &a, &[1; 32], &[0; 32]);
            let ns = CloseNonce::new(&funding, &s, &[2; 32], &[0; 32]);
            let nonces = [na.public(), ns.public()];
            let pa = partial_sign(&funding, &tx, Party::A, &a, na, &nonces).unwrap();
            let ps = partial_sign(&funding, &tx, Party::S, &s, ns, &nonces).unwrap();
            let signed = combine(&funding, &tx, &nonces, [pa, ps]).unwrap();
            assert_eq!(signed.input[0].witness.nth(0).unwrap().len(), 64);
        }
    }

    #[test]
    fn bad_partials_and_wrong_keys_are_typed_errors() {
        let (funding, tx, a, s) = setup();
        let na = CloseNonce::new(&funding, &a, &[1; 32], &[0; 32]);
        let ns = CloseNonce::new(&funding, &s, &[2; 32], &[0; 32]);
        let nonces = [na.public(), ns.public()];
        assert!(matches!(
            partial_sign(
                &funding,
                &tx,
                Party::S,
                &a,
                CloseNonce::new(&funding, &a, &[3; 32], &[0; 32]),
                &nonces
            ),
            Err(TxError::WrongKey { party: Party::S })
        ));
        let pa = partial_sign(&funding, &tx, Party::A, &a, na, &nonces).unwrap();
        let mut forged = pa;
        forged[31] ^= 1;
        assert!(matches!(
            combine(&funding, &tx, &nonces, [pa, forged]),
            Err(TxError::InvalidSignature { .. })
        ));
        let mut bad = nonces;
        bad[0] = [0xff; 66];
        assert!(matches!(
            verify_partial(&funding, &tx, Party::A, &pa, &bad),
            Err(TxError::Malformed { .. })
        ));
        let too_much = TxOut {
            value: Amount::from_sat(60_000),
            script_pubkey: ScriptBuf::new_p2a(),
        };
        assert!(cooperative_close(&funding, OutPoint::null(), vec![too_much]).is_err());
    }
}
