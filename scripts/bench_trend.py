"""Python Prophet against tickcast's `trend` model on the same 1,440 one-minute points.

Both fit log closes with Prophet's linear-growth model: 25 changepoints over the first 80% of
the window, changepoint_prior_scale 0.05, daily seasonality (order 4), no weekly or yearly
seasonality, min-max scaling of y. Prints both fit times, their ratio, the mean absolute error
of both forecasts of the next 60 closes (and the naive forecast's), and the largest difference
between the two fitted trends. Run by scripts/bench-trend.sh.
"""

import argparse
import csv
import gzip
import json
import logging
import math
import os
import random
import subprocess
import tempfile
import time


def read_closes(path):
    """(ts_ms, close) rows of a candle CSV (plain or gzip)."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = csv.DictReader(f)
        return [(int(r["ts_ms"]), float(r["close"])) for r in rows]


def contiguous_slice(rows, start, length, bar_ms=60_000):
    """The first `length` consecutive bars (no gap) at or after row `start`."""
    i = start
    while i + length <= len(rows):
        window = rows[i : i + length]
        gaps = [k for k in range(1, length) if window[k][0] - window[k - 1][0] != bar_ms]
        if not gaps:
            return window
        i += gaps[-1]
    raise SystemExit(f"no {length} contiguous bars after row {start}")


def synthetic(length, seed):
    """A seeded random walk of 1-minute log returns (sd 0.1%) from 30,000."""
    rng = random.Random(seed)
    price, rows = 30_000.0, []
    for i in range(length):
        price *= math.exp(0.001 * rng.gauss(0.0, 1.0))
        rows.append((1_700_000_000_000 + i * 60_000, price))
    return rows


def fit_prophet(rows, horizon, reps):
    logging.getLogger("cmdstanpy").setLevel(logging.ERROR)
    logging.getLogger("prophet").setLevel(logging.ERROR)
    logging.getLogger("prophet.plot").setLevel(logging.CRITICAL)
    import pandas as pd
    from prophet import Prophet
    df = pd.DataFrame(
        {
            "ds": pd.to_datetime([t for t, _ in rows], unit="ms"),
            "y": [math.log(c) for _, c in rows],
        }
    )
    fit_s = []
    model = None
    for _ in range(reps):
        model = Prophet(
            growth="linear",
            daily_seasonality=True,
            weekly_seasonality=False,
            yearly_seasonality=False,
            scaling="minmax",
        )
        started = time.perf_counter()
        model.fit(df)
        fit_s.append(time.perf_counter() - started)
    future = model.make_future_dataframe(periods=horizon, freq="min")
    started = time.perf_counter()
    pred = model.predict(future)
    predict_s = time.perf_counter() - started
    n = len(rows)
    params = model.params
    return {
        "k": float(params["k"][0][0]),
        "m": float(params["m"][0][0]),
        "delta": [float(d) for d in params["delta"][0]],
        "beta": [float(b) for b in params["beta"][0]],
        "sigma": float(params["sigma_obs"][0][0]),
        "y_min": float(model.y_min),
        "y_scale": float(model.y_scale),
        "fitted_log": pred["yhat"].iloc[:n].tolist(),
        "fit_s": sorted(fit_s)[len(fit_s) // 2],
        "predict_s": predict_s,
        "trend_log": pred["trend"].iloc[:n].tolist(),
        "forecast": [math.exp(v) for v in pred["yhat"].iloc[n:].tolist()],
    }


def neg_log_posterior(y_log, fitted_log, y_min, y_scale, k, m, delta, beta, sigma, tau=0.05):
    """Prophet's objective (Stan's, constants dropped) on the scaled axis; lower is better."""
    n = len(y_log)
    rss = sum(((y - f) / y_scale) ** 2 for y, f in zip(y_log, fitted_log))
    return (
        n * math.log(sigma)
        + rss / (2 * sigma**2)
        + sum(abs(d) for d in delta) / tau
        + (k * k + m * m) / 50
        + sum(b * b for b in beta) / 200
        + 2 * sigma**2
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", help="candle CSV(.gz) with ts_ms and close; synthetic if absent")
    ap.add_argument("--offset", type=int, default=0, help="first row of the slice")
    ap.add_argument("--n", type=int, default=1_440)
    ap.add_argument("--horizon", type=int, default=60)
    ap.add_argument("--prophet-reps", type=int, default=3)
    ap.add_argument("--reps", type=int, default=200, help="repetitions of our fit")
    ap.add_argument("--bin", required=True, help="the trend_fit example binary")
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    total = args.n + args.horizon
    if args.data and os.path.exists(args.data):
        rows = contiguous_slice(read_closes(args.data), args.offset, total)
        source = f"{args.data} rows from ts_ms {rows[0][0]}"
    else:
        rows = synthetic(total, args.seed)
        source = f"synthetic random walk, seed {args.seed}"
    history, future = rows[: args.n], rows[args.n :]

    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.write("ts_ms,close\n")
        for t, c in history:
            f.write(f"{t},{c!r}\n")
        path = f.name
    try:
        out = subprocess.run(
            [args.bin, path, str(args.n), str(args.horizon), str(args.reps)],
            check=True,
            capture_output=True,
            text=True,
        )
    finally:
        os.unlink(path)
    ours = json.loads(out.stdout)
    prophet = fit_prophet(history, args.horizon, args.prophet_reps)

    actual = [c for _, c in future]
    last = history[-1][1]

    def mae(pred):
        return sum(abs(p - a) for p, a in zip(pred, actual)) / len(actual)

    trend_diff = max(abs(a - b) for a, b in zip(ours["trend_log"], prophet["trend_log"]))
    forecast_diff = max(
        abs(math.log(a) - math.log(b)) for a, b in zip(ours["forecast"], prophet["forecast"])
    )
    ours_ms = ours["fit_ms_cold"]
    y_log = [math.log(c) for _, c in history]
    coef, n_cp = ours["coef_scaled"], ours["changepoints"]
    nlp_ours = neg_log_posterior(
        y_log, ours["fitted_log"], ours["y_min"], ours["y_scale"], coef[1], coef[0],
        coef[2 : 2 + n_cp], coef[2 + n_cp :], ours["sigma_scaled"],
    )
    nlp_prophet = neg_log_posterior(
        y_log, prophet["fitted_log"], prophet["y_min"], prophet["y_scale"], prophet["k"],
        prophet["m"], prophet["delta"], prophet["beta"], prophet["sigma"],
    )
    report = {
        "source": source,
        "n": args.n,
        "horizon": args.horizon,
        "prophet_fit_ms": prophet["fit_s"] * 1e3,
        "prophet_predict_ms": prophet["predict_s"] * 1e3,
        "trend_fit_ms_cold": ours_ms,
        "trend_fit_ms_shared_design": ours["fit_ms_shared_design"],
        "trend_fit_ms_warm": ours["fit_ms_warm"],
        "speed_ratio_cold": prophet["fit_s"] * 1e3 / ours_ms,
        "speed_ratio_shared_design": prophet["fit_s"] * 1e3 / ours["fit_ms_shared_design"],
        "mae_prophet": mae(prophet["forecast"]),
        "mae_trend": mae(ours["forecast"]),
        "mae_naive": mae([last] * len(actual)),
        "max_abs_trend_diff_log": trend_diff,
        "max_abs_forecast_diff_log": forecast_diff,
        "trend_nonzero_deltas": ours["nonzero_deltas"],
        "prophet_nonzero_deltas": sum(abs(d) > 1e-6 for d in prophet["delta"]),
        "neg_log_posterior_trend": nlp_ours,
        "neg_log_posterior_prophet": nlp_prophet,
    }
    for k, v in report.items():
        print(f"{k:28} {v:.6g}" if isinstance(v, float) else f"{k:28} {v}")
    print("json", json.dumps(report))


if __name__ == "__main__":
    main()
