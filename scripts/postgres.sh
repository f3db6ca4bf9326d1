#!/usr/bin/env bash
# Throwaway PostgreSQL server for tests: initdb into a scratch dir, trust auth,
# TCP on 127.0.0.1 only, fsync off. Installs Debian's postgresql if missing.
#
#   scripts/postgres.sh start   # prints DATABASE_URL=postgres://... on stdout
#   scripts/postgres.sh stop    # stops the server and deletes its dir
#   scripts/postgres.sh pause   # stops the server (fast mode), keeping its data
#   scripts/postgres.sh resume  # starts a paused server again on the same data
#
# Environment (all optional):
#   PG_PORT   TCP port (default 35432)
#   PG_DIR    throwaway dir (default scripts/.pg)
#   PG_DB     database to create (default tickcast)
#   PG_TLS_DIR  certificates from scripts/tls.sh: the server also speaks TLS (ssl = on), and
#             the role tickcast_tls (password PG_TLS_PASSWORD, default tickcast-tls-secret,
#             CREATEDB) may log in only over TLS with a client certificate from the same CA
#             (scram-sha-256, clientcert=verify-full); the trust rules stay for the others
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
PG_PORT="${PG_PORT:-35432}"
PG_DIR="${PG_DIR:-$here/.pg}"
PG_DB="${PG_DB:-tickcast}"
PG_USER_ROLE=postgres # superuser role inside the cluster (initdb -U)

