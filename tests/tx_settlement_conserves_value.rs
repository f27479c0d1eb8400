//! Property tests of the builders without a node: a settlement and its update never
//! create or destroy value (the outputs, dust trimmed into the anchor, add up to the
//! channel exactly), every non-anchor output is above its dust limit, and the update and
//! covenant signatures do not depend on where U_n and SE_n are bound.

use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::tx::ptlc::{Ptlc, PtlcExpiry};
use asyncpay::tx::update::UpdateOutput;
use asyncpay::tx::{
    dust_limit, ChannelKeys, Funding, Settlement, SettlementTerms, SpentChannel, TxError, Update,
};
use bitcoin::hashes::Hash;
use bitcoin::secp256k1::{Keypair, Secp256k1, SecretKey};
use bitcoin::{Amount, OutPoint, ScriptBuf, TxOut, Txid};
use proptest::prelude::*;

fn key(b: u8) -> Keypair {
    Keypair::from_secret_key(&Secp256k1::new(), &SecretKey::from_slice(&[b; 32]).unwrap())
}

fn p2tr(b: u8) -> ScriptBuf {
    ScriptBuf::new_p2tr(&Secp256k1::new(), key(b).x_only_public_key().0, None)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn settlement_conserves_value(
        a in 0u64..200_000,
        ptlc_amounts in proptest::collection::vec(1u64..5_000, 0..4),
        extra in 0u64..200_000,
        delay in 1u16..1_000,
    ) {
        let in_ptlcs: u64 = ptlc_amounts.iter().sum();
        let channel = a + in_ptlcs + extra;
        prop_assume!(channel > 0);
        let keys = ChannelKeys::new(key(1).x_only_public_key().0, key(2).x_only_public_key().0);
        let funding = Funding::new(keys, Amount::from_sat(channel));
        let ptlcs: Vec<Ptlc> = ptlc_amounts
            .iter()
            .enumerate()
            .map(|(i, sats)| Ptlc {
                offerer: keys.s,
                payee: keys.a,
                point: AdaptorSecret::from_bytes([i as u8 + 1; 32]).unwrap().adaptor_point(),
                amount: Amount::from_sat(*sats),
                expiry: PtlcExpiry::checked(100, 100 + 2 * u32::from(delay), delay).unwrap(),
            })
            .collect();
        let terms = SettlementTerms {
            a: TxOut { value: Amount::from_sat(a), script_pubkey: p2tr(3) },
            s: TxOut { value: Amount::from_sat(extra), script_pubkey: p2tr(4) },
            ptlcs,
        };
        let se = Settlement::new(&funding, delay, terms).unwrap();
        let tx = se.unsigned_tx();
        let total: Amount = tx.output.iter().map(|o| o.value).sum();
        prop_assert_eq!(total, funding.value());
        let anchor = se.anchor_vout() as usize;
        prop_assert_eq!(anchor, tx.output.len() - 1);
        for (i, out) in tx.output.iter().enumerate() {
            if i != anchor {
                prop_assert!(out.value >= dust_limit(&out.script_pubkey));
            }
        }

        // U_n: one output of the whole value plus an empty anchor, whatever it spends.
        let update = Update::new(&funding, 7, &se).unwrap();
        prop_assert_eq!(update.unsigned_tx().output[0].value, funding.value());
        prop_assert_eq!(update.unsigned_tx().output[1].value, Amount::ZERO);

        // SE_n binds to U_n's output wherever U_n ends up; not to another state's.
        let somewhere = OutPoint { txid: Txid::from_byte_array([9; 32]), vout: 0 };
        let bound = se.bind(somewhere, update.output()).unwrap();
        prop_assert_eq!(&bound.output, &tx.output);
        let other = UpdateOutput::new(&funding, 7, Settlement::new(
            &funding,
            delay,
            SettlementTerms {
                a: TxOut { value: funding.value(), script_pubkey: p2tr(3) },
                s: TxOut { value: Amount::ZERO, script_pubkey: p2tr(4) },
                ptlcs: vec![],
            },
        ).unwrap().leaf_hash()).unwrap();
        if other.settlement_leaf_hash() != se.leaf_hash() {
            prop_assert!(
                matches!(se.bind(somewhere, &other), Err(TxError::WrongSettlement { .. })),
                "bound to another state's output"
            );
        }
    }

    #[test]
    fn update_signatures_survive_rebinding(older in 0u32..1_000, gap in 1u32..1_000, vout in 0u32..4) {
        let secp = Secp256k1::new();
        let (a, s) = (key(5), key(6));
        let keys = ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0);
        let funding = Funding::new(keys, Amount::from_sat(100_000));
        let se = Settlement::new(&funding, 6, SettlementTerms {
            a: TxOut { value: Amount::from_sat(50_000), script_pubkey: p2tr(3) },
            s: TxOut { value: Amount::from_sat(50_000), script_pubkey: p2tr(4) },
            ptlcs: vec![],
        }).unwrap();
        let newer = Update::new(&funding, older + gap, &se).unwrap();
        let old = Update::new(&funding, older, &se).unwrap();
        let (sa, ss) = (newer.sign(&secp, &a, &[1; 32]), newer.sign(&secp, &s, &[2; 32]));
        let outpoint = OutPoint { txid: Txid::from_byte_array([7; 32]), vout };
        let on_funding = newer.bind(&SpentChannel::Funding { outpoint, funding: &funding }, &sa, &ss);
        let on_update = newer.bind(&SpentChannel::Update { outpoint, output: old.output() }, &sa, &ss);
        prop_assert!(on_funding.is_ok() && on_update.is_ok());
        let back = old.bind(&SpentChannel::Update { outpoint, output: newer.output() },
            &old.sign(&secp, &a, &[1; 32]), &old.sign(&secp, &s, &[2; 32]));
        prop_assert!(matches!(back, Err(TxError::NotNewer { .. })), "older state bound to newer output");
    }
}
