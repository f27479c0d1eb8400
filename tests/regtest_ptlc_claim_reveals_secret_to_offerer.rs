//! S offers A a PTLC locked to T inside state 2 and gives A, in advance, its half of the
//! claim as an adaptor signature encrypted to T (ALL|ANYPREVOUT: SE_2's txid is unknown
//! until an update confirms). The channel closes unilaterally; A claims the PTLC output on
//! chain with t; S reads t from the claim's witness.

mod tx_support;

use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::tx::ptlc::{extract_secret, Claim, Ptlc, PtlcExpiry};
use bitcoin::{Amount, OutPoint};
use tx_support::*;

#[test]
fn ptlc_claim_reveals_secret_to_offerer() {
    let chain = start();
    let channel = Channel::open(&chain);
    let height = chain.height().unwrap() as u32;

    let t = AdaptorSecret::from_bytes([0x42; 32]).unwrap();
    let ptlc = Ptlc {
        offerer: channel.s.x_only_public_key().0,
        payee: channel.a.x_only_public_key().0,
        point: t.adaptor_point(),
        amount: Amount::from_sat(25_000),
        expiry: PtlcExpiry::checked(height, height + 100, SHARED_DELAY).unwrap(),
    };
    let claim = Claim::new(&ptlc, wallet_script(&channel.a)).unwrap();
    // Off chain: S encrypts its half to T, A checks it before accepting the PTLC.
    let encrypted = claim.encrypt_offerer_signature(&channel.s, &[5; 32]);
    claim.verify_offerer_signature(&encrypted).unwrap();

    let se2 = channel.settlement_with(500_000, vec![ptlc.clone()]);
    let (u2, sig_a, sig_s) = channel.signed_update(2, &se2);
    let u2_tx = u2.bind(&channel.spend_funding(), &sig_a, &sig_s).unwrap();
    publish_and_confirm(&chain, &u2_tx, &channel.s);
    chain.mine(u64::from(SHARED_DELAY) - 1).unwrap();
    let se2_tx = se2
        .bind(
            OutPoint {
                txid: u2_tx.compute_txid(),
                vout: 0,
            },
            u2.output(),
        )
        .unwrap();
    publish_and_confirm(&chain, &se2_tx, &channel.s);
    let ptlc_out = OutPoint {
        txid: se2_tx.compute_txid(),
        vout: se2.ptlc_vout(0).expect("PTLC output"),
    };
    assert_eq!(
        utxo(&chain, &ptlc_out),
        Some((ptlc.amount, ptlc.script_pubkey()))
    );

    // A claims with t; a wrong secret cannot even produce the transaction.
    let wrong = AdaptorSecret::from_bytes([0x43; 32]).unwrap();
    assert!(claim
        .finish(ptlc_out, &encrypted, &wrong, &channel.a, &[6; 32])
        .is_err());
    let claim_tx = claim
        .finish(ptlc_out, &encrypted, &t, &channel.a, &[6; 32])
        .unwrap();
    // Tampering with the decrypted signature makes the node refuse the claim.
    let mut forged = claim_tx.clone();
    let mut sig = forged.input[0].witness[0].to_vec();
    sig[10] ^= 1;
    let rest: Vec<Vec<u8>> = forged.input[0]
        .witness
        .iter()
        .skip(1)
        .map(<[u8]>::to_vec)
        .collect();
    forged.input[0].witness =
        bitcoin::Witness::from_slice(&std::iter::once(sig).chain(rest).collect::<Vec<_>>());
    let refused = try_publish(&chain, &forged, &channel.a).expect_err("forged claim");
    assert!(
        refused.contains("script-verify-flag-failed") || refused.contains("Invalid Schnorr"),
        "{refused}"
    );

    publish_and_confirm(&chain, &claim_tx, &channel.a);
    let claim_txid = claim_tx.compute_txid();
    assert_eq!(
        utxo(
            &chain,
            &OutPoint {
                txid: claim_txid,
                vout: 0
            }
        ),
        Some((ptlc.amount, wallet_script(&channel.a)))
    );

    // S, the offerer, reads the claim from the chain and learns t.
    let seen = chain.transaction(&claim_txid).unwrap();
    let learned = extract_secret(&ptlc, &encrypted, &seen).unwrap();
    assert_eq!(learned.to_secret_bytes(), t.to_secret_bytes());
}
