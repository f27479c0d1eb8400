//! The harness refuses to start channel work on a node that does not enforce BIP118, and
//! says what to do. The patched node is turned into one that does not by switching the
//! `anyprevout` deployment off with `-vbparams` (start time -2: never active).

use asyncpay::chain::regtest::{HarnessError, Regtest, RegtestOptions};

#[test]
fn harness_refuses_a_node_without_anyprevout() {
    let options = RegtestOptions {
        bitcoind_args: vec!["-vbparams=anyprevout:-2:0".into()],
        ..Default::default()
    };
    match Regtest::start(options) {
        Err(err @ HarnessError::AnyprevoutInactive { .. }) => {
            let message = err.to_string();
            assert!(
                message.contains("scripts/setup"),
                "error says what to do: {message}"
            );
            assert!(
                message.contains("BITCOIND_EXE"),
                "error says what to do: {message}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // The same node without the override enforces BIP118 and is accepted.
    let chain = Regtest::start(RegtestOptions::default()).expect("patched node is accepted");
    assert!(chain.anyprevout_active().unwrap());
}
