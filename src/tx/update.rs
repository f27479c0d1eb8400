//! The update transaction U_n: moves the channel to state n, replacing any older state.
//!
//! - version 3, nLockTime TL(n) = 500 000 000 + n, one input with nSequence `0xfffffffd`;
//! - output 0, the *update output* of state n (value: the channel's whole value), a P2TR
//!   output with the unspendable internal key H and two leaves:
//!   - update leaf `<TL(n+1)> CLTV DROP <0x01‖P_A> CHECKSIGVERIFY <0x01‖P_S> CHECKSIG`:
//!     only an update with nLockTime ≥ TL(n+1), i.e. a later state, can spend it;
//!   - settlement leaf of SE_n ([`crate::tx::settlement`]), after the shared delay;
//! - output 1, a zero-value P2A anchor; U_n pays no fee.
//!
//! Both parties sign with `SIGHASH_ALL|ANYPREVOUTANYSCRIPT` (0xc1). The signed message
//! commits to neither the outpoint, the amount, the scriptPubKey nor the leaf, so one pair
//! of signatures lets U_n spend the funding output or the update output of any state k < n:
//! [`Update::bind`] picks the input and the witness, the signatures stay the same.
//!
//! To spend the update output of state k, the control block needs the settlement leaf hash
//! of state k (the sibling in the tree). It is not on chain, so a party keeps the 32-byte
//! [`Settlement::leaf_hash`] of every state it signed and
//! hands it to [`UpdateOutput::new`] when a stale update appears.
//!
//! ```
//! use asyncpay::tx::{update::UpdateOutput, ChannelKeys, Funding, Settlement, SettlementTerms, SpentChannel, Update};
//! use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
//! use bitcoin::{Amount, OutPoint, TxOut, ScriptBuf};
//!
//! let secp = Secp256k1::new();
//! let key = |b| Keypair::from_secret_key(&secp, &SecretKey::from_slice(&[b; 32]).unwrap());
//! let (a, s) = (key(1), key(2));
//! let keys = ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0);
//! let funding = Funding::new(keys, Amount::from_sat(100_000));
//! let pay = |sats, k: &Keypair| TxOut {
//!     value: Amount::from_sat(sats),
//!     script_pubkey: ScriptBuf::new_p2tr(&secp, k.x_only_public_key().0, None),
//! };
//! let terms = SettlementTerms { a: pay(60_000, &a), s: pay(40_000, &s), ptlcs: vec![] };
//! let se1 = Settlement::new(&funding, 144, terms)?;
//! let u1 = Update::new(&funding, 1, &se1)?;
//! let (sig_a, sig_s) = (u1.sign(&secp, &a, &[7; 32]), u1.sign(&secp, &s, &[8; 32]));
//! let tx = u1.bind(&SpentChannel::Funding { outpoint: OutPoint::null(), funding: &funding }, &sig_a, &sig_s)?;
//! assert_eq!(tx.input[0].witness.len(), 4);
//! # Ok::<(), asyncpay::tx::TxError>(())
//! ```
#![allow(non_snake_case)]

use bitcoin::hashes::Hash as _;
use bitcoin::key::XOnlyPublicKey;
use bitcoin::opcodes::all::{OP_CLTV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{schnorr, Keypair, Message, Secp256k1, Signing, Verification};
use bitcoin::taproot::{
    ControlBlock, LeafVersion, TapLeafHash, TapNodeHash, TaprootBuilder, TaprootMerkleBranch,
};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, TapSighash, Transaction, TxIn, TxOut, Witness,
};

use super::funding::{ChannelKeys, Funding, Party};
use super::settlement::Settlement;
use super::{p2a_output, state_locktime, unspendable_internal_key, TxError, TRUC_VERSION};
use crate::crypto::bip118::{sighash, ApoSighashType, LeafContext, SpentOutputs};

/// The hash type of update signatures: ALL|ANYPREVOUTANYSCRIPT.
pub const UPDATE_SIGHASH: ApoSighashType = ApoSighashType::AllPlusAnyPrevoutAnyScript;

/// nSequence of an update's input: non-final so that nLockTime is enforced.
pub const UPDATE_SEQUENCE: Sequence = Sequence(0xffff_fffd);

