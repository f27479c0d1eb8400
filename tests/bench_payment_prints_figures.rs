//! `asyncpay bench payment` runs end to end with a handful of payments and prints every
//! figure: latencies that are positive, message counts that are exactly what the protocol
//! sends, bytes per pending payment, sales that all completed, baselines, and S's
//! elliptic-curve floor per sale: the operations docs/benchmarks.md lists, each counted at S
//! in the run's real sales exactly as listed.

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

/// Sales of each sharded run (S over 1 and 2 workers).
const WORKER_SALES: usize = 10;

#[test]
fn bench_payment_prints_figures() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let data_dir = data.path().to_str().expect("a UTF-8 path").to_owned();
    let worker_sales = WORKER_SALES.to_string();
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
        "--rtt-ms",
        "40",
        "--rtt-payments",
        "2",
        "--worker-sales",
        &worker_sales,
        "--data-dir",
        &data_dir,
        "--json",
    ]);
    assert!(
        out.status.success(),
        "bench failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("JSON on stdout");

    // Over a link with a 40 ms round-trip time: the Noise handshake alone costs more than a
    // round trip, and the whole path several.
    let over = &r["online"]["per_input_rtt"];
    assert_eq!(over["payments"], 2, "{over:#}");
    assert_eq!(num(over, "/rtt_ms"), 40.0);
    let connect = num(over, "/p50_over_rtt/connect");
    let total = num(over, "/p50_over_rtt/total");
    assert!(connect >= 1.0, "connect costs {connect} round trips");
    assert!(
        total >= 4.0 && total > connect,
        "the path costs {total} round trips"
    );
    assert!(
        (num(over, "/latency_ms/total/p50") / 40.0 - total).abs() < 1e-9,
        "p50 / RTT"
    );

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
    // Unbatched, batched, and each sharded run's sales.
    assert_eq!(p["pending_payments"], 18 + 2 * WORKER_SALES);
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

    check_floor(&r);
    check_held(&r);
    check_workers(&r, data.path());
}

/// S sharded over 1 and 2 workers: each run's figures are there and positive, every
/// worker's sales completed and add up to the sales asked for, and each worker's store holds
/// its payments as sold.
fn check_workers(r: &Value, data_dir: &std::path::Path) {
    let w = &r["sales"]["workers"];
    assert_eq!(w["cross_shard_sales"], "not built", "{w:#}");
    assert_eq!(w["sales_per_run"], WORKER_SALES);
    let runs = w["runs"].as_array().expect("runs");
    assert_eq!(
        runs.iter()
            .map(|r| r["workers"].clone())
            .collect::<Vec<_>>(),
        [1, 2]
    );
    assert!(num(w, "/speedup_2_over_1") > 0.0);
    // The stores are in the one run directory under --data-dir, in its sales part.
    let mut dirs = std::fs::read_dir(data_dir)
        .expect("the data directory")
        .map(|e| e.expect("an entry").path());
    let sales_dir = dirs.next().expect("the run's directory").join("sales");
    // Payer i's payment is sold by payee i mod 3, on worker (i mod 3) mod W. The runs sell
    // payers 0..6 (unbatched), 6..18 (batched), 18..28 (one worker), 28..38 (two workers).
    let total = 18 + 2 * WORKER_SALES;
    for (run, ran_to) in runs.iter().zip([18 + WORKER_SALES, total]) {
        let workers = run["workers"].as_u64().expect("workers") as usize;
        for key in [
            "sales_per_sec",
            "s_thread_cpu_us_per_sale",
            "s_core_us_per_sale",
            "payees_thread_cpu_us_per_sale",
            "projection/s_sales_per_sec_per_core",
            "projection/sales_per_sec_per_core_with_payees",
        ] {
            let v = num(run, &format!("/{key}"));
            assert!(v > 0.0 && v.is_finite(), "{workers} workers: {key} = {v}");
        }
        let per_core = num(run, "/projection/s_sales_per_sec_per_core");
        assert!((per_core - 1e6 / num(run, "/s_thread_cpu_us_per_sale")).abs() <= 1e-9 * per_core);
        let shards = run["shards"].as_array().expect("shards");
        assert_eq!(shards.len(), workers);
        let mut sold = 0;
        for (k, shard) in shards.iter().enumerate() {
            let mine =
                |range: std::ops::Range<usize>| range.filter(|i| (i % 3) % workers == k).count();
            let sales = shard["sales"].as_u64().expect("sales") as usize;
            let expected = mine(ran_to - WORKER_SALES..ran_to);
            assert_eq!(sales, expected, "{workers} workers, shard {k}");
            assert_eq!(shard["sold"], sales, "{shard}");
            assert_eq!(shard["sold_in_store"], sales, "{shard}");
            assert_eq!(num(shard, "/inputs_per_sale"), 4.0, "{shard}");
            assert!(num(shard, "/thread_cpu_us_per_sale") > 0.0, "{shard}");
            sold += sales;

            // The worker's own store: every payment of its payers sold up to this run, those
            // of the runs after it still offered.
            let store = asyncpay::node::store::Store::open(
                &sales_dir.join(shard["store"].as_str().expect("a store name")),
            )
            .expect("the worker's store");
            let statuses: Vec<String> = store
                .payments::<Value>()
                .expect("payment records")
                .into_iter()
                .map(|(_, r)| r["status"]["status"].as_str().unwrap_or("?").to_owned())
                .collect();
            let count = |s: &str| statuses.iter().filter(|x| *x == s).count();
            assert_eq!(
                count("sold"),
                mine(0..ran_to),
                "{workers} workers, shard {k}"
            );
            assert_eq!(
                count("offered"),
                mine(ran_to..total),
                "{workers} workers, shard {k}"
            );
            assert_eq!(statuses.len(), mine(0..total));
        }
        assert_eq!(sold, WORKER_SALES, "{workers} workers");
    }
    let text = asyncpay::bench::payment::render(r);
    assert!(text.contains("workers=2"), "{text}");
}

