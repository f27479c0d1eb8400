//! S offers A a PTLC; A never claims. After the expiry height S takes the amount back
//! through the timeout leaf, paying the fee from the PTLC amount; before expiry the node
//! refuses the same transaction.

mod tx_support;

use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::tx::ptlc::{Ptlc, PtlcExpiry, Timeout};
use bitcoin::{Amount, OutPoint};
use tx_support::*;

#[test]
fn ptlc_times_out_to_offerer() {
    let chain = start();
    let channel = Channel::open(&chain);
    let height = chain.height().unwrap() as u32;
    let minimum = 2 * u32::from(SHARED_DELAY);
    assert!(PtlcExpiry::checked(height, height + minimum - 1, SHARED_DELAY).is_err());
    let expiry = height + minimum + 10;

    let t = AdaptorSecret::from_bytes([0x24; 32]).unwrap();
    let ptlc = Ptlc {
        offerer: channel.s.x_only_public_key().0,
        payee: channel.a.x_only_public_key().0,
        point: t.adaptor_point(),
        amount: Amount::from_sat(30_000),
        expiry: PtlcExpiry::checked(height, expiry, SHARED_DELAY).unwrap(),
    };
    let se1 = channel.settlement_with(400_000, vec![ptlc.clone()]);
    let (u1, sig_a, sig_s) = channel.signed_update(1, &se1);
    let u1_tx = u1.bind(&channel.spend_funding(), &sig_a, &sig_s).unwrap();
    publish_and_confirm(&chain, &u1_tx, &channel.s);
    chain.mine(u64::from(SHARED_DELAY) - 1).unwrap();
    let se1_tx = se1
        .bind(
            OutPoint {
                txid: u1_tx.compute_txid(),
                vout: 0,
            },
            u1.output(),
        )
        .unwrap();
    publish_and_confirm(&chain, &se1_tx, &channel.s);
    let ptlc_out = OutPoint {
        txid: se1_tx.compute_txid(),
        vout: se1.ptlc_vout(0).unwrap(),
    };
    assert!((chain.height().unwrap() as u32) < expiry);

    let fee = Amount::from_sat(500);
    let timeout = Timeout::new(&ptlc, ptlc_out, wallet_script(&channel.s), fee)
        .unwrap()
        .sign(&channel.s, &[7; 32])
        .unwrap();
    // Refused while the next block is at the expiry height, accepted one block later
    // (nLockTime = expiry: valid in blocks above it).
    let tip = chain.height().unwrap() as u32;
    chain.mine(u64::from(expiry - 1 - tip)).unwrap();
    let early = chain
        .test_mempool_accept(&timeout)
        .unwrap()
        .expect_err("before expiry");
    assert!(early.contains("non-final"), "{early}");
    chain.mine(1).unwrap();
    let txid = chain
        .send_raw(&timeout)
        .expect("timeout accepted after expiry");
    chain.confirm(&txid).unwrap();
    assert_eq!(
        utxo(&chain, &OutPoint { txid, vout: 0 }),
        Some((ptlc.amount - fee, wallet_script(&channel.s)))
    );
    assert_eq!(utxo(&chain, &ptlc_out), None);
}
