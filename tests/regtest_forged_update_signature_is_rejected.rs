//! The node, not just our code, rejects updates whose ANYPREVOUT signatures are forged: a
//! flipped bit in A's signature, S's signature in A's place, an update signed for another
//! state. The genuine update then confirms (positive control). A settlement that deviates
//! from SE_n in one satoshi is refused as well: the covenant signature allows only SE_n.

mod tx_support;

use bitcoin::{Amount, OutPoint, Transaction, Witness};
use tx_support::*;

fn with_witness_item(tx: &Transaction, index: usize, item: Vec<u8>) -> Transaction {
    let mut items: Vec<Vec<u8>> = tx.input[0].witness.iter().map(<[u8]>::to_vec).collect();
    items[index] = item;
    let mut tx = tx.clone();
    tx.input[0].witness = Witness::from_slice(&items);
    tx
}

fn assert_script_failure(answer: Result<(bitcoin::Txid, Transaction), String>) {
    let answer = answer.expect_err("forged transaction must be refused");
    assert!(
        answer.contains("script-verify-flag-failed") || answer.contains("mandatory-script-verify"),
        "{answer}"
    );
}

#[test]
fn forged_update_signature_is_rejected() {
    let chain = start();
    let channel = Channel::open(&chain);
    let se = channel.settlement(700_000);
    let (u2, sig_a, sig_s) = channel.signed_update(2, &se);
    let genuine = u2.bind(&channel.spend_funding(), &sig_a, &sig_s).unwrap();
    // Witness: [sig_S, sig_A, leaf, control].

    let mut flipped = genuine.input[0].witness[1].to_vec();
    flipped[20] ^= 0x01;
    assert_script_failure(try_publish(
        &chain,
        &with_witness_item(&genuine, 1, flipped),
        &channel.a,
    ));

    let s_in_a_place = genuine.input[0].witness[0].to_vec();
    assert_script_failure(try_publish(
        &chain,
        &with_witness_item(&genuine, 1, s_in_a_place),
        &channel.a,
    ));

    let (_, other_a, _) = channel.signed_update(3, &se);
    let mut other = other_a.serialize().to_vec();
    other.push(0xc1);
    assert_script_failure(try_publish(
        &chain,
        &with_witness_item(&genuine, 1, other),
        &channel.a,
    ));

    // The builder refuses the same forgeries before they reach the node.
    assert!(u2.bind(&channel.spend_funding(), &sig_s, &sig_s).is_err());

    publish_and_confirm(&chain, &genuine, &channel.a);

    chain.mine(u64::from(SHARED_DELAY)).unwrap();
    let update_out = OutPoint {
        txid: genuine.compute_txid(),
        vout: 0,
    };
    let se_tx = se.bind(update_out, u2.output()).unwrap();
    let mut greedy = se_tx.clone();
    let a_vout = se.a_vout().unwrap() as usize;
    greedy.output[a_vout].value += Amount::from_sat(1);
    let s_vout = se.s_vout().unwrap() as usize;
    greedy.output[s_vout].value -= Amount::from_sat(1);
    assert_script_failure(try_publish(&chain, &greedy, &channel.a));
    publish_and_confirm(&chain, &se_tx, &channel.a);
}
