"""A second, independent set of real labelled plates for choices (thresholds, pyramid levels,
ensembles), never trained on and never committed.

Source: GitHub openalpr/benchmarks @ 9790ed20d475be1e940a7e2a3f492a97c2ebed9b,
``endtoend/{br,eu,us}/``: 444 photos (115 Brazilian, 108 European, 221 US) of cars, each with
one labelled plate (``NAME.txt``: ``file x y w h text``, tab-separated). The repository is
AGPL-3.0 and says nothing else about the photos, so they are only *measured on* here (no
weights are trained on them, nothing of them is redistributed). Other plates in a photo are not
labelled: precision on this set is a lower bound.

Why it exists: the Kaggle ``tune`` split holds 20 plates (none taller than 80 px), too few to
choose a threshold or a pyramid for the held-out photos; these 444 plates are from other
cameras and countries, so a choice made here is not fitted to the held-out set either.

    git -C MIRROR archive 9790ed20 endtoend/br endtoend/eu endtoend/us | tar -x -C DIR
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamanon.errors import InputError

REGIONS = ("br", "eu", "us")
MAX_SIDE = 1600  # larger photos are shrunk to this longest side on load (memory, speed)


def load_openalpr(
    root: str | Path, regions: tuple[str, ...] = REGIONS, every: int = 1
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, BGR image, (1, 4) xyxy box) for every `every`-th labelled photo of `regions`."""
    base = Path(root) / "endtoend"
    if not base.is_dir():
        raise InputError(f"{root}: no endtoend/ folder (an openalpr/benchmarks export expected)")
    out = []
    for region in regions:
        for k, txt in enumerate(sorted((base / region).glob("*.txt"))):
            if k % every:
                continue
            parts = txt.read_text().split()
            if len(parts) < 5:
                continue
            image = cv2.imread(str(base / region / parts[0]))
            if image is None:
                continue
            x, y, w, h = (float(v) for v in parts[1:5])
            box = np.array([[x, y, x + w, y + h]], np.float32)
            s = min(1.0, MAX_SIDE / max(image.shape[:2]))
            if s < 1.0:
                image = cv2.resize(image, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
                box *= s
            out.append((f"{region}_{txt.stem}.jpg", image, box))
    return out


def closeups(
    data: list[tuple[str, np.ndarray, np.ndarray]], seed: int = 0
) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Each photo cut around its first plate so that the plate fills 55-95 % of the cut's
    width, as in a photo taken at arm's length (the held-out photos have such close-ups; the
    tune split has none)."""
    rng = np.random.default_rng(seed)
    out = []
    for name, image, boxes in data:
        x1, y1, x2, y2 = boxes[0]
        pw, ph = x2 - x1, y2 - y1
        cw = pw / rng.uniform(0.55, 0.95)
        ch = max(cw * rng.uniform(0.5, 0.8), ph * 1.1)
        cx = (x1 + x2) / 2 + rng.uniform(-0.5, 0.5) * (cw - pw)
        cy = (y1 + y2) / 2 + rng.uniform(-0.5, 0.5) * (ch - ph)
        h, w = image.shape[:2]
        a, b = int(max(0, cx - cw / 2)), int(max(0, cy - ch / 2))
        c, d = int(min(w, cx + cw / 2)), int(min(h, cy + ch / 2))
        if c - a < pw or d - b < ph:
            continue
        a, b = max(0, min(a, int(x1))), max(0, min(b, int(y1)))  # the whole plate inside
        c, d = max(c, min(w, int(np.ceil(x2)))), max(d, min(h, int(np.ceil(y2))))
        box = boxes[:1] - np.array([a, b, a, b], np.float32)
        box = np.clip(box, 0, [c - a, d - b, c - a, d - b]).astype(np.float32)
        out.append((f"close_{name}", np.ascontiguousarray(image[b:d, a:c]), box))
    return out
