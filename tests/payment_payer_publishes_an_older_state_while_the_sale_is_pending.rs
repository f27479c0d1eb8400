//! A goes offline with its signature on state n+1 for sale and publishes state n (e.g. from
//! a stale backup) while the sale is pending. In process, with S's node core fed the spend:
//! - B sells inside S's window: S buys, completes n+1 and publishes it on top of U_n;
//! - B comes after the window: S refuses the invoice (`window_closed`), nothing moves on S–B;
//! - by construction S makes no offer on a payer channel whose shared delay is shorter than
//!   its PTLC delta plus twice the margin, so no sale's PTLC can be claimed after the window.

use asyncpay::node::core::{NodeCommand, NodeCore, NodeInput, NodeOutput, Records};
use asyncpay::protocol::channel::SALE_WINDOW_MARGIN;
use asyncpay::protocol::messages::ChannelId;
use asyncpay::protocol::payment::{PayeeStatus, PayerStatus, PaymentId};
use asyncpay::testing::*;
use asyncpay::tx::STATE_LOCKTIME_BASE;
use bitcoin::{OutPoint, Transaction};

const AMOUNT: u64 = 50_000;

/// A–S and S–B open; A pays B while B is offline and stops; A's stale state 0 confirms at
/// the next height. Returns the payment, A–S's id and the published U_0.
fn older_state_published(sim: &mut Network) -> (PaymentId, ChannelId, Transaction) {
    let a_s = sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    sim.stop(A);

    // A's process as it was when it left (state 1 withheld), told to force-close.
    let node = &sim.nodes[A];
    let mut a = NodeCore::restore(
        node.seed,
        sim.height,
        node.channels.values().cloned().collect(),
        Records::Payer(vec![]),
    )
    .unwrap();
    let u0 = a
        .handle(NodeInput::Command(NodeCommand::ForceClose {
            channel_id: a_s,
        }))
        .unwrap()
        .actions
        .into_iter()
        .find_map(|o| match o {
            NodeOutput::Broadcast(tx) => Some(tx),
            _ => None,
        })
        .expect("A publishes its latest complete state");
    assert_eq!(u0.lock_time.to_consensus_u32(), STATE_LOCKTIME_BASE);

    let at = sim.height + 1;
    sim.input(
        S,
        NodeInput::Spend {
            tx: u0.clone(),
            confirmed_at: Some(at),
        },
    )
    .unwrap();
    sim.block(at).unwrap();
    (id, a_s, u0)
}

/// The offer S made for the payment, from S's record.
fn lsp_status(sim: &Network, id: &PaymentId) -> String {
    sim.nodes[S].status(id).unwrap_or_default().to_owned()
}

#[test]
fn b_sells_inside_the_window_and_s_overrides_the_published_state() {
    let mut sim = Network::new();
    let (id, _, u0) = older_state_published(&mut sim);
    let broadcasts = sim.broadcasts.len();

    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("paid"), "{:?}", sim.refusals);
    assert_eq!(lsp_status(&sim, &id), "sold");
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!(sb.to_s, AMOUNT, "B was paid");

    // S completed state 1 of A–S and published it on top of U_0.
    let u1 = sim.broadcasts[broadcasts..]
        .iter()
        .find(|tx| tx.lock_time.to_consensus_u32() == STATE_LOCKTIME_BASE + 1)
        .expect("S publishes U_1");
    assert_eq!(
        u1.input[0].previous_output,
        OutPoint {
            txid: u0.compute_txid(),
            vout: 0
        }
    );
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(as_.number, 1);
    assert_eq!(as_.to_s, AMOUNT + policy().fee_for(AMOUNT), "A paid S");
}

#[test]
fn b_comes_after_the_window_and_s_refuses_to_buy() {
    let mut sim = Network::new();
    let (id, _, _) = older_state_published(&mut sim);
    let at = sim.height;
    // The window ends SALE_WINDOW_MARGIN + 1 blocks before U_0's settlement may confirm;
    // a PTLC made one block after the last safe invoice height could be claimed on chain
    // after it (S learns the scalar by the expiry + SALE_WINDOW_MARGIN at the latest).
    let deadline = at + u32::from(PAYER_DELAY) - 1 - SALE_WINDOW_MARGIN;
    let late = deadline - SALE_WINDOW_MARGIN - policy().ptlc_delta + 1;
    sim.block(late).unwrap();
    let broadcasts = sim.broadcasts.len();

    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("refused"));
    let status = &sim.nodes[B].payee(&id).unwrap().status;
    assert!(
        matches!(status, PayeeStatus::Refused { reason } if reason == "window_closed"),
        "{status:?}"
    );
    assert_eq!(lsp_status(&sim, &id), "offered", "S bought nothing");
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!((sb.number, sb.to_s), (0, 0), "S paid B nothing");
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!((as_.number, as_.to_a), (0, 1_000_000), "A paid nothing");
    assert!(
        sim.broadcasts[broadcasts..]
            .iter()
            .all(|tx| tx.lock_time.to_consensus_u32() != STATE_LOCKTIME_BASE + 1),
        "no U_1"
    );
}

#[test]
fn the_last_safe_height_still_sells() {
    let mut sim = Network::new();
    let (id, _, _) = older_state_published(&mut sim);
    let at = sim.height;
    let deadline = at + u32::from(PAYER_DELAY) - 1 - SALE_WINDOW_MARGIN;
    sim.block(deadline - SALE_WINDOW_MARGIN - policy().ptlc_delta)
        .unwrap();
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("paid"), "{:?}", sim.refusals);
    assert_eq!(lsp_status(&sim, &id), "sold");
}

#[test]
fn no_offer_on_a_payer_channel_too_short_for_a_sale() {
    let mut sim = Network::new();
    let too_short = (policy().ptlc_delta + 2 * SALE_WINDOW_MARGIN - 1) as u16;
    sim.open_with_delay(A, S, 1_000_000, too_short).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    let status = &sim.nodes[A].payer(&id).unwrap().status;
    assert!(
        matches!(status, PayerStatus::Void { reason, .. } if reason.contains("delay_too_short")),
        "{status:?}"
    );
    assert!(sim.nodes[B].mailbox.is_empty(), "no letter");
    assert!(sim.nodes[S].payments.is_empty(), "S offered nothing");
}
