#!/usr/bin/env bash
# The LSTM on the CPU against the GPU (burn's `wgpu` device): training step, inference,
# streaming step and the model's update for one bar, in release, with the shapes of
# scripts/bench-lstm.sh; prints a table with the ratios (forecast/benches/devices.rs).
#
#   scripts/bench-lstm-gpu.sh [REPS (default 20)] [SERIES (default 1000)]
#
# Needs a Vulkan, Metal or DX12 adapter. Without a GPU the adapter is Mesa's lavapipe (Vulkan on
# the CPU, Debian `mesa-vulkan-drivers`), and the figures say how the wgpu path runs, not what a
# GPU does: the script prints which adapter it found. The first build with the `wgpu` feature
# compiles burn's GPU stack in release (about half an hour on 2 cores; minutes on 16), and the
# first run compiles and autotunes the kernels (cached in ~/.cache/cubecl).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

echo "bench-lstm-gpu: adapters"
if command -v nvidia-smi >/dev/null; then
    nvidia-smi -L || true
fi
if command -v vulkaninfo >/dev/null; then
    vulkaninfo --summary 2>/dev/null | grep -E "deviceName|deviceType|driverName" || true
else
    echo "  (vulkaninfo not installed: apt-get install vulkan-tools to list Vulkan devices)"
fi

cargo bench -p tickcast-forecast --features wgpu --bench devices --no-run
# Not pinned to one core: the CPU side is one thread anyway (the host code uses no thread pool),
# and the driver's threads (lavapipe's rasteriser threads without a GPU) should not queue behind it.
exec cargo bench -p tickcast-forecast --features wgpu --bench devices -- "$@"
