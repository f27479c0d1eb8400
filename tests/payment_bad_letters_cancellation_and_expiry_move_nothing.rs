//! Adversarial and unhappy paths of the payer-offline flow, in process:
//! - a letter whose pre-signature does not complete to the offered point, one naming another
//!   receipt slot or card epoch, a tampered offer, a replayed letter and a letter naming a
//!   receipt slot B already signed with are refused by B, and nothing moves;
//! - A cancels before B sells: S voids the offer, reverts the withheld state on the channel
//!   (state n+2 = state n) and refuses B's invoice afterwards; the channel pays again later;
//! - B sells first: A's cancellation is answered "sale in progress"/"sold" and the payment
//!   completes;
//! - an offer past its expiry is voided at S and its invoice refused.

use asyncpay::crypto::adaptor::EncryptedSignature;
use asyncpay::node::core::{NodeCommand, NodeInput};
use asyncpay::protocol::payment::{ForSale, PayeeStatus, PayerStatus, PaymentId, SaleLetter};
use asyncpay::testing::*;

const AMOUNT: u64 = 50_000;

fn network() -> Network {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim
}

/// A pays while B is offline and stops; returns the payment and B's letter.
fn pay_offline(sim: &mut Network) -> (PaymentId, Vec<u8>) {
    sim.stop(B);
    let id = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    let letter = sim.nodes[B].mailbox.pop().expect("a letter was posted");
    (id, letter)
}

fn untouched(sim: &Network) {
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!((sb.number, sb.to_s), (0, 0), "S paid B nothing");
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(as_.to_a, 1_000_000, "A paid nothing");
}

#[test]
fn a_wrong_scalar_a_tampered_offer_and_a_replay_are_refused() {
    let mut sim = network();
    let (id, bytes) = pay_offline(&mut sim);
    let letter = SaleLetter::decode(&bytes).unwrap();
    sim.start(B).unwrap();

    // Another pre-signature (another key, another message) completes to a scalar that does
    // not sell the point.
    let mut wrong = letter.clone();
    let other = asyncpay::crypto::keys::SecretKey::from_bytes([9; 32]).unwrap();
    wrong.sold = ForSale::Presignature(EncryptedSignature::encrypt(
        &other,
        &letter.offer.point,
        &[1; 32],
        &[2; 32],
    ));
    let err = sim
        .input(
            B,
            NodeInput::Letter {
                bytes: wrong.encode(),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("does not sell"), "{err}");

    // The genuine pre-signature named with another receipt slot: B's signature with that
    // slot does not complete it (A encrypted it to slot 0's receipt point).
    let mut other_slot = letter.clone();
    other_slot.receipt_slot += 1;
    let err = sim
        .input(
            B,
            NodeInput::Letter {
                bytes: other_slot.encode(),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("does not sell"), "{err}");

    // A slot of a card epoch B never issued.
    let mut old_epoch = letter.clone();
    old_epoch.receipt_epoch += 7;
    let err = sim
        .input(
            B,
            NodeInput::Letter {
                bytes: old_epoch.encode(),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("epoch"), "{err}");

    // The offer's amount raised by the sender: S's signature no longer verifies.
    let mut tampered = letter.clone();
    tampered.offer.terms.amount_sat += 1;
    let err = sim
        .input(
            B,
            NodeInput::Letter {
                bytes: tampered.encode(),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("invalid offer signature"), "{err}");

    // Garbage never panics.
    assert!(sim
        .input(
            B,
            NodeInput::Letter {
                bytes: vec![0xff; 64]
            }
        )
        .is_err());
    assert!(sim.nodes[B].payments.is_empty());
    sim.pump().unwrap();
    untouched(&sim);

    // The genuine letter sells; the same letter again is a no-op.
    sim.input(
        B,
        NodeInput::Letter {
            bytes: bytes.clone(),
        },
    )
    .unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("paid"));
    let persists = sim.nodes[B].persists;
    sim.input(B, NodeInput::Letter { bytes }).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[B].persists, persists, "a replay stores nothing");
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!(sb.to_s, AMOUNT, "B was paid once");

    // A payer that forgot it used the slot (A restored from a backup older than its first
    // payment; or another payer that picked the same slot) pays again with it: its payment
    // id starts where the first one's did (a payer's search for a slot starts at a place
    // its payment id gives, one of 32). B's signature with that slot on another message
    // would reveal the slot's key: B refuses the letter, and nothing is recorded or sent.
    sim.stop(A);
    sim.nodes[A].payments.remove(&id);
    sim.start(A).unwrap();
    sim.pump().unwrap();
    sim.next_id += 31;
    let (second, bytes) = pay_offline(&mut sim);
    let reused = SaleLetter::decode(&bytes).unwrap();
    assert_eq!(
        reused.receipt_slot, letter.receipt_slot,
        "A took the same slot again"
    );
    sim.start(B).unwrap();
    let err = sim.input(B, NodeInput::Letter { bytes }).unwrap_err();
    assert!(err.to_string().contains("was used for payment"), "{err}");
    assert_eq!(sim.nodes[B].status(&second), None, "nothing recorded");
    // A cancels it; its next payment takes another slot and is paid.
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Cancel { payment_id: second }),
    )
    .unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&second), Some("void"));
    let (third, bytes) = pay_offline(&mut sim);
    assert_ne!(
        SaleLetter::decode(&bytes).unwrap().receipt_slot,
        letter.receipt_slot
    );
    sim.start(B).unwrap();
    sim.input(B, NodeInput::Letter { bytes }).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[B].status(&third), Some("paid"));
    let sb = sim.nodes[S].state_with(sim.key(B)).unwrap();
    assert_eq!(
        sb.to_s,
        2 * AMOUNT,
        "B was paid for the first and third payments"
    );
}

