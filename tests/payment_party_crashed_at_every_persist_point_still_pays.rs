//! The payer-offline payment with one party stopped right after each of its persist points
//! during the payment (what it stored survives, everything after it is lost, queued frames
//! to and from it are dropped) and restarted at once from its store. Whatever the point, the
//! payment completes with the exact balances: B paid the amount, A debited amount plus fee,
//! S credited the fee, and A holds B's signed invoice.

use asyncpay::protocol::payment::PaymentId;
use asyncpay::testing::*;

const AS_CAPACITY: u64 = 1_000_000;
const SB_CAPACITY: u64 = 400_000;
const AMOUNT: u64 = 50_000;

/// Restarts `node` if it stopped on a crash (it was meant to be online).
fn revive(sim: &mut Network, node: usize) {
    if !sim.online(node) {
        sim.start(node).expect("restarts from its store");
    }
}

/// Pumps, reviving the `online` nodes whenever one crashed, until `done` holds.
fn until(sim: &mut Network, online: &[usize], done: impl Fn(&Network) -> bool) -> bool {
    for _ in 0..20 {
        for &node in online {
            revive(sim, node);
        }
        sim.pump().expect("pump");
        if online.iter().all(|&n| sim.online(n)) && done(sim) {
            return true;
        }
    }
    false
}

fn status(sim: &Network, node: usize, id: &PaymentId) -> String {
    sim.nodes[node].status(id).unwrap_or_default().to_owned()
}

/// The whole payment with `party` crashing after its `k`-th persist of the payment (counted
/// from A's pay command). Returns whether the crash point was reached.
/// With `routed`, B's channel is with a router P instead of S, and P stays online with S.
fn pay_with_crash(party: usize, k: usize, routed: bool) -> bool {
    let mut sim = if routed {
        Network::with_router()
    } else {
        Network::new()
    };
    sim.open(A, S, AS_CAPACITY).unwrap();
    let (hop, online) = if routed {
        sim.open(S, P, SB_CAPACITY).unwrap();
        sim.open(P, B, SB_CAPACITY).unwrap();
        (P, vec![S, B, P])
    } else {
        sim.open(S, B, SB_CAPACITY).unwrap();
        (S, vec![S, B])
    };
    sim.stop(B);
    if party == B {
        // B's persists all happen once it is online.
        sim.nodes[B].crash_after = Some(k);
    } else {
        sim.nodes[party].crash_after = Some(k);
    }
    let where_ = format!("{} crashed after persist {}", sim.nodes[party].name, k + 1);

    // A pays and goes offline once its letter is posted.
    let id = sim.pay(AMOUNT).unwrap();
    assert!(
        until(&mut sim, &[A, S], |s| status(s, A, &id) == "posted"),
        "{where_}: A never posted (A {}, S {}), refusals {:?}",
        status(&sim, A, &id),
        status(&sim, S, &id),
        sim.refusals
    );
    sim.stop(A);

    // B comes online, fetches and sells; S completes A's state.
    revive(&mut sim, B);
    for _ in 0..5 {
        for &node in &online {
            revive(&mut sim, node);
        }
        sim.fetch_letters(B).unwrap();
        if status(&sim, B, &id) == "paid" {
            break;
        }
    }
    assert!(
        until(&mut sim, &online, |s| status(s, B, &id) == "paid"
            && status(s, S, &id) == "sold"),
        "{where_}: B {}, S {}, refusals {:?}, last messages {:?}",
        status(&sim, B, &id),
        status(&sim, S, &id),
        sim.refusals,
        &sim.transcript[sim.transcript.len().saturating_sub(16)..]
    );

    // A returns to its receipt.
    sim.start(A).unwrap();
    assert!(
        until(&mut sim, &[&online[..], &[A]].concat(), |s| status(
            s, A, &id
        )
            == "completed"),
        "{where_}: A {}, refusals {:?}",
        status(&sim, A, &id),
        sim.refusals
    );

    let fee = policy().fee_for(AMOUNT);
    let sb = sim.nodes[hop].state_with(sim.key(B)).unwrap();
    assert_eq!(
        (sb.to_a, sb.to_s),
        (SB_CAPACITY - AMOUNT, AMOUNT),
        "{where_}"
    );
    assert!(sb.ptlcs.is_empty(), "{where_}");
    assert_eq!(
        sim.nodes[B].state_with(sim.key(hop)).unwrap(),
        sb,
        "{where_}"
    );
    if routed {
        let fee_p = asyncpay::node::core::DEFAULT_ROUTER_POLICY.fee_sat;
        let sp = sim.nodes[S].state_with(sim.key(P)).unwrap();
        assert_eq!(
            (sp.to_a, sp.to_s),
            (SB_CAPACITY - AMOUNT - fee_p, AMOUNT + fee_p),
            "{where_}"
        );
        assert!(sp.ptlcs.is_empty(), "{where_}");
        assert_eq!(sim.nodes[P].state_with(sim.key(S)).unwrap(), sp, "{where_}");
    }
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(
        (as_.to_a, as_.to_s),
        (AS_CAPACITY - AMOUNT - fee, AMOUNT + fee),
        "{where_}"
    );
    assert_eq!(
        sim.nodes[A].state_with(sim.key(S)).unwrap(),
        as_,
        "{where_}"
    );
    sim.nodes[party].crash_after.is_none()
}

