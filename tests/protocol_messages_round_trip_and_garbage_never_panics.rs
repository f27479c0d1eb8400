//! Every peer message, channel and payment, round-trips through the one wire encoding
//! (`protocol::wire`); arbitrary bytes and corrupted messages give a typed error or a valid
//! message but never a panic; fed to an open channel they never change its state.
//!
//! An adversary edits valid messages record by record and each edit meets BOLT 1's rule:
//! an unknown odd record is skipped and the message still decodes; an unknown even record,
//! records out of order or twice, a non-minimal BigSize, a missing required field, a length
//! beyond the input and every truncation are refused with their own error. An unknown odd
//! message type is ignored (by the node too, which reports it), an unknown even one
//! refused.
//!
//! `tests/vectors/wire.json` holds the hex of one message of each kind and of a few refused
//! edits, checked both ways here. It is written by this test itself:
//! `ASYNCPAY_WRITE_VECTORS=1 cargo test --test protocol_messages_round_trip_and_garbage_never_panics wire_vectors`.

mod channel_support;

use asyncpay::crypto::adaptor::{AdaptorPoint, AdaptorSecret, EncryptedSignature};
use asyncpay::crypto::keys::{SecretKey, Signature};
use asyncpay::node::core::{NodeError, NodeInput, NodeOutput};
use asyncpay::protocol::channel::Input;
use asyncpay::protocol::messages::*;
use asyncpay::protocol::payment::{
    CancelOutcome, Forward, HeldPtlc, Invoice, InvoiceTerms, OfferTerms, PayRequest, PaymentId,
    PaymentMessage, PurchaseOffer, Receipt, RouteHint, MAX_REASON_LEN,
};
use asyncpay::protocol::wire::{
    peek_type, types, write_bigsize, Decoded, Layer, PeerMessage, TlvReader, WireError,
    MAX_MESSAGE_LEN,
};
use asyncpay::testing::{Network, A, A_S_CAPACITY, S};
use asyncpay::tx::Party;
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};
use channel_support::*;
use proptest::prelude::*;
use serde_json::{json, Value};

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes([b % 0x7f + 1; 32]).expect("valid scalar")
}

fn point(b: u8) -> AdaptorPoint {
    AdaptorSecret::from_bytes([b % 0x7f + 1; 32])
        .expect("valid scalar")
        .adaptor_point()
}

fn sig(b: u8) -> Signature {
    key(b).sign(&[b; 32], &[0; 32])
}