#[test]
fn a_cancellation_before_the_sale_voids_the_offer() {
    let mut sim = network();
    let (id, letter) = pay_offline(&mut sim);
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Cancel { payment_id: id }),
    )
    .unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("cancelled"));
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    // S reverted the withheld state 1: both sides are at state 2 with state 0's balances.
    for (x, y) in [(A, S), (S, A)] {
        let state = sim.nodes[x].state_with(sim.key(y)).unwrap();
        assert_eq!((state.number, state.to_a), (2, 1_000_000));
    }

    // B comes online later and tries to sell: S refuses, nothing moves.
    sim.stop(A);
    sim.start(B).unwrap();
    sim.nodes[B].mailbox.push(letter);
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("refused"));
    let status = &sim.nodes[B].payee(&id).unwrap().status;
    assert!(
        matches!(status, PayeeStatus::Refused { reason } if reason == "cancelled"),
        "B hears why: {status:?}"
    );
    untouched(&sim);

    // The channel is usable again: A returns and a new payment completes.
    sim.start(A).unwrap();
    let again = sim.pay(20_000).unwrap();
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[S].status(&again), Some("sold"));
    assert_eq!(sim.nodes[A].status(&again), Some("completed"));
    let as_ = sim.nodes[S].state_with(sim.key(A)).unwrap();
    assert_eq!(as_.to_a, 1_000_000 - 20_000 - policy().fee_for(20_000));
}

#[test]
fn a_sale_that_won_the_race_completes_and_the_cancellation_is_answered() {
    let mut sim = network();
    let (id, letter) = pay_offline(&mut sim);
    sim.stop(A);
    sim.start(B).unwrap();
    sim.nodes[B].mailbox.push(letter);
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));

    sim.start(A).unwrap();
    sim.pump().unwrap();
    // The receipt arrived on reconnection; a late cancel changes nothing.
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    assert!(sim
        .input(
            A,
            NodeInput::Command(NodeCommand::Cancel { payment_id: id })
        )
        .is_err());
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));
}

