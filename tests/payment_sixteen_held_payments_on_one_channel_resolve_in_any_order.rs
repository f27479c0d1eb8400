//! Held sales, in process: A makes 16 payments to 4 offline payees on one A–S channel,
//! each a PTLC to S in a complete state of its own. A cancels some, then goes offline; the
//! payees come online in a shuffled order and sell; one payee comes back only after S's
//! offers to it expired. When A returns, S fulfils the sold PTLCs and fails the others back:
//! every balance ends exact and each sold payment's proof checks with its payee's key.
//!
//! The A–S channel replaces an older state for 6 blocks only: a withheld sale there is
//! refused (S needs the shared delay to cover its PTLC delta), a held sale is not.

use asyncpay::protocol::channel::StateBody;
use asyncpay::protocol::payment::{PayerStatus, PaymentId};
use asyncpay::testing::*;

const CAPACITY: u64 = 2_000_000;
const PAYEE_CAPACITY: u64 = 400_000;
/// The held PTLCs' expiry, in blocks from the payment.
const HOLD: u32 = 400;
/// The A–S channel's shared delay: far below what a withheld sale needs.
const SHORT_DELAY: u16 = 6;

fn amount(i: usize) -> u64 {
    10_000 + 1_000 * i as u64
}

/// The channel state between `x` and `y` as `x` holds it.
fn state(sim: &Network, x: usize, y: usize) -> StateBody {
    sim.nodes[x].state_with(sim.key(y)).expect("channel")
}

struct Paid {
    id: PaymentId,
    payee: usize,
    amount: u64,
}

/// A–S with a short delay, S–B_i for four payees, all payees offline; A pays each payee
/// four times as held sales. Returns the payees and the payments in order.
fn sixteen_posted(sim: &mut Network) -> (Vec<usize>, Vec<Paid>) {
    sim.open_with_delay(A, S, CAPACITY, SHORT_DELAY).unwrap();
    let mut payees = vec![B];
    for (name, seed) in [("C", 0xc1), ("D", 0xd1), ("E", 0xe1)] {
        payees.push(sim.add_payee(name, seed).unwrap());
    }
    for &p in &payees {
        sim.open(S, p, PAYEE_CAPACITY).unwrap();
    }
    for &p in &payees {
        sim.stop(p);
    }
    let mut paid = vec![];
    for i in 0..16 {
        let payee = payees[i % 4];
        let id = sim.pay_held(payee, amount(i), HOLD).unwrap();
        assert_eq!(
            sim.nodes[A].status(&id),
            Some("posted"),
            "payment {i}: {:?}",
            sim.refusals
        );
        paid.push(Paid {
            id,
            payee,
            amount: amount(i),
        });
    }
    (payees, paid)
}

#[test]
fn sixteen_held_payments_are_sold_cancelled_and_expired_in_any_order() {
    let mut sim = Network::new();
    let (payees, paid) = sixteen_posted(&mut sim);
    let fee = |a: u64| policy().fee_for(a);

    // Sixteen PTLCs wait on one channel, in one complete state; A's balance holds the rest.
    let held = state(&sim, S, A);
    assert_eq!(held.ptlcs.len(), 16);
    let locked: u64 = paid.iter().map(|p| p.amount + fee(p.amount)).sum();
    assert_eq!((held.to_a, held.to_s), (CAPACITY - locked, 0));
    // The letter of a held sale: S's offer names the PTLC, and the letter sells A's share.
    let letter = sim.nodes[A]
        .payer(&paid[0].id)
        .unwrap()
        .status
        .letter()
        .cloned();
    let letter = letter.expect("posted letter");
    assert!(letter.offer.held.is_some());

    // A cancels payments 1 and 6 before going offline: S fails their PTLCs back at once.
    let cancelled = [1usize, 6];
    for &i in &cancelled {
        sim.input(
            A,
            asyncpay::node::core::NodeInput::Command(asyncpay::node::core::NodeCommand::Cancel {
                payment_id: paid[i].id,
            }),
        )
        .unwrap();
        sim.pump().unwrap();
        assert_eq!(sim.nodes[A].status(&paid[i].id), Some("void"));
        assert_eq!(sim.nodes[S].status(&paid[i].id), Some("cancelled"));
    }
    assert_eq!(state(&sim, S, A).ptlcs.len(), 14);
    sim.stop(A);

    // The payees come online in a shuffled order; the last (E) only once S's offers to it
    // have expired. Each sells what is still offered.
    let late = payees[3];
    for &p in &[payees[2], payees[0], payees[1]] {
        sim.start(p).unwrap();
        sim.fetch_letters(p).unwrap();
        sim.pump().unwrap();
    }
    let past_offers = sim.height + policy().offer_lifetime + 1;
    sim.block(past_offers).unwrap();
    sim.start(late).unwrap();
    sim.fetch_letters(late).unwrap();
    sim.pump().unwrap();

    let sold = |i: usize| !cancelled.contains(&i) && paid[i].payee != late;
    for (i, p) in paid.iter().enumerate() {
        let want = if sold(i) { "sold" } else { "cancelled" };
        assert_eq!(sim.nodes[S].status(&p.id), Some(want), "payment {i} at S");
    }

    // A is offline: S keeps the scalars and has not fulfilled yet.
    assert_eq!(state(&sim, S, A).ptlcs.len(), 14);

    // A returns: S fulfils each sold PTLC and fails the expired ones back, one update after
    // another.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    let end = state(&sim, S, A);
    assert!(end.ptlcs.is_empty(), "every PTLC resolved: {:?}", end.ptlcs);
    assert_eq!(end, state(&sim, A, S), "A and S agree");
    let spent: u64 = (0..16)
        .filter(|&i| sold(i))
        .map(|i| paid[i].amount + fee(paid[i].amount))
        .sum();
    assert_eq!((end.to_a, end.to_s), (CAPACITY - spent, spent));
    for &p in &payees {
        let got: u64 = paid
            .iter()
            .enumerate()
            .filter(|(i, x)| x.payee == p && sold(*i))
            .map(|(_, x)| x.amount)
            .sum();
        let sb = state(&sim, p, S);
        assert!(sb.ptlcs.is_empty());
        assert_eq!(sb.balance(asyncpay::tx::Party::S), got, "payee {p}");
    }

    // Each sold payment's proof checks with its payee's node key alone; the others are void.
    for (i, p) in paid.iter().enumerate() {
        let record = sim.nodes[A].payer(&p.id).unwrap();
        match &record.status {
            PayerStatus::Completed { proof, .. } | PayerStatus::Paid { proof, .. } if sold(i) => {
                proof.verify(&sim.key(p.payee)).unwrap();
                assert_eq!(proof.amount_sat, p.amount);
                assert!(proof.verify(&sim.key(payees[(i + 1) % 4])).is_err());
            }
            PayerStatus::Void { .. } if !sold(i) => {}
            other => panic!("payment {i} at A is {}", other.name()),
        }
    }
}

/// The same short-delay channel refuses a withheld sale: S cannot buy a withheld signature
/// it might have to publish within 6 blocks.
#[test]
fn a_withheld_sale_on_the_short_delay_channel_is_refused() {
    let mut sim = Network::new();
    sim.open_with_delay(A, S, CAPACITY, SHORT_DELAY).unwrap();
    sim.open(S, B, PAYEE_CAPACITY).unwrap();
    let id = sim.pay(20_000).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    let s_a = state(&sim, S, A);
    assert_eq!((s_a.to_a, s_a.ptlcs.len()), (CAPACITY, 0));
}
