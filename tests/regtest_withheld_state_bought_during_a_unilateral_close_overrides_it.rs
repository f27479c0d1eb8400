//! On the BIP118 regtest, through the mempool: A withholds its signature on state 2 (its
//! payment is for sale) and publishes state 1, its latest complete state. S keeps the sale
//! open for as long as U_1's settlement cannot confirm. The scalar, bought inside that
//! window, completes state 2: S publishes U_2 on top of U_1 (`submitpackage`), and after the
//! shared delay the settlement of state 2 pays A and S their state-2 balances. A, fed the
//! chain, recognises its own state 2 from U_2's witness. U_1's output is spent, so SE_1 can
//! never confirm. If nobody sells inside the window, S settles state 1 and a later scalar
//! completes nothing.

mod channel_support;
mod tx_support;

use anyhow::{ensure, Context};
use asyncpay::chain::regtest::Regtest;
use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::protocol::channel::{Command, Event, Input, OpenTerms, Phase, SALE_WINDOW_MARGIN};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction};
use channel_support::pair::{payout_script, Pair};
use channel_support::payout;

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 150_000;
const DELAY: u16 = 12;
const PAID: u64 = 40_000;

fn spent_by(pair: &mut Pair, tx: &Transaction, at: u32) -> anyhow::Result<()> {
    for party in [Party::A, Party::S] {
        pair.spent(party, tx, at)?;
    }
    Ok(())
}

/// On a fresh regtest: the channel at state 1 with A's signature on state 2 withheld; A
/// publishes U_1 and it confirms. Returns the chain, the fee key and coins, the pair, the
/// scalar that sells state 2, U_1's txid and its confirmation height.
#[allow(clippy::type_complexity)]
fn published_while_for_sale() -> anyhow::Result<(
    Regtest,
    bitcoin::secp256k1::Keypair,
    Vec<(OutPoint, bitcoin::TxOut)>,
    Pair,
    AdaptorSecret,
    bitcoin::Txid,
    u32,
)> {
    let chain = tx_support::start();
    let fees = tx_support::keypair("sale-window-fees");
    let height = u32::try_from(chain.height()?)?;
    let terms = OpenTerms {
        capacity_sat: CAPACITY,
        push_sat: PUSH,
        shared_delay: DELAY,
        update_window: 1_000,
        payout_key: payout(Party::A),
    };
    let (mut pair, _) = Pair::open(terms, height, |script, capacity| {
        let (outpoint, _) = chain.fund(script, Amount::from_sat(capacity))?;
        let at = u32::try_from(chain.confirm(&outpoint.txid)?)?;
        Ok((outpoint, at))
    })?;
    let height = pair.tip(&chain)?;
    for withhold in [false, true] {
        pair.input(
            Party::A,
            Input::Command(Command::Transfer {
                amount_sat: PAID / 2,
                withhold,
            }),
        )?;
        pair.pump(height)?;
    }
    let signature = pair
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::SignatureWithheld { signature, .. } => Some(*signature),
            _ => None,
        })
        .context("A withholds its signature on state 2")?;
    let scalar = AdaptorSecret::from_signature(&signature)?;
    ensure!(pair.channel(Party::S).phase() == Phase::CounterSigned);
    // Fee coins first: publishing below must not mine blocks of its own.
    let coins = tx_support::fee_coins(&chain, &fees, 3);

    // A publishes state 1 while its payment is for sale.
    pair.input(Party::A, Input::Command(Command::ForceClose))?;
    let u1 = pair
        .a
        .broadcasts
        .last()
        .cloned()
        .context("A publishes U_1")?;
    ensure!(u1.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 1);
    let (u1_txid, at) = tx_support::confirm_using(&chain, &u1, &fees, coins[0].clone(), "U_1")?;
    spent_by(&mut pair, &u1, at)?;
    Ok((chain, fees, coins, pair, scalar, u1_txid, at))
}

