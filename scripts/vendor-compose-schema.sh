#!/usr/bin/env bash
# Vendors the Compose specification's JSON schema (Apache-2.0, from the compose-spec/compose-go
# Go module, which the Go module proxy serves) into tests/fixtures/compose-spec.json, where
# tests/compose.rs validates docker-compose.yml against it.
#
#   scripts/vendor-compose-schema.sh [VERSION]     (default: the pinned version below)
set -euo pipefail
version="${1:-v2.16.2}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
command -v go >/dev/null || { echo "go is needed to fetch the module" >&2; exit 1; }
dir="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "github.com/compose-spec/compose-go/v2@$version" \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')"
cp "$dir/schema/compose-spec.json" "$root/tests/fixtures/compose-spec.json"
chmod 644 "$root/tests/fixtures/compose-spec.json"
echo "compose-spec/compose-go $version schema/compose-spec.json" > "$root/tests/fixtures/compose-spec.VERSION"
echo "vendored the Compose schema from compose-go $version" >&2
