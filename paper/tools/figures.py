"""The paper's figures, drawn from paper/data/ with matplotlib as SVG.

The output is byte-stable: a fixed hash salt for SVG ids, no date, text as paths with the
fonts matplotlib carries. Each function takes the data directory and writes one file.
"""
import glob
import json
import os
import re

import matplotlib

matplotlib.use("svg")
import matplotlib.pyplot as plt  # noqa: E402

plt.rcParams.update({
    "svg.hashsalt": "asyncpay",
    "svg.fonttype": "path",
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "figure.dpi": 100,
})
TOOLS = os.path.dirname(os.path.abspath(__file__))
GREY, BLUE, ORANGE, GREEN, RED = "#777777", "#1f5a99", "#d9822b", "#3a8a3a", "#b03030"


def load(data_dir, name):
    with open(os.path.join(data_dir, name + ".json")) as f:
        return json.load(f)


def save(fig, out_dir, name):
    fig.savefig(os.path.join(out_dir, name + ".svg"), metadata={"Date": None},
                bbox_inches="tight")
    plt.close(fig)


def scheme(report, name):
    """One scheme's figures in a capital report."""
    return next(s for s in report["schemes"] if s["scheme"] == name)


def bolt3():
    """BOLT 3's expected weights for anchor channels, with their source."""
    with open(os.path.join(TOOLS, "bolt3.json")) as f:
        return json.load(f)


def tx_weight(data_dir):
    """The measured weight of the transaction kind whose name starts with a prefix."""
    sizes = {t["transaction"]: t["weight_wu"]
             for t in load(data_dir, "tx_sizes")["transactions"]}
    return lambda prefix: next(v for k, v in sizes.items() if k.startswith(prefix))


def err(spread, path):
    """Error bar lengths (below, above) of a median from its spread entry."""
    s = spread[path]
    return [[s["median"] - s["min"]], [s["max"] - s["median"]]]


def sweep_points(data_dir):
    """The sales sweep's runs, as (max batch, folded data), by batch size."""
    points = []
    for path in glob.glob(os.path.join(data_dir, "sweep-b*.json")):
        match = re.search(r"sweep-b(\d+)\.json$", path)
        if match:
            points.append((int(match.group(1)), load(data_dir, f"sweep-b{match.group(1)}")))
    return sorted(points)


def sequence(data_dir, out_dir):
    """The frames of one payment between A, S, the mailbox and B, as the drivers wrote them."""
    msgs = load(data_dir, "payment")["online"]["per_input"]["messages"]
    lanes = {"A": 0.0, "S": 1.0, "M": 1.8, "B": 2.6}
    phases = [("A pays, then goes offline", msgs["a_pays"]["frames"] + ["A->M letter"]),
              ("B comes online and sells", ["M->B letter"] + msgs["b_sells"]["frames"]),
              ("A returns", msgs["a_returns"]["frames"])]
    rows = sum(len(f) for _, f in phases) + len(phases) + 2
    fig, ax = plt.subplots(figsize=(5.6, 0.24 * rows + 0.6))
    for name, x in lanes.items():
        ax.plot([x, x], [0, -rows], color=GREY, lw=0.6, zorder=0)
        label = {"A": "payer A", "S": "LSP S", "M": "mailbox", "B": "payee B"}[name]
        ax.text(x, 0.4, label, ha="center", va="bottom", weight="bold")
    y = -0.6
    for title, frames in phases:
        ax.text(-0.35, y, title, ha="left", va="center", style="italic", color=BLUE)
        y -= 1
        for frame in frames:
            match = re.match(r"(\w)->(\w) (.+)", frame)
            src, dst, label = match.group(1), match.group(2), match.group(3)
            x0, x1 = lanes[src], lanes[dst]
            # The mailbox's requests are drawn dashed: they are not peer frames.
            mailbox = "M" in (src, dst)
            colour = GREY if mailbox else "black"
            ax.annotate("", xy=(x1, y), xytext=(x0, y),
                        arrowprops=dict(arrowstyle="->", color=colour, lw=0.9,
                                        ls="--" if mailbox else "-"))
            ax.text((x0 + x1) / 2, y + 0.12, label, ha="center", va="bottom", fontsize=7,
                    color=colour)
            y -= 0.8
        y -= 0.5
    ax.set_xlim(-0.4, 3.0)
    ax.set_ylim(y, 1.0)
    ax.axis("off")
    save(fig, out_dir, "sequence")


