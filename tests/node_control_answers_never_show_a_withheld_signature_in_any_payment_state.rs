//! What `ctl info` shows of payments (`asyncpay::node::views`) never contains a withheld
//! signature: not A's signature on its update (in its `requested` status and in every
//! letter, at A and at B), not B's signature on a reverse update, not the LSP signature a
//! payer bought. Checked at every persist point of the main flow, a cancellation, a routed
//! payment and the reverse variant, against the secrets of every record stored so far.

use std::collections::{BTreeMap, BTreeSet};

use asyncpay::node::core::NodeCommand;
use asyncpay::node::core::NodeInput;
use asyncpay::protocol::payment::PaymentId;
use asyncpay::testing::*;
use serde_json::Value;

/// The secrets a stored record holds: signatures that are withheld or bought.
fn secrets(record: &Value, _parent: &str, out: &mut BTreeSet<String>) {
    out.extend(asyncpay::node::views::stored_secrets(record));
}

/// Checks every view shown so far against every secret stored so far; returns the status
/// names seen, by node.
fn check(sim: &Network, label: &str) -> BTreeMap<String, BTreeSet<String>> {
    let mut all = BTreeSet::new();
    for record in &sim.stored {
        secrets(record, "", &mut all);
    }
    assert!(
        !all.is_empty(),
        "{label}: the records hold secrets to look for"
    );
    let mut seen: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (node, shown) in &sim.shown {
        let text = shown.to_string();
        for secret in &all {
            assert!(
                !text.contains(secret.as_str()),
                "{label}: {} shows a stored secret: {text}",
                sim.nodes[*node].name
            );
        }
        for list in ["payments", "reverse"] {
            for p in shown[list].as_array().into_iter().flatten() {
                seen.entry(format!("{} {list}", sim.nodes[*node].name))
                    .or_default()
                    .insert(p["status"].as_str().unwrap_or("?").to_owned());
            }
        }
    }
    println!(
        "VIEWS {label}: {} views at persist points checked against {} stored secrets; statuses {seen:?}",
        sim.shown.len(),
        all.len()
    );
    seen
}

#[test]
fn the_main_flow_shows_no_secret() {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim.stop(B);
    let id = sim.pay(50_000).unwrap();
    // The stored record, as `ctl info` printed it before the views, carries A's signature.
    let mut stored = BTreeSet::new();
    let record = serde_json::to_value(&sim.nodes[A].payments[&id]).unwrap();
    secrets(&record, "", &mut stored);
    let raw = serde_json::to_string(&sim.nodes[A].core().payments_json()).unwrap();
    assert!(stored.iter().any(|s| raw.contains(s.as_str())));
    sim.stop(A);
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&id), Some("completed"));
    let seen = check(&sim, "main flow");
    for status in ["requested", "posted", "completed"] {
        assert!(seen["A payments"].contains(status), "{seen:?}");
    }
    assert!(seen["B payments"].contains("paid"), "{seen:?}");
}

#[test]
fn held_sales_show_no_secret() {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim.stop(B);
    let sold = sim.pay_held(B, 30_000, 200).unwrap();
    let cancelled = sim.pay_held(B, 20_000, 200).unwrap();
    // The share is a stored secret: in the payment's hold, its requested status and its
    // letter.
    let record = serde_json::to_value(&sim.nodes[A].payments[&sold]).unwrap();
    let mut stored = BTreeSet::new();
    secrets(&record, "", &mut stored);
    let share = record["hold"]["share"].as_str().unwrap().to_owned();
    assert!(stored.contains(&share), "{stored:?}");
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Cancel {
            payment_id: cancelled,
        }),
    )
    .unwrap();
    sim.pump().unwrap();
    sim.stop(A);
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    sim.start(A).unwrap();
    sim.pump().unwrap();
    assert_eq!(sim.nodes[A].status(&sold), Some("completed"));
    let seen = check(&sim, "held sales");
    for status in ["requested", "posted", "completed", "void"] {
        assert!(seen["A payments"].contains(status), "{seen:?}");
    }
}

#[test]
fn a_cancelled_payment_shows_no_secret() {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    sim.stop(B);
    let id = sim.pay(50_000).unwrap();
    sim.input(
        A,
        NodeInput::Command(NodeCommand::Cancel { payment_id: id }),
    )
    .unwrap();
    sim.pump().unwrap();
    let seen = check(&sim, "cancellation");
    assert!(seen["A payments"].contains("cancelling"), "{seen:?}");
}

#[test]
fn a_routed_payment_shows_no_secret() {
    let mut sim = Network::with_router();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, P, 400_000).unwrap();
    sim.open(P, B, 400_000).unwrap();
    sim.stop(B);
    let _ = sim.pay(20_000);
    sim.stop(A);
    sim.start(B).unwrap();
    let _ = sim.fetch_letters(B);
    check(&sim, "routed");
}

#[test]
fn the_reverse_variant_shows_no_secret() {
    let mut sim = Network::new();
    sim.open(A, S, 1_000_000).unwrap();
    sim.open(S, B, 400_000).unwrap();
    let id = PaymentId([0x42; 32]);
    sim.receive(id, 30_000).unwrap();
    sim.pump().unwrap();
    sim.stop(B);
    sim.fetch_letters(A).unwrap();
    assert_eq!(sim.nodes[A].reverse_status(&id), Some("bought"));
    sim.start(B).unwrap();
    sim.fetch_letters(B).unwrap();
    let seen = check(&sim, "reverse");
    assert!(seen["A reverse"].contains("bought"), "{seen:?}");
}
