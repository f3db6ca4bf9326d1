#!/usr/bin/env bash
# The forecast stage's cost per closed bar for many symbols with every model (benches/forecast.rs),
# in release, one core, against the naive model alone in the same run.
#
#   scripts/bench-forecast.sh [SYMBOLS (default 1000)] [MODELS (default: every model)]
#
# Against another version of the code, in the same command:
#
#   scripts/bench-forecast.sh --against REV [--runs N] [SYMBOLS] [MODELS]
#
# builds the bench at git revision REV as well (in a worktree under target/, sharing this
# target directory's compiled dependencies, so the next build here recompiles the workspace's
# own crates), runs the two binaries in turn N times (default 5), one core, and prints each
# run's mean ms per bar with every model, both medians and their ratio, and the same for the
# bench's second figure (sending the forecasts) when both versions report it. This machine's speed
# drifts by ±15% between runs, so a figure compares only with one measured alongside it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="$PWD"

against=""
runs=5
while [ $# -gt 0 ]; do
    case "$1" in
        --against) against="${2:?--against needs a git revision}"; shift 2 ;;
        --runs) runs="${2:?--runs needs a number}"; shift 2 ;;
        *) break ;;
    esac
done
case "$runs" in
    '' | *[!0-9]* | 0) echo "bench-forecast: --runs must be a positive number, got '$runs'" >&2; exit 2 ;;
esac

# Builds the bench in the current directory; prints the executable's path.
build() {
    cargo bench --bench forecast --no-run 2>&1 | tee /dev/stderr \
        | sed -n 's/.*Executable benches\/forecast\.rs (\(.*\))$/\1/p' | tail -1
}

if [ -z "$against" ]; then
    cargo bench --bench forecast --no-run
    # Pinned to one core (the build above uses them all).
    exec taskset -c 0 cargo bench --bench forecast -- "$@"
fi

rev="$(git rev-parse --verify "$against^{commit}")" || {
    echo "bench-forecast: '$against' is not a git revision here" >&2
    exit 2
}
dir="$root/target/bench-against"
mkdir -p "$dir"
here="$(build)"
[ -x "$here" ] || { echo "bench-forecast: no bench executable from this tree" >&2; exit 1; }
cp "$here" "$dir/this"

tree="$dir/src"
git worktree remove --force "$tree" 2>/dev/null || rm -rf "$tree"
git worktree prune
git worktree add --detach "$tree" "$rev" >/dev/null
trap 'git worktree remove --force "$tree" 2>/dev/null || true' EXIT
there="$(cd "$tree" && CARGO_TARGET_DIR="$root/target" build)"
case "$there" in /*) ;; *) there="$tree/$there" ;; esac
[ -x "$there" ] || { echo "bench-forecast: no bench executable at $rev" >&2; exit 1; }
cp "$there" "$dir/base"

short="$(git rev-parse --short "$rev")"
echo "forecast stage, $runs runs each, in turn: ${short} (base) and this tree" >&2
: > "$dir/runs.tsv"
for i in $(seq "$runs"); do
    for which in base this; do
        out="$(taskset -c 0 "$dir/$which" "$@" 2>/dev/null)"
        # The "+ ensemble" row: its mean (the stage's computation) and, from versions that
        # report one, its last column (what the stage then does with the forecasts).
        read -r ms send < <(printf '%s\n' "$out" | awk -F'|' '/\+ ensemble \|/ {
            gsub(/ /, "", $3); gsub(/ /, "", $7); print $3, ($7 == "" ? "-" : $7) }')
        [ -n "${ms:-}" ] || { echo "bench-forecast: run $i of $which printed no figure" >&2; exit 1; }
        column="$(printf '%s\n' "$out" | awk -F'|' '/^\| models \|/ { gsub(/^ +| +$/, "", $7); sub(/, ms\/bar$/, "", $7); print $7 }')"
        printf '%s\t%s\t%s\t%s\n' "$which" "$ms" "$send" "${column:--}" >> "$dir/runs.tsv"
        echo "  run $i, $which: $ms ms per bar (${column:-no second column}: $send)" >&2
    done
done
python3 - "$dir/runs.tsv" "$short" <<'EOF'
import statistics, sys
runs = {"base": [], "this": []}
sends = {"base": [], "this": []}
columns = {"base": "-", "this": "-"}
for line in open(sys.argv[1]):
    which, ms, send, column = line.rstrip("\n").split("\t")
    runs[which].append(float(ms))
    if send != "-":
        sends[which].append(float(send))
    columns[which] = column
med = {k: statistics.median(v) for k, v in runs.items()}
print("| version | mean ms per bar, every model + ensemble, per run | median |")
print("| --- | --- | ---: |")
for k, label in (("base", sys.argv[2]), ("this", "this tree")):
    print(f"| {label} | {', '.join(f'{x:.2f}' for x in sorted(runs[k]))} | {med[k]:.2f} |")
print(f"\nthis tree / {sys.argv[2]}: {med['this'] / med['base']:.3f} (medians)")
# The bench's second figure: what the stage then does with the forecasts. It compares only
# when both versions measure the same thing (the same column).
print()
for k, label in (("base", sys.argv[2]), ("this", "this tree")):
    if sends[k]:
        xs = ", ".join(f"{x:.2f}" for x in sorted(sends[k]))
        print(f"{label}, {columns[k]}, ms per bar: {xs}; median {statistics.median(sends[k]):.2f}")
if sends["base"] and sends["this"] and columns["base"] == columns["this"]:
    ratio = statistics.median(sends["this"]) / statistics.median(sends["base"])
    print(f"this tree / {sys.argv[2]}, {columns['this']}: {ratio:.3f} (medians)")
elif sends["base"] or sends["this"]:
    print("(the two versions' second columns measure different things: not compared)")
EOF
