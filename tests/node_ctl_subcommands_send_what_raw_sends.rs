//! Each typed `asyncpay ctl` subcommand sends the control API the request `ctl raw` would
//! send with the same fields: for requests without fields the answers are the same, and for
//! requests with fields (a key, an address, a contact card inline or as `@FILE`) the node
//! answers the typed and the raw form alike, refusals included.
mod node_process_support;

use std::process::Command;

use node_process_support::{FakeElectrum, Node};
use serde_json::{json, Value};

/// `asyncpay ctl --data-dir DIR ARGS...`: success, stdout, stderr.
fn ctl(node: &Node, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .args(["ctl", "--data-dir"])
        .arg(&node.dir)
        .args(args)
        .output()
        .expect("ctl runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The answer, or the node's refusal, without what differs between two calls.
fn outcome((ok, out, err): (bool, String, String)) -> Value {
    if ok {
        serde_json::from_str(&out).expect("an answer is JSON")
    } else {
        let message = err.lines().find(|l| l.contains("failed")).unwrap_or(&err);
        json!({"refused": message})
    }
}

#[test]
fn typed_ctl_subcommands_send_what_raw_sends() {
    let electrum = FakeElectrum::start();
    let root = tempfile::tempdir().expect("tempdir");
    let node = Node::start(&electrum, &root.path().join("a"), "payer", &[]);
    let peer = Node::start(&electrum, &root.path().join("s"), "lsp", &[]);
    let peer_key = peer.key().to_string();
    let card = root.path().join("card.json");
    std::fs::write(&card, json!({"not": "a card"}).to_string()).expect("card file");
    let card_arg = format!("@{}", card.display());
    let payment_id = "ab".repeat(32);

    for name in [
        "info",
        "list-channels",
        "list-payments",
        "balance",
        "descriptors",
    ] {
        let typed = outcome(ctl(&node, &[name]));
        let raw = outcome(ctl(&node, &["raw", name]));
        assert_eq!(typed, raw, "{name}");
        assert!(typed.get("refused").is_none(), "{name}: {typed}");
    }

    let cases: Vec<(Vec<&str>, Value)> = vec![
        (
            vec!["connect", "--node-key", &peer_key],
            json!({"node_key": peer_key}),
        ),
        (
            vec![
                "withdraw",
                "--address",
                "not-an-address",
                "--amount-sat",
                "1000",
            ],
            json!({"address": "not-an-address", "amount_sat": 1000, "feerate_sat_vb": null}),
        ),
        (
            vec![
                "pay",
                "--lsp",
                &peer_key,
                "--amount-sat",
                "5000",
                "--contact",
                &card_arg,
            ],
            json!({"lsp": peer_key, "amount_sat": 5000, "contact": {"not": "a card"},
                   "fee_sat": null, "note": null}),
        ),
        (
            vec![
                "pay",
                "--lsp",
                &peer_key,
                "--amount-sat",
                "5000",
                "--contact",
                &card_arg,
                "--hold-blocks",
                "40",
                "--irrevocable",
                "--hand-over",
            ],
            json!({"lsp": peer_key, "amount_sat": 5000, "contact": {"not": "a card"},
                   "fee_sat": null, "note": null, "hold_blocks": 40, "irrevocable": true,
                   "hand_over": true}),
        ),
        (
            vec!["letter", "--payment-id", &payment_id],
            json!({"payment_id": payment_id}),
        ),
        (
            vec!["cancel", "--payment-id", &payment_id],
            json!({"payment_id": payment_id}),
        ),
        (
            vec!["proof", "--payment-id", &payment_id],
            json!({"payment_id": payment_id}),
        ),
    ];
    for (typed_args, fields) in cases {
        let name = typed_args[0];
        let typed = outcome(ctl(&node, &typed_args));
        let raw = outcome(ctl(&node, &["raw", name, &fields.to_string()]));
        assert_eq!(typed, raw, "{name}");
        eprintln!("{name}: {typed}");
    }

    // A static offer: signed afresh each time, so only its fields are compared.
    let offer_args = [
        "contact",
        "--amount-sat",
        "21000",
        "--description",
        "a coffee",
        "--expires-in-secs",
        "60",
        "--lsp",
        &peer_key,
    ];
    let typed = outcome(ctl(&node, &offer_args));
    let raw = outcome(ctl(
        &node,
        &[
            "raw",
            "contact",
            &json!({"amount_sat": 21000, "description": "a coffee", "expires_in_secs": 60,
                    "lsp": peer_key})
            .to_string(),
        ],
    ));
    assert_eq!(typed["version"], 3, "{typed}");
    assert_eq!(typed["offer"]["amount_sat"], raw["offer"]["amount_sat"]);
    assert_eq!(typed["offer"]["description"], raw["offer"]["description"]);
    assert_eq!(typed["offer"]["lsp"], raw["offer"]["lsp"]);
    let (plain, _, _) = ctl(&node, &["contact"]);
    assert!(plain, "a plain card");
    assert_eq!(outcome(ctl(&node, &["contact"]))["version"], 2);
    // `--irrevocable` needs `--hold-blocks`: refused before anything is sent.
    let (ok, _, err) = ctl(
        &node,
        &[
            "pay",
            "--lsp",
            &peer_key,
            "--amount-sat",
            "1",
            "--contact",
            &card_arg,
            "--irrevocable",
        ],
    );
    assert!(!ok && err.contains("hold-blocks"), "{err}");

    let (ok, _, err) = ctl(
        &node,
        &[
            "pay",
            "--lsp",
            &peer_key,
            "--amount-sat",
            "1",
            "--contact",
            "{",
        ],
    );
    assert!(
        !ok && err.contains("contact"),
        "a card that is not JSON is refused: {err}"
    );
}
