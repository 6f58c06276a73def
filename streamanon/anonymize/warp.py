"""Piecewise-affine warping of a face crop from one set of 68 landmarks to another.

The `swap` renderer uses it to move a delegate face (from the bank) onto the geometry Ŝ_x that
GSA built for this frame, so the result has the person's pose, jaw line and mouth opening but
someone else's appearance. The triangulation is fixed (computed once on the template), so the
same triangles are used for every face and every frame: no flicker from re-triangulating.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Delaunay

from streamanon.visual.align import TEMPLATE68


def _border(size: int) -> np.ndarray:
    s = size - 1
    h = s / 2
    return np.array([[0, 0], [h, 0], [s, 0], [s, h], [s, s], [h, s], [0, s], [0, h]], np.float64)


@lru_cache(maxsize=4)
def triangles(size: int) -> np.ndarray:
    """(T, 3) vertex indices over the 68 landmarks + 8 crop-border points."""
    pts = np.vstack([TEMPLATE68 * size, _border(size)])
    return Delaunay(pts).simplices.astype(np.int32)


def warp_face(image: np.ndarray, src68: np.ndarray, dst68: np.ndarray) -> np.ndarray:
    """``image`` (S, S, C) whose face has landmarks ``src68``, re-shaped so they land on ``dst68``.

    The crop border is pinned, so the background stays in place and only the face moves.
    """
    size = image.shape[0]
    src = np.vstack([np.asarray(src68, np.float64), _border(size)]).astype(np.float32)
    dst = np.vstack([np.asarray(dst68, np.float64), _border(size)]).astype(np.float32)
    out = np.zeros_like(image)
    for tri in triangles(size):
        s, d = src[tri], dst[tri]
        x, y, w, h = cv2.boundingRect(d)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, size), min(y + h, size)
        if x1 <= x0 or y1 <= y0:
            continue
        # The affine map dst triangle → src triangle, sampled over the dst bounding box.
        m = cv2.getAffineTransform((d - [x0, y0]).astype(np.float32), s)
        patch = cv2.warpAffine(
            image, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT,
        )  # fmt: skip
        m_tri = np.zeros((y1 - y0, x1 - x0), np.uint8)
        cv2.fillConvexPoly(m_tri, np.round(d - [x0, y0]).astype(np.int32), 1, cv2.LINE_8)
        region = out[y0:y1, x0:x1]
        region[m_tri > 0] = patch[m_tri > 0]
    return out
