//! BIP118 sighash vectors from an independent implementation, and a cross-check of the
//! BIP342 cases against rust-bitcoin's own taproot sighash code.

use asyncpay::crypto::bip118::{
    sighash_with_key_version, signature_message_with_key_version, tap_sighash, ApoSighashType,
    KeyVersion, LeafContext, SpentOutputs,
};
use bitcoin::consensus::deserialize;
use bitcoin::hashes::Hash;
use bitcoin::sighash::{Annex, Prevouts, SighashCache};
use bitcoin::taproot::LeafVersion;
use bitcoin::{Amount, ScriptBuf, TapSighashType, Transaction, TxOut};
use serde::Deserialize;

#[derive(Deserialize)]
struct File {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Spent {
    value: u64,
    script_pubkey: String,
}

#[derive(Deserialize)]
struct Case {
    tx: String,
    spent_outputs: Vec<Spent>,
    input_index: usize,
    hash_type: u8,
    key_version: u8,
    leaf_version: u8,
    leaf_script: String,
    codesep_pos: u32,
    #[serde(default)]
    annex: Option<String>,
    sig_msg: String,
    sighash: String,
}

struct Parsed {
    tx: Transaction,
    spent: Vec<TxOut>,
    script: ScriptBuf,
    leaf_version: LeafVersion,
    hash_type: ApoSighashType,
    key_version: KeyVersion,
    annex: Option<Vec<u8>>,
}

fn load() -> Vec<Case> {
    let text = include_str!("vectors/bip118_sighash.json");
    serde_json::from_str::<File>(text)
        .expect("vector file parses")
        .cases
}

fn parse(case: &Case) -> Parsed {
    let tx: Transaction = deserialize(&hex::decode(&case.tx).expect("tx hex")).expect("tx");
    let spent = case
        .spent_outputs
        .iter()
        .map(|o| TxOut {
            value: Amount::from_sat(o.value),
            script_pubkey: ScriptBuf::from_bytes(hex::decode(&o.script_pubkey).expect("spk hex")),
        })
        .collect();
    Parsed {
        tx,
        spent,
        script: ScriptBuf::from_bytes(hex::decode(&case.leaf_script).expect("script hex")),
        leaf_version: LeafVersion::from_consensus(case.leaf_version).expect("leaf version"),
        hash_type: ApoSighashType::from_u8(case.hash_type).expect("hash type"),
        key_version: KeyVersion::from_u8(case.key_version).expect("key version"),
        annex: case
            .annex
            .as_deref()
            .map(|a| hex::decode(a).expect("annex hex")),
    }
}

#[test]
fn all_400_vectors_match() {
    let cases = load();
    assert_eq!(cases.len(), 400);
    let mut checked = 0;
    for (n, case) in cases.iter().enumerate() {
        let p = parse(case);
        let leaf = LeafContext {
            script: &p.script,
            leaf_version: p.leaf_version,
            codesep_pos: case.codesep_pos,
        };
        let msg = signature_message_with_key_version(
            &p.tx,
            case.input_index,
            SpentOutputs::All(&p.spent),
            p.hash_type,
            p.key_version,
            &leaf,
            p.annex.as_deref(),
        )
        .unwrap_or_else(|e| panic!("case {n}: {e}"));
        assert_eq!(hex::encode(&msg), case.sig_msg, "case {n}: sig_msg");
        let hash = sighash_with_key_version(
            &p.tx,
            case.input_index,
            SpentOutputs::All(&p.spent),
            p.hash_type,
            p.key_version,
            &leaf,
            p.annex.as_deref(),
        )
        .expect("message computed above");
        assert_eq!(hash.to_string(), case.sighash, "case {n}: sighash");
        assert_eq!(tap_sighash(&msg), hash, "case {n}");

        // Hash types that sign only this input must not need the other spent outputs.
        if !p.hash_type.needs_all_spent_outputs() {
            let this = sighash_with_key_version(
                &p.tx,
                case.input_index,
                SpentOutputs::This(&p.spent[case.input_index]),
                p.hash_type,
                p.key_version,
                &leaf,
                p.annex.as_deref(),
            )
            .expect("this input's spent output suffices");
            assert_eq!(this, hash, "case {n}: This");
        }
        if !p.hash_type.needs_this_spent_output() {
            let none = sighash_with_key_version(
                &p.tx,
                case.input_index,
                SpentOutputs::Unknown,
                p.hash_type,
                p.key_version,
                &leaf,
                p.annex.as_deref(),
            )
            .expect("APOAS needs no spent output");
            assert_eq!(none, hash, "case {n}: Unknown");
        }
        checked += 1;
    }
    assert_eq!(checked, 400);
}

#[test]
fn bip342_vectors_agree_with_rust_bitcoin() {
    let mut checked = 0;
    for (n, case) in load().iter().enumerate() {
        if case.key_version != 0 {
            continue;
        }
        let p = parse(case);
        let tap_type = TapSighashType::from_consensus_u8(case.hash_type).expect("BIP341 type");
        let leaf = LeafContext {
            script: &p.script,
            leaf_version: p.leaf_version,
            codesep_pos: case.codesep_pos,
        };
        let ours = sighash_with_key_version(
            &p.tx,
            case.input_index,
            SpentOutputs::All(&p.spent),
            p.hash_type,
            KeyVersion::Bip342,
            &leaf,
            p.annex.as_deref(),
        )
        .expect("vector is valid");
        let annex = p
            .annex
            .as_deref()
            .map(|a| Annex::new(a).expect("annex has its tag"));
        let theirs = SighashCache::new(&p.tx)
            .taproot_signature_hash(
                case.input_index,
                &Prevouts::All(&p.spent),
                annex,
                Some((leaf.leaf_hash(), case.codesep_pos)),
                tap_type,
            )
            .expect("rust-bitcoin computes it");
        assert_eq!(ours, theirs, "case {n}");
        assert_eq!(
            ours.to_byte_array().to_vec(),
            hex::decode(&case.sighash).expect("hex")
        );
        checked += 1;
    }
    assert_eq!(checked, 124);
}
