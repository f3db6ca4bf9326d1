#!/usr/bin/env bash
# API throughput with wrk (Debian): `GET /api/v1/forecasts/latest` against Postgres holding one
# day of 1-minute forecasts for 100 symbols (100 × 1,440 bars × 3 models × 3 horizons =
# 1,296,000 rows in `forecasts`, 900 in `forecasts_latest`), with `GET /healthz` on the same
# server as the baseline. Prints requests/s and latency percentiles for:
#   healthz (baseline) · latest for one symbol · latest rotating over all 100 symbols ·
#   latest for all symbols · the same one-symbol query with the answer cache off.
#
#   scripts/bench-api.sh [DURATION_SECS] [CONNECTIONS]      (default 15, 64)
#
# Uses $DATABASE_URL's server if set (a fresh database is created), else starts one.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
secs="${1:-15}"
conns="${2:-64}"
log() { echo "[bench-api] $*" >&2; }

command -v wrk >/dev/null || { log "installing wrk"; apt-get install -y -qq wrk >/dev/null; }
command -v psql >/dev/null || { log "installing postgresql-client"; apt-get install -y -qq postgresql-client >/dev/null; }
started=""
if [[ -z "${DATABASE_URL:-}" ]]; then
  line="$(bash scripts/postgres.sh start)"
  DATABASE_URL="${line#DATABASE_URL=}"
  started=1
fi
base="${DATABASE_URL%/*}"
db="bench_api_$$"
psql -q "$base/postgres" -c "create database $db"
url="$base/$db"
api_pid=""
cleanup() {
  [[ -n "$api_pid" ]] && kill "$api_pid" 2>/dev/null || true
  psql -q "$base/postgres" -c "drop database if exists $db" >/dev/null 2>&1 || true
  [[ -n "$started" ]] && bash scripts/postgres.sh stop || true
}
trap cleanup EXIT

log "building the release binary"
cargo build --release --quiet
bin="$root/target/release/tickcast"
"$bin" migrate --database-url "$url" >/dev/null

log "seeding one day of 1-minute forecasts for 100 symbols"
psql -q "$url" <<'SQL'
insert into forecasts (exchange, symbol, interval, model, horizon, base_ms, target_ms, last,
                       point, lo80, hi80, lo95, hi95)
select 'binance', 'S' || lpad(s::text, 3, '0') || '-USDT', '1m', m, h,
       1764288000000 + b * 60000, 1764288000000 + (b + h) * 60000,
       100 + b * 0.01, 100 + b * 0.01, 99 + b * 0.01, 101 + b * 0.01, 98 + b * 0.01, 102 + b * 0.01
from generate_series(1, 100) s, generate_series(0, 1439) b,
     unnest(array['naive', 'garch', 'ensemble']) m, unnest(array[1, 5, 15]) h;
insert into forecasts_latest
select distinct on (exchange, symbol, interval, model, horizon) *
from forecasts order by exchange, symbol, interval, model, horizon, base_ms desc;
analyze;
SQL
psql -qtA "$url" -c "select (select count(*) from forecasts), (select count(*) from forecasts_latest)" \
  | awk -F'|' '{ printf "[bench-api] rows: forecasts %s, forecasts_latest %s\n", $1, $2 }' >&2

lua="$(mktemp)"
cat >"$lua" <<'LUA'
local i = 0
request = function()
  i = i % 100 + 1
  return wrk.format("GET", string.format("/api/v1/forecasts/latest?symbol=S%03d-USDT", i))
end
LUA

run_api() { # cache_ms
  [[ -n "$api_pid" ]] && { kill "$api_pid"; wait "$api_pid" 2>/dev/null || true; }
  RUST_LOG=warn "$bin" api --no-live --listen 127.0.0.1:38080 --database-url "$url" \
    --latest-cache-ms "$1" >/dev/null &
  api_pid=$!
  for _ in $(seq 1 100); do curl -fs http://127.0.0.1:38080/healthz >/dev/null && return; sleep 0.1; done
  log "api did not start"; exit 1
}

bench() { # name, wrk args...
  local name="$1"; shift
  local out
  out="$(wrk -t2 -c"$conns" -d"${secs}s" --latency "$@")"
  local rps p50 p99
  rps="$(awk '/Requests\/sec/ { print $2 }' <<<"$out")"
  p50="$(awk '$1 == "50%" { print $2 }' <<<"$out")"
  p99="$(awk '$1 == "99%" { print $2 }' <<<"$out")"
  printf "| %s | %s | %s | %s |\n" "$name" "$rps" "$p50" "$p99"
  grep -E "Non-2xx|Socket errors" <<<"$out" >&2 || true
}

echo "| request ($conns connections, 2 wrk threads, ${secs}s) | requests/s | p50 | p99 |"
echo "| --- | ---: | ---: | ---: |"
run_api 500
bench "GET /healthz (baseline)" http://127.0.0.1:38080/healthz
bench "latest, one symbol (cache 500 ms)" "http://127.0.0.1:38080/api/v1/forecasts/latest?symbol=S042-USDT"
bench "latest, 100 symbols in turn (cache 500 ms)" -s "$lua" http://127.0.0.1:38080
bench "latest, all symbols: 900 rows (cache 500 ms)" "http://127.0.0.1:38080/api/v1/forecasts/latest?limit=10000"
run_api 0
bench "latest, one symbol (cache off)" "http://127.0.0.1:38080/api/v1/forecasts/latest?symbol=S042-USDT"
rm -f "$lua"
