//! A merchant's offline device (`asyncpay::node::pos::accept`, what `asyncpay pos accept`
//! runs) checks a letter handed to it against its node's own keys and store, with no
//! network. A real letter (A's held sale through S, made on the in-memory network) is
//! accepted and, once the merchant's node runs, sold; each of these is refused and stores
//! nothing: an offer whose signature is forged or that claims another amount; an offer
//! signed by an LSP the merchant has no channel with; an offer expired at the height the
//! device assumes (its node's last tip plus a block per ten minutes since), or ending too
//! soon after it; a letter for another merchant (sealed to it, or re-sealed by the payer to
//! a second merchant: the offer names the first); a revocable offer; an envelope signed by
//! someone else than the letter's payer; a second payer's letter naming the receipt slot a
//! letter waiting in the inbox names; another letter for a payment that waits. A's node
//! refuses to cancel an irrevocable offer, and S refuses a cancellation a byzantine payer
//! sends anyway; the sale goes through.

use std::path::Path;

use asyncpay::crypto::keys::SecretKey;
use asyncpay::mailbox::envelope::{seal, Envelope, EnvelopeId, Letter};
use asyncpay::mailbox::keys::NodeKey;
use asyncpay::node::core::{node_key, receipt_card, NodeCommand, NodeInput};
use asyncpay::node::pos::{accept, PosError};
use asyncpay::node::store::Store;
use asyncpay::protocol::payment::{PaymentError, PaymentId, PaymentMessage, SaleLetter};
use asyncpay::protocol::wire::PeerMessage;
use asyncpay::testing::*;

const AMOUNT: u64 = 21_000;
const HOLD: u32 = 400;
/// The device's clock (unix time).
const NOW: u64 = 1_750_000_000;

struct Shop {
    sim: Network,
    c: usize,
}

/// A–S (delay 6, as every channel of a one-delay wallet), S–B and S–C; B and C are
/// merchants whose devices are offline.
fn shop() -> Shop {
    let mut sim = Network::new();
    sim.open_with_delay(A, S, 1_000_000, 6).unwrap();
    sim.open(S, B, 400_000).unwrap();
    let c = sim.add_payee("C", 0x43).unwrap();
    sim.connect(S, c).unwrap();
    sim.open(S, c, 400_000).unwrap();
    sim.stop(B);
    sim.stop(c);
    Shop { sim, c }
}

/// The letter A's node made for payment `id` (A keeps it while the payment waits).
fn letter_of(sim: &Network, id: &PaymentId) -> SaleLetter {
    letter_by(sim, A, id)
}

/// The letter payer `payer`'s node made for payment `id`.
fn letter_by(sim: &Network, payer: usize, id: &PaymentId) -> SaleLetter {
    sim.nodes[payer]
        .payer(id)
        .and_then(|p| p.status.letter().cloned())
        .expect("the payer holds the letter")
}

fn mailbox_key(seed: &[u8; 32]) -> NodeKey {
    NodeKey::from_secret_bytes(node_key(seed).to_secret_bytes()).unwrap()
}

/// `letter` sealed by `sender` to the node of seed `to`, as A's node seals a letter it
/// hands over.
fn sealed(letter: &SaleLetter, sender: &NodeKey, to: &[u8; 32]) -> Vec<u8> {
    let recipient = mailbox_key(to);
    seal(
        &Letter {
            recipient: recipient.public(),
            id: EnvelopeId::random(),
            created_at: 1_700_000_000,
            payload: letter.encode(),
        },
        &recipient.age_recipient(),
        1_800_000_000,
        Some(sender),
        false,
    )
    .unwrap()
    .encode()
}

/// A stopped node's data directory for `node`: its seed, card epoch 0, its channels and
/// payments as its store holds them, and the tip it saw last (`tip`: height and unix time;
/// by default the network's height, seen at `NOW`).
fn device(sim: &Network, node: usize, dir: &Path, tip: Option<(u32, u64)>) {
    std::fs::write(dir.join("seed"), hex::encode(sim.nodes[node].seed)).unwrap();
    std::fs::write(dir.join("receipt-epoch"), "0").unwrap();
    let store = Store::open(&dir.join("node.db")).unwrap();
    for (peer, snapshot) in sim.nodes[node].channels.values() {
        store.put_channel(peer, snapshot).unwrap();
    }
    for id in sim.nodes[node].payments.keys() {
        if let Some(record) = sim.nodes[node].payee(id) {
            store.put_payment(id, record).unwrap();
        }
    }
    let (height, at) = tip.unwrap_or((sim.height, NOW));
    store.put_tip(height, at).unwrap();
}

