//! A private signet (BIP325): a challenge of the project's own, the block signer, and the
//! miner that turns a `getblocktemplate` answer into a signed block.
//!
//! A signet block carries a solution to the network's challenge script in its coinbase's
//! witness commitment output: an extra push of `ecc7daa2 ‖ scriptSig ‖ witness stack`. What
//! is signed is a virtual transaction pair, as bitcoind rebuilds it in `SignetTxs::Create`:
//! `to_spend` pays the challenge and commits, in its scriptSig, to the block's version,
//! previous block, time and a merkle root computed with the solution cut out of the coinbase
//! (the 4-byte header push stays); `to_sign` spends it to `OP_RETURN`, and its input's
//! scriptSig and witness are the solution. Everything but the nonce and the solution itself
//! is signed, so the block is signed first and ground for proof of work after.
//!
//! The challenge here is a P2WPKH script: the solution is an empty scriptSig and the witness
//! `[ECDSA signature, public key]` under the BIP143 digest (amount 0). A taproot challenge
//! would not be checked at all: signet verifies solutions without the taproot flag, so a
//! witness v1 program would be anyone-can-spend.

use bitcoin::blockdata::opcodes::all::OP_RETURN;
use bitcoin::blockdata::script::{Builder, Instruction, PushBytesBuf};
use bitcoin::consensus::encode::{deserialize_hex, serialize, Encodable};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{EcdsaSighashType, SighashCache};
use bitcoin::{
    absolute, block, transaction, Amount, Block, BlockHash, CompactTarget, CompressedPublicKey,
    OutPoint, Script, ScriptBuf, Sequence, Target, Transaction, TxIn, TxMerkleNode, TxOut, Witness,
};
use serde_json::Value;
use sha2::digest::generic_array::GenericArray;

use crate::crypto::tagged_hash;

/// The 4 bytes that open a signet solution in the witness commitment output.
pub const SIGNET_HEADER: [u8; 4] = [0xec, 0xc7, 0xda, 0xa2];

/// Why a signet block could not be built, signed or checked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignetError {
    /// The block has no coinbase.
    #[error("the block has no coinbase")]
    NoCoinbase,
    /// The coinbase has no witness commitment output.
    #[error("the coinbase has no witness commitment")]
    NoCommitment,
    /// The solution in the commitment does not parse.
    #[error("the signet solution does not parse: {0}")]
    BadSolution(String),
    /// A `getblocktemplate` answer lacks a field or has a malformed one.
    #[error("block template: {0}")]
    Template(String),
    /// No nonce and time within reach met the target.
    #[error("no proof of work found")]
    NoWork,
}

/// The key that signs a private signet's blocks.
#[derive(Clone)]
pub struct SignetSigner {
    secret: SecretKey,
    public: CompressedPublicKey,
}

impl core::fmt::Debug for SignetSigner {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("SignetSigner")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

impl SignetSigner {
    /// The signer whose key derives from `seed` (a network's identity: the same seed gives
    /// the same challenge, so the same network).
    pub fn from_seed(seed: &[u8]) -> Self {
        let mut counter = 0u8;
        loop {
            let bytes = tagged_hash("asyncpay/signet/v1/block-key", &[seed, &[counter]]);
            if let Ok(secret) = SecretKey::from_slice(&bytes) {
                let secp = Secp256k1::signing_only();
                let public = CompressedPublicKey(secret.public_key(&secp));
                return SignetSigner { secret, public };
            }
            counter = counter.wrapping_add(1);
        }
    }

    /// The network's challenge: P2WPKH of the signer's key.
    pub fn challenge(&self) -> ScriptBuf {
        ScriptBuf::new_p2wpkh(&self.public.wpubkey_hash())
    }

