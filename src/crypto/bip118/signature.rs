//! BIP340 signatures for BIP118 keys: signing, serialisation and verification.

use bitcoin::hashes::Hash as _;
use bitcoin::secp256k1::{schnorr, Keypair, Message, Secp256k1, Signing, Verification};
use bitcoin::{TapSighash, Transaction, XOnlyPublicKey};

use super::hash_type::{ApoSighashType, InvalidHashTypeError};
use super::message::{sighash, signature_message, Bip118Error, LeafContext, SpentOutputs};

/// A BIP340 signature together with the hash type it signs.
///
/// Serialised as the 64-byte signature for [`ApoSighashType::Default`], and as the 64-byte
/// signature followed by the hash type byte otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApoSignature {
    /// The BIP340 signature.
    pub signature: schnorr::Signature,
    /// The hash type the signature was made with.
    pub hash_type: ApoSighashType,
}

/// Why bytes are not a well-formed signature for a BIP118 key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// Neither 64 nor 65 bytes.
    #[error("signature must be 64 or 65 bytes, not {len}")]
    InvalidLength {
        /// The length of the rejected signature.
        len: usize,
    },
    /// A 65-byte signature with hash type 0x00, which must be written as 64 bytes.
    #[error("65-byte signature with the default hash type 0x00")]
    ExplicitDefaultHashType,
    /// The last byte of a 65-byte signature is not a valid hash type.
    #[error(transparent)]
    InvalidHashType(#[from] InvalidHashTypeError),
}

/// Why a signature does not authorise a spend.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The signature bytes are malformed.
    #[error("malformed signature")]
    Malformed(#[from] SignatureError),
    /// The signature message for the signature's hash type cannot be computed.
    #[error("cannot compute the signature message")]
    Message(#[from] Bip118Error),
    /// The BIP340 verification failed.
    #[error("signature does not verify")]
    Invalid,
}

impl ApoSignature {
    /// Parses a 64- or 65-byte signature as found in a tapscript witness.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, SignatureError> {
        let (sig, hash_type) = match bytes.len() {
            64 => (bytes, ApoSighashType::Default),
            65 => match bytes[64] {
                0x00 => return Err(SignatureError::ExplicitDefaultHashType),
                byte => (&bytes[..64], ApoSighashType::from_u8(byte)?),
            },
            len => return Err(SignatureError::InvalidLength { len }),
        };
        let signature = schnorr::Signature::from_slice(sig)
            .map_err(|_| SignatureError::InvalidLength { len: bytes.len() })?;
        Ok(ApoSignature {
            signature,
            hash_type,
        })
    }

    /// The witness serialisation: 64 bytes for the default hash type, 65 bytes otherwise.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut bytes = self.signature.serialize().to_vec();
        if self.hash_type.is_explicit() {
            bytes.push(self.hash_type.to_u8());
        }
        bytes
    }

    /// Checks the signature against a sighash computed for [`Self::hash_type`].
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        sighash: TapSighash,
        key: &XOnlyPublicKey,
    ) -> Result<(), VerifyError> {
        let msg = Message::from_digest(sighash.to_byte_array());
        secp.verify_schnorr(&self.signature, &msg, key)
            .map_err(|_| VerifyError::Invalid)
    }
}

/// Signs a sighash with BIP340, tagging the result with the hash type it was computed for.
///
/// `aux_rand` is BIP340's auxiliary randomness; the caller supplies it so that signing
/// stays deterministic given its inputs.
pub fn sign<C: Signing>(
    secp: &Secp256k1<C>,
    sighash: TapSighash,
    hash_type: ApoSighashType,
    keypair: &Keypair,
    aux_rand: &[u8; 32],
) -> ApoSignature {
    let msg = Message::from_digest(sighash.to_byte_array());
    ApoSignature {
        signature: secp.sign_schnorr_with_aux_rand(&msg, keypair, aux_rand),
        hash_type,
    }
}