#[test]
fn every_persist_point_of_every_party_still_pays() {
    for party in [A, S, B] {
        let mut k = 0;
        // Each run crashes one persist later, until a run ends without reaching its point.
        while pay_with_crash(party, k, false) {
            k += 1;
            assert!(k < 100, "no end to the persist points");
        }
        eprintln!("party {party}: {k} persist points, each crashed once");
        assert!(
            k >= 4,
            "party {party} persisted only {k} times during the payment"
        );
    }
}

#[test]
fn every_persist_point_of_the_lsp_router_and_payee_still_pays_through_the_router() {
    for party in [S, P, B] {
        let mut k = 0;
        while pay_with_crash(party, k, true) {
            k += 1;
            assert!(k < 100, "no end to the persist points");
        }
        eprintln!("routed, party {party}: {k} persist points, each crashed once");
        assert!(
            k >= 3,
            "party {party} persisted only {k} times during the payment"
        );
    }
}

/// The reverse variant with `party` stopped after its `k`-th persist (counted from B's
/// request) and restarted at once: B asks and leaves, A buys, B returns and fetches. B is
/// paid exactly and A paid amount + fee, whatever the point. Returns whether it was reached.
fn receive_with_crash(party: usize, k: usize) -> bool {
    const AMOUNT_R: u64 = 30_000;
    let mut sim = Network::new();
    sim.open(A, S, AS_CAPACITY).unwrap();
    sim.open(S, B, SB_CAPACITY).unwrap();
    sim.nodes[party].crash_after = Some(k);
    let where_ = format!("{} crashed after persist {}", sim.nodes[party].name, k + 1);
    let id = asyncpay::protocol::payment::PaymentId([0x42; 32]);
    sim.receive(id, AMOUNT_R).unwrap();
    let rstatus = |s: &Network, n: usize| s.nodes[n].reverse_status(&id).unwrap_or_default();
    assert!(
        until(&mut sim, &[S, B], |s| rstatus(s, B) == "offered"
            && !s.nodes[A].mailbox.is_empty()),
        "{where_}: B {}, S {}, refusals {:?}",
        rstatus(&sim, B),
        rstatus(&sim, S),
        sim.refusals
    );
    sim.stop(B);

    for _ in 0..5 {
        revive(&mut sim, A);
        revive(&mut sim, S);
        sim.fetch_letters(A).unwrap();
    }
    assert!(
        until(&mut sim, &[A, S], |s| rstatus(s, A) == "bought"),
        "{where_}: A {}, S {}, refusals {:?}",
        rstatus(&sim, A),
        rstatus(&sim, S),
        sim.refusals
    );

    sim.start(B).unwrap();
    for _ in 0..5 {
        for node in [A, S, B] {
            revive(&mut sim, node);
        }
        sim.fetch_letters(B).unwrap();
    }
    assert!(
        until(&mut sim, &[A, S, B], |s| rstatus(s, B) == "paid"),
        "{where_}: B {}, refusals {:?}",
        rstatus(&sim, B),
        sim.refusals
    );
    let fee = policy().fee_for(AMOUNT_R);
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!(
        (sb.to_a, sb.to_s),
        (SB_CAPACITY - AMOUNT_R, AMOUNT_R),
        "{where_}"
    );
    assert_eq!(sim.nodes[B].state_with(sim.key(S)).unwrap(), sb, "{where_}");
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(
        (as_.to_a, as_.to_s),
        (AS_CAPACITY - AMOUNT_R - fee, AMOUNT_R + fee),
        "{where_}"
    );
    assert!(as_.ptlcs.is_empty(), "{where_}");
    sim.nodes[party].crash_after.is_none()
}

#[test]
fn every_persist_point_of_every_party_still_pays_the_offline_payee() {
    for party in [B, S, A] {
        let mut k = 0;
        while receive_with_crash(party, k) {
            k += 1;
            assert!(k < 100, "no end to the persist points");
        }
        eprintln!("reverse, party {party}: {k} persist points, each crashed once");
        assert!(
            k >= 3,
            "party {party} persisted only {k} times during the payment"
        );
    }
}
