"""insightface SCRFD (det_10g.onnx from the buffalo_l pack) through ONNX Runtime.

Optional: the model is never downloaded. It must already be on disk, by default where
insightface keeps it (~/.insightface/models/buffalo_l/det_10g.onnx), or at `model_path`.
Check the model's licence before commercial use (insightface's packs are non-commercial).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamanon.detect.base import check_image, clip_detections, resize_scale
from streamanon.detect.fast_nms import nms
from streamanon.errors import InputError, ModelMissingError
from streamanon.models import onnx_session
from streamanon.types import Detections

DEFAULT_MODEL = Path("~/.insightface/models/buffalo_l/det_10g.onnx")
_STRIDES = (8, 16, 32)
_ANCHORS = 2  # anchors per location in det_10g


def resolve_model(model_path: str | Path | None) -> Path:
    """The SCRFD model file, or ModelMissingError saying where to put it."""
    path = Path(model_path if model_path is not None else DEFAULT_MODEL).expanduser()
    if not path.is_file():
        raise ModelMissingError(
            f"SCRFD model {path} not found: copy insightface's buffalo_l det_10g.onnx to "
            f"{DEFAULT_MODEL} or pass its path (streamanon never downloads models)"
        )
    return path


def _centers(h: int, w: int, stride: int) -> np.ndarray:
    ys, xs = np.mgrid[:h, :w]
    c = np.stack([xs, ys], axis=-1).reshape(-1, 2).astype(np.float32) * stride
    return np.repeat(c, _ANCHORS, axis=0)


def decode(
    outputs: list[np.ndarray], shape_hw: tuple[int, int], low_thresh: float, nms_iou: float = 0.4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SCRFD's 9 outputs (scores, boxes, keypoints per stride) -> boxes, scores, (n,5,2) points
    in network-input pixels."""
    boxes, scores, points = [], [], []
    n = len(_STRIDES)
    for k, stride in enumerate(_STRIDES):
        s = outputs[k].reshape(-1)
        d = outputs[k + n].reshape(-1, 4) * stride
        p = outputs[k + 2 * n].reshape(-1, 5, 2) * stride
        c = _centers(-(-shape_hw[0] // stride), -(-shape_hw[1] // stride), stride)
        keep = s >= low_thresh
        c = c[keep]
        boxes.append(np.concatenate([c - d[keep, :2], c + d[keep, 2:]], axis=1))
        scores.append(s[keep])
        points.append(p[keep] + c[:, None, :])
    b, s, p = np.concatenate(boxes), np.concatenate(scores), np.concatenate(points)
    keep = nms(b, s, nms_iou)
    return b[keep], s[keep], p[keep]


class SCRFD:
    """SCRFD detector: boxes, scores and 5 landmarks; returns faces scoring >= low_thresh."""

    name = "scrfd"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        input_size: int | None = 640,
        low_thresh: float = 0.1,
        nms_iou: float = 0.4,
        threads: int | None = None,
    ) -> None:

        path = resolve_model(model_path)
        if not 0.0 < low_thresh <= 1.0:
            raise InputError(f"low_thresh must be in (0, 1], got {low_thresh}")
        resize_scale((1, 1), input_size)
        self.input_size, self.low_thresh, self.nms_iou = input_size, low_thresh, nms_iou
        self.session = onnx_session(str(path), "SCRFD", threads=threads)
        self._input = self.session.get_inputs()[0].name
        if len(self.session.get_outputs()) != 9:
            raise InputError(f"{path} is not an SCRFD model with keypoints (expected 9 outputs)")

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image = check_image(image_bgr)
        s = resize_scale(image.shape, self.input_size)
        h, w = image.shape[:2]
        small = (
            image if s == 1.0 else cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))))
        )
        ph, pw = -(-small.shape[0] // 32) * 32, -(-small.shape[1] // 32) * 32
        blob = np.zeros((1, 3, ph, pw), dtype=np.float32)
        blob[0, :, : small.shape[0], : small.shape[1]] = (
            small[:, :, ::-1].transpose(2, 0, 1) - 127.5
        ) / 128.0
        outs = self.session.run(None, {self._input: blob})
        boxes, score, pts = decode(outs, (ph, pw), self.low_thresh, self.nms_iou)
        fx, fy = w / small.shape[1], h / small.shape[0]
        boxes = boxes * np.array([fx, fy, fx, fy], dtype=np.float32)
        pts = pts * np.array([fx, fy], dtype=np.float32)
        return clip_detections(Detections(boxes, score, landmarks5=pts), image.shape)
