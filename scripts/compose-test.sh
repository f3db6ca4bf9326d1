#!/usr/bin/env bash
# Runs docker-compose.yml for real on this machine, with podman standing in for Docker:
#
#   scripts/compose-test.sh             # stand-in images (built once), then the whole check
#   scripts/compose-test.sh --keep      # leave the stack up at the end (`down -v` by hand)
#
# 1. Stand-ins for the upstream images, built from Debian packages and tagged with the names
#    the Dockerfile and the compose file use (Docker Hub cannot be reached here):
#    debian:bookworm-slim (debootstrap), rust:1.95-bookworm (this machine's toolchain),
#    apache/kafka (the jars scripts/kafka/pom.xml resolves, on Debian's Java 17),
#    postgres:15 (Debian's PostgreSQL 15) and prom/prometheus (Debian's Prometheus 2.42).
#    Grafana has no package here: its service is left out, and its provisioning files are
#    checked by tests/compose.rs and scripts/check-monitoring.sh instead.
# 2. The real docker-compose.yml with scripts/compose/override.yml, which only moves services
#    between profiles: `grafana` out, the live `ingest` out (no exchange can be reached), the
#    `demo` profile's simulated exchange and ingester in.
# 3. build; up; every service healthy (topics and migrate exited 0); forecasts in Postgres and
#    on the API, the dashboard answering; every Prometheus target up; `--scale forecast=3`
#    with the partitions spread over three members and forecasts continuing; one container
#    killed and restarted by its restart policy; `down -v`.
#
# Docker's engine runs health checks and restart policies itself. podman does both through
# systemd, which this machine lacks, so this script runs the health checks on their interval
# (`podman healthcheck run`) and podman's own exit hook applies restart policies.
#
# Environment: COMPOSE_TEST_DIR (work dir, default /tmp/tickcast-compose),
# COMPOSE_TEST_TIMEOUT (seconds per wait, default 600), TICKCAST_DEMO_SPEED (default 10),
# TICKCAST_DEMO_HISTORY_MINUTES (default 900: past every default model's warm-up, GARCH's 201 bars
# and AutoETS's 240, and the 720 the `trend` model needs when TICKCAST_MODELS names it).
# The models it waits for are those the forecast service runs by default.
set -euo pipefail

# The whole script is one function, read before it runs: editing this file during a run (say,
# while the stack is up) cannot change what the run does.
main() {
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(dirname "$here")"
cd "$root"

keep=0
[[ "${1:-}" == --keep ]] && keep=1
work="${COMPOSE_TEST_DIR:-/tmp/tickcast-compose}"
timeout="${COMPOSE_TEST_TIMEOUT:-600}"
project=tickcast
export TICKCAST_DEMO_SPEED="${TICKCAST_DEMO_SPEED:-10}"
export TICKCAST_DEMO_HISTORY_MINUTES="${TICKCAST_DEMO_HISTORY_MINUTES:-900}"

log() { echo "[compose-test] $*" >&2; }
die() { log "FAILED: $*"; exit 1; }
now() { date +%s; }
t_all="$(now)"
declare -a timings=()
phase_start="$(now)"
phase() { # phase NAME: records the time since the previous phase ended
  local t; t="$(now)"
  timings+=("$(printf '%-34s %5ss' "$1" "$((t - phase_start))")")
  phase_start="$t"
}

# --- Tools -------------------------------------------------------------------------------
# dnsname: containers reach each other by service name on podman 4.3's CNI networks.
bash scripts/debian-packages.sh podman runc docker-compose debootstrap curl python3 python3-yaml \
  golang-github-containernetworking-plugin-dnsname \
  openjdk-17-jre-headless maven
mkdir -p "$work"
# podman here: runc (crun cannot use this machine's hybrid cgroups), cgroupfs (no systemd), and
# no default ulimits (setrlimit is refused in this sandbox).
cat >"$work/containers.conf" <<'EOF'
[containers]
default_ulimits = []
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
EOF
export CONTAINERS_CONF="$work/containers.conf"
phase "tools"

# --- Stand-in images ---------------------------------------------------------------------
have() { podman image exists "$1"; }
if ! have docker.io/library/debian:bookworm-slim; then
  log "stand-in debian:bookworm-slim (debootstrap)"
  mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)"
  rm -rf "$work/rootfs"
  debootstrap --variant=minbase bookworm "$work/rootfs" "${mirror:-http://deb.debian.org/debian}" \
    >"$work/debootstrap.log" 2>&1 || { tail -20 "$work/debootstrap.log" >&2; die "debootstrap"; }
  tar -C "$work/rootfs" -c . | podman import -q - docker.io/library/debian:bookworm-slim >/dev/null
  rm -rf "$work/rootfs"
