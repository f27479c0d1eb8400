//! The BIP341/342 tapscript signature message, extended by BIP118.

use bitcoin::consensus::encode::{Encodable, VarInt};
use bitcoin::hashes::{sha256, Hash, HashEngine};
use bitcoin::taproot::{LeafVersion, TapLeafHash};
use bitcoin::{Script, TapSighash, Transaction, TxOut};

use super::hash_type::{ApoSighashType, InputCommitment, KeyVersion, OutputCommitment};

/// The first byte of an annex (BIP341).
pub const ANNEX_TAG: u8 = 0x50;

/// The outputs spent by the transaction being signed, as far as the caller knows them.
///
/// Hash types without ANYONECANPAY/ANYPREVOUT bits commit to every spent output and need
/// [`SpentOutputs::All`]. ANYONECANPAY and ANYPREVOUT need only the output spent by the
/// signed input ([`SpentOutputs::This`] suffices); ANYPREVOUTANYSCRIPT needs none
/// ([`SpentOutputs::Unknown`] suffices).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpentOutputs<'a> {
    /// The outputs spent by every input, in input order.
    All(&'a [TxOut]),
    /// Only the output spent by the input being signed.
    This(&'a TxOut),
    /// None: enough for ANYPREVOUTANYSCRIPT, which signs no spent output data.
    Unknown,
}

/// The tapscript leaf being executed and the position of the signature opcode within it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeafContext<'a> {
    /// The leaf script.
    pub script: &'a Script,
    /// The leaf version (0xc0 for tapscript).
    pub leaf_version: LeafVersion,
    /// Opcode position of the last executed `OP_CODESEPARATOR` before the signature
    /// opcode, or [`LeafContext::NO_CODESEPARATOR`].
    pub codesep_pos: u32,
}

impl<'a> LeafContext<'a> {
    /// `codesep_pos` when no `OP_CODESEPARATOR` was executed.
    pub const NO_CODESEPARATOR: u32 = u32::MAX;

    /// A tapscript (leaf version 0xc0) leaf without executed `OP_CODESEPARATOR`.
    pub fn new(script: &'a Script) -> Self {
        LeafContext {
            script,
            leaf_version: LeafVersion::TapScript,
            codesep_pos: Self::NO_CODESEPARATOR,
        }
    }

    /// The same leaf with the given `OP_CODESEPARATOR` position.
    pub fn with_codesep_pos(self, codesep_pos: u32) -> Self {
        LeafContext {
            codesep_pos,
            ..self
        }
    }

    /// The BIP341 tapleaf hash of this leaf.
    pub fn leaf_hash(&self) -> TapLeafHash {
        TapLeafHash::from_script(self.script, self.leaf_version)
    }
}

/// Why a signature message cannot be computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Bip118Error {
    /// The input index is not an input of the transaction.
    #[error("input index {index} out of range for a transaction with {inputs} inputs")]
    InputIndexOutOfRange {
        /// The requested input index.
        index: usize,
        /// The number of inputs of the transaction.
        inputs: usize,
    },
    /// [`SpentOutputs::All`] does not hold one output per input.
    #[error("{given} spent outputs given for a transaction with {inputs} inputs")]
    SpentOutputsCount {
        /// The number of spent outputs given.
        given: usize,
        /// The number of inputs of the transaction.
        inputs: usize,
    },
    /// The hash type commits to all spent outputs, but not all were given.
    #[error("hash type {hash_type:#04x} needs the outputs spent by all inputs")]
    MissingSpentOutputs {
        /// The hash type byte.
        hash_type: u8,
    },
    /// The hash type commits to the output spent by this input, but it was not given.
    #[error("hash type {hash_type:#04x} needs the output spent by input {index}")]
    MissingSpentOutput {
        /// The hash type byte.
        hash_type: u8,
        /// The input being signed.
        index: usize,
    },
    /// `SIGHASH_SINGLE` for an input without an output at the same index.
    #[error("single hash type for input {index} but the transaction has {outputs} outputs")]
    SingleWithoutOutput {
        /// The input being signed.
        index: usize,
        /// The number of outputs of the transaction.
        outputs: usize,
    },
    /// The hash type is not defined for the key version (ANYPREVOUT with a BIP342 key).
    #[error("hash type {hash_type:#04x} is invalid for key version {key_version}")]
    HashTypeForKeyVersion {
        /// The hash type byte.
        hash_type: u8,
        /// The key version.
        key_version: KeyVersion,
    },
    /// The byte is not a hash type at all.
    #[error(transparent)]
    InvalidHashType(#[from] super::hash_type::InvalidHashTypeError),
    /// The annex is empty or does not start with 0x50.
    #[error("annex must start with 0x50")]
    InvalidAnnex,
}

