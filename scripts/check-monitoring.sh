#!/usr/bin/env bash
# Checks monitoring/ with promtool: the Prometheus config (and the rule files it names), the alert
# rules, and the rules' unit tests; and that every Grafana dashboard is valid JSON. Installs
# Debian's `prometheus` package (which ships promtool) when promtool is missing.
#
#   scripts/check-monitoring.sh [MONITORING_DIR]    (default: monitoring/ of this checkout)
#
# Exits non-zero on the first file that fails.
set -euo pipefail

dir="${1:-$(cd "$(dirname "$0")/.." && pwd)/monitoring}"

if ! command -v promtool >/dev/null 2>&1; then
    echo "promtool not found: installing Debian's prometheus package"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

promtool check config "$dir/prometheus.yml"
promtool check rules "$dir/rules/tickcast.rules.yml"
# rule_files in the test file are relative to it.
(cd "$dir/rules" && promtool test rules tickcast.rules.test.yml)

for f in "$dir"/grafana/dashboards/*.json; do
    python3 -m json.tool "$f" >/dev/null || { echo "invalid JSON: $f" >&2; exit 1; }
done
echo "monitoring: OK"
