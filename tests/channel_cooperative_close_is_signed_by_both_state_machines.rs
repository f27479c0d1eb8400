//! The cooperative close through the channel state machines: `Command::Close { fee_sat }` →
//! `CloseProposal` → `CloseAccept` → `CloseSigned`, both parties broadcasting the same MuSig2
//! key-path spend of the funding output with the last state's balances, the fee from the
//! proposer's. A close with PTLCs pending, or a fee the proposer cannot pay, is refused without
//! change; a forged aggregate signature is refused; a party crashed at every persist point of
//! the close resumes and the close completes without a MuSig2 nonce signing twice.

mod channel_support;

use anyhow::{bail, ensure, Context};
use asyncpay::crypto::keys::Signature;
use asyncpay::protocol::channel::{ChainEvent, ChannelError, Command, Event, Input, Phase};
use asyncpay::protocol::messages::{ChannelId, CloseSigned, Message};
use asyncpay::tx::{ChannelKeys, Funding, Party};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, ScriptBuf, Transaction};
use channel_support::*;

const FEE: u64 = 1_000;
const PAID: u64 = 40_000;

fn funding() -> Funding {
    let key = |p| bitcoin::XOnlyPublicKey::from(secrets(p).key.public_key());
    Funding::new(
        ChannelKeys::new(key(Party::A), key(Party::S)),
        Amount::from_sat(CAPACITY),
    )
}

fn payout_script(p: Party) -> ScriptBuf {
    ScriptBuf::new_p2tr(
        &bitcoin::secp256k1::Secp256k1::verification_only(),
        payout(p).into(),
        None,
    )
}

/// Opens and makes one transfer of `PAID` from A to S.
fn transferred<P: CrashPolicy>(net: &mut Net<P>) -> anyhow::Result<()> {
    net.open()?;
    net.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: false,
        }),
    )?;
    net.pump()?;
    Ok(())
}

/// The one close both parties broadcast, checked against the funding output key.
fn check_close<P: CrashPolicy>(net: &Net<P>, proposer: Party) -> anyhow::Result<Transaction> {
    let a = net.a.broadcasts.last().context("A broadcast the close")?;
    let s = net.s.broadcasts.last().context("S broadcast the close")?;
    ensure!(a == s, "both broadcast the same close");
    let tx = a.clone();
    ensure!(tx.input.len() == 1 && tx.input[0].previous_output == funding_outpoint());
    let (mut to_a, mut to_s) = (CAPACITY - PUSH - PAID, PUSH + PAID);
    match proposer {
        Party::A => to_a -= FEE,
        Party::S => to_s -= FEE,
    }
    ensure!(tx.output.len() == 2);
    ensure!(tx.output[0].value == Amount::from_sat(to_a));
    ensure!(tx.output[0].script_pubkey == payout_script(Party::A));
    ensure!(tx.output[1].value == Amount::from_sat(to_s));
    ensure!(tx.output[1].script_pubkey == payout_script(Party::S));
    // The aggregate signature is a valid key-path signature for the funding output.
    let funding = funding();
    let sighash = SighashCache::new(&tx).taproot_key_spend_signature_hash(
        0,
        &Prevouts::All(&[funding.txout()]),
        TapSighashType::Default,
    )?;
    let witness = tx.input[0].witness.nth(0).context("witness")?;
    let sig = bitcoin::secp256k1::schnorr::Signature::from_slice(witness)?;
    bitcoin::secp256k1::Secp256k1::verification_only().verify_schnorr(
        &sig,
        &bitcoin::secp256k1::Message::from_digest(*sighash.as_ref()),
        &funding.spend_info().output_key().to_x_only_public_key(),
    )?;
    for party in [Party::A, Party::S] {
        ensure!(net.snapshot(party).phase() == Phase::Closing);
        let txid = tx.compute_txid();
        ensure!(net
            .node_ref(party)
            .events
            .contains(&Event::CloseSigned { txid }));
    }
    Ok(tx)
}

#[test]
fn a_proposes_and_both_broadcast_the_signed_close_which_then_confirms() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    transferred(&mut net)?;
    net.input(Party::A, Input::Command(Command::Close { fee_sat: FEE }))?;
    // No update while the close is under way.
    assert!(matches!(
        net.input(
            Party::A,
            Input::Command(Command::Transfer {
                amount_sat: 1,
                withhold: false
            })
        ),
        Err(ChannelError::Unexpected { .. })
    ));
    net.pump()?;
    let tx = check_close(&net, Party::A)?;
    for party in [Party::A, Party::S] {
        net.input(
            party,
            Input::Chain(ChainEvent::Spend {
                tx: tx.clone(),
                confirmed_at: Some(HEIGHT + 3),
            }),
        )?;
        assert_eq!(net.snapshot(party).phase(), Phase::Closed);
        assert!(net
            .node_ref(party)
            .events
            .contains(&Event::ClosedCooperatively {
                txid: tx.compute_txid()
            }));
    }
    Ok(())
}

