//! A channel is opened from the faucet and closed cooperatively with one MuSig2 key-path
//! signature for the funding output key, through `sendrawtransaction`. A close signed with
//! a forged partial signature is caught before it is combined; the node refuses a close
//! whose aggregate signature was tampered with.

mod tx_support;

use asyncpay::tx::close::{combine, cooperative_close, partial_sign, CloseNonce};
use asyncpay::tx::Party;
use bitcoin::{Amount, OutPoint};
use tx_support::*;

#[test]
fn cooperative_open_and_close() {
    let chain = start();
    let channel = Channel::open(&chain);
    assert_eq!(
        utxo(&chain, &channel.funding_outpoint),
        Some((CHANNEL, channel.funding.script_pubkey()))
    );

    let fee = Amount::from_sat(300);
    let outputs = vec![
        pay(&channel.a, 650_000),
        pay(&channel.s, 350_000 - fee.to_sat()),
    ];
    let tx = cooperative_close(&channel.funding, channel.funding_outpoint, outputs).unwrap();

    // Round 1: public nonces. Round 2: partial signatures.
    let nonce_a = CloseNonce::new(&channel.funding, &channel.a, &[1; 32], &[0xaa; 32]);
    let nonce_s = CloseNonce::new(&channel.funding, &channel.s, &[2; 32], &[0xbb; 32]);
    let nonces = [nonce_a.public(), nonce_s.public()];
    let part_a = partial_sign(
        &channel.funding,
        &tx,
        Party::A,
        &channel.a,
        nonce_a,
        &nonces,
    )
    .unwrap();
    let part_s = partial_sign(
        &channel.funding,
        &tx,
        Party::S,
        &channel.s,
        nonce_s,
        &nonces,
    )
    .unwrap();
    let mut forged = part_s;
    forged[0] ^= 0x10;
    assert!(combine(&channel.funding, &tx, &nonces, [part_a, forged]).is_err());
    let signed = combine(&channel.funding, &tx, &nonces, [part_a, part_s]).unwrap();

    let mut tampered = signed.clone();
    let mut sig = tampered.input[0].witness[0].to_vec();
    sig[63] ^= 1;
    tampered.input[0].witness = bitcoin::Witness::from_slice(&[sig]);
    let refused = chain
        .test_mempool_accept(&tampered)
        .unwrap()
        .expect_err("tampered close");
    assert!(
        refused.contains("script-verify-flag-failed") || refused.contains("mandatory"),
        "{refused}"
    );

    let txid = chain.send_raw(&signed).expect("cooperative close accepted");
    chain.confirm(&txid).unwrap();
    assert_eq!(signed.input[0].witness.len(), 1);
    assert_eq!(
        utxo(&chain, &OutPoint { txid, vout: 0 }),
        Some((Amount::from_sat(650_000), wallet_script(&channel.a)))
    );
    assert_eq!(
        utxo(&chain, &OutPoint { txid, vout: 1 }),
        Some((Amount::from_sat(350_000) - fee, wallet_script(&channel.s)))
    );
    assert_eq!(utxo(&chain, &channel.funding_outpoint), None);
}