/// A cancellation sent to S as A's node would send it, whatever A's node would do.
fn forged_cancel(sim: &mut Network, id: PaymentId) {
    let frame = PeerMessage::Payment(PaymentMessage::Cancel { payment_id: id }).encode();
    let from = sim.key(A);
    let _ = sim.input(S, NodeInput::Frame { from, frame });
    let _ = sim.pump();
}

fn inbox(dir: &Path) -> usize {
    Store::open(&dir.join("node.db"))
        .unwrap()
        .inbox()
        .unwrap()
        .len()
}

#[test]
fn a_real_letter_is_accepted_offline_and_sold_once_the_merchant_runs() {
    let Shop { mut sim, .. } = shop();
    let id = sim.pay_held_with(B, AMOUNT, HOLD, true).unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    let letter = letter_of(&sim, &id);
    assert!(letter.offer.irrevocable);

    // A changes its mind at the counter: its node refuses, and S refuses a cancellation
    // sent anyway; the offer stands until its expiry.
    let err = sim
        .input(
            A,
            NodeInput::Command(NodeCommand::Cancel { payment_id: id }),
        )
        .unwrap_err();
    assert!(err.to_string().contains("irrevocable"), "{err}");
    forged_cancel(&mut sim, id);
    assert_eq!(sim.nodes[A].status(&id), Some("posted"));
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));

    let dir = tempfile::tempdir().unwrap();
    device(&sim, B, dir.path(), None);
    let a = mailbox_key(&sim.nodes[A].seed);
    let envelope = sealed(&letter, &a, &sim.nodes[B].seed);
    let accepted = accept(dir.path(), &envelope, AMOUNT, 6, NOW).unwrap();
    assert_eq!(accepted.payment_id, id);
    assert_eq!(accepted.amount_sat, AMOUNT);
    assert_eq!(accepted.lsp, sim.key(S));
    assert_eq!(accepted.offer_expiry, letter.offer.expiry);
    assert_eq!(inbox(dir.path()), 1);
    // Handed twice (at this till, or at another till of the merchant's node): refused, a
    // letter pays once; one letter in the inbox.
    assert!(matches!(
        accept(dir.path(), &envelope, AMOUNT, 6, NOW),
        Err(PosError::AlreadyAccepted(p)) if p == id
    ));
    assert_eq!(inbox(dir.path()), 1);
    // Another letter for the same payment (the same letter sealed again) is not kept.
    let resealed = sealed(&letter, &a, &sim.nodes[B].seed);
    assert!(matches!(
        accept(dir.path(), &resealed, AMOUNT, 6, NOW),
        Err(PosError::OtherLetter(_))
    ));
    assert_eq!(inbox(dir.path()), 1);

    // B's node runs: what its inbox holds is a letter like one from its mailbox, whose slot
    // is reserved for it.
    sim.start(B).unwrap();
    sim.connect(S, B).unwrap();
    let waiting = Store::open(&dir.path().join("node.db"))
        .unwrap()
        .inbox()
        .unwrap();
    let opened = Envelope::decode(&waiting[0].1)
        .unwrap()
        .open(&mailbox_key(&sim.nodes[B].seed))
        .unwrap();
    sim.input(
        B,
        NodeInput::HandedLetter {
            bytes: opened.payload,
        },
    )
    .unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[B].status(&id), Some("paid"));
    assert_eq!(sim.nodes[S].status(&id), Some("sold"));
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    // Paid: handed again, it is refused (it paid once).
    let paid_device = tempfile::tempdir().unwrap();
    device(&sim, B, paid_device.path(), None);
    let store = Store::open(&paid_device.path().join("node.db")).unwrap();
    store
        .put_payment(&id, sim.nodes[B].payee(&id).unwrap())
        .unwrap();
    let err = accept(paid_device.path(), &envelope, AMOUNT, 6, NOW).unwrap_err();
    assert!(matches!(err, PosError::AlreadyAccepted(_)), "{err}");
}

