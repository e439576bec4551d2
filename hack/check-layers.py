#!/usr/bin/env python3
"""Fails when an import climbs: every top-level module of src/ may `use crate::` only
modules of its own layer or a lower one (ARCHITECTURE.md, "Layers"), and the modules must
not form a cycle. Reads `crate::…` paths (`use` lines, `use crate::{a, b}` groups and
paths in code; comments are skipped) of every file below src/ except the binaries' mains.
Also fails for a module of src/lib.rs that the table does not place.
    hack/check-layers.py        (from the repository root)"""
import os
import re
import sys

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
TABLE_BEGIN, TABLE_END = "<!-- layers:begin -->", "<!-- layers:end -->"


def layers():
    """module -> layer number, from the table between the markers in ARCHITECTURE.md."""
    text = open(os.path.join(ROOT, "ARCHITECTURE.md")).read()
    table = text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0]
    layer_of = {}
    for row in table.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) < 2 or not re.match(r"\d+", cells[0]):
            continue
        number = int(re.match(r"\d+", cells[0]).group())
        for module in re.findall(r"`([a-z_][a-z0-9_]*)`", cells[1]):
            layer_of[module] = number
    return layer_of


def module_of(path):
    """The top-level module a file of src/ belongs to (None for the binaries' mains)."""
    first = os.path.relpath(path, os.path.join(ROOT, "src")).split(os.sep)[0]
    if first in ("bin", "main.rs", "lib.rs"):
        return None
    return first[:-3] if first.endswith(".rs") else first


def group_heads(text, start):
    """The first name of each item of the `{…}` group opening at `start`."""
    depth, item, heads = 0, "", []
    for ch in text[start:]:
        if ch == "{":
            depth += 1
            if depth == 1:
                continue
        elif ch == "}":
            depth -= 1
            if depth == 0:
                heads.append(item)
                break
        elif ch == "," and depth == 1:
            heads.append(item)
            item = ""
            continue
        if depth >= 1:
            item += ch
    return [m.group(1) for h in heads if (m := re.match(r"\s*([a-z_][a-z0-9_]*)", h))]


def imports():
    """(file, line, from module, to module) for every `crate::` path to another module."""
    found = []
    for folder, _, files in os.walk(os.path.join(ROOT, "src")):
        for name in sorted(files):
            path = os.path.join(folder, name)
            module = module_of(path)
            if not name.endswith(".rs") or module is None:
                continue
            text = re.sub(r"//[^\n]*", "", open(path).read())
            for m in re.finditer(r"\bcrate::(\{|[a-z_][a-z0-9_]*)", text):
                line = text.count("\n", 0, m.start()) + 1
                targets = group_heads(text, m.start(1)) if m.group(1) == "{" else [m.group(1)]
                for target in targets:
                    if target != module:
                        found.append((os.path.relpath(path, ROOT), line, module, target))
    return found


def cycles(edges):
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    layer_of = layers()
    problems = []
    lib = open(os.path.join(ROOT, "src", "lib.rs")).read()
    for module in re.findall(r"^pub mod ([a-z_][a-z0-9_]*);", lib, re.M):
        if module not in layer_of:
            problems.append(f"src/lib.rs: module `{module}` has no layer in ARCHITECTURE.md")
    edges = {}
    for path, line, module, target in imports():
        if module not in layer_of or target not in layer_of:
            continue  # reported above, or not a module (crate::some_macro)
        edges.setdefault(module, set()).add(target)
        if layer_of[target] > layer_of[module]:
            problems.append(
                f"{path}:{line}: `{module}` (layer {layer_of[module]}) uses "
                f"`{target}` (layer {layer_of[target]}), a layer above it"
            )
    for component in cycles(edges):
        problems.append("modules that import each other in a cycle: " + ", ".join(component))
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"check-layers: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print(f"check-layers: {len(layer_of)} modules, imports point down, no cycles")
    return 0


if __name__ == "__main__":
    sys.exit(main())
