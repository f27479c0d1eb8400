//! Properties of the BIP118 sighash: what each hash type does and does not commit to, and
//! agreement with rust-bitcoin's BIP342 sighash for the hash types both define.

use asyncpay::crypto::bip118::{
    sighash, sighash_with_key_version, ApoSighashType, KeyVersion, LeafContext, SpentOutputs,
};
use bitcoin::absolute::LockTime;
use bitcoin::hashes::Hash;
use bitcoin::sighash::{Annex, Prevouts, SighashCache};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, OutPoint, ScriptBuf, Sequence, TapSighashType, Transaction, TxIn, TxOut, Txid, Witness,
};
use proptest::prelude::*;

fn p2tr(x: [u8; 32]) -> ScriptBuf {
    ScriptBuf::from_bytes([&[0x51, 0x20][..], &x].concat())
}

prop_compose! {
    fn txin()(txid in any::<[u8; 32]>(), vout in any::<u32>(), seq in any::<u32>()) -> TxIn {
        TxIn {
            previous_output: OutPoint { txid: Txid::from_byte_array(txid), vout },
            script_sig: ScriptBuf::new(),
            sequence: Sequence(seq),
            witness: Witness::new(),
        }
    }
}

prop_compose! {
    fn txout()(sats in 0..=Amount::MAX_MONEY.to_sat(), x in any::<[u8; 32]>(), len in 0usize..40)
        -> TxOut {
        // Outputs of the spending transaction need not be P2TR.
        let script = if len < 34 { p2tr(x) } else { ScriptBuf::from_bytes(vec![0x6a; len]) };
        TxOut { value: Amount::from_sat(sats), script_pubkey: script }
    }
}

prop_compose! {
    fn spent_output()(sats in 0..=Amount::MAX_MONEY.to_sat(), x in any::<[u8; 32]>()) -> TxOut {
        TxOut { value: Amount::from_sat(sats), script_pubkey: p2tr(x) }
    }
}

prop_compose! {
    /// A transaction with as many outputs as inputs (so SINGLE is always defined), the
    /// outputs it spends, an input index and a leaf script.
    fn case()(n in 1usize..4)(
        inputs in prop::collection::vec(txin(), n),
        outputs in prop::collection::vec(txout(), n),
        spent in prop::collection::vec(spent_output(), n),
        index in 0..n,
        version in any::<i32>(),
        lock_time in any::<u32>(),
        script in prop::collection::vec(any::<u8>(), 0..50),
        codesep in prop_oneof![Just(u32::MAX), 0u32..20],
        annex in prop::option::of(prop::collection::vec(any::<u8>(), 0..40)),
    ) -> (Transaction, Vec<TxOut>, usize, ScriptBuf, u32, Option<Vec<u8>>) {
        let tx = Transaction {
            version: Version(version),
            lock_time: LockTime::from_consensus(lock_time),
            input: inputs,
            output: outputs,
        };
        let annex = annex.map(|a| [&[0x50][..], &a].concat());
        (tx, spent, index, ScriptBuf::from_bytes(script), codesep, annex)
    }
}

fn hash_of(
    tx: &Transaction,
    spent: &[TxOut],
    index: usize,
    script: &ScriptBuf,
    codesep: u32,
    annex: Option<&[u8]>,
    hash_type: u8,
) -> bitcoin::TapSighash {
    let leaf = LeafContext::new(script).with_codesep_pos(codesep);
    let hash_type = ApoSighashType::from_u8(hash_type).expect("valid hash type");
    sighash(tx, index, SpentOutputs::All(spent), hash_type, &leaf, annex).expect("valid case")
}

