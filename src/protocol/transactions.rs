//! The one place where the channel state machine meets the transaction builders of
//! [`crate::tx`]: from a channel state to U_n, SE_n, PTLC outputs and their sighashes.
//!
//! Keeping this seam small means a change of transaction format touches this file only.

use bitcoin::secp256k1::{Keypair, XOnlyPublicKey};
use bitcoin::taproot::TapLeafHash;
use std::sync::Mutex;

use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut};

use crate::crypto::adaptor::AdaptorPoint;
use crate::crypto::keys::{verify_parsed, KeyError, PublicKey, SecretKey, Signature};
use crate::tx::update::UpdateOutput;
use crate::tx::{
    ChannelKeys, Claim, Funding, Party, Ptlc, PtlcExpiry, Settlement, SettlementTerms,
    SpentChannel, TxError, Update,
};

use super::channel::{ChannelParams, PtlcRecord, StateBody};

/// What the channel's transactions share, derived once from its parameters: the funding
/// output (a MuSig2 key aggregation and a taproot tweak) and both payout scripts (a tweak
/// each). Also remembers the digests of the last state it built, because one update asks
/// for the same state's sighash and settlement leaf hash several times.
pub(crate) struct ChannelTxs {
    params: ChannelParams,
    /// The two channel keys in libsecp256k1's form, converted once: every PTLC output and
    /// every verification of a state's signature takes them.
    xonly_a: XOnlyPublicKey,
    xonly_s: XOnlyPublicKey,
    funding: Funding,
    payout_a: ScriptBuf,
    payout_s: ScriptBuf,
    last: Mutex<Option<(StateBody, StateDigests)>>,
}

/// The two digests of a state each party keeps or signs.
#[derive(Clone, Copy)]
pub(crate) struct StateDigests {
    /// What each party signs for the state: U_n's APOAS sighash.
    pub(crate) sighash: [u8; 32],
    /// SE_n's leaf hash, kept per signed state to spend a stale update.
    pub(crate) settlement_leaf_hash: [u8; 32],
}

impl ChannelTxs {
    pub(crate) fn new(params: &ChannelParams) -> Self {
        let (xonly_a, xonly_s) = (params.key_a.into(), params.key_s.into());
        let keys = ChannelKeys::new(xonly_a, xonly_s);
        ChannelTxs {
            params: params.clone(),
            xonly_a,
            xonly_s,
            funding: Funding::new(keys, Amount::from_sat(params.capacity_sat)),
            payout_a: payout_script(&params.payout_a),
            payout_s: payout_script(&params.payout_s),
            last: Mutex::new(None),
        }
    }

    /// The funding output of the channel.
    pub(crate) fn funding(&self) -> &Funding {
        &self.funding
    }

    /// The PTLC output of a PTLC record.
    pub(crate) fn ptlc(&self, record: &PtlcRecord) -> Ptlc {
        self.ptlc_output(
            record.offerer,
            record.point,
            record.amount_sat,
            record.expiry,
        )
    }

    /// The PTLC output offered by `offerer` to the other party.
    pub(crate) fn ptlc_output(
        &self,
        offerer: Party,
        point: AdaptorPoint,
        amount_sat: u64,
        expiry: PtlcExpiry,
    ) -> Ptlc {
        let (offerer, payee) = match offerer {
            Party::A => (self.xonly_a, self.xonly_s),
            Party::S => (self.xonly_s, self.xonly_a),
        };
        Ptlc {
            offerer,
            payee,
            point,
            amount: Amount::from_sat(amount_sat),
            expiry,
        }
    }

    /// Checks `party`'s signature on a digest (a state's sighash) against its channel key.
    pub(crate) fn verify(
        &self,
        party: Party,
        digest: &[u8; 32],
        signature: &Signature,
    ) -> Result<(), KeyError> {
        let key = match party {
            Party::A => &self.xonly_a,
            Party::S => &self.xonly_s,
        };
        verify_parsed(key, digest, signature)
    }

    /// The payout script of `party`.
    pub(crate) fn payout(&self, party: Party) -> &ScriptBuf {
        match party {
            Party::A => &self.payout_a,
            Party::S => &self.payout_s,
        }
    }

    /// The claim of a PTLC output by its payee, paying the payee's payout key.
    pub(crate) fn claim(&self, ptlc: &Ptlc) -> Result<Claim, TxError> {
        let payee = if ptlc.payee == self.xonly_a {
            Party::A
        } else {
            Party::S
        };
        Claim::new(ptlc, self.payout(payee).clone())
    }

    /// SE_n of a state.
    pub(crate) fn settlement(&self, body: &StateBody) -> Result<Settlement, TxError> {
        let terms = SettlementTerms {
            a: TxOut {
                value: Amount::from_sat(body.to_a),
                script_pubkey: self.payout_a.clone(),
            },
            s: TxOut {
                value: Amount::from_sat(body.to_s),
                script_pubkey: self.payout_s.clone(),
            },
            ptlcs: body.ptlcs.iter().map(|p| self.ptlc(p)).collect(),
        };
        Settlement::new(&self.funding, self.params.shared_delay, terms)
    }

