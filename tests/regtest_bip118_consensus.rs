//! BIP118 consensus on the regtest node: every spend below goes through the mempool
//! (`sendrawtransaction`) under default policy and is then mined.
//!
//! Each test carries its own positive control, so a node that accepted anything, or one
//! that rejected every BIP118 spend as non-standard, fails here.

use asyncpay::chain::regtest::{Regtest, RegtestOptions};
use asyncpay::crypto::bip118::{
    sighash, ApoKey, ApoScriptExt, ApoSighashType, LeafContext, SpentOutputs,
};
use bitcoin::hashes::Hash;
use bitcoin::key::{Keypair, XOnlyPublicKey};
use bitcoin::opcodes::all::{OP_CHECKSIG, OP_CLTV, OP_DROP};
use bitcoin::script::Builder;
use bitcoin::secp256k1::{Message, Secp256k1, SecretKey};
use bitcoin::taproot::{LeafVersion, TaprootBuilder, TaprootSpendInfo};
use bitcoin::{
    absolute, transaction, Amount, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};

fn keypair(tag: &str) -> Keypair {
    let secp = Secp256k1::new();
    let secret = bitcoin::hashes::sha256::Hash::hash(tag.as_bytes()).to_byte_array();
    Keypair::from_secret_key(
        &secp,
        &SecretKey::from_slice(&secret).expect("valid secret"),
    )
}

fn xonly(k: &Keypair) -> XOnlyPublicKey {
    k.x_only_public_key().0
}

/// `0x01 || x`: a 33-byte BIP118 public key.
fn apo_key(x: &XOnlyPublicKey) -> [u8; 33] {
    let mut key = [0u8; 33];
    key[0] = 0x01;
    key[1..].copy_from_slice(&x.serialize());
    key
}

