"""Sampled frames of two encodes of one clip, and whether a box changed between them.

Shared by the benchmark's face entries and its plate coverage (`eval.plates`): both compare
the plain transcode with each entry's output on the same sampled frames.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamanon.eval import metrics as M
from streamanon.io.video import VideoReader

COVERED_DETAIL = 0.35
COVERED_SSIM = 0.6  # a box whose SSIM vs the plain transcode is below this is covered


def read_frames(path: str | Path, indices: set[int]) -> dict[int, np.ndarray]:
    """The frames of ``path`` at ``indices`` (decoded up to the last one)."""
    out = {}
    with VideoReader(path, audio=False) as r:
        for i, f in enumerate(r):
            if i in indices:
                out[i] = f.image
            if i >= max(indices):
                break
    return out


def detail(img: np.ndarray, box: np.ndarray) -> float:
    """Mean absolute Laplacian (fine detail) of the grey image inside ``box``."""
    x1, y1, x2, y2 = np.round(box).astype(int)
    h, w = img.shape[:2]
    roi = img[max(y1, 0) : min(y2, h), max(x1, 0) : min(x2, w)]
    if roi.size == 0:
        return 0.0
    grey = cv2.cvtColor(roi, cv2.COLOR_BGR2GRAY)
    return float(np.abs(cv2.Laplacian(grey, cv2.CV_32F)).mean())


def box_covered(
    original: np.ndarray, output: np.ndarray, box: np.ndarray, mask: np.ndarray
) -> bool:
    """A box counts as covered when its structure changed (SSIM) or its detail is gone.

    SSIM alone calls a large, smooth face that was blurred to a flat patch "unchanged" (its
    luminance term stays high), so a blur that removes >= 65 % of the fine detail also counts.
    """
    if M.ssim(original, output, mask) < COVERED_SSIM:
        return True
    before = detail(original, box)
    return before > 0 and detail(output, box) < COVERED_DETAIL * before