fi
standin() { # standin IMAGE DIR [podman build args]
  local image="$1" dir="$2"; shift 2
  have "$image" && return 0
  log "stand-in $image ($dir)"
  podman build -q --pull=never "$@" -t "$image" "$dir" >"$work/build-$(basename "$dir").log" 2>&1 \
    || { tail -30 "$work/build-$(basename "$dir").log" >&2; die "building $image"; }
}
toolchain="$(rustc --print sysroot)"
standin docker.io/library/rust:1.95-bookworm scripts/compose/rust \
  -v "$toolchain:/toolchain:ro" -v /usr/local/share/ca-certificates:/host-ca:ro
kafka_lib="$(bash scripts/kafka.sh lib)"
kafka_version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' scripts/kafka/pom.xml)"
standin "docker.io/apache/kafka:$kafka_version" scripts/compose/kafka -v "$kafka_lib:/kafka-libs:ro"
standin docker.io/library/postgres:15 scripts/compose/postgres
standin docker.io/prom/prometheus:v3.5.0 scripts/compose/prometheus
log "no stand-in for grafana/grafana (no package here): the grafana service is skipped"
phase "stand-in images"

# --- podman's Docker API, health checks ----------------------------------------------------
sock="$work/podman.sock"
rm -f "$sock"
pkill -f "podman system service --time=0 unix://$sock" 2>/dev/null || true
podman system service --time=0 "unix://$sock" >"$work/podman-service.log" 2>&1 &
service_pid=$!
export DOCKER_HOST="unix://$sock"
export COMPOSE_DOCKER_CLI_BUILD=0 DOCKER_BUILDKIT=0
for _ in $(seq 1 50); do [[ -S "$sock" ]] && break; sleep 0.2; done
[[ -S "$sock" ]] || die "podman system service did not open $sock"

ctrs() { podman ps -q --filter "label=com.docker.compose.project=$project"; }
(
  # Ends with the script, however the script ends.
  while sleep 5 && kill -0 "$$" 2>/dev/null; do
    for c in $(ctrs); do podman healthcheck run "$c" >/dev/null 2>&1 || true; done
  done
) &
health_pid=$!

# The passwords the compose file requires (a user sets them in .env).
export POSTGRES_PASSWORD="${POSTGRES_PASSWORD:-compose-test-db-$$}"
export GRAFANA_ADMIN_PASSWORD="${GRAFANA_ADMIN_PASSWORD:-compose-test-admin-$$}"
export GRAFANA_DB_PASSWORD="${GRAFANA_DB_PASSWORD:-compose-test-reader-$$}"
dc() {
  docker-compose -p "$project" -f docker-compose.yml -f scripts/compose/override.yml \
    --profile demo "$@"
}

