//! A light-client wallet for the channel parties: BDK (`bdk_wallet`) over the Electrum
//! protocol (electrs), persisted in SQLite.
//!
//! Keys are BIP86 taproot descriptors derived from a 32-byte seed
//! (`tr(xprv/86'/coin'/0'/{0,1}/*)`); everything the wallet learns or reveals (addresses, synced
//! transactions, coins reserved for a transaction not yet broadcast) is written to its SQLite
//! file before the call that changed it returns, so a restarted process sees the same wallet.
//!
//! What the channel needs from it:
//!
//! - [`Wallet::build_funding`]: a signed, not yet broadcast, funding transaction paying the
//!   channel's script, its change kept by the wallet and its inputs reserved until the
//!   transaction is broadcast;
//! - [`Wallet::payout_key`]: a key whose key-path P2TR script is a wallet address, so that a
//!   channel's settlement pays straight into the wallet;
//! - [`Wallet::cpfp_child`]: the version 3 child that spends a zero-fee parent's pay-to-anchor
//!   output plus one confirmed wallet coin and pays the package's fee, for `submitpackage`
//!   (electrs cannot relay packages: the caller submits it to a node and then tells the wallet
//!   with [`Wallet::record_broadcast`]);
//! - [`Wallet::sync`], [`Wallet::balance`], [`Wallet::new_address`], [`Wallet::broadcast`].
//!
//! ```no_run
//! use asyncpay::chain::electrum::Electrum;
//! use asyncpay::chain::wallet::{Wallet, WalletSeed};
//! use bitcoin::{Amount, FeeRate, Network, ScriptBuf};
//!
//! let electrum = Electrum::new("tcp://127.0.0.1:50001");
//! let mut wallet = Wallet::create_or_load("/tmp/a.sqlite", &WalletSeed::from_bytes([7; 32]), Network::Regtest)?;
//! wallet.sync(&electrum)?;
//! let funding = wallet.build_funding(
//!     ScriptBuf::new_p2a(),
//!     Amount::from_sat(100_000),
//!     FeeRate::from_sat_per_vb(2).expect("small feerate"),
//! )?;
//! wallet.broadcast(&electrum, &funding.tx)?;
//! # Ok::<(), asyncpay::chain::wallet::WalletError>(())
//! ```

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use bdk_electrum::electrum_client;
use bdk_electrum::BdkElectrumClient;
use bdk_wallet::chain::local_chain::CannotConnectError;
use bdk_wallet::coin_selection::LargestFirstCoinSelection;
use bdk_wallet::error::CreateTxError;
use bdk_wallet::miniscript::descriptor::Descriptor;
use bdk_wallet::rusqlite::Connection;
use bdk_wallet::signer::SignerError;
use bdk_wallet::{
    Balance, CreateWithPersistError, KeychainKind, LoadWithPersistError, PersistedWallet,
    SignOptions, TxOrdering,
};
use bitcoin::bip32::Xpriv;
use bitcoin::psbt::Psbt;
use bitcoin::{Address, Amount, FeeRate, Network, OutPoint, ScriptBuf, Transaction, Txid, Witness};
use zeroize::Zeroize;

use crate::chain::electrum::Electrum;
use crate::crypto::keys::PublicKey;
use crate::tx::anchor::find_anchor;
use crate::tx::{dust_limit, TxError};

/// Script pubkeys asked for at once in a full scan or sync.
const BATCH_SIZE: usize = 10;
/// Unused addresses after which a full scan stops.
const STOP_GAP: usize = 20;
/// Weight of a BIP340 key-path witness: item count, length, 64-byte signature.
const KEY_SPEND_WITNESS: [u8; 64] = [0; 64];

/// The 32 bytes every key of a wallet is derived from. Wiped on drop, redacted in `Debug`.
pub struct WalletSeed([u8; 32]);

impl WalletSeed {
    /// Wraps seed bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        WalletSeed(bytes)
    }
}

impl Drop for WalletSeed {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

impl core::fmt::Debug for WalletSeed {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("WalletSeed(<redacted>)")
    }
}

