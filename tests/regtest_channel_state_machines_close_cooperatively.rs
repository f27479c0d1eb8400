//! Two channel state machines (A and S, in process, messages through memory queues) open a
//! channel funded from the regtest faucet, make a transfer, and close cooperatively through
//! `Command::Close`: the close both of them broadcast goes through `sendrawtransaction`,
//! confirms, and pays each party its balance of the last state, the fee from the proposer's.

mod channel_support;
mod tx_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{ChainEvent, Command, Input, OpenTerms, Phase};
use asyncpay::tx::Party;
use bitcoin::{Amount, OutPoint};
use channel_support::pair::{payout_script, Pair};
use channel_support::payout;

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 50_000;
const PAID: u64 = 60_000;
const FEE: u64 = 400;

#[test]
fn channel_state_machines_open_transfer_and_close_cooperatively() -> anyhow::Result<()> {
    let chain = tx_support::start();
    let height = u32::try_from(chain.height()?)?;
    let terms = OpenTerms {
        capacity_sat: CAPACITY,
        push_sat: PUSH,
        shared_delay: tx_support::SHARED_DELAY,
        update_window: 1_000,
        payout_key: payout(Party::A),
    };
    let (mut pair, outpoint) = Pair::open(terms, height, |script, capacity| {
        let (outpoint, _) = chain.fund(script, Amount::from_sat(capacity))?;
        let at = u32::try_from(chain.confirm(&outpoint.txid)?)?;
        Ok((outpoint, at))
    })?;

    pair.input(
        Party::A,
        Input::Command(Command::Transfer {
            amount_sat: PAID,
            withhold: false,
        }),
    )?;
    pair.pump(height)?;
    let latest = pair.channel(Party::S).latest().context("state 1")?.clone();
    ensure!(latest.number == 1 && latest.to_s == PUSH + PAID);

    pair.input(Party::A, Input::Command(Command::Close { fee_sat: FEE }))?;
    pair.pump(height)?;
    let close = pair.a.broadcasts.last().cloned().context("A broadcasts")?;
    ensure!(
        pair.s.broadcasts.last() == Some(&close),
        "S broadcasts the same close"
    );
    ensure!(close.input[0].previous_output == outpoint);

    let txid = chain.send_raw(&close)?;
    chain.confirm(&txid)?;
    let to_a = CAPACITY - PUSH - PAID - FEE;
    assert_eq!(
        tx_support::utxo(&chain, &OutPoint { txid, vout: 0 }),
        Some((Amount::from_sat(to_a), payout_script(Party::A)))
    );
    assert_eq!(
        tx_support::utxo(&chain, &OutPoint { txid, vout: 1 }),
        Some((Amount::from_sat(PUSH + PAID), payout_script(Party::S)))
    );
    assert_eq!(tx_support::utxo(&chain, &outpoint), None);

    let close_height = u32::try_from(chain.height()?)?;
    for party in [Party::A, Party::S] {
        pair.input(
            party,
            Input::Chain(ChainEvent::Spend {
                tx: close.clone(),
                confirmed_at: Some(close_height),
            }),
        )?;
        assert_eq!(pair.channel(party).phase(), Phase::Closed);
    }
    Ok(())
}