const WRITE: &str = "writing to a vector or a hash engine cannot fail";

fn sha256_of<F: Fn(&mut sha256::HashEngine)>(f: F) -> sha256::Hash {
    let mut engine = sha256::Hash::engine();
    f(&mut engine);
    sha256::Hash::from_engine(engine)
}

fn encode<T: Encodable + ?Sized, W: bitcoin::io::Write + ?Sized>(value: &T, w: &mut W) {
    value.consensus_encode(w).expect(WRITE);
}

/// Computes the signature message for a tapscript signature: `0x00 || Msg || Ext`.
///
/// With [`KeyVersion::Bip118`] this is BIP118's `Msg118(hash_type) || Ext118(hash_type)`;
/// with [`KeyVersion::Bip342`] it is BIP342's `SigMsg(hash_type, 1) || ext` and the
/// ANYPREVOUT hash types are rejected. The returned bytes start with the epoch byte 0x00.
///
/// `annex`, when present, includes its 0x50 tag.
pub fn signature_message_with_key_version(
    tx: &Transaction,
    input_index: usize,
    spent: SpentOutputs<'_>,
    hash_type: ApoSighashType,
    key_version: KeyVersion,
    leaf: &LeafContext<'_>,
    annex: Option<&[u8]>,
) -> Result<Vec<u8>, Bip118Error> {
    let mut msg = Vec::with_capacity(256);
    let byte = hash_type.to_u8();
    if !hash_type.is_valid_for(key_version) {
        return Err(Bip118Error::HashTypeForKeyVersion {
            hash_type: byte,
            key_version,
        });
    }
    let inputs = tx.input.len();
    let input = tx
        .input
        .get(input_index)
        .ok_or(Bip118Error::InputIndexOutOfRange {
            index: input_index,
            inputs,
        })?;
    if let SpentOutputs::All(all) = spent {
        if all.len() != inputs {
            return Err(Bip118Error::SpentOutputsCount {
                given: all.len(),
                inputs,
            });
        }
    }
    let single_output = match hash_type.output_commitment() {
        OutputCommitment::Single => Some(tx.output.get(input_index).ok_or(
            Bip118Error::SingleWithoutOutput {
                index: input_index,
                outputs: tx.output.len(),
            },
        )?),
        _ => None,
    };
    if let Some(annex) = annex {
        if annex.first() != Some(&ANNEX_TAG) {
            return Err(Bip118Error::InvalidAnnex);
        }
    }
    let inputs_mode = hash_type.input_commitment();
    let this_spent = || -> Result<&TxOut, Bip118Error> {
        match spent {
            SpentOutputs::All(all) => Ok(&all[input_index]),
            SpentOutputs::This(output) => Ok(output),
            SpentOutputs::Unknown => Err(Bip118Error::MissingSpentOutput {
                hash_type: byte,
                index: input_index,
            }),
        }
    };

    // Epoch and control.
    msg.push(0x00);
    msg.push(byte);

    // Transaction data.
    encode(&tx.version, &mut msg);
    encode(&tx.lock_time, &mut msg);
    if inputs_mode == InputCommitment::AllInputs {
        let SpentOutputs::All(all) = spent else {
            return Err(Bip118Error::MissingSpentOutputs { hash_type: byte });
        };
        let sha_prevouts =
            sha256_of(|e| tx.input.iter().for_each(|i| encode(&i.previous_output, e)));
        let sha_amounts = sha256_of(|e| all.iter().for_each(|o| encode(&o.value, e)));
        let sha_spks = sha256_of(|e| all.iter().for_each(|o| encode(&o.script_pubkey, e)));
        let sha_sequences = sha256_of(|e| tx.input.iter().for_each(|i| encode(&i.sequence, e)));
        for h in [sha_prevouts, sha_amounts, sha_spks, sha_sequences] {
            msg.extend_from_slice(h.as_byte_array());
        }
    }
    if hash_type.output_commitment() == OutputCommitment::All {
        let sha_outputs = sha256_of(|e| tx.output.iter().for_each(|o| encode(o, e)));
        msg.extend_from_slice(sha_outputs.as_byte_array());
    }

    // Data about this input. Script path spends set ext_flag = 1.
    msg.push(2 | u8::from(annex.is_some()));
    match inputs_mode {
        InputCommitment::AllInputs => {
            let index =
                u32::try_from(input_index).map_err(|_| Bip118Error::InputIndexOutOfRange {
                    index: input_index,
                    inputs,
                })?;
            msg.extend_from_slice(&index.to_le_bytes());
        }
        InputCommitment::AnyoneCanPay | InputCommitment::AnyPrevout => {
            let spent_output = this_spent()?;
            if inputs_mode == InputCommitment::AnyoneCanPay {
                encode(&input.previous_output, &mut msg);
            }
            encode(&spent_output.value, &mut msg);
            encode(&spent_output.script_pubkey, &mut msg);
            encode(&input.sequence, &mut msg);
        }
        InputCommitment::AnyPrevoutAnyScript => encode(&input.sequence, &mut msg),
    }
    if let Some(annex) = annex {
        let sha_annex = sha256_of(|e| {
            encode(&VarInt(annex.len() as u64), e);
            e.input(annex);
        });
        msg.extend_from_slice(sha_annex.as_byte_array());
    }

    // Data about this output.
    if let Some(output) = single_output {
        msg.extend_from_slice(sha256_of(|e| encode(output, e)).as_byte_array());
    }

    // Tapscript extension.
    if inputs_mode != InputCommitment::AnyPrevoutAnyScript {
        msg.extend_from_slice(leaf.leaf_hash().as_byte_array());
    }
    msg.push(key_version.to_u8());
    msg.extend_from_slice(&leaf.codesep_pos.to_le_bytes());
    Ok(msg)
}

