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
