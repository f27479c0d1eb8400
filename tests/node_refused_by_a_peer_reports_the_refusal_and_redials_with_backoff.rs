//! `ctl connect` to a node that does not admit our key exits non-zero and says why, the
//! dialling node logs each refusal, and its redials wait twice as long each time instead of
//! hammering the other node three times a second.
mod node_process_support;

use std::time::Duration;

use node_process_support::*;
use serde_json::json;

#[test]
fn a_refused_connect_is_reported_and_redials_back_off() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let lsp = Node::start(&electrum, &root.path().join("lsp"), "lsp", &[]);
    let payer = Node::start(&electrum, &root.path().join("payer"), "payer", &[]);

    // The LSP has not allow-listed the payer.
    let (ok, stdout, stderr) = payer.ctl(
        "connect",
        &json!({"node_key": lsp.key().to_string(), "addr": lsp.peer_addr().to_string()}),
    );
    let reason = stderr.lines().next().unwrap_or_default();
    println!("NODE_REFUSED ctl connect: exit ok={ok}, stderr: {reason}");
    assert!(!ok, "ctl connect must fail, printed {stdout}");
    assert!(stderr.contains("refused"), "the reason is given: {stderr}");

    // The redials back off: 0.3 s, 0.6 s, 1.2 s, 2.4 s, ...
    let failures = wait_for("four logged refusals", Duration::from_secs(15), || {
        let failed: Vec<_> = payer
            .logged()
            .into_iter()
            .filter(|e| e["event"] == "dial_failed")
            .collect();
        (failed.len() >= 4).then_some(failed)
    });
    let waits: Vec<u64> = failures
        .iter()
        .map(|e| e["retry_in_ms"].as_u64().expect("retry_in_ms"))
        .collect();
    println!("NODE_REFUSED logged refusals, waits before the next dial (ms): {waits:?}");
    assert!(
        failures.iter().all(|e| e["refused"] == true),
        "{failures:?}"
    );
    assert_eq!(&waits[..4], &[300, 600, 1200, 2400]);

    // Once the LSP admits the payer, the redial gets in.
    let (ok, _, err) = lsp.ctl("connect", &json!({"node_key": payer.key().to_string()}));
    assert!(ok, "{err}");
    let (ok, _, err) = payer.ctl(
        "connect",
        &json!({"node_key": lsp.key().to_string(), "addr": lsp.peer_addr().to_string()}),
    );
    assert!(ok, "connect once admitted: {err}");
}
