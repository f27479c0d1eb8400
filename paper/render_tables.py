#!/usr/bin/env python3
"""Renders paper/tables/*.md from the benchmark JSON in paper/data/, and copies each table
into paper/paper.md between its markers <!-- table:NAME --> and <!-- /table -->.

Usage: render_tables.py DATA_DIR TABLES_DIR
"""
import json
import os
import re
import sys

data_dir, tables_dir = sys.argv[1], sys.argv[2]
paper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "paper.md")


def load(name):
    with open(os.path.join(data_dir, name + ".json")) as f:
        return json.load(f)


def num(x, digits=0):
    """A number with thousands separators and a fixed number of decimals."""
    return f"{x:,.{digits}f}"


def table(caption, header, rows):
    out = [f"*{caption}*", "", "| " + " | ".join(header) + " |",
           "|" + "|".join("---" if i == 0 else "---:" for i in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out) + "\n"


tables = {}

# Table 4: how the data was made.
rows = []
for name in ["payment", "capital", "crypto", "mailbox"]:
    m = load(name + ".meta")
    command = "asyncpay " + m["command"].split(" ", 1)[1]
    rows.append([f"`{command}`", m["started"], num(m["seconds"], 1), m["load_average"], m["nproc"],
                 m["git_commit"][:12]])
tables["run"] = table(
    "Table 4. The benchmark runs behind Tables 5–13 (made by `paper/make-tables`; load average "
    "over 1, 5 and 15 minutes at the end of each run; commit: the repository's commit when it ran).",
    ["command", "started (UTC)", "seconds", "load average", "cores", "commit"], rows)

pay = load("payment")
online = pay["online"]
modes = [("one commit per row", "per_row"),
         ("one commit per input (as `asyncpay node`)", "per_input")]

# Table 5: payee online -> S holds A's completed state.
rows = []
for label, key in modes:
    lat = online[key]["latency_ms"]
    t, b = lat["total"], lat["b_paid_at"]
    rows.append([label, t["n"], num(t["p50"], 2), num(t["p90"], 2), num(t["max"], 2),
                 num(b["p50"], 2), num(online[key]["target_p50_ms"], 0),
                 "met" if online[key]["target_met"] else "missed"])
rt = online["noise_round_trip"]["round_trip_ms"]
tables["latency"] = table(
    "Table 5. Payee online → S has stored A's completed state (ms), and → B has stored "
    f"itself paid. Baseline in the same run: a 64-byte loopback Noise round trip, p50 "
    f"{num(rt['p50'], 3)} ms; a durable single-row SQLite commit between payments, p50 "
    f"{num(online['per_row']['sqlite_commit_between_payments_ms']['p50'], 3)} ms.",
    ["commits", "payments", "p50", "p90", "max", "B paid, p50", "target p50 <", "target"],
    rows)

# Table 6: the steps and the attribution of the mean.
steps = ["connect", "mailbox_fetch", "decrypt", "letter", "invoice_to_s", "ptlc_add",
         "fulfil", "complete_a", "total"]
rows = [[f"`{s}`"] + [num(online[k]["latency_ms"][s]["mean"], 3) for _, k in modes]
        for s in steps]
parts = ["core_compute", "sqlite_persist", "mailbox_and_decrypt", "network_and_scheduling"]
rows += [[f"of the total: {p.replace('_', ' ')}"] +
         [num(online[k]["attribution_mean_ms"][p], 3) for _, k in modes] for p in parts]
tables["steps"] = table(
    "Table 6. Mean time per step of the payee-online window (ms; steps are consecutive and "
    "add up to the total), and the mean total split by where the time went.",
    ["step", "per row", "per input"], rows)

# Table 6a: the same window over a link with a round-trip time.
over = online["per_input_rtt"]
rows = [[f"`{s}`", num(over["latency_ms"][s]["p50"], 1), num(over["p50_over_rtt"][s], 2)]
        for s in steps]
tables["latency_rtt"] = table(
    f"Table 6a. Payee online → S has stored A's completed state with {num(over['rtt_ms'])} ms "
    "of round-trip time added on B's links to S and to the mailbox (delaying TCP relays on "
    f"loopback; one transaction per input; {over['payments']} payments after the warm-up): "
    "p50 per step (ms), and p50 divided by the RTT, the round trips the step costs.",
    ["step", "p50", "p50 / RTT"], rows)

# Table 7: messages per payment.
msgs = online["per_row"]["messages"]
labels = {"a_pays": "A pays (A–S)", "a_returns": "A returns (A–S)",
          "b_sells": "B sells (S–B)", "a_total": "A in all (A–S)"}
rows = []
for k in ["a_pays", "a_returns", "a_total", "b_sells"]:
    m = msgs[k]
    rows.append([labels[k], m["channel_messages"], m["payment_messages"],
                 m["mailbox_requests"], num(m["peer_bytes"]), num(m["peer_round_trips"], 1)])
tables["messages"] = table(
    "Table 7. Messages per payment, counted from the frames the drivers wrote.",
    ["exchange", "channel msgs", "payment msgs", "mailbox requests", "peer bytes",
     "round trips"], rows)

# Table 8: storage per pending payment at S.
p = pay["sales"]["pending"]
tables["storage"] = table(
    f"Table 8. What S stores per pending (offered, unsold) payment: {num(p['pending_payments'])} "
    f"pending payments, {num(p['channels_at_s'])} channels at S.",
    ["figure", "bytes"],
    [["payment record", num(p["payment_record_bytes_per_pending"])],
     ["channel snapshot growth", num(p["channel_snapshot_growth_per_pending"])],
     ["stored rows in all", num(p["row_bytes_per_pending"])],
     ["database file after a checkpoint", num(p["file_bytes_per_pending"])]])

# Table 9: S's sales per second.
rows = []
for mode in ["unbatched", "batched"]:
    s = pay["sales"][mode]
    rows.append([mode, num(s["sales"]), s["max_batch"], num(s["sales_per_sec"]),
                 num(s["s_capacity_sales_per_sec"]), num(s["s_commits_per_sale"], 2),
                 num(s["s_core_us_per_sale"]), num(s["s_persist_us_per_sale"]),
                 num(s["baseline_commits_per_sec"]), num(s["fsync_bound_sales_per_sec"])])
target = pay["sales"]["target_sales_per_sec"]
best = max(pay["sales"][m]["sales_per_sec"] for m in ["unbatched", "batched"])
inv = pay["sales"]["batched"]["s_core_us_per_input"]
verdict = ("met" if best >= target else
           f"missed (best run {num(best)}/s, {num(target / best, 1)}× short)")
tables["sales"] = table(
    f"Table 9. S's sales per second with durable storage; target {num(target)}/s, {verdict}. "
    "S alone: sales over the time "
    "S's thread was busy. Fsync bound: durable single-row commits/s around the run divided by "
    "S's commits per sale. S's core per input in the batched run (µs): "
    + ", ".join(f"{k} {num(v)}" for k, v in inv.items()) + ".",
    ["run", "sales", "max batch", "sales/s", "S alone", "commits/sale at S", "S core µs/sale",
     "S persist µs/sale", "durable commits/s", "fsync bound"], rows)

# Table 9a: S's elliptic-curve floor per sale.
fl = pay["sales"]["floor"]
rows = [[op["name"], num(op["count"]), op["libsecp256k1"], num(op["us_each"], 1),
         num(op["count"] * op["us_each"], 1)] for op in fl["floor_ops"]]
ratio = fl["floor_ratio"]
tables["floor"] = table(
    f"Table 9a. S's elliptic-curve floor per sale: the curve operations the protocol requires of "
    f"S for one sale, each timed with libsecp256k1 in the same run: {num(fl['floor_us_per_sale'], 1)} "
    f"µs, against S's core time per sale of {num(fl['s_cpu_us_per_sale'], 1)} µs "
    f"({fl['s_cpu_is'].split(':')[0]}); ratio {num(ratio, 3)} (target ≥ 0.7, "
    + ("met" if ratio >= 0.7 else "missed") + "). Why each is required: docs/benchmarks.md.",
    ["operation", "per sale", "timed as", "µs each", "µs per sale"], rows)

# Table 10: cryptographic operations.
c = load("crypto")
rows = [[r["op"], num(r["per_sec"]), r["baseline"], num(r["ratio"], 3)] for r in c["rows"]]
tables["crypto"] = table(
    f"Table 10. Operations per second (median of {c['rounds']} rounds of {num(c['iterations'])} "
    "calls), against libsecp256k1 in the same run: BIP340 signing "
    f"{num(c['libsecp_sign_per_sec'])}/s, verification {num(c['libsecp_verify_per_sec'])}/s.",
    ["operation", "per second", "baseline", "ratio to baseline"], rows)

# Table 11: mailbox.
m = load("mailbox")
tables["mailbox"] = table(
    f"Table 11. Mailbox, {m['clients']} clients, {num(m['messages'])} envelopes of "
    f"{m['payload_bytes']} payload bytes.",
    ["figure", "measured", "target", "in this run"],
    [["durable posts/s", num(m["posts_per_sec"]), "", ""],
     ["single-insert SQLite baseline/s (before the run)", num(m["baseline_before_per_sec"]), "",
      ""],
     ["ratio posts / baseline", num(m["ratio_posts_to_baseline"], 2) + "×",
      "≥ " + num(m["target_ratio"], 0) + "×",
      "met" if m["ratio_posts_to_baseline"] >= m["target_ratio"] else "missed"],
     ["post p50 / p99 (ms)", f"{num(m['post_p50_ms'], 2)} / {num(m['post_p99_ms'], 2)}",
      "p99 < " + num(m["target_post_p99_ms"], 0),
      "met" if m["post_p99_ms"] < m["target_post_p99_ms"] else "missed"],
     ["fetch requests/s (challenge + fetch)", num(m["fetches_per_sec"]), "", ""],
     ["messages fetched/s", num(m["fetched_messages_per_sec"]), "", ""],
     ["envelope overhead, bytes per message", num(m["overhead_bytes_per_message"]), "", ""]])

# Tables 12 and 13: capital.
cap = load("capital")
par = cap["config"]["params"]


def scheme(report, name):
    return next(s for s in report["schemes"] if s["scheme"] == name)


rows = []
for r in cap["reports"]:
    pfs, lsp, hop, held = (scheme(r, n) for n in
                           ["pay_for_signature", "held_at_payer_lsp", "held_at_payee_hop",
                            "held_sale"])
    rows.append([f"`{r['name']}`", num(r["payee_offline_blocks"]["mean"], 1),
                 num(pfs["total"]["mean"]), num(held["total"]["mean"]),
                 num(lsp["total"]["mean"]), num(hop["total"]["mean"]),
                 num(pfs["total"]["mean"] / lsp["total"]["mean"], 3),
                 num(pfs["total"]["mean"] / hop["total"]["mean"], 3),
                 num(pfs["lsp"]["mean"]), num(hop["lsp"]["mean"])])
tables["capital"] = table(
    f"Table 12. Capital locked per payment of {num(par['amount_sat'])} sat, mean sat·blocks over "
    f"{num(cap['config']['payments'])} simulated payments per distribution (seed "
    f"{cap['config']['seed']}; resolution {num(par['resolve_secs'], 0)} s, horizon "
    f"{par['horizon_blocks']} blocks, route CLTV budget {par['route_cltv_budget']}). "
    "pfs: pay-for-signature; held sale: ours with many pending payments per channel (a PTLC "
    "A offers S); held@LSP: HTLC held at the payer's LSP; held@hop: HTLC held at "
    "the payee's hop. Distributions as in `docs/capital.md`.",
    ["payee offline", "mean blocks", "pfs, all", "held sale, all", "held@LSP, all",
     "held@hop, all", "pfs / held@LSP", "pfs / held@hop", "pfs, LSP", "held@hop, LSP"], rows)

rows = []
for r in cap["reports"]:
    l = r["limits"]
    cltv = ", ".join(f"{num(100 * c['fraction'], 2)}% > {c['blocks']}" for c in l["cltv_exceeds"])
    rows.append([f"`{r['name']}`", cltv, f"{num(100 * l['held_failed'], 2)}%",
                 f"{num(100 * l['sale_failed'], 2)}%",
                 f"{num(100 * l['held_sale_failed'], 2)}%",
                 f"{num(100 * l['payer_missed_htlc_deadline'], 2)}%",
                 f"{num(100 * l['payer_blocked'], 2)}%", num(l["payer_blocked_mean_blocks"], 1)])
tables["capital_limits"] = table(
    "Table 13. What limits the offline time in the same simulation: held HTLCs whose needed "
    "CLTV exceeds the lnd/CLN (2016) and LDK path (1008) caps; payments failed (held HTLC: payee "
    "later than the hold limit; sale: payee later than the offer's expiry; held sale: payee "
    "later than the held window); payers back after "
    "their HTLC deadline (the LSP force-closes); and, for pay-for-signature, payers back while "
    "their sale is pending (channel takes no other update) and the mean blocks they wait (a "
    "held sale blocks nothing).",
    ["payee offline", "held HTLC CLTV needed", "held failed", "sale failed", "held sale failed",
     "payer missed HTLC deadline", "pfs payer blocked", "blocked, mean blocks"], rows)

os.makedirs(tables_dir, exist_ok=True)
for name, text in tables.items():
    with open(os.path.join(tables_dir, name + ".md"), "w") as f:
        f.write(text)

# Copy the tables into the paper.
with open(paper) as f:
    text = f.read()
for name, body in tables.items():
    pattern = re.compile(r"(<!-- table:%s -->\n).*?(<!-- /table -->)" % re.escape(name), re.S)
    text, n = pattern.subn(lambda mo: mo.group(1) + "\n" + body + "\n" + mo.group(2), text)
    if n != 1:
        sys.exit(f"paper.md: expected one marker for table {name}, found {n}")
with open(paper, "w") as f:
    f.write(text)