    /// Signs `block` for a network whose challenge is [`Self::challenge`]: puts the solution
    /// in its witness commitment output and updates its merkle root. Any earlier solution is
    /// replaced. The proof of work is ground afterwards ([`grind`]).
    pub fn sign(&self, block: &mut Block) -> Result<(), SignetError> {
        let challenge = self.challenge();
        // The message: the block with only the header push in the commitment.
        set_solution(block, &[])?;
        let (to_spend, mut to_sign) = signet_txs(block, &challenge)?;
        let sighash = SighashCache::new(&to_sign)
            .p2wpkh_signature_hash(0, &challenge, Amount::ZERO, EcdsaSighashType::All)
            .expect("input 0 exists and the script is P2WPKH");
        let secp = Secp256k1::signing_only();
        let signature =
            secp.sign_ecdsa(&Message::from_digest(sighash.to_byte_array()), &self.secret);
        let signature = bitcoin::ecdsa::Signature::sighash_all(signature);
        to_sign.input[0].witness = Witness::p2wpkh(&signature, &self.public.0);
        debug_assert_eq!(
            to_sign.input[0].previous_output.txid,
            to_spend.compute_txid()
        );
        let mut solution = serialize(&to_sign.input[0].script_sig);
        to_sign.input[0]
            .witness
            .consensus_encode(&mut solution)
            .expect("writing to a vector");
        set_solution(block, &solution)
    }
}

/// The 4-byte network magic of a signet with `challenge`: the first bytes of the double
/// SHA-256 of the challenge as serialized (length-prefixed). electrs needs it
/// (`--signet-magic`) to follow a signet of its own.
pub fn magic(challenge: &Script) -> [u8; 4] {
    let hash = bitcoin::hashes::sha256d::Hash::hash(&serialize(challenge));
    let mut out = [0; 4];
    out.copy_from_slice(&hash.as_byte_array()[..4]);
    out
}

/// The index of the coinbase's witness commitment output: the last output whose script
/// opens with `OP_RETURN 0x24 aa21a9ed` (BIP141).
fn commitment_index(coinbase: &Transaction) -> Option<usize> {
    coinbase.output.iter().rposition(|o| {
        let b = o.script_pubkey.as_bytes();
        b.len() >= 38 && b[..6] == [0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed]
    })
}

/// Splits a commitment script into the script bitcoind signs (the first push that opens
/// with [`SIGNET_HEADER`] and holds more is cut to the header) and the solution it held.
fn cut_solution(script: &Script) -> Result<(ScriptBuf, Option<Vec<u8>>), SignetError> {
    let mut builder = Builder::new();
    let mut solution = None;
    for instruction in script.instructions() {
        match instruction.map_err(|e| SignetError::BadSolution(e.to_string()))? {
            Instruction::PushBytes(data) if !data.is_empty() => {
                let bytes = data.as_bytes();
                if solution.is_none() && bytes.len() > 4 && bytes[..4] == SIGNET_HEADER {
                    solution = Some(bytes[4..].to_vec());
                    builder = builder.push_slice(SIGNET_HEADER);
                } else {
                    builder = builder.push_slice(data);
                }
            }
            Instruction::PushBytes(_) => builder = builder.push_opcode(bitcoin::opcodes::OP_0),
            Instruction::Op(op) => builder = builder.push_opcode(op),
        }
    }
    Ok((builder.into_script(), solution))
}

/// Puts `solution` (empty: only the header) as the last push of the commitment output, in
/// place of any earlier one, and recomputes the merkle root.
fn set_solution(block: &mut Block, solution: &[u8]) -> Result<(), SignetError> {
    let coinbase = block.txdata.first_mut().ok_or(SignetError::NoCoinbase)?;
    let index = commitment_index(coinbase).ok_or(SignetError::NoCommitment)?;
    let script = &coinbase.output[index].script_pubkey;
    let (cut, had) = cut_solution(script)?;
    // A script cut to the header ends in the header push; without a solution it had none.
    let mut base = cut.to_bytes();
    if had.is_some() || base.ends_with(&[4, 0xec, 0xc7, 0xda, 0xa2]) {
        base.truncate(base.len() - 5);
    }
    let mut push = SIGNET_HEADER.to_vec();
    push.extend_from_slice(solution);
    let push = PushBytesBuf::try_from(push)
        .map_err(|_| SignetError::BadSolution("solution too long".into()))?;
    let mut script = ScriptBuf::from_bytes(base);
    script.push_slice(push);
    coinbase.output[index].script_pubkey = script;
    block.header.merkle_root = block.compute_merkle_root().ok_or(SignetError::NoCoinbase)?;
    Ok(())
}

/// The transaction pair bitcoind checks a block's solution with: `to_spend` (paying the
/// challenge, committing to the block) and `to_sign` (spending it; its scriptSig and witness
/// are the block's solution, empty if it has none).
pub fn signet_txs(
    block: &Block,
    challenge: &Script,
) -> Result<(Transaction, Transaction), SignetError> {
    let mut coinbase = block.txdata.first().ok_or(SignetError::NoCoinbase)?.clone();
    let index = commitment_index(&coinbase).ok_or(SignetError::NoCommitment)?;
    let (cut, solution) = cut_solution(&coinbase.output[index].script_pubkey)?;
    coinbase.output[index].script_pubkey = cut;
    let (script_sig, witness) = match solution {
        None => (ScriptBuf::new(), Witness::new()),
        Some(bytes) => {
            let mut reader = bytes.as_slice();
            let script_sig: ScriptBuf =
                bitcoin::consensus::Decodable::consensus_decode(&mut reader)
                    .map_err(|e| SignetError::BadSolution(e.to_string()))?;
            let witness: Witness = bitcoin::consensus::Decodable::consensus_decode(&mut reader)
                .map_err(|e| SignetError::BadSolution(e.to_string()))?;
            if !reader.is_empty() {
                return Err(SignetError::BadSolution("bytes after the witness".into()));
            }
            (script_sig, witness)
        }
    };
    let mut modified = block.clone();
    modified.txdata[0] = coinbase;
    let merkle: TxMerkleNode = modified
        .compute_merkle_root()
        .ok_or(SignetError::NoCoinbase)?;
    let mut data = Vec::with_capacity(72);
    data.extend_from_slice(&block.header.version.to_consensus().to_le_bytes());
    data.extend_from_slice(block.header.prev_blockhash.as_byte_array());
    data.extend_from_slice(merkle.as_byte_array());
    data.extend_from_slice(&block.header.time.to_le_bytes());
    let data = PushBytesBuf::try_from(data).expect("72 bytes");
    let to_spend = Transaction {
        version: transaction::Version(0),
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: Builder::new()
                .push_opcode(bitcoin::opcodes::OP_0)
                .push_slice(data)
                .into_script(),
            sequence: Sequence(0),
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: challenge.to_owned(),
        }],
    };
    let to_sign = Transaction {
        version: transaction::Version(0),
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint {
                txid: to_spend.compute_txid(),
                vout: 0,
            },
            script_sig,
            sequence: Sequence(0),
            witness,
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: Builder::new().push_opcode(OP_RETURN).into_script(),
        }],
    };
    Ok((to_spend, to_sign))
}