/// What can go wrong in the wallet.
#[derive(Debug, thiserror::Error)]
pub enum WalletError {
    /// The SQLite file could not be opened.
    #[error("cannot open wallet database {path}")]
    Open {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: bdk_wallet::rusqlite::Error,
    },
    /// The seed gives no master key for this network.
    #[error("cannot derive the master key")]
    Key(#[from] bitcoin::bip32::Error),
    /// A new wallet could not be written.
    #[error("cannot create the wallet")]
    Create(#[from] Box<CreateWithPersistError<bdk_wallet::rusqlite::Error>>),
    /// The stored wallet could not be read, or belongs to another seed or network.
    #[error("cannot load the wallet")]
    Load(#[from] Box<LoadWithPersistError<bdk_wallet::rusqlite::Error>>),
    /// A change could not be written to the database.
    #[error("cannot persist the wallet")]
    Persist(#[source] bdk_wallet::rusqlite::Error),
    /// The Electrum server failed or could not be reached.
    #[error("electrum: {0}")]
    Electrum(#[from] electrum_client::Error),
    /// A sync result does not connect to the wallet's chain (the server changed chains).
    #[error("sync result does not connect to the wallet's chain")]
    CannotConnect(#[from] CannotConnectError),
    /// The wallet cannot build the transaction (not enough funds, for one).
    #[error("cannot build the transaction")]
    Build(#[from] CreateTxError),
    /// Signing an input failed.
    #[error("cannot sign input {input}")]
    Sign {
        /// The input.
        input: usize,
        /// Why.
        #[source]
        source: bitcoin::psbt::SignError,
    },
    /// Finalizing the signed inputs failed.
    #[error("cannot finalize")]
    Finalize(#[from] SignerError),
    /// The signed transaction is incomplete.
    #[error("transaction {txid} could not be fully signed")]
    NotFinalized {
        /// Its txid.
        txid: Txid,
    },
    /// The signed transaction could not be extracted from its PSBT.
    #[error("cannot extract the signed transaction")]
    Extract(#[source] Box<bitcoin::psbt::ExtractTxError>),
    /// A PSBT could not be made from the transaction.
    #[error("psbt")]
    Psbt(#[from] bitcoin::psbt::Error),
    /// The built transaction does not pay the requested output (a wallet bug, never expected).
    #[error("funding transaction {txid} has no output of {amount} to the channel script")]
    NoFundingOutput {
        /// The built transaction.
        txid: Txid,
        /// The requested amount.
        amount: Amount,
    },
    /// The parent's output at `vout` is not a pay-to-anchor output.
    #[error("output {vout} of {txid} is not a pay-to-anchor output")]
    NotAnAnchor {
        /// The parent.
        txid: Txid,
        /// The output.
        vout: u32,
    },
    /// No confirmed, unreserved coin can pay the package fee (a v3 child may have only one
    /// unconfirmed parent: the anchor's).
    #[error("no confirmed coin can pay {needed}; the largest is {largest}")]
    NoFeeCoin {
        /// Fee plus the change's dust limit.
        needed: Amount,
        /// The largest confirmed, unreserved coin.
        largest: Amount,
    },
    /// The package fee does not fit in an amount.
    #[error("fee overflows at {feerate}")]
    FeeOverflow {
        /// The requested feerate.
        feerate: FeeRate,
    },
    /// The child could not be built.
    #[error("cpfp child")]
    Tx(#[from] TxError),
}

impl From<CreateWithPersistError<bdk_wallet::rusqlite::Error>> for WalletError {
    fn from(e: CreateWithPersistError<bdk_wallet::rusqlite::Error>) -> Self {
        WalletError::Create(Box::new(e))
    }
}

impl From<LoadWithPersistError<bdk_wallet::rusqlite::Error>> for WalletError {
    fn from(e: LoadWithPersistError<bdk_wallet::rusqlite::Error>) -> Self {
        WalletError::Load(Box::new(e))
    }
}

/// A signed funding transaction, not yet broadcast.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FundingTx {
    /// The transaction.
    pub tx: Transaction,
    /// Index of the channel output.
    pub vout: u32,
    /// Fee it pays.
    pub fee: Amount,
}

impl FundingTx {
    /// The channel output.
    pub fn outpoint(&self) -> OutPoint {
        OutPoint {
            txid: self.tx.compute_txid(),
            vout: self.vout,
        }
    }
}

/// A signed CPFP child and the figures of its package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpfpChild {
    /// The child: input 0 the parent's anchor, input 1 a wallet coin, output 0 the change.
    pub tx: Transaction,
    /// Fee the child pays for parent and child.
    pub fee: Amount,
    /// The parent's virtual size.
    pub parent_vbytes: u64,
    /// The child's virtual size.
    pub child_vbytes: u64,
}

impl CpfpChild {
    /// The package's feerate, in sat/vB (rounded down).
    pub fn package_sat_per_vb(&self) -> u64 {
        self.fee.to_sat() / (self.parent_vbytes + self.child_vbytes)
    }
}

/// A BIP86 wallet synced over Electrum and persisted in SQLite.
pub struct Wallet {
    inner: PersistedWallet<Connection>,
    db: Connection,
    path: PathBuf,
    /// The master key: signs the wallet's inputs (BIP32 origins in the PSBT say which child).
    xprv: Xpriv,
}

impl Drop for Wallet {
    fn drop(&mut self) {
        self.xprv.private_key.non_secure_erase();
        self.xprv.chain_code = bitcoin::bip32::ChainCode::from([0; 32]);
    }
}

impl core::fmt::Debug for Wallet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Wallet")
            .field("path", &self.path)
            .field("network", &self.inner.network())
            .field("tip", &self.inner.latest_checkpoint().height())
            .finish_non_exhaustive()
    }
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The two BIP86 descriptors (external, internal) of `xprv` on `network`. They hold the
/// private key: wipe them after use.
/// The wallet's private descriptors (external, internal) for `seed` on `network`: what a
/// wallet elsewhere (Sparrow, BDK) imports to spend the same coins. They hold the master
/// private key: never shown by a running node, only by `asyncpay node descriptors --private`,
/// which reads the seed file itself.
pub fn private_descriptors(
    seed: &WalletSeed,
    network: Network,
) -> Result<(String, String), WalletError> {
    use bdk_wallet::miniscript::{Descriptor, DescriptorPublicKey};
    let xprv = Xpriv::new_master(network, &seed.0)?;
    let (mut external, mut internal) = descriptors(&xprv, network);
    let secp = bitcoin::secp256k1::Secp256k1::new();
    // Parsed and printed back: the same descriptors, now with their checksums.
    let with_checksum = |text: &str| {
        let (descriptor, keys) = Descriptor::<DescriptorPublicKey>::parse_descriptor(&secp, text)
            .expect("the wallet's own descriptor template parses");
        descriptor.to_string_with_secret(&keys)
    };
    let out = (with_checksum(&external), with_checksum(&internal));
    external.zeroize();
    internal.zeroize();
    Ok(out)
}

fn descriptors(xprv: &Xpriv, network: Network) -> (String, String) {
    let coin = if network == Network::Bitcoin { 0 } else { 1 };
    (
        format!("tr({xprv}/86h/{coin}h/0h/0/*)"),
        format!("tr({xprv}/86h/{coin}h/0h/1/*)"),
    )
}

impl Wallet {
    /// Opens the wallet stored at `path`, or creates it there. The stored wallet must belong
    /// to `seed` and `network`.
    pub fn create_or_load(
        path: impl AsRef<Path>,
        seed: &WalletSeed,
        network: Network,
    ) -> Result<Self, WalletError> {
        let path = path.as_ref().to_path_buf();
        let mut db = Connection::open(&path).map_err(|source| WalletError::Open {
            path: path.clone(),
            source,
        })?;
        let xprv = Xpriv::new_master(network, &seed.0)?;
        let (mut external, mut internal) = descriptors(&xprv, network);
        let loaded = bdk_wallet::Wallet::load()
            .descriptor(KeychainKind::External, Some(external.clone()))
            .descriptor(KeychainKind::Internal, Some(internal.clone()))
            .check_network(network)
            .load_wallet(&mut db);
        let result = match loaded {
            Ok(Some(inner)) => Ok(inner),
            Ok(None) => bdk_wallet::Wallet::create(external.clone(), internal.clone())
                .network(network)
                .create_wallet(&mut db)
                .map_err(WalletError::from),
            Err(e) => Err(e.into()),
        };
        external.zeroize();
        internal.zeroize();
        Ok(Wallet {
            inner: result?,
            db,
            path,
            xprv,
        })
    }

    fn persist(&mut self) -> Result<(), WalletError> {
        self.inner
            .persist(&mut self.db)
            .map_err(WalletError::Persist)?;
        Ok(())
    }

    /// The wallet's public descriptors (external, internal) with their checksums: enough
    /// for a watch-only wallet elsewhere (Sparrow, BDK) to follow the same coins.
    pub fn public_descriptors(&self) -> (String, String) {
        (
            self.inner
                .public_descriptor(KeychainKind::External)
                .to_string(),
            self.inner
                .public_descriptor(KeychainKind::Internal)
                .to_string(),
        )
    }

    /// The wallet's network.
    pub fn network(&self) -> Network {
        self.inner.network()
    }

    /// The height of the newest block the wallet has seen.
    pub fn tip_height(&self) -> u32 {
        self.inner.latest_checkpoint().height()
    }

    /// Brings the wallet up to date with the Electrum server `electrum`: a full scan of both
    /// keychains the first time, a sync of the revealed addresses after that.
    pub fn sync(&mut self, electrum: &Electrum) -> Result<(), WalletError> {
        let client = BdkElectrumClient::new(electrum.connect()?);
        client.populate_tx_cache(self.inner.tx_graph().full_txs().map(|node| node.tx));
        if self.tip_height() == 0 {
            let request = self.inner.start_full_scan();
            let update = client.full_scan(request, STOP_GAP, BATCH_SIZE, true)?;
            self.inner.apply_update(update)?;
        } else {
            let request = self.inner.start_sync_with_revealed_spks();
            let update = client.sync(request, BATCH_SIZE, true)?;
            self.inner.apply_update(update)?;
        }
        self.persist()
    }

    /// Confirmed, pending and immature funds.
    pub fn balance(&self) -> Balance {
        self.inner.balance()
    }

    /// A fresh receiving address (revealed and persisted, so later syncs watch it).
    pub fn new_address(&mut self) -> Result<Address, WalletError> {
        let info = self.inner.reveal_next_address(KeychainKind::External);
        self.persist()?;
        Ok(info.address)
    }

    /// A fresh key whose key-path P2TR script (BIP86: tweaked with no script tree) is a
    /// receiving address of this wallet, with that address. A channel that pays its balance
    /// to this key pays into the wallet.
    pub fn payout_key(&mut self) -> Result<(PublicKey, Address), WalletError> {
        let info = self.inner.reveal_next_address(KeychainKind::External);
        self.persist()?;
        let derived = self
            .inner
            .public_descriptor(KeychainKind::External)
            .at_derivation_index(info.index)
            .expect("external addresses use non-hardened indices");
        let Descriptor::Tr(tr) = derived else {
            unreachable!("the wallet's descriptors are tr() descriptors")
        };
        let key = tr
            .internal_key()
            .derive_public_key(self.inner.secp_ctx())
            .expect("a definite non-multipath key derives");
        let xonly = bitcoin::XOnlyPublicKey::from(key.inner);
        Ok((PublicKey::from(xonly), info.address))
    }

    /// A signed transaction paying `amount` to `script_pubkey` at `feerate` from the wallet's
    /// coins (largest first), with change to a new internal address. It is not broadcast; its inputs stay
    /// reserved (persisted) so that no other transaction spends them before it is.
    pub fn build_funding(
        &mut self,
        script_pubkey: ScriptBuf,
        amount: Amount,
        feerate: FeeRate,
    ) -> Result<FundingTx, WalletError> {
        // Largest coins first, outputs in order (channel output, then change): the same
        // wallet state always gives the same transaction, which keeps tests reproducible.
        let mut builder = self
            .inner
            .build_tx()
            .coin_selection(LargestFirstCoinSelection);
        builder
            .add_recipient(script_pubkey.clone(), amount)
            .fee_rate(feerate)
            .ordering(TxOrdering::Untouched);
        let mut psbt = builder.finish()?;
        // The change address the builder revealed must survive a restart.
        self.persist()?;
        let tx = self.sign(&mut psbt, &[])?;
        let txid = tx.compute_txid();
        let vout = tx
            .output
            .iter()
            .position(|o| o.script_pubkey == script_pubkey && o.value == amount)
            .ok_or(WalletError::NoFundingOutput { txid, amount })?;
        let fee = self
            .inner
            .calculate_fee(&tx)
            .expect("every input is the wallet's");
        for input in &tx.input {
            self.inner.lock_outpoint(input.previous_output);
        }
        self.persist()?;
        Ok(FundingTx {
            tx,
            vout: vout as u32,
            fee,
        })
    }

    /// A signed transaction paying `amount` (or, with `None`, everything the wallet can
    /// spend, less the fee) to `script_pubkey` at `feerate`, with change to a new internal
    /// address. Coins reserved for a funding transaction or a CPFP child are not used. It is
    /// not broadcast.
    pub fn withdraw(
        &mut self,
        script_pubkey: ScriptBuf,
        amount: Option<Amount>,
        feerate: FeeRate,
    ) -> Result<Transaction, WalletError> {
        let locked: Vec<OutPoint> = self
            .inner
            .list_unspent()
            .map(|c| c.outpoint)
            .filter(|o| self.inner.is_outpoint_locked(*o))
            .collect();
        let mut builder = self.inner.build_tx();
        builder.fee_rate(feerate).unspendable(locked);
        match amount {
            Some(amount) => {
                builder.add_recipient(script_pubkey, amount);
            }
            None => {
                builder.drain_wallet().drain_to(script_pubkey);
            }
        }
        let mut psbt = builder.finish()?;
        self.persist()?;
        self.sign(&mut psbt, &[])
    }

    /// Signs every input but those at `foreign` (which the caller finalized) and returns the
    /// complete transaction.
    fn sign(&self, psbt: &mut Psbt, foreign: &[usize]) -> Result<Transaction, WalletError> {
        if let Err((_, errors)) = psbt.sign(&self.xprv, self.inner.secp_ctx()) {
            if let Some((&input, error)) = errors.iter().find(|(i, _)| !foreign.contains(i)) {
                return Err(WalletError::Sign {
                    input,
                    source: error.clone(),
                });
            }
        }
        let finalized = self.inner.finalize_psbt(psbt, SignOptions::default())?;
        if !finalized {
            return Err(WalletError::NotFinalized {
                txid: psbt.unsigned_tx.compute_txid(),
            });
        }
        psbt.clone()
            .extract_tx()
            .map_err(|e| WalletError::Extract(Box::new(e)))
    }

    /// The signed version 3 child of `parent` for `submitpackage`: input 0 spends the
    /// pay-to-anchor output `anchor_vout` (empty witness), input 1 the smallest confirmed,
    /// unreserved wallet coin that pays the fee (a coin spent only by an earlier, unmined
    /// child of the same parent counts: the new child replaces that one), output 0 returns the rest to a new internal
    /// address. The fee brings parent and child together to `feerate`. The coin stays
    /// reserved until [`Wallet::record_broadcast`] is told of the child.
    pub fn cpfp_child(
        &mut self,
        parent: &Transaction,
        anchor_vout: u32,
        feerate: FeeRate,
    ) -> Result<CpfpChild, WalletError> {
        let parent_txid = parent.compute_txid();
        let not_anchor = WalletError::NotAnAnchor {
            txid: parent_txid,
            vout: anchor_vout,
        };
        match parent.output.get(anchor_vout as usize) {
            Some(out) if out.script_pubkey == ScriptBuf::new_p2a() => {}
            _ => return Err(not_anchor),
        }
        // The builder spends the parent's first anchor; the project's parents carry one.
        let (anchor, anchor_txout) = find_anchor(parent)?;
        if anchor.vout != anchor_vout {
            return Err(not_anchor);
        }
        let change = self
            .inner
            .peek_address(
                KeychainKind::Internal,
                self.inner.next_derivation_index(KeychainKind::Internal),
            )
            .script_pubkey();
        let parent_vbytes = parent.vsize() as u64;

        // The child's size does not depend on the coin or the amounts: measure it once.
        let probe = crate::tx::anchor::cpfp_child(
            parent,
            OutPoint::null(),
            &bitcoin::TxOut {
                value: Amount::MAX_MONEY,
                script_pubkey: change.clone(),
            },
            change.clone(),
            Amount::ZERO,
        )?;
        let mut probe = probe;
        probe.input[1].witness = Witness::from_slice(&[KEY_SPEND_WITNESS]);
        let child_vbytes = probe.vsize() as u64;
        let fee = feerate
            .fee_vb(parent_vbytes + child_vbytes)
            .ok_or(WalletError::FeeOverflow { feerate })?;
        // Whatever the anchor holds comes back with the change.
        let needed = (fee + dust_limit(&change))
            .checked_sub(anchor_txout.value)
            .unwrap_or(Amount::ZERO);

        // A child published earlier for this parent and not yet mined is replaced by this one
        // (both spend the anchor): the coin it spends may pay again. Without this, a wallet
        // with one confirmed coin could bump a transaction once and never again.
        let replaced: Vec<OutPoint> = self
            .inner
            .transactions()
            .filter(|c| !c.chain_position.is_confirmed())
            .filter(|c| {
                c.tx_node
                    .tx
                    .input
                    .iter()
                    .any(|i| i.previous_output == anchor)
            })
            .flat_map(|c| {
                c.tx_node
                    .tx
                    .input
                    .iter()
                    .map(|i| i.previous_output)
                    .filter(|o| *o != anchor)
                    .collect::<Vec<_>>()
            })
            .collect();
        let coins: Vec<_> = self
            .inner
            .list_output()
            .filter(|c| c.chain_position.is_confirmed())
            .filter(|c| !c.is_spent || replaced.contains(&c.outpoint))
            .filter(|c| !self.inner.is_outpoint_locked(c.outpoint))
            .collect();
        let coin = coins
            .iter()
            .filter(|c| c.txout.value >= needed)
            .min_by_key(|c| c.txout.value)
            .cloned()
            .ok_or_else(|| WalletError::NoFeeCoin {
                needed,
                largest: coins
                    .iter()
                    .map(|c| c.txout.value)
                    .max()
                    .unwrap_or(Amount::ZERO),
            })?;

        let unsigned =
            crate::tx::anchor::cpfp_child(parent, coin.outpoint, &coin.txout, change, fee)?;
        let mut psbt = Psbt::from_unsigned_tx(unsigned)?;
        // The anchor needs no signature; its prevout is still needed for the taproot sighash.
        psbt.inputs[0].witness_utxo = Some(anchor_txout);
        psbt.inputs[0].final_script_witness = Some(Witness::new());
        psbt.inputs[1] = self.inner.get_psbt_input(coin.clone(), None, true)?;
        let tx = self.sign(&mut psbt, &[0])?;

        // The change address is now used: reveal it so a later sync sees the change.
        let _ = self.inner.reveal_next_address(KeychainKind::Internal);
        self.inner.lock_outpoint(coin.outpoint);
        self.persist()?;
        debug_assert_eq!(tx.vsize() as u64, child_vbytes);
        Ok(CpfpChild {
            tx,
            fee,
            parent_vbytes,
            child_vbytes,
        })
    }

    /// Broadcasts `tx` through the Electrum server and records it as unconfirmed.
    pub fn broadcast(
        &mut self,
        electrum: &Electrum,
        tx: &Transaction,
    ) -> Result<Txid, WalletError> {
        let client = BdkElectrumClient::new(electrum.connect()?);
        let txid = client.transaction_broadcast(tx)?;
        self.record_broadcast(std::slice::from_ref(tx))?;
        Ok(txid)
    }

    /// Records transactions broadcast elsewhere (a package sent with `submitpackage`) as
    /// unconfirmed, releasing the coins they spend from reservation.
    pub fn record_broadcast(&mut self, txs: &[Transaction]) -> Result<(), WalletError> {
        let seen = now();
        self.inner
            .apply_unconfirmed_txs(txs.iter().map(|tx| (tx.clone(), seen)));
        for tx in txs {
            for input in &tx.input {
                self.inner.unlock_outpoint(input.previous_output);
            }
        }
        self.persist()
    }

    /// Gives up a transaction that was built but will never be broadcast: its coins may be
    /// spent again.
    pub fn abandon(&mut self, tx: &Transaction) -> Result<(), WalletError> {
        for input in &tx.input {
            self.inner.unlock_outpoint(input.previous_output);
        }
        self.persist()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::block::{Header, Version as BlockVersion};
    use bitcoin::hashes::Hash;
    use bitcoin::secp256k1::{schnorr, Message, Secp256k1};
    use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
    use bitcoin::{
        absolute, transaction, Block, CompactTarget, Sequence, TxIn, TxMerkleNode, TxOut,
    };

    fn seed(b: u8) -> WalletSeed {
        WalletSeed::from_bytes([b; 32])
    }

    fn open(dir: &tempfile::TempDir, b: u8) -> Result<Wallet, WalletError> {
        Wallet::create_or_load(dir.path().join("wallet.sqlite"), &seed(b), Network::Regtest)
    }

    /// Confirms, in block 1, a transaction paying `amounts` to fresh wallet addresses.
    fn fund(wallet: &mut Wallet, amounts: &[u64]) -> Transaction {
        let output = amounts
            .iter()
            .map(|&sats| TxOut {
                value: Amount::from_sat(sats),
                script_pubkey: wallet.new_address().unwrap().script_pubkey(),
            })
            .collect();
        let tx = Transaction {
            version: transaction::Version::TWO,
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([0xaa; 32]),
                    vout: 0,
                },
                script_sig: ScriptBuf::new(),
                sequence: Sequence::MAX,
                witness: Witness::new(),
            }],
            output,
        };
        let genesis = bitcoin::constants::genesis_block(Network::Regtest);
        let block = Block {
            header: Header {
                version: BlockVersion::TWO,
                prev_blockhash: genesis.block_hash(),
                merkle_root: TxMerkleNode::all_zeros(),
                time: genesis.header.time + 600,
                bits: CompactTarget::from_consensus(0x207fffff),
                nonce: 0,
            },
            txdata: vec![tx.clone()],
        };
        wallet.inner.apply_block(&block, 1).unwrap();
        wallet.persist().unwrap();
        tx
    }

    fn anchored_parent() -> Transaction {
        Transaction {
            version: transaction::Version(3),
            lock_time: absolute::LockTime::ZERO,
            input: vec![TxIn {
                previous_output: OutPoint {
                    txid: Txid::from_byte_array([0xbb; 32]),
                    vout: 1,
                },
                ..Default::default()
            }],
            output: vec![
                TxOut {
                    value: Amount::from_sat(90_000),
                    script_pubkey: ScriptBuf::new_op_return([7u8; 4]),
                },
                crate::tx::p2a_output(Amount::ZERO),
            ],
        }
    }

    #[test]
    fn reloads_its_addresses_and_refuses_another_seed() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let mut wallet = open(&dir, 1).unwrap();
            wallet.new_address().unwrap()
        };
        let mut wallet = open(&dir, 1).unwrap();
        let second = wallet.new_address().unwrap();
        assert_ne!(first, second, "the revealed index survived the restart");
        drop(wallet);
        assert!(matches!(open(&dir, 2), Err(WalletError::Load(_))));
        assert!(matches!(
            Wallet::create_or_load(dir.path().join("wallet.sqlite"), &seed(1), Network::Signet),
            Err(WalletError::Load(_))
        ));
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let wallet = open(&dir, 0x5a).unwrap();
        let text = format!("{wallet:?} {:?}", seed(0x5a));
        let xprv = Xpriv::new_master(Network::Regtest, &[0x5a; 32]).unwrap();
        assert!(!text.contains(&xprv.to_string()), "{text}");
        assert!(!text.contains("tprv"), "{text}");
        assert!(!text.contains(&hex::encode([0x5a; 32])), "{text}");
        assert!(text.contains("redacted"));
    }

    #[test]
    fn payout_key_pays_a_wallet_address() {
        let dir = tempfile::tempdir().unwrap();
        let mut wallet = open(&dir, 3).unwrap();
        let (key, address) = wallet.payout_key().unwrap();
        let secp = Secp256k1::verification_only();
        let script = ScriptBuf::new_p2tr(&secp, key.into(), None);
        assert_eq!(script, address.script_pubkey());
        assert!(wallet.inner.is_mine(script));
        let (other, _) = wallet.payout_key().unwrap();
        assert_ne!(key, other, "each call gives a fresh key");
    }

    #[test]
    fn funding_pays_the_script_keeps_change_and_reserves_its_coins() {
        let dir = tempfile::tempdir().unwrap();
        let mut wallet = open(&dir, 4).unwrap();
        let funded = fund(&mut wallet, &[200_000, 500_000]);
        assert_eq!(wallet.balance().confirmed, Amount::from_sat(700_000));
        let channel = ScriptBuf::new_p2a();
        let feerate = FeeRate::from_sat_per_vb(2).unwrap();
        let funding = wallet
            .build_funding(channel.clone(), Amount::from_sat(300_000), feerate)
            .unwrap();
        // Largest coin first; the channel output first, the change after it.
        assert_eq!(funding.vout, 0);
        assert_eq!(
            funding
                .tx
                .input
                .iter()
                .map(|i| i.previous_output)
                .collect::<Vec<_>>(),
            vec![OutPoint {
                txid: funded.compute_txid(),
                vout: 1
            }]
        );
        let out = &funding.tx.output[funding.vout as usize];
        assert_eq!(
            (out.value, &out.script_pubkey),
            (Amount::from_sat(300_000), &channel)
        );
        let change: Amount = funding
            .tx
            .output
            .iter()
            .filter(|o| wallet.inner.is_mine(o.script_pubkey.clone()))
            .map(|o| o.value)
            .sum();
        assert_eq!(change + funding.fee + out.value, Amount::from_sat(500_000));
        assert!(funding.fee >= feerate.fee_vb(funding.tx.vsize() as u64).unwrap());
        assert!(funding.tx.input.iter().all(|i| i.witness.len() == 1));

        // The coin is reserved across a restart until the funding is abandoned.
        drop(wallet);
        let mut wallet = open(&dir, 4).unwrap();
        assert!(matches!(
            wallet.build_funding(channel.clone(), Amount::from_sat(250_000), feerate),
            Err(WalletError::Build(_))
        ));
        wallet.abandon(&funding.tx).unwrap();
        let again = wallet
            .build_funding(channel, Amount::from_sat(250_000), feerate)
            .unwrap();
        assert_eq!(
            again.tx.input[0].previous_output, funding.tx.input[0].previous_output,
            "the same coin, chosen the same way"
        );
    }

    #[test]
    fn cpfp_child_spends_the_anchor_and_a_confirmed_coin_at_the_package_feerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut wallet = open(&dir, 5).unwrap();
        let funded = fund(&mut wallet, &[40_000, 60_000]);
        let parent = anchored_parent();
        let feerate = FeeRate::from_sat_per_vb(3).unwrap();

        assert!(matches!(
            wallet.cpfp_child(&parent, 0, feerate),
            Err(WalletError::NotAnAnchor { vout: 0, .. })
        ));
        let child = wallet.cpfp_child(&parent, 1, feerate).unwrap();
        let tx = &child.tx;
        assert_eq!(tx.version, transaction::Version(3));
        assert_eq!(
            tx.input[0].previous_output,
            OutPoint {
                txid: parent.compute_txid(),
                vout: 1
            }
        );
        assert!(tx.input[0].witness.is_empty());
        assert_eq!(child.child_vbytes, tx.vsize() as u64);
        assert_eq!(child.parent_vbytes, parent.vsize() as u64);
        assert_eq!(
            child.fee.to_sat(),
            3 * (child.parent_vbytes + child.child_vbytes)
        );
        assert_eq!(child.package_sat_per_vb(), 3);
        // The smallest coin that pays was picked; the rest comes back as change.
        let coin_vout = tx.input[1].previous_output.vout as usize;
        let coin = funded.output[coin_vout].clone();
        assert_eq!(coin.value, Amount::from_sat(40_000));
        assert_eq!(tx.output[0].value, coin.value - child.fee);
        assert!(wallet.inner.is_mine(tx.output[0].script_pubkey.clone()));

        // Input 1 carries a valid BIP340 key-path signature over both prevouts.
        let prevouts = [parent.output[1].clone(), coin.clone()];
        let sighash = SighashCache::new(tx)
            .taproot_key_spend_signature_hash(1, &Prevouts::All(&prevouts), TapSighashType::Default)
            .unwrap();
        let secp = Secp256k1::verification_only();
        let output_key =
            bitcoin::XOnlyPublicKey::from_slice(&coin.script_pubkey.as_bytes()[2..]).unwrap();
        let sig = schnorr::Signature::from_slice(&tx.input[1].witness[0]).unwrap();
        let msg = Message::from_digest(sighash.to_byte_array());
        secp.verify_schnorr(&sig, &msg, &output_key)
            .expect("the wallet signed its coin");
        let mut forged = sig.serialize();
        forged[63] ^= 1;
        assert!(secp
            .verify_schnorr(
                &schnorr::Signature::from_slice(&forged).unwrap(),
                &msg,
                &output_key
            )
            .is_err());

        // The coin stays reserved: the next child takes the other one, then none is left.
        let second = wallet.cpfp_child(&parent, 1, feerate).unwrap();
        assert_ne!(
            second.tx.input[1].previous_output,
            tx.input[1].previous_output
        );
        assert!(matches!(
            wallet.cpfp_child(&parent, 1, feerate),
            Err(WalletError::NoFeeCoin { .. })
        ));
    }

    #[test]
    fn a_child_not_yet_mined_is_replaced_from_the_same_coin_at_a_higher_feerate() {
        let dir = tempfile::tempdir().unwrap();
        let mut wallet = open(&dir, 7).unwrap();
        fund(&mut wallet, &[50_000]);
        let parent = anchored_parent();
        let first = wallet
            .cpfp_child(&parent, 1, FeeRate::from_sat_per_vb(5).unwrap())
            .unwrap();
        // Published: the coin is spent by an unconfirmed child, the wallet's only coin.
        wallet
            .record_broadcast(&[parent.clone(), first.tx.clone()])
            .unwrap();
        assert_eq!(wallet.balance().confirmed, Amount::ZERO);
        // Not mined at 5 sat/vB: the next child of the same parent spends the same coin.
        let second = wallet
            .cpfp_child(&parent, 1, FeeRate::from_sat_per_vb(8).unwrap())
            .unwrap();
        assert_eq!(
            second.tx.input[1].previous_output,
            first.tx.input[1].previous_output
        );
        assert!(second.fee > first.fee);
        // Another parent's child cannot take that coin.
        let mut other = anchored_parent();
        other.lock_time = absolute::LockTime::from_consensus(7);
        wallet.abandon(&second.tx).unwrap();
        assert!(matches!(
            wallet.cpfp_child(&other, 1, FeeRate::from_sat_per_vb(5).unwrap()),
            Err(WalletError::NoFeeCoin { .. })
        ));
    }

    #[test]
    fn cpfp_child_needs_a_coin_that_pays_the_fee() {
        let dir = tempfile::tempdir().unwrap();
        let mut wallet = open(&dir, 6).unwrap();
        fund(&mut wallet, &[500]);
        match wallet.cpfp_child(&anchored_parent(), 1, FeeRate::from_sat_per_vb(2).unwrap()) {
            Err(WalletError::NoFeeCoin { needed, largest }) => {
                assert_eq!(largest, Amount::from_sat(500));
                assert!(needed > largest);
            }
            other => panic!("expected NoFeeCoin, got {other:?}"),
        }
    }
}
