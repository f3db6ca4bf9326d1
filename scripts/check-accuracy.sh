#!/usr/bin/env bash
# The accuracy bar, checked on the shared 1-minute BTC and ETH candles (../shared/data, or
# TICKCAST_SHARED): `tickcast backtest --horizons 1,5,15,60` with the default models and the
# ensemble, and the `trend` model on its own beside naive. Prints one table per asset (the
# README's Accuracy tables) and fails when a target is missed:
#
#   - every default model: relative MAE ≤ 1.02 and 95% interval score ≤ 1.05 × naive's;
#   - the ensemble: interval score ≤ naive's and ≤ its best member's × 1.005, relative MAE
#     ≤ 1.000 (to three decimals), coverage within 1 point of 80% and 95%;
#
# at every horizon. Release build; about 15 s per file on 2 cores, after the build.
#
#   scripts/check-accuracy.sh
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
shared="${TICKCAST_SHARED:-$(cd .. && pwd)/shared}"
data="$shared/data/candles_1m"
[[ -d "$data" ]] || { echo "check-accuracy: no $data (set TICKCAST_SHARED)" >&2; exit 2; }
cargo build --release --quiet
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
for sym in BTC ETH; do
  file="$data/binance_spot_${sym}USDT_1m_2021-2024_windows.csv.gz"
  echo "backtest $file" >&2
  ./target/release/tickcast backtest --data "$file" --horizons 1,5,15,60 --json >"$out/$sym.json"
  ./target/release/tickcast backtest --data "$file" --horizons 1,5,15,60 --json \
    --models naive,trend --no-ensemble >"$out/$sym-trend.json"
done
python3 - "$out" <<'EOF'
import json, sys

out = sys.argv[1]
failures = []

def fmt(x, digits):
    return "—" if x is None else f"{x:.{digits}f}"

def load(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]

for sym, name in (("BTC", "BTC-USDT"), ("ETH", "ETH-USDT")):
    rows = load(f"{out}/{sym}.json")
    trend = [r for r in load(f"{out}/{sym}-trend.json") if r["model"] == "trend"]
    naive = {r["horizon"]: r for r in rows if r["model"] == "naive"}
    trend_naive = {r["horizon"]: r for r in load(f"{out}/{sym}-trend.json") if r["model"] == "naive"}
    print(f"\n**{name}**\n")
    print("| model | h | rel. MAE | IS 95 ÷ naive | CRPS ÷ naive | PIT error | coverage 80 / 95 | MAE | IS 95 |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: | ---: |")
    order = ["naive", "garch", "ets", "lstm"]
    seen = [m for m in dict.fromkeys(r["model"] for r in rows) if m != "ensemble"]
    members = [m for m in order if m in seen] + [m for m in seen if m not in order]
    for model in members + ["ensemble"]:
        for r in sorted((r for r in rows if r["model"] == model), key=lambda r: r["horizon"]):
            h, n = r["horizon"], naive[r["horizon"]]
            ratio = r["winkler95"] / n["winkler95"]
            print(f"| {model} | {h} | {r['rel_mae']:.3f} | {ratio:.3f} | {fmt(r.get('crps_rel'), 3)} | "
                  f"{fmt(r.get('pit_max_err'), 4)} | {r['coverage80']:.3f} / {r['coverage95']:.3f} | "
                  f"{r['mae']:,.2f} | {r['winkler95']:,.1f} |")
            where = f"{name} {model} h={h}"
            if model != "ensemble":
                if r["rel_mae"] > 1.02:
                    failures.append(f"{where}: relative MAE {r['rel_mae']:.4f} > 1.02")
                if ratio > 1.05:
                    failures.append(f"{where}: interval score {ratio:.4f} × naive's > 1.05")
                continue
            best = min(m["winkler95"] for m in rows if m["horizon"] == h and m["model"] != "ensemble")
            if r["winkler95"] > n["winkler95"]:
                failures.append(f"{where}: interval score {ratio:.4f} × naive's > 1")
            if r["winkler95"] > best * 1.005:
                failures.append(f"{where}: interval score {r['winkler95']:.2f} > best member's {best:.2f} + 0.5%")
            if round(r["rel_mae"], 3) > 1.0:
                failures.append(f"{where}: relative MAE {r['rel_mae']:.4f} > 1.000")
            for level, cov in ((0.80, r["coverage80"]), (0.95, r["coverage95"])):
                if abs(cov - level) > 0.01:
                    failures.append(f"{where}: coverage {cov:.4f}, nominal {level}")
    for r in sorted(trend, key=lambda r: r["horizon"]):
        n = trend_naive[r["horizon"]]
        print(f"| trend (not default) | {r['horizon']} | {r['rel_mae']:.3f} | "
              f"{r['winkler95'] / n['winkler95']:.3f} | {fmt(r.get('crps_rel'), 3)} | "
              f"{fmt(r.get('pit_max_err'), 4)} | {r['coverage80']:.3f} / {r['coverage95']:.3f} | "
              f"{r['mae']:,.2f} | {r['winkler95']:,.1f} |")

print("\n**Touch probabilities** (levels at ±1 and ±2 × naive's σ√h from the last close): Brier "
      "score over the trailing base rate's (below 1 is better), and expected calibration error "
      "over 10 bins.\n")
print("| asset | model | h | Brier | ÷ base rate | ECE |")
print("| --- | --- | ---: | ---: | ---: | ---: |")
for sym, name in (("BTC", "BTC-USDT"), ("ETH", "ETH-USDT")):
    for r in sorted(load(f"{out}/{sym}.json"), key=lambda r: (r["model"] != "naive", r["model"], r["horizon"])):
        if r["model"] in ("naive", "lstm", "ensemble") and r.get("touch_brier") is not None:
            print(f"| {name} | {r['model']} | {r['horizon']} | {r['touch_brier']:.4f} | "
                  f"{r['touch_brier_rel']:.3f} | {r['touch_ece']:.4f} |")

if failures:
    print("\nMISSED:", *failures, sep="\n  ", file=sys.stderr)
    sys.exit(1)
print("\nevery target met", file=sys.stderr)
EOF