/// Part 6: bytes at S and on-chain weight of a pending held sale, for 1 and 16 pending. A
/// held sale adds one P2TR output to the settlement (43 bytes, 172 WU, exactly) and S's
/// claim of it.
fn check_held(r: &Value) {
    let held = &r["held"];
    let bytes = held["bytes"].as_array().expect("bytes rows");
    assert_eq!(
        bytes
            .iter()
            .map(|b| b["pending"].clone())
            .collect::<Vec<_>>(),
        [1, 16]
    );
    for b in bytes {
        assert!(num(b, "/row_bytes_per_pending") > 0.0, "{b}");
        assert!(num(b, "/channel_snapshot_growth_per_pending") > 0.0, "{b}");
    }
    let w = &held["weights"];
    assert!(w.get("error").is_none(), "{w:#}");
    let base = num(w, "/settlement_wu_without_ptlcs");
    let rows = w["rows"].as_array().expect("weight rows");
    assert_eq!(rows.len(), 2);
    for row in rows {
        let n = num(row, "/pending");
        assert_eq!(
            num(row, "/settlement_output_wu_per_pending"),
            172.0,
            "{row}"
        );
        assert_eq!(num(row, "/settlement_wu"), base + 172.0 * n, "{row}");
        let claim = num(row, "/claim_wu_mean");
        assert!(claim > 172.0, "{row}");
        assert_eq!(num(row, "/wu_per_pending"), 172.0 + claim);
    }
    let text = asyncpay::bench::payment::render(r);
    assert!(text.contains("6. a held sale while it waits"), "{text}");
}

/// The curve operations the protocol requires of S per sale, as docs/benchmarks.md lists
/// them: (name, count per sale).
const FLOOR: [(&str, u64); 9] = [
    ("verify_invoice", 1),
    ("ptlc_internal_key", 1),
    ("ptlc_output_key", 1),
    ("claim_adaptor_signature", 1),
    ("settlement_covenant_signature", 2),
    ("update_output_key", 2),
    ("update_signature", 2),
    ("verify_update_signature", 2),
    ("secret_sells_point", 1),
];

/// What S does per sale today, by counted kind, as docs/benchmarks.md lists it: (kind,
/// count per sale, of which required).
const TODAY: [(&str, u64, u64); 10] = [
    ("verify", 3, 3),
    ("adaptor_encrypt", 1, 1),
    ("adaptor_verify", 0, 0),
    ("nonce_commit", 2, 2),
    ("nonce_sign", 2, 2),
    ("secret_to_point", 1, 1),
    ("key_from_secret", 0, 0),
    ("key_to_libsecp", 0, 0),
    ("point_decode", 3, 0),
    ("libsecp_context", 9, 9),
];

