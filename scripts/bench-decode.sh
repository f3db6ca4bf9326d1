#!/usr/bin/env bash
# Decode throughput per connector (ingest/benches/decode.rs), in release, then a table of
# frames/s and trades/s per input with the ratio to plain JSON parsing and to the cryptofeed
# reference (230,000 frames/s, Binance trade normalisation, one core).
#
#   scripts/bench-decode.sh [CRITERION FILTER]
#
# Environment: DECODE_BENCH_MEASURE_S (default 3), DECODE_BENCH_WARMUP_S (default 1),
# TICKCAST_SHARED (recordings; default ../shared).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
rm -rf "$target/criterion"
cargo bench -p tickcast-ingest --bench decode -- ${1:+"$1"}
python3 - "$target/criterion" <<'PY'
import json, os, sys
REF = 230_000  # cryptofeed, Binance trade normalisation, frames/s, one core
TARGET = 1_000_000  # Binance trades/s per core
rows = {}
for root, _, files in os.walk(sys.argv[1]):
    if "benchmark.json" not in files or os.path.basename(root) != "new":
        continue
    b = json.load(open(os.path.join(root, "benchmark.json")))
    e = json.load(open(os.path.join(root, "estimates.json")))
    n = (b.get("throughput") or {}).get("Elements")
    if not n:
        continue
    per_s = n / (e["mean"]["point_estimate"] * 1e-9)
    label, unit = b["group_id"].rsplit("/", 1)
    kind = "json" if b["function_id"] == "serde_json_value" else "decode"
    rows.setdefault(label, {})[(unit, kind)] = per_s
print()
print(f"{'input':<34} {'frames/s':>12} {'trades/s':>12} {'json/s':>12} {'vs json':>8} {'vs cryptofeed':>14}")
for label in sorted(rows):
    r = rows[label]
    f = r.get(("frames", "decode")); t = r.get(("trades", "decode")); j = r.get(("frames", "json"))
    fmt = lambda x: f"{x:>12,.0f}" if x else f"{'-':>12}"
    vs_json = f"{f / j:>8.2f}" if f and j else f"{'-':>8}"
    vs_ref = f"{f / REF:>13.2f}x" if f else f"{'-':>14}"
    print(f"{label:<34} {fmt(f)} {fmt(t)} {fmt(j)} {vs_json} {vs_ref}")
ref = rows.get("shared/binance-trade-ref", {}).get(("trades", "decode"))
if ref:
    verdict = "meets" if ref >= TARGET else "BELOW"
    print(f"\nBinance reference recording: {ref:,.0f} trades/s ({verdict} the {TARGET:,} trades/s target)")
PY
