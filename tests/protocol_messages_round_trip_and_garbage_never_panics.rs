//! Every message round-trips through its encoding; arbitrary bytes, and single-byte
//! corruptions of valid messages, give a typed error or a valid message but never a panic;
//! fed to an open channel they never change its state.

mod channel_support;

use asyncpay::crypto::adaptor::{AdaptorSecret, EncryptedSignature};
use asyncpay::crypto::keys::SecretKey;
use asyncpay::protocol::channel::Input;
use asyncpay::protocol::messages::*;
use asyncpay::tx::Party;
use bitcoin::hashes::Hash as _;
use bitcoin::{OutPoint, Txid};
use channel_support::*;
use proptest::prelude::*;

fn key(b: u8) -> SecretKey {
    SecretKey::from_bytes([b % 0x7f + 1; 32]).expect("valid scalar")
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
            1u8..255,
            any::<u32>(),
            any::<u8>()
        )
            .prop_map(|(id, amount_sat, t, expiry, k)| {
                let point = AdaptorSecret::from_bytes([t; 32])
                    .expect("valid")
                    .adaptor_point();
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
                    nonce: key(k).sign(&[k; 32], &[0; 32]).nonce(),
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
            signature: key(k).sign(&[3; 32], &[0; 32]),
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

fn opened() -> Net<Never> {
    let mut net = Net::new(Never);
    net.open().expect("channel opens");
    net
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn messages_round_trip(msg in message()) {
        let bytes = msg.encode();
        prop_assert!(bytes.len() <= MAX_MESSAGE_LEN);
        prop_assert_eq!(Message::decode(&bytes), Ok(msg));
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1200)) {
        let _ = Message::decode(&bytes);
    }

    #[test]
    fn corrupted_messages_never_panic(msg in message(), at in any::<usize>(), byte in any::<u8>(), cut in any::<usize>()) {
        let mut bytes = msg.encode();
        let i = at % bytes.len();
        bytes[i] = byte;
        let _ = Message::decode(&bytes);
        let _ = Message::decode(&bytes[..cut % (bytes.len() + 1)]);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Garbage, and valid messages that are out of place (random states, signatures and
    /// changes), are refused by an open channel without any change to its state.
    #[test]
    fn garbage_and_stray_messages_leave_the_channel_unchanged(
        bytes in prop::collection::vec(any::<u8>(), 0..300),
        stray in message(),
        state in 0u64..4,
    ) {
        let mut net = opened();
        for party in [Party::A, Party::S] {
            let before = net.snapshot(party).clone();
            let channel = net.node(party).channel.as_mut().expect("open");
            if channel.handle(Input::PeerBytes(bytes.clone())).is_err() {
                prop_assert_eq!(channel.snapshot(), &before);
            }
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
