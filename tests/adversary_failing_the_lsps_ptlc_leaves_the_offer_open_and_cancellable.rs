//! The PTLC S offers for a sale comes back failed (here a router P that cannot forward it
//! fails it; a payee could do the same). Before the fix the failure completed on the S–P
//! channel but never reached the LSP role: the sale stayed `selling` forever, the payer
//! could not cancel (`sale_in_progress`) and its channel was blocked. Now the role hears
//! it: the offer is open again and the payer's cancellation reverts its state.

use asyncpay::node::core::{NodeCommand, NodeInput};
use asyncpay::testing::*;

const AMOUNT: u64 = 50_000;

#[test]
fn a_failed_sale_ptlc_reopens_the_offer_and_the_payer_can_cancel() {
    let mut sim = Network::with_router();
    sim.open(A, S, A_S_CAPACITY).unwrap();
    sim.open(S, P, 400_000).unwrap();
    // P holds less than the amount on P–B: it cannot forward and fails S's PTLC.
    sim.open(P, B, AMOUNT / 2).unwrap();
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    sim.stop(A);

    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    let sp = sim.nodes[S].state_with(sim.key(P)).unwrap();
    assert!(sp.ptlcs.is_empty(), "P failed S's PTLC back");
    assert_eq!(sp.to_s, 0, "P (the acceptor) holds nothing on S–P");
    assert_eq!(
        sim.nodes[S].status(&id),
        Some("offered"),
        "the LSP heard the failure"
    );

    // A returns and cancels: S voids the offer and reverts A–S.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Cancel { payment_id: id }),
    )
    .unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("cancelled"));
    let a_s = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!((a_s.number, a_s.to_a), (2, A_S_CAPACITY), "nothing moved");
    assert_eq!(sim.nodes[A].state_with(sim.key(S)), Some(a_s));
}
