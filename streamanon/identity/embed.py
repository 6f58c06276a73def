"""Batched embeddings with Ψ: numpy in, numpy out, torch or ONNX Runtime underneath.

``embed_chips`` takes dlib-aligned 150x150 RGB chips; ``embed_faces`` aligns faces from a
frame first. ``reid_embeddings`` is the tracker's re-identification hook (ONNX Runtime).
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from streamanon import models
from streamanon.errors import InputError, OutputError
from streamanon.identity.align import CHIP_SIZE, align_chips
from streamanon.identity.weights import _dat_digest
from streamanon.io.atomic import atomic_output
from streamanon.models import CPU, onnx_session
from streamanon.types import Detections

if TYPE_CHECKING:  # torch is imported where it is used: the ONNX path runs without it
    import torch

    from streamanon.identity.recognizer import Recognizer

log = logging.getLogger(__name__)

MEAN_RGB = np.array([122.782, 117.001, 104.298], np.float32)


def _check_chips(chips_rgb_uint8: np.ndarray) -> np.ndarray:
    chips = np.asarray(chips_rgb_uint8)
    if chips.ndim == 3:
        chips = chips[None]
    if chips.ndim != 4 or chips.shape[1:] != (CHIP_SIZE, CHIP_SIZE, 3) or chips.dtype != np.uint8:
        raise InputError(
            f"chips must be uint8 (B, 150, 150, 3) RGB, got {chips.dtype} {chips.shape}"
        )
    return chips


def chips_to_input(chips_rgb_uint8: np.ndarray) -> np.ndarray:
    """uint8 (B, 150, 150, 3) RGB chips -> float32 (B, 3, 150, 150) in dlib's input convention."""
    chips = _check_chips(chips_rgb_uint8)
    x = (chips.astype(np.float32) - MEAN_RGB) / np.float32(256.0)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def chips_to_tensor(
    chips_rgb_uint8: np.ndarray, device: str | torch.device = "cpu"
) -> torch.Tensor:
    import torch

    return torch.from_numpy(chips_to_input(chips_rgb_uint8)).to(device)


def embed_chips(
    chips_rgb_uint8: np.ndarray, *, batch_size: int = 16, backend: str = "torch"
) -> np.ndarray:
    """(B, 150, 150, 3) uint8 RGB chips -> (B, 128) float32 dlib descriptors."""
    chips = _check_chips(chips_rgb_uint8)
    if backend == "onnx":
        return onnx_embedder()(chips, batch_size=batch_size)
    if backend != "torch":
        raise InputError(f"unknown embedding backend {backend!r} (torch or onnx)")
    import torch

    from streamanon.identity.recognizer import load_recognizer

    model = load_recognizer()
    out = np.zeros((len(chips), 128), np.float32)
    with torch.inference_mode():
        for i in range(0, len(chips), batch_size):
            out[i : i + batch_size] = model(chips_to_tensor(chips[i : i + batch_size])).numpy()
    return out


def _boxes(detections_or_boxes: Detections | np.ndarray) -> np.ndarray:
    if isinstance(detections_or_boxes, Detections):
        return detections_or_boxes.xyxy
    boxes = np.asarray(detections_or_boxes, dtype=np.float32)
    if boxes.size and (boxes.ndim not in (1, 2) or boxes.shape[-1] != 4):
        raise InputError(f"boxes must be (n, 4) x1 y1 x2 y2, got shape {boxes.shape}")
    return boxes.reshape(-1, 4)


def embed_faces(
    image_bgr: np.ndarray, detections_or_boxes: Detections | np.ndarray, *, backend: str = "torch"
) -> np.ndarray:
    """Align every face (dlib 5-point chip) and embed it: (n, 128) float32."""
    chips, _ = align_chips(image_bgr, _boxes(detections_or_boxes))
    if len(chips) == 0:
        return np.zeros((0, 128), np.float32)
    return embed_chips(chips, backend=backend)


def export_onnx(path: str | Path | io.BytesIO, model: Recognizer | None = None) -> None:
    """Export Ψ's embedding path (dlib input convention -> 128-D) with a dynamic batch axis."""
    import torch

    from streamanon.identity.recognizer import load_recognizer

    model = model if model is not None else load_recognizer()
    dummy = torch.zeros(1, 3, CHIP_SIZE, CHIP_SIZE)
    target = str(path) if isinstance(path, (str, Path)) else path
    with warnings.catch_warnings():
        # The shape checks trace to constants, which is right: the chip size is fixed.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)  # inside torch's own exporter
        _export(model, dummy, target)


def _export(model: Recognizer, dummy: torch.Tensor, target) -> None:
    import torch

    torch.onnx.export(
        model,
        (dummy,),
        target,
        input_names=["chip"],
        output_names=["embedding"],
        dynamic_axes={"chip": {0: "batch"}, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,  # the TorchScript exporter needs no onnxscript
    )


class OnnxEmbedder:
    """Ψ on ONNX Runtime (CPU by default), from the export kept in the model cache."""

    def __init__(self, providers: list[str] | None = None, threads: int = 0) -> None:
        self.session = onnx_session(
            psi_onnx_bytes(), "Ψ", threads or None, providers=providers or CPU, fallback=False
        )

    def run_input(self, x: np.ndarray) -> np.ndarray:
        """(B, 3, 150, 150) float32 in dlib's convention -> (B, 128)."""
        return self.session.run(["embedding"], {"chip": np.ascontiguousarray(x, np.float32)})[0]

    def __call__(self, chips_rgb_uint8: np.ndarray, batch_size: int = 16) -> np.ndarray:
        chips = _check_chips(chips_rgb_uint8)
        out = np.zeros((len(chips), 128), np.float32)
        for i in range(0, len(chips), batch_size):
            out[i : i + batch_size] = self.run_input(chips_to_input(chips[i : i + batch_size]))
        return out


ONNX_EXPORT_VERSION = 1  # bump when the export (opset, graph) changes: a new cache file


def psi_onnx_bytes() -> bytes:
    """Ψ exported to ONNX: from the model cache (named by the dlib model's digest), exported
    there at first use (temporary file + rename). Later runs need no torch for Ψ (~2 s of
    start-up); an unwritable cache exports in memory each time."""
    dat = models.dlib_file(models.RESNET)
    path = models.cache_dir() / f"psi_dlib_resnet_v1.{_dat_digest(dat)}.v{ONNX_EXPORT_VERSION}.onnx"
    if path.is_file():
        return path.read_bytes()

    buf = io.BytesIO()
    export_onnx(buf)
    data = buf.getvalue()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_bytes(data)
    except (OSError, OutputError) as exc:
        log.warning("model cache %s not writable (%s); Ψ exported in memory", path.parent, exc)
    return data


def onnx_embedder() -> OnnxEmbedder:
    """The process-wide ONNX Runtime embedder (created on first use, ~1 s)."""
    return models.cached("psi/onnx", OnnxEmbedder)


def reid_embeddings(image_bgr: np.ndarray, detections: Detections | np.ndarray) -> np.ndarray:
    """The tracker's re-identification hook: (n, 128) dlib descriptors via ONNX Runtime.

    Same person when the Euclidean distance is below 0.6 (``DLIB_THRESHOLD``).
    """
    return embed_faces(image_bgr, detections, backend="onnx")