/// Parses a witness signature and verifies it for a BIP118 key spending `spend`.
///
/// Returns the parsed signature on success. `key` is the BIP340 key: for the 1-byte
/// internal-key form use [`super::ApoKey::resolve`] first.
pub fn verify<C: Verification>(
    secp: &Secp256k1<C>,
    spend: &ApoSpend<'_>,
    key: &XOnlyPublicKey,
    signature: &[u8],
) -> Result<ApoSignature, VerifyError> {
    let sig = ApoSignature::from_slice(signature)?;
    sig.verify(secp, spend.sighash(sig.hash_type)?, key)?;
    Ok(sig)
}

/// One tapscript input spent with BIP118 keys: everything but the hash type that the
/// signature message depends on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApoSpend<'a> {
    /// The spending transaction.
    pub tx: &'a Transaction,
    /// The index of the input being signed.
    pub input_index: usize,
    /// What is known of the spent outputs (see [`SpentOutputs`]).
    pub spent: SpentOutputs<'a>,
    /// The leaf being executed.
    pub leaf: LeafContext<'a>,
    /// The annex, with its 0x50 tag, if the witness carries one.
    pub annex: Option<&'a [u8]>,
}

impl<'a> ApoSpend<'a> {
    /// A spend without annex.
    pub fn new(
        tx: &'a Transaction,
        input_index: usize,
        spent: SpentOutputs<'a>,
        leaf: LeafContext<'a>,
    ) -> Self {
        ApoSpend {
            tx,
            input_index,
            spent,
            leaf,
            annex: None,
        }
    }

    /// The same spend with an annex (including its 0x50 tag).
    pub fn with_annex(self, annex: &'a [u8]) -> Self {
        ApoSpend {
            annex: Some(annex),
            ..self
        }
    }

    /// The BIP118 signature message for `hash_type`, epoch byte included.
    pub fn signature_message(&self, hash_type: ApoSighashType) -> Result<Vec<u8>, Bip118Error> {
        signature_message(
            self.tx,
            self.input_index,
            self.spent,
            hash_type,
            &self.leaf,
            self.annex,
        )
    }

    /// The BIP118 sighash for `hash_type`.
    pub fn sighash(&self, hash_type: ApoSighashType) -> Result<TapSighash, Bip118Error> {
        sighash(
            self.tx,
            self.input_index,
            self.spent,
            hash_type,
            &self.leaf,
            self.annex,
        )
    }

