//! Shared fixtures for the eltoo and PTLC regtest scenarios: keys, a funded channel, fee
//! coins from the faucet, and CPFP through `submitpackage`.
#![allow(dead_code)]

use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::tx::anchor::{cpfp_child, find_anchor, package_fee, CHILD_VBYTES};
use asyncpay::tx::{ChannelKeys, Funding, Settlement, SettlementTerms, SpentChannel, Update};
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, TapTweak};
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::sighash::{Prevouts, SighashCache, TapSighashType};
use bitcoin::{Amount, OutPoint, ScriptBuf, Transaction, TxOut, Txid};
use serde_json::{json, Value};

/// Blocks between an update's confirmation and its settlement.
pub const SHARED_DELAY: u16 = 6;
/// The channel's value.
pub const CHANNEL: Amount = Amount::from_sat(1_000_000);
/// Package feerate used for every CPFP child.
pub const FEERATE: u64 = 2;

pub fn start() -> Regtest {
    Regtest::start(RegtestOptions::default()).expect("BIP118-enforcing regtest node")
}

pub fn keypair(tag: &str) -> Keypair {
    let secret = bitcoin::hashes::sha256::Hash::hash(tag.as_bytes()).to_byte_array();
    Keypair::from_secret_key(
        &Secp256k1::new(),
        &SecretKey::from_slice(&secret).expect("valid secret"),
    )
}

/// A single-key P2TR wallet script (key path only).
pub fn wallet_script(key: &Keypair) -> ScriptBuf {
    ScriptBuf::new_p2tr(&Secp256k1::new(), key.x_only_public_key().0, None)
}

pub fn pay(key: &Keypair, sats: u64) -> TxOut {
    TxOut {
        value: Amount::from_sat(sats),
        script_pubkey: wallet_script(key),
    }
}

/// Signs input `index` of `tx` as a key-path spend of `key`'s wallet script.
pub fn sign_key_spend(tx: &mut Transaction, index: usize, prevouts: &[TxOut], key: &Keypair) {
    let secp = Secp256k1::new();
    let sighash = SighashCache::new(&*tx)
        .taproot_key_spend_signature_hash(index, &Prevouts::All(prevouts), TapSighashType::Default)
        .expect("prevouts for every input");
    let tweaked = key.tap_tweak(&secp, None).to_keypair();
    let sig =
        secp.sign_schnorr_no_aux_rand(&Message::from_digest(sighash.to_byte_array()), &tweaked);
    tx.input[index].witness = bitcoin::Witness::from_slice(&[sig.serialize()]);
}

/// A confirmed faucet coin paying `key`'s wallet script, for CPFP fees.
pub fn fee_coin(chain: &Regtest, key: &Keypair) -> (OutPoint, TxOut) {
    let (outpoint, txout) = chain
        .fund(&wallet_script(key), Amount::from_sat(50_000))
        .expect("faucet pays");
    chain.confirm(&outpoint.txid).expect("fee coin confirms");
    (outpoint, txout)
}

/// `n` fee coins for `key`, confirmed together in one block.
pub fn fee_coins(chain: &Regtest, key: &Keypair, n: usize) -> Vec<(OutPoint, TxOut)> {
    let coins: Vec<_> = (0..n)
        .map(|_| {
            chain
                .fund(&wallet_script(key), Amount::from_sat(50_000))
                .expect("faucet pays")
        })
        .collect();
    if let Some((first, _)) = coins.first() {
        chain.confirm(&first.txid).expect("fee coins confirm");
    }
    coins
}

/// The signed CPFP child of `parent`, paying for both at [`FEERATE`] from a fresh fee coin.
pub fn child_for(chain: &Regtest, parent: &Transaction, payer: &Keypair) -> Transaction {
    let coin = fee_coin(chain, payer);
    child_using(parent, payer, coin)
}

/// The signed CPFP child of `parent`, paying from the given confirmed coin of `payer`.
pub fn child_using(parent: &Transaction, payer: &Keypair, coin: (OutPoint, TxOut)) -> Transaction {
    let (coin, coin_txout) = coin;
    let fee = package_fee(parent, CHILD_VBYTES, FEERATE);
    let mut child =
        cpfp_child(parent, coin, &coin_txout, wallet_script(payer), fee).expect("child builds");
    let (_, anchor_txout) = find_anchor(parent).expect("parent has an anchor");
    sign_key_spend(&mut child, 1, &[anchor_txout, coin_txout], payer);
    child
}

/// Submits `parent` with a CPFP child through `submitpackage`; Ok((parent, child)) if both
/// entered the mempool, Err(node's answer) otherwise.
pub fn try_publish(
    chain: &Regtest,
    parent: &Transaction,
    payer: &Keypair,
) -> Result<(Txid, Transaction), String> {
    let child = child_for(chain, parent, payer);
    let answer = chain
        .submit_package(&[parent.clone(), child.clone()])
        .map_err(|e| e.to_string())?;
    if answer["package_msg"] == "success" {
        Ok((parent.compute_txid(), child))
    } else {
        Err(answer.to_string())
    }
}

/// [`try_publish`] with a coin funded beforehand: mines nothing, so the chain height stays
/// where the caller put it.
pub fn try_publish_using(
    chain: &Regtest,
    parent: &Transaction,
    payer: &Keypair,
    coin: (OutPoint, TxOut),
) -> Result<Txid, String> {
    let child = child_using(parent, payer, coin);
    let answer = chain
        .submit_package(&[parent.clone(), child])
        .map_err(|e| e.to_string())?;
    if answer["package_msg"] == "success" {
        Ok(parent.compute_txid())
    } else {
        Err(answer.to_string())
    }
}

