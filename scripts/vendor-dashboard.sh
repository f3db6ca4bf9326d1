#!/usr/bin/env bash
# Vendors the dashboard's chart library (uPlot, MIT) from npm into api/assets/vendor/, where
# the binary embeds it: Node is needed only to refresh it, never to build or run tickcast.
#
#   scripts/vendor-dashboard.sh [VERSION]     (default: the pinned version below)
set -euo pipefail
version="${1:-1.6.32}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="$root/api/assets/vendor"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
command -v npm >/dev/null || { echo "npm is needed to vendor uPlot (Node 18+)" >&2; exit 1; }
(cd "$tmp" && npm pack --silent "uplot@$version" >/dev/null)
tar -xzf "$tmp"/uplot-"$version".tgz -C "$tmp"
mkdir -p "$out"
cp "$tmp/package/dist/uPlot.iife.min.js" "$out/uPlot.iife.min.js"
cp "$tmp/package/dist/uPlot.min.css" "$out/uPlot.min.css"
cp "$tmp/package/LICENSE" "$out/uPlot.LICENSE"
echo "uPlot $version" > "$out/VERSION"
sha256sum "$out"/uPlot.* | sed "s|$out/||" >> "$out/VERSION"
echo "vendored uPlot $version into $out" >&2
