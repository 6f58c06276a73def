"""dlib's HOG detector, 68-point predictor and 128-D ResNet as the delegate bank uses them.

The models themselves are loaded once per process by `streamanon.models` (one home for every
model); this module keeps the bank's small RGB-image helpers. The 68-point predictor's
training data (iBUG 300-W) is licensed for non-commercial use only; the ResNet is CC0.
"""

from __future__ import annotations

import numpy as np

from streamanon import models
from streamanon.models import dlib_recognizer as face_recognizer  # noqa: F401 - re-exported
from streamanon.models import hog_detector, shape_predictor68  # noqa: F401 - re-exported


def detect_largest(image_rgb: np.ndarray, upsample: int = 0):  # -> dlib.rectangle | None
    """The largest HOG face box in an RGB uint8 image, or None when HOG finds none."""
    rects = models.hog_detector()(image_rgb, upsample)
    if len(rects) == 0:
        return None
    return max(rects, key=lambda r: r.width() * r.height())


def landmarks68(image_rgb: np.ndarray, rect) -> tuple[np.ndarray, object]:
    """68 landmarks (68, 2) float32 in image pixels, and dlib's full_object_detection."""
    shape = models.shape_predictor68()(image_rgb, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    return pts, shape


def embedding(image_rgb: np.ndarray, shape) -> np.ndarray:
    """dlib's 128-D descriptor (float32, unit-ish norm) for the face given by ``shape``."""
    rec = models.dlib_recognizer()
    return np.asarray(rec.compute_face_descriptor(image_rgb, shape), dtype=np.float32)
