#!/usr/bin/env python3
"""Import cycles between the source files of each crate of the workspace.

Reads every `.rs` file under each crate's `src/`, maps it to its module path
(`src/a/b.rs` and `src/a/b/mod.rs` are `a::b`), and draws an edge from a file to every module
file a `crate::…`, `super::…` or `self::…` path in its code names (the longest prefix that is a
module). A file's unit tests (from `#[cfg(test)]` on) are left out: a test may reach anywhere.
Prints each group of files that import each other in a cycle (strongly connected components
of more than one file), largest first, and exits 1 when there is one.

    scripts/import-cycles.py            # every crate
    scripts/import-cycles.py store      # one crate directory
"""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)*)::\{([^;]*)\}", re.S)


def crates():
    for toml in sorted(ROOT.glob("*/Cargo.toml")) + [ROOT / "Cargo.toml"]:
        src = toml.parent / "src"
        if src.is_dir() and "vendor" not in toml.parts and "target" not in toml.parts:
            yield toml.parent


def module_of(src: Path, file: Path):
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "mod" or (len(parts) == 1 and parts[0] in ("lib", "main")):
        parts = parts[:-1]
    return tuple(parts)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return "\n".join(line.split("//")[0] for line in text.splitlines())


TEST_MOD = re.compile(r"#\[cfg\(test\)\]\s*(pub(\([^)]*\))?\s+)?mod\s+\w+\s*\{")


def without_test_modules(text: str) -> str:
    """`text` less its `#[cfg(test)] mod … { … }` blocks (braces matched)."""
    out, at = [], 0
    for m in TEST_MOD.finditer(text):
        if m.start() < at:
            continue
        out.append(text[at : m.start()])
        depth, i = 1, m.end()
        while i < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[i], 0)
            i += 1
        at = i
    out.append(text[at:])
    return "".join(out)


def resolve(base, kind, rest, modules):
    if kind == "crate":
        path = []
    elif kind == "self":
        path = list(base)
    else:
        path = list(base[:-1])
    segments = [s for s in rest.split("::") if s]
    while segments and segments[0] == "super":
        path = path[:-1]
        segments = segments[1:]
    best = None
    for i in range(len(segments) + 1):
        cand = tuple(path + segments[:i])
        if cand in modules:
            best = cand
    return best


def graph(crate: Path):
    src = crate / "src"
    files = {}
    for f in src.rglob("*.rs"):
        files[module_of(src, f)] = f
    # Files under `src/bin` and binaries' own trees are separate crates: keep them anyway, they
    # only add edges within themselves.
    edges = {m: set() for m in files}
    for mod, f in files.items():
        text = strip_comments(f.read_text())
        text = without_test_modules(text)
        refs = []
        for g in USE_GROUP.finditer(text):
            kind, head, inner = g.group(1), g.group(2), g.group(3)
            for item in re.split(r"[,{}]", inner):
                item = item.strip().split(" as ")[0]
                if item and item != "self":
                    refs.append((kind, head + "::" + item.replace(" ", "")))
                elif item == "self":
                    refs.append((kind, head))
        for m in PATH.finditer(text):
            refs.append((m.group(1), m.group(2)))
        # Paths from a child module's name, as a parent writes them (`scorer::Outcome`).
        own = mod if f.name == "mod.rs" or f.name in ("lib.rs", "main.rs") else None
        if own is not None:
            for child in {m[-1] for m in files if len(m) == len(own) + 1 and m[:-1] == own}:
                for m in re.finditer(r"(?<![\w:])" + child + r"((?:::[A-Za-z_][A-Za-z0-9_]*)+)", text):
                    refs.append(("self", "::" + child + m.group(1)))
        for kind, rest in refs:
            target = resolve(mod, kind, rest, files)
            if target is not None and target != mod and target != ():
                edges[mod].add(target)
    return files, edges


def sccs(edges):
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            out.append(comp)

    sys.setrecursionlimit(10_000)
    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    wanted = set(sys.argv[1:])
    known = {c.name for c in crates()} | {"tickcast (root)"}
    if wanted - known:
        unknown = ", ".join(sorted(wanted - known))
        sys.exit(f"no crate directory {unknown}; known: {', '.join(sorted(known))}")
    found = 0
    for crate in crates():
        name = crate.name if crate != ROOT else "tickcast (root)"
        if wanted and crate.name not in wanted and name not in wanted:
            continue
        files, edges = graph(crate)
        cycles = sorted((c for c in sccs(edges) if len(c) > 1), key=len, reverse=True)
        for c in cycles:
            found += 1
            names = sorted(str(files[m].relative_to(ROOT)) for m in c)
            print(f"{name}: cycle of {len(c)} files: " + ", ".join(names))
    print(f"{found} import cycle(s)")
    sys.exit(1 if found else 0)


if __name__ == "__main__":
    main()
