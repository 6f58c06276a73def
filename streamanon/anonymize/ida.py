"""`--method ida`: the paper's full method — IFA + IPD delegates + a generator — per tracked face.

Per track, once (`identity_state`, as `swap`): Ψ embedding, the IPD appearance and geometry
delegates (eqs. 6-8), the draw verified against re-identification by rendering it.
Per frame: the `swap` render of the delegate on Ŝ_x (Kalman-smoothed landmarks, thin-plate
warp, colour transfer, the person's eye/mouth openings) goes through the refining generator
G_r (`synth.refiner`, ONNX Runtime; TensorRT/CUDA execution providers on a GPU), which turns
it into a face that looks photographed in this scene; the result is pasted as `swap` does.
Faces whose crop is larger than G_r's 128² go through it at 128² and get its correction
upsampled onto their own full-resolution render (the delegate's detail stays sharp).

Verification (`swap._draw_verified`, `_recheck`) judges the refined face, not the render;
a track that loses its margin at a recheck is covered from then on, as in `swap`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from streamanon.anonymize.classic import Redactor
from streamanon.anonymize.generative import GENERATOR_FILE, generator_gate
from streamanon.anonymize.identity_state import FaceJob, TrackState
from streamanon.anonymize.swap import SwapMethod
from streamanon.errors import InputError
from streamanon.models import cache_dir, onnx_session
from streamanon.paths import engine_file
from streamanon.visual.inputs import from_signed_rgb, to_signed_rgb

log = logging.getLogger(__name__)

REFINE_SIZE = 128


def refiner_inputs(render: np.ndarray, crop: np.ndarray, mask: np.ndarray) -> dict[str, np.ndarray]:
    """G_r's three inputs (batch of one) from the render, the person's crop (BGR uint8, same
    side) and the face mask; the context shows nothing of the face interior."""
    m = mask.astype(np.float32)
    keep = (m < 0.01).astype(np.float32)
    return {
        "render": to_signed_rgb(render)[None],
        "context": (to_signed_rgb(crop) * keep[None])[None],
        "mask": m[None, None],
    }


class RefinerRuntime:
    """G_r on ONNX Runtime: TensorRT (FP16, engine cached) or CUDA providers when this
    onnxruntime build has them and a GPU answers, else the CPU."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.session = None
        for providers in self.provider_chain(ort.get_available_providers(), self.path):
            try:
                self.session = onnx_session(
                    self.path, "ida refiner", threads or None, providers=providers, fallback=False
                )
                break
            except Exception as exc:  # noqa: BLE001 - a GPU provider that cannot start
                log.info("ida: %s unavailable (%s)", providers[0], exc)
        if self.session is None:  # pragma: no cover - the CPU provider always starts
            raise RuntimeError(f"cannot open {self.path}")
        self.name = self.session.get_providers()[0]
        names = [i.name for i in self.session.get_inputs()]
        if names != ["render", "context", "mask"]:
            raise InputError(f"{self.path.name} is not a refiner (inputs {names})")

    @staticmethod
    def provider_chain(available: list[str], model: Path) -> list[list]:
        """Provider lists to try, best first: TensorRT FP16 with an engine cache beside the
        model cache, CUDA, then the CPU (always last, so something runs)."""
        chain: list[list] = []
        if "TensorrtExecutionProvider" in available:
            trt = {
                "trt_fp16_enable": True,
                "trt_engine_cache_enable": True,
                "trt_engine_cache_path": str(cache_dir() / "trt"),
                "trt_profile_min_shapes": "render:1x3x128x128,context:1x3x128x128,mask:1x1x128x128",
                "trt_profile_opt_shapes": "render:4x3x128x128,context:4x3x128x128,mask:4x1x128x128",
                "trt_profile_max_shapes": "render:16x3x128x128,context:16x3x128x128,mask:16x1x128x128",
            }  # fmt: skip
            chain.append([("TensorrtExecutionProvider", trt), "CUDAExecutionProvider",
                          "CPUExecutionProvider"])  # fmt: skip
        if "CUDAExecutionProvider" in available:
            chain.append(["CUDAExecutionProvider", "CPUExecutionProvider"])
        chain.append(["CPUExecutionProvider"])
        return chain

    def run(self, render: np.ndarray, context: np.ndarray, mask: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(None, {"render": render, "context": context, "mask": mask})
        return out


def refine(runtime: RefinerRuntime, render: np.ndarray, crop: np.ndarray, mask: np.ndarray):
    """The refined crop (BGR uint8, the render's side). A larger crop is refined at 128² and
    the correction (refined − render at 128²) is upsampled onto its own render."""
    side = render.shape[0]
    if side == REFINE_SIZE:
        return from_signed_rgb(runtime.run(**refiner_inputs(render, crop, mask))[0])
    interp = cv2.INTER_AREA if side > REFINE_SIZE else cv2.INTER_LINEAR
    small = [cv2.resize(a, (REFINE_SIZE, REFINE_SIZE), interpolation=interp)
             for a in (render, crop, mask)]  # fmt: skip
    out = from_signed_rgb(runtime.run(**refiner_inputs(*small))[0])
    delta = out.astype(np.float32) - small[0].astype(np.float32)
    delta = cv2.resize(delta, (side, side), interpolation=cv2.INTER_CUBIC)
    return np.clip(render.astype(np.float32) + delta + 0.5, 0, 255).astype(np.uint8)


class IdaMethod(SwapMethod):
    """The `ida` face method (a `FaceMethod` of `streamanon.registry`)."""

    name = "ida"

    def __init__(self, opts, model: str | Path | None = None, *, fallback: Redactor) -> None:
        path = Path(model) if model else engine_file(GENERATOR_FILE)
        ok, why = generator_gate()
        if not ok:
            log.info("ida: %s has not passed its release gate: %s", path.name, why)
        super().__init__(opts, fallback=fallback)
        self.runtime = RefinerRuntime(path, threads=getattr(opts, "threads", None))
        log.info("ida: generator %s on %s", path.name, self.runtime.name)

    def render(self, job: FaceJob, st: TrackState) -> tuple[np.ndarray, np.ndarray]:
        rendered, mask = super().render(job, st)
        out = refine(self.runtime, rendered, job.crop.image, mask)
        # The person's eye and mouth openings stay theirs (gaze, teeth): G_r saw them as input.
        if job.openings is not None:
            inside = job.openings[..., None]
            out = (out * (1 - inside) + rendered * inside).astype(np.uint8)
        return out, mask

    def report(self) -> dict:
        return self.ids.report(f"swap+refiner ({self.runtime.name})")