def sale_window(data_dir, out_dir):
    """The delay rules on a block timeline, with the settlement delay the capital model uses
    for S–B and the smallest A–S delay the construction rule allows."""
    par = load(data_dir, "capital")["config"]["params"]
    d_sb = par["shared_delay"]            # S–B settlement delay
    ptlc_delta = 2 * d_sb                 # a PTLC's expiry is ≥ 2·shared_delay(S–B) away
    margin = 2                            # SALE_WINDOW_MARGIN (src/protocol/channel/state.rs)
    d_as = ptlc_delta + 2 * margin        # the construction rule: shared_delay(A–S) ≥ this
    window = d_as - 1 - margin
    lead = 1                              # the PTLC was offered the block before U_n confirmed
    expiry = ptlc_delta - lead
    close = expiry - d_sb - margin - 1    # the offerer goes on chain for the unresolved PTLC
    fig, ax = plt.subplots(figsize=(6.0, 2.3))
    bars = [
        ("PTLC S offered B just before A's\nolder state confirmed (expiry X)", -lead, expiry,
         ORANGE),
        ("S–B closed early (R4): update, settlement\nafter shared_delay; B's claim by X + M",
         close, expiry + margin, BLUE),
        ("sale window: S may publish U_{n+1}\nover A's older U_n", 0, window, GREEN),
        ("A's older U_n confirmed; SE_n\nvalid after shared_delay(A–S)", 0, d_as, GREY),
    ]
    for i, (label, start, end, colour) in enumerate(bars):
        y = len(bars) - i
        ax.barh(y, end - start, left=start, height=0.55, color=colour, alpha=0.85)
        ax.text(-12, y, label, ha="right", va="center", fontsize=6.5)
    marks = [(0, "U_n confirms"), (close, "S closes S–B"), (expiry, "X"),
             (window, "window ends = X + M"), (d_as, "SE_n valid")]
    for i, (x, label) in enumerate(marks):
        ax.axvline(x, color="black", lw=0.5, ls=":")
        ax.text(x - 2 if i else x + 2, len(bars) + 0.45 + 0.36 * max(i - 1, 0),
                f"{label} ({x})", ha="right" if i else "left", va="bottom", fontsize=6)
    ax.set_yticks([])
    ax.set_xlabel(f"blocks after U_n confirms (shared_delay(S–B) = {d_sb}, "
                  f"PTLC delta = {ptlc_delta}, M = {margin}, shared_delay(A–S) = {d_as})")
    ax.set_xlim(-8, d_as * 1.05)
    save(fig, out_dir, "sale_window")


def latency(data_dir, out_dir):
    """Mean time per step of the payee-online window, and its round trips over a slow link."""
    pay = load(data_dir, "payment")
    spread = load(data_dir, "payment.spread")
    online = pay["online"]
    steps = ["connect", "mailbox_fetch", "decrypt", "letter", "invoice_to_s", "ptlc_add",
             "fulfil", "complete_a"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(6.6, 2.6))
    ys = list(range(len(steps)))[::-1]
    for offset, (key, label, colour) in enumerate(
            [("per_row", "commit per row", GREY), ("per_input", "commit per input", BLUE)]):
        vals = [online[key]["latency_ms"][s]["p50"] for s in steps]
        errs = [[], []]
        for s in steps:
            e = err(spread, f"online.{key}.latency_ms.{s}.p50")
            errs[0] += e[0]
            errs[1] += e[1]
        left.barh([y + 0.2 - 0.4 * offset for y in ys], vals, height=0.38, color=colour,
                  xerr=errs, error_kw=dict(lw=0.6, capsize=1.5), label=label)
    left.set_yticks(ys)
    left.set_yticklabels(steps)
    left.set_xlabel("p50 per step, ms (loopback)")
    left.legend(frameon=False, fontsize=7)
    rtt = online["per_input_rtt"]
    right.barh(ys, [rtt["p50_over_rtt"][s] for s in steps], height=0.6, color=ORANGE)
    right.set_yticks(ys)
    right.set_yticklabels([])
    right.set_xlabel(f"p50 / RTT with {rtt['rtt_ms']:.0f} ms RTT added")
    save(fig, out_dir, "latency")


