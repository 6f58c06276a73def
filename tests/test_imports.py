"""The package imports as a graph without cycles (docs/imports.md is drawn by the same script)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import import_graph  # noqa: E402


def test_no_module_level_import_cycle() -> None:
    mod_graph, _, _ = import_graph.build()
    assert len(mod_graph) > 50  # the walk found the package
    assert import_graph.find_cycles(mod_graph) == []


def test_no_import_cycle_at_any_level() -> None:
    """Function-level imports count too: a lazy import only hides a circle."""
    _, node_graph, _ = import_graph.build()
    assert import_graph.find_cycles(import_graph.module_graph_all()) == []
    assert import_graph.find_cycles(node_graph) == []


def test_cycle_finder_finds_cycles() -> None:
    assert import_graph.find_cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [
        ["a", "b", "c"]
    ]
    assert import_graph.find_cycles({"a": {"b"}, "b": set()}) == []
