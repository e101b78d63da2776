#!/usr/bin/env python3
"""Import circles among the top-level modules of each crate.

A top-level module is src/X.rs or src/X/ (everything under it counts as X). An edge X -> Y is
any `crate::Y` path in X's files (in `use` lines or inline), outside `#[cfg(test)]` test
modules' own files (src/**/tests/** and tests.rs). Prints each circle (strongly connected
component with more than one module) and exits 1 if there is one.

    python3 tests/module-cycles.py            # every crate under crates/
    python3 tests/module-cycles.py engine     # one crate
"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates")
REF = re.compile(r"\bcrate::([a-z_][a-z0-9_]*)")
# `use crate::{a, b::c}` groups
GROUP = re.compile(r"\bcrate::\{([^}]*)\}", re.S)


def modules(src):
    mods = {}
    for entry in sorted(os.listdir(src)):
        path = os.path.join(src, entry)
        if entry in ("lib.rs", "main.rs", "bin", "tests", "tests.rs"):
            continue
        if entry.endswith(".rs"):
            mods.setdefault(entry[:-3], []).append(path)
        elif os.path.isdir(path):
            for d, dirs, files in os.walk(path):
                dirs[:] = [x for x in dirs if x != "tests"]
                for f in files:
                    if f.endswith(".rs") and f != "tests.rs":
                        mods.setdefault(entry, []).append(os.path.join(d, f))
    return mods


def strip_test_mods(text):
    # Drop inline `#[cfg(test)] mod tests { ... }` blocks: tests may use any module.
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*(pub(\([a-z]+\))?\s+)?mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def edges(mods):
    g = {m: set() for m in mods}
    for m, files in mods.items():
        for f in files:
            text = strip_test_mods(open(f, encoding="utf-8").read())
            text = re.sub(r"//[^\n]*", "", text)
            names = set(REF.findall(text))
            for grp in GROUP.findall(text):
                names.update(re.findall(r"(?:^|,)\s*([a-z_][a-z0-9_]*)", grp))
            g[m].update(n for n in names if n in mods and n != m)
    return g


def sccs(g):
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]; n[0] += 1
        stack.append(v); on.add(v)
        for w in sorted(g[v]):
            if w not in index:
                visit(w); low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop(); on.discard(w); comp.append(w)
                if w == v:
                    break
            out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return [c for c in out if len(c) > 1]


def main():
    crates = sys.argv[1:] or sorted(os.listdir(ROOT))
    bad = 0
    for c in crates:
        src = os.path.join(ROOT, c, "src")
        if not os.path.isdir(src):
            continue
        g = edges(modules(src))
        for comp in sccs(g):
            bad += 1
            detail = "; ".join(f"{m} -> {', '.join(sorted(g[m] & set(comp)))}" for m in comp)
            print(f"{c}: circle {' <-> '.join(comp)} ({detail})")
    if bad:
        sys.exit(1)
    print(f"no import circle among the top-level modules of {len(crates)} crates")


if __name__ == "__main__":
    main()
