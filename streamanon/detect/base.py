"""What every face detector shares: the protocol, model-file lookup and the box maths."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from streamanon.errors import InputError
from streamanon.types import Detections


@runtime_checkable
class Backend(Protocol):
    """A detector network or algorithm: finds faces in one BGR uint8 image; boxes and landmarks
    are in that image's pixels. A backend that keeps state between frames (the multi-scale
    detector) also has ``reset()``, and one that measures the camera's motion ``camera_shift``."""

    name: str

    def __call__(self, image_bgr: np.ndarray) -> Detections: ...


@runtime_checkable
class Stateful(Protocol):
    def reset(self) -> None:
        """Forget everything learnt from earlier frames (the next, unrelated input)."""
        ...


@runtime_checkable
class MeasuresMotion(Protocol):
    @property
    def camera_shift(self) -> tuple[float, float]:
        """How far the scene moved between the last two frames (px)."""
        ...


@runtime_checkable
class Detector(Protocol):
    """What a stage calls: ``detector(image) -> Detections`` at least ``low_thresh``;
    ``thresh`` is the score from which a detection counts on its own; ``reset()`` between
    unrelated inputs; ``camera_shift``: the scene's shift measured on the last frame, or None
    when the detector does not measure it."""

    name: str
    thresh: float

    def __call__(self, image_bgr: np.ndarray) -> Detections: ...

    def reset(self) -> None: ...

    @property
    def camera_shift(self) -> tuple[float, float] | None: ...


class FaceDetector:
    """A backend, then (optionally) the 68-point landmarks, then one score cut at
    ``low_thresh`` the same way for every backend: the `Detector` a face stage uses."""

    def __init__(
        self,
        backend: Backend,
        landmarks68=None,  # streamanon.detect.landmarks.Landmarks68, or None
        *,
        thresh: float = 0.5,
        low_thresh: float = 0.1,
    ) -> None:
        self.backend, self.landmarks68 = backend, landmarks68
        self.thresh, self.low_thresh = thresh, low_thresh
        self.name = backend.name + ("+landmarks68" if landmarks68 is not None else "")
        self._stateful = isinstance(backend, Stateful)
        self._motion = isinstance(backend, MeasuresMotion)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        dets = self.backend(image_bgr)
        if self.landmarks68 is not None:
            dets.landmarks68 = self.landmarks68(image_bgr, dets)
        keep = dets.score >= self.low_thresh
        return dets if keep.all() else dets[keep]

    def reset(self) -> None:
        if self._stateful:
            self.backend.reset()  # type: ignore[attr-defined]

    @property
    def camera_shift(self) -> tuple[float, float] | None:
        return self.backend.camera_shift if self._motion else None  # type: ignore[attr-defined]


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
