#!/usr/bin/env bash
# The sink's write path into Postgres against COPY of the same rows into the same table, in the
# same run (store/benches/sink.rs), plus the bytes a forecast row takes and what 1,000
# symbols on 1-minute bars write a day. Prints the machine's load before and after: other work
# on the machine skews both figures.
#
#   scripts/bench-sink.sh [SYMBOLS] [BARS]     (default 1000 10: 150,000 rows)
#
# Starts Postgres (scripts/postgres.sh) unless DATABASE_URL is set.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=()
cleanup() { for s in "${started[@]}"; do bash "scripts/$s.sh" stop >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
if [[ -z "${DATABASE_URL:-}" ]]; then
  started+=(postgres)
  line="$(bash scripts/postgres.sh start)"
  export DATABASE_URL="${line#DATABASE_URL=}"
fi
cargo bench -p tickcast-store --bench sink --no-run >/dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) ($(nproc) cores)"
RUST_LOG="${RUST_LOG:-warn}" cargo bench -p tickcast-store --bench sink -- "${1:-1000}" "${2:-10}"
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
