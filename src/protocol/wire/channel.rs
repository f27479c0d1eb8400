//! The records of the channel messages (listed in `docs/protocol.md`).
//!
//! A proposal's change is one nested stream: record 0 is its kind (one byte), the records
//! after it that kind's fields.

use super::tlv::{truncate_utf8, TlvReader, TlvWriter};
use super::types::*;
use super::WireError;
use crate::protocol::messages::{
    AcceptChannel, Change, CloseAccept, CloseProposal, CloseSigned, CompleteUpdate,
    CounterSignUpdate, ErrorMessage, Message, OpenChannel, ProposeUpdate, Reestablish,
    MAX_ERROR_TEXT,
};

const NAMES: [(u16, &str); 10] = [
    (OPEN, "open"),
    (ACCEPT, "accept"),
    (PROPOSE, "propose"),
    (COUNTERSIGN, "countersign"),
    (COMPLETE, "complete"),
    (REESTABLISH, "reestablish"),
    (CLOSE_PROPOSAL, "close_proposal"),
    (CLOSE_ACCEPT, "close_accept"),
    (ERROR, "error"),
    (CLOSE_SIGNED, "close_signed"),
];

const KIND_OPEN: u8 = 0;
const KIND_ADD_PTLC: u8 = 1;
const KIND_FULFIL_PTLC: u8 = 2;
const KIND_FAIL_PTLC: u8 = 3;
const KIND_TRANSFER: u8 = 4;
const KIND_REVERT: u8 = 5;

pub(super) fn message_type(msg: &Message) -> u16 {
    match msg {
        Message::Open(_) => OPEN,
        Message::Accept(_) => ACCEPT,
        Message::Propose(_) => PROPOSE,
        Message::CounterSign(_) => COUNTERSIGN,
        Message::Complete(_) => COMPLETE,
        Message::Reestablish(_) => REESTABLISH,
        Message::CloseProposal(_) => CLOSE_PROPOSAL,
        Message::CloseAccept(_) => CLOSE_ACCEPT,
        Message::Error(_) => ERROR,
        Message::CloseSigned(_) => CLOSE_SIGNED,
    }
}

pub(super) fn encode(msg: &Message) -> Vec<u8> {
    let mut w = TlvWriter::with_prefix(&message_type(msg).to_be_bytes());
    match msg {
        Message::Open(m) => {
            w.field(0, &m.channel_id)
                .field(2, &m.capacity_sat)
                .field(4, &m.push_sat)
                .field(6, &m.shared_delay)
                .field(8, &m.update_window)
                .field(10, &m.update_key)
                .field(12, &m.payout_key);
        }
        Message::Accept(m) => {
            w.field(0, &m.channel_id)
                .field(2, &m.update_key)
                .field(4, &m.payout_key);
        }
        Message::Propose(m) => {
            w.field(0, &m.channel_id)
                .field(2, &m.state)
                .field(4, &m.nonce)
                .nested(6, |w| encode_change(w, &m.change));
        }
        Message::CounterSign(CounterSignUpdate {
            channel_id,
            state,
            signature,
        })
        | Message::Complete(CompleteUpdate {
            channel_id,
            state,
            signature,
        }) => {
            w.field(0, channel_id).field(2, state).field(4, signature);
        }
        Message::Reestablish(m) => {
            w.field(0, &m.channel_id).field(2, &m.next_state);
        }
        Message::CloseProposal(m) => {
            w.field(0, &m.channel_id)
                .field(2, &m.fee_sat)
                .field(4, &m.nonce);
        }
        Message::CloseAccept(m) => {
            w.field(0, &m.channel_id)
                .field(2, &m.nonce)
                .field(4, &m.partial_signature);
        }
        Message::Error(m) => {
            w.field(0, &m.channel_id)
                .field(2, &m.code)
                .record(4, truncate_utf8(&m.text, MAX_ERROR_TEXT).as_bytes());
        }
        Message::CloseSigned(m) => {
            w.field(0, &m.channel_id).field(2, &m.signature);
        }
    }
    w.into_bytes()
}

