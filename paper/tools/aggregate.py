#!/usr/bin/env python3
"""Folds the runs under DATA/runs/ into one figure per measured value.

For each benchmark NAME with runs NAME.1.json ... NAME.k.json, writes
  DATA/NAME.json         the runs' shape with every number replaced by its median over the runs
                         (each value on its own: a ratio is the median of the runs' ratios);
  DATA/NAME.spread.json  for every number, by its dotted path: median, least, greatest, runs;
  DATA/NAME.meta.json    the runs' commands, start times, durations and load averages.
Also writes DATA/tx_sizes.json from the regtest log and copies DATA/runs/hardware.json.

Usage: aggregate.py DATA
"""
import glob
import json
import os
import re
import statistics
import sys

data = sys.argv[1]
raw = os.path.join(data, "runs")


def median_of(values):
    if all(isinstance(v, bool) for v in values):
        return sum(values) * 2 > len(values)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        m = statistics.median(values)
        return int(m) if all(isinstance(v, int) for v in values) and m == int(m) else m
    return None


def fold(runs, path, spread):
    """The runs' common shape, numbers replaced by their medians."""
    first = runs[0]
    if isinstance(first, dict):
        keys = [k for k in first if all(isinstance(r, dict) and k in r for r in runs)]
        return {k: fold([r[k] for r in runs], f"{path}.{k}" if path else k, spread)
                for k in keys}
    if isinstance(first, list):
        if all(isinstance(r, list) and len(r) == len(first) for r in runs):
            return [fold([r[i] for r in runs], f"{path}[{i}]", spread)
                    for i in range(len(first))]
        return first
    m = median_of(runs)
    if m is None:
        return first
    if not isinstance(m, bool):
        spread[path] = {"median": m, "min": min(runs), "max": max(runs), "runs": len(runs)}
    return m


names = sorted({re.sub(r"\.\d+\.json$", "", os.path.basename(p))
                for p in glob.glob(os.path.join(raw, "*.[0-9]*.json"))
                if not p.endswith(".meta.json")})
for name in names:
    paths = [p for p in glob.glob(os.path.join(raw, f"{name}.[0-9]*.json"))
             if re.search(r"\.\d+\.json$", p)]
    paths.sort(key=lambda p: int(p.rsplit(".", 2)[1]))
    runs = [json.load(open(p)) for p in paths]
    spread = {}
    folded = fold(runs, "", spread)
    metas = [json.load(open(p[:-len(".json")] + ".meta.json")) for p in paths]
    with open(os.path.join(data, name + ".json"), "w") as f:
        json.dump(folded, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(data, name + ".spread.json"), "w") as f:
        json.dump(spread, f, indent=1, sort_keys=True)
        f.write("\n")
    with open(os.path.join(data, name + ".meta.json"), "w") as f:
        json.dump({"name": name, "runs": metas}, f, indent=1)
        f.write("\n")

# Transaction weights: the regtest test prints lines "VBYTES | transaction | weight | vsize |".
sizes = []
with open(os.path.join(raw, "tx_sizes.log")) as f:
    for line in f:
        if not line.startswith("VBYTES |"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")][1:]
        if len(cells) == 3 and cells[1].isdigit():
            sizes.append({"transaction": cells[0], "weight_wu": int(cells[1]),
                          "vsize_vb": int(cells[2])})
if not sizes:
    sys.exit("aggregate.py: the regtest log holds no transaction weights")
with open(os.path.join(data, "tx_sizes.json"), "w") as f:
    json.dump({"command": "cargo test --test regtest_eltoo_transaction_sizes_are_measured"
                          " -- --nocapture", "transactions": sizes}, f, indent=1)
    f.write("\n")
with open(os.path.join(raw, "hardware.json")) as f:
    hardware = json.load(f)
with open(os.path.join(data, "hardware.json"), "w") as f:
    json.dump(hardware, f, indent=1)
    f.write("\n")