#[test]
fn withheld_state_bought_inside_the_window_replaces_the_published_state() -> anyhow::Result<()> {
    let (chain, fees, coins, mut pair, scalar, u1_txid, at) = published_while_for_sale()?;
    let deadline = at + u32::from(DELAY) - 1 - SALE_WINDOW_MARGIN;
    assert_eq!(pair.channel(Party::S).sale_window(), Some(deadline));

    // Some blocks pass; the scalar is sold inside the window.
    chain.mine(u64::from(deadline - at - 1))?;
    pair.tip(&chain)?;
    ensure!(pair.s.broadcasts.is_empty(), "S settles nothing meanwhile");
    pair.input(
        Party::S,
        Input::Command(Command::CompleteWithSecret { secret: scalar }),
    )?;
    let u2 = pair
        .s
        .broadcasts
        .last()
        .cloned()
        .context("S publishes U_2")?;
    ensure!(u2.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 2);
    let u1_out = OutPoint {
        txid: u1_txid,
        vout: 0,
    };
    ensure!(u2.input[0].previous_output == u1_out);
    let (u2_txid, at2) = tx_support::confirm_using(&chain, &u2, &fees, coins[1].clone(), "U_2")?;
    ensure!(
        at2 < at + u32::from(DELAY),
        "U_2 confirmed at {at2}, before U_1's settlement could (from {})",
        at + u32::from(DELAY)
    );
    spent_by(&mut pair, &u2, at2)?;
    let state2 = pair
        .channel(Party::A)
        .latest()
        .cloned()
        .context("A's latest")?;
    ensure!(state2.number == 2, "A recognises its own state 2 on chain");
    ensure!(pair.channel(Party::S).latest() == Some(&state2));

    // After the delay, S settles state 2.
    let settlement = loop {
        let last = pair.s.broadcasts.last().cloned().context("S broadcast")?;
        if last.input[0].previous_output.txid == u2_txid {
            break last;
        }
        ensure!(
            chain.height()? < u64::from(at2) + 2 * u64::from(DELAY),
            "no SE_2"
        );
        chain.mine(1)?;
        pair.tip(&chain)?;
    };
    tx_support::confirm_using(&chain, &settlement, &fees, coins[2].clone(), "SE_2")?;
    let paid: Vec<(Amount, ScriptBuf)> = tx_support::unspent_outputs(&chain, &settlement);
    for (party, sat) in [(Party::A, state2.to_a), (Party::S, state2.to_s)] {
        ensure!(
            paid.contains(&(Amount::from_sat(sat), payout_script(party))),
            "{party:?} is paid {sat} sat: {paid:?}"
        );
    }
    ensure!(state2.to_s == PUSH + PAID, "S holds the whole payment");
    ensure!(
        tx_support::utxo(&chain, &u1_out).is_none(),
        "U_1's output is spent"
    );
    Ok(())
}

/// The same, but nobody sells inside the window: S settles state 1 once U_1's delay has
/// passed, and the scalar that comes afterwards is refused; the settlement pays state 1.
#[test]
fn withheld_state_offered_after_the_window_is_refused_and_state_1_settles() -> anyhow::Result<()> {
    let (chain, fees, coins, mut pair, scalar, u1_txid, at) = published_while_for_sale()?;
    let state1 = pair
        .channel(Party::S)
        .latest()
        .cloned()
        .context("state 1")?;
    let settlement = loop {
        if let Some(tx) = pair
            .s
            .broadcasts
            .iter()
            .find(|tx| tx.input[0].previous_output.txid == u1_txid)
        {
            break tx.clone();
        }
        ensure!(
            chain.height()? < u64::from(at) + 2 * u64::from(DELAY),
            "no SE_1"
        );
        chain.mine(1)?;
        pair.tip(&chain)?;
    };
    let (_, settled_at) =
        tx_support::confirm_using(&chain, &settlement, &fees, coins[1].clone(), "SE_1")?;
    spent_by(&mut pair, &settlement, settled_at)?;
    ensure!(
        pair.channel(Party::S).sale_window() == Some(0),
        "the window is closed"
    );
    ensure!(
        pair.input(
            Party::S,
            Input::Command(Command::CompleteWithSecret { secret: scalar }),
        )
        .is_err(),
        "a scalar after the window completes nothing"
    );
    let paid: Vec<(Amount, ScriptBuf)> = tx_support::unspent_outputs(&chain, &settlement);
    for (party, sat) in [(Party::A, state1.to_a), (Party::S, state1.to_s)] {
        ensure!(
            paid.contains(&(Amount::from_sat(sat), payout_script(party))),
            "{party:?} is paid its state-1 {sat} sat: {paid:?}"
        );
    }
    ensure!(
        state1.to_s == PUSH + PAID / 2,
        "S holds only the first half"
    );
    Ok(())
}
