//! The one place where the channel state machine meets the transaction builders of
//! [`crate::tx`]: from a channel state to U_n, SE_n, PTLC outputs and their sighashes.
//!
//! Keeping this seam small means a change of transaction format touches this file only.

use bitcoin::secp256k1::{Keypair, Secp256k1};
use bitcoin::taproot::TapLeafHash;
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut};

use crate::crypto::adaptor::AdaptorPoint;
use crate::crypto::keys::{PublicKey, SecretKey};
use crate::tx::update::UpdateOutput;
use crate::tx::{
    ChannelKeys, Claim, Funding, Party, Ptlc, PtlcExpiry, Settlement, SettlementTerms,
    SpentChannel, TxError, Update,
};

use super::channel::{ChannelParams, PtlcRecord, StateBody};

/// The funding output of the channel.
pub(crate) fn funding(params: &ChannelParams) -> Funding {
    let keys = ChannelKeys::new(params.key_a.into(), params.key_s.into());
    Funding::new(keys, Amount::from_sat(params.capacity_sat))
}

/// The script a party's settlement balance and PTLC claims pay to: key-path P2TR.
pub(crate) fn payout_script(key: &PublicKey) -> ScriptBuf {
    let secp = Secp256k1::verification_only();
    ScriptBuf::new_p2tr(&secp, (*key).into(), None)
}

/// The PTLC output of a PTLC record.
pub(crate) fn ptlc(params: &ChannelParams, record: &PtlcRecord) -> Ptlc {
    ptlc_output(
        params,
        record.offerer,
        record.point,
        record.amount_sat,
        record.expiry,
    )
}

/// The PTLC output offered by `offerer` to the other party.
pub(crate) fn ptlc_output(
    params: &ChannelParams,
    offerer: Party,
    point: AdaptorPoint,
    amount_sat: u64,
    expiry: PtlcExpiry,
) -> Ptlc {
    let (offerer, payee) = match offerer {
        Party::A => (params.key_a, params.key_s),
        Party::S => (params.key_s, params.key_a),
    };
    Ptlc {
        offerer: offerer.into(),
        payee: payee.into(),
        point,
        amount: Amount::from_sat(amount_sat),
        expiry,
    }
}

/// The claim of a PTLC output by its payee, paying the payee's payout key.
pub(crate) fn claim(params: &ChannelParams, ptlc: &Ptlc) -> Result<Claim, TxError> {
    let payee_payout = if ptlc.payee == params.key_a.into() {
        params.payout_a
    } else {
        params.payout_s
    };
    Claim::new(ptlc, payout_script(&payee_payout))
}

/// SE_n of a state.
pub(crate) fn settlement(params: &ChannelParams, body: &StateBody) -> Result<Settlement, TxError> {
    let terms = SettlementTerms {
        a: TxOut {
            value: Amount::from_sat(body.to_a),
            script_pubkey: payout_script(&params.payout_a),
        },
        s: TxOut {
            value: Amount::from_sat(body.to_s),
            script_pubkey: payout_script(&params.payout_s),
        },
        ptlcs: body.ptlcs.iter().map(|p| ptlc(params, p)).collect(),
    };
    Settlement::new(&funding(params), params.shared_delay, terms)
}

/// U_n of a state.
pub(crate) fn update(
    params: &ChannelParams,
    body: &StateBody,
) -> Result<(Update, Settlement), TxError> {
    let state =
        u32::try_from(body.number).map_err(|_| TxError::StateTooLarge { state: body.number })?;
    let settlement = settlement(params, body)?;
    let update = Update::new(&funding(params), state, &settlement)?;
    Ok((update, settlement))
}

/// What each party signs for state n.
pub(crate) fn update_sighash(
    params: &ChannelParams,
    body: &StateBody,
) -> Result<[u8; 32], TxError> {
    use bitcoin::hashes::Hash as _;
    Ok(update(params, body)?.0.sighash().to_byte_array())
}

/// The settlement leaf hash of a state: kept per signed state to spend a stale update.
pub(crate) fn settlement_leaf_hash(
    params: &ChannelParams,
    body: &StateBody,
) -> Result<[u8; 32], TxError> {
    use bitcoin::hashes::Hash as _;
    Ok(settlement(params, body)?.leaf_hash().to_byte_array())
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
    params: &ChannelParams,
    body: &StateBody,
    sig_a: &crate::crypto::keys::Signature,
    sig_s: &crate::crypto::keys::Signature,
    spent: &Spent,
) -> Result<Transaction, TxError> {
    use bitcoin::hashes::Hash as _;
    let funding = funding(params);
    let (update, _) = update(params, body)?;
    let (a, s) = ((*sig_a).into(), (*sig_s).into());
    match spent {
        Spent::Funding(outpoint) => update.bind(
            &SpentChannel::Funding {
                outpoint: *outpoint,
                funding: &funding,
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
                &funding,
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
    params: &ChannelParams,
    body: &StateBody,
    outpoint: OutPoint,
) -> Result<Transaction, TxError> {
    let (update, settlement) = update(params, body)?;
    settlement.bind(outpoint, update.output())
}

/// A libsecp256k1 keypair for the builders that take one.
pub(crate) fn keypair(key: &SecretKey) -> Keypair {
    key.to_keypair(&Secp256k1::signing_only())
}
