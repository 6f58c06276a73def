"""Detection on a subset of frames, the tracker in between: a live stream keeps its frame
rate (issue 23, item 4).

On a 2-core CPU the default detector takes longer than a frame at 720p25 (base pass + tiles:
60-100 ms), so detecting every frame drops half the frames of a live stream.
`CadenceDetector(detector, every=N)` detects one frame in N; every other frame only measures
the camera's motion (a 320 px phase correlation, ~1 ms) and returns no detection, and the
tracker moves every track with the camera and its own velocity and covers it there (coasting,
grown with time: fail closed). The live pipeline's queue absorbs the slow detection frame and
the fast frames after it catch up (docs/live.md: latency budget).

Fail closed:
- the first frame, and a **scene cut** (32 px thumbnails differ by more than `CUT_DIFF` grey
  levels on average), are always detected: nothing is known about a new scene;
- `every` must keep the gap between detections under the tracker's coast time.
The known risk: a face that walks into view (no cut) between two detection frames is covered
from the next detection frame on, up to N - 1 frames late (measured in docs/live.md).
"""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.detect.base import check_image
from streamanon.errors import InputError
from streamanon.motion import CameraMotion
from streamanon.types import Detections

# Mean absolute grey difference of 32 px thumbnails from which a frame is a new scene. The
# Hamilton clip's three cuts measure 26-29 and its other frames at most 12.4; a false cut
# only costs one synchronous detection, a missed one leaves a new scene to the tracker.
CUT_DIFF = 20.0


class CadenceDetector:
    """``CadenceDetector(detector, every=N)(image_bgr) -> Detections``: `detector`'s faces on
    frames 0, N, 2N, ... and on scene cuts, no detection on the others (see the module)."""

    def __init__(self, inner, *, every: int = 2) -> None:
        if every < 1:
            raise InputError(f"detection cadence must be >= 1 frame, got {every}")
        self._inner = inner
        self.every = int(every)
        self.name = f"{getattr(inner, 'name', 'detector')}/{every}"
        self.thresh = getattr(inner, "thresh", 0.5)
        self._camera = CameraMotion()
        self._shift = (0.0, 0.0)
        self._thumb: np.ndarray | None = None
        self._since = 0  # frames since the last detected one
        self._started = False
        self.stats = {"frames": 0, "detections": 0, "cuts": 0}

    @property
    def camera_shift(self) -> tuple[float, float]:
        """The scene's shift between the last two frames (px), measured on every frame."""
        return self._shift

    @property
    def inner(self):
        return self._inner

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image = check_image(image_bgr)
        self.stats["frames"] += 1
        if self.every == 1:  # every frame: the inner detector's own camera motion, if any
            self.stats["detections"] += 1
            dets = self._inner(image)
            shift = getattr(self._inner, "camera_shift", None)
            self._shift = self._camera(image) if shift is None else shift
            return dets
        h, w = image.shape[:2]
        s = min(1.0, 320 / max(h, w))
        small = cv2.resize(image, (max(8, round(w * s)), max(8, round(h * s))), interpolation=cv2.INTER_AREA)  # fmt: skip
        self._shift = self._camera(small, s)
        cut = self._cut(small)
        self._since += 1
        if self._started and not cut and self._since < self.every:
            return Detections.empty()  # the tracker carries every face over this frame
        self.stats["cuts"] += int(cut)
        self.stats["detections"] += 1
        self._started, self._since = True, 0
        return self._inner(image)

    def _cut(self, small: np.ndarray) -> bool:
        thumb = cv2.resize(small, (32, max(1, round(32 * small.shape[0] / small.shape[1]))), interpolation=cv2.INTER_AREA).astype(np.int16)  # fmt: skip
        prev, self._thumb = self._thumb, thumb
        if prev is None or prev.shape != thumb.shape:
            return prev is not None
        return float(np.abs(thumb - prev).mean()) > CUT_DIFF

    def reset(self) -> None:
        """An unrelated input follows: forget every frame."""
        self._thumb, self._since, self._started = None, 0, False
        self._camera, self._shift = CameraMotion(), (0.0, 0.0)
        reset = getattr(self._inner, "reset", None)
        if reset is not None:
            reset()
