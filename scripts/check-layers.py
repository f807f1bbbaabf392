#!/usr/bin/env python3
"""Checks the import structure: crates follow the layers, and no crate has an
import cycle between its files.

Layers (ARCHITECTURE.md): each crate may depend only on those listed for it.
Files: an edge A -> B means a file A names an item of module file B
(`use crate::x::y`, `super::`, `self::`, or a `crate::x::y` path in code).
A parent module's `mod child;` and `pub use child::Item;` are structure, not
use, and make no edge; everything else does. A cycle is a strongly connected
group of two or more files.

    scripts/check-layers.py            check; exit 1 on a violation
    scripts/check-layers.py --dot      also print the file graph as Graphviz DOT
    scripts/check-layers.py --crate DIR  only the file check, of one crate
"""

import os
import re
import sys
import tomllib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# crate -> the workspace crates it may depend on (normal dependencies).
LAYERS = {
    "coop-domain": set(),
    "coop-runtime": set(),
    "coop-mechanisms": {"coop-domain", "coop-runtime"},
    "coop-services": {"coop-domain", "coop-runtime", "coop-mechanisms"},
    "coop-web": {"coop-domain", "coop-runtime", "coop-mechanisms", "coop-services"},
    "coop-ops": {"coop-runtime"},
    "coop": {"coop-web", "coop-ops", "coop-runtime"},
}


def crate_dirs():
    yield "coop", ROOT
    crates = os.path.join(ROOT, "crates")
    for name in sorted(os.listdir(crates)):
        if os.path.isfile(os.path.join(crates, name, "Cargo.toml")):
            yield name, os.path.join(crates, name)


def check_crates(problems):
    for name, path in crate_dirs():
        manifest = tomllib.load(open(os.path.join(path, "Cargo.toml"), "rb"))
        package = manifest.get("package", {}).get("name", name)
        deps = set(manifest.get("dependencies", {}))
        ours = {d for d in deps if d.startswith("coop")}
        allowed = LAYERS.get(package)
        if allowed is None:
            problems.append(f"crate {package} has no layer in scripts/check-layers.py")
            continue
        for dep in sorted(ours - allowed):
            problems.append(f"crate {package} depends on {dep}, a layer it may not use")


def module_files(src):
    """module path (tuple) -> file, for a crate's src/."""
    files = {}
    for dirpath, _, names in os.walk(src):
        for n in names:
            if not n.endswith(".rs"):
                continue
            full = os.path.join(dirpath, n)
            rel = os.path.relpath(full, src)[:-3].split(os.sep)
            if rel[-1] in ("lib", "main") and len(rel) == 1:
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            files[path] = full
    return files


USE_RE = re.compile(r"\buse\s+((?:crate|super|self)(?:::[^;]*)?);", re.S)
PATH_RE = re.compile(r"\b((?:crate|super|self)(?:::[A-Za-z_][A-Za-z0-9_]*)+)")
CFG_TEST_RE = re.compile(r"#\[cfg\(test\)\]\s*mod\s+tests\s*\{")


def strip_tests_and_comments(text):
    text = re.sub(r"//[^\n]*", "", text)
    m = CFG_TEST_RE.search(text)
    return text[: m.start()] if m else text


def expand_use(tree):
    """`crate::a::{b, c::d}` -> ["crate::a::b", "crate::a::c::d"]."""
    tree = re.sub(r"\s+", "", tree)
    out = []

    def walk(prefix, rest):
        if rest.startswith("{"):
            depth, start, parts = 0, 1, []
            for i, ch in enumerate(rest):
                if ch == "{":
                    depth += 1
                elif ch == "}":
                    depth -= 1
                    if depth == 0:
                        parts.append(rest[start:i])
                        break
                elif ch == "," and depth == 1:
                    parts.append(rest[start:i])
                    start = i + 1
            for part in parts:
                if part:
                    walk(prefix, part)
            return
        head, sep, tail = rest.partition("::")
        if sep and tail:
            walk(prefix + [head], tail)
        else:
            # `x as y` (whitespace removed: `xasy`) names x; resolution stops
            # at the deepest module file anyway, so the alias does not matter.
            out.append("::".join(prefix + [head]))

    walk([], tree)
    return out


def resolve(path_str, here, files):
    """The module file a path names, seen from module `here` (a tuple)."""
    parts = path_str.split("::")
    if parts[0] == "crate":
        base, rest = (), parts[1:]
    elif parts[0] in ("super", "self"):
        base = list(here)
        rest = parts
        while rest and rest[0] in ("super", "self"):
            if rest[0] == "super":
                base = base[:-1]
            rest = rest[1:]
        base = tuple(base)
    else:
        return None
    best = base if base in files else None
    cur = base
    for p in rest:
        cur = cur + (p,)
        if cur in files:
            best = cur
        else:
            break
    return best


def check_files(problems, dot, crates):
    for name, path in crates:
        src = os.path.join(path, "src")
        if not os.path.isdir(src):
            continue
        files = module_files(src)
        edges = {m: set() for m in files}
        for mod, file in files.items():
            text = strip_tests_and_comments(open(file).read())
            # `pub use child::X` in a parent re-exports; not a use.
            reexports = set()
            for m in re.finditer(r"\bpub(?:\([^)]*\))?\s+use\s+([^;]*);", text, re.S):
                for p in expand_use(m.group(1)):
                    reexports.add(p)
            refs = []
            for m in USE_RE.finditer(text):
                refs += expand_use(m.group(1))
            text_wo_use = USE_RE.sub("", text)
            refs += PATH_RE.findall(text_wo_use)
            for ref in refs:
                target = resolve(ref, mod, files)
                if target is None or target == mod:
                    continue
                edges[mod].add(target)
            # Re-exports of a child from its parent: drop the parent -> child edge
            # when the child is used only by the re-export (child names relative).
            for child in list(edges[mod]):
                if child[:-1] == mod:
                    uses = [r for r in refs if resolve(r, mod, files) == child]
                    if uses and all(u in reexports or ("self::" + u) in reexports for u in uses):
                        edges[mod].discard(child)
        for cycle in strongly_connected(edges):
            if len(cycle) > 1:
                shown = " <-> ".join(sorted("/".join(m) or "lib" for m in cycle))
                problems.append(f"{name}: import cycle between files: {shown}")
        if dot:
            print(f'digraph "{name}" {{')
            for a, targets in sorted(edges.items()):
                for b in sorted(targets):
                    print(f'  "{"/".join(a) or "lib"}" -> "{"/".join(b) or "lib"}";')
            print("}")


def strongly_connected(edges):
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on.discard(w)
                group.append(w)
                if w == v:
                    break
            out.append(group)

    for v in edges:
        if v not in index:
            visit(v)
    return out


def main():
    dot = "--dot" in sys.argv
    problems = []
    if "--crate" in sys.argv:
        # Files only, of one crate directory (for trying the checker on a tree).
        path = sys.argv[sys.argv.index("--crate") + 1]
        check_files(problems, dot, [(os.path.basename(path), path)])
    else:
        check_crates(problems)
        check_files(problems, dot, list(crate_dirs()))
    if problems:
        print("import structure: problems found", file=sys.stderr)
        for p in problems:
            print(f"  - {p}", file=sys.stderr)
        sys.exit(1)
    print("import structure: crates follow the layers; no file-level import cycle", file=sys.stderr)


if __name__ == "__main__":
    main()