/// `<TL(n+1)> CLTV DROP <0x01‖P_A> CHECKSIGVERIFY <0x01‖P_S> CHECKSIG`: the update leaf of
/// state n's update output.
pub fn update_leaf(keys: &ChannelKeys, state: u32) -> Result<ScriptBuf, TxError> {
    let next = state
        .checked_add(1)
        .ok_or(TxError::StateTooLarge {
            state: u64::from(state) + 1,
        })
        .and_then(state_locktime)?;
    let lock = Builder::new()
        .push_int(i64::from(next.to_consensus_u32()))
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .into_script();
    let mut script = lock.into_bytes();
    script.extend_from_slice(keys.update_checks().into_script().as_bytes());
    Ok(ScriptBuf::from_bytes(script))
}

/// The update output of state n: update leaf and settlement leaf under the key H.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateOutput {
    state: u32,
    value: Amount,
    update_leaf: ScriptBuf,
    settlement_leaf_hash: TapLeafHash,
    script_pubkey: ScriptBuf,
    parity: bitcoin::key::Parity,
}

impl UpdateOutput {
    /// The update output of `state`, from the settlement leaf hash of that state (all a party
    /// needs to keep per state; see the module docs).
    pub fn new(
        funding: &Funding,
        state: u32,
        settlement_leaf_hash: TapLeafHash,
    ) -> Result<Self, TxError> {
        let secp = super::secp();
        let update_leaf = update_leaf(funding.keys(), state)?;
        let info = TaprootBuilder::new()
            .add_leaf(1, update_leaf.clone())
            .expect("depth 1 leaf")
            .add_hidden_node(1, TapNodeHash::from(settlement_leaf_hash))
            .expect("depth 1 node")
            .finalize(secp, unspendable_internal_key())
            .expect("two nodes at depth 1 complete the tree");
        Ok(UpdateOutput {
            state,
            value: funding.value(),
            update_leaf,
            settlement_leaf_hash,
            script_pubkey: ScriptBuf::new_p2tr_tweaked(info.output_key()),
            parity: info.output_key_parity(),
        })
    }

    /// The state this output belongs to.
    pub fn state(&self) -> u32 {
        self.state
    }

    /// The output (value: the channel's whole value).
    pub fn txout(&self) -> TxOut {
        TxOut {
            value: self.value,
            script_pubkey: self.script_pubkey.clone(),
        }
    }

    /// The update leaf, spent by a later update.
    pub fn update_leaf(&self) -> &ScriptBuf {
        &self.update_leaf
    }

    /// The settlement leaf hash of this state.
    pub fn settlement_leaf_hash(&self) -> TapLeafHash {
        self.settlement_leaf_hash
    }

    fn control_block(&self, sibling: [u8; 32]) -> ControlBlock {
        ControlBlock {
            leaf_version: LeafVersion::TapScript,
            output_key_parity: self.parity,
            internal_key: unspendable_internal_key(),
            merkle_branch: TaprootMerkleBranch::decode(&sibling).expect("one 32-byte node"),
        }
    }

    /// Control block for the update leaf (sibling: the settlement leaf).
    pub fn update_control_block(&self) -> ControlBlock {
        self.control_block(self.settlement_leaf_hash.to_byte_array())
    }

    /// Control block for the settlement leaf (sibling: the update leaf).
    pub fn settlement_control_block(&self) -> ControlBlock {
        let update = TapLeafHash::from_script(&self.update_leaf, LeafVersion::TapScript);
        self.control_block(update.to_byte_array())
    }
}

/// The output an update spends, with what its witness needs.
#[derive(Debug, Clone, Copy)]
pub enum SpentChannel<'a> {
    /// The funding output.
    Funding {
        /// Where it is.
        outpoint: OutPoint,
        /// The channel's funding output.
        funding: &'a Funding,
    },
    /// The update output of an older state, e.g. a stale update the counterparty published.
    Update {
        /// Where it is.
        outpoint: OutPoint,
        /// The spent state's update output.
        output: &'a UpdateOutput,
    },
}

/// U_n, unbound: its input's outpoint is filled in by [`Update::bind`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Update {
    state: u32,
    keys: ChannelKeys,
    tx: Transaction,
    output: UpdateOutput,
}

