"""Matching detections to tracks by IoU (optimal assignment, vectorised cost)."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment


def match_iou(iou: np.ndarray, min_iou: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Optimal one-to-one matching on an IoU matrix (rows, cols).

    Returns (pairs (m, 2) of [row, col], unmatched rows, unmatched cols); pairs with IoU below
    `min_iou` are not matches.
    """
    iou = np.asarray(iou, dtype=np.float64)
    n_rows, n_cols = iou.shape
    if n_rows == 0 or n_cols == 0:
        return np.zeros((0, 2), np.int64), np.arange(n_rows), np.arange(n_cols)
    if not np.isfinite(iou).all():
        raise ValueError("IoU matrix contains NaN or infinity")
    rows, cols = linear_sum_assignment(-iou)
    ok = iou[rows, cols] >= min_iou
    pairs = np.stack([rows[ok], cols[ok]], axis=1).astype(np.int64)
    free_rows = np.setdiff1d(np.arange(n_rows), pairs[:, 0])
    free_cols = np.setdiff1d(np.arange(n_cols), pairs[:, 1])
    return pairs, free_rows, free_cols


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU (len(a), len(b)) of xyxy boxes, one coordinate at a time: the same values as
    `detect.base.box_iou` (same float64 operations; zero-area pairs give 0) without its
    (n, m, 2) intermediates and reductions, so a crowd's hundreds of boxes against thousands
    of recent footprints cost a few milliseconds."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    # np.maximum, not np.clip: the same values without clip's wrapper (a crowd calls this
    # on 300 x 5,000 boxes a frame).
    np.maximum(iw, 0.0, out=iw)
    np.maximum(ih, 0.0, out=ih)
    inter = np.multiply(iw, ih, out=iw)
    area_a = np.maximum(a[:, 2] - a[:, 0], 0.0) * np.maximum(a[:, 3] - a[:, 1], 0.0)
    area_b = np.maximum(b[:, 2] - b[:, 0], 0.0) * np.maximum(b[:, 3] - b[:, 1], 0.0)
    union = np.add(area_a[:, None], area_b[None, :], out=ih)
    union -= inter
    # In place: where the union is 0 both boxes have no area and the intersection is 0 too.
    return np.divide(inter, union, out=inter, where=union > 0)


def inside_share(box: np.ndarray, boxes: np.ndarray) -> float:
    """The largest share of ``box``'s area (x1, y1, x2, y2) that lies inside one of ``boxes``
    (n, 4): 1.0 when some box contains it, 0.0 when none overlaps (or there are none)."""
    boxes = np.asarray(boxes, float).reshape(-1, 4)
    if len(boxes) == 0:
        return 0.0
    x1, y1 = np.maximum(box[:2], boxes[:, :2]).T
    x2, y2 = np.minimum(box[2:], boxes[:, 2:]).T
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return float((inter / max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)).max())