/// Two payers of B's one card whose payment ids start alike pick the same receipt slot
/// (each payer knows only its own payments). Returns both payments and the second payer.
fn two_letters_on_one_slot(sim: &mut Network) -> (PaymentId, PaymentId, usize) {
    let a2 = sim.add_payer("A2", 0xa2).unwrap();
    sim.connect(a2, S).unwrap();
    sim.open_with_delay(a2, S, 1_000_000, 6).unwrap();
    let first = PaymentId([0x11; 32]);
    let mut second = [0x22; 32];
    second[..4].copy_from_slice(&[0x11; 4]);
    let second = PaymentId(second);
    for (payer, id) in [(A, first), (a2, second)] {
        let (lsp, payee) = (sim.key(S), sim.key(B));
        sim.input(
            payer,
            NodeInput::Command(NodeCommand::Pay {
                payment_id: id,
                lsp,
                payee,
                amount_sat: AMOUNT,
                fee_sat: policy().fee_for(AMOUNT),
                note: String::new(),
                receipts: receipt_card(&sim.nodes[B].seed),
                hold_blocks: Some(HOLD),
                irrevocable: true,
            }),
        )
        .unwrap();
        sim.pump().unwrap();
        assert_eq!(
            sim.nodes[payer].status(&id),
            Some("posted"),
            "{:?}",
            sim.refusals
        );
    }
    (first, second, a2)
}

#[test]
fn a_letter_accepted_at_the_counter_keeps_its_slot_against_a_mailbox_letter() {
    let Shop { mut sim, .. } = shop();
    let (first, second, a2) = two_letters_on_one_slot(&mut sim);
    let one = letter_of(&sim, &first);
    let two = letter_by(&sim, a2, &second);
    assert_eq!(one.receipt_slot, two.receipt_slot, "the test needs a clash");
    // B's node runs while S is away: the handed letter first (the node drains its inbox
    // before it fetches its mailbox) is invoiced and waits; the mailbox letter naming the
    // same slot is refused, the slot is reserved. S, back, pays the handed letter.
    sim.stop(S);
    sim.start(B).unwrap();
    sim.input(
        B,
        NodeInput::HandedLetter {
            bytes: one.encode(),
        },
    )
    .unwrap();
    assert_eq!(sim.nodes[B].status(&first), Some("invoiced"));
    let err = sim
        .input(
            B,
            NodeInput::Letter {
                bytes: two.encode(),
            },
        )
        .unwrap_err();
    assert!(err.to_string().contains("receipt slot"), "{err}");
    sim.start(S).unwrap();
    sim.connect(S, B).unwrap();
    sim.connect(S, A).unwrap();
    sim.pump().unwrap();
    assert_eq!(
        sim.nodes[B].status(&first),
        Some("paid"),
        "{:?}",
        sim.refusals
    );
    assert_eq!(sim.nodes[B].status(&second), None, "nothing recorded");
}

