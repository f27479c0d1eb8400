//! Measures the weight and virtual size of every transaction kind from transactions the
//! regtest node accepted and mined, and prints them as the rows of the table in
//! docs/transactions.md:
//!
//! `cargo test --test regtest_eltoo_transaction_sizes_are_measured -- --nocapture`
//!
//! Balances and PTLC outputs pay P2TR scripts; CPFP children spend a P2TR key-path coin.

mod tx_support;

use asyncpay::crypto::adaptor::AdaptorSecret;
use asyncpay::tx::close::{combine, cooperative_close, partial_sign, CloseNonce};
use asyncpay::tx::ptlc::{Claim, Ptlc, PtlcExpiry, Timeout};
use asyncpay::tx::update::UpdateOutput;
use asyncpay::tx::{Party, SpentChannel};
use bitcoin::{Amount, OutPoint};
use tx_support::*;

fn outpoint(tx: &bitcoin::Transaction, vout: u32) -> OutPoint {
    OutPoint {
        txid: tx.compute_txid(),
        vout,
    }
}

#[test]
fn transaction_sizes_are_measured() {
    let chain = start();
    println!("VBYTES | transaction | weight (WU) | vsize (vB) |");

    // Updates from the funding output and from an older update output; a settlement
    // without PTLCs; the CPFP child.
    let ch = Channel::open(&chain);
    let se1 = ch.settlement(800_000);
    let (u1, a1, s1) = ch.signed_update(1, &se1);
    let u1_tx = u1.bind(&ch.spend_funding(), &a1, &s1).unwrap();
    let child = publish_and_confirm(&chain, &u1_tx, &ch.a);
    report_size(
        "update U_n spending the funding output",
        &chain,
        &u1_tx.compute_txid(),
    );
    report_size(
        "CPFP child (P2A + P2TR key-path coin -> P2TR)",
        &chain,
        &child.compute_txid(),
    );
    let se3 = ch.settlement(700_000);
    let (u3, a3, s3) = ch.signed_update(3, &se3);
    let stale = UpdateOutput::new(&ch.funding, 1, se1.leaf_hash()).unwrap();
    let u3_tx = u3
        .bind(
            &SpentChannel::Update {
                outpoint: outpoint(&u1_tx, 0),
                output: &stale,
            },
            &a3,
            &s3,
        )
        .unwrap();
    publish_and_confirm(&chain, &u3_tx, &ch.s);
    report_size(
        "update U_n spending an older update output",
        &chain,
        &u3_tx.compute_txid(),
    );
    chain.mine(u64::from(SHARED_DELAY) - 1).unwrap();
    let se3_tx = se3.bind(outpoint(&u3_tx, 0), u3.output()).unwrap();
    publish_and_confirm(&chain, &se3_tx, &ch.s);
    report_size(
        "settlement SE_n, 2 balances, 0 PTLCs",
        &chain,
        &se3_tx.compute_txid(),
    );

    // A settlement with two PTLCs, one claimed and one timed out.
    let ch = Channel::open(&chain);
    let height = chain.height().unwrap() as u32;
    let expiry = PtlcExpiry::checked(
        height,
        height + 2 * u32::from(SHARED_DELAY) + 5,
        SHARED_DELAY,
    )
    .unwrap();
    let ptlc = |byte: u8| Ptlc {
        offerer: ch.s.x_only_public_key().0,
        payee: ch.a.x_only_public_key().0,
        point: AdaptorSecret::from_bytes([byte; 32])
            .unwrap()
            .adaptor_point(),
        amount: Amount::from_sat(20_000),
        expiry,
    };
    let (p0, p1) = (ptlc(1), ptlc(2));
    let se = ch.settlement_with(500_000, vec![p0.clone(), p1.clone()]);
    let (u, a, s) = ch.signed_update(1, &se);
    let u_tx = u.bind(&ch.spend_funding(), &a, &s).unwrap();
    publish_and_confirm(&chain, &u_tx, &ch.s);
    chain.mine(u64::from(SHARED_DELAY) - 1).unwrap();
    let se_tx = se.bind(outpoint(&u_tx, 0), u.output()).unwrap();
    publish_and_confirm(&chain, &se_tx, &ch.s);
    report_size(
        "settlement SE_n, 2 balances, 2 PTLCs",
        &chain,
        &se_tx.compute_txid(),
    );

    let claim = Claim::new(&p0, wallet_script(&ch.a)).unwrap();
    let enc = claim.encrypt_offerer_signature(&ch.s, &[9; 32]);
    let t = AdaptorSecret::from_bytes([1; 32]).unwrap();
    let claim_tx = claim
        .finish(
            outpoint(&se_tx, se.ptlc_vout(0).unwrap()),
            &enc,
            &t,
            &ch.a,
            &[3; 32],
        )
        .unwrap();
    publish_and_confirm(&chain, &claim_tx, &ch.a);
    report_size(
        "PTLC claim (success leaf, adaptor-completed)",
        &chain,
        &claim_tx.compute_txid(),
    );

    let tip = chain.height().unwrap() as u32;
    chain
        .mine(u64::from(expiry.height().saturating_sub(tip)))
        .unwrap();
    let timeout = Timeout::new(
        &p1,
        outpoint(&se_tx, se.ptlc_vout(1).unwrap()),
        wallet_script(&ch.s),
        Amount::from_sat(400),
    )
    .unwrap()
    .sign(&ch.s, &[4; 32])
    .unwrap();
    let txid = chain.send_raw(&timeout).unwrap();
    chain.confirm(&txid).unwrap();
    report_size("PTLC timeout (timeout leaf)", &chain, &txid);

    // Cooperative close.
    let ch = Channel::open(&chain);
    let tx = cooperative_close(
        &ch.funding,
        ch.funding_outpoint,
        vec![pay(&ch.a, 600_000), pay(&ch.s, 399_700)],
    )
    .unwrap();
    let na = CloseNonce::new(&ch.funding, &ch.a, &[1; 32], &[2; 32]);
    let ns = CloseNonce::new(&ch.funding, &ch.s, &[3; 32], &[4; 32]);
    let nonces = [na.public(), ns.public()];
    let pa = partial_sign(&ch.funding, &tx, Party::A, &ch.a, na, &nonces).unwrap();
    let ps = partial_sign(&ch.funding, &tx, Party::S, &ch.s, ns, &nonces).unwrap();
    let signed = combine(&ch.funding, &tx, &nonces, [pa, ps]).unwrap();
    let txid = chain.send_raw(&signed).unwrap();
    chain.confirm(&txid).unwrap();
    report_size(
        "cooperative close (MuSig2 key path, 2 outputs)",
        &chain,
        &txid,
    );
}