/// Computes the BIP118 signature message (key version 0x01), epoch byte 0x00 included.
///
/// See [`signature_message_with_key_version`] for the errors.
pub fn signature_message(
    tx: &Transaction,
    input_index: usize,
    spent: SpentOutputs<'_>,
    hash_type: ApoSighashType,
    leaf: &LeafContext<'_>,
    annex: Option<&[u8]>,
) -> Result<Vec<u8>, Bip118Error> {
    signature_message_with_key_version(
        tx,
        input_index,
        spent,
        hash_type,
        KeyVersion::Bip118,
        leaf,
        annex,
    )
}

/// The BIP341 tagged hash `TapSighash` of a signature message (epoch byte included).
pub fn tap_sighash(message: &[u8]) -> TapSighash {
    TapSighash::hash(message)
}

/// Computes the sighash for a key of the given version: `TapSighash` of
/// [`signature_message_with_key_version`].
pub fn sighash_with_key_version(
    tx: &Transaction,
    input_index: usize,
    spent: SpentOutputs<'_>,
    hash_type: ApoSighashType,
    key_version: KeyVersion,
    leaf: &LeafContext<'_>,
    annex: Option<&[u8]>,
) -> Result<TapSighash, Bip118Error> {
    signature_message_with_key_version(tx, input_index, spent, hash_type, key_version, leaf, annex)
        .map(|msg| tap_sighash(&msg))
}

/// Computes the BIP118 sighash (key version 0x01): the 32 bytes a BIP118 key signs.
pub fn sighash(
    tx: &Transaction,
    input_index: usize,
    spent: SpentOutputs<'_>,
    hash_type: ApoSighashType,
    leaf: &LeafContext<'_>,
    annex: Option<&[u8]>,
) -> Result<TapSighash, Bip118Error> {
    sighash_with_key_version(
        tx,
        input_index,
        spent,
        hash_type,
        KeyVersion::Bip118,
        leaf,
        annex,
    )
}
