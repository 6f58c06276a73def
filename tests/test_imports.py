"""The package imports as a graph without cycles (docs/imports.md is drawn by the same script)."""

from __future__ import annotations

import subprocess
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


# Function-level imports of streamanon modules that load no optional dependency, each with
# why it stays inside the function. Everything else is imported at module level.
LIGHT_LAZY_ALLOWED = {
    # CLI start-up: live (the RTSP/HLS output stack) adds ~80 ms to `streamanon --help`.
    ("streamanon.cli", "streamanon.live"): "start-up cost of every command, measured ~80 ms",
    # registry is on --help's path (cli_args builds --method's choices from it).
    ("streamanon.registry", "streamanon.anonymize.swap"): "swap+ida add ~30 ms to --help",
    ("streamanon.registry", "streamanon.anonymize.ida"): "swap+ida add ~30 ms to --help",
    # A batch worker sets its thread budget in the environment first: OpenMP/BLAS pools of
    # cv2, onnxruntime and dlib size themselves when first loaded.
    ("streamanon.batch.worker", "streamanon.anonymizer"): "loads after the thread budget",
    ("streamanon.batch.worker", "streamanon.run"): "loads after the thread budget",
    ("streamanon.batch.worker", "streamanon.batch.chunks"): "loads after the thread budget",
}


def test_function_level_imports_only_for_optional_dependencies() -> None:
    """An import inside a function must be of a module that (transitively, at module level)
    imports an optional dependency, or be in the allowlist above with its reason."""
    reach = import_graph.optional_reach()
    lazy = import_graph.lazy_imports()
    assert len(lazy) > 10  # the walk found them
    light = {(a, b) for a, b in lazy if not reach[b]}
    assert light - set(LIGHT_LAZY_ALLOWED) == set(), "move these imports to module level"
    assert set(LIGHT_LAZY_ALLOWED) - light == set(), "stale allowlist entries"


def test_optional_reach_follows_module_level_imports() -> None:
    reach = import_graph.optional_reach()
    assert "torch" in reach["streamanon.identity.recognizer"]  # imports torch itself
    assert "torch" in reach["streamanon.synth.psi"]  # through identity.recognizer
    assert reach["streamanon.errors"] == set()
    assert reach["streamanon.anonymizer"] == set()


def test_plain_import_loads_no_optional_dependency() -> None:
    code = (
        "import sys, streamanon, streamanon.cli, streamanon.anonymizer, streamanon.registry\n"
        "from streamanon.cli_args import build_parser\n"
        "build_parser()\n"
        f"print(sorted(m for m in {sorted(import_graph.OPTIONAL)!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
