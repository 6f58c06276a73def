"""The generator of `--method ida` (its engine file) and its release gate.

The methods themselves: `anonymize.swap` (`--method swap`, delegate faces re-shaped onto each
person) and `anonymize.ida` (`--method ida`, the paper's generator); both keep their per-track
identity state in `anonymize.identity_state`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from streamanon.paths import find_engine

log = logging.getLogger(__name__)

GENERATOR_FILE = "refiner_128.onnx"  # G_r of `ida` (synth.refiner), run by ONNX Runtime
GATE_FILE = "refiner_128.gate.json"  # its release-gate table (scripts/ida_gate.py)

# The release gate (issue 21): `ida` becomes the default only when, on the evaluation set
# (videos never used to train or tune; docs/generator.md), it
#  (a) is re-identified at most GATE_MAX_REID by dlib AND by a recognizer of another family,
#  (b) keeps at least GATE_MIN_DETECTION of faces detectable,
#  (c) is at least as good as `swap` on every naturalness metric and better on three,
#  (d) wins at least GATE_MIN_AB of a blind by-eye A/B against `swap`.
GATE_MAX_REID = 0.005
GATE_MIN_DETECTION = 0.97
GATE_MIN_BETTER = 3
GATE_MIN_AB = 0.60
# Naturalness metrics of the gate and which way is better (eval.naturalness, evaluate).
NATURALNESS = {
    "skin_de": "lower",
    "seam": "lower",
    "outliers_eyes": "lower",
    "outliers_mouth": "lower",
    "confidence": "higher",
    "flicker_face": "lower",
}
# Differences smaller than this share of the swap value are ties (neither better nor worse).
TIE = 0.02


def _better(ida: float, swap: float, way: str) -> int:
    """+1 when ida is better than swap beyond the tie margin, -1 when worse, 0 for a tie."""
    tol = TIE * max(abs(swap), 1e-3)
    d = (swap - ida) if way == "lower" else (ida - swap)
    return 0 if abs(d) <= tol else (1 if d > 0 else -1)


def release_gate(table: dict) -> tuple[bool, list[str]]:
    """(passes, one line per failed criterion) for a gate table: ``{"ida": {...}, "swap":
    {...}, "ab": {"ida": n, "swap": n, "tie": n}}``, each method with ``reid`` (judge name →
    rate), ``detection`` and ``naturalness`` (metric → value)."""
    fails: list[str] = []
    ida, swap = table["ida"], table["swap"]
    reid = ida.get("reid", {})
    if len(reid) < 2:
        fails.append(f"re-identification judged by {len(reid)} recognizer(s); the gate needs 2")
    for judge, rate in sorted(reid.items()):
        if float(rate) > GATE_MAX_REID:
            fails.append(f"{judge} re-identifies {float(rate):.1%} (gate {GATE_MAX_REID:.1%})")
    if float(ida["detection"]) < GATE_MIN_DETECTION:
        fails.append(f"detected {float(ida['detection']):.1%} (gate {GATE_MIN_DETECTION:.0%})")
    better, worse = [], []
    for k, way in NATURALNESS.items():
        a, b = ida["naturalness"].get(k), swap["naturalness"].get(k)
        if a is None or b is None or not (np.isfinite(a) and np.isfinite(b)):
            fails.append(f"naturalness metric {k} missing")
            continue
        v = _better(float(a), float(b), way)
        (better if v > 0 else worse if v < 0 else []).append(k)
    if worse:
        fails.append(f"worse than swap on {', '.join(worse)}")
    if len(better) < GATE_MIN_BETTER:
        fails.append(f"better than swap on {len(better)} metric(s) (gate {GATE_MIN_BETTER})")
    ab = table.get("ab") or {}
    n = sum(int(ab.get(k, 0)) for k in ("ida", "swap", "tie"))
    share = int(ab.get("ida", 0)) / n if n else 0.0
    if share < GATE_MIN_AB:
        fails.append(
            f"blind A/B: ida preferred in {share:.0%} of {n} pairs (gate {GATE_MIN_AB:.0%})"
        )
    return not fails, fails


def generator_gate(gate_path: Path | None = None) -> tuple[bool, str]:
    """(passes, why) for the shipped generator's recorded gate table."""
    import json

    gate_path = gate_path or find_engine(GATE_FILE)
    if gate_path is None:
        return False, f"no release-gate table (engines/{GATE_FILE})"
    try:
        ok, fails = release_gate(json.loads(Path(gate_path).read_text()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return False, f"unreadable release-gate table ({exc})"
    return ok, "passes" if ok else "; ".join(fails)


def generator_available() -> bool:
    """True when the generator and its passing gate table, the bank and torch are present."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    if find_engine(GENERATOR_FILE) is None or find_engine("bank.npz") is None:
        return False
    return generator_gate()[0]
