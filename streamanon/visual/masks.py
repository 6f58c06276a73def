"""Face regions from 68 landmarks, as masks: the face hull and its skin (no eyes, brows,
mouth or nostrils). Used by the realistic methods' blending (`anonymize.blend`) and by the
delegate attributes (`visual.attributes`)."""

from __future__ import annotations

import cv2
import numpy as np


def fill_hull(mask: np.ndarray, pts: np.ndarray) -> None:
    """Fill the convex hull of ``pts`` into ``mask`` with 255 (anti-aliased, sub-pixel)."""
    hull = cv2.convexHull(np.round(np.asarray(pts, np.float64) * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_AA, 4)


def disk(r: float) -> np.ndarray:
    """An elliptic structuring element of radius ``r`` px."""
    k = max(1, int(round(r))) * 2 + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def face_hull(landmarks: np.ndarray, size: int, lift: float = 0.15) -> np.ndarray:
    """(size, size) uint8 0/255: hull of the jaw and the brows raised by ``lift`` x face height."""
    lm = np.asarray(landmarks, np.float64)
    up = lift * (lm[8, 1] - lm[17:27, 1].mean())
    mask = np.zeros((size, size), np.uint8)
    fill_hull(mask, np.vstack([lm[0:17], lm[17:27] - [0.0, up]]))
    return mask


def skin_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: face skin only (no eyes, brows, mouth, nostrils, hull edge)."""
    lm = np.asarray(landmarks, np.float64)
    width = max(float(np.hypot(*(lm[16] - lm[0]))), 4.0)
    hull = cv2.erode(face_hull(lm, size, 0.0), disk(0.05 * width))
    feats = np.zeros((size, size), np.uint8)
    for eye, brow in ((range(36, 42), range(17, 22)), (range(42, 48), range(22, 27))):
        fill_hull(feats, np.vstack([lm[list(eye)], lm[list(brow)]]))
    fill_hull(feats, lm[48:60])
    fill_hull(feats, lm[31:36])
    feats = cv2.dilate(feats, disk(0.05 * width))
    return (hull > 127) & (feats < 128)
