"""What every face detector shares: the protocol, model-file lookup and the box maths."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from streamanon.errors import InputError
from streamanon.paths import package_file  # noqa: F401 - re-exported (moved to paths)
from streamanon.types import Detections


@runtime_checkable
class Detector(Protocol):
    """Finds faces in one BGR uint8 image; boxes and landmarks are in that image's pixels."""

    name: str

    def __call__(self, image_bgr: np.ndarray) -> Detections: ...


_PREFERRED = ("CUDAExecutionProvider", "CPUExecutionProvider")
_logged: set[str] = set()


def onnx_session(model: str | bytes, name: str, threads: int | None = None):
    """An ONNX Runtime session on the best provider this install has (CUDA when the GPU
    build of onnxruntime and a GPU are present, else the CPU), said once per model name."""
    import logging

    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    available = set(ort.get_available_providers())
    providers = [p for p in _PREFERRED if p in available] or ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(model, sess_options=opts, providers=providers)
    except Exception:  # noqa: BLE001 - a GPU provider that fails to start: fall back to CPU
        if providers == ["CPUExecutionProvider"]:
            raise
        session = ort.InferenceSession(model, sess_options=opts, providers=["CPUExecutionProvider"])
    if name not in _logged:
        _logged.add(name)
        used = session.get_providers()[0]
        # Said aloud only when it is news (an accelerator); the CPU is the quiet default.
        level = logging.DEBUG if used == "CPUExecutionProvider" else logging.INFO
        logging.getLogger("streamanon.detect").log(level, "%s runs on %s", name, used)
    return session


def check_image(image: np.ndarray) -> np.ndarray:
    """Return a contiguous BGR uint8 (h, w, 3) view; grey images are expanded, others rejected."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        raise InputError(f"detector needs a uint8 numpy image, got {type(image).__name__}")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise InputError(f"detector needs a (h, w, 3) BGR image, got shape {image.shape}")
    return np.ascontiguousarray(image)


def resize_scale(shape: tuple[int, ...], input_size: int | None) -> float:
    """Factor that brings the longest side of an image of `shape` to `input_size` (None: 1)."""
    if input_size is None:
        return 1.0
    if input_size < 32:
        raise InputError(f"input_size must be at least 32 pixels, got {input_size}")
    return input_size / max(shape[0], shape[1])


def pad_to_multiple(image: np.ndarray, multiple: int = 32) -> np.ndarray:
    """Zero-pad the bottom/right edges so both sides are multiples of `multiple`.

    Padding (rather than stretching as deface does) keeps the aspect ratio, so box coordinates
    map back with a single scale factor.
    """
    h, w = image.shape[:2]
    ph, pw = -h % multiple, -w % multiple
    if ph == 0 and pw == 0:
        return image
    return cv2.copyMakeBorder(image, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix (len(a), len(b)) of xyxy boxes; zero-area boxes give 0, never NaN."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def nms(boxes: np.ndarray, scores: np.ndarray, iou_thresh: float = 0.3) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, highest score first.

    One IoU matrix for all boxes, then a loop over the (few) kept boxes only.
    """
    order = np.argsort(-np.asarray(scores), kind="stable")
    if len(order) == 0:
        return order.astype(np.int64)
    iou = box_iou(boxes[order], boxes[order])
    alive = np.ones(len(order), dtype=bool)
    keep = []
    for i in range(len(order)):
        if not alive[i]:
            continue
        keep.append(i)
        alive &= iou[i] < iou_thresh
    return order[np.asarray(keep, dtype=np.int64)]


def clip_detections(dets: Detections, shape: tuple[int, ...]) -> Detections:
    """Clip boxes to the image (exclusive right/bottom bounds) in place and return them."""
    h, w = shape[:2]
    np.clip(dets.xyxy[:, 0::2], 0, w, out=dets.xyxy[:, 0::2])
    np.clip(dets.xyxy[:, 1::2], 0, h, out=dets.xyxy[:, 1::2])
    return dets
