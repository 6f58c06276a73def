"""Which frames a stage's detector runs on (`--detect-every`, `--plate-every`; issue 23).

On a 2-core CPU the default face detector takes longer than a frame at 720p25 (base pass +
tiles: 60-100 ms), so detecting every frame drops half the frames of a live stream. With a
cadence of N the detector runs on one frame in N; on the others the tracker moves every
track with the camera and its own velocity and keeps covering it (coasting, grown with time:
fail closed). The live pipeline's queue absorbs the slow detection frame and the fast frames
after it catch up (docs/live.md: latency budget).

Fail closed:
- the first frame, and a **scene cut** (32 px thumbnails differ by more than `CUT_DIFF` grey
  levels on average), are always detected: nothing is known about a new scene;
- with N > 1 the camera's shift is measured on every frame (a 320 px phase correlation,
  ~1 ms), so a coasting track follows a pan between two detections.
The known risk: a face that walks into view (no cut) between two detection frames is covered
from the next detection frame on, up to N - 1 frames late (measured in docs/live.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.errors import InputError
from streamanon.motion import THUMB, CameraMotion

# Mean absolute grey difference of 32 px thumbnails from which a frame is a new scene. The
# Hamilton clip's three cuts measure 26-29 and its other frames at most 12.4; a false cut
# only costs one detection, a missed one leaves a new scene to the tracker.
CUT_DIFF = 20.0


def thumb_difference(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two equal-shaped thumbnails (grey levels); inf when the
    shapes differ (a new input size is a new scene)."""
    if a.shape != b.shape:
        return float("inf")
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


class Cadence:
    """``Cadence(every)``: call `step(image)` once per frame in order; it says whether the
    detector runs on it (frame 0, then every `every`-th frame after the last detected one,
    and every scene cut). With ``camera=True`` and `every` > 1 it also measures `shift`, the
    scene's shift since the previous frame (px); with `every` == 1 `shift` stays None (the
    stage takes the detector's own measurement)."""

    def __init__(self, every: int = 1, *, camera: bool = False, what: str = "detection") -> None:
        if int(every) < 1:
            raise InputError(f"{what} cadence must be >= 1 frame, got {every}")
        self.every, self.camera = int(every), camera
        self.frames = self.detected = self.cuts = 0
        self.shift: tuple[float, float] | None = None
        self._motion = CameraMotion() if camera else None
        self._thumb: np.ndarray | None = None
        self._since = 0  # frames since the last detected one

    def reset(self) -> None:
        """An unrelated input follows: the next frame is detected, the counts start over."""
        self.frames = self.detected = self.cuts = 0
        self._motion = CameraMotion() if self.camera else None
        self._thumb, self._since, self.shift = None, 0, None

    def step(self, image_bgr: np.ndarray) -> bool:
        """Whether the detector runs on this frame."""
        self.frames += 1
        if self.every == 1:
            self.detected += 1
            return True
        h, w = image_bgr.shape[:2]
        s = min(1.0, THUMB / max(h, w))
        small = cv2.resize(image_bgr, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)  # fmt: skip
        if self._motion is not None:
            self.shift = self._motion(small, s)
        thumb = cv2.resize(small, (32, max(1, round(32 * small.shape[0] / small.shape[1]))), interpolation=cv2.INTER_AREA)  # fmt: skip
        first = self._thumb is None
        cut = not first and thumb_difference(self._thumb, thumb) > CUT_DIFF
        self._thumb = thumb
        self._since += 1
        if not first and not cut and self._since < self.every:
            return False  # the tracker carries every track over this frame
        self.cuts += int(cut)
        self.detected += 1
        self._since = 0
        return True
