#!/usr/bin/env bash
# Installs those of the named Debian packages that are not installed yet, and says which.
#
#   scripts/debian-packages.sh PKG...
set -euo pipefail
need=()
for pkg in "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[[ ${#need[@]} -gt 0 ]] || exit 0
echo "[debian-packages] installing ${need[*]}" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