/// [`try_publish`], then mine a block and check both confirmed.
pub fn publish_and_confirm(chain: &Regtest, parent: &Transaction, payer: &Keypair) -> Transaction {
    let (txid, child) = try_publish(chain, parent, payer)
        .unwrap_or_else(|answer| panic!("package rejected: {answer}"));
    chain.confirm(&txid).expect("parent confirms");
    assert!(chain.confirmations(&child.compute_txid()).unwrap() >= 1);
    child
}

/// The unspent output at `outpoint` as the node sees it (None if spent or unknown).
/// `tx`'s outputs that are unspent on chain (amount, script), in output order.
pub fn unspent_outputs(chain: &Regtest, tx: &Transaction) -> Vec<(Amount, ScriptBuf)> {
    let txid = tx.compute_txid();
    (0..tx.output.len() as u32)
        .filter_map(|vout| utxo(chain, &OutPoint { txid, vout }))
        .collect()
}

/// The amounts of `tx`'s outputs that are unspent on chain, in output order.
pub fn unspent_amounts(chain: &Regtest, tx: &Transaction) -> Vec<u64> {
    unspent_outputs(chain, tx)
        .into_iter()
        .map(|(amount, _)| amount.to_sat())
        .collect()
}

/// [`try_publish_using`], then mines until `tx` confirms; returns its txid and height. `what`
/// names the transaction if the node refuses it.
pub fn confirm_using(
    chain: &Regtest,
    tx: &Transaction,
    payer: &Keypair,
    coin: (OutPoint, TxOut),
    what: &str,
) -> anyhow::Result<(Txid, u32)> {
    let txid = try_publish_using(chain, tx, payer, coin)
        .map_err(|e| anyhow::anyhow!("{what} refused: {e}"))?;
    let height = u32::try_from(chain.confirm(&txid)?)?;
    Ok((txid, height))
}

pub fn utxo(chain: &Regtest, outpoint: &OutPoint) -> Option<(Amount, ScriptBuf)> {
    let v: Value = chain
        .rpc(
            "gettxout",
            &[json!(outpoint.txid.to_string()), json!(outpoint.vout)],
        )
        .expect("gettxout");
    if v.is_null() {
        return None;
    }
    let sats = (v["value"].as_f64().expect("value") * 1e8).round() as u64;
    let spk = hex::decode(v["scriptPubKey"]["hex"].as_str().expect("hex")).expect("hex");
    Some((Amount::from_sat(sats), ScriptBuf::from_bytes(spk)))
}

/// Prints one line of the vbyte table; the transaction must be the one the node accepted.
pub fn report_size(kind: &str, chain: &Regtest, txid: &Txid) {
    let tx = chain
        .transaction(txid)
        .expect("transaction known to the node");
    println!(
        "VBYTES | {kind} | {} | {} |",
        tx.weight().to_wu(),
        tx.vsize()
    );
}

/// A channel between A and S, funded from the faucet and confirmed.
pub struct Channel {
    pub a: Keypair,
    pub s: Keypair,
    pub funding: Funding,
    pub funding_outpoint: OutPoint,
}

impl Channel {
    pub fn open(chain: &Regtest) -> Channel {
        let a = keypair("asyncpay/test/A");
        let s = keypair("asyncpay/test/S");
        let keys = ChannelKeys::new(a.x_only_public_key().0, s.x_only_public_key().0);
        let funding = Funding::new(keys, CHANNEL);
        let (funding_outpoint, txout) = chain
            .fund(&funding.script_pubkey(), CHANNEL)
            .expect("faucet funds the channel");
        assert_eq!(txout, funding.txout());
        chain
            .confirm(&funding_outpoint.txid)
            .expect("funding confirms");
        Channel {
            a,
            s,
            funding,
            funding_outpoint,
        }
    }

    /// SE_n paying A `a_sats` and S the rest.
    pub fn settlement(&self, a_sats: u64) -> Settlement {
        self.settlement_with(a_sats, vec![])
    }

    /// SE_n paying A `a_sats`, the PTLCs, and S the rest.
    pub fn settlement_with(&self, a_sats: u64, ptlcs: Vec<asyncpay::tx::Ptlc>) -> Settlement {
        let in_ptlcs: u64 = ptlcs.iter().map(|p| p.amount.to_sat()).sum();
        let terms = SettlementTerms {
            a: pay(&self.a, a_sats),
            s: pay(&self.s, CHANNEL.to_sat() - a_sats - in_ptlcs),
            ptlcs,
        };
        Settlement::new(&self.funding, SHARED_DELAY, terms).expect("balanced settlement")
    }

    /// U_n for `settlement`, signed by both parties.
    pub fn signed_update(
        &self,
        state: u32,
        settlement: &Settlement,
    ) -> (
        Update,
        bitcoin::secp256k1::schnorr::Signature,
        bitcoin::secp256k1::schnorr::Signature,
    ) {
        let secp = Secp256k1::new();
        let update = Update::new(&self.funding, state, settlement).expect("update builds");
        let aux = [state as u8; 32];
        let sig_a = update.sign(&secp, &self.a, &aux);
        let sig_s = update.sign(&secp, &self.s, &aux);
        (update, sig_a, sig_s)
    }

    pub fn spend_funding(&self) -> SpentChannel<'_> {
        SpentChannel::Funding {
            outpoint: self.funding_outpoint,
            funding: &self.funding,
        }
    }
}
