#!/usr/bin/env bash
# LSTM training step, inference and streaming step: burn (flex, release) against PyTorch CPU
# with the same shapes, one thread and the default thread count; prints both and the ratios.
# PyTorch goes into a virtual environment under target/ (the CPU wheel index first, PyPI after).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo bench -p tickcast-forecast --bench lstm --no-run
# One core, as PyTorch's one-thread figures (the build above uses them all).
taskset -c 0 cargo bench -p tickcast-forecast --bench lstm -- --noplot "$@"

venv=target/bench-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c "import torch" 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet --retries 0 --timeout 10 torch --index-url https://download.pytorch.org/whl/cpu \
        || "$venv/bin/pip" install --quiet torch
fi
target_dir="${CARGO_TARGET_DIR:-target}"
"$venv/bin/python" scripts/bench_lstm.py "$target_dir/criterion"