proptest! {
    #[test]
    fn apoas_ignores_outpoint_amount_script_and_leaf(
        (tx, spent, index, script, codesep, annex) in case(),
        new_outpoint in txin(),
        new_spent in spent_output(),
        other_script in prop::collection::vec(any::<u8>(), 0..50),
    ) {
        let before = hash_of(&tx, &spent, index, &script, codesep, annex.as_deref(), 0xc1);
        let mut tx2 = tx.clone();
        tx2.input[index].previous_output = new_outpoint.previous_output;
        let mut spent2 = spent.clone();
        spent2[index] = new_spent;
        let script2 = ScriptBuf::from_bytes(other_script);
        let after = hash_of(&tx2, &spent2, index, &script2, codesep, annex.as_deref(), 0xc1);
        prop_assert_eq!(before, after);
        // ... and needs none of it.
        let leaf = LeafContext::new(&script2).with_codesep_pos(codesep);
        let unknown = sighash(&tx2, index, SpentOutputs::Unknown,
            ApoSighashType::AllPlusAnyPrevoutAnyScript, &leaf, annex.as_deref());
        prop_assert_eq!(unknown, Ok(before));
    }

    #[test]
    fn apoas_commits_to_sequence_and_outputs(
        (tx, spent, index, script, codesep, annex) in case(),
        seq in any::<u32>(),
        extra in txout(),
    ) {
        let before = hash_of(&tx, &spent, index, &script, codesep, annex.as_deref(), 0xc1);
        let mut tx2 = tx.clone();
        tx2.input[index].sequence = Sequence(seq);
        let changed = hash_of(&tx2, &spent, index, &script, codesep, annex.as_deref(), 0xc1);
        prop_assert_eq!(before == changed, seq == tx.input[index].sequence.0);
        let mut tx3 = tx.clone();
        tx3.output.push(extra);
        prop_assert_ne!(before, hash_of(&tx3, &spent, index, &script, codesep, annex.as_deref(), 0xc1));
    }

    #[test]
    fn apo_ignores_outpoint_but_not_script_amount_or_leaf(
        (tx, spent, index, script, codesep, annex) in case(),
        new_outpoint in txin(),
        new_key in any::<[u8; 32]>(),
        other_script in prop::collection::vec(any::<u8>(), 0..50),
    ) {
        let annex = annex.as_deref();
        let before = hash_of(&tx, &spent, index, &script, codesep, annex, 0x41);
        let mut tx2 = tx.clone();
        tx2.input[index].previous_output = new_outpoint.previous_output;
        prop_assert_eq!(before, hash_of(&tx2, &spent, index, &script, codesep, annex, 0x41));

        let mut spent2 = spent.clone();
        spent2[index].script_pubkey = p2tr(new_key);
        let changed = hash_of(&tx, &spent2, index, &script, codesep, annex, 0x41);
        prop_assert_eq!(before == changed, spent2[index] == spent[index]);

        let mut spent3 = spent.clone();
        spent3[index].value = spent[index].value + Amount::from_sat(1);
        prop_assert_ne!(before, hash_of(&tx, &spent3, index, &script, codesep, annex, 0x41));

        let script2 = ScriptBuf::from_bytes(other_script);
        let changed = hash_of(&tx, &spent, index, &script2, codesep, annex, 0x41);
        prop_assert_eq!(before == changed, script2 == script);
    }

    #[test]
    fn all_commits_to_outpoint(
        (tx, spent, index, script, codesep, annex) in case(),
        new_outpoint in txin(),
    ) {
        let annex = annex.as_deref();
        let mut tx2 = tx.clone();
        tx2.input[index].previous_output = new_outpoint.previous_output;
        let same = tx2.input[index].previous_output == tx.input[index].previous_output;
        for hash_type in [0x00, 0x01, 0x81] {
            let before = hash_of(&tx, &spent, index, &script, codesep, annex, hash_type);
            let after = hash_of(&tx2, &spent, index, &script, codesep, annex, hash_type);
            prop_assert_eq!(before == after, same);
        }
    }

    #[test]
    fn key_version_separates_bip342_from_bip118(
        (tx, spent, index, script, codesep, annex) in case(),
        type_index in 0usize..7,
    ) {
        let hash_type = [0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83][type_index];
        let leaf = LeafContext::new(&script).with_codesep_pos(codesep);
        let t = ApoSighashType::from_u8(hash_type).expect("valid");
        let at = |kv| sighash_with_key_version(&tx, index, SpentOutputs::All(&spent), t, kv,
            &leaf, annex.as_deref()).expect("valid case");
        prop_assert_ne!(at(KeyVersion::Bip342), at(KeyVersion::Bip118));
    }

    #[test]
    fn bip342_agrees_with_rust_bitcoin(
        (tx, spent, index, script, codesep, annex) in case(),
        type_index in 0usize..7,
    ) {
        let hash_type = [0x00, 0x01, 0x02, 0x03, 0x81, 0x82, 0x83][type_index];
        let leaf = LeafContext::new(&script).with_codesep_pos(codesep);
        let ours = sighash_with_key_version(
            &tx,
            index,
            SpentOutputs::All(&spent),
            ApoSighashType::from_u8(hash_type).expect("valid"),
            KeyVersion::Bip342,
            &leaf,
            annex.as_deref(),
        ).expect("valid case");
        let tap_type = TapSighashType::from_consensus_u8(hash_type).expect("BIP341 type");
        let mut cache = SighashCache::new(&tx);
        let theirs = match (&annex, codesep) {
            // The plain entry point, for the common case.
            (None, u32::MAX) => cache.taproot_script_spend_signature_hash(
                index, &Prevouts::All(&spent), leaf.leaf_hash(), tap_type),
            _ => cache.taproot_signature_hash(
                index,
                &Prevouts::All(&spent),
                annex.as_deref().map(|a| Annex::new(a).expect("tagged")),
                Some((leaf.leaf_hash(), codesep)),
                tap_type,
            ),
        }.expect("rust-bitcoin computes it");
        prop_assert_eq!(ours, theirs);
        // With only this input's spent output, ANYONECANPAY still works, like
        // rust-bitcoin's Prevouts::One.
        if hash_type & 0x80 != 0 {
            let one = sighash_with_key_version(&tx, index, SpentOutputs::This(&spent[index]),
                ApoSighashType::from_u8(hash_type).expect("valid"), KeyVersion::Bip342, &leaf,
                annex.as_deref()).expect("one spent output suffices");
            prop_assert_eq!(one, ours);
        }
    }
}