    /// Computes the sighash and signs it.
    pub fn sign<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        keypair: &Keypair,
        hash_type: ApoSighashType,
        aux_rand: &[u8; 32],
    ) -> Result<ApoSignature, Bip118Error> {
        Ok(sign(
            secp,
            self.sighash(hash_type)?,
            hash_type,
            keypair,
            aux_rand,
        ))
    }

    /// Parses a witness signature and verifies it; see [`verify`].
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        key: &XOnlyPublicKey,
        signature: &[u8],
    ) -> Result<ApoSignature, VerifyError> {
        verify(secp, self, key, signature)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::absolute::LockTime;
    use bitcoin::secp256k1::SecretKey;
    use bitcoin::transaction::Version;
    use bitcoin::{Amount, OutPoint, ScriptBuf, Sequence, TxIn, TxOut, Witness};

    fn keypair(secp: &Secp256k1<bitcoin::secp256k1::All>, byte: u8) -> Keypair {
        Keypair::from_secret_key(secp, &SecretKey::from_slice(&[byte; 32]).expect("scalar"))
    }

    fn fixture() -> (Transaction, Vec<TxOut>, ScriptBuf) {
        let input = |vout| TxIn {
            previous_output: OutPoint {
                txid: bitcoin::Txid::from_byte_array([vout as u8; 32]),
                vout,
            },
            script_sig: ScriptBuf::new(),
            sequence: Sequence(0xfffffffd),
            witness: Witness::new(),
        };
        let output = |sats| TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: ScriptBuf::from_bytes([&[0x51, 0x20][..], &[sats as u8; 32]].concat()),
        };
        let tx = Transaction {
            version: Version(3),
            lock_time: LockTime::from_consensus(500_000_001),
            input: vec![input(0), input(1)],
            output: vec![output(1_000), output(2_000)],
        };
        let spent = vec![output(5_000), output(6_000)];
        let script = ScriptBuf::from_bytes(vec![0x51]);
        (tx, spent, script)
    }

    #[test]
    fn round_trip_every_hash_type() {
        let secp = Secp256k1::new();
        let kp = keypair(&secp, 9);
        let (pk, _) = kp.x_only_public_key();
        let (tx, spent, script) = fixture();
        let spend = ApoSpend::new(&tx, 1, SpentOutputs::All(&spent), LeafContext::new(&script));
        for hash_type in ApoSighashType::ALL {
            let sig = spend
                .sign(&secp, &kp, hash_type, &[7; 32])
                .expect("all spent outputs given");
            let bytes = sig.to_vec();
            let expected_len = if hash_type == ApoSighashType::Default {
                64
            } else {
                65
            };
            assert_eq!(bytes.len(), expected_len, "{hash_type}");
            if hash_type.is_explicit() {
                assert_eq!(bytes[64], hash_type.to_u8());
            }
            assert_eq!(ApoSignature::from_slice(&bytes), Ok(sig));
            assert_eq!(spend.verify(&secp, &pk, &bytes), Ok(sig), "{hash_type}");

            // Another key, or the signature under another hash type, fails.
            let (other, _) = keypair(&secp, 10).x_only_public_key();
            assert_eq!(
                spend.verify(&secp, &other, &bytes),
                Err(VerifyError::Invalid)
            );
            let mut retagged = sig.signature.serialize().to_vec();
            retagged.push(if hash_type == ApoSighashType::All {
                0x02
            } else {
                0x01
            });
            assert_eq!(
                spend.verify(&secp, &pk, &retagged),
                Err(VerifyError::Invalid)
            );
        }
    }

    #[test]
    fn flipped_bits_fail() {
        let secp = Secp256k1::new();
        let kp = keypair(&secp, 11);
        let (pk, _) = kp.x_only_public_key();
        let (tx, _, script) = fixture();
        let spend = ApoSpend::new(&tx, 0, SpentOutputs::Unknown, LeafContext::new(&script));
        let hash_type = ApoSighashType::AllPlusAnyPrevoutAnyScript;
        let bytes = spend
            .sign(&secp, &kp, hash_type, &[0; 32])
            .expect("APOAS needs no spent outputs")
            .to_vec();
        assert!(spend.verify(&secp, &pk, &bytes).is_ok());
        for bit in [0, 7, 100, 255, 256, 511] {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            assert!(spend.verify(&secp, &pk, &flipped).is_err(), "bit {bit}");
        }
        // A different sighash (other sequence) fails too.
        let mut tx2 = tx.clone();
        tx2.input[0].sequence = Sequence(0);
        let spend2 = ApoSpend::new(&tx2, 0, SpentOutputs::Unknown, LeafContext::new(&script));
        assert_eq!(spend2.verify(&secp, &pk, &bytes), Err(VerifyError::Invalid));
    }

    #[test]
    fn encodings_are_checked() {
        let secp = Secp256k1::new();
        let kp = keypair(&secp, 12);
        let (pk, _) = kp.x_only_public_key();
        let (tx, spent, script) = fixture();
        let spend = ApoSpend::new(&tx, 0, SpentOutputs::All(&spent), LeafContext::new(&script));
        let sig = spend
            .sign(&secp, &kp, ApoSighashType::Default, &[1; 32])
            .expect("all spent outputs given");
        let mut explicit_default = sig.to_vec();
        explicit_default.push(0x00);
        assert_eq!(
            ApoSignature::from_slice(&explicit_default),
            Err(SignatureError::ExplicitDefaultHashType)
        );
        assert_eq!(
            spend.verify(&secp, &pk, &explicit_default),
            Err(VerifyError::Malformed(
                SignatureError::ExplicitDefaultHashType
            ))
        );
        let mut bad_type = sig.to_vec();
        bad_type.push(0x40);
        assert_eq!(
            ApoSignature::from_slice(&bad_type),
            Err(SignatureError::InvalidHashType(InvalidHashTypeError {
                hash_type: 0x40
            }))
        );
        for len in [0, 63, 66] {
            assert_eq!(
                ApoSignature::from_slice(&vec![1; len]),
                Err(SignatureError::InvalidLength { len })
            );
        }
        // A 0x01 signature is not the same as a default one, though both sign everything.
        let all = spend
            .sign(&secp, &kp, ApoSighashType::All, &[1; 32])
            .expect("all spent outputs given");
        assert_ne!(all.signature, sig.signature);
        assert_eq!(
            spend.verify(&secp, &pk, &all.signature.serialize()),
            Err(VerifyError::Invalid)
        );
    }

    #[test]
    fn message_errors() {
        let (tx, spent, script) = fixture();
        let leaf = LeafContext::new(&script);
        let at = |index, spent, hash_type| {
            ApoSpend::new(&tx, index, spent, leaf).signature_message(hash_type)
        };
        assert_eq!(
            at(2, SpentOutputs::All(&spent), ApoSighashType::All),
            Err(Bip118Error::InputIndexOutOfRange {
                index: 2,
                inputs: 2
            })
        );
        assert_eq!(
            at(0, SpentOutputs::This(&spent[0]), ApoSighashType::Default),
            Err(Bip118Error::MissingSpentOutputs { hash_type: 0 })
        );
        assert_eq!(
            at(0, SpentOutputs::All(&spent[..1]), ApoSighashType::All),
            Err(Bip118Error::SpentOutputsCount {
                given: 1,
                inputs: 2
            })
        );
        assert_eq!(
            at(1, SpentOutputs::Unknown, ApoSighashType::AllPlusAnyPrevout),
            Err(Bip118Error::MissingSpentOutput {
                hash_type: 0x41,
                index: 1
            })
        );
        assert!(at(
            1,
            SpentOutputs::This(&spent[1]),
            ApoSighashType::AllPlusAnyPrevout
        )
        .is_ok());
        assert!(at(
            1,
            SpentOutputs::Unknown,
            ApoSighashType::NonePlusAnyPrevoutAnyScript
        )
        .is_ok());

        let mut one_output = tx.clone();
        one_output.output.truncate(1);
        let err = ApoSpend::new(&one_output, 1, SpentOutputs::Unknown, leaf)
            .signature_message(ApoSighashType::SinglePlusAnyPrevoutAnyScript);
        assert_eq!(
            err,
            Err(Bip118Error::SingleWithoutOutput {
                index: 1,
                outputs: 1
            })
        );
        let spend = ApoSpend::new(&tx, 0, SpentOutputs::Unknown, leaf);
        assert_eq!(
            spend
                .with_annex(&[0x51])
                .signature_message(ApoSighashType::AllPlusAnyPrevoutAnyScript),
            Err(Bip118Error::InvalidAnnex)
        );
        assert_eq!(
            super::super::signature_message_with_key_version(
                &tx,
                0,
                SpentOutputs::Unknown,
                ApoSighashType::AllPlusAnyPrevoutAnyScript,
                super::super::KeyVersion::Bip342,
                &leaf,
                None
            ),
            Err(Bip118Error::HashTypeForKeyVersion {
                hash_type: 0xc1,
                key_version: super::super::KeyVersion::Bip342
            })
        );
        assert_eq!(
            Bip118Error::SingleWithoutOutput {
                index: 1,
                outputs: 1
            }
            .to_string(),
            "single hash type for input 1 but the transaction has 1 outputs"
        );
    }

    #[test]
    fn apoas_message_layout() {
        let (tx, _, script) = fixture();
        let msg = ApoSpend::new(&tx, 0, SpentOutputs::Unknown, LeafContext::new(&script))
            .signature_message(ApoSighashType::AllPlusAnyPrevoutAnyScript)
            .expect("APOAS needs no spent outputs");
        // epoch, hash_type, version, locktime, sha_outputs, spend_type, sequence,
        // key_version, codesep_pos
        assert_eq!(msg.len(), 1 + 1 + 4 + 4 + 32 + 1 + 4 + 1 + 4);
        assert_eq!(&msg[..2], &[0x00, 0xc1]);
        assert_eq!(msg[42], 0x02);
        assert_eq!(&msg[msg.len() - 5..], &[0x01, 0xff, 0xff, 0xff, 0xff]);
    }
}
