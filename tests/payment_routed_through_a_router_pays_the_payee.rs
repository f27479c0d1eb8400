//! The payer-offline payment when B has no channel with S but one with a router P, in
//! process. B's invoice names P and its terms (route hint); S asks P to forward and adds a
//! PTLC of amount + P's fee on S–P; P, once that PTLC is committed, offers one with the same
//! point on P–B, B fulfils it with A's scalar, P fulfils S's PTLC with it, and S completes
//! A's state. Every channel ends exactly: A pays amount + S's fee, S keeps its fee less P's,
//! P keeps its fee, B receives the amount.

use asyncpay::node::core::DEFAULT_ROUTER_POLICY;
use asyncpay::testing::*;

const AMOUNT: u64 = 50_000;

#[test]
fn payee_behind_a_router_is_paid_through_it_with_the_same_point() {
    let mut sim = Network::with_router();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, P, 400_000).unwrap();
    sim.open(P, B, 400_000).unwrap();
    let fee_s = policy().fee_for(AMOUNT);
    let fee_p = DEFAULT_ROUTER_POLICY.fee_sat;

    let id = sim.pay_while_payee_offline(AMOUNT).unwrap();

    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[B].status(&id), Some("paid"));
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));
    assert_eq!(sim.nodes[P].status(&id), Some("settled"));
    let invoice = &sim.nodes[B].payee(&id).unwrap().invoice.terms;
    assert_eq!(
        invoice.route_hint.as_ref().map(|hint| hint.router),
        Some(sim.key(P)),
        "B's invoice names P"
    );

    // S–P: S paid amount + P's fee; P–B: P paid the amount; no PTLC left anywhere.
    let sp = sim.nodes[S].state_with(sim.key(P)).unwrap();
    assert_eq!(
        (sp.to_a, sp.to_s),
        (400_000 - AMOUNT - fee_p, AMOUNT + fee_p)
    );
    assert!(sp.ptlcs.is_empty());
    let pb = sim.nodes[B].state_with(sim.key(P)).unwrap();
    assert_eq!((pb.to_a, pb.to_s), (400_000 - AMOUNT, AMOUNT));
    assert!(pb.ptlcs.is_empty());
    assert_eq!(sim.nodes[P].state_with(sim.key(B)).unwrap(), pb);
    // A–S: A paid amount + S's fee, completed by S with the scalar that came back via P.
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!((as_.number, as_.to_s), (1, AMOUNT + fee_s));

    // A returns to B's signed invoice.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    assert_eq!(sim.nodes[A].state_with(sim.key(S)).unwrap(), as_);
}