#[test]
fn s_proposes_and_pays_the_fee() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    transferred(&mut net)?;
    net.input(Party::S, Input::Command(Command::Close { fee_sat: FEE }))?;
    net.pump()?;
    check_close(&net, Party::S)?;
    Ok(())
}

#[test]
fn pending_ptlcs_unpayable_fees_and_forged_signatures_are_refused() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    transferred(&mut net)?;
    let before = net.snapshot(Party::S).clone();
    let balance = before.complete.as_ref().context("state")?.body.to_s;
    assert!(matches!(
        net.input(
            Party::S,
            Input::Command(Command::Close {
                fee_sat: balance + 1
            })
        ),
        Err(ChannelError::InsufficientBalance { .. })
    ));
    assert_eq!(net.snapshot(Party::S), &before);

    // A forged aggregate signature is refused by the acceptor.
    net.input(Party::A, Input::Command(Command::Close { fee_sat: FEE }))?;
    let proposal = net.to_s.pop_front().context("proposal")?;
    net.s
        .channel
        .as_mut()
        .context("S")?
        .handle(Input::Message(proposal))?;
    let forged = Message::CloseSigned(CloseSigned {
        channel_id: ChannelId([7; 32]),
        signature: Signature::from_bytes({
            let mut b = [0u8; 64];
            b[..32].copy_from_slice(&secrets(Party::A).key.public_key().to_xonly_bytes());
            b[63] = 1;
            b
        })?,
    });
    let s_before = net.s.channel().snapshot().clone();
    assert!(matches!(
        net.s
            .channel
            .as_mut()
            .context("S")?
            .handle(Input::Message(forged)),
        Err(ChannelError::InvalidSignature {
            what: "close_signed",
            ..
        })
    ));
    assert_eq!(net.s.channel().snapshot(), &s_before);

    let mut with_ptlc = Net::new(Never);
    with_ptlc.open()?;
    with_ptlc.input(
        Party::A,
        Input::Command(Command::AddPtlc {
            amount_sat: 10_000,
            point: secret(3).adaptor_point(),
            expiry: HEIGHT + 2 * u32::from(DELAY) + 10,
        }),
    )?;
    with_ptlc.pump()?;
    let before = with_ptlc.snapshot(Party::A).clone();
    assert!(matches!(
        with_ptlc.input(Party::A, Input::Command(Command::Close { fee_sat: FEE })),
        Err(ChannelError::PtlcsPending { count: 1 })
    ));
    assert_eq!(with_ptlc.snapshot(Party::A), &before);
    Ok(())
}

struct CrashAt {
    party: Party,
    index: usize,
}

impl CrashPolicy for CrashAt {
    fn crash(&mut self, party: Party, index: usize) -> bool {
        party == self.party && index == self.index
    }
}

fn close_run<P: CrashPolicy>(policy: P) -> anyhow::Result<Net<P>> {
    let mut net = Net::new(policy);
    transferred(&mut net)?;
    net.input(Party::A, Input::Command(Command::Close { fee_sat: FEE }))?;
    for _ in 0..20 {
        net.pump()?;
        let done = [Party::A, Party::S].iter().all(|p| {
            net.snapshot(*p)
                .closing()
                .is_some_and(|c| c.signature().is_some())
        });
        if done {
            return Ok(net);
        }
        net.reconnect()?;
    }
    bail!("the close never completed")
}

#[test]
fn a_crash_at_every_persist_point_of_the_close_still_closes() -> anyhow::Result<()> {
    let clean = close_run(Never)?;
    check_close(&clean, Party::A)?;
    let mut upto = Net::new(Never);
    transferred(&mut upto)?;
    let mut crashed = 0;
    for (party, first, last) in [
        (Party::A, upto.a.persists, clean.a.persists),
        (Party::S, upto.s.persists, clean.s.persists),
    ] {
        assert!(last > first, "{party:?} persists during the close");
        for index in first + 1..=last {
            let context = || format!("crash of {party:?} at persist {index}");
            let net = close_run(CrashAt { party, index }).with_context(context)?;
            // A crash may cost a broadcast, which the driver repeats from the snapshot; the
            // signature both hold is the same.
            let (a, s) = (net.snapshot(Party::A), net.snapshot(Party::S));
            let sig =
                |c: &asyncpay::protocol::channel::Snapshot| c.closing().and_then(|c| c.signature());
            ensure!(sig(a).is_some() && sig(a) == sig(s), "{}", context());
            crashed += net.crashes;
        }
    }
    assert!(crashed >= 3, "crashes happened: {crashed}");
    Ok(())
}
