//! A publishes a stale update U_1 (a state that paid A more). S answers with the latest
//! update U_3, bound to U_1's update output with the very signatures made for the funding
//! output, before U_1's settlement becomes valid. SE_1 can then never confirm, SE_3 does,
//! and A ends with the state-3 balance. A stale update cannot in turn override the latest:
//! the node rejects U_1 rebound to U_3's output (CLTV), and so does the builder.

mod tx_support;

use asyncpay::tx::update::UpdateOutput;
use asyncpay::tx::{SpentChannel, TxError};
use bitcoin::{Amount, OutPoint};
use tx_support::*;

#[test]
fn stale_update_is_overridden_by_latest() {
    let chain = start();
    let channel = Channel::open(&chain);

    let se1 = channel.settlement(900_000);
    let (u1, u1_a, u1_s) = channel.signed_update(1, &se1);
    let se3 = channel.settlement(600_000);
    let (u3, u3_a, u3_s) = channel.signed_update(3, &se3);
    // S keeps 32 bytes per signed state: the settlement leaf hash.
    let kept_leaf_hash = se1.leaf_hash();

    // A, the cheater, publishes U_1.
    let u1_tx = u1.bind(&channel.spend_funding(), &u1_a, &u1_s).unwrap();
    publish_and_confirm(&chain, &u1_tx, &channel.a);
    let u1_out = OutPoint {
        txid: u1_tx.compute_txid(),
        vout: 0,
    };

    // S rebuilds U_1's update output from the kept hash and binds U_3 to it.
    let stale = UpdateOutput::new(&channel.funding, 1, kept_leaf_hash).unwrap();
    assert_eq!(stale.txout(), u1_tx.output[0]);
    let u3_tx = u3
        .bind(
            &SpentChannel::Update {
                outpoint: u1_out,
                output: &stale,
            },
            &u3_a,
            &u3_s,
        )
        .unwrap();
    chain.mine(1).unwrap(); // well within the shared delay
    publish_and_confirm(&chain, &u3_tx, &channel.s);
    let u3_out = OutPoint {
        txid: u3_tx.compute_txid(),
        vout: 0,
    };

    // A stale update cannot come back: the builder refuses, and the node refuses the
    // same signatures forced onto U_3's output (U_1's nLockTime is below TL(4)).
    assert_eq!(
        u1.bind(
            &SpentChannel::Update {
                outpoint: u3_out,
                output: u3.output()
            },
            &u1_a,
            &u1_s
        ),
        Err(TxError::NotNewer { state: 1, spent: 3 })
    );
    let mut forced = u1_tx.clone();
    forced.input[0].previous_output = u3_out;
    let mut witness = bitcoin::Witness::new();
    witness.push(&u1_tx.input[0].witness[0]);
    witness.push(&u1_tx.input[0].witness[1]);
    witness.push(u3.output().update_leaf().as_bytes());
    witness.push(u3.output().update_control_block().serialize());
    forced.input[0].witness = witness;
    let refused = try_publish(&chain, &forced, &channel.a).expect_err("stale update refused");
    assert!(
        refused.contains("Locktime requirement not satisfied"),
        "{refused}"
    );

    chain.mine(u64::from(SHARED_DELAY)).unwrap();
    // SE_1 is valid only against U_1's output, which U_3 spent.
    let se1_tx = se1.bind(u1_out, &stale).unwrap();
    let refused = try_publish(&chain, &se1_tx, &channel.a).expect_err("U_1 output is spent");
    assert!(
        refused.contains("missing") || refused.contains("spent"),
        "{refused}"
    );

    let se3_tx = se3.bind(u3_out, u3.output()).unwrap();
    publish_and_confirm(&chain, &se3_tx, &channel.s);
    let txid = se3_tx.compute_txid();
    assert_eq!(
        utxo(
            &chain,
            &OutPoint {
                txid,
                vout: se3.a_vout().unwrap()
            }
        ),
        Some((Amount::from_sat(600_000), wallet_script(&channel.a)))
    );
    assert_eq!(
        utxo(
            &chain,
            &OutPoint {
                txid,
                vout: se3.s_vout().unwrap()
            }
        ),
        Some((Amount::from_sat(400_000), wallet_script(&channel.s)))
    );
}
