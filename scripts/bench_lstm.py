#!/usr/bin/env python3
"""PyTorch CPU figures with the shapes of forecast/benches/lstm.rs, and the ratios to burn's.

Model: LSTM(4 -> H) + Linear(H -> 20) (5 quantiles x 4 horizons), pinball loss, Adam with
global-norm clipping 1.0. Timed: a training step on 256 sequences x 64 steps; the forward of
the same batch without gradients; one streaming step for 1,000 sequences with carried state.
Each figure is the median of repeated runs, for torch.set_num_threads(1) and the default.

Usage: bench_lstm.py [CRITERION_DIR]   (burn's medians are read from criterion's estimates)
"""

import glob
import json
import os
import statistics
import sys
import time

import torch

BATCH, STEPS, INPUTS, OUTPUTS, SERIES = 256, 64, 4, 20, 1000
TAU = torch.tensor([0.025, 0.1, 0.5, 0.9, 0.975] * 4)


class Net(torch.nn.Module):
    def __init__(self, hidden):
        super().__init__()
        self.lstm = torch.nn.LSTM(INPUTS, hidden)  # time-major, as burn's side
        self.head = torch.nn.Linear(hidden, OUTPUTS)

    def forward(self, x, state=None):
        h, state = self.lstm(x, state)
        return self.head(h), state


def pinball(pred, y):
    e = y - pred
    return (e * TAU - e.clamp(max=0.0)).mean()


def median_ms(fn, reps, warm=3):
    for _ in range(warm):
        fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def torch_figures(hidden):
    torch.manual_seed(0)
    net = Net(hidden)
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x = torch.rand(STEPS, BATCH, INPUTS) * 2 - 1
    y = torch.rand(STEPS, BATCH, OUTPUTS) * 2 - 1

    def train():
        opt.zero_grad()
        out, _ = net(x)
        loss = pinball(out, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()

    def infer():
        with torch.no_grad():
            net(x)

    xs = torch.rand(1, SERIES, INPUTS)
    state = [(torch.zeros(1, SERIES, hidden), torch.zeros(1, SERIES, hidden))]

    def stream():
        with torch.no_grad():
            _, state[0] = net(xs, state[0])

    return {
        "train_step": median_ms(train, 15),
        "inference": median_ms(infer, 30),
        "stream_step": median_ms(stream, 200),
    }


def burn_figures(root):
    """criterion's median (ms) per benchmark id, e.g. 'train_step/h64'."""
    out = {}
    for est in glob.glob(os.path.join(root, "lstm", "*", "new", "estimates.json")):
        bench = os.path.basename(os.path.dirname(os.path.dirname(est)))
        with open(est) as f:
            out[bench] = json.load(f)["median"]["point_estimate"] / 1e6
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "target/criterion"
    burn = burn_figures(root)
    default_threads = torch.get_num_threads()
    print(f"torch {torch.__version__}, {default_threads} threads by default; figures in ms (median)")
    rows = []
    for threads in (1, default_threads):
        torch.set_num_threads(threads)
        for hidden in (64, 32):
            for name, ms in torch_figures(hidden).items():
                rows.append((name, hidden, threads, ms))
    # `burn flex`: the figure through burn on its CPU device; `tickcast`: what the model runs on
    # the CPU — the host training gradient (tickcast_forecast::lstm::host_train), the host forward, the
    # host streaming step (tickcast_forecast::lstm::host).
    burn_id = {"train_step": "burn_train_step", "inference": "inference", "stream_step": "stream_step"}
    host_id = {"train_step": "train_step", "inference": "host_inference", "stream_step": "host_step"}
    print(f"{'figure':<12} {'H':>3} {'torch thr':>9} {'torch':>9} {'burn flex':>10} {'burn/torch':>10}"
          f" {'tickcast':>10} {'tc/torch':>10}")
    for name, hidden, threads, ms in rows:
        b = burn.get(f"{burn_id[name]}_h{hidden}")
        ratio = f"{b / ms:10.2f}" if b else f"{'-':>10}"
        bs = f"{b:10.3f}" if b else f"{'-':>10}"
        h = burn.get(f"{host_id[name]}_h{hidden}")
        hs = f"{h:10.3f}" if h else f"{'-':>10}"
        hr = f"{h / ms:10.2f}" if h else f"{'-':>10}"
        print(f"{name:<12} {hidden:>3} {threads:>9} {ms:9.3f} {bs} {ratio} {hs} {hr}")
    if "model_bar_1000" in burn:
        print(f"burn LstmModel::update, one bar of 1,000 series: {burn['model_bar_1000']:.3f} ms")


if __name__ == "__main__":
    main()