#[test]
fn an_expired_offer_is_voided_and_its_invoice_refused() {
    let mut sim = network();
    let (id, letter) = pay_offline(&mut sim);
    sim.stop(A);
    let expiry = SaleLetter::decode(&letter).unwrap().offer.expiry;
    sim.block(expiry + 1).unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("cancelled"));

    sim.start(B).unwrap();
    sim.nodes[B].mailbox.push(letter);
    sim.fetch_letters(B).unwrap();
    // B sees the letter is stale and does not even invoice.
    assert!(sim.nodes[B].payments.is_empty());
    assert!(
        sim.refusals.iter().any(|r| r.contains("expired")),
        "{:?}",
        sim.refusals
    );
    untouched(&sim);

    // A returns: the revert S proposed while A was away completes on reconnection.
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    for (x, y) in [(A, S), (S, A)] {
        let state = sim.nodes[x].state_with(sim.key(y)).unwrap();
        assert_eq!((state.number, state.to_a), (2, 1_000_000));
    }
}

/// A payment above A's balance: the channel refuses the transfer, the payment is void at
/// once with the channel's reason, nothing was signed or sent, and a payment that fits
/// goes through afterwards.
#[test]
fn a_payment_above_the_balance_is_void_at_once_and_the_next_one_pays() {
    let mut sim = network();
    sim.stop(B);
    let id = sim.pay(1_000_000).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    let status = &sim.nodes[A].payer(&id).unwrap().status;
    assert!(
        matches!(status, PayerStatus::Void { reason, .. } if reason.contains("cannot pay")),
        "{status:?}"
    );
    assert!(sim.nodes[B].mailbox.is_empty(), "no letter was posted");
    assert!(sim.nodes[S]
        .core()
        .lsp()
        .unwrap()
        .payments()
        .next()
        .is_none());
    untouched(&sim);

    let next = sim.pay(AMOUNT).unwrap();
    assert_eq!(sim.nodes[A].status(&next), Some("posted"));
}

/// S never pays: B invoices in time, but S is unreachable and adds no PTLC. B keeps its
/// scalar, so S can never complete state 1; the offer expires, S refuses B's invoice when it
/// is back, reverts A's withheld state, and A loses nothing.
#[test]
fn s_never_pays_the_offer_expires_and_a_loses_nothing() {
    let mut sim = network();
    let (id, letter) = pay_offline(&mut sim);
    sim.stop(A);
    sim.stop(S);
    sim.start(B).unwrap();
    sim.nodes[B].mailbox.push(letter.clone());
    sim.fetch_letters(B).unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("invoiced"));

    let expiry = SaleLetter::decode(&letter).unwrap().offer.expiry;
    sim.block(expiry + 1).unwrap();
    sim.start(S).unwrap();
    sim.block(expiry + 2).unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("cancelled"));
    assert_eq!(sim.nodes[B].status(&id), Some("refused"));
    let status = &sim.nodes[B].payee(&id).unwrap().status;
    assert!(
        matches!(status, PayeeStatus::Refused { reason } if reason == "expired"),
        "{status:?}"
    );
    untouched(&sim);

    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    for (x, y) in [(A, S), (S, A)] {
        let state = sim.nodes[x].state_with(sim.key(y)).unwrap();
        assert_eq!(
            (state.number, state.to_a),
            (2, 1_000_000),
            "A–S back at state 0's balances"
        );
    }
}

