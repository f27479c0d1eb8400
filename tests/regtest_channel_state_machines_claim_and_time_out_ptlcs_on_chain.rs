//! After a unilateral close on the regtest, the channel state machines resolve the PTLC
//! outputs of the settlement themselves: S, which knows the secret of the PTLC A offered it,
//! broadcasts the claim as soon as the settlement confirms; the claim goes through
//! `submitpackage` (CPFP on its anchor) and pays S; A, fed the claim's spend, learns the
//! secret from the witness. The PTLC S offered A, whose secret never appears, is timed out by
//! S at its expiry through `sendrawtransaction`, and pays S back its amount less the fee.

mod channel_support;
mod tx_support;

use anyhow::{ensure, Context};
use asyncpay::protocol::channel::{Command, Event, Input, TIMEOUT_FEE_SAT};
use asyncpay::tx::Party;
use bitcoin::{Amount, OutPoint};
use channel_support::pair::{payout_script, Pair};
use channel_support::secret;

const CAPACITY: u64 = 500_000;
const PUSH: u64 = 150_000;
const FROM_A: u64 = 60_000;
const FROM_S: u64 = 50_000;

#[test]
fn settled_ptlcs_are_claimed_and_timed_out_by_the_state_machines() -> anyhow::Result<()> {
    let chain = tx_support::start();
    let fees = tx_support::keypair("ptlc-resolution-fees");
    let (mut pair, _, height) = Pair::open_on(&chain, CAPACITY, PUSH, tx_support::SHARED_DELAY)?;
    let expiry = height + 40;
    for (party, amount_sat, tag) in [(Party::A, FROM_A, 9), (Party::S, FROM_S, 8)] {
        pair.input(
            party,
            Input::Command(Command::AddPtlc {
                amount_sat,
                point: secret(tag).adaptor_point(),
                expiry,
            }),
        )?;
        pair.pump(height)?;
    }
    // A's PTLC is 0; S learns its secret (from the payment it forwards, in a real node).
    pair.input(
        Party::S,
        Input::Command(Command::ProvideSecret {
            id: 0,
            secret: secret(9),
        }),
    )?;

    // S publishes the latest update; after the delay, the settlement.
    pair.input(Party::S, Input::Command(Command::ForceClose))?;
    let update = pair.s.broadcasts.last().cloned().context("U_n")?;
    let (update_txid, _) = tx_support::try_publish(&chain, &update, &fees)
        .map_err(|e| anyhow::anyhow!("update refused: {e}"))?;
    let at = u32::try_from(chain.confirm(&update_txid)?)?;
    for party in [Party::A, Party::S] {
        pair.spent(party, &update, at)?;
    }
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
    for party in [Party::S, Party::A] {
        pair.spent(party, &settlement, settled_at)?;
    }

    // S's claim of A's PTLC, through the mempool.
    let claim = pair.s.broadcasts.last().cloned().context("S claims")?;
    ensure!(claim.input[0].previous_output.txid == settlement_txid);
    let (claim_txid, _) = tx_support::try_publish(&chain, &claim, &fees)
        .map_err(|e| anyhow::anyhow!("claim refused: {e}"))?;
    let claimed_at = u32::try_from(chain.confirm(&claim_txid)?)?;
    assert_eq!(
        tx_support::utxo(
            &chain,
            &OutPoint {
                txid: claim_txid,
                vout: 0
            }
        ),
        Some((Amount::from_sat(FROM_A), payout_script(Party::S)))
    );
    pair.spent(Party::A, &claim, claimed_at)?;
    // S sees its claim confirmed: it stops publishing it again.
    pair.spent(Party::S, &claim, claimed_at)?;
    let learned = pair
        .a
        .events
        .iter()
        .find_map(|e| match e {
            Event::PtlcSecretLearned { id: 0, secret } => Some(secret.clone()),
            _ => None,
        })
        .context("A learns the secret from the claim on chain")?;
    assert_eq!(learned.0, secret(9).to_secret_bytes());

    // S's own PTLC: the timeout comes when the tip reaches its expiry, not before.
    let claims = pair.s.broadcasts.len();
    while chain.height()? < u64::from(expiry) {
        ensure!(pair.s.broadcasts.len() == claims, "timeout before expiry");
        chain.mine(1)?;
        pair.tip(&chain)?;
    }
    ensure!(
        pair.s.broadcasts.len() == claims + 1,
        "S times its PTLC out"
    );
    let timeout = pair.s.broadcasts.last().cloned().context("timeout")?;
    ensure!(timeout.input[0].previous_output.txid == settlement_txid);
    let timeout_txid = chain.send_raw(&timeout)?;
    chain.confirm(&timeout_txid)?;
    assert_eq!(
        tx_support::utxo(
            &chain,
            &OutPoint {
                txid: timeout_txid,
                vout: 0
            }
        ),
        Some((
            Amount::from_sat(FROM_S - TIMEOUT_FEE_SAT),
            payout_script(Party::S)
        ))
    );
    Ok(())
}