impl Update {
    /// U_n for `state` n, whose update output settles to `settlement` (SE_n).
    pub fn new(funding: &Funding, state: u32, settlement: &Settlement) -> Result<Self, TxError> {
        let output = UpdateOutput::new(funding, state, settlement.leaf_hash())?;
        let tx = Transaction {
            version: Version(TRUC_VERSION),
            lock_time: state_locktime(state)?,
            input: vec![TxIn {
                previous_output: OutPoint::null(),
                script_sig: ScriptBuf::new(),
                sequence: UPDATE_SEQUENCE,
                witness: Witness::new(),
            }],
            output: vec![output.txout(), p2a_output(Amount::ZERO)],
        };
        Ok(Update {
            state,
            keys: *funding.keys(),
            tx,
            output,
        })
    }

    /// n.
    pub fn state(&self) -> u32 {
        self.state
    }

    /// The unbound, unsigned transaction (null outpoint, empty witness).
    pub fn unsigned_tx(&self) -> &Transaction {
        &self.tx
    }

    /// The update output (output 0) of this state.
    pub fn output(&self) -> &UpdateOutput {
        &self.output
    }

    /// The BIP118 sighash both parties sign: the same for every outpoint U_n is bound to.
    pub fn sighash(&self) -> TapSighash {
        // ANYPREVOUTANYSCRIPT signs no spent output data and no leaf: any leaf gives the
        // same message.
        sighash(
            &self.tx,
            0,
            SpentOutputs::Unknown,
            UPDATE_SIGHASH,
            &LeafContext::new(&self.output.update_leaf),
            None,
        )
        .expect("input 0 exists and APOAS needs no spent outputs")
    }

    /// Signs U_n with `keypair` (BIP340 with the caller's auxiliary randomness).
    pub fn sign<C: Signing>(
        &self,
        secp: &Secp256k1<C>,
        keypair: &Keypair,
        aux_rand: &[u8; 32],
    ) -> schnorr::Signature {
        let msg = Message::from_digest(self.sighash().to_byte_array());
        secp.sign_schnorr_with_aux_rand(&msg, keypair, aux_rand)
    }

    /// Checks `party`'s signature on U_n.
    pub fn verify<C: Verification>(
        &self,
        secp: &Secp256k1<C>,
        party: Party,
        signature: &schnorr::Signature,
    ) -> Result<(), TxError> {
        let msg = Message::from_digest(self.sighash().to_byte_array());
        let key: XOnlyPublicKey = self.keys.of(party);
        secp.verify_schnorr(signature, &msg, &key)
            .map_err(|_| TxError::InvalidSignature {
                party: match party {
                    Party::A => "A's update",
                    Party::S => "S's update",
                },
            })
    }