/// An attacker that knows B's card makes letters B can complete without paying anything:
/// an offer signed by a throwaway "LSP" L for T = a·G + Z (Z the point of B's receipt
/// signature on the letter's message), with pre-signature scalar a. B invoices L, which
/// never pays. The invoice spends no slot: an honest payer's letter naming the same slot is
/// accepted and paid.
#[test]
fn letters_under_an_lsp_that_never_pays_do_not_use_up_the_payees_slots() {
    use asyncpay::crypto::adaptor::{AdaptorPoint, AdaptorSecret};
    use asyncpay::crypto::keys::SecretKey;
    use asyncpay::crypto::receipt::receipt_point;
    use asyncpay::node::core::receipt_card;
    use asyncpay::protocol::messages::ChannelId;
    use asyncpay::protocol::payment::{receipt_message, OfferTerms, PAYMENT_VERSION};

    let mut sim = network();
    let b = sim.key(B);
    let card = receipt_card(&sim.nodes[B].seed);
    let lsp = SecretKey::from_bytes([0x4c; 32]).unwrap();
    for slot in &card.slots {
        let payment_id = PaymentId([slot.index as u8 + 0x10; 32]);
        let m = receipt_message(&payment_id, AMOUNT, &b, card.epoch, slot.index, "");
        let z = bitcoin::secp256k1::PublicKey::from(receipt_point(slot, &m).unwrap());
        let a = [0x0a; 32];
        let a_g = bitcoin::secp256k1::PublicKey::from(
            AdaptorSecret::from_bytes(a).unwrap().adaptor_point(),
        );
        let point = AdaptorPoint::from(a_g.combine(&z).unwrap());
        let offer = OfferTerms {
            payment_id,
            lsp: lsp.public_key(),
            channel_id: ChannelId([1; 32]),
            state: 1,
            amount_sat: AMOUNT,
            fee_sat: 0,
            point,
            payee: b,
            expiry: u32::MAX,
            held: None,
            irrevocable: false,
        }
        .sign(&lsp, &[0; 32]);
        let mut pre = [0u8; 65];
        pre[..32].copy_from_slice(&lsp.public_key().to_xonly_bytes());
        pre[32..64].copy_from_slice(&a);
        let letter = SaleLetter {
            version: PAYMENT_VERSION,
            offer,
            sold: ForSale::Presignature(EncryptedSignature::from_bytes(&pre).unwrap()),
            receipt_epoch: card.epoch,
            receipt_slot: slot.index,
            payer: lsp.public_key(),
            note: String::new(),
        };
        sim.input(
            B,
            NodeInput::Letter {
                bytes: letter.encode(),
            },
        )
        .unwrap();
        assert_eq!(sim.nodes[B].status(&payment_id), Some("invoiced"));
    }
    // The honest payment takes a slot, which an L letter only invoiced (L's letters name
    // every slot of the card): it is paid.
    let (id, bytes) = pay_offline(&mut sim);
    let slot = SaleLetter::decode(&bytes).unwrap().receipt_slot;
    sim.start(B).unwrap();
    sim.input(B, NodeInput::Letter { bytes }).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("paid"));
    // The slot is spent now: L's invoice for it can never be fulfilled, and B's new card
    // no longer lists it.
    let card = sim.nodes[B].core().receipt_card();
    assert!(card.slots.iter().all(|x| x.index != slot));
}

/// A card whose slots B's node key did not endorse (a tampered or made-up card) gives no
/// proof anyone could check: A refuses to pay with it, and nothing is proposed.
#[test]
fn a_payer_refuses_receipt_slots_the_payee_did_not_endorse() {
    use asyncpay::crypto::receipt::ReceiptKeys;
    use asyncpay::node::core::receipt_card;

    let mut sim = network();
    let unendorsed = ReceiptKeys::from_seed(&sim.nodes[B].seed).card(0, 4);
    let mut endorsed_by_another = receipt_card(&sim.nodes[S].seed);
    endorsed_by_another.slots = unendorsed
        .slots
        .iter()
        .zip(&endorsed_by_another.slots)
        .map(|(mine, theirs)| {
            let mut slot = *mine;
            slot.endorsement = theirs.endorsement;
            slot
        })
        .collect();
    for (n, receipts) in [unendorsed, endorsed_by_another].into_iter().enumerate() {
        let (lsp, payee) = (sim.key(S), sim.key(B));
        let err = sim
            .input(
                A,
                NodeInput::Command(NodeCommand::Pay {
                    payment_id: PaymentId([0x60 + n as u8; 32]),
                    lsp,
                    payee,
                    amount_sat: AMOUNT,
                    fee_sat: policy().fee_for(AMOUNT),
                    note: String::new(),
                    receipts,
                    hold_blocks: None,
                    irrevocable: false,
                }),
            )
            .unwrap_err();
        assert!(err.to_string().contains("endorsed"), "{err}");
    }
    sim.pump().unwrap();
    untouched(&sim);
}