/// `<0x01||P> CHECKSIG`
fn apo_checksig(x: &XOnlyPublicKey) -> ScriptBuf {
    Builder::new()
        .push_slice(apo_key(x))
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// `<n> CLTV DROP <0x01||P> CHECKSIG`: same key, different script (as eltoo update outputs).
fn apo_checksig_after(x: &XOnlyPublicKey, n: i64) -> ScriptBuf {
    Builder::new()
        .push_int(n)
        .push_opcode(OP_CLTV)
        .push_opcode(OP_DROP)
        .push_slice(apo_key(x))
        .push_opcode(OP_CHECKSIG)
        .into_script()
}

/// `<0x01> CHECKSIG`: the 1-byte BIP118 key standing for the taproot internal key, pushed
/// minimally as `OP_1`.
fn internal_apo_checksig() -> ScriptBuf {
    Builder::new()
        .push_apo_checksig(&ApoKey::InternalKey)
        .into_script()
}

struct Output {
    outpoint: OutPoint,
    txout: TxOut,
    leaf: ScriptBuf,
    info: TaprootSpendInfo,
}

/// Funds a P2TR output whose only leaf is `leaf`, with the given internal key.
fn fund_leaf(chain: &Regtest, internal: XOnlyPublicKey, leaf: ScriptBuf, sats: u64) -> Output {
    let secp = Secp256k1::new();
    let info = TaprootBuilder::new()
        .add_leaf(0, leaf.clone())
        .expect("one leaf")
        .finalize(&secp, internal)
        .expect("complete tree");
    let spk = ScriptBuf::new_p2tr_tweaked(info.output_key());
    let (outpoint, txout) = chain.fund(&spk, Amount::from_sat(sats)).expect("fund");
    chain.confirm(&outpoint.txid).expect("funding confirms");
    Output {
        outpoint,
        txout,
        leaf,
        info,
    }
}

fn nums() -> XOnlyPublicKey {
    xonly(&keypair("asyncpay/test/unspendable-internal-key"))
}

/// A transaction spending `prevout` to one fixed output (value fixed so that rebinding
/// keeps the outputs identical).
fn spend_tx(prevout: OutPoint, pay_to: &ScriptBuf, value: Amount) -> Transaction {
    Transaction {
        version: transaction::Version::TWO,
        lock_time: absolute::LockTime::from_consensus(500_000_100),
        input: vec![TxIn {
            previous_output: prevout,
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_LOCKTIME_NO_RBF,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: pay_to.clone(),
        }],
    }
}

/// Signs input 0 of `tx` (spending `spent`) for `leaf` with `key` and `hash_type`.
fn sign(
    tx: &Transaction,
    spent: &TxOut,
    leaf: &ScriptBuf,
    key: &Keypair,
    hash_type: ApoSighashType,
) -> Vec<u8> {
    let secp = Secp256k1::new();
    // The transactions here have one input, so its spent output is all of them.
    let spent = SpentOutputs::All(std::slice::from_ref(spent));
    let digest = sighash(tx, 0, spent, hash_type, &LeafContext::new(leaf), None).expect("sighash");
    let sig = secp.sign_schnorr_no_aux_rand(&Message::from_digest(digest.to_byte_array()), key);
    let mut bytes = sig.as_ref().to_vec();
    if hash_type != ApoSighashType::Default {
        bytes.push(hash_type.to_u8());
    }
    bytes
}

fn with_witness(mut tx: Transaction, sig: &[u8], out: &Output) -> Transaction {
    let control = out
        .info
        .control_block(&(out.leaf.clone(), LeafVersion::TapScript))
        .expect("leaf is in the tree");
    let mut w = Witness::new();
    w.push(sig);
    w.push(out.leaf.as_bytes());
    w.push(control.serialize());
    tx.input[0].witness = w;
    tx
}

/// Funds `<0x01||P> CHECKSIG` for `key` and signs a spend of it with `hash_type`.
fn signed_spend(
    chain: &Regtest,
    key: &Keypair,
    hash_type: ApoSighashType,
) -> (Output, Transaction, Vec<u8>) {
    let out = fund_leaf(chain, nums(), apo_checksig(&xonly(key)), 50_000);
    let tx = spend_tx(
        out.outpoint,
        &chain.faucet_script_pubkey(),
        Amount::from_sat(49_000),
    );
    let sig = sign(&tx, &out.txout, &out.leaf, key, hash_type);
    (out, tx, sig)
}

/// Submits `tx` through the mempool and checks that the node refuses it for a bad Schnorr
/// signature (a script error, not a policy or format complaint).
fn expect_invalid_signature(chain: &Regtest, tx: &Transaction, why: &str) {
    let err = chain.send_raw(tx).expect_err(why);
    assert!(
        err.message
            .contains("script-verify-flag-failed (Invalid Schnorr signature)"),
        "{why}: unexpected rejection: {err}"
    );
}

fn start() -> Regtest {
    Regtest::start(RegtestOptions::default()).expect("BIP118-enforcing regtest node")
}

#[test]
fn node_reports_anyprevout_active() {
    let chain = start();
    assert!(chain.anyprevout_active().unwrap());
    let info: serde_json::Value = chain.rpc("getdeploymentinfo", &[]).unwrap();
    assert_eq!(info["deployments"]["anyprevout"]["type"], "bip9");
}

#[test]
fn valid_anyprevout_and_anyprevoutanyscript_spends_confirm() {
    let chain = start();
    let alice = keypair("alice");
    for hash_type in [
        ApoSighashType::AllPlusAnyPrevout,
        ApoSighashType::AllPlusAnyPrevoutAnyScript,
    ] {
        let (out, tx, sig) = signed_spend(&chain, &alice, hash_type);
        assert_eq!(sig.len(), 65);
        let tx = with_witness(tx, &sig, &out);
        let txid = chain
            .send_raw(&tx)
            .unwrap_or_else(|e| panic!("{hash_type:?} rejected: {e}"));
        chain.confirm(&txid).expect("mined");
    }
}

#[test]
fn flipped_signature_bit_is_rejected_with_a_script_error() {
    let chain = start();
    let alice = keypair("alice");
    for hash_type in [
        ApoSighashType::AllPlusAnyPrevout,
        ApoSighashType::AllPlusAnyPrevoutAnyScript,
    ] {
        let (out, tx, sig) = signed_spend(&chain, &alice, hash_type);
        let mut bad = sig.clone();
        bad[17] ^= 0x04;
        expect_invalid_signature(
            &chain,
            &with_witness(tx.clone(), &bad, &out),
            "bad signature",
        );
        // A wrong signature from another key fails the same way.
        let mallory = sign(&tx, &out.txout, &out.leaf, &keypair("mallory"), hash_type);
        expect_invalid_signature(
            &chain,
            &with_witness(tx.clone(), &mallory, &out),
            "wrong key",
        );
        // Control: the untouched witness is accepted and mined.
        let txid = chain
            .send_raw(&with_witness(tx, &sig, &out))
            .expect("valid signature");
        chain.confirm(&txid).expect("mined");
    }
}

#[test]
fn one_anyprevoutanyscript_signature_spends_two_outputs_sharing_the_key() {
    let chain = start();
    let alice = keypair("alice");
    let pay_to = chain.faucet_script_pubkey();
    // Different scripts, different amounts, different internal keys: only the key is shared.
    let first = fund_leaf(&chain, nums(), apo_checksig(&xonly(&alice)), 60_000);
    let second = fund_leaf(
        &chain,
        xonly(&keypair("other")),
        apo_checksig_after(&xonly(&alice), 500_000_007),
        70_000,
    );
    assert_ne!(first.txout.script_pubkey, second.txout.script_pubkey);

    let value = Amount::from_sat(55_000);
    let tx1 = spend_tx(first.outpoint, &pay_to, value);
    let sig = sign(
        &tx1,
        &first.txout,
        &first.leaf,
        &alice,
        ApoSighashType::AllPlusAnyPrevoutAnyScript,
    );
    let txid1 = chain
        .send_raw(&with_witness(tx1, &sig, &first))
        .expect("first spend");
    // Rebind: the same signature bytes, now spending the second output.
    let tx2 = spend_tx(second.outpoint, &pay_to, value);
    let txid2 = chain
        .send_raw(&with_witness(tx2, &sig, &second))
        .expect("rebound spend");
    assert_ne!(txid1, txid2);
    chain.mine(1).unwrap();
    assert!(chain.confirmations(&txid1).unwrap() >= 1);
    assert!(chain.confirmations(&txid2).unwrap() >= 1);
}

#[test]
fn anyprevout_signature_does_not_rebind_to_a_different_script_pubkey() {
    let chain = start();
    let alice = keypair("alice");
    let pay_to = chain.faucet_script_pubkey();
    let leaf = apo_checksig(&xonly(&alice));
    let first = fund_leaf(&chain, nums(), leaf.clone(), 60_000);
    // Same leaf and amount, other internal key: a different scriptPubKey.
    let other_spk = fund_leaf(&chain, xonly(&keypair("other")), leaf.clone(), 60_000);
    // Same leaf, amount and internal key: the same scriptPubKey, another outpoint.
    let same_spk = fund_leaf(&chain, nums(), leaf, 60_000);
    assert_ne!(first.txout.script_pubkey, other_spk.txout.script_pubkey);
    assert_eq!(first.txout.script_pubkey, same_spk.txout.script_pubkey);

    let value = Amount::from_sat(59_000);
    let tx = spend_tx(first.outpoint, &pay_to, value);
    let sig = sign(
        &tx,
        &first.txout,
        &first.leaf,
        &alice,
        ApoSighashType::AllPlusAnyPrevout,
    );

    expect_invalid_signature(
        &chain,
        &with_witness(
            spend_tx(other_spk.outpoint, &pay_to, value),
            &sig,
            &other_spk,
        ),
        "APO commits to the scriptPubKey",
    );

    // Control: APO does rebind to another outpoint with the same scriptPubKey and amount.
    let txid = chain
        .send_raw(&with_witness(
            spend_tx(same_spk.outpoint, &pay_to, value),
            &sig,
            &same_spk,
        ))
        .expect("APO rebinds across outpoints");
    chain.confirm(&txid).expect("mined");
}

#[test]
fn one_byte_key_verifies_against_the_taproot_internal_key() {
    let chain = start();
    let internal = keypair("internal");
    let pay_to = chain.faucet_script_pubkey();
    let out = fund_leaf(&chain, xonly(&internal), internal_apo_checksig(), 50_000);
    let tx = spend_tx(out.outpoint, &pay_to, Amount::from_sat(49_000));

    // Any other key is rejected.
    let wrong = sign(
        &tx,
        &out.txout,
        &out.leaf,
        &keypair("mallory"),
        ApoSighashType::AllPlusAnyPrevout,
    );
    expect_invalid_signature(
        &chain,
        &with_witness(tx.clone(), &wrong, &out),
        "not the internal key",
    );

    // A 64-byte (default hash type) signature by the internal key is accepted.
    let sig = sign(
        &tx,
        &out.txout,
        &out.leaf,
        &internal,
        ApoSighashType::Default,
    );
    assert_eq!(sig.len(), 64);
    let txid = chain
        .send_raw(&with_witness(tx, &sig, &out))
        .expect("internal key signature");
    chain.confirm(&txid).expect("mined");
}

/// The mempool checks above run under policy flags; this one shows the rule is consensus:
/// a block carrying the bad spend is invalid. (The block is only offered for validation,
/// to be refused; nothing reaches the chain this way.)
#[test]
fn block_with_an_invalid_anyprevout_signature_is_rejected_by_consensus() {
    let chain = start();
    let alice = keypair("alice");
    let (out, tx, mut sig) =
        signed_spend(&chain, &alice, ApoSighashType::AllPlusAnyPrevoutAnyScript);
    sig[40] ^= 0x01;
    let bad = with_witness(tx, &sig, &out);
    let address =
        bitcoin::Address::from_script(&chain.faucet_script_pubkey(), bitcoin::Network::Regtest)
            .expect("faucet address");
    let height = chain.height().unwrap();
    let err = chain
        .rpc::<serde_json::Value>(
            "generateblock",
            &[
                serde_json::json!(address.to_string()),
                serde_json::json!([bitcoin::consensus::encode::serialize_hex(&bad)]),
            ],
        )
        .expect_err("block with an invalid BIP118 signature");
    assert!(
        err.message
            .contains("block-script-verify-flag-failed (Invalid Schnorr signature)"),
        "unexpected rejection: {err}"
    );
    assert_eq!(chain.height().unwrap(), height, "no block was added");
}