/// SHA-256's initial state.
const SHA256_INIT: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::compress256(state, &[*GenericArray::from_slice(block)]);
}

/// The state of SHA-256 after the header's first 64 bytes, which the nonce does not touch.
fn midstate(header: &[u8]) -> [u32; 8] {
    let mut state = SHA256_INIT;
    let mut first = [0u8; 64];
    first.copy_from_slice(&header[..64]);
    compress(&mut state, &first);
    state
}

/// The blocks SHA-256 hashes for a header's last 16 bytes (`inner`, padded) and for the
/// first hash (`outer`, padded), made once and reused for every nonce.
fn tail_blocks(header: &[u8]) -> ([u8; 64], [u8; 64]) {
    let mut inner = [0u8; 64];
    inner[..16].copy_from_slice(&header[64..80]);
    inner[16] = 0x80;
    inner[56..].copy_from_slice(&(80u64 * 8).to_be_bytes());
    let mut outer = [0u8; 64];
    outer[32] = 0x80;
    outer[56..].copy_from_slice(&(32u64 * 8).to_be_bytes());
    (inner, outer)
}

/// The final SHA-256 state of the double hash of a header whose first 64 bytes gave `mid`
/// and whose nonce is `nonce`: two compressions instead of three.
fn double_hash_state(
    mid: &[u32; 8],
    nonce: u32,
    inner_block: &mut [u8; 64],
    outer_block: &mut [u8; 64],
) -> [u32; 8] {
    inner_block[12..16].copy_from_slice(&nonce.to_le_bytes());
    let mut inner = *mid;
    compress(&mut inner, inner_block);
    for (i, word) in inner.iter().enumerate() {
        outer_block[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    let mut outer = SHA256_INIT;
    compress(&mut outer, outer_block);
    outer
}

/// The hash bytes (hash byte order) of a final SHA-256 state.
fn state_bytes(state: &[u32; 8]) -> [u8; 32] {
    let mut hash = [0u8; 32];
    for (i, word) in state.iter().enumerate() {
        hash[i * 4..i * 4 + 4].copy_from_slice(&word.to_be_bytes());
    }
    hash
}

/// Grinds the header's nonce (and, if every nonce fails, its time) until its hash meets its
/// target, on every core. A signet's first blocks are at its proof-of-work limit: about
/// 5 million hashes.
pub fn grind(header: &mut block::Header) -> Result<(), SignetError> {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    // The target as the hash's bytes compare: most significant byte last.
    let target = Target::from_compact(header.bits).to_le_bytes();
    let top = u32::from_le_bytes([target[28], target[29], target[30], target[31]]);
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get()) as u32;
    for _ in 0..64 {
        let bytes = serialize(&*header);
        let mid = midstate(&bytes);
        let found = AtomicBool::new(false);
        let nonce = AtomicU32::new(0);
        std::thread::scope(|scope| {
            for worker in 0..workers {
                let (found, nonce, mid, bytes) = (&found, &nonce, &mid, &bytes);
                scope.spawn(move || {
                    let (mut inner_block, mut outer_block) = tail_blocks(bytes);
                    let mut n = worker;
                    loop {
                        if n % 4096 == worker && found.load(Ordering::Relaxed) {
                            return;
                        }
                        let outer = double_hash_state(mid, n, &mut inner_block, &mut outer_block);
                        // The hash's most significant 32 bits are the last word, byte-swapped:
                        // most nonces fail on them alone.
                        if outer[7].swap_bytes() <= top && meets(&outer, &target) {
                            if !found.swap(true, Ordering::Relaxed) {
                                nonce.store(n, Ordering::Relaxed);
                            }
                            return;
                        }
                        match n.checked_add(workers) {
                            Some(next) => n = next,
                            None => return,
                        }
                    }
                });
            }
        });
        if found.load(Ordering::Relaxed) {
            header.nonce = nonce.load(Ordering::Relaxed);
            return Ok(());
        }
        header.time = header.time.saturating_add(1);
    }
    Err(SignetError::NoWork)
}

/// Whether the hash with final SHA-256 state `state` is at most `target` (little-endian).
fn meets(state: &[u32; 8], target: &[u8; 32]) -> bool {
    let hash = state_bytes(state);
    // Both little-endian: compare from the most significant byte down.
    for i in (0..32).rev() {
        if hash[i] != target[i] {
            return hash[i] < target[i];
        }
    }
    true
}

/// Builds an unsigned block from a `getblocktemplate` answer (rules `segwit` and `signet`):
/// a coinbase paying the whole reward to `payout` with the template's witness commitment,
/// then the template's transactions. `tag` goes into the coinbase's scriptSig after the
/// height, so that two blocks built from one template differ.
pub fn block_from_template(
    template: &Value,
    payout: &Script,
    tag: &[u8],
) -> Result<Block, SignetError> {
    let field = |name: &str| {
        template
            .get(name)
            .ok_or_else(|| SignetError::Template(format!("no {name}")))
    };
    let number = |name: &str| {
        field(name)?
            .as_u64()
            .ok_or_else(|| SignetError::Template(format!("{name} is not a number")))
    };
    let text = |name: &str| {
        field(name)?
            .as_str()
            .ok_or_else(|| SignetError::Template(format!("{name} is not a string")))
    };
    let height = number("height")?;
    let version = i32::try_from(number("version")?)
        .map_err(|_| SignetError::Template("version out of range".into()))?;
    let prev: BlockHash = text("previousblockhash")?
        .parse()
        .map_err(|e| SignetError::Template(format!("previousblockhash: {e}")))?;
    let bits = u32::from_str_radix(text("bits")?, 16)
        .map_err(|e| SignetError::Template(format!("bits: {e}")))?;
    let time = u32::try_from(number("curtime")?)
        .map_err(|_| SignetError::Template("curtime out of range".into()))?;
    let reward = Amount::from_sat(number("coinbasevalue")?);
    let commitment = ScriptBuf::from_hex(text("default_witness_commitment")?)
        .map_err(|e| SignetError::Template(format!("default_witness_commitment: {e}")))?;
    let mut txdata = vec![];
    for tx in field("transactions")?
        .as_array()
        .ok_or_else(|| SignetError::Template("transactions is not a list".into()))?
    {
        let data = tx
            .get("data")
            .and_then(Value::as_str)
            .ok_or_else(|| SignetError::Template("a transaction without data".into()))?;
        txdata.push(
            deserialize_hex::<Transaction>(data)
                .map_err(|e| SignetError::Template(format!("transaction: {e}")))?,
        );
    }
    let tag = PushBytesBuf::try_from(tag.to_vec())
        .map_err(|_| SignetError::Template("tag too long".into()))?;
    let coinbase = Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            // BIP34: the height first.
            script_sig: Builder::new()
                .push_int(height as i64)
                .push_slice(tag)
                .into_script(),
            sequence: Sequence::MAX,
            witness: Witness::from_slice(&[[0u8; 32]]),
        }],
        output: vec![
            TxOut {
                value: reward,
                script_pubkey: payout.to_owned(),
            },
            TxOut {
                value: Amount::ZERO,
                script_pubkey: commitment,
            },
        ],
    };
    txdata.insert(0, coinbase);
    let mut block = Block {
        header: block::Header {
            version: block::Version::from_consensus(version),
            prev_blockhash: prev,
            merkle_root: TxMerkleNode::all_zeros(),
            time,
            bits: CompactTarget::from_consensus(bits),
            nonce: 0,
        },
        txdata,
    };
    block.header.merkle_root = block.compute_merkle_root().ok_or(SignetError::NoCoinbase)?;
    Ok(block)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn template() -> Value {
        let commitment = {
            let mut s = vec![0x6a, 0x24, 0xaa, 0x21, 0xa9, 0xed];
            s.extend([7u8; 32]);
            hex::encode(s)
        };
        json!({
            "height": 5,
            "version": 0x2000_0000u32,
            "previousblockhash": "00".repeat(32),
            "bits": "207fffff",
            "curtime": 1_700_000_000u32,
            "coinbasevalue": 5_000_000_000u64,
            "default_witness_commitment": commitment,
            "transactions": [],
        })
    }

    #[test]
    fn a_signed_block_carries_a_solution_that_verifies_against_the_challenge() {
        let signer = SignetSigner::from_seed(b"test network");
        let mut block = block_from_template(&template(), &signer.challenge(), b"t").unwrap();
        signer.sign(&mut block).unwrap();
        let (to_spend, to_sign) = signet_txs(&block, &signer.challenge()).unwrap();
        assert_eq!(to_sign.input[0].witness.len(), 2, "signature and key");
        // The solution verifies as bitcoind verifies it: the P2WPKH spend of to_spend.
        let sighash = SighashCache::new(&to_sign)
            .p2wpkh_signature_hash(0, &signer.challenge(), Amount::ZERO, EcdsaSighashType::All)
            .unwrap();
        let sig = bitcoin::ecdsa::Signature::from_slice(&to_sign.input[0].witness[0]).unwrap();
        let secp = Secp256k1::verification_only();
        secp.verify_ecdsa(
            &Message::from_digest(sighash.to_byte_array()),
            &sig.signature,
            &signer.public.0,
        )
        .unwrap();
        assert_eq!(
            to_sign.input[0].previous_output.txid,
            to_spend.compute_txid()
        );
        // Signing again replaces the solution: still one header push.
        signer.sign(&mut block).unwrap();
        let script = &block.txdata[0].output[1].script_pubkey;
        let headers = script
            .instructions()
            .filter(|i| {
                matches!(i, Ok(Instruction::PushBytes(p)) if p.as_bytes().starts_with(&SIGNET_HEADER))
            })
            .count();
        assert_eq!(headers, 1);
        assert!(block.check_merkle_root());
    }

    #[test]
    fn the_message_ignores_the_nonce_and_the_solution_but_not_the_time() {
        let signer = SignetSigner::from_seed(b"test network");
        let mut block = block_from_template(&template(), &signer.challenge(), b"t").unwrap();
        signer.sign(&mut block).unwrap();
        let (spend_a, _) = signet_txs(&block, &signer.challenge()).unwrap();
        block.header.nonce = 12345;
        let (spend_b, _) = signet_txs(&block, &signer.challenge()).unwrap();
        assert_eq!(spend_a, spend_b, "the nonce is not signed");
        block.header.time += 1;
        let (spend_c, _) = signet_txs(&block, &signer.challenge()).unwrap();
        assert_ne!(spend_a, spend_c, "the time is signed");
    }

    #[test]
    fn a_solution_with_trailing_bytes_is_refused() {
        let signer = SignetSigner::from_seed(b"test network");
        let mut block = block_from_template(&template(), &signer.challenge(), b"t").unwrap();
        set_solution(&mut block, &[0, 0, 9]).unwrap();
        assert!(matches!(
            signet_txs(&block, &signer.challenge()),
            Err(SignetError::BadSolution(_))
        ));
    }

    #[test]
    fn the_two_compression_hash_is_the_block_hash() {
        let signer = SignetSigner::from_seed(b"test network");
        let mut block = block_from_template(&template(), &signer.challenge(), b"t").unwrap();
        block.header.nonce = 0xdead_beef;
        let bytes = serialize(&block.header);
        let (mut inner, mut outer) = tail_blocks(&bytes);
        let state = double_hash_state(&midstate(&bytes), 0xdead_beef, &mut inner, &mut outer);
        assert_eq!(
            BlockHash::from_byte_array(state_bytes(&state)),
            block.block_hash()
        );
    }

    #[test]
    fn grinding_meets_the_target() {
        let signer = SignetSigner::from_seed(b"test network");
        let mut block = block_from_template(&template(), &signer.challenge(), b"t").unwrap();
        signer.sign(&mut block).unwrap();
        grind(&mut block.header).unwrap();
        block.header.validate_pow(block.header.target()).unwrap();
    }

    #[test]
    fn the_magic_is_the_first_bytes_of_the_challenges_double_hash() {
        // The default signet's challenge and magic (0a03cf40), as bitcoind derives them.
        let challenge = ScriptBuf::from_hex("512103ad5e0edad18cb1f0fc0d28a3d4f1f3e445640337489abb10404f2d1e086be430210359ef5021964fe22d6f8e05b2463c9540ce96883fe3b278760f048f5189f2e6c452ae").unwrap();
        assert_eq!(magic(&challenge), [0x0a, 0x03, 0xcf, 0x40]);
    }
}
