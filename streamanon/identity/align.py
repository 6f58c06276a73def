"""Face alignment for the recognizers, one named function per template.

- dlib's ResNet (Ψ): `align_chip` / `align_chips`, 5 landmarks -> 150x150 chip (below).
- ArcFace-style ONNX recognizers (the evaluation's attackers): `arcface_crop112`, five points
  -> insightface's 112x112 template.
- The generator's 128x128 crop (68 landmarks -> `TEMPLATE68`) is `streamanon.visual.align`.

dlib's chip, exactly as dlib aligns for its ResNet:

dlib's ``compute_face_descriptor(img, shape)`` calls ``get_face_chip_details(shape, 150,
0.25)`` and ``extract_image_chips`` (bilinear, with an image pyramid when the face is much
larger than the chip). We call the same dlib functions, so the chips are bit-identical, and
rebuild the chip's similarity transform from the chip details the way
``extract_image_chips`` does (chip corners -> rotated rectangle corners).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from streamanon import models
from streamanon.errors import InputError

CHIP_SIZE = 150  # dlib's ResNet input (identity.recognizer re-exports it)
PADDING = 0.25


def _check_image(image_bgr: np.ndarray) -> np.ndarray:
    if not isinstance(image_bgr, np.ndarray) or image_bgr.dtype != np.uint8:
        raise InputError("image must be a uint8 numpy array")
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or min(image_bgr.shape[:2]) < 1:
        raise InputError(f"image must be (h, w, 3) BGR, got shape {image_bgr.shape}")
    return np.ascontiguousarray(image_bgr[:, :, ::-1])


def _rectangle(box) -> object:  # -> dlib.rectangle
    import dlib

    x1, y1, x2, y2 = (float(v) for v in np.asarray(box, dtype=np.float64).reshape(4))
    if not all(math.isfinite(v) for v in (x1, y1, x2, y2)) or x2 - x1 < 2 or y2 - y1 < 2:
        raise InputError(f"face box must be finite and at least 2x2 px, got {[x1, y1, x2, y2]}")
    # Our boxes have exclusive right/bottom edges; dlib rectangles are inclusive.
    return dlib.rectangle(round(x1), round(y1), round(x2) - 1, round(y2) - 1)


def chip_matrix(details) -> np.ndarray:
    """(2, 3) affine map frame -> chip for a ``dlib.chip_details`` (as extract_image_chips)."""
    r = details.rect
    cx, cy = (r.left() + r.right()) / 2.0, (r.top() + r.bottom()) / 2.0
    a = details.angle
    cos, sin = math.cos(a), math.sin(a)

    def rot(x: float, y: float) -> tuple[float, float]:
        dx, dy = x - cx, y - cy
        return cx + cos * dx - sin * dy, cy + sin * dx + cos * dy

    src = np.float64([rot(r.left(), r.top()), rot(r.right(), r.top()), rot(r.left(), r.bottom())])
    cols, rows = details.cols, details.rows
    dst = np.float64([[0, 0], [cols - 1, 0], [0, rows - 1]])
    # Solve the affine map src -> dst exactly (3 point pairs).
    m = np.linalg.solve(np.c_[src, np.ones(3)], dst).T
    return m.astype(np.float64)


def landmarks5(image_rgb: np.ndarray, box) -> object:  # -> dlib.full_object_detection
    return models.shape_predictor5()(image_rgb, _rectangle(box))


def align_chip(image_bgr: np.ndarray, box) -> tuple[np.ndarray, np.ndarray]:
    """The 150x150 RGB uint8 chip dlib's ResNet expects for the face in ``box`` (x1 y1 x2 y2).

    Returns (chip_rgb, matrix) where ``matrix`` (2, 3) maps frame pixels to chip pixels.
    """
    import dlib

    rgb = _check_image(image_bgr)
    shape = landmarks5(rgb, box)
    details = dlib.get_face_chip_details(shape, CHIP_SIZE, PADDING)
    chip = np.asarray(dlib.extract_image_chip(rgb, details), dtype=np.uint8)
    return chip, chip_matrix(details)


def align_chips(image_bgr: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Batched :func:`align_chip`: (n, 150, 150, 3) RGB chips and (n, 2, 3) matrices."""
    import dlib

    rgb = _check_image(image_bgr)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    details = [dlib.get_face_chip_details(landmarks5(rgb, b), CHIP_SIZE, PADDING) for b in boxes]
    if not details:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8), np.zeros((0, 2, 3))
    chips = dlib.extract_image_chips(rgb, details)
    return (
        np.stack([np.asarray(c, dtype=np.uint8) for c in chips]),
        np.stack([chip_matrix(d) for d in details]),
    )


# insightface's arcface_torch alignment template for 112x112 crops (eyes, nose, mouth corners).
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    np.float32,
)


def five_points_from_68(landmarks68: np.ndarray) -> np.ndarray:
    """(n, 5, 2): eye centres, nose tip, mouth corners (the ArcFace template's order)."""
    p = np.asarray(landmarks68, np.float32).reshape(-1, 68, 2)
    return np.stack(
        [p[:, 36:42].mean(1), p[:, 42:48].mean(1), p[:, 30], p[:, 48], p[:, 54]], axis=1
    )


def arcface_crop112(image_bgr: np.ndarray, five: np.ndarray) -> np.ndarray:
    """The 112x112 crop that maps ``five`` points onto the ArcFace template."""
    m, _ = cv2.estimateAffinePartial2D(
        np.asarray(five, np.float32), ARCFACE_TEMPLATE, method=cv2.LMEDS
    )
    if m is None:
        raise InputError("could not align a face for ArcFace (degenerate landmarks)")
    return cv2.warpAffine(image_bgr, m, (112, 112), borderValue=0.0)