log() { echo "[postgres] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

# Locate initdb/pg_ctl: PATH first, then the newest /usr/lib/postgresql/*/bin.
find_bin() {
  local d
  if command -v initdb >/dev/null && command -v pg_ctl >/dev/null; then
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return 0
  fi
  d="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
  [[ -n "$d" && -x "$d/initdb" && -x "$d/pg_ctl" ]] && { echo "$d"; return 0; }
  return 1
}

ensure_postgres() {
  if ! PG_BIN="$(find_bin)"; then
    log "PostgreSQL not found; installing Debian's postgresql"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    PG_BIN="$(find_bin)" || die "postgresql installed but initdb/pg_ctl still not found"
  fi
}

# Postgres refuses to run as root: as root, run server commands as an
# unprivileged user ('postgres' from the Debian package, else 'tickcast').
setup_user() {
  RUN_AS=()
  [[ "$(id -u)" -eq 0 ]] || return 0
  if id postgres >/dev/null 2>&1; then
    PG_OS_USER=postgres
  else
    PG_OS_USER=tickcast
    id "$PG_OS_USER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PG_OS_USER"
  fi
  RUN_AS=(runuser -u "$PG_OS_USER" --)
}

# The server's data dir: $PG_DIR/data, unless the unprivileged user can't reach
# it (e.g. the checkout lies under a 0700 home dir); then a dir under /tmp, whose
# path is remembered in $PG_DIR/datadir for `stop`.
choose_data_dir() {
  mkdir -p "$PG_DIR"
  DATA="$PG_DIR/data"
  if [[ ${#RUN_AS[@]} -gt 0 ]]; then
    mkdir -p "$DATA" && chown "$PG_OS_USER" "$DATA" && chmod 700 "$DATA"
    if ! "${RUN_AS[@]}" test -w "$DATA" -a -x "$DATA"; then
      rm -rf "$DATA"
      DATA="$(mktemp -d /tmp/tickcast-pg.XXXXXX)"
      chown "$PG_OS_USER" "$DATA"
      log "$PG_DIR is not reachable by user $PG_OS_USER; using $DATA"
    fi
  fi
  echo "$DATA" >"$PG_DIR/datadir"
}

url() { echo "postgres://$PG_USER_ROLE@127.0.0.1:$PG_PORT/$PG_DB"; }

server_running() {
  [[ -f "$PG_DIR/datadir" ]] || return 1
  local d; d="$(cat "$PG_DIR/datadir")"
  [[ -f "$d/postmaster.pid" ]] && kill -0 "$(head -n1 "$d/postmaster.pid")" 2>/dev/null
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

cmd_start() {
  local t0; t0="$(now)"
  if server_running; then
    log "already running on 127.0.0.1:$PG_PORT"
    echo "DATABASE_URL=$(url)"
    return 0
  fi
  ! port_open "$PG_PORT" || die "port $PG_PORT is already in use by another process"
  ensure_postgres
  setup_user
  cmd_stop quiet # clear leftovers of an earlier run
  choose_data_dir
  local out="$PG_DIR/initdb.log"
  # --no-sync: skip fsync of the new cluster; the data is throwaway.
  "${RUN_AS[@]}" "$PG_BIN/initdb" -D "$DATA" -U "$PG_USER_ROLE" --auth=trust \
    -E UTF8 --locale=C --no-sync >"$out" 2>&1 || { cat "$out" >&2; die "initdb failed"; }
  cat >>"$DATA/postgresql.conf" <<EOF

# --- tickcast test settings (scripts/postgres.sh) ---
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = ''
max_connections = 200
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  if [[ -n "${PG_TLS_DIR:-}" ]]; then
    # The server reads its key only if the server user owns it and nobody else can.
    for f in server.pem server.key ca.pem; do
      cp "$PG_TLS_DIR/$f" "$DATA/tls-$f"
      [[ ${#RUN_AS[@]} -eq 0 ]] || chown "$PG_OS_USER" "$DATA/tls-$f"
      chmod 600 "$DATA/tls-$f"
    done
    cat >>"$DATA/postgresql.conf" <<EOF
ssl = on
ssl_cert_file = 'tls-server.pem'
ssl_key_file = 'tls-server.key'
ssl_ca_file = 'tls-ca.pem'
password_encryption = 'scram-sha-256'
EOF
    # First match wins: the TLS role's rules go before initdb's trust rules.
    local hba="$DATA/pg_hba.conf"
    { echo "hostssl all tickcast_tls 127.0.0.1/32 scram-sha-256 clientcert=verify-full"
      echo "hostssl all tickcast_tls ::1/128 scram-sha-256 clientcert=verify-full"
      echo "host all tickcast_tls all reject"
      cat "$hba"; } >"$hba.new"
    mv "$hba.new" "$hba"
    [[ ${#RUN_AS[@]} -eq 0 ]] || chown "$PG_OS_USER" "$hba"
  fi
  # Server log inside the data dir, which the server user can always write.
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start >&2 \
    || { tail -n 30 "$DATA/server.log" >&2 || true; die "pg_ctl start failed"; }
  local psql="$PG_BIN/psql"
  [[ -x "$psql" ]] || psql="psql"
  "$psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER_ROLE" -d postgres \
    -c "CREATE DATABASE \"$PG_DB\"" >&2 || die "could not create database $PG_DB"
  if [[ -n "${PG_TLS_DIR:-}" ]]; then
    "$psql" -X -q -h 127.0.0.1 -p "$PG_PORT" -U "$PG_USER_ROLE" -d postgres \
      -c "CREATE ROLE tickcast_tls LOGIN CREATEDB PASSWORD '${PG_TLS_PASSWORD:-tickcast-tls-secret}'" \
      -c "ALTER DATABASE \"$PG_DB\" OWNER TO tickcast_tls" >&2 \
      || die "could not create the TLS role"
  fi
  log "ready on 127.0.0.1:$PG_PORT in $(since "$t0")s ($("$PG_BIN/postgres" --version))"
  echo "DATABASE_URL=$(url)"
}

cmd_stop() {
  local quiet="${1:-}"
  if [[ -f "$PG_DIR/datadir" ]]; then
    local d; d="$(cat "$PG_DIR/datadir")"
    if [[ -f "$d/postmaster.pid" ]] && kill -0 "$(head -n1 "$d/postmaster.pid")" 2>/dev/null; then
      [[ -n "${PG_BIN:-}" ]] || ensure_postgres
      [[ ${RUN_AS+x} ]] || setup_user
      # Immediate mode: no checkpoint, the data is thrown away next.
      "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$d" -m immediate -w stop >/dev/null 2>&1 \
        || kill -9 "$(head -n1 "$d/postmaster.pid")" 2>/dev/null || true
      [[ -n "$quiet" ]] || log "stopped"
    fi
    # Only delete a /tmp fallback dir we made ourselves.
    if [[ "$d" == /tmp/tickcast-pg.* ]]; then rm -rf "$d"; fi
  fi
  rm -rf "$PG_DIR"
}

# Outage drills (tests/store_outage.rs, tests/chaos.rs): the server goes away and
# comes back on the same data dir and port.
cmd_pause() {
  [[ -f "$PG_DIR/datadir" ]] || die "no server under $PG_DIR"
  local d; d="$(cat "$PG_DIR/datadir")"
  ensure_postgres
  setup_user
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$d" -m fast -w -t 60 stop >&2 || die "pg_ctl stop failed"
  log "paused (data kept in $d)"
}

cmd_resume() {
  [[ -f "$PG_DIR/datadir" ]] || die "no server under $PG_DIR"
  local d; d="$(cat "$PG_DIR/datadir")"
  ensure_postgres
  setup_user
  "${RUN_AS[@]}" "$PG_BIN/pg_ctl" -D "$d" -l "$d/server.log" -w -t 60 start >&2 \
    || { tail -n 30 "$d/server.log" >&2 || true; die "pg_ctl start failed"; }
  log "resumed on 127.0.0.1:$PG_PORT"
}

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  pause) cmd_pause ;;
  resume) cmd_resume ;;
  *) echo "usage: $0 start|stop|pause|resume" >&2; exit 2 ;;
esac