#[test]
fn forged_expired_foreign_and_revocable_letters_are_refused_and_store_nothing() {
    let Shop { mut sim, c } = shop();
    let id = sim.pay_held_with(B, AMOUNT, HOLD, true).unwrap();
    let letter = letter_of(&sim, &id);
    let a = mailbox_key(&sim.nodes[A].seed);
    let b_seed = sim.nodes[B].seed;
    let dir = tempfile::tempdir().unwrap();
    device(&sim, B, dir.path(), None);
    let refused = |letter: &SaleLetter, sender: &NodeKey, amount: u64, min: u32| {
        accept(
            dir.path(),
            &sealed(letter, sender, &b_seed),
            amount,
            min,
            NOW,
        )
        .expect_err("refused")
    };

    // S's offer with its amount raised: its signature no longer verifies.
    let mut forged = letter.clone();
    forged.offer.terms.amount_sat += 1;
    assert!(matches!(
        refused(&forged, &a, AMOUNT, 6),
        PosError::Letter(PaymentError::BadSignature { what: "offer" })
    ));
    // An offer claiming to be S's, signed by another key.
    let mallory = SecretKey::from_bytes([0x66; 32]).unwrap();
    let mut forged = letter.clone();
    forged.offer = forged.offer.terms.clone().sign(&mallory, &[0; 32]);
    assert!(matches!(
        refused(&forged, &a, AMOUNT, 6),
        PosError::Letter(PaymentError::BadSignature { .. })
    ));
    // A genuine signature by an LSP B has no channel with: B could not sell.
    let mut elsewhere = letter.clone();
    elsewhere.offer.terms.lsp = mallory.public_key();
    elsewhere.offer = elsewhere.offer.terms.clone().sign(&mallory, &[0; 32]);
    assert!(matches!(
        refused(&elsewhere, &a, AMOUNT, 6),
        PosError::NoChannel(_)
    ));
    // The till asks another amount.
    assert!(matches!(
        refused(&letter, &a, AMOUNT + 1, 6),
        PosError::Amount { paid: AMOUNT, asked } if asked == AMOUNT + 1
    ));
    // Fewer blocks left than the device asks for.
    assert!(matches!(
        refused(&letter, &a, AMOUNT, letter.offer.expiry),
        PosError::TooSoon { .. }
    ));
    // Sealed by someone else than the payer the letter names.
    assert!(matches!(
        refused(&letter, &mailbox_key(&[0x67; 32]), AMOUNT, 6),
        PosError::Sender
    ));
    assert_eq!(inbox(dir.path()), 0, "nothing refused is stored");

    // Expired at the height the device assumes: its node saw a tip a while ago, and a
    // block per ten minutes since takes it past the offer's expiry.
    let late = tempfile::tempdir().unwrap();
    let tip = sim.height;
    let blocks = letter.offer.expiry + 1 - tip;
    device(
        &sim,
        B,
        late.path(),
        Some((tip, NOW - 600 * u64::from(blocks))),
    );
    let err = accept(late.path(), &sealed(&letter, &a, &b_seed), AMOUNT, 0, NOW).unwrap_err();
    assert!(
        matches!(err, PosError::Letter(PaymentError::Expired { .. })),
        "{err}"
    );
    // The same tip seen just now: accepted.
    let fresh = tempfile::tempdir().unwrap();
    device(&sim, B, fresh.path(), Some((tip, NOW)));
    accept(fresh.path(), &sealed(&letter, &a, &b_seed), AMOUNT, 6, NOW).unwrap();

    // Another merchant's device: sealed to B, C cannot open it; re-sealed to C by the
    // payer, the offer names B.
    let other = tempfile::tempdir().unwrap();
    device(&sim, c, other.path(), None);
    let c_seed = sim.nodes[c].seed;
    let err = accept(other.path(), &sealed(&letter, &a, &b_seed), AMOUNT, 6, NOW).unwrap_err();
    assert!(matches!(err, PosError::Envelope(_)));
    let err = accept(other.path(), &sealed(&letter, &a, &c_seed), AMOUNT, 6, NOW).unwrap_err();
    assert!(matches!(
        err,
        PosError::Letter(PaymentError::Mismatch { field: "payee" })
    ));
    assert_eq!(inbox(other.path()), 0);

    // A revocable offer: A could cancel it before B sells.
    let revocable = sim.pay_held_with(B, AMOUNT, HOLD, false).unwrap();
    let letter = letter_of(&sim, &revocable);
    assert!(!letter.offer.irrevocable);
    assert!(matches!(
        refused(&letter, &a, AMOUNT, 6),
        PosError::Revocable
    ));
    assert_eq!(inbox(dir.path()), 0);
}

#[test]
fn s_offers_irrevocably_only_a_held_sale_and_voids_it_at_its_expiry() {
    let Shop { mut sim, .. } = shop();
    // An irrevocable withheld update is refused by A's node before anything is signed.
    let (lsp, payee) = (sim.key(S), sim.key(B));
    let err = sim
        .input(
            A,
            NodeInput::Command(NodeCommand::Pay {
                payment_id: PaymentId([0x51; 32]),
                lsp,
                payee,
                amount_sat: AMOUNT,
                fee_sat: policy().fee_for(AMOUNT),
                note: String::new(),
                receipts: asyncpay::node::core::receipt_card(&sim.nodes[B].seed),
                hold_blocks: None,
                irrevocable: true,
            }),
        )
        .unwrap_err();
    assert!(err.to_string().contains("irrevocable"), "{err}");

    // The irrevocable held sale nobody buys: a cancellation is refused, and at the offer's
    // expiry S voids it and fails A's PTLC back.
    let id = sim.pay_held_with(B, AMOUNT, HOLD, true).unwrap();
    let expiry = sim.nodes[S].lsp(&id).unwrap().offer.expiry;
    forged_cancel(&mut sim, id);
    assert_eq!(sim.nodes[S].status(&id), Some("offered"));
    let before = sim.nodes[A].state_with(sim.key(S)).unwrap();
    assert_eq!(before.ptlcs.len(), 1);
    sim.block(expiry + 1).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[S].status(&id), Some("cancelled"));
    assert_eq!(sim.nodes[A].status(&id), Some("void"));
    let after = sim.nodes[A].state_with(sim.key(S)).unwrap();
    assert!(after.ptlcs.is_empty(), "the PTLC went back to A");
}