def sales(data_dir, out_dir):
    """S's sales per second against the batch size, and against the worker count when the
    bench reports workers."""
    points = sweep_points(data_dir)
    pay = load(data_dir, "payment")
    workers = pay["sales"].get("workers")
    panels = 2 if workers else 1
    fig, axes = plt.subplots(1, panels, figsize=(6.0, 2.4), squeeze=False)
    ax = axes[0][0]
    xs = [b for b, _ in points]
    ys = [s["sales"]["batched"]["sales_per_sec"] for _, s in points]
    errs = [[], []]
    for b, _ in points:
        e = err(load(data_dir, f"sweep-b{b}.spread"), "sales.batched.sales_per_sec")
        errs[0] += e[0]
        errs[1] += e[1]
    ax.errorbar(xs, ys, yerr=errs, marker="o", color=BLUE, capsize=2, lw=1,
                label="sales/s (median, least–greatest)")
    alone = [s["sales"]["batched"]["s_capacity_sales_per_sec"] for _, s in points]
    ax.plot(xs, alone, marker="s", color=GREY, lw=1, ls="--", label="S's thread alone")
    ax.set_xscale("log", base=2)
    ax.set_xticks(xs)
    ax.set_xticklabels([str(x) for x in xs])
    ax.set_xlabel("most inputs per group commit")
    ax.set_ylabel("sales per second")
    ax.set_ylim(0, max(alone + ys) * 1.3)
    ax.legend(frameon=False, fontsize=7, loc="upper left")
    if workers:
        ax = axes[0][1]
        spread = load(data_dir, "payment.spread")
        runs = workers["runs"]
        ws = [str(w["workers"]) for w in runs]
        errs = [[], []]
        for i, _ in enumerate(runs):
            e = err(spread, f"sales.workers.runs[{i}].sales_per_sec")
            errs[0] += e[0]
            errs[1] += e[1]
        ax.bar(ws, [w["sales_per_sec"] for w in runs], color=BLUE, width=0.5, yerr=errs,
               error_kw=dict(lw=0.6, capsize=2), label="sales/s")
        per_core = [w["projection"]["s_sales_per_sec_per_core"] for w in runs]
        if all(isinstance(x, (int, float)) for x in per_core):
            ax.plot(ws, per_core, marker="s", color=GREY, ls="--", lw=1,
                    label="S's rate per core of its CPU")
        ax.set_xlabel("S's worker threads")
        top = max([w["sales_per_sec"] for w in runs]
                  + [x for x in per_core if isinstance(x, (int, float))])
        ax.set_ylim(0, top * 1.45)
        ax.legend(frameon=False, fontsize=7, loc="upper center", ncol=2)
    save(fig, out_dir, "sales")


def floor(data_dir, out_dir):
    """S's core time per sale by input, against the curve operations the protocol requires."""
    pay = load(data_dir, "payment")
    inputs = pay["sales"]["batched"]["s_core_us_per_input"]
    ops = pay["sales"]["floor"]["floor_ops"]
    fig, ax = plt.subplots(figsize=(6.0, 1.5))
    left = 0
    colours = [BLUE, ORANGE, GREEN, RED, GREY]
    for i, (name, us) in enumerate(inputs.items()):
        ax.barh(1, us, left=left, color=colours[i % len(colours)], height=0.5,
                label=f"{name} ({us:.0f} µs)")
        left += us
    ax.legend(frameon=False, fontsize=6.5, ncol=4, loc="upper center",
              bbox_to_anchor=(0.5, 1.35))
    left = 0
    for i, op in enumerate(ops):
        us = op["count"] * op["us_each"]
        ax.barh(0, us, left=left, height=0.5, color=GREY if i % 2 else "#aaaaaa",
                edgecolor="white", lw=0.5)
        left += us
    ax.set_yticks([0, 1])
    ax.set_yticklabels(["required curve ops\n(libsecp256k1)", "S's core per sale\n(by input)"])
    ax.set_xlabel("µs per sale")
    save(fig, out_dir, "floor")