# shellcheck disable=SC2317 # invoked by the EXIT trap
cleanup() {
  local rc=$?
  if [[ $rc -ne 0 ]]; then
    log "service states and logs at the failure:"
    dc ps >&2 || true
    dc logs --no-color --tail=40 >"$work/failure.log" 2>&1 || true
    log "last log lines of every service: $work/failure.log"
  fi
  if [[ $keep -eq 0 || $rc -ne 0 ]]; then
    dc down -v --remove-orphans >/dev/null 2>&1 || true
  fi
  kill "$health_pid" 2>/dev/null || true
  [[ $keep -eq 1 && $rc -eq 0 ]] || kill "$service_pid" 2>/dev/null || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

dc down -v --remove-orphans >/dev/null 2>&1 || true

# --- build, up -----------------------------------------------------------------------------
log "build (the tickcast image: cargo build --release inside the rust stand-in)"
dc build >"$work/build.log" 2>&1 || { tail -40 "$work/build.log" >&2; die "docker-compose build"; }
phase "build"
log "up"
dc up -d >"$work/up.log" 2>&1 || { cat "$work/up.log" >&2; die "docker-compose up"; }
phase "up (containers created)"

# Every service's state: NAME STATE HEALTH RESTARTS, from podman's inspect.
states() {
  for c in $(podman ps -a -q --filter "label=com.docker.compose.project=$project"); do
    podman inspect -f '{{index .Config.Labels "com.docker.compose.service"}} {{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}-{{end}} {{.State.ExitCode}} {{.RestartCount}}' "$c"
  done | sort
}
wait_for() { # wait_for WHAT CMD...: retries CMD every 2 s until it succeeds or the time is up
  local what="$1"; shift
  local deadline=$(( $(now) + timeout ))
  until "$@" >/dev/null 2>&1; do
    (( $(now) < deadline )) || die "timed out after ${timeout}s waiting for $what"
    sleep 2
  done
}
all_healthy() {
  local s; s="$(states)"
  # One-shot services exited 0; everything else running, and healthy where it has a check.
  awk '
    $1 == "topics" || $1 == "migrate" { if ($3 != "exited" || $5 != 0) bad = 1; next }
    { if ($3 != "running" || ($4 != "-" && $4 != "healthy")) bad = 1 }
    END { exit bad }' <<<"$s"
}
log "waiting for every service to be healthy"
wait_for "every service healthy" all_healthy
phase "every service healthy"
echo "== service states (service container state health exit-code restarts)"
states

# --- forecasts in Postgres and on the API --------------------------------------------------
psql_() { podman exec "${project}_postgres_1" psql -U tickcast -d tickcast -tAc "$1"; }
forecasts() { psql_ "select count(*) from forecasts"; }
has_forecasts() { [[ "$(forecasts)" -gt 0 ]]; }
wait_for "forecasts in Postgres" has_forecasts
phase "first forecasts in Postgres"
# Every model the forecast service runs by default (the compose file's TICKCAST_MODELS default),
# the LSTM included, and their ensemble: the forecaster runs the CPU image with no device set.
models="$(sed -n 's/.*TICKCAST_MODELS: \${TICKCAST_MODELS:-\([a-z,]*\)}.*/\1/p' docker-compose.yml | head -1),ensemble"
[[ "$models" == *lstm* ]] || die "cannot read the default models from docker-compose.yml"
every_model() {
  local m
  for m in ${models//,/ }; do
    [[ "$(psql_ "select count(*) from forecasts where model = '$m'")" -gt 0 ]] || return 1
  done
}
wait_for "forecasts of every default model ($models)" every_model
phase "forecasts of every model"
echo "== forecasts in Postgres: $(forecasts), by model:"
psql_ "select model, count(*) from forecasts group by model order by model" | sed 's/^/   /'
image_env="$(podman image inspect -f '{{range .Config.Env}}{{println .}}{{end}}' tickcast:latest)"
! grep -q '^TICKCAST_LSTM_DEVICE=' <<<"$image_env" || die "tickcast:latest sets TICKCAST_LSTM_DEVICE"
! dc logs --no-color forecast 2>&1 | grep -q 'wgpu' || die "the forecaster's log mentions wgpu"
echo "== tickcast:latest sets no LSTM device; the forecaster's log never mentions wgpu"
latest="$work/latest.json"
api_latest() {
  curl -fsS "http://127.0.0.1:8080/api/v1/forecasts/latest?exchange=binance&symbol=BTC-USDT&interval=1m" >"$latest" \
    && python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
rows = d if isinstance(d, list) else next(v for v in d.values() if isinstance(v, list))
assert rows, "no forecasts"
print(len(rows))' "$latest"
}
wait_for "forecasts on the API" api_latest
echo "== /api/v1/forecasts/latest (binance BTC-USDT 1m): $(api_latest) forecasts"
curl -fsS http://127.0.0.1:8080/ | grep -qi "<html" || die "the dashboard page does not answer"
echo "== dashboard: GET / answers with the page"

# --- Prometheus ----------------------------------------------------------------------------
targets="$work/targets.json"
prom_up() {
  curl -fsS http://127.0.0.1:9090/api/v1/targets >"$targets" && python3 - "$targets" "$@" <<'EOF'
import json, sys
want = set(sys.argv[2:])
t = json.load(open(sys.argv[1]))["data"]["activeTargets"]
seen = {}
for x in t:
    seen.setdefault(x["labels"].get("service", x["labels"]["job"]), []).append(x["health"])
missing = want - set(seen)
down = {k: v for k, v in seen.items() if any(h != "up" for h in v)}
assert not missing and not down, f"missing {missing}, not up {down}"
EOF
}
print_targets() {
  python3 - "$targets" <<'EOF'
import json, sys
for x in sorted(json.load(open(sys.argv[1]))["data"]["activeTargets"], key=lambda x: x["scrapeUrl"]):
    print(f'   {x["labels"]["job"]:13} {x["labels"].get("service", "-"):9} {x["scrapeUrl"]:40} {x["health"]}')
EOF
}
wait_for "every Prometheus target up" prom_up prometheus ingest candles forecast alert sink api
phase "Prometheus targets up"
echo "== Prometheus targets"
print_targets

# --- Grafana's provisioning, without Grafana -------------------------------------------------
# Each provisioned datasource reached as Grafana would reach it from the compose network, with
# the credentials Grafana's container gets; each dashboard provider's folder is a mounted one.
ds="$(/usr/bin/python3 - monitoring/grafana/provisioning <<'EOF'
import glob, sys, yaml
root = sys.argv[1]
for f in sorted(glob.glob(root + "/datasources/*.y*ml")):
    for d in yaml.safe_load(open(f))["datasources"]:
        j = d.get("jsonData", {})
        print("datasource", d["type"], d["url"], d.get("user", "-"), j.get("database", "-"),
              j.get("sslmode", "-"))
for f in sorted(glob.glob(root + "/dashboards/*.y*ml")):
    for p in yaml.safe_load(open(f))["providers"]:
        print("dashboards", p["options"]["path"])
EOF
)"
grafana_pw="$GRAFANA_DB_PASSWORD"
while read -r kind a b c d e; do
  case "$kind $a" in
    "datasource grafana-postgresql-datasource" | "datasource postgres")
      n="$(podman exec -e PGPASSWORD="$grafana_pw" "${project}_postgres_1" psql \
        "host=${b%%:*} port=${b##*:} user=$c dbname=$d sslmode=$e" -tAc "select count(*) from forecasts")" \
        || die "Grafana's Postgres datasource ($c@$b/$d) cannot log in"
      # It reads, and may change nothing.
      if podman exec -e PGPASSWORD="$grafana_pw" "${project}_postgres_1" psql \
        "host=${b%%:*} port=${b##*:} user=$c dbname=$d sslmode=$e" -tAc "delete from forecasts" \
        >/dev/null 2>&1; then
        die "Grafana's Postgres datasource ($c) may delete forecasts"
      fi
      echo "== Grafana datasource $a: $c@$b/$d logs in, reads $n forecasts, may not delete" ;;
    "datasource prometheus")
      podman exec "${project}_api_1" tickcast healthcheck "$b/-/ready" \
        || die "Grafana's Prometheus datasource $b does not answer"
      echo "== Grafana datasource prometheus: $b answers from the compose network" ;;
    dashboards*)
      mounted="$(sed -n 's#^ *- \./monitoring/grafana/dashboards:\([^:]*\):ro#\1#p' docker-compose.yml)"
      [[ "$a" == "$mounted" && -n "$(ls monitoring/grafana/dashboards/*.json)" ]] \
        || die "Grafana's dashboard provider reads $a, the compose file mounts the dashboards at $mounted"
      echo "== Grafana dashboards: provider path $a is the mounted monitoring/grafana/dashboards" ;;
    *) die "unexpected provisioning entry: $kind $a $b" ;;
  esac
