//! `asyncpay bench payment` runs end to end with a handful of payments and prints every
//! figure: latencies that are positive, message counts that are exactly what the protocol
//! sends, bytes per pending payment, sales that all completed, baselines.

use std::process::Command;

use serde_json::Value;

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_asyncpay"))
        .arg("bench")
        .arg("payment")
        .args(args)
        .output()
        .expect("the binary runs")
}

fn num(v: &Value, path: &str) -> f64 {
    v.pointer(path)
        .and_then(Value::as_f64)
        .unwrap_or_else(|| panic!("no number at {path} in {v:#}"))
}

#[test]
fn bench_payment_prints_figures() {
    let out = bench(&[
        "--payments",
        "3",
        "--warmup",
        "1",
        "--unbatched-sales",
        "6",
        "--sales",
        "12",
        "--payees",
        "3",
        "--baseline-rounds",
        "20",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    for mode in ["per_row", "per_input"] {
        let o = &r["online"][mode];
        assert_eq!(o["payments"], 3, "{mode}");
        for step in [
            "total",
            "b_paid_at",
            "ptlc_add",
            "fulfil",
            "complete_a",
            "letter",
        ] {
            let p50 = num(o, &format!("/latency_ms/{step}/p50"));
            let max = num(o, &format!("/latency_ms/{step}/max"));
            assert!(
                p50 > 0.0 && max >= p50,
                "{mode} {step}: p50 {p50}, max {max}"
            );
        }
        // The steps cut the window into consecutive pieces that end where total ends.
        let sum: f64 = [
            "connect",
            "mailbox_fetch",
            "decrypt",
            "letter",
            "invoice_to_s",
            "ptlc_add",
            "fulfil",
            "complete_a",
        ]
        .iter()
        .map(|s| num(o, &format!("/latency_ms/{s}/mean")))
        .sum();
        let total = num(o, "/latency_ms/total/mean");
        assert!(
            (sum - total).abs() < 0.01 * total + 0.01,
            "{mode}: steps {sum} vs total {total}"
        );
        assert!(num(o, "/attribution_mean_ms/sqlite_persist") > 0.0);
        assert!(num(o, "/attribution_mean_ms/core_compute") > 0.0);
        // Rows, one per record an input changed. S: selling, AddPtlc proposal, its
        // completion, the fulfil countersignature, its completion, sold, A's completed state.
        // B: invoiced, countersignature, then one input (S's completion of the AddPtlc) that
        // completes it, records the payment fulfilled and proposes the fulfil: the S–B
        // channel once, as it was last, and the record; then the fulfil's completion, paid.
        assert_eq!(o["persists_in_window"]["s"], 7, "{mode}");
        assert_eq!(o["persists_in_window"]["b"], 6, "{mode}");
    }
    assert_eq!(r["online"]["per_row"]["persists_in_window"]["s_commits"], 7);
    assert!(
        r["online"]["per_input"]["persists_in_window"]["s_commits"]
            .as_u64()
            .expect("commits")
            < 7
    );

    // Exactly the protocol's messages. A pays: propose, countersign (A withholds its
    // completion), request, offer, and one mailbox post. A returns: reestablish both ways,
    // receipt, receipt ack. B sells: reestablish both ways, invoice, then two channel updates
    // of three messages each (add, fulfil); mailbox: challenge + fetch, challenge + ack.
    let m = &r["online"]["per_row"]["messages"];
    let expect = [
        ("a_pays", 2, 2, 1, 4),
        // S shows A its bought signature when A reconnects: one channel message more.
        ("a_returns", 3, 2, 0, 2),
        ("a_total", 5, 4, 1, 6),
        ("b_sells", 8, 1, 4, 7),
    ];
    for (part, channel, payment, mailbox, hops) in expect {
        let p = &m[part];
        assert_eq!(p["channel_messages"], channel, "{part}: {p}");
        assert_eq!(p["payment_messages"], payment, "{part}: {p}");
        assert_eq!(p["mailbox_requests"], mailbox, "{part}: {p}");
        assert_eq!(p["peer_hops"], hops, "{part}: {p}");
        assert!(num(p, "/peer_bytes") > 0.0);
    }

    let p = &r["sales"]["pending"];
    assert_eq!(p["pending_payments"], 18);
    assert!(num(p, "/payment_record_bytes_per_pending") > 0.0);
    assert!(num(p, "/channel_snapshot_growth_per_pending") > 0.0);
    assert!(num(p, "/row_bytes_per_pending") > num(p, "/payment_record_bytes_per_pending"));

    for (run, sales) in [("unbatched", 6), ("batched", 12)] {
        let s = &r["sales"][run];
        assert_eq!(s["sales"], sales, "{run}");
        assert!(num(s, "/sales_per_sec") > 0.0, "{run}");
        // Four inputs and seven records changed at S per sale.
        assert_eq!(num(s, "/s_inputs_per_sale"), 4.0, "{run}");
        assert!(num(s, "/s_core_us_per_sale") > 0.0, "{run}");
    }
    // Unbatched: one transaction per input, seven rows. Batched: the change sets of a group
    // are merged, so a channel several inputs of the group changed is written once.
    assert_eq!(num(&r["sales"]["unbatched"], "/s_rows_per_sale"), 7.0);
    assert_eq!(num(&r["sales"]["unbatched"], "/s_commits_per_sale"), 4.0);
    let batched_rows = num(&r["sales"]["batched"], "/s_rows_per_sale");
    assert!(batched_rows > 0.0 && batched_rows <= 7.0, "{batched_rows}");
    assert!(num(&r["sales"]["batched"], "/s_commits_per_sale") <= 4.0);

    let b = &r["baselines"];
    assert!(num(b, "/sqlite_commits_per_sec") > 0.0);
    assert!(num(b, "/file_sync/sync_all_per_sec") > 0.0);
    assert!(num(&r["online"], "/noise_round_trip/round_trip_ms/p50") > 0.0);
}

#[test]
fn bench_payment_help_explains_each_figure() {
    let out = bench(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "Payee online -> paid latency",
        "Messages and round trips per payment",
        "Bytes S stores per pending payment",
        "sale throughput",
        "group commit",
        "--max-batch",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