fn change() -> impl Strategy<Value = Change> {
    prop_oneof![
        (any::<[u8; 32]>(), any::<u32>()).prop_map(|(t, vout)| Change::Open {
            funding_outpoint: OutPoint {
                txid: Txid::from_byte_array(t),
                vout
            }
        }),
        (
            any::<u64>(),
            any::<u64>(),
            any::<u8>(),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(|(id, amount_sat, t, expiry, k)| {
                let point = point(t);
                Change::AddPtlc {
                    id,
                    amount_sat,
                    point,
                    expiry,
                    claim_signature: EncryptedSignature::encrypt(
                        &key(k),
                        &point,
                        &[k; 32],
                        &[0; 32],
                    ),
                }
            }),
        (any::<u64>(), any::<[u8; 32]>()).prop_map(|(id, s)| Change::FulfilPtlc {
            id,
            secret: RevealedSecret(s)
        }),
        any::<u64>().prop_map(|id| Change::FailPtlc { id }),
        any::<u64>().prop_map(|amount_sat| Change::Transfer { amount_sat }),
        any::<u64>().prop_map(|abandoned| Change::Revert { abandoned }),
    ]
}

fn message() -> impl Strategy<Value = Message> {
    let id = any::<[u8; 32]>().prop_map(ChannelId);
    prop_oneof![
        (
            id.clone(),
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(
                |(channel_id, capacity_sat, push_sat, shared_delay, update_window, k)| {
                    Message::Open(OpenChannel {
                        channel_id,
                        capacity_sat,
                        push_sat,
                        shared_delay,
                        update_window,
                        update_key: key(k).public_key(),
                        payout_key: key(k ^ 0x55).public_key(),
                    })
                }
            ),
        (id.clone(), any::<u8>()).prop_map(|(channel_id, k)| Message::Accept(AcceptChannel {
            channel_id,
            update_key: key(k).public_key(),
            payout_key: key(k ^ 1).public_key(),
        })),
        (id.clone(), any::<u64>(), change(), any::<u8>()).prop_map(
            |(channel_id, state, change, k)| {
                Message::Propose(ProposeUpdate {
                    channel_id,
                    state,
                    change,
                    nonce: sig(k).nonce(),
                })
            }
        ),
        (id.clone(), any::<u64>(), any::<u8>(), any::<bool>()).prop_map(
            |(channel_id, state, k, complete)| {
                let signature = key(k).sign(&[k; 32], &[1; 32]);
                if complete {
                    Message::Complete(CompleteUpdate {
                        channel_id,
                        state,
                        signature,
                    })
                } else {
                    Message::CounterSign(CounterSignUpdate {
                        channel_id,
                        state,
                        signature,
                    })
                }
            }
        ),
        (id.clone(), any::<u64>()).prop_map(|(channel_id, next_state)| Message::Reestablish(
            Reestablish {
                channel_id,
                next_state
            }
        )),
        (
            id.clone(),
            any::<u64>(),
            prop::array::uniform32(any::<u8>()),
            prop::array::uniform32(any::<u8>())
        )
            .prop_map(|(channel_id, fee_sat, a, b)| {
                let mut nonce = [0u8; 66];
                nonce[..32].copy_from_slice(&a);
                nonce[33..65].copy_from_slice(&b);
                Message::CloseProposal(CloseProposal {
                    channel_id,
                    fee_sat,
                    nonce,
                })
            }),
        (id.clone(), any::<[u8; 32]>()).prop_map(|(channel_id, partial_signature)| {
            Message::CloseAccept(CloseAccept {
                channel_id,
                nonce: [2; 66],
                partial_signature,
            })
        }),
        (id.clone(), any::<u8>()).prop_map(|(channel_id, k)| Message::CloseSigned(CloseSigned {
            channel_id,
            signature: sig(k),
        })),
        (id, any::<u16>(), "[a-z é]{0,256}").prop_map(|(channel_id, code, text)| {
            let text: String = text.chars().take(100).collect();
            Message::Error(ErrorMessage {
                channel_id,
                code,
                text,
            })
        }),
    ]
}

fn offer() -> impl Strategy<Value = PurchaseOffer> {
    (
        any::<[u8; 32]>(),
        any::<u8>(),
        any::<[u8; 32]>(),
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        any::<u8>(),
        any::<u32>(),
    )
        .prop_map(
            |(id, lsp, channel, state, amount_sat, fee_sat, t, payee, expiry)| {
                OfferTerms {
                    payment_id: PaymentId(id),
                    lsp: key(lsp).public_key(),
                    channel_id: ChannelId(channel),
                    state,
                    amount_sat,
                    fee_sat,
                    point: point(t),
                    payee: key(payee).public_key(),
                    expiry,
                    held: (state % 3 == 0).then_some(HeldPtlc {
                        id: amount_sat,
                        expiry,
                    }),
                    irrevocable: expiry % 2 == 1,
                }
                .sign(&key(lsp), &[0; 32])
            },
        )
}

fn invoice() -> impl Strategy<Value = Invoice> {
    (
        any::<[u8; 32]>(),
        any::<u8>(),
        any::<u64>(),
        any::<u8>(),
        any::<u8>(),
        prop::option::of((any::<u8>(), any::<u64>(), any::<u32>())),
    )
        .prop_map(|(id, t, amount_sat, payee, lsp, hint)| {
            InvoiceTerms {
                payment_id: PaymentId(id),
                point: point(t),
                amount_sat,
                payee: key(payee).public_key(),
                lsp: key(lsp).public_key(),
                route_hint: hint.map(|(router, fee_sat, expiry_delta)| RouteHint {
                    router: key(router).public_key(),
                    fee_sat,
                    expiry_delta,
                }),
            }
            .sign(&key(payee), &[0; 32])
        })
}

fn outcome() -> impl Strategy<Value = CancelOutcome> {
    prop_oneof![
        Just(CancelOutcome::Cancelled),
        Just(CancelOutcome::SaleInProgress),
        Just(CancelOutcome::Sold),
        Just(CancelOutcome::Expired),
        Just(CancelOutcome::Irrevocable),
    ]
}

fn payment_message() -> impl Strategy<Value = PaymentMessage> {
    let id = any::<[u8; 32]>().prop_map(PaymentId);
    prop_oneof![
        (
            id.clone(),
            any::<[u8; 32]>(),
            any::<u64>(),
            any::<u64>(),
            any::<u64>(),
            any::<u8>()
        )
            .prop_map(|(payment_id, channel, state, amount_sat, fee_sat, payee)| {
                PaymentMessage::Request(PayRequest {
                    payment_id,
                    channel_id: ChannelId(channel),
                    state,
                    amount_sat,
                    fee_sat,
                    payee: key(payee).public_key(),
                    held: (state % 3 == 0).then_some(HeldPtlc {
                        id: amount_sat,
                        expiry: fee_sat as u32,
                    }),
                    irrevocable: fee_sat % 2 == 1,
                })
            }),
        offer().prop_map(PaymentMessage::Offer),
        offer().prop_map(PaymentMessage::ReceiveOffer),
        invoice().prop_map(PaymentMessage::Invoice),
        (id.clone(), "[a-z_é]{0,64}", any::<bool>()).prop_map(|(payment_id, reason, invoice)| {
            let reason: String = reason.chars().take(30).collect();
            if invoice {
                PaymentMessage::InvoiceRefused { payment_id, reason }
            } else {
                PaymentMessage::RequestRefused { payment_id, reason }
            }
        }),
        (id.clone(), any::<bool>()).prop_map(|(payment_id, cancel)| if cancel {
            PaymentMessage::Cancel { payment_id }
        } else {
            PaymentMessage::ReceiptAck { payment_id }
        }),
        (id.clone(), outcome()).prop_map(|(payment_id, outcome)| PaymentMessage::Cancelled {
            payment_id,
            outcome
        }),
        (id.clone(), invoice(), any::<[u8; 32]>()).prop_map(|(payment_id, invoice, scalar)| {
            PaymentMessage::Receipt(Receipt {
                payment_id,
                invoice,
                scalar: RevealedSecret(scalar),
            })
        }),
        (
            id.clone(),
            any::<u8>(),
            any::<u64>(),
            any::<u64>(),
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(
                |(payment_id, t, amount_in_sat, amount_out_sat, expiry_out, next)| {
                    PaymentMessage::Forward(Forward {
                        payment_id,
                        point: point(t),
                        amount_in_sat,
                        amount_out_sat,
                        expiry_out,
                        next: key(next).public_key(),
                    })
                }
            ),
        (id, any::<u64>(), any::<u8>()).prop_map(|(payment_id, amount_sat, payer)| {
            PaymentMessage::ReceiveRequest {
                payment_id,
                amount_sat,
                payer: key(payer).public_key(),
            }
        }),
    ]
}

fn peer_message() -> impl Strategy<Value = PeerMessage> {
    prop_oneof![
        message().prop_map(PeerMessage::Channel),
        payment_message().prop_map(PeerMessage::Payment),
    ]
}

/// A message's top-level records, for editing.
type Records = Vec<(u64, Vec<u8>)>;

fn split(bytes: &[u8]) -> (u16, Records) {
    let message_type = peek_type(bytes).expect("a type");
    let mut r = TlvReader::new("test", &bytes[2..]);
    let mut records = vec![];
    while let Some((t, v)) = r.next_record().expect("a valid stream") {
        records.push((t, v.to_vec()));
    }
    (message_type, records)
}

/// The records as written, in whatever order and however many times they come.
fn join(message_type: u16, records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = message_type.to_be_bytes().to_vec();
    for (t, v) in records {
        write_bigsize(&mut out, *t);
        write_bigsize(&mut out, v.len() as u64);
        out.extend(v);
    }
    out
}

/// The records of a nested stream.
fn split_stream(value: &[u8]) -> Records {
    split(&[&[0, 0][..], value].concat()).1
}

/// A nested stream of these records.
fn join_stream(records: &[(u64, Vec<u8>)]) -> Vec<u8> {
    join(0, records)[2..].to_vec()
}

fn decode(bytes: &[u8]) -> Result<Decoded, WireError> {
    PeerMessage::decode(bytes)
}

/// Which records of a message hold a nested stream.
fn nested_records(message_type: u16) -> &'static [u64] {
    match message_type {
        types::PROPOSE => &[6],
        types::INVOICE => &[10],
        types::RECEIPT => &[2],
        types::REQUEST => &[12],
        types::OFFER | types::RECEIVE_OFFER => &[20],
        _ => &[],
    }
}

/// Whether record `t` of a message of type `message_type` may be left out: an invoice's
/// route hint, a request's or an offer's held PTLC and irrevocable flag.
fn optional(message_type: u16, t: u64) -> bool {
    matches!(
        (message_type, t),
        (types::INVOICE, 10)
            | (types::REQUEST, 12 | 14)
            | (types::OFFER | types::RECEIVE_OFFER, 20 | 22)
    )
}

/// The message without its trailing optional records: without its irrevocable flag, and
/// without both the flag and its held PTLC. A cut that drops exactly those trailing
/// records decodes as one of these (an offer's signature covers them, so S's offer without
/// them no longer verifies).
fn without_trailing(msg: &PeerMessage) -> Vec<PeerMessage> {
    fn strip(msg: &PeerMessage, held_too: bool) -> Option<PeerMessage> {
        let mut msg = msg.clone();
        let (held, irrevocable) = match &mut msg {
            PeerMessage::Payment(PaymentMessage::Request(r)) => (&mut r.held, &mut r.irrevocable),
            PeerMessage::Payment(PaymentMessage::Offer(o) | PaymentMessage::ReceiveOffer(o)) => {
                (&mut o.terms.held, &mut o.terms.irrevocable)
            }
            _ => return None,
        };
        let had_flag = std::mem::take(irrevocable);
        let had_held = held_too && held.take().is_some();
        (had_flag || had_held).then_some(msg)
    }
    strip(msg, false)
        .into_iter()
        .chain(strip(msg, true))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn messages_round_trip(msg in peer_message()) {
        let bytes = msg.encode();
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(peek_type(&bytes), Some(msg.message_type()));
        let layer = match &msg {
            PeerMessage::Channel(_) => Layer::Channel,
            PeerMessage::Payment(_) => Layer::Payment,
        };
        prop_assert_eq!(Layer::of(msg.message_type()), Some(layer));
        prop_assert_eq!(msg.message_type() % 2, 0);
        prop_assert_eq!(decode(&bytes), Ok(Decoded::Message(msg)));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let _ = decode(&bytes);
    }

    /// Random bodies under each known type reach the record parsers of every message.
    #[test]
    fn arbitrary_records_under_a_known_type_never_panic(
        msg in peer_message(),
        body in prop::collection::vec(any::<u8>(), 0..400),
    ) {
        let mut bytes = msg.message_type().to_be_bytes().to_vec();
        bytes.extend(body);
        let _ = decode(&bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(msg in peer_message(), at in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = msg.encode();
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = decode(&bytes);
    }

    #[test]
    fn every_truncation_is_refused(msg in peer_message()) {
        let bytes = msg.encode();
        let shorter: Vec<Vec<u8>> = without_trailing(&msg).iter().map(|m| m.encode()).collect();
        for cut in 0..bytes.len() {
            match decode(&bytes[..cut]) {
                Err(_) => {}
                Ok(_) if shorter.iter().any(|s| s[..] == bytes[..cut]) => {}
                Ok(other) => prop_assert!(false, "a cut at {} of {} decoded: {:?}", cut, bytes.len(), other),
            }
        }
    }

    /// A later version's optional fields, odd records anywhere in a message or in its
    /// nested values, are skipped; the message decodes as it was.
    #[test]
    fn unknown_odd_records_are_skipped(msg in peer_message(), value in prop::collection::vec(any::<u8>(), 0..300)) {
        let (ty, records) = split(&msg.encode());
        prop_assert_eq!(join(ty, &records), msg.encode());
        let want = Ok(Decoded::Message(msg.clone()));
        for at in 1..=records.len() {
            let mut edited = records.clone();
            edited.insert(at, (records[at - 1].0 + 1, value.clone()));
            prop_assert_eq!(decode(&join(ty, &edited)), want.clone());
        }
        let mut edited = records.clone();
        edited.push((0x1_0000_0001, value.clone()));
        prop_assert_eq!(decode(&join(ty, &edited)), want.clone());
        for (i, (t, inner)) in records.iter().enumerate() {
            if !nested_records(ty).contains(t) {
                continue;
            }
            let mut nested = split_stream(inner);
            nested.insert(1, (nested[0].0 + 1, value.clone()));
            let mut edited = records.clone();
            edited[i].1 = join_stream(&nested);
            prop_assert_eq!(decode(&join(ty, &edited)), want.clone());
        }
    }

    /// A field this version would have to understand, an unknown even record, is refused,
    /// at the top level and in nested values.
    #[test]
    fn unknown_even_records_are_refused(msg in peer_message()) {
        let (ty, records) = split(&msg.encode());
        // Past every record type a message of this version knows (an optional one may be
        // left out, so the last present record is not always the highest known).
        let last = records.last().expect("every message has a record").0.max(22);
        let mut edited = records.clone();
        edited.push((last + 2, vec![1]));
        prop_assert_eq!(
            decode(&join(ty, &edited)),
            Err(WireError::UnknownEvenRecord { stream: msg.name(), record_type: last + 2 })
        );
        for (i, (t, inner)) in records.iter().enumerate() {
            if !nested_records(ty).contains(t) {
                continue;
            }
            let mut nested = split_stream(inner);
            let last = nested.last().expect("nested values have records").0;
            nested.push((last + 2, vec![]));
            let mut edited = records.clone();
            edited[i].1 = join_stream(&nested);
            let refused = matches!(
                decode(&join(ty, &edited)),
                Err(WireError::UnknownEvenRecord { record_type, .. }) if record_type == last + 2
            );
            prop_assert!(refused);
        }
    }

    #[test]
    fn records_out_of_order_or_twice_are_refused(msg in peer_message(), at in any::<usize>()) {
        let (ty, records) = split(&msg.encode());
        let i = at % records.len();
        let mut twice = records.clone();
        twice.insert(i, records[i].clone());
        prop_assert_eq!(
            decode(&join(ty, &twice)),
            Err(WireError::Duplicate { stream: msg.name(), record_type: records[i].0 })
        );
        if records.len() >= 2 {
            let i = at % (records.len() - 1);
            let mut swapped = records.clone();
            swapped.swap(i, i + 1);
            prop_assert_eq!(
                decode(&join(ty, &swapped)),
                Err(WireError::OutOfOrder {
                    stream: msg.name(),
                    previous: records[i + 1].0,
                    found: records[i].0,
                })
            );
        }
    }

    /// A record type or length written in a longer BigSize form than needed is refused.
    #[test]
    fn non_minimal_bigsizes_are_refused(msg in peer_message(), at in any::<usize>()) {
        let (ty, records) = split(&msg.encode());
        let i = at % records.len();
        let head = join(ty, &records[..i]);
        let tail = join(0, &records[i + 1..]);
        let (t, value) = &records[i];
        // The type as 0xfd ‖ u16 (all our types are below 0xfd).
        let mut long_type = head.clone();
        long_type.push(0xfd);
        long_type.extend((*t as u16).to_be_bytes());
        write_bigsize(&mut long_type, value.len() as u64);
        long_type.extend(value);
        long_type.extend(&tail[2..]);
        prop_assert_eq!(
            decode(&long_type),
            Err(WireError::NonMinimalBigSize { field: "record type", value: *t })
        );
        // The length as 0xfe ‖ u32.
        let mut long_length = head;
        write_bigsize(&mut long_length, *t);
        long_length.push(0xfe);
        long_length.extend((value.len() as u32).to_be_bytes());
        long_length.extend(value);
        long_length.extend(&tail[2..]);
        prop_assert_eq!(
            decode(&long_length),
            Err(WireError::NonMinimalBigSize { field: "record length", value: value.len() as u64 })
        );
    }

    /// Leaving out any required record is refused, naming the message; only an invoice's
    /// route hint may be left out.
    #[test]
    fn a_missing_required_field_is_refused(msg in peer_message(), at in any::<usize>()) {
        let (ty, records) = split(&msg.encode());
        let i = at % records.len();
        let mut edited = records.clone();
        let (t, _) = edited.remove(i);
        let result = decode(&join(ty, &edited));
        if optional(ty, t) {
            prop_assert!(result.is_ok());
        } else {
            let refused = matches!(result, Err(WireError::Missing { stream, .. }) if stream == msg.name());
            prop_assert!(refused, "{:?}", result);
        }
    }

    /// A length that runs past the end of the input is refused before any byte of it is read.
    #[test]
    fn a_length_beyond_the_input_is_refused(msg in peer_message(), extra in 1u64..u64::MAX) {
        let (ty, records) = split(&msg.encode());
        let (t, value) = records.last().expect("a record").clone();
        let mut bytes = join(ty, &records[..records.len() - 1]);
        write_bigsize(&mut bytes, t);
        write_bigsize(&mut bytes, value.len() as u64 + extra.min(u64::MAX - value.len() as u64));
        bytes.extend(&value);
        let refused = matches!(
            decode(&bytes),
            Err(WireError::LengthBeyondInput { record_type, available, .. })
                if record_type == t && available == value.len()
        );
        prop_assert!(refused);
    }

    /// A message type this build does not know: odd ones are ignored whatever follows,
    /// even ones refused.
    #[test]
    fn unknown_message_types_follow_the_parity_rule(t in any::<u16>(), body in prop::collection::vec(any::<u8>(), 0..64)) {
        let known = (types::OPEN..=types::CLOSE_SIGNED).contains(&t)
            || (types::REQUEST..=types::RECEIVE_OFFER).contains(&t);
        prop_assume!(!(known && t % 2 == 0));
        let mut bytes = t.to_be_bytes().to_vec();
        bytes.extend(body);
        if t % 2 == 1 {
            prop_assert_eq!(decode(&bytes), Ok(Decoded::Ignored { message_type: t }));
        } else {
            prop_assert_eq!(decode(&bytes), Err(WireError::UnknownEvenType { message_type: t }));
        }
    }
}

#[test]
fn a_missing_field_is_named() {
    let open = Message::Open(OpenChannel {
        channel_id: ChannelId([1; 32]),
        capacity_sat: 1,
        push_sat: 0,
        shared_delay: 6,
        update_window: 100,
        update_key: key(1).public_key(),
        payout_key: key(2).public_key(),
    });
    let (ty, mut records) = split(&PeerMessage::Channel(open).encode());
    records.retain(|(t, _)| *t != 10);
    assert_eq!(
        decode(&join(ty, &records)),
        Err(WireError::Missing {
            stream: "open",
            field: "update_key"
        })
    );
    let receipt = samples()
        .into_iter()
        .find(|(name, _)| *name == "receipt")
        .expect("a receipt sample")
        .1;
    let (ty, mut records) = split(&receipt.encode());
    let mut invoice = split_stream(&records[1].1);
    invoice.retain(|(t, _)| *t != 12);
    records[1].1 = join_stream(&invoice);
    assert_eq!(
        decode(&join(ty, &records)),
        Err(WireError::Missing {
            stream: "invoice",
            field: "signature"
        })
    );
}

#[test]
fn input_beyond_the_limit_is_refused_before_it_is_read() {
    let mut bytes = types::CANCEL.to_be_bytes().to_vec();
    bytes.resize(MAX_MESSAGE_LEN + 1, 0);
    assert_eq!(
        decode(&bytes),
        Err(WireError::TooLarge {
            len: MAX_MESSAGE_LEN + 1,
            max: MAX_MESSAGE_LEN
        })
    );
    assert_eq!(
        decode(&[1]),
        Err(WireError::Truncated {
            field: "message type",
            needed: 2,
            available: 1
        })
    );
}

/// The largest message of each kind (longest texts, a route hint, the largest change) takes
/// at most half the limit: the other half is left for the optional fields of later versions.
#[test]
fn the_largest_messages_fit_with_margin() {
    let long_text = "é".repeat(MAX_ERROR_TEXT);
    let long_reason = "x".repeat(MAX_REASON_LEN + 10);
    let mut largest = samples();
    largest.push((
        "error at its limit",
        PeerMessage::Channel(Message::Error(ErrorMessage {
            channel_id: ChannelId([9; 32]),
            code: u16::MAX,
            text: long_text,
        })),
    ));
    largest.push((
        "refusal at its limit",
        PeerMessage::Payment(PaymentMessage::InvoiceRefused {
            payment_id: PaymentId([9; 32]),
            reason: long_reason,
        }),
    ));
    let mut kinds = std::collections::BTreeSet::new();
    for (name, msg) in &largest {
        let len = msg.encode().len();
        assert!(
            len <= MAX_MESSAGE_LEN / 2,
            "{name} takes {len} of {MAX_MESSAGE_LEN} bytes"
        );
        kinds.insert(msg.message_type());
    }
    assert_eq!(kinds.len(), 10 + 12, "a sample of every kind");
    let biggest = largest.iter().map(|(_, m)| m.encode().len()).max().unwrap();
    assert!(
        biggest > 250,
        "the samples include the big ones ({biggest})"
    );
}

/// One message of each kind (every change, an invoice with and without a route hint), made
/// from fixed keys: the same bytes on every run.
fn samples() -> Vec<(&'static str, PeerMessage)> {
    let channel_id = ChannelId([0x11; 32]);
    let payment_id = PaymentId([0x22; 32]);
    let t = point(3);
    let offer = OfferTerms {
        payment_id,
        lsp: key(2).public_key(),
        channel_id,
        state: 7,
        amount_sat: 50_000,
        fee_sat: 100,
        point: t,
        payee: key(3).public_key(),
        expiry: 800_000,
        held: None,
        irrevocable: false,
    }
    .sign(&key(2), &[0; 32]);
    let held = HeldPtlc {
        id: 4,
        expiry: 801_000,
    };
    let held_offer = OfferTerms {
        held: Some(held),
        ..offer.terms.clone()
    }
    .sign(&key(2), &[0; 32]);
    let irrevocable_offer = OfferTerms {
        held: Some(held),
        irrevocable: true,
        ..offer.terms.clone()
    }
    .sign(&key(2), &[0; 32]);
    let invoice = |hint: bool| {
        InvoiceTerms {
            payment_id,
            point: t,
            amount_sat: 50_000,
            payee: key(3).public_key(),
            lsp: key(2).public_key(),
            route_hint: hint.then(|| RouteHint {
                router: key(4).public_key(),
                fee_sat: 10,
                expiry_delta: 14,
            }),
        }
        .sign(&key(3), &[0; 32])
    };
    let propose = |change| {
        PeerMessage::Channel(Message::Propose(ProposeUpdate {
            channel_id,
            state: 7,
            change,
            nonce: sig(5).nonce(),
        }))
    };
    vec![
        (
            "open",
            Message::Open(OpenChannel {
                channel_id,
                capacity_sat: 1_000_000,
                push_sat: 0,
                shared_delay: 6,
                update_window: 1_000,
                update_key: key(1).public_key(),
                payout_key: key(6).public_key(),
            })
            .into(),
        ),
        (
            "accept",
            Message::Accept(AcceptChannel {
                channel_id,
                update_key: key(2).public_key(),
                payout_key: key(7).public_key(),
            })
            .into(),
        ),
        (
            "propose open",
            propose(Change::Open {
                funding_outpoint: OutPoint {
                    txid: Txid::from_byte_array([0x33; 32]),
                    vout: 1,
                },
            }),
        ),
        (
            "propose add_ptlc",
            propose(Change::AddPtlc {
                id: 4,
                amount_sat: 50_000,
                point: t,
                expiry: 800_100,
                claim_signature: EncryptedSignature::encrypt(&key(2), &t, &[8; 32], &[0; 32]),
            }),
        ),
        (
            "propose fulfil_ptlc",
            propose(Change::FulfilPtlc {
                id: 4,
                secret: RevealedSecret([0x44; 32]),
            }),
        ),
        ("propose fail_ptlc", propose(Change::FailPtlc { id: 4 })),
        (
            "propose transfer",
            propose(Change::Transfer { amount_sat: 50_100 }),
        ),
        ("propose revert", propose(Change::Revert { abandoned: 6 })),
        (
            "countersign",
            Message::CounterSign(CounterSignUpdate {
                channel_id,
                state: 7,
                signature: sig(2),
            })
            .into(),
        ),
        (
            "complete",
            Message::Complete(CompleteUpdate {
                channel_id,
                state: 7,
                signature: sig(1),
            })
            .into(),
        ),
        (
            "reestablish",
            Message::Reestablish(Reestablish {
                channel_id,
                next_state: 8,
            })
            .into(),
        ),
        (
            "close_proposal",
            Message::CloseProposal(CloseProposal {
                channel_id,
                fee_sat: 300,
                nonce: [0x02; 66],
            })
            .into(),
        ),
        (
            "close_accept",
            Message::CloseAccept(CloseAccept {
                channel_id,
                nonce: [0x03; 66],
                partial_signature: [0x55; 32],
            })
            .into(),
        ),
        (
            "error",
            Message::Error(ErrorMessage {
                channel_id,
                code: 2,
                text: "proposal for state 7 collides".to_owned(),
            })
            .into(),
        ),
        (
            "close_signed",
            Message::CloseSigned(CloseSigned {
                channel_id,
                signature: sig(9),
            })
            .into(),
        ),
        (
            "request",
            PaymentMessage::Request(PayRequest {
                payment_id,
                channel_id,
                state: 7,
                amount_sat: 50_000,
                fee_sat: 100,
                payee: key(3).public_key(),
                held: None,
                irrevocable: false,
            })
            .into(),
        ),
        (
            "request for a held sale",
            PaymentMessage::Request(PayRequest {
                payment_id,
                channel_id,
                state: 7,
                amount_sat: 50_000,
                fee_sat: 100,
                payee: key(3).public_key(),
                held: Some(held),
                irrevocable: false,
            })
            .into(),
        ),
        ("offer", PaymentMessage::Offer(offer.clone()).into()),
        (
            "irrevocable request for a held sale",
            PaymentMessage::Request(PayRequest {
                payment_id,
                channel_id,
                state: 7,
                amount_sat: 50_000,
                fee_sat: 100,
                payee: key(3).public_key(),
                held: Some(held),
                irrevocable: true,
            })
            .into(),
        ),
        (
            "offer of a held sale",
            PaymentMessage::Offer(held_offer).into(),
        ),
        (
            "irrevocable offer of a held sale",
            PaymentMessage::Offer(irrevocable_offer).into(),
        ),
        ("invoice", PaymentMessage::Invoice(invoice(false)).into()),
        (
            "invoice with a route hint",
            PaymentMessage::Invoice(invoice(true)).into(),
        ),
        (
            "invoice_refused",
            PaymentMessage::InvoiceRefused {
                payment_id,
                reason: "expired".to_owned(),
            }
            .into(),
        ),
        ("cancel", PaymentMessage::Cancel { payment_id }.into()),
        (
            "cancelled",
            PaymentMessage::Cancelled {
                payment_id,
                outcome: CancelOutcome::SaleInProgress,
            }
            .into(),
        ),
        (
            "receipt",
            PaymentMessage::Receipt(Receipt {
                payment_id,
                invoice: invoice(true),
                scalar: RevealedSecret([9; 32]),
            })
            .into(),
        ),
        (
            "receipt_ack",
            PaymentMessage::ReceiptAck { payment_id }.into(),
        ),
        (
            "request_refused",
            PaymentMessage::RequestRefused {
                payment_id,
                reason: "no_pending_state".to_owned(),
            }
            .into(),
        ),
        (
            "forward",
            PaymentMessage::Forward(Forward {
                payment_id,
                point: t,
                amount_in_sat: 50_010,
                amount_out_sat: 50_000,
                expiry_out: 800_086,
                next: key(3).public_key(),
            })
            .into(),
        ),
        (
            "receive_request",
            PaymentMessage::ReceiveRequest {
                payment_id,
                amount_sat: 50_000,
                payer: key(1).public_key(),
            }
            .into(),
        ),
        ("receive_offer", PaymentMessage::ReceiveOffer(offer).into()),
    ]
}

/// Edits of samples that a decoder must refuse, with the error this one gives.
fn refused_samples() -> Vec<(&'static str, Vec<u8>)> {
    let bytes = |name: &str| {
        samples()
            .into_iter()
            .find(|(n, _)| *n == name)
            .expect("a sample")
            .1
            .encode()
    };
    let (ty, reestablish) = split(&bytes("reestablish"));
    let mut out = vec![];
    let mut edited = reestablish.clone();
    edited.push((4, vec![]));
    out.push(("reestablish with an unknown even record", join(ty, &edited)));
    let mut edited = reestablish.clone();
    edited.swap(0, 1);
    out.push(("reestablish with its records swapped", join(ty, &edited)));
    let mut edited = reestablish.clone();
    edited.insert(1, edited[0].clone());
    out.push(("reestablish with a record twice", join(ty, &edited)));
    let mut edited = reestablish.clone();
    edited.remove(1);
    out.push(("reestablish without next_state", join(ty, &edited)));
    let mut long = join(ty, &reestablish[..1]);
    long.extend([0x02, 0xfd, 0x00, 0x08]);
    long.extend(&reestablish[1].1);
    out.push(("reestablish with a non-minimal length", long));
    let mut beyond = join(ty, &reestablish);
    let at = beyond.len() - 9;
    beyond[at] = 9;
    out.push(("reestablish with a length beyond the input", beyond));
    out.push(("an unknown even message type", vec![0x01, 0x14]));
    let (ty, cancelled) = split(&bytes("cancelled"));
    let mut edited = cancelled;
    edited[1].1 = vec![5];
    out.push(("cancelled with an outcome out of range", join(ty, &edited)));
    let (ty, mut edited) = split(&bytes("irrevocable offer of a held sale"));
    edited.last_mut().expect("the flag").1 = vec![1];
    out.push((
        "offer with an irrevocable flag that holds a byte",
        join(ty, &edited),
    ));
    out
}

fn vectors_file() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/wire.json")
}

fn vectors() -> Value {
    let valid: Vec<Value> = samples()
        .into_iter()
        .map(|(name, msg)| json!({"name": name, "hex": hex::encode(msg.encode())}))
        .collect();
    let refused: Vec<Value> = refused_samples()
        .into_iter()
        .map(|(name, bytes)| {
            let error = decode(&bytes).expect_err("a refused sample").to_string();
            json!({"name": name, "hex": hex::encode(bytes), "error": error})
        })
        .collect();
    let ignored = json!([{
        "name": "an unknown odd message type, with a body",
        "hex": "7fff0001ff",
        "message_type": 0x7fff,
    }]);
    json!({
        "about": "asyncpay peer messages in the wire encoding of src/protocol/wire. Written by \
                  ASYNCPAY_WRITE_VECTORS=1 cargo test --test \
                  protocol_messages_round_trip_and_garbage_never_panics wire_vectors, and checked \
                  both ways by that test.",
        "valid": valid,
        "refused": refused,
        "ignored": ignored,
    })
}

/// The file holds exactly the samples: each decodes to its message and the message encodes
/// to its hex; each refused edit is refused with its error; the ignored one is ignored.
#[test]
fn wire_vectors() {
    let expected = vectors();
    if std::env::var_os("ASYNCPAY_WRITE_VECTORS").is_some() {
        let text = serde_json::to_string_pretty(&expected).unwrap() + "\n";
        std::fs::write(vectors_file(), text).expect("write the vectors");
    }
    let text = std::fs::read_to_string(vectors_file()).expect("tests/vectors/wire.json");
    let file: Value = serde_json::from_str(&text).expect("json");
    let samples = samples();
    let valid = file["valid"].as_array().expect("valid vectors");
    assert_eq!(valid.len(), samples.len(), "one vector per sample");
    for ((name, msg), vector) in samples.iter().zip(valid) {
        assert_eq!(vector["name"], *name);
        let bytes = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
        assert_eq!(
            decode(&bytes),
            Ok(Decoded::Message(msg.clone())),
            "{name} decodes"
        );
        assert_eq!(msg.encode(), bytes, "{name} encodes");
    }
    let refused = file["refused"].as_array().expect("refused vectors");
    assert_eq!(refused.len(), refused_samples().len());
    for vector in refused {
        let bytes = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
        let error = decode(&bytes).expect_err("refused");
        assert_eq!(error.to_string(), vector["error"], "{}", vector["name"]);
    }
    for vector in file["ignored"].as_array().expect("ignored vectors") {
        let bytes = hex::decode(vector["hex"].as_str().unwrap()).unwrap();
        let message_type = vector["message_type"].as_u64().unwrap() as u16;
        assert_eq!(decode(&bytes), Ok(Decoded::Ignored { message_type }));
    }
    assert_eq!(file, expected, "the file is what the test writes");
}

/// A node given a message of an unknown odd type reports it and changes nothing; one of an
/// unknown even type is refused with the wire error.
#[test]
fn a_node_ignores_unknown_odd_messages_and_refuses_unknown_even_ones() {
    let mut sim = Network::new();
    let channel = sim.open(A, S, A_S_CAPACITY).expect("channel opens");
    let from = sim.key(A);
    let before = sim.nodes[S].core().channels()[&channel]
        .channel
        .snapshot()
        .clone();
    let core = sim.nodes[S].core.as_mut().expect("running");
    let handled = core
        .handle(NodeInput::Frame {
            from,
            frame: vec![0x01, 0x05, 0x00, 0x00],
        })
        .expect("ignored, not refused");
    assert!(handled.changes.is_empty());
    assert!(matches!(
        &handled.actions[..],
        [NodeOutput::Ignored { peer, message_type: 0x0105 }] if *peer == from
    ));
    let refused = core.handle(NodeInput::Frame {
        from,
        frame: vec![0x01, 0x14],
    });
    assert!(matches!(
        refused,
        Err(NodeError::Wire(WireError::UnknownEvenType {
            message_type: 0x0114
        }))
    ));
    let after = sim.nodes[S].core().channels()[&channel].channel.snapshot();
    assert_eq!(after, &before);
}

fn opened() -> Net<Never> {
    let mut net = Net::new(Never);
    net.open().expect("channel opens");
    net
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Garbage, payment messages, and valid channel messages that are out of place (random
    /// states, signatures and changes), are refused by an open channel without any change to
    /// its state.
    #[test]
    fn garbage_and_stray_messages_leave_the_channel_unchanged(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        stray in message(),
        payment in payment_message(),
        state in 0u64..4,
    ) {
        let mut net = opened();
        for party in [Party::A, Party::S] {
            let before = net.snapshot(party).clone();
            let channel = net.node(party).channel.as_mut().expect("open");
            if channel.handle(Input::PeerBytes(bytes.clone())).is_err() {
                prop_assert_eq!(channel.snapshot(), &before);
            }
            let payment = PeerMessage::Payment(payment.clone()).encode();
            prop_assert!(channel.handle(Input::PeerBytes(payment)).is_err());
            prop_assert_eq!(channel.snapshot(), &before);
            let mut stray = stray.clone();
            // Aim the stray message at this channel so that it reaches the state checks.
            match &mut stray {
                Message::Propose(m) => { m.channel_id = ChannelId([7; 32]); m.state = state; }
                Message::CounterSign(m) => { m.channel_id = ChannelId([7; 32]); m.state = state; }
                Message::Complete(m) => { m.channel_id = ChannelId([7; 32]); m.state = state; }
                _ => {}
            }
            let before = channel.snapshot().clone();
            if channel.handle(Input::Message(stray)).is_err() {
                prop_assert_eq!(channel.snapshot(), &before);
            }
        }
    }
}
