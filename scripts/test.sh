#!/usr/bin/env bash
# THE test command: starts real Kafka and Postgres (unless given), then runs
# cargo fmt --check, clippy -D warnings and cargo test for the whole workspace.
#
#   scripts/test.sh [extra cargo test args...]
#
# Environment:
#   KAFKA_BOOTSTRAP   use this broker instead of starting one (scripts/kafka.sh)
#   DATABASE_URL      use this database instead of starting one (scripts/postgres.sh)
#   TICKCAST_SKIP_LINT=1  skip fmt and clippy (quick local runs)
# Exported to the tests:
#   KAFKA_BOOTSTRAP, DATABASE_URL, TICKCAST_REQUIRE_SERVICES=1 (service tests
#   fail instead of skipping), TICKCAST_SHARED (only if ../shared exists).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(git -C "$here" rev-parse --show-toplevel 2>/dev/null || dirname "$here")"
cd "$root"

log() { echo "[test.sh] $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
t_all="$(now)"

# Disk: a cold build writes about 5 GB under the target directory (clippy's metadata, the test
# binaries, the wgpu step). When the disk fills mid-link, the linker dies of SIGBUS ("ld
# terminated with signal 7 [Bus error]"), which names nothing; say how much room there is.
target_dir="${CARGO_TARGET_DIR:-$root/target}"
mkdir -p "$target_dir"
free_gb() { df -P -k "$target_dir" | awk 'NR == 2 { printf "%.1f", $4 / 1048576 }'; }
used_gb() { du -sk "$target_dir" 2>/dev/null | awk '{ printf "%.1f", $1 / 1048576 }'; }
cold_needs_gb=6
free_at_start="$(free_gb)"
log "disk: $free_at_start GB free for $target_dir ($(used_gb) GB there already)"
if awk -v f="$free_at_start" -v n="$cold_needs_gb" 'BEGIN { exit !(f < n) }'; then
  log "warning: a cold build needs about $cold_needs_gb GB free there; a full disk kills the linker"
fi

# --- Build prerequisites (rdkafka-sys builds librdkafka from source; Mesa's
# lavapipe is the Vulkan device of the LSTM's wgpu test; Chromium runs the dashboard's
# browser test; python3-venv hosts schemathesis) ------------------------------
bash scripts/debian-packages.sh gcc g++ make cmake pkg-config zlib1g-dev libssl-dev openssl curl \
  mesa-vulkan-drivers libvulkan1 chromium python3-venv
if ! command -v cargo >/dev/null && [[ -f "$HOME/.cargo/env" ]]; then
  # shellcheck disable=SC1091
  source "$HOME/.cargo/env"
fi

# --- Services: start only what the caller didn't provide; stop only those ---
started=()
# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 && ${#started[@]} -gt 0 ]]; then
    # Keep the service logs of a failed run before their dirs are deleted.
    local keep="${TMPDIR:-/tmp}/tickcast-test-logs"
    rm -rf "$keep" && mkdir -p "$keep"
    cp -r scripts/.kafka/logs "$keep/kafka" 2>/dev/null || true
    if [[ -f scripts/.pg/datadir ]]; then
      cp "$(cat scripts/.pg/datadir)/server.log" "$keep/postgres.log" 2>/dev/null || true
    fi
    log "service logs kept in $keep"
  fi
  for svc in "${started[@]}"; do
    bash "scripts/$svc.sh" stop || true
  done
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The services this script starts also serve TLS: Kafka a SASL_SSL listener (SCRAM-SHA-512,
# mutual TLS), Postgres `ssl = on` with a TLS-only role; certificates made fresh here.
tls_dir="$root/scripts/.tls"
if [[ -z "${KAFKA_BOOTSTRAP:-}" && -z "${DATABASE_URL:-}" ]]; then
  bash scripts/tls.sh "$tls_dir"
  export KAFKA_TLS_DIR="$tls_dir" PG_TLS_DIR="$tls_dir"
  export KAFKA_SASL_SSL_PORT="${KAFKA_SASL_SSL_PORT:-$(( ${KAFKA_PORT:-39092} + 2 ))}"
  secured=1
fi

if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then
  t0="$(now)"
  started+=(kafka)
  bash scripts/kafka.sh start # launches in the background; we wait below
  export KAFKA_BOOTSTRAP="127.0.0.1:${KAFKA_PORT:-39092}"
fi

if [[ -z "${DATABASE_URL:-}" ]]; then
  t1="$(now)"
  started+=(postgres)
  url_line="$(bash scripts/postgres.sh start)" # prints DATABASE_URL=postgres://...
  [[ "$url_line" == DATABASE_URL=postgres://* ]] || { log "unexpected: $url_line"; exit 1; }
  export DATABASE_URL="${url_line#DATABASE_URL=}"
  log "postgres up in $(since "$t1")s: $DATABASE_URL"
else
  log "using given DATABASE_URL"
fi

if [[ " ${started[*]} " == *" kafka "* ]]; then
  bash scripts/kafka.sh wait
  log "kafka up in $(since "$t0")s (incl. any jar resolve): $KAFKA_BOOTSTRAP"
else
  log "using given KAFKA_BOOTSTRAP=$KAFKA_BOOTSTRAP"
fi

export TICKCAST_REQUIRE_SERVICES=1
if [[ -n "${secured:-}" ]]; then
  # For tests/secured.rs.
  export TICKCAST_TLS_DIR="$tls_dir"
  export TICKCAST_TLS_KAFKA="localhost:$KAFKA_SASL_SSL_PORT"
  export TICKCAST_TLS_DATABASE_URL="postgres://tickcast_tls@localhost:${PG_PORT:-35432}/tickcast"
  # Brokers and servers the tests start of their own are plaintext only.
  unset KAFKA_SASL_SSL_PORT KAFKA_TLS_DIR PG_TLS_DIR
fi
shared="$(cd "$root/.." && pwd)/shared"
if [[ -d "$shared" ]]; then
  export TICKCAST_SHARED="$shared"
  log "TICKCAST_SHARED=$TICKCAST_SHARED"
fi
export RUST_BACKTRACE="${RUST_BACKTRACE:-1}"
log "services ready after $(since "$t_all")s"

# --- Checks: cheap ones first, fail fast ----------------------------------
log "scripts/check-monitoring.sh (promtool check config/rules, test rules; dashboards JSON)"
bash scripts/check-monitoring.sh
log "scripts/check-feature-pins.sh (the wgpu step must not rebuild what the main build shares)"
bash scripts/check-feature-pins.sh
if [[ "${TICKCAST_SKIP_LINT:-}" != 1 ]]; then
  log "cargo fmt --all -- --check"
  cargo fmt --all -- --check
  log "cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings
fi
log "cargo test --workspace $*"
set +e
cargo test --workspace "$@"
status=$?
if [[ $status -eq 0 ]]; then
  # The LSTM on burn's wgpu backend against its CPU backend: the one target built with the
  # `wgpu` feature (heavy), run on Mesa's lavapipe here. `--workspace` keeps every other
  # crate's features as in the build above (`-p tickcast-forecast` alone resolved features
  # differently and rebuilt some 370 crates, librdkafka's C sources among them), and
  # feature-pins/ gives the main build the features the GPU stack turns on in shared crates,
  # so only burn's GPU crates, tickcast-forecast and this test are compiled here.
  t2="$(now)"
  log "cargo test --workspace --features tickcast-forecast/wgpu --test wgpu (Vulkan: lavapipe unless a GPU is present)"
  cargo test --workspace --features tickcast-forecast/wgpu --test wgpu -- --nocapture
  status=$?
  log "wgpu test done in $(since "$t2")s"
fi
if [[ $status -eq 0 && -n "${secured:-}" ]]; then
  # The end-to-end test once more, over Kafka's SASL_SSL listener and Postgres TLS with
  # verify-full, both with client certificates; settings given as users give them.
  t4="$(now)"
  log "cargo test --test e2e end_to_end_on_kafka_and_postgres over SASL_SSL and Postgres TLS"
  KAFKA_BOOTSTRAP="$TICKCAST_TLS_KAFKA" \
  DATABASE_URL="postgres://tickcast_tls:tickcast-tls-secret@localhost:${PG_PORT:-35432}/tickcast?sslmode=verify-full&sslrootcert=$tls_dir/ca.pem&sslcert=$tls_dir/client.pem&sslkey=$tls_dir/client.key" \
  TICKCAST_KAFKA_PROPERTY_SECURITY_PROTOCOL=SASL_SSL \
  TICKCAST_KAFKA_PROPERTY_SASL_MECHANISM=SCRAM-SHA-512 \
  TICKCAST_KAFKA_PROPERTY_SASL_USERNAME=tickcast \
  TICKCAST_KAFKA_PROPERTY_SASL_PASSWORD=tickcast-kafka-secret \
  TICKCAST_KAFKA_PROPERTY_SSL_CA_LOCATION="$tls_dir/ca.pem" \
  TICKCAST_KAFKA_PROPERTY_SSL_CERTIFICATE_LOCATION="$tls_dir/client.pem" \
  TICKCAST_KAFKA_PROPERTY_SSL_KEY_LOCATION="$tls_dir/client.key" \
  TICKCAST_KAFKA_PROPERTY_BROKER_ADDRESS_FAMILY=v4 \
    cargo test --workspace --test e2e end_to_end_on_kafka_and_postgres -- --nocapture
  status=$?
  log "secured end-to-end done in $(since "$t4")s"
fi
if [[ $status -eq 0 ]]; then
  # Property-based API test against /openapi.json of a running demo (bounded examples).
  t3="$(now)"
  log "scripts/schemathesis.sh"
  bash scripts/schemathesis.sh --max-examples "${SCHEMATHESIS_EXAMPLES:-25}"
  status=$?
  log "schemathesis done in $(since "$t3")s"
fi
if [[ $status -eq 0 && -n "${TICKCAST_SHARED:-}" ]]; then
  # The suites on the real data in ../shared (exchange frames, candles), kept separate so the
  # repository's own tests never depend on ../shared.
  log "cargo test --workspace --test shared_conformance (recordings in $TICKCAST_SHARED)"
  cargo test --workspace --test shared_conformance -- --nocapture
  status=$?
  if [[ $status -eq 0 ]]; then
    # `--workspace`, as above: the features of the main build, nothing rebuilt but the test.
    log "cargo test --workspace --test shared_lstm (LSTM trains on real candles)"
    cargo test --workspace --test shared_lstm -- --nocapture
    status=$?
  fi
fi
set -e
log "disk: $(used_gb) GB in $target_dir, $(free_gb) GB free"
log "cargo test exited $status; total $(since "$t_all")s"
exit "$status"
