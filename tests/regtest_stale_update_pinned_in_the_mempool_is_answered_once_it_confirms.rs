//! On the BIP118 regtest, through the mempool, with blocks NOT mined right after each
//! broadcast: A, cheating, publishes its old state U_0 with a high-feerate CPFP child while
//! the channel is at state 2, and the package sits in the mempool for several blocks (held
//! back with `prioritisetransaction`, as miners that have not picked it up yet would).
//!
//! S sees U_0 in the mempool and answers with U_2 on U_0's output. Under TRUC rules nothing
//! can join the package while U_0 is unconfirmed: a v3 transaction has at most one
//! unconfirmed child (A's CPFP child), and that child may have none. So S's answer is
//! refused, and S publishes it again at every block. Nothing is lost by waiting: U_0's
//! settlement needs U_0 confirmed plus the shared delay. Once U_0 confirms, S's next
//! publication enters the mempool and confirms, and after the shared delay the settlement
//! of state 2 pays A and S exactly their state-2 balances. U_0's own settlement can never
//! confirm, because its output is spent.

mod channel_support;
mod tx_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{ChainEvent, Channel, Command, Input};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::{Amount, OutPoint, Transaction};
use channel_support::pair::{payout_script, Pair};
use channel_support::secrets;
use serde_json::json;

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 150_000;
const PAID_1: u64 = 10_000;
const PAID_2: u64 = 20_000;
/// Blocks the stale package is held in the mempool.
const HELD: u32 = 4;

fn state(tx: &Transaction) -> u32 {
    tx.lock_time.to_consensus_u32() - STATE_LOCKTIME_BASE
}

#[test]
fn stale_update_held_in_the_mempool_is_answered_once_it_confirms() -> anyhow::Result<()> {
    let chain = tx_support::start();
    let fees = tx_support::keypair("pinned-stale-fees");
    let adversary = tx_support::keypair("pinned-stale-adversary");
    let (mut pair, _, height) = Pair::open_on(&chain, CAPACITY, PUSH, tx_support::SHARED_DELAY)?;
    // A keeps a copy of its channel at state 0.
    let old_copy = pair.channel(Party::A).snapshot().clone();
    for amount_sat in [PAID_1, PAID_2] {
        pair.input(
            Party::A,
            Input::Command(Command::Transfer {
                amount_sat,
                withhold: false,
            }),
        )?;
        pair.pump(height)?;
    }
    ensure!(pair.channel(Party::S).latest().map(|b| b.number) == Some(2));

    // A's old copy publishes U_0 with a high-feerate child; miners do not take it yet.
    let mut old = Channel::restore(secrets(Party::A), old_copy)?;
    let u0 = old
        .handle(Input::Command(Command::ForceClose))?
        .into_iter()
        .find_map(|a| match a {
            asyncpay::protocol::channel::Action::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .context("the old copy publishes U_0")?;
    ensure!(state(&u0) == 0);
    let (u0_txid, child) = tx_support::try_publish(&chain, &u0, &adversary)
        .map_err(|e| anyhow::anyhow!("U_0 refused: {e}"))?;
    let hold = |delta: i64| -> anyhow::Result<()> {
        chain.rpc::<bool>(
            "prioritisetransaction",
            &[
                json!(child.compute_txid().to_string()),
                json!(0),
                json!(delta),
            ],
        )?;
        Ok(())
    };
    hold(-10_000_000)?;

    // S hears of U_0 in the mempool and answers with U_2 on U_0's output.
    let n = pair.s.broadcasts.len();
    pair.input(
        Party::S,
        Input::Chain(ChainEvent::Spend {
            tx: u0.clone(),
            confirmed_at: None,
        }),
    )?;
    let answer = pair.s.broadcasts.get(n).cloned().context("S answers U_0")?;
    let u0_out = OutPoint {
        txid: u0_txid,
        vout: 0,
    };
    ensure!(answer.input[0].previous_output == u0_out && state(&answer) == 2);

    // For HELD blocks the package stays unconfirmed: S's answer cannot join it (TRUC), and
    // S publishes it again at every block.
    let mut refusals = 0;
    let mut reason = String::new();
    let mut attempt = answer.clone();
    for _ in 0..HELD {
        match tx_support::try_publish(&chain, &attempt, &fees) {
            Ok(_) => anyhow::bail!("the answer entered the mempool under an unconfirmed U_0"),
            Err(e) => {
                refusals += 1;
                reason = e;
            }
        }
        let n = pair.s.broadcasts.len();
        chain.mine(1)?;
        pair.tip(&chain)?;
        ensure!(
            chain.in_mempool(&u0_txid)?,
            "U_0 is still held in the mempool"
        );
        attempt = pair
            .s
            .broadcasts
            .get(n)
            .cloned()
            .context("S publishes again")?;
        ensure!(attempt.compute_txid() == answer.compute_txid());
    }
    ensure!(refusals == HELD);
    ensure!(
        reason.contains("TRUC"),
        "refused for another reason: {reason}"
    );

    // Miners take U_0 and its child; S learns of the confirmation, publishes again, and
    // this time its answer enters the mempool and confirms.
    hold(10_000_000)?;
    let at = u32::try_from(chain.confirm(&u0_txid)?)?;
    pair.spent(Party::S, &u0, at)?;
    let n = pair.s.broadcasts.len();
    pair.tip(&chain)?;
    let u2 = pair.s.broadcasts[n..]
        .iter()
        .find(|tx| tx.input[0].previous_output == u0_out)
        .cloned()
        .unwrap_or(answer);
    let (u2_txid, _) = tx_support::try_publish(&chain, &u2, &fees)
        .map_err(|e| anyhow::anyhow!("the answer refused after U_0 confirmed: {e}"))?;
    let at2 = u32::try_from(chain.confirm(&u2_txid)?)?;
    ensure!(
        at2 < at + u32::from(tx_support::SHARED_DELAY),
        "U_2 confirmed before U_0's settlement could"
    );
    pair.spent(Party::S, &u2, at2)?;

    // The settlement of state 2 after the delay pays exactly the state-2 balances.
    let settlement = loop {
        let last = pair.s.broadcasts.last().cloned().context("S broadcast")?;
        if last.input[0].previous_output.txid == u2_txid {
            break last;
        }
        ensure!(chain.height()? < u64::from(at2) + 20, "no settlement");
        chain.mine(1)?;
        pair.tip(&chain)?;
    };
    let (settlement_txid, _) = tx_support::try_publish(&chain, &settlement, &fees)
        .map_err(|e| anyhow::anyhow!("settlement refused: {e}"))?;
    chain.confirm(&settlement_txid)?;
    let paid = tx_support::unspent_outputs(&chain, &settlement);
    let to_a = CAPACITY - PUSH - PAID_1 - PAID_2;
    let to_s = PUSH + PAID_1 + PAID_2;
    ensure!(
        paid.contains(&(Amount::from_sat(to_a), payout_script(Party::A))),
        "A is paid its state-2 balance: {paid:?}"
    );
    ensure!(
        paid.contains(&(Amount::from_sat(to_s), payout_script(Party::S))),
        "S is paid its state-2 balance: {paid:?}"
    );
    println!(
        "PINNED stale U_0 held {HELD} blocks in the mempool; S's answer refused {refusals} times \
         (TRUC), entered once U_0 confirmed at {at}, confirmed at {at2}; SE_2 paid A {to_a} and \
         S {to_s} sat"
    );
    Ok(())
}
