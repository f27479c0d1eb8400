//! A publishes the latest update U_3 alone; after the shared delay SE_3 pays both parties
//! their state-3 balances exactly. Every transaction goes through the mempool: U_3 and SE_3
//! each as a zero-fee v3 parent with a CPFP child in a `submitpackage` package.

mod tx_support;

use bitcoin::OutPoint;
use tx_support::*;

#[test]
fn unilateral_close_settles_latest_state() {
    let chain = start();
    let channel = Channel::open(&chain);

    // Three states; each moves 100k sats from A to S.
    let states: Vec<_> = (1..=3u32)
        .map(|n| {
            let se = channel.settlement(900_000 - 100_000 * u64::from(n));
            let (update, sig_a, sig_s) = channel.signed_update(n, &se);
            (se, update, sig_a, sig_s)
        })
        .collect();
    let (se3, u3, sig_a, sig_s) = &states[2];

    let u3_tx = u3
        .bind(&channel.spend_funding(), sig_a, sig_s)
        .expect("signatures verify");
    publish_and_confirm(&chain, &u3_tx, &channel.a);
    let update_outpoint = OutPoint {
        txid: u3_tx.compute_txid(),
        vout: 0,
    };
    assert_eq!(
        utxo(&chain, &update_outpoint),
        Some((CHANNEL, u3.output().txout().script_pubkey))
    );

    // SE_3 is not valid one block before the shared delay has passed...
    let coins = fee_coins(&chain, &channel.a, 2);
    let confirmed_at = chain.height().unwrap() - 1; // U_3's block; the coins are in the next
    let se3_tx = se3.bind(update_outpoint, u3.output()).expect("SE_3 binds");
    let tip = confirmed_at + u64::from(SHARED_DELAY) - 2;
    chain.mine(tip - chain.height().unwrap()).unwrap();
    let early = try_publish_using(&chain, &se3_tx, &channel.a, coins[0].clone())
        .expect_err("one block too early");
    assert!(early.contains("non-BIP68-final"), "{early}");

    // ...and is in the next block, exactly shared_delay blocks after U_3's.
    chain.mine(1).unwrap();
    let txid = try_publish_using(&chain, &se3_tx, &channel.a, coins[1].clone())
        .unwrap_or_else(|e| panic!("SE_3 refused after the delay: {e}"));
    let mined_at = chain.confirm(&txid).unwrap();
    assert_eq!(mined_at, confirmed_at + u64::from(SHARED_DELAY));
    let txid = se3_tx.compute_txid();
    let a_out = OutPoint {
        txid,
        vout: se3.a_vout().expect("A's balance is not dust"),
    };
    let s_out = OutPoint {
        txid,
        vout: se3.s_vout().expect("S's balance is not dust"),
    };
    assert_eq!(
        utxo(&chain, &a_out),
        Some((
            bitcoin::Amount::from_sat(600_000),
            wallet_script(&channel.a)
        ))
    );
    assert_eq!(
        utxo(&chain, &s_out),
        Some((
            bitcoin::Amount::from_sat(400_000),
            wallet_script(&channel.s)
        ))
    );
    // The update output is gone: nothing can replace the settled state any more.
    assert_eq!(utxo(&chain, &update_outpoint), None);
}
