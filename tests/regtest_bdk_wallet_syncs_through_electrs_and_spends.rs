//! A BDK light-client wallet, synced over the Electrum protocol from electrs, sees regtest
//! funds and spends them; the spend goes to the node's mempool through electrs.

use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use bdk_electrum::electrum_client::{self, ElectrumApi};
use bdk_electrum::BdkElectrumClient;
use bdk_wallet::{KeychainKind, SignOptions, Wallet};
use bitcoin::bip32::Xpriv;
use bitcoin::{Amount, FeeRate, Network};

fn full_scan(wallet: &mut Wallet, client: &BdkElectrumClient<electrum_client::Client>) {
    let request = wallet.start_full_scan();
    let update = client
        .full_scan(request, 10, 5, true)
        .expect("electrum full scan");
    wallet.apply_update(update).expect("update connects");
}

#[test]
fn bdk_wallet_syncs_through_electrs_and_spends() {
    let chain = Regtest::start(RegtestOptions {
        electrs: true,
        ..Default::default()
    })
    .expect("regtest with electrs");
    let url = format!("tcp://{}", chain.electrum_url().unwrap());
    let client =
        BdkElectrumClient::new(electrum_client::Client::new(&url).expect("electrum client"));

    let xprv = Xpriv::new_master(Network::Regtest, &[7u8; 32]).unwrap();
    let mut wallet = Wallet::create(
        format!("tr({xprv}/86h/1h/0h/0/*)"),
        format!("tr({xprv}/86h/1h/0h/1/*)"),
    )
    .network(Network::Regtest)
    .create_wallet_no_persist()
    .expect("wallet");

    // Funds arrive through the node's mempool and a block.
    let address = wallet.reveal_next_address(KeychainKind::External).address;
    let funded = Amount::from_sat(1_000_000);
    let (outpoint, _) = chain.fund(&address.script_pubkey(), funded).unwrap();
    chain.confirm(&outpoint.txid).unwrap();
    chain.wait_for_electrs_tip().unwrap();
    full_scan(&mut wallet, &client);
    assert_eq!(
        wallet.balance().confirmed,
        funded,
        "wallet sees the confirmed coin"
    );

    // The wallet spends, broadcasting through electrs to the node's mempool.
    let sent = Amount::from_sat(300_000);
    let mut builder = wallet.build_tx();
    builder
        .add_recipient(chain.faucet_script_pubkey(), sent)
        .fee_rate(FeeRate::from_sat_per_vb(2).unwrap());
    let mut psbt = builder.finish().expect("tx builds");
    psbt.sign(&xprv, wallet.secp_ctx())
        .expect("signs with the wallet's key");
    assert!(wallet
        .finalize_psbt(&mut psbt, SignOptions::default())
        .expect("finalizes"));
    let tx = psbt.extract_tx().expect("complete");
    let fee = wallet.calculate_fee(&tx).expect("fee known");
    let txid = client
        .inner
        .transaction_broadcast(&tx)
        .expect("electrs relays to the node");
    assert!(
        chain.in_mempool(&txid).unwrap(),
        "spend is in the node's mempool"
    );
    chain.confirm(&txid).unwrap();
    chain.wait_for_electrs_tip().unwrap();
    full_scan(&mut wallet, &client);
    assert_eq!(wallet.balance().confirmed, funded - sent - fee);
}
