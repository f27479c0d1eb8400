//! A byzantine payer tries to get S to pay for a held sale it cannot collect: by naming a
//! PTLC that S is already failing back (a refused request fails it, a valid one follows at
//! once), or by naming the PTLC of another payment. Each is refused; S's balance never moves
//! for it. (A reused PTLC id is refused by the channel: see
//! `channel_bad_messages_and_expiries_are_refused_without_change.rs`.)

use asyncpay::node::core::receipt_card;
use asyncpay::node::core::{NodeCommand, NodeInput};
use asyncpay::protocol::payment::{HeldPtlc, PayRequest, PaymentId, PaymentMessage};
use asyncpay::protocol::wire::PeerMessage;
use asyncpay::testing::*;

const CAPACITY: u64 = 1_000_000;
const AMOUNT: u64 = 20_000;
const HOLD: u32 = 400;

/// A pays B a held sale, but its request never reaches S (the frame is dropped): A's PTLC
/// waits in a complete state with no offer on it. Returns the payment and the PTLC.
fn ptlc_without_offer(sim: &mut Network) -> (PaymentId, HeldPtlc) {
    sim.open_with_delay(A, S, CAPACITY, 6).unwrap();
    sim.open(S, B, 400_000).unwrap();
    let id = PaymentId([0x61; 32]);
    let (lsp, payee) = (sim.key(S), sim.key(B));
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Pay {
            payment_id: id,
            lsp,
            payee,
            amount_sat: AMOUNT,
            fee_sat: policy().fee_for(AMOUNT),
            note: String::new(),
            receipts: receipt_card(&sim.nodes[B].seed),
            hold_blocks: Some(HOLD),
            irrevocable: false,
        }),
    )
    .unwrap();
    // Deliver everything but A's request.
    let mut request = None;
    for _ in 0..100 {
        let Some((from, to, frame)) = sim.queue.pop_front() else {
            break;
        };
        if let Ok(asyncpay::protocol::wire::Decoded::Message(PeerMessage::Payment(
            PaymentMessage::Request(r),
        ))) = PeerMessage::decode(&frame)
        {
            request = Some(r);
            continue;
        }
        let key = sim.key(from);
        sim.input(to, NodeInput::Frame { from: key, frame })
            .unwrap();
    }
    let request = request.expect("A asked for an offer");
    let held = request.held.expect("a held sale's request");
    assert!(sim.nodes[S].lsp(&id).is_none());
    assert_eq!(sim.nodes[S].state_with(sim.key(A)).unwrap().ptlcs.len(), 1);
    (id, held)
}

/// A request from A, sent as A's node would (over its authenticated connection).
fn send_request(sim: &mut Network, request: PayRequest) {
    let frame = PeerMessage::Payment(PaymentMessage::Request(request)).encode();
    let from = sim.key(A);
    sim.input(S, NodeInput::Frame { from, frame }).unwrap();
}

fn request(sim: &Network, payment_id: PaymentId, held: HeldPtlc, fee_sat: u64) -> PayRequest {
    PayRequest {
        payment_id,
        channel_id: sim.nodes[S]
            .channel_with(sim.key(A))
            .map(|s| s.channel_id)
            .unwrap(),
        state: 1,
        amount_sat: AMOUNT,
        fee_sat,
        payee: sim.key(B),
        held: Some(held),
        irrevocable: false,
    }
}

#[test]
fn a_valid_request_right_behind_a_refused_one_gets_no_offer_on_the_ptlc_being_failed() {
    let mut sim = Network::new();
    let (_, held) = ptlc_without_offer(&mut sim);
    // R1 underpays the fee: refused, and the PTLC no offer covers is failed back. R2, valid,
    // arrives before A answered the fail.
    let r1 = request(&sim, PaymentId([0x71; 32]), held, 0);
    let r2 = request(&sim, PaymentId([0x72; 32]), held, policy().fee_for(AMOUNT));
    send_request(&mut sim, r1);
    send_request(&mut sim, r2);
    assert!(
        sim.nodes[S].lsp(&PaymentId([0x72; 32])).is_none(),
        "no offer on a PTLC being failed"
    );
    sim.pump().unwrap();
    let s_a = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert!(s_a.ptlcs.is_empty(), "the PTLC went back to A");
    assert_eq!((s_a.to_a, s_a.to_s), (CAPACITY, 0));
}

#[test]
fn the_ptlc_of_another_payment_cannot_be_offered_twice() {
    let mut sim = Network::new();
    let (id, held) = ptlc_without_offer(&mut sim);
    // The dropped request arrives after all: S offers on the PTLC.
    let r = request(&sim, id, held, policy().fee_for(AMOUNT));
    send_request(&mut sim, r);
    sim.pump().unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));
    // A second payment naming the same PTLC is refused: one point, one payment; the PTLC
    // stays for the first.
    let other = PaymentId([0x74; 32]);
    let r = request(&sim, other, held, policy().fee_for(AMOUNT));
    send_request(&mut sim, r);
    sim.pump().unwrap();
    assert!(sim.nodes[S].lsp(&other).is_none());
    assert_eq!(sim.nodes[S].state_with(sim.key(A)).unwrap().ptlcs.len(), 1);
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));
}