#[test]
fn a_second_payers_letter_on_a_slot_a_waiting_letter_holds_is_refused_offline() {
    let Shop { mut sim, .. } = shop();
    let (first, second, a2) = two_letters_on_one_slot(&mut sim);
    let one = letter_of(&sim, &first);
    let two = letter_by(&sim, a2, &second);
    assert_eq!(one.receipt_slot, two.receipt_slot, "the test needs a clash");
    let dir = tempfile::tempdir().unwrap();
    device(&sim, B, dir.path(), None);
    let b_seed = sim.nodes[B].seed;
    let envelope = |letter: &SaleLetter, payer: usize| {
        sealed(letter, &mailbox_key(&sim.nodes[payer].seed), &b_seed)
    };
    accept(dir.path(), &envelope(&one, A), AMOUNT, 6, NOW).unwrap();
    let err = accept(dir.path(), &envelope(&two, a2), AMOUNT, 6, NOW).unwrap_err();
    assert!(
        matches!(&err, PosError::SlotTaken { slot, by } if *slot == one.receipt_slot && *by == first.to_string()),
        "{err}"
    );
    assert_eq!(inbox(dir.path()), 1, "only the first letter waits");

    // Payers of one card spread over its slots: ids that differ in their first bytes pick
    // different slots.
    let third = sim.pay_held_with(B, AMOUNT, HOLD, true).unwrap();
    let slot = sim.nodes[A].payer(&third).unwrap().receipt_slot.index;
    assert_ne!(slot, one.receipt_slot);
}

#[test]
fn a_slot_a_real_lsps_invoiced_letter_may_take_first_is_refused_at_the_counter() {
    let Shop { mut sim, .. } = shop();
    let (first, second, a2) = two_letters_on_one_slot(&mut sim);
    let one = letter_of(&sim, &first);
    let two = letter_by(&sim, a2, &second);
    // B, online while S is away, invoices the mailbox letter: S may pay it before the
    // counter's letter is drained, so the counter refuses a letter on that slot.
    sim.stop(S);
    sim.start(B).unwrap();
    sim.input(
        B,
        NodeInput::Letter {
            bytes: two.encode(),
        },
    )
    .unwrap();
    assert_eq!(sim.nodes[B].status(&second), Some("invoiced"));
    let dir = tempfile::tempdir().unwrap();
    device(&sim, B, dir.path(), None);
    let envelope = sealed(&one, &mailbox_key(&sim.nodes[A].seed), &sim.nodes[B].seed);
    let err = accept(dir.path(), &envelope, AMOUNT, 6, NOW).unwrap_err();
    assert!(matches!(err, PosError::SlotTaken { .. }), "{err}");
    // The mailbox letter handed over at the counter too: now reserved at the node.
    assert!(!sim.nodes[B].payee(&second).unwrap().reserved);
    sim.input(
        B,
        NodeInput::HandedLetter {
            bytes: two.encode(),
        },
    )
    .unwrap();
    assert!(sim.nodes[B].payee(&second).unwrap().reserved);
}

#[test]
fn letters_the_lsp_could_not_pay_together_are_refused_and_a_device_without_a_tip_refuses_all() {
    let Shop { mut sim, .. } = shop();
    // S holds 400,000 sat on S–B: two letters of 300,000 cannot both be paid.
    let big = 300_000;
    let ids = [
        sim.pay_held_with(B, big, HOLD, true).unwrap(),
        sim.pay_held_with(B, big, HOLD, true).unwrap(),
    ];
    let dir = tempfile::tempdir().unwrap();
    device(&sim, B, dir.path(), None);
    let a = mailbox_key(&sim.nodes[A].seed);
    let b_seed = sim.nodes[B].seed;
    let envelope = |id: &PaymentId| sealed(&letter_of(&sim, id), &a, &b_seed);
    accept(dir.path(), &envelope(&ids[0]), big, 6, NOW).unwrap();
    let err = accept(dir.path(), &envelope(&ids[1]), big, 6, NOW).unwrap_err();
    assert!(matches!(err, PosError::NoCapacity { .. }), "{err}");
    assert_eq!(inbox(dir.path()), 1);

    // A node that never recorded the chain's tip: the device cannot tell the height.
    let blind = tempfile::tempdir().unwrap();
    std::fs::write(blind.path().join("seed"), hex::encode(b_seed)).unwrap();
    std::fs::write(blind.path().join("receipt-epoch"), "0").unwrap();
    Store::open(&blind.path().join("node.db")).unwrap();
    let err = accept(blind.path(), &envelope(&ids[1]), big, 6, NOW).unwrap_err();
    assert!(matches!(err, PosError::NoTip), "{err}");
}
