#!/usr/bin/env bash
# Checks that the wgpu step of scripts/test.sh (`cargo test --workspace --features
# tickcast-forecast/wgpu --test wgpu`) compiles nothing the main test build (`cargo test
# --workspace`) already compiled, other than burn's crates and tickcast-forecast: when the GPU stack
# turns on a feature of a shared crate (uuid, parking_lot, proc-macro2, …), that crate and every
# crate above it (serde, tokio, sqlx, axum, tickcast's own…) are compiled a second time. On a
# cold CI machine that cost minutes. feature-pins/Cargo.toml gives the main build those features.
#
# Reads cargo's unit graph (what each build would compile: package, target, features, profile,
# dependencies) without building anything. `--unit-graph` is unstable output, so stable cargo is
# asked for it with RUSTC_BOOTSTRAP=1; nothing is compiled with it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
graph() {
  RUSTC_BOOTSTRAP=1 cargo test --workspace --no-run --unit-graph -Z unstable-options "$@"
}
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
graph >"$work/main.json"
graph --features tickcast-forecast/wgpu --test wgpu >"$work/gpu.json"
python3 - "$work/main.json" "$work/gpu.json" <<'PY'
import json, re, sys

IDS = {}  # a unit's description (dependencies as ids) -> a small id, shared by both graphs

def units(path):
    us = json.load(open(path))["units"]
    memo = {}
    def ident(i):
        # A unit is reused only when it and everything below it are the same.
        if i not in memo:
            u = us[i]
            key = (u["pkg_id"], u["target"]["name"], tuple(u["target"]["kind"]), u["mode"],
                   tuple(sorted(u["features"])), json.dumps(u["profile"], sort_keys=True),
                   u["platform"], tuple(sorted(ident(d["index"]) for d in u["dependencies"])))
            memo[i] = IDS.setdefault(key, len(IDS))
        return memo[i]
    # Host units (build scripts, proc macros and what they use) apart from target ones: cargo
    # resolves their features separately.
    host = set()
    def mark(i):
        if i not in host:
            host.add(i)
            for d in us[i]["dependencies"]:
                mark(d["index"])
    for i, u in enumerate(us):
        if set(u["target"]["kind"]) & {"proc-macro", "custom-build"} and u["mode"] == "build":
            mark(i)
    for i, u in enumerate(us):
        u["host"] = i in host
    return [(ident(i), u) for i, u in enumerate(us)]

main, gpu = units(sys.argv[1]), units(sys.argv[2])
built = {k for k, _ in main}
by_slot = {}
for _, u in main:
    by_slot.setdefault((u["pkg_id"], u["target"]["name"], u["mode"], u["host"]), []).append(u)
name = lambda u: re.sub(r".*#", "", u["pkg_id"]).replace("@", " ")
# burn's crates and its compute stack (cubecl, cubek) are meant to change with the feature;
# tickcast-forecast and the test sit above them.
own = re.compile(r"^(burn|cubecl|cubek|tickcast-forecast)")
slot = lambda u: (u["pkg_id"], u["target"]["name"], u["mode"], u["host"])
shared = lambda u: slot(u) in by_slot and not own.match(name(u))
# Who uses each unit of the wgpu build: a second copy that only the GPU stack's own crates use
# is part of that stack, not a rebuild of the main build.
users = {}
for _, u in gpu:
    for d in u["dependencies"]:
        users.setdefault(d["index"], []).append(u)
index = {id(u): i for i, (_, u) in enumerate(gpu)}
again, causes = [], {}
for k, u in gpu:
    if k in built or not shared(u):
        continue
    above = users.get(index[id(u)], [])
    if above and not any(shared(a) for a in above):
        continue
    again.append(name(u))
    mine = set(u["features"])
    if all(set(m["features"]) != mine for m in by_slot[slot(u)]):
        closest = min(by_slot[slot(u)], key=lambda m: len(mine ^ set(m["features"])))
        causes[name(u) + (" (build scripts, proc macros)" if u["host"] else "")] = sorted(
            mine - set(closest["features"]))
new = sum(1 for k, u in gpu if k not in built)
if again:
    print(f"check-feature-pins: the wgpu step would compile {len(again)} units the main build "
          "has with other features or dependencies:")
    print("  " + ", ".join(sorted(set(again))))
    print("because the GPU stack turns on these features (pin them in feature-pins/Cargo.toml;")
    print("under [build-dependencies] when the copy is a build script's or a proc macro's):")
    for crate, added in sorted(causes.items()):
        print(f"  {crate}: {added}")
    sys.exit(1)
print(f"check-feature-pins: ok; the wgpu step compiles {new} units (burn's GPU side, "
      f"tickcast-forecast, the test), none the main build's {len(main)} have")
PY