done <<<"$ds"

# --- scale the forecaster to three -----------------------------------------------------------
members() {
  podman exec "${project}_kafka_1" kafka-consumer-groups.sh --bootstrap-server localhost:9092 \
    --describe --group tickcast-forecast 2>/dev/null
}
three_members() {
  members | awk '$1 == "tickcast-forecast" && $7 != "-" { print $7 }' | sort -u | wc -l | grep -qx 3
}
before="$(forecasts)"
log "--scale forecast=3"
dc up -d --no-recreate --scale forecast=3 >>"$work/up.log" 2>&1 || die "scaling the forecaster"
wait_for "three forecast members in the consumer group" three_members
wait_for "every service healthy after scaling" all_healthy
echo "== tickcast-forecast group after --scale forecast=3 (topic partition member)"
members | awk '$1 == "tickcast-forecast" { print "   " $2, $3, $7 }'
more_forecasts() { [[ "$(forecasts)" -gt "$before" ]]; }
wait_for "forecasts to continue after scaling" more_forecasts
echo "== forecasts: $before before scaling, $(forecasts) after"
wait_for "three forecast targets up in Prometheus" bash -c "
  curl -fsS http://127.0.0.1:9090/api/v1/targets | python3 -c '
import json, sys
t = json.load(sys.stdin)[\"data\"][\"activeTargets\"]
f = [x for x in t if x[\"labels\"].get(\"service\") == \"forecast\" and x[\"health\"] == \"up\"]
assert len(f) == 3, len(f)'"
phase "scaled to three forecasters"

# --- a crash: kill -9 one container's process; its restart policy brings it back -------------
victim="${project}_candles_1"
restarts() { podman inspect -f '{{.RestartCount}}' "$victim"; }
r0="$(restarts)"
pid="$(podman inspect -f '{{.State.Pid}}' "$victim")"
log "kill -9 $victim (pid $pid)"
kill -9 "$pid"
restarted() {
  [[ "$(restarts)" -gt "$r0" ]] \
    && [[ "$(podman inspect -f '{{.State.Status}} {{.State.Health.Status}}' "$victim")" == "running healthy" ]]
}
wait_for "$victim to restart and be healthy again" restarted
echo "== $victim killed (SIGKILL) and restarted: restarts $r0 → $(restarts), healthy"
after_kill="$(forecasts)"
wait_for "forecasts to continue after the restart" bash -c "[[ \$(podman exec ${project}_postgres_1 psql -U tickcast -d tickcast -tAc 'select count(*) from forecasts') -gt $after_kill ]]"
phase "killed container restarted"
echo "== service states at the end"
states

# --- down -v -----------------------------------------------------------------------------
if [[ $keep -eq 0 ]]; then
  dc down -v --remove-orphans >"$work/down.log" 2>&1 || die "docker-compose down -v"
  left="$(podman ps -a -q --filter "label=com.docker.compose.project=$project" | wc -l)"
  vols="$(podman volume ls -q | grep -c "^${project}_" || true)"
  [[ "$left" -eq 0 && "$vols" -eq 0 ]] || die "down -v left $left containers and $vols volumes"
  echo "== down -v: no container or volume left"
  phase "down -v"
fi
echo "== times"
printf '   %s\n' "${timings[@]}"
echo "   total                              $(( $(now) - t_all ))s"
log "passed"
}

main "$@"
