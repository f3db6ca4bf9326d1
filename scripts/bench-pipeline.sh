#!/usr/bin/env bash
# End-to-end throughput benchmark (benches/pipeline.rs): starts Kafka and Postgres like
# scripts/test.sh (unless KAFKA_BOOTSTRAP / DATABASE_URL are set), then runs the bench in release.
#
#   scripts/bench-pipeline.sh [TRADES]     (default 200000)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
started=()
cleanup() { for s in "${started[@]}"; do bash "scripts/$s.sh" stop >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  started+=(kafka)
  bash scripts/kafka.sh start && bash scripts/kafka.sh wait
  export KAFKA_BOOTSTRAP="127.0.0.1:${KAFKA_PORT:-39092}"
fi
if [[ -z "${DATABASE_URL:-}" ]]; then
  started+=(postgres)
  line="$(bash scripts/postgres.sh start)"
  export DATABASE_URL="${line#DATABASE_URL=}"
fi
RUST_LOG="${RUST_LOG:-warn}" cargo bench --bench pipeline -- "${1:-200000}"
