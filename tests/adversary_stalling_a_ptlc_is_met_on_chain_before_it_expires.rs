//! A byzantine peer stalls a PTLC, hoping the honest side waits until it is too late.
//!
//! - The receiver knows the secret and proposes the fulfilment; the offerer never answers.
//!   The receiver publishes its latest state by itself once only shared_delay +
//!   `SALE_WINDOW_MARGIN` + 1 blocks are left before the expiry, so that the settlement
//!   confirms and its claim is valid before the offerer's timeout is.
//! - A receiver asked to fulfil later than that keeps the secret for the claim and goes on
//!   chain at once, instead of revealing it off chain to an offerer that could still time
//!   the PTLC out.
//! - The offerer's peer neither fulfils nor fails; the offerer publishes its latest state
//!   at the same deadline, so that the PTLC output is on chain by the expiry and its
//!   timeout competes from the next block.
//! - A payee that stalls and then claims on chain as late as it can still reveals the
//!   secret to the offerer by the expiry + `SALE_WINDOW_MARGIN` (what an LSP's sale relies
//!   on). While the offerer went on chain only at the expiry, the claim could come
//!   shared_delay + 2 blocks after it.
//!
//! Before the first fix nothing went on chain by itself: the PTLC expired in the channel.

mod channel_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{ChainEvent, Command, Event, Input, Phase, SALE_WINDOW_MARGIN};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::Transaction;
use channel_support::*;

const EXPIRY: u32 = HEIGHT + 2 * DELAY as u32 + 50;
/// The last height at which either side still waits for the other.
const DEADLINE: u32 = EXPIRY - DELAY as u32 - SALE_WINDOW_MARGIN - 1;

/// S offers A a PTLC on the secret `secret(7)`; returns its id.
fn offered(net: &mut Net<Never>) -> anyhow::Result<u64> {
    net.open()?;
    net.input(
        Party::S,
        Input::Command(Command::AddPtlc {
            amount_sat: 30_000,
            point: secret(7).adaptor_point(),
            expiry: EXPIRY,
        }),
    )?;
    net.pump()?;
    let latest = net
        .snapshot(Party::A)
        .complete
        .clone()
        .context("complete")?;
    let ptlc = latest.body.ptlcs.first().context("the PTLC is committed")?;
    Ok(ptlc.id)
}

/// Feeds `party` blocks from the current height to `to`; returns the height at which it
/// first published a transaction, and that transaction.
fn blocks_until_broadcast(
    net: &mut Net<Never>,
    party: Party,
    from: u32,
    to: u32,
) -> anyhow::Result<Option<(u32, Transaction)>> {
    for height in from..=to {
        let before = net.node(party).broadcasts.len();
        net.input(party, Input::Chain(ChainEvent::Block { height }))?;
        if let Some(tx) = net.node(party).broadcasts.get(before).cloned() {
            return Ok(Some((height, tx)));
        }
    }
    Ok(None)
}

fn is_latest_update(net: &Net<Never>, party: Party, tx: &Transaction) -> bool {
    let latest = net.snapshot(party).complete.as_ref().map(|c| c.body.number);
    tx.lock_time
        .to_consensus_u32()
        .checked_sub(STATE_LOCKTIME_BASE)
        .map(u64::from)
        == latest
}

fn closed_for_ptlc(net: &Net<Never>, party: Party, id: u64) -> bool {
    net.node_ref(party).events.iter().any(
        |e| matches!(e, Event::ClosingForPtlc { id: x, expiry } if *x == id && *expiry == EXPIRY),
    )
}

#[test]
fn receiver_whose_fulfilment_is_ignored_goes_on_chain_in_time_to_claim() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    let id = offered(&mut net)?;
    net.input(
        Party::A,
        Input::Command(Command::Fulfil {
            id,
            secret: secret(7),
        }),
    )?;
    // S never answers the fulfilment.
    net.to_s.clear();
    let (height, tx) = blocks_until_broadcast(&mut net, Party::A, HEIGHT + 1, EXPIRY)?
        .context("A never went on chain")?;
    ensure!(
        height == DEADLINE,
        "A published at {height}, the deadline is {DEADLINE}"
    );
    ensure!(
        is_latest_update(&net, Party::A, &tx),
        "A publishes the state holding the PTLC"
    );
    ensure!(net.snapshot(Party::A).phase() == Phase::ForceClosing);
    ensure!(closed_for_ptlc(&net, Party::A, id));
    ensure!(
        net.snapshot(Party::A).ptlc_secrets.contains_key(&id),
        "the secret is kept for the claim"
    );
    Ok(())
}

#[test]
fn receiver_asked_to_fulfil_too_late_keeps_the_secret_and_goes_on_chain() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    let id = offered(&mut net)?;
    // The offerer stalls; the payee role only asks to fulfil past the deadline.
    let late = DEADLINE + 1;
    net.input(Party::A, Input::Chain(ChainEvent::Block { height: late }))?;
    ensure!(
        net.a.broadcasts.is_empty(),
        "nothing is due without the secret"
    );
    net.input(
        Party::A,
        Input::Command(Command::Fulfil {
            id,
            secret: secret(7),
        }),
    )?;
    ensure!(
        net.to_s.is_empty(),
        "the secret is not revealed off chain this late"
    );
    let tx = net
        .a
        .broadcasts
        .last()
        .context("A publishes its latest state")?;
    ensure!(is_latest_update(&net, Party::A, tx));
    ensure!(net.snapshot(Party::A).ptlc_secrets.contains_key(&id));
    ensure!(closed_for_ptlc(&net, Party::A, id));
    Ok(())
}

