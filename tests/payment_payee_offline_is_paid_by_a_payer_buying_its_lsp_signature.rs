//! The reverse variant, in process: the payee B is the one offline. B asks its LSP S for a
//! state of S–B paying it; S proposes it withholding its own signature, B countersigns and
//! posts a pay request (S's signed offer and the update's proof) to payer A's mailbox, and
//! leaves. A checks the proof, buys S's signature with a PTLC on A–S, and so holds the
//! complete update; it hands S's signature to B's mailbox. B, back, has state n+1 from S's
//! completion or, if S is away, completes it from A's hand-over.

use asyncpay::protocol::payment::{PaymentId, ReverseStatus};
use asyncpay::testing::*;

const AMOUNT: u64 = 30_000;

/// Channels open; B asks to be paid and leaves with A's letter posted. Returns the id.
fn requested(sim: &mut Network) -> PaymentId {
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    let id = PaymentId([0x42; 32]);
    sim.receive(id, AMOUNT).unwrap();
    sim.pump().unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[B].reverse_status(&id), Some("offered"));
    assert_eq!(sim.nodes[S].reverse_status(&id), Some("offered"));
    assert_eq!(
        sim.nodes[A].mailbox.len(),
        1,
        "B's pay request is in A's mailbox"
    );
    // Nothing has moved: S holds B's countersignature, B holds no signature of S.
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!((sb.number, sb.to_s), (0, 0));
    sim.stop(B);
    id
}

/// A fetches the request and buys S's signature.
fn bought(sim: &mut Network, id: &PaymentId) {
    sim.fetch_letters(A).unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[A].reverse_status(id), Some("bought"));
    assert_eq!(sim.nodes[S].reverse_status(id), Some("bought"));
    assert!(
        matches!(
            sim.nodes[A].reverse[id].status,
            ReverseStatus::Bought {
                lsp_signature: Some(_),
                ..
            }
        ),
        "A holds S's signature"
    );
    assert_eq!(sim.nodes[B].mailbox.len(), 1, "A handed it to B's mailbox");

    // A paid amount + S's fee on A–S; S released state 1 of S–B paying B.
    let fee = policy().fee_for(AMOUNT);
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(
        (as_.to_a, as_.to_s),
        (1_000_000 - AMOUNT - fee, AMOUNT + fee)
    );
    assert!(as_.ptlcs.is_empty());
    assert_eq!(sim.nodes[A].state_with(sim.key(S)).unwrap(), as_);
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!((sb.number, sb.to_a, sb.to_s), (1, 400_000 - AMOUNT, AMOUNT));
}

#[test]
fn payee_offline_is_paid_and_gets_its_state_from_the_lsp() {
    let mut sim = Network::new();
    let id = requested(&mut sim);
    bought(&mut sim, &id);

    sim.start(B).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[B].reverse_status(&id), Some("paid"));
    assert_eq!(
        sim.nodes[B].state_with(sim.key(S)).unwrap(),
        sim.nodes[S].state_with(sim.key(B)).unwrap()
    );
}

#[test]
fn payee_completes_its_state_from_the_payers_handover_while_the_lsp_is_away() {
    let mut sim = Network::new();
    let id = requested(&mut sim);
    bought(&mut sim, &id);

    sim.stop(S);
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[B].reverse_status(&id), Some("paid"));
    let sb = sim.nodes[B].state_with(sim.key(S)).unwrap();
    assert_eq!((sb.number, sb.to_a, sb.to_s), (1, 400_000 - AMOUNT, AMOUNT));

    // S comes back: both sides agree on state 1.
    sim.start(S).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[S].state_with(sim.key(B)).unwrap(), sb);
}

#[test]
fn a_tampered_pay_request_is_refused_and_nothing_moves() {
    let mut sim = Network::new();
    let _ = requested(&mut sim);
    // A letter is its kind byte, then JSON.
    let kind = asyncpay::protocol::payment::LetterKind::of(&sim.nodes[A].mailbox[0]).unwrap();
    assert_eq!(kind, asyncpay::protocol::payment::LetterKind::Reverse);
    let mut letter: serde_json::Value =
        serde_json::from_slice(&sim.nodes[A].mailbox[0][1..]).unwrap();
    // One satoshi moved within the state B signed: B's signature no longer verifies.
    let body = &mut letter["proof"]["body"];
    let (to_a, to_s) = (
        body["to_a"].as_u64().unwrap(),
        body["to_s"].as_u64().unwrap(),
    );
    body["to_a"] = (to_a - 1).into();
    body["to_s"] = (to_s + 1).into();
    sim.nodes[A].mailbox[0] = kind.frame(serde_json::to_vec(&letter).unwrap());
    sim.fetch_letters(A).unwrap();
    assert!(
        sim.refusals.iter().any(|r| r.contains("payee signature")),
        "{:?}",
        sim.refusals
    );
    assert!(sim.nodes[A].reverse.is_empty(), "A bought nothing");
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!((as_.number, as_.to_a), (0, 1_000_000));
}
