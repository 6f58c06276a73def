"""Greedy NMS in OpenCV's C++ loop: the same result as `base.nms`, without its n x n matrix.

CenterFace's heatmap gives hundreds to thousands of candidates above the low threshold on a
crowd frame (every pixel near a face); `base.nms` builds their full IoU matrix in numpy, which
measured 300 ms a frame on crowd1080 (2-core EPYC) against 10 ms here. OpenCV's
`dnn.NMSBoxes` is the same greedy algorithm (stable sort by score, a candidate is kept when
its IoU with every kept box is under the threshold): on 50 candidate sets of crowd1080 it kept
exactly the same boxes (benchmarks/profile_stages.py; tests/test_detect.py checks it).
Differences only at measure-zero ties: a pair at exactly the threshold (suppressed here,
``<=`` vs ``<`` there) and two zero-area boxes (IoU 1 in OpenCV, 0 in numpy), so zero-area
boxes (and scores <= 0, which OpenCV drops) go through the numpy path.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.detect.base import nms as numpy_nms


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float = 0.3) -> np.ndarray:
    """Indices (into `boxes`) kept by greedy NMS, highest score first; see `base.nms`."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    s = np.asarray(scores, np.float32).reshape(-1)
    if len(b) < 2:
        return np.arange(len(b), dtype=np.int64)
    wh = b[:, 2:] - b[:, :2]
    if not (wh > 0).all() or not np.isfinite(b).all() or not (s > 0).all():
        return numpy_nms(b, s, iou_thresh)
    # NMSBoxes keeps a box when IoU <= thresh; nudge below so that ties go as in base.nms.
    t = float(np.nextafter(np.float32(iou_thresh), np.float32(0)))
    keep = cv2.dnn.NMSBoxes(np.concatenate([b[:, :2], wh], 1), s, 0.0, t)
    return np.asarray(keep, np.int64).reshape(-1)