fn encode_change(w: &mut TlvWriter, change: &Change) {
    match change {
        Change::Open { funding_outpoint } => {
            w.field(0, &KIND_OPEN).field(2, funding_outpoint);
        }
        Change::AddPtlc {
            id,
            amount_sat,
            point,
            expiry,
            claim_signature,
        } => {
            w.field(0, &KIND_ADD_PTLC)
                .field(2, id)
                .field(4, amount_sat)
                .field(6, point)
                .field(8, expiry)
                .field(10, claim_signature);
        }
        Change::FulfilPtlc { id, secret } => {
            w.field(0, &KIND_FULFIL_PTLC).field(2, id).field(4, secret);
        }
        Change::FailPtlc { id } => {
            w.field(0, &KIND_FAIL_PTLC).field(2, id);
        }
        Change::Transfer { amount_sat } => {
            w.field(0, &KIND_TRANSFER).field(2, amount_sat);
        }
        Change::Revert { abandoned } => {
            w.field(0, &KIND_REVERT).field(2, abandoned);
        }
    }
}

/// The channel message of type `message_type`, or `None` if the type is not a channel
/// message's.
pub(super) fn decode(message_type: u16, body: &[u8]) -> Result<Option<Message>, WireError> {
    let Some(&(_, name)) = NAMES.iter().find(|(t, _)| *t == message_type) else {
        return Ok(None);
    };
    let mut r = TlvReader::checked(name, body)?;
    let msg = match message_type {
        OPEN => Message::Open(OpenChannel {
            channel_id: r.required(0, "channel_id")?,
            capacity_sat: r.required(2, "capacity_sat")?,
            push_sat: r.required(4, "push_sat")?,
            shared_delay: r.required(6, "shared_delay")?,
            update_window: r.required(8, "update_window")?,
            update_key: r.required(10, "update_key")?,
            payout_key: r.required(12, "payout_key")?,
        }),
        ACCEPT => Message::Accept(AcceptChannel {
            channel_id: r.required(0, "channel_id")?,
            update_key: r.required(2, "update_key")?,
            payout_key: r.required(4, "payout_key")?,
        }),
        PROPOSE => Message::Propose(ProposeUpdate {
            channel_id: r.required(0, "channel_id")?,
            state: r.required(2, "state")?,
            nonce: r.required(4, "nonce")?,
            change: decode_change(r.required_nested(6, "change")?)?,
        }),
        COUNTERSIGN => Message::CounterSign(CounterSignUpdate {
            channel_id: r.required(0, "channel_id")?,
            state: r.required(2, "state")?,
            signature: r.required(4, "signature")?,
        }),
        COMPLETE => Message::Complete(CompleteUpdate {
            channel_id: r.required(0, "channel_id")?,
            state: r.required(2, "state")?,
            signature: r.required(4, "signature")?,
        }),
        REESTABLISH => Message::Reestablish(Reestablish {
            channel_id: r.required(0, "channel_id")?,
            next_state: r.required(2, "next_state")?,
        }),
        CLOSE_PROPOSAL => Message::CloseProposal(CloseProposal {
            channel_id: r.required(0, "channel_id")?,
            fee_sat: r.required(2, "fee_sat")?,
            nonce: r.required(4, "nonce")?,
        }),
        CLOSE_ACCEPT => Message::CloseAccept(CloseAccept {
            channel_id: r.required(0, "channel_id")?,
            nonce: r.required(2, "nonce")?,
            partial_signature: r.required(4, "partial_signature")?,
        }),
        ERROR => Message::Error(ErrorMessage {
            channel_id: r.required(0, "channel_id")?,
            code: r.required(2, "code")?,
            text: r.text(4, "text", MAX_ERROR_TEXT)?,
        }),
        CLOSE_SIGNED => Message::CloseSigned(CloseSigned {
            channel_id: r.required(0, "channel_id")?,
            signature: r.required(2, "signature")?,
        }),
        _ => unreachable!("every type in NAMES has a decoder"),
    };
    r.finish()?;
    Ok(Some(msg))
}