def capital(data_dir, out_dir):
    """Capital locked per payment under each scheme, per offline-time distribution."""
    cap = load(data_dir, "capital")
    names = [("pay_for_signature", "pay-for-signature", BLUE), ("held_sale", "held sale", GREEN),
             ("held_at_payer_lsp", "HTLC held at payer's LSP", GREY),
             ("held_at_payee_hop", "HTLC held at payee's hop", ORANGE)]
    reports = cap["reports"]
    fig, ax = plt.subplots(figsize=(6.6, 2.6))
    width = 0.8 / len(names)
    for j, (key, label, colour) in enumerate(names):
        xs, mids, lows, highs = [], [], [], []
        for i, r in enumerate(reports):
            s = scheme(r, key)["total"]
            xs.append(i + (j - 1.5) * width)
            mids.append(s["p50"])
            lows.append(0)
            highs.append(max(s["p99"] - s["p50"], 0))
        ax.bar(xs, mids, width=width, color=colour, label=label,
               yerr=[lows, highs], error_kw=dict(lw=0.6, capsize=1.2))
    ax.set_yscale("log")
    ax.set_xticks(range(len(reports)))
    ax.set_xticklabels([r["name"] for r in reports], rotation=20, fontsize=7)
    ax.set_ylabel("sat·blocks locked (p50, whisker to p99)")
    ax.legend(frameon=False, fontsize=6.5, ncol=2)
    save(fig, out_dir, "capital")


def weights(data_dir, out_dir):
    """On-chain weight per scenario, against the BOLT 3 (anchor outputs) equivalent."""
    bolt3_weights = bolt3()
    w = tx_weight(data_dir)

    scenarios = [
        ("unilateral close,\nno HTLC/PTLC",
         bolt3_weights["commitment_weight_wu"],
         w("update U_n spending the funding") + w("settlement SE_n, 2 balances, 0")),
        ("unilateral close,\n2 HTLCs/PTLCs",
         bolt3_weights["commitment_weight_wu"] + 2 * bolt3_weights["htlc_output_weight_wu"],
         w("update U_n spending the funding") + w("settlement SE_n, 2 balances, 2")),
        ("payee's\nsuccess spend", bolt3_weights["htlc_success_weight_wu"], w("PTLC claim")),
        ("offerer's\ntimeout spend", bolt3_weights["htlc_timeout_weight_wu"], w("PTLC timeout")),
    ]
    fig, ax = plt.subplots(figsize=(6.0, 2.4))
    xs = range(len(scenarios))
    ax.bar([x - 0.2 for x in xs], [s[1] for s in scenarios], width=0.38, color=GREY,
           label="BOLT 3, anchor outputs")
    ax.bar([x + 0.2 for x in xs], [s[2] for s in scenarios], width=0.38, color=BLUE,
           label="asyncpay eltoo (measured on regtest)")
    for x, s in zip(xs, scenarios):
        ax.text(x - 0.2, s[1] + 15, str(s[1]), ha="center", fontsize=6.5)
        ax.text(x + 0.2, s[2] + 15, str(s[2]), ha="center", fontsize=6.5)
    ax.set_xticks(list(xs))
    ax.set_xticklabels([s[0] for s in scenarios], fontsize=7)
    ax.set_ylabel("weight (WU)")
    ax.legend(frameon=False, fontsize=7)
    save(fig, out_dir, "weights")


def crypto(data_dir, out_dir):
    """Each adaptor operation's rate as a ratio to libsecp256k1's, over the runs."""
    c = load(data_dir, "crypto")
    spread = load(data_dir, "crypto.spread")
    rows = [(i, r) for i, r in enumerate(c["rows"])
            if r["op"].startswith(("adaptor", "price point", "sale check"))]
    fig, ax = plt.subplots(figsize=(6.0, 2.3))
    ys = list(range(len(rows)))[::-1]
    errs = [[], []]
    for i, _ in rows:
        e = err(spread, f"rows[{i}].ratio")
        errs[0] += e[0]
        errs[1] += e[1]
    ax.barh(ys, [r["ratio"] for _, r in rows], xerr=errs, color=BLUE, height=0.6,
            error_kw=dict(lw=0.6, capsize=1.5))
    ax.axvline(0.67, color=RED, lw=0.8, ls="--")
    ax.text(0.68, ys[0] + 0.5, "target 0.67", color=RED, fontsize=6.5)
    ax.set_yticks(ys)
    ax.set_yticklabels([r["op"] for _, r in rows], fontsize=7)
    ax.set_xlabel("rate / libsecp256k1's rate in the same run (median, least–greatest)")
    save(fig, out_dir, "crypto")


def render_all(data_dir, out_dir):
    for draw in [sequence, sale_window, latency, sales, floor, capital, weights, crypto]:
        draw(data_dir, out_dir)
