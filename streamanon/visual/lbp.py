"""A second, independent face judge: local binary pattern histograms (Ahonen et al., 2006).

Ψ is dlib's ResNet, the same network `streamanon eval` and most users would re-identify
with, so a delegate verified only with Ψ may be tuned to Ψ's blind spots. This judge shares
nothing with it: hand-made texture features on our own canonical crop (`visual.align`), a
7 x 7 grid of uniform-LBP histograms over the inner face, chi-square distance.

It is a weak recognizer (it separates photos of the same person from photos of different
people only partly: measured in docs/generative.md), so it is used one way only: a rendered
face that LBP still finds *closer to the person than typical same-person pairs* is redrawn.
"""

from __future__ import annotations

import cv2
import numpy as np

GRID = 7
# Inner face of the canonical crop (fractions): brows to chin, cheek to cheek.
BOX = (0.22, 0.30, 0.78, 0.90)  # x0, y0, x1, y1
SIDE = 70  # the inner face is resized to SIDE x SIDE before LBP
# Chi-square distance below which the judge calls two faces "the same person". Measured on
# ../shared/data/faces/identities (18 people, up to 4 photos each): same-person pairs (72)
# p10 / median / p90 = 0.587 / 0.735 / 0.835; different people (153) 0.713 / 0.813 / 0.955.
# A render closer to the person than 9 in 10 real same-person pairs is redrawn.
SAME_PERSON = 0.60

_UNIFORM = np.full(256, 58, np.int64)
_codes = [c for c in range(256) if bin((c ^ ((c << 1) | (c >> 7))) & 0xFF).count("1") <= 2]
_UNIFORM[_codes] = np.arange(len(_codes))  # 58 uniform patterns + 1 bin for the rest


def lbp_codes(gray: np.ndarray) -> np.ndarray:
    """(h-2, w-2) uniform LBP labels (0..58) of a grey image, 8 neighbours at radius 1."""
    g = gray.astype(np.int16)
    c = g[1:-1, 1:-1]
    code = np.zeros(c.shape, np.int64)
    offsets = ((-1, -1), (-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1))
    h, w = g.shape
    for bit, (dy, dx) in enumerate(offsets):
        n = g[1 + dy : h - 1 + dy, 1 + dx : w - 1 + dx]
        code |= (n >= c).astype(np.int64) << bit
    return _UNIFORM[code]


def lbp_descriptor(crop_bgr: np.ndarray) -> np.ndarray:
    """(GRID * GRID * 59,) float32, each cell's histogram normalised to sum 1."""
    size = crop_bgr.shape[0]
    x0, y0, x1, y1 = (int(round(v * size)) for v in BOX)
    gray = cv2.cvtColor(crop_bgr[y0:y1, x0:x1], cv2.COLOR_BGR2GRAY)
    gray = cv2.equalizeHist(cv2.resize(gray, (SIDE, SIDE), interpolation=cv2.INTER_AREA))
    codes = lbp_codes(gray)
    n = codes.shape[0] // GRID
    out = np.zeros((GRID, GRID, 59), np.float32)
    for i in range(GRID):
        for j in range(GRID):
            cell = codes[i * n : (i + 1) * n, j * n : (j + 1) * n]
            out[i, j] = np.bincount(cell.ravel(), minlength=59)[:59]
    out /= np.maximum(out.sum(-1, keepdims=True), 1.0)
    return out.reshape(-1)


def lbp_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Chi-square distance of two descriptors, averaged over cells (0 = identical)."""
    s = a + b
    d = np.where(s > 0, (a - b) ** 2 / np.maximum(s, 1e-12), 0.0)
    return float(d.sum() / (GRID * GRID))
