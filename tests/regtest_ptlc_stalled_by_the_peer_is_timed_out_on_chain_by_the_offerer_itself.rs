//! On the BIP118 regtest, through the mempool: S offers A a PTLC and A stalls it (it neither
//! fulfils nor fails it). Nobody tells S to close: shared_delay + `SALE_WINDOW_MARGIN` + 1
//! blocks before the PTLC's expiry S's channel publishes its latest update by itself, so
//! that the PTLC output is on chain by the expiry (A's claim has no timelock and would
//! otherwise race S's timeout after it). The first publication is lost (never submitted, as
//! when the node's broadcast fails or is evicted) and no block is mined right after a
//! publication: S publishes the same update again at every block until it is seen, the
//! update confirms, the settlement follows after the shared delay, and S times the PTLC out,
//! at the expiry or at once if the settlement came later, through `sendrawtransaction` (the
//! timeout pays its own fee and carries no anchor). S ends with its
//! balance and the PTLC's amount less the timeout fee; A with its balance.

mod channel_support;
mod tx_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{
    Command, Event, Input, Phase, SALE_WINDOW_MARGIN, TIMEOUT_FEE_SAT,
};
use asyncpay::tx::{Party, STATE_LOCKTIME_BASE};
use bitcoin::{Amount, OutPoint};
use channel_support::pair::{payout_script, Pair};
use channel_support::secret;

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 150_000;
const OFFERED: u64 = 40_000;

#[test]
fn offerer_times_out_a_stalled_ptlc_on_chain_by_itself() -> anyhow::Result<()> {
    let chain = tx_support::start();
    let fees = tx_support::keypair("stalled-ptlc-fees");
    let (mut pair, _, height) = Pair::open_on(&chain, CAPACITY, PUSH, tx_support::SHARED_DELAY)?;
    let expiry = height + 2 * u32::from(tx_support::SHARED_DELAY) + 4;
    pair.input(
        Party::S,
        Input::Command(Command::AddPtlc {
            amount_sat: OFFERED,
            point: secret(5).adaptor_point(),
            expiry,
        }),
    )?;
    pair.pump(height)?;
    ensure!(pair
        .channel(Party::A)
        .latest()
        .is_some_and(|b| b.ptlcs.len() == 1));

    // Blocks arrive; A stays silent. S goes on chain by itself before the expiry.
    let before = pair.s.broadcasts.len();
    while pair.s.broadcasts.len() == before {
        ensure!(
            chain.height()? < u64::from(expiry) + 3,
            "S never went on chain"
        );
        chain.mine(1)?;
        pair.tip(&chain)?;
    }
    let closed_at = u32::try_from(chain.height()?)?;
    let deadline = expiry - u32::from(tx_support::SHARED_DELAY) - SALE_WINDOW_MARGIN - 1;
    ensure!(
        closed_at == deadline,
        "S closed at {closed_at}, the deadline is {deadline}"
    );
    ensure!(pair.channel(Party::S).phase() == Phase::ForceClosing);
    ensure!(pair
        .s
        .events
        .iter()
        .any(|e| matches!(e, Event::ClosingForPtlc { expiry: x, .. } if *x == expiry)));
    let update = pair.s.broadcasts.last().cloned().context("S's update")?;
    ensure!(update.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 1);

    // That publication is lost. Two more blocks: S publishes the same update each time.
    for _ in 0..2 {
        let n = pair.s.broadcasts.len();
        chain.mine(1)?;
        pair.tip(&chain)?;
        let again = pair.s.broadcasts.get(n).context("published again")?;
        ensure!(again.compute_txid() == update.compute_txid());
    }
    // This time it reaches the mempool; a block later it confirms.
    let (update_txid, _) = tx_support::try_publish(&chain, &update, &fees)
        .map_err(|e| anyhow::anyhow!("update refused: {e}"))?;
    pair.tip(&chain)?;
    let at = u32::try_from(chain.confirm(&update_txid)?)?;
    for party in [Party::A, Party::S] {
        pair.spent(party, &update, at)?;
    }

    // The settlement after the delay; then the timeout at the expiry, or at once if later
    // (here the lost publications and the block the harness mines to fund each CPFP child
    // cost more blocks than SALE_WINDOW_MARGIN: the settlement confirms two blocks after the
    // expiry).
    let settlement = loop {
        let last = pair.s.broadcasts.last().cloned().context("S broadcast")?;
        if last.input[0].previous_output.txid == update_txid {
            break last;
        }
        ensure!(chain.height()? < u64::from(at) + 20, "no settlement");
        chain.mine(1)?;
        pair.tip(&chain)?;
    };
    let (settlement_txid, _) = tx_support::try_publish(&chain, &settlement, &fees)
        .map_err(|e| anyhow::anyhow!("settlement refused: {e}"))?;
    let settled_at = u32::try_from(chain.confirm(&settlement_txid)?)?;
    let n = pair.s.broadcasts.len();
    pair.spent(Party::S, &settlement, settled_at)?;
    pair.tip(&chain)?;
    let timeout = loop {
        let out = pair.s.broadcasts[n..]
            .iter()
            .find(|tx| tx.input[0].previous_output.txid == settlement_txid);
        if let Some(tx) = out {
            break tx.clone();
        }
        ensure!(
            chain.height()? < u64::from(expiry.max(settled_at)),
            "S never times the PTLC out"
        );
        chain.mine(1)?;
        pair.tip(&chain)?;
    };
    ensure!(
        chain.height()? == u64::from(expiry.max(settled_at)),
        "S times the PTLC out once its expiry is reached and its output is on chain"
    );
    ensure!(timeout.input[0].previous_output.txid == settlement_txid);
    ensure!(timeout.lock_time.to_consensus_u32() == expiry);
    let timeout_txid = chain.send_raw(&timeout)?;
    chain.confirm(&timeout_txid)?;
    ensure!(
        tx_support::utxo(
            &chain,
            &OutPoint {
                txid: timeout_txid,
                vout: 0
            }
        ) == Some((
            Amount::from_sat(OFFERED - TIMEOUT_FEE_SAT),
            payout_script(Party::S)
        )),
        "the PTLC's amount back to S, less the timeout fee"
    );
    // Balances: A keeps its own; S its own; the PTLC came back to S.
    let amounts = tx_support::unspent_outputs(&chain, &settlement);
    ensure!(amounts.contains(&(Amount::from_sat(CAPACITY - PUSH), payout_script(Party::A))));
    ensure!(amounts.contains(&(Amount::from_sat(PUSH - OFFERED), payout_script(Party::S))));
    Ok(())
}
