#!/usr/bin/env bash
# The forecast stage's cost per closed bar for many symbols with every model (benches/forecast.rs),
# in release, one core, against the naive model alone in the same run.
#
#   scripts/bench-forecast.sh [SYMBOLS (default 1000)] [MODELS (default: every model)]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo bench --bench forecast --no-run
# Pinned to one core (the build above uses them all).
exec taskset -c 0 cargo bench --bench forecast -- "$@"