fn decode_change(mut r: TlvReader<'_>) -> Result<Change, WireError> {
    let change = match r.required::<u8>(0, "kind")? {
        KIND_OPEN => Change::Open {
            funding_outpoint: r.required(2, "funding_outpoint")?,
        },
        KIND_ADD_PTLC => Change::AddPtlc {
            id: r.required(2, "ptlc_id")?,
            amount_sat: r.required(4, "amount_sat")?,
            point: r.required(6, "point")?,
            expiry: r.required(8, "expiry")?,
            claim_signature: r.required(10, "claim_signature")?,
        },
        KIND_FULFIL_PTLC => Change::FulfilPtlc {
            id: r.required(2, "ptlc_id")?,
            secret: r.required(4, "secret")?,
        },
        KIND_FAIL_PTLC => Change::FailPtlc {
            id: r.required(2, "ptlc_id")?,
        },
        KIND_TRANSFER => Change::Transfer {
            amount_sat: r.required(2, "amount_sat")?,
        },
        KIND_REVERT => Change::Revert {
            abandoned: r.required(2, "abandoned")?,
        },
        kind => return Err(WireError::UnknownChangeKind { kind }),
    };
    r.finish()?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::super::{Decoded, PeerMessage};
    use super::*;
    use crate::crypto::adaptor::{AdaptorSecret, EncryptedSignature};
    use crate::crypto::keys::SecretKey;
    use crate::protocol::messages::ChannelId;

    fn key(b: u8) -> SecretKey {
        SecretKey::from_bytes([b; 32]).expect("valid scalar")
    }

    fn add() -> Message {
        let t = AdaptorSecret::from_bytes([3; 32]).expect("valid scalar");
        let point = t.adaptor_point();
        Message::Propose(ProposeUpdate {
            channel_id: ChannelId([1; 32]),
            state: 9,
            change: Change::AddPtlc {
                id: 4,
                amount_sat: 1000,
                point,
                expiry: 800,
                claim_signature: EncryptedSignature::encrypt(&key(2), &point, &[5; 32], &[0; 32]),
            },
            nonce: key(6).sign(&[1; 32], &[0; 32]).nonce(),
        })
    }

    fn decode(bytes: &[u8]) -> Result<Decoded, WireError> {
        PeerMessage::decode(bytes)
    }

    /// The bytes of a proposal, written out: type, then records 0, 2, 4 and the nested
    /// change 6 whose record 0 is its kind.
    #[test]
    fn a_proposal_is_laid_out_as_documented() {
        let msg = add();
        let bytes = PeerMessage::Channel(msg.clone()).encode();
        let mut expected = vec![0x01, 0x04, 0, 32];
        expected.extend([1; 32]);
        expected.extend([2, 8, 0, 0, 0, 0, 0, 0, 0, 9]);
        let Message::Propose(p) = &msg else {
            unreachable!()
        };
        expected.extend([4, 32]);
        expected.extend(p.nonce.to_xonly_bytes());
        let Change::AddPtlc {
            point,
            claim_signature,
            ..
        } = &p.change
        else {
            unreachable!()
        };
        let change_len = 3 + 10 + 10 + 35 + 6 + 67;
        expected.extend([6, change_len, 0, 1, KIND_ADD_PTLC]);
        expected.extend([2, 8, 0, 0, 0, 0, 0, 0, 0, 4]);
        expected.extend([4, 8, 0, 0, 0, 0, 0, 0, 0x03, 0xe8]);
        expected.extend([6, 33]);
        expected.extend(point.to_bytes());
        expected.extend([8, 4, 0, 0, 0x03, 0x20]);
        expected.extend([10, 65]);
        expected.extend(claim_signature.to_bytes());
        assert_eq!(bytes, expected);
        assert_eq!(decode(&bytes), Ok(Decoded::Message(msg.into())));
    }

    #[test]
    fn an_unknown_change_kind_and_a_field_of_another_kind_are_refused() {
        let transfer = |kind: u8, extra: Option<(u64, &[u8])>| {
            let mut w = TlvWriter::with_prefix(&PROPOSE.to_be_bytes());
            w.field(0, &ChannelId([1; 32]))
                .field(2, &1u64)
                .field(4, &key(6).sign(&[1; 32], &[0; 32]).nonce())
                .nested(6, |c| {
                    c.field(0, &kind).field(2, &5u64);
                    if let Some((t, v)) = extra {
                        c.record(t, v);
                    }
                });
            w.into_bytes()
        };
        assert!(matches!(
            decode(&transfer(KIND_TRANSFER, None)),
            Ok(Decoded::Message(PeerMessage::Channel(Message::Propose(
                ProposeUpdate {
                    change: Change::Transfer { amount_sat: 5 },
                    ..
                }
            ))))
        ));
        assert_eq!(
            decode(&transfer(77, None)),
            Err(WireError::UnknownChangeKind { kind: 77 })
        );
        // Record 4 is a fulfilment's secret, unknown to a transfer.
        assert_eq!(
            decode(&transfer(KIND_TRANSFER, Some((4, &[0; 32])))),
            Err(WireError::UnknownEvenRecord {
                stream: "change",
                record_type: 4
            })
        );
        // An odd record inside the change is skipped.
        assert!(decode(&transfer(KIND_TRANSFER, Some((5, &[0; 3])))).is_ok());
    }

    #[test]
    fn error_text_is_bounded_both_ways() {
        let msg = Message::Error(ErrorMessage {
            channel_id: ChannelId([0; 32]),
            code: 3,
            text: "é".repeat(200),
        });
        match decode(&PeerMessage::Channel(msg).encode()) {
            Ok(Decoded::Message(PeerMessage::Channel(Message::Error(e)))) => {
                assert_eq!(e.text, "é".repeat(MAX_ERROR_TEXT / 2))
            }
            other => panic!("decoded {other:?}"),
        }
        let long = |text: &[u8]| {
            let mut w = TlvWriter::with_prefix(&ERROR.to_be_bytes());
            w.field(0, &ChannelId([0; 32]))
                .field(2, &3u16)
                .record(4, text);
            w.into_bytes()
        };
        assert_eq!(
            decode(&long(&[b'a'; MAX_ERROR_TEXT + 1])),
            Err(WireError::TooLong {
                field: "text",
                len: MAX_ERROR_TEXT + 1,
                max: MAX_ERROR_TEXT
            })
        );
        assert!(matches!(
            decode(&long(&[0xc3])),
            Err(WireError::InvalidField { field: "text", .. })
        ));
    }

    /// A nonce is decoded as the bytes sent, not lifted to a point (which costs a square
    /// root): one that is no curve point's x reaches the channel as it is, and is refused
    /// where it would be priced; a signature with it as R verifies under no key.
    #[test]
    fn a_nonce_off_the_curve_is_kept_as_sent_and_refused_when_priced() {
        let mut bytes = PeerMessage::Channel(add()).encode();
        // Type, channel id record, state record, then the nonce record's header.
        let at = 2 + 34 + 10 + 2;
        bytes[at..at + 32].copy_from_slice(&[0xff; 32]);
        let decoded = decode(&bytes).expect("a nonce is not lifted when decoded");
        let Decoded::Message(PeerMessage::Channel(Message::Propose(ProposeUpdate {
            nonce, ..
        }))) = decoded
        else {
            panic!("decoded as another message: {decoded:?}");
        };
        assert_eq!(nonce.to_xonly_bytes(), [0xff; 32]);
        assert_eq!(
            crate::crypto::adaptor::price_point(&nonce, &key(6).public_key(), &[1; 32]),
            Err(crate::crypto::adaptor::AdaptorError::NonceNotOnCurve { nonce: [0xff; 32] })
        );
    }
}
