"""What the realistic methods share besides the per-track state: the generator's release gate
and the plain colour match / face hull of the `ida` blend.

The methods themselves: `anonymize.swap` (`--method swap`, delegate faces re-shaped onto each
person) and `anonymize.ida` (`--method ida`, the paper's generator); both keep their per-track
identity state in `anonymize.identity_state`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from streamanon.paths import find_engine

log = logging.getLogger(__name__)

GENERATOR_FILE = "generator_128.onnx"

# Release gate of a shipped generator, on its held-out evaluation (engines/generator_128.json):
# the issue-6 targets. A model that misses them can be run explicitly but is never the default.
GATE_MAX_REID = 0.05
GATE_MIN_DETECTION = 0.95


def generator_gate(meta_path: Path | None = None) -> tuple[bool, str]:
    """(passes, why) for the shipped generator's recorded held-out metrics."""
    import json

    meta_path = meta_path or find_engine(GENERATOR_FILE.replace(".onnx", ".json"))
    if meta_path is None:
        return False, "no generator metrics (engines/generator_128.json)"
    try:
        m = json.loads(Path(meta_path).read_text())["metrics"]["ifa"]
        reid, det = float(m["anonymized_reid_rate"]), float(m["anonymized_detection_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return False, f"unreadable generator metrics ({exc})"
    if reid > GATE_MAX_REID or det < GATE_MIN_DETECTION:
        return False, (
            f"held-out re-identification {reid:.0%} (gate {GATE_MAX_REID:.0%}), "
            f"detection {det:.0%} (gate {GATE_MIN_DETECTION:.0%})"
        )
    return True, "passes"


def generator_available() -> bool:
    """True when a generator that passes its release gate, the bank and torch are present."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    if find_engine(GENERATOR_FILE) is None or find_engine("bank.npz") is None:
        return False
    return generator_gate()[0]


def colour_match(gen: np.ndarray, ref: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Match the generated face's colour statistics (Lab) to the original's inside the mask.

    Means move (scene lighting, white balance) and the lightness contrast is scaled, within
    limits, to the scene's (a sharp studio delegate in a washed-out dashcam frame stands out).
    Only these global statistics are taken from the original, never its texture.
    """
    w = mask > 0.5
    if w.sum() < 16:
        return gen
    g = cv2.cvtColor(gen, cv2.COLOR_BGR2LAB).astype(np.float32)
    r = cv2.cvtColor(ref, cv2.COLOR_BGR2LAB).astype(np.float32)
    gm, rm = g[w].mean(0), r[w].mean(0)
    contrast = np.clip(r[w][:, 0].std() / max(g[w][:, 0].std(), 1e-3), 0.6, 1.2)
    g[..., 0] = (g[..., 0] - gm[0]) * contrast + gm[0]
    g += (rm - gm)[None, None, :]
    return cv2.cvtColor(np.clip(g, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def inner_face_mask(shapes: tuple[np.ndarray, ...], size: int, lift: float = 0.15) -> np.ndarray:
    """Union of the hulls of jaw + brows (raised a little), one per landmark set, (size, size).

    Unlike the generator's mask it stops short of the hairline: a warped delegate brings its
    own hair with it, and pasting someone else's fringe onto a forehead looks wrong.
    """
    mask = np.zeros((size, size), np.uint8)
    for lm in shapes:
        lm = np.asarray(lm, np.float64)
        up = lift * (lm[8, 1] - lm[17:27, 1].mean())
        pts = np.vstack([lm[0:17], lm[17:27] - [0.0, up]])
        hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
        cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_AA, 4)
    return mask.astype(np.float32) / 255.0
