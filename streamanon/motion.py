"""Camera motion between consecutive frames (global translation), for the tracker.

A panning camera moves every face at once. A track that coasts between detections (a small
face searched by the tile sweep every few frames, a face the detector misses for a frame)
would otherwise stay behind while the face slides out of its box. Phase correlation of two
grey thumbnails gives the shift in about a millisecond; the tracker moves every track by it
before predicting (camera motion compensation, as in BoT-SORT).
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB = 320  # longest side of the thumbnails compared
MIN_RESPONSE = 0.05  # below this the peak is noise (a cut, a flat frame): no shift


class CameraMotion:
    """``motion(image_bgr) -> (dx, dy)``: how far the scene moved since the previous call, in
    pixels of `image_bgr` (0, 0 on the first frame, after a cut or a size change).

    ``motion(small, scale)``: the same, measured on a copy of the frame already shrunk by
    `scale` (the detector's base-pass image, so the frame is not shrunk twice); the shift is
    still in the frame's pixels."""

    def __init__(self, thumb: int = THUMB) -> None:
        self.thumb = thumb
        self._prev: np.ndarray | None = None
        self._window: np.ndarray | None = None

    def __call__(self, image_bgr: np.ndarray, scale: float = 1.0) -> tuple[float, float]:
        h, w = image_bgr.shape[:2]
        s = min(1.0, self.thumb / max(h, w))
        small = cv2.resize(image_bgr, (max(8, round(w * s)), max(8, round(h * s))),
                           interpolation=cv2.INTER_AREA)  # fmt: skip
        grey = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32)
        prev, self._prev = self._prev, grey
        if prev is None or prev.shape != grey.shape:
            return 0.0, 0.0
        if self._window is None or self._window.shape != grey.shape:
            self._window = cv2.createHanningWindow(grey.shape[::-1], cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(prev, grey, self._window)
        if response < MIN_RESPONSE or not np.isfinite([dx, dy]).all():
            return 0.0, 0.0
        return float(dx / s / scale), float(dy / s / scale)
