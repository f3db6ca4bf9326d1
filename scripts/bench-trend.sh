#!/usr/bin/env bash
# The `trend` model against Python Prophet on the same 1,440 one-minute closes: both fit time
# (median of Prophet's fits, mean of ours), their ratio (target ≥ 100×), the MAE of both
# forecasts of the next 60 closes with the naive forecast's for reference, and the largest
# difference between the two fitted trends (log price). Prophet is installed with pip into a
# virtual environment under target/.
#
#   scripts/bench-trend.sh [OFFSET]
#
# OFFSET is the first row of the slice (default 0; moved past any gap). Environment:
# TICKCAST_SHARED (default ../shared) for the BTC file; without it, a seeded synthetic random
# walk. TREND_BENCH_REPS (default 200) repetitions of our fit, PROPHET_REPS (default 3).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
target="${CARGO_TARGET_DIR:-target}"
venv="$target/bench-trend-venv"
if ! "$venv/bin/python" -c "import prophet" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet prophet
fi
cargo build --release --quiet -p tickcast-forecast --example trend_fit
data="${TICKCAST_SHARED:-../shared}/data/candles_1m/binance_spot_BTCUSDT_1m_2021-2024_windows.csv.gz"
"$venv/bin/python" scripts/bench_trend.py \
    --data "$data" \
    --offset "${1:-0}" \
    --reps "${TREND_BENCH_REPS:-200}" \
    --prophet-reps "${PROPHET_REPS:-3}" \
    --bin "$target/release/examples/trend_fit"
