//! A party's BDK wallet, synced over electrs, is closed and reopened from its SQLite file:
//! it still knows its coins and its tip without syncing, a funding transaction built before
//! the restart still holds its coins back from the next one and can be broadcast after it,
//! and the next sync (an incremental one) finds a payment made while the wallet was closed.

mod wallet_support;

use asyncpay::chain::electrum::Electrum;
use asyncpay::chain::wallet::{Wallet, WalletError, WalletSeed};
use bitcoin::{Amount, Network};
use wallet_support::*;

#[test]
fn wallet_reloaded_from_sqlite_keeps_its_coins_and_reservations() -> anyhow::Result<()> {
    let (chain, url) = start_chain();
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("reload.sqlite");
    let seed = || WalletSeed::from_bytes([0x42; 32]);

    let mut wallet = Wallet::create_or_load(&path, &seed(), Network::Regtest)?;
    let first = wallet.new_address()?;
    let second = wallet.new_address()?;
    chain.fund(&first.script_pubkey(), Amount::from_sat(400_000))?;
    let (coin, _) = chain.fund(&second.script_pubkey(), Amount::from_sat(300_000))?;
    chain.confirm(&coin.txid)?;
    chain.wait_for_electrs_tip()?;
    wallet.sync(&Electrum::new(url.as_str()))?;
    assert_eq!(wallet.balance().confirmed, Amount::from_sat(700_000));
    let tip = wallet.tip_height();
    assert_eq!(u64::from(tip), chain.height()?);

    let target = chain.faucet_script_pubkey();
    let funding = wallet.build_funding(target.clone(), Amount::from_sat(350_000), feerate())?;
    drop(wallet);

    // Reopened: same coins and tip, no sync needed; the funding's coin is still held back.
    let mut wallet = Wallet::create_or_load(&path, &seed(), Network::Regtest)?;
    assert_eq!(wallet.tip_height(), tip);
    assert_eq!(wallet.balance().confirmed, Amount::from_sat(700_000));
    let other = wallet.build_funding(target.clone(), Amount::from_sat(100_000), feerate())?;
    assert!(
        other.tx.input.iter().all(|i| !funding
            .tx
            .input
            .iter()
            .any(|f| f.previous_output == i.previous_output)),
        "a reserved coin is not spent twice"
    );
    wallet.abandon(&other.tx)?;

    // A payment to a revealed address while the wallet is closed.
    drop(wallet);
    let (late, _) = chain.fund(&first.script_pubkey(), Amount::from_sat(55_000))?;
    chain.confirm(&late.txid)?;

    let mut wallet = Wallet::create_or_load(&path, &seed(), Network::Regtest)?;
    let txid = wallet.broadcast(&Electrum::new(url.as_str()), &funding.tx)?;
    assert!(chain.in_mempool(&txid)?, "electrs relayed it to the node");
    chain.confirm(&txid)?;
    chain.wait_for_electrs_tip()?;
    wallet.sync(&Electrum::new(url.as_str()))?;
    assert_eq!(
        wallet.balance().confirmed,
        Amount::from_sat(700_000 + 55_000 - 350_000) - funding.fee
    );
    assert_eq!(u64::from(wallet.tip_height()), chain.height()?);
    drop(wallet);

    // The file belongs to this seed and this network.
    assert!(matches!(
        Wallet::create_or_load(&path, &WalletSeed::from_bytes([0x43; 32]), Network::Regtest),
        Err(WalletError::Load(_))
    ));
    assert!(matches!(
        Wallet::create_or_load(&path, &seed(), Network::Signet),
        Err(WalletError::Load(_))
    ));
    Ok(())
}