#[test]
fn offerer_whose_ptlc_is_neither_fulfilled_nor_failed_goes_on_chain_before_expiry(
) -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    let id = offered(&mut net)?;
    let (height, tx) = blocks_until_broadcast(&mut net, Party::S, HEIGHT + 1, EXPIRY + 5)?
        .context("S never went on chain")?;
    ensure!(
        height == DEADLINE,
        "S published at {height}, the deadline is {DEADLINE}"
    );
    ensure!(is_latest_update(&net, Party::S, &tx));
    ensure!(closed_for_ptlc(&net, Party::S, id));
    Ok(())
}

/// A published update that is not seen on chain is published again at the next block.
#[test]
fn an_update_not_seen_on_chain_is_published_again_every_block() -> anyhow::Result<()> {
    let mut net = Net::new(Never);
    offered(&mut net)?;
    let (height, first) = blocks_until_broadcast(&mut net, Party::S, HEIGHT + 1, EXPIRY)?
        .context("S went on chain")?;
    for h in height + 1..height + 4 {
        let before = net.s.broadcasts.len();
        net.input(Party::S, Input::Chain(ChainEvent::Block { height: h }))?;
        let again = net.s.broadcasts.get(before).context("published again")?;
        ensure!(again.compute_txid() == first.compute_txid());
    }
    Ok(())
}

/// A byzantine payee knows the secret but neither fulfils nor goes on chain by itself; once
/// the offerer has closed, it claims in the last block it can still win against the
/// offerer's timeout. Each of the offerer's transactions is mined as soon as it is valid,
/// except its timeout, which miners may leave out for `SALE_WINDOW_MARGIN` blocks (it pays a
/// fixed fee and has no anchor); the claim takes that block. The offerer must learn the
/// secret by the expiry + `SALE_WINDOW_MARGIN`, the bound an LSP's sale window and held-sale
/// deadline are built on (`delay_too_short`, `window_closed`).
#[test]
fn payee_stalling_then_claiming_as_late_as_it_can_reveals_the_secret_in_time() -> anyhow::Result<()>
{
    let mut net = Net::new(Never);
    let id = offered(&mut net)?;
    // A, the payee, has the secret and sits on it; its blocks are never fed, so its own
    // deadline never fires.
    net.input(
        Party::A,
        Input::Command(Command::ProvideSecret {
            id,
            secret: secret(7),
        }),
    )?;
    ensure!(net.to_s.is_empty(), "A reveals nothing off chain");

    let (published, update) = blocks_until_broadcast(&mut net, Party::S, HEIGHT + 1, EXPIRY)?
        .context("S goes on chain by its PTLC's expiry")?;
    ensure!(is_latest_update(&net, Party::S, &update));
    let confirmed = published + 1;
    for party in [Party::S, Party::A] {
        net.spend(party, &update, confirmed)?;
    }
    // The settlement is valid `DELAY` blocks after the update (BIP68).
    let mut height = confirmed;
    let settlement = loop {
        height += 1;
        let before = net.s.broadcasts.len();
        net.input(Party::S, Input::Chain(ChainEvent::Block { height }))?;
        let settles = net.s.broadcasts[before..]
            .iter()
            .find(|tx| tx.input[0].previous_output.txid == update.compute_txid())
            .cloned();
        if let Some(settlement) = settles {
            break settlement;
        }
        ensure!(height < confirmed + 2 * DELAY as u32, "S never settles");
    };
    let settled_at = confirmed + u32::from(DELAY);
    ensure!(height + 1 == settled_at, "S settles as soon as it can");
    let ptlc_out = settlement
        .output
        .iter()
        .position(|o| o.value.to_sat() == 30_000)
        .context("the settlement holds the PTLC")?;

    // A claims from the settlement; the adversary holds its claim back.
    net.spend(Party::A, &settlement, settled_at)?;
    let claim = net
        .a
        .broadcasts
        .iter()
        .rev()
        .find(|tx| {
            let from = tx.input[0].previous_output;
            from.txid == settlement.compute_txid() && from.vout as usize == ptlc_out
        })
        .cloned()
        .context("A's claim")?;

    // S sees the settlement; its timeout goes out at the expiry (or at once, if later).
    net.spend(Party::S, &settlement, settled_at)?;
    let mut timeout_at = None;
    for h in settled_at + 1..=EXPIRY.max(settled_at + 1) {
        let before = net.s.broadcasts.len();
        net.input(Party::S, Input::Chain(ChainEvent::Block { height: h }))?;
        let times_out = net.s.broadcasts[before..]
            .iter()
            .any(|tx| tx.lock_time.to_consensus_u32() == EXPIRY);
        if times_out && timeout_at.is_none() {
            timeout_at = Some(h);
        }
    }
    let timeout_at = timeout_at.context("S times the PTLC out")?;
    // Miners leave S's timeout out for the margin; the adversary's claim takes that block.
    let claimed_at = timeout_at + SALE_WINDOW_MARGIN;
    net.spend(Party::S, &claim, claimed_at)?;
    let learned = net
        .s
        .events
        .iter()
        .find_map(|e| match e {
            Event::PtlcSecretLearned { id: x, secret } if *x == id => Some(secret.clone()),
            _ => None,
        })
        .context("S learns the secret from the claim")?;
    ensure!(learned.0 == secret(7).to_secret_bytes());
    let bound = EXPIRY + SALE_WINDOW_MARGIN;
    ensure!(
        claimed_at <= bound,
        "S closed at {published} and learnt the secret at {claimed_at}, after the \
         expiry + margin {bound}"
    );
    Ok(())
}
