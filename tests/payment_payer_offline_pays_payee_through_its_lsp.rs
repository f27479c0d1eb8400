//! The main flow, in process: A pre-signs state n+1 and goes offline; B comes online later,
//! sells A's signature to S for a PTLC, and S completes A's state; A returns to a receipt.
//! Balances on both channels end exactly as they must, fees included.

use asyncpay::protocol::payment::{LspStatus, PayerStatus, ProofError};
use asyncpay::testing::*;

const AS_CAPACITY: u64 = 1_000_000;
const SB_CAPACITY: u64 = 400_000;
const AMOUNT: u64 = 50_000;

#[test]
fn payer_offline_pays_payee_through_its_lsp() {
    let mut sim = Network::new();
    sim.open(A, S, AS_CAPACITY).unwrap();
    sim.open(S, B, SB_CAPACITY).unwrap();
    let fee = policy().fee_for(AMOUNT);

    // B is offline when A pays; A stops as soon as its letter is posted.
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));
    assert_eq!(sim.nodes[B].mailbox.len(), 1);
    // Nothing has moved yet: S holds no signature of A for state 1.
    let s_view = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!((s_view.number, s_view.to_a), (0, AS_CAPACITY));
    sim.stop(A);

    // B comes online, fetches the letter and is paid.
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[B].status(&id), Some("paid"));
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));

    let sb = sim.nodes[B].state_with(sim.key(S)).unwrap();
    assert_eq!(sb.ptlcs.len(), 0);
    assert_eq!(
        (sb.to_a, sb.to_s),
        (SB_CAPACITY - AMOUNT, AMOUNT),
        "S–B: S pays B"
    );
    let as_at_s = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(as_at_s.number, 1);
    assert_eq!(
        (as_at_s.to_a, as_at_s.to_s),
        (AS_CAPACITY - AMOUNT - fee, AMOUNT + fee),
        "A–S: A pays S the amount and the fee"
    );

    // A returns: its channel reaches state 1 and it holds B's signed invoice.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert!(sim.refusals.is_empty(), "{:?}", sim.refusals);
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    let as_at_a = sim.nodes[A].state_with(sim.key(S)).unwrap();
    assert_eq!(as_at_a, as_at_s);
    let PayerStatus::Completed { receipt, proof } = &sim.nodes[A].payer(&id).unwrap().status else {
        panic!("A's payment is completed");
    };
    assert_eq!(
        receipt.invoice.terms.payee,
        sim.key(B),
        "B signed the invoice"
    );
    receipt.invoice.verify().unwrap();
    // A holds B's receipt signature for this payment, amount and note, checkable with B's
    // node key alone (the slot carries B's endorsement); the same signature for another
    // amount is refused.
    proof.verify(&sim.key(B)).unwrap();
    assert_eq!((proof.payment_id, proof.amount_sat), (id, AMOUNT));
    let mut other = proof.clone();
    other.amount_sat += 1;
    assert_eq!(other.verify(&sim.key(B)), Err(ProofError::BadSignature));
    // S stops resending the receipt once A acknowledged it.
    assert!(matches!(
        sim.nodes[S].lsp(&id).unwrap().status,
        LspStatus::Sold {
            receipt_acked: true,
            ..
        }
    ));
}

/// S keeps B's invoice and the scalar to itself (it never sends the receipt): A still gets
/// its proof of payment, from its own signature S must show to complete A's state.
#[test]
fn an_lsp_withholding_the_receipt_cannot_keep_the_proof_from_the_payer() {
    use asyncpay::node::core::NodeInput;
    use asyncpay::protocol::payment::PaymentMessage;
    use asyncpay::protocol::wire::{Decoded, PeerMessage};

    let mut sim = Network::new();
    sim.open(A, S, AS_CAPACITY).unwrap();
    sim.open(S, B, SB_CAPACITY).unwrap();
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    sim.stop(A);
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));

    // A returns; every receipt S sends it is lost.
    sim.start(A).unwrap();
    let mut dropped = 0;
    while let Some((from, to, frame)) = sim.queue.pop_front() {
        let receipt = matches!(
            PeerMessage::decode(&frame),
            Ok(Decoded::Message(PeerMessage::Payment(
                PaymentMessage::Receipt(_)
            )))
        );
        if receipt {
            dropped += 1;
            continue;
        }
        if sim.online(from) && sim.online(to) {
            let from = sim.key(from);
            sim.input(to, NodeInput::Frame { from, frame }).unwrap();
        }
    }
    assert!(dropped > 0, "S did send a receipt");
    assert_eq!(sim.nodes[A].status(&id), Some("paid"));
    let PayerStatus::Paid { proof, .. } = &sim.nodes[A].payer(&id).unwrap().status else {
        panic!("A holds the proof");
    };
    proof.verify(&sim.key(B)).unwrap();
    assert_eq!(sim.nodes[A].state_with(sim.key(S)).unwrap().number, 1);

    // The receipt, when it comes, adds B's invoice and keeps the proof.
    sim.stop(A);
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
}