fn check_floor(r: &Value) {
    let fl = &r["sales"]["floor"];
    let floor = num(fl, "/floor_us_per_sale");
    let cpu = num(fl, "/s_cpu_us_per_sale");
    assert!(floor > 0.0 && floor.is_finite(), "{fl:#}");
    // S's CPU per sale is the batched run's core time per sale, and the ratio is exactly
    // floor over it.
    assert_eq!(cpu, num(r, "/sales/batched/s_core_us_per_sale"));
    assert!((num(fl, "/floor_ratio") - floor / cpu).abs() <= 1e-12 * (floor / cpu));

    // The floor is the listed operations, each timed, summed by count.
    let ops = fl["floor_ops"].as_array().expect("floor_ops is a list");
    let listed: Vec<(&str, u64)> = ops
        .iter()
        .map(|o| {
            (
                o["name"].as_str().expect("a name"),
                o["count"].as_u64().expect("a count"),
            )
        })
        .collect();
    assert_eq!(listed, FLOOR);
    let mut sum = 0.0;
    for o in ops {
        let us = num(o, "/us_each");
        assert!(us > 0.0, "{o}");
        assert!(!o["why"].as_str().unwrap_or("").is_empty(), "{o}");
        assert!(o["libsecp256k1"].as_str().is_some_and(|c| !c.is_empty()));
        sum += us * num(o, "/count");
    }
    assert!((sum - floor).abs() <= 1e-9 * floor, "{sum} vs {floor}");
    // The calls were sampled on S's thread during the batched run, and timed alone beside.
    assert!(
        fl["libsecp256k1_timed"]
            .as_str()
            .is_some_and(|t| t.starts_with("on S's thread")),
        "{fl:#}"
    );
    for call in fl["libsecp256k1_us"].as_object().expect("calls").keys() {
        assert!(
            num(fl, &format!("/libsecp256k1_us_alone/{call}")) > 0.0,
            "{call}"
        );
    }
    assert!(num(r, "/sales/batched/s_floor_sampling_ms") > 0.0);

    // S's operations per sale, counted on S's thread in both sale runs, are exactly what
    // the listing says it does today.
    for run in ["unbatched", "batched"] {
        let counted = &fl["by_run"][run]["counted_per_sale"];
        let per_sale = &r["sales"][run]["s_curve_ops_per_sale"];
        for (op, today, _) in TODAY {
            assert_eq!(num(counted, &format!("/{op}")), today as f64, "{run} {op}");
            assert_eq!(num(per_sale, &format!("/{op}")), today as f64, "{run} {op}");
        }
        let ratio = num(fl, &format!("/by_run/{run}/floor_ratio"));
        let cpu = num(r, &format!("/sales/{run}/s_core_us_per_sale"));
        assert!(
            (ratio - floor / cpu).abs() <= 1e-12 * (floor / cpu),
            "{run}"
        );
    }
    let today: Vec<(&str, u64, u64)> = fl["done_today"]
        .as_array()
        .expect("done_today is a list")
        .iter()
        .map(|d| {
            (
                d["op"].as_str().expect("an op"),
                d["expected_per_sale"].as_u64().expect("a count"),
                d["required_per_sale"].as_u64().expect("a count"),
            )
        })
        .collect();
    assert_eq!(today, TODAY);

    // docs/benchmarks.md lists the same operations with the same counts.
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/benchmarks.md"))
        .expect("docs/benchmarks.md");
    for (name, count) in FLOOR {
        let row = format!("| `{name}` | {count} |");
        assert!(docs.contains(&row), "docs/benchmarks.md lacks {row:?}");
    }
    for (op, today, required) in TODAY {
        let row = format!("| `{op}` | {today} | {required} |");
        assert!(docs.contains(&row), "docs/benchmarks.md lacks {row:?}");
    }

    // The text report prints the three figures.
    let text = asyncpay::bench::payment::render(r);
    for key in ["floor_us_per_sale", "s_cpu_us_per_sale", "floor_ratio"] {
        assert!(text.contains(key), "text report lacks {key}");
    }
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
        "A held sale while it waits",
        "--max-batch",
    ] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
}