    /// U_n of a state.
    pub(crate) fn update(&self, body: &StateBody) -> Result<(Update, Settlement), TxError> {
        let state = u32::try_from(body.number)
            .map_err(|_| TxError::StateTooLarge { state: body.number })?;
        let settlement = self.settlement(body)?;
        let update = Update::new(&self.funding, state, &settlement)?;
        Ok((update, settlement))
    }

    /// The sighash and settlement leaf hash of a state, built once per state.
    pub(crate) fn digests(&self, body: &StateBody) -> Result<StateDigests, TxError> {
        use bitcoin::hashes::Hash as _;
        let mut last = self
            .last
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some((cached, digests)) = last.as_ref() {
            if cached == body {
                return Ok(*digests);
            }
        }
        let (update, settlement) = self.update(body)?;
        let digests = StateDigests {
            sighash: update.sighash().to_byte_array(),
            settlement_leaf_hash: settlement.leaf_hash().to_byte_array(),
        };
        *last = Some((body.clone(), digests));
        Ok(digests)
    }

    /// What each party signs for state n.
    pub(crate) fn update_sighash(&self, body: &StateBody) -> Result<[u8; 32], TxError> {
        Ok(self.digests(body)?.sighash)
    }
}

impl ChannelTxs {
    /// The unsigned cooperative close of `body` (which holds no PTLCs) at `outpoint`: each
    /// balance to its payout script, `fee_sat` taken from `payer`'s. A balance below the dust
    /// limit gets no output and adds to the fee. `None` if `payer` cannot pay the fee.
    pub(crate) fn close(
        &self,
        body: &StateBody,
        payer: Party,
        fee_sat: u64,
        outpoint: OutPoint,
    ) -> Result<Option<Transaction>, TxError> {
        let (mut to_a, mut to_s) = (body.to_a, body.to_s);
        let balance = match payer {
            Party::A => &mut to_a,
            Party::S => &mut to_s,
        };
        let Some(left) = balance.checked_sub(fee_sat) else {
            return Ok(None);
        };
        *balance = left;
        let outputs = [(to_a, &self.payout_a), (to_s, &self.payout_s)]
            .into_iter()
            .map(|(value, script)| TxOut {
                value: Amount::from_sat(value),
                script_pubkey: script.clone(),
            })
            .filter(|out| out.value >= crate::tx::dust_limit(&out.script_pubkey))
            .collect();
        crate::tx::close::cooperative_close(&self.funding, outpoint, outputs).map(Some)
    }
}

/// The script a party's settlement balance and PTLC claims pay to: key-path P2TR.
pub(crate) fn payout_script(key: &PublicKey) -> ScriptBuf {
    ScriptBuf::new_p2tr(crate::tx::secp(), (*key).into(), None)
}

/// The output an update spends: the funding output, or the update output of an older state
/// (rebuilt from its settlement leaf hash).
pub(crate) enum Spent {
    /// The funding output.
    Funding(OutPoint),
    /// Output 0 of the update of `state`.
    Update {
        outpoint: OutPoint,
        state: u32,
        settlement_leaf_hash: [u8; 32],
    },
}

/// The fully signed U_n bound to `spent`.
pub(crate) fn signed_update(
    txs: &ChannelTxs,
    body: &StateBody,
    sig_a: &crate::crypto::keys::Signature,
    sig_s: &crate::crypto::keys::Signature,
    spent: &Spent,
) -> Result<Transaction, TxError> {
    use bitcoin::hashes::Hash as _;
    let funding = txs.funding();
    let (update, _) = txs.update(body)?;
    let (a, s) = ((*sig_a).into(), (*sig_s).into());
    match spent {
        Spent::Funding(outpoint) => update.bind(
            &SpentChannel::Funding {
                outpoint: *outpoint,
                funding,
            },
            &a,
            &s,
        ),
        Spent::Update {
            outpoint,
            state,
            settlement_leaf_hash,
        } => {
            let output = UpdateOutput::new(
                funding,
                *state,
                TapLeafHash::from_byte_array(*settlement_leaf_hash),
            )?;
            update.bind(
                &SpentChannel::Update {
                    outpoint: *outpoint,
                    output: &output,
                },
                &a,
                &s,
            )
        }
    }
}

/// SE_n spending the update output of its own state at `outpoint`.
pub(crate) fn bound_settlement(
    txs: &ChannelTxs,
    body: &StateBody,
    outpoint: OutPoint,
) -> Result<Transaction, TxError> {
    let (update, settlement) = txs.update(body)?;
    settlement.bind(outpoint, update.output())
}

/// A libsecp256k1 keypair for the builders that take one.
pub(crate) fn keypair(key: &SecretKey) -> Keypair {
    key.to_keypair(crate::tx::secp())
}