    /// The fully signed U_n spending `spent`. Both signatures are checked first.
    pub fn bind(
        &self,
        spent: &SpentChannel<'_>,
        sig_a: &schnorr::Signature,
        sig_s: &schnorr::Signature,
    ) -> Result<Transaction, TxError> {
        let secp = super::secp();
        self.verify(secp, Party::A, sig_a)?;
        self.verify(secp, Party::S, sig_s)?;
        let (outpoint, leaf, control) = match spent {
            SpentChannel::Funding { outpoint, funding } => (
                *outpoint,
                funding.update_leaf().clone(),
                funding.update_control_block(),
            ),
            SpentChannel::Update { outpoint, output } => {
                if output.state() >= self.state {
                    return Err(TxError::NotNewer {
                        state: self.state,
                        spent: output.state(),
                    });
                }
                (
                    *outpoint,
                    output.update_leaf().clone(),
                    output.update_control_block(),
                )
            }
        };
        let with_type = |sig: &schnorr::Signature| {
            let mut bytes = sig.serialize().to_vec();
            bytes.push(UPDATE_SIGHASH.to_u8());
            bytes
        };
        let mut tx = self.tx.clone();
        tx.input[0].previous_output = outpoint;
        let mut witness = Witness::new();
        witness.push(with_type(sig_s));
        witness.push(with_type(sig_a));
        witness.push(leaf.as_bytes());
        witness.push(control.serialize());
        tx.input[0].witness = witness;
        Ok(tx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx::settlement::SettlementTerms;

    use crate::tx::test_keypair as kp;

    fn fixture() -> (Funding, Settlement, Keypair, Keypair) {
        let (a, s) = (kp(1), kp(2));
        let keys = ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0);
        let funding = Funding::new(keys, Amount::from_sat(100_000));
        let pay = |sats, k: &Keypair| TxOut {
            value: Amount::from_sat(sats),
            script_pubkey: ScriptBuf::new_p2tr(&Secp256k1::new(), k.x_only_public_key().0, None),
        };
        let terms = SettlementTerms {
            a: pay(70_000, &a),
            s: pay(30_000, &s),
            ptlcs: vec![],
        };
        let se = Settlement::new(&funding, 10, terms).expect("settlement");
        (funding, se, a, s)
    }

    #[test]
    fn update_leaf_locks_to_the_next_state() {
        let (funding, _, _, _) = fixture();
        let leaf = update_leaf(funding.keys(), 4).unwrap();
        // push of 500_000_005 as a 4-byte script number, CLTV, DROP, then the funding leaf.
        assert_eq!(
            &leaf.as_bytes()[..7],
            &[0x04, 0x05, 0x65, 0xcd, 0x1d, 0xb1, 0x75]
        );
        assert_eq!(&leaf.as_bytes()[7..], funding.update_leaf().as_bytes());
        assert!(update_leaf(funding.keys(), crate::tx::MAX_STATE).is_err());
    }

    #[test]
    fn shape_and_sighash_independent_of_binding() {
        let (funding, se, a, s) = fixture();
        let u = Update::new(&funding, 3, &se).unwrap();
        let tx = u.unsigned_tx();
        assert_eq!(tx.version, Version(3));
        assert_eq!(tx.lock_time.to_consensus_u32(), 500_000_003);
        assert_eq!(tx.output[0].value, funding.value());
        assert_eq!(tx.output[1].script_pubkey, ScriptBuf::new_p2a());
        assert_eq!(tx.output[1].value, Amount::ZERO);

        let secp = Secp256k1::new();
        let (sa, ss) = (u.sign(&secp, &a, &[1; 32]), u.sign(&secp, &s, &[2; 32]));
        let bound_funding = u
            .bind(
                &SpentChannel::Funding {
                    outpoint: OutPoint::null(),
                    funding: &funding,
                },
                &sa,
                &ss,
            )
            .unwrap();
        let older = Update::new(&funding, 1, &se).unwrap();
        let bound_update = u
            .bind(
                &SpentChannel::Update {
                    outpoint: OutPoint {
                        txid: bitcoin::Txid::all_zeros(),
                        vout: 0,
                    },
                    output: older.output(),
                },
                &sa,
                &ss,
            )
            .unwrap();
        // Same signatures, different leaves: APOAS does not care.
        assert_eq!(
            bound_funding.input[0].witness[0],
            bound_update.input[0].witness[0]
        );
        assert_ne!(
            bound_funding.input[0].witness[2],
            bound_update.input[0].witness[2]
        );
        assert_eq!(bound_funding.input[0].witness[0].len(), 65);
        assert_eq!(bound_funding.input[0].witness[0][64], 0xc1);
    }

    #[test]
    fn refuses_bad_signatures_and_older_states() {
        let (funding, se, a, s) = fixture();
        let secp = Secp256k1::new();
        let u = Update::new(&funding, 2, &se).unwrap();
        let (sa, ss) = (u.sign(&secp, &a, &[1; 32]), u.sign(&secp, &s, &[2; 32]));
        let spent = SpentChannel::Funding {
            outpoint: OutPoint::null(),
            funding: &funding,
        };
        assert!(matches!(
            u.bind(&spent, &ss, &sa),
            Err(TxError::InvalidSignature { .. })
        ));
        let newer = Update::new(&funding, 2, &se).unwrap();
        let spent = SpentChannel::Update {
            outpoint: OutPoint::null(),
            output: newer.output(),
        };
        assert!(matches!(
            u.bind(&spent, &sa, &ss),
            Err(TxError::NotNewer { state: 2, spent: 2 })
        ));
    }

    #[test]
    fn control_blocks_commit_to_the_output_key() {
        let (funding, se, _, _) = fixture();
        let u = Update::new(&funding, 5, &se).unwrap();
        let out = u.output();
        let key = out.txout().script_pubkey.as_bytes()[2..].to_vec();
        let key = bitcoin::key::TweakedPublicKey::dangerous_assume_tweaked(
            XOnlyPublicKey::from_slice(&key).unwrap(),
        )
        .to_x_only_public_key();
        let secp = Secp256k1::verification_only();
        assert!(out.update_control_block().verify_taproot_commitment(
            &secp,
            key,
            out.update_leaf()
        ));
        assert!(out
            .settlement_control_block()
            .verify_taproot_commitment(&secp, key, se.leaf()));
        assert_eq!(out.update_control_block().size(), 65);
    }
}
