#!/usr/bin/env bash
# End-to-end ingest benchmark on Apache Kafka (benches/ingest.rs): the replay exchange at full
# speed → `run_ingest` → the broker, in trades/s, beside the broker's own producer limit measured
# in the same run with Kafka's producer perf test (org.apache.kafka.tools.ProducerPerformance,
# `kafka-producer-perf-test`, from the Maven-resolved kafka-tools jar) with the ingest producer's
# settings (idempotent, acks=all, lz4, linger 5 ms), the same partitions and the same record size:
# once with its random payload and once with real encoded ticks (`--payload-file`), which
# compress like the ingest's own records.
#
#   scripts/bench-ingest.sh [TRADES]     (default 1000000)
#
# Starts Kafka (scripts/kafka.sh) unless KAFKA_BOOTSTRAP is set. The perf test's JVM runs with
# KAFKA_TOOL_OPTS (default here: full JIT, 1 GiB heap) rather than the quick-start options.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
trades="${1:-1000000}"
started=()
cleanup() { for s in "${started[@]}"; do bash "scripts/$s.sh" stop >/dev/null 2>&1 || true; done; }
trap cleanup EXIT
if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  started+=(kafka)
  bash scripts/kafka.sh start && bash scripts/kafka.sh wait
  export KAFKA_BOOTSTRAP="127.0.0.1:${KAFKA_PORT:-39092}"
fi
target="${CARGO_TARGET_DIR:-target}"
export INGEST_BENCH_OUT="$target/ingest-bench.env" INGEST_BENCH_PAYLOADS="$target/ingest-bench-payloads.txt"
rm -f "$INGEST_BENCH_OUT"
RUST_LOG="${RUST_LOG:-warn}" cargo bench --bench ingest -- "$trades"
# shellcheck disable=SC1090
source "$INGEST_BENCH_OUT"
record_size="$(printf '%.0f' "$avg_payload_bytes")"
export KAFKA_TOOL_OPTS="${KAFKA_TOOL_OPTS:--Xmx1g}"
props=(bootstrap.servers="$KAFKA_BOOTSTRAP" acks=all enable.idempotence=true compression.type=lz4
       linger.ms=5 batch.size="${PERF_BATCH_SIZE:-1000000}" client.id=tickcast-perf)
perf() { # TOPIC ARGS... → the summary line's records/sec
  local topic="$1"; shift
  echo "kafka-producer-perf-test → $topic $*" >&2
  bash scripts/kafka.sh tool org.apache.kafka.tools.ProducerPerformance --topic "$topic" \
    --num-records "$trades" --throughput -1 "$@" --producer-props "${props[@]}" \
    | tee /dev/stderr | awk '/records sent/ { gsub(/[(,]/, " "); for (i = 1; i < NF; i++) if ($(i+1) == "records/sec") r = $i } END { print r }'
}
random_rps="$(perf "$perf_random_topic" --record-size "$record_size")"
ticks_rps="$(perf "$perf_ticks_topic" --payload-file "$payload_file")"
python3 - "$trades" "$ingest_tps" "$random_rps" "$ticks_rps" "$record_size" "$avg_key_bytes" "$partitions" <<'PY'
import sys
trades, ingest, rnd, ticks, size, key, parts = sys.argv[1:]
ingest, rnd, ticks = float(ingest), float(rnd), float(ticks)
REF = 230_000  # cryptofeed, Binance trade normalisation, frames (= trades) per second, one core
TARGET = 0.5   # ingest ≥ half the broker's producer limit
print()
print(f"ingest benchmark: {int(trades):,} trades, {parts} partitions, ticks {size} B (+{float(key):.0f} B key), "
      "idempotent, acks=all, lz4, linger.ms=5")
print(f"{'':<44} {'records/s':>12} {'ingest ÷':>9}")
print(f"{'ingest: replay → tickcast ingest → Kafka':<44} {ingest:>12,.0f} {'':>9}")
print(f"{'perf test, random payload, same size':<44} {rnd:>12,.0f} {ingest / rnd:>9.2f}")
print(f"{'perf test, real encoded ticks':<44} {ticks:>12,.0f} {ingest / ticks:>9.2f}")
print(f"{'cryptofeed normalisation alone (reference)':<44} {REF:>12,.0f} {ingest / REF:>9.2f}")
limit = ticks
verdict = "meets" if ingest >= TARGET * limit else "BELOW"
print(f"\ningest reaches {ingest / limit:.0%} of the broker's producer limit on real ticks "
      f"({verdict} the {TARGET:.0%} target)")
PY
