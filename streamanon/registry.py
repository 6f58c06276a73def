"""Every part chosen by name: the one place that knows which parts exist and what each needs.

Five tables, each ``name -> spec`` with the factory that builds the part:

- `DETECTORS`: face detectors (``--detector``), built by `make_detector` behind the explicit
  `streamanon.detect.base.Detector` protocol (backend -> optional 68 landmarks -> score cut);
- `METHODS`: face methods (``--method``), objects with the `FaceMethod` shape;
- `REDACTORS`: the classic box redactors (``--fallback``, the plates' cover, and the classic
  face methods): one implementation covers a face's head region or a plate's exact box;
- `PLATE_DETECTORS`: plate detectors (``--plate-detector``, ``--plate-model``);
- `STAGES`: the classes of object (``--objects``: face, plate), each a `Stage` factory. Its
  entries are registered by `streamanon.anonymizer`, the module that can build both stages
  (a stage needs this registry's parts, so this module cannot import the stage builders).

The CLI's choices and help, `Options.needs_landmarks()` / `wants_reid()`, the Anonymizer's
stages, batch and live all read these tables. Adding a part is a module with a factory plus
one spec here.

Faces a method cannot serve (too small, no landmarks, it raised) are covered by ONE fallback:
the redactor named by ``Options.fallback``. A method may decline faces itself (it covers them
with `fallback_redactor(opts)` and counts them in ``report()["fallbacks"]``); when it raises,
the face stage covers every face of the frame and counts them as ``"error"``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

import numpy as np

from streamanon.anonymize.classic import (
    BLUR_PIXELS,
    PIXELATE_BLOCKS,
    BlurRedactor,
    MaskRedactor,
    PixelateRedactor,
    Redactor,
    SolidRedactor,
)
from streamanon.anonymize.generative import GENERATOR_FILE
from streamanon.detect import plates as P
from streamanon.detect.base import Backend, Detector, FaceDetector
from streamanon.detect.centerface import CenterFace
from streamanon.detect.dlib_detectors import DlibHOG, DlibMMOD
from streamanon.detect.landmarks import Landmarks68
from streamanon.detect.multiscale import MultiScaleDetector
from streamanon.detect.scrfd import SCRFD
from streamanon.errors import InputError, MissingExtraError
from streamanon.models import centerface_int8_path
from streamanon.paths import engine_file
from streamanon.types import Detections

if TYPE_CHECKING:
    from streamanon.anonymizer import Options
    from streamanon.stage import Stage

# An extra -> the modules it installs (checked before a method is built, so a missing one is a
# one-line message rather than an ImportError from deep inside the method).
EXTRAS: dict[str, tuple[str, ...]] = {"torch": ("torch", "safetensors")}


class _Spec(Protocol):
    name: str
    help: str


S = TypeVar("S", bound=_Spec)


class Table(Generic[S]):
    """Specs by name, in registration order; ``what`` names the choice in error messages."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._specs: dict[str, S] = {}
        self._aliases: dict[str, str] = {}

    def register(self, spec: S, *, replace: bool = False, aliases: Iterable[str] = ()) -> S:
        """Add ``spec``; ``replace=True`` swaps out an existing entry of the same name."""
        if spec.name in self._specs and not replace:
            raise ValueError(f"{self.what} {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        self._aliases.update({a: spec.name for a in aliases})
        return spec

    def unregister(self, name: str) -> None:
        self._specs.pop(name, None)

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def get(self, name: str) -> S:
        try:
            return self._specs[self._aliases.get(name, name)]
        except KeyError:
            raise InputError(
                f"unknown {self.what} {name!r} (choose from {', '.join(self._specs)})"
            ) from None

    def help(self) -> str:
        """One line per part, for a flag's help."""
        return "; ".join(f"{s.name} = {s.help}" for s in self._specs.values())


# -- face detectors ---------------------------------------------------------------------------


@dataclass(frozen=True)
class DetectorSpec:
    """``factory(input_size=, low_thresh=, threads=, model_path=, min_face=,
    tiles_per_frame=)`` -> the backend (`streamanon.detect.base.Backend`)."""

    name: str
    factory: Callable[..., Backend]
    help: str = ""


def _centerface(*, input_size, low_thresh, threads, model_path, min_face, tiles_per_frame):
    # With a smallest face to find, the base pass is joined by a high-resolution tile sweep and
    # a refresh of known small faces (detect/multiscale); at native size there is nothing above.
    if min_face and input_size is not None:
        return MultiScaleDetector(
            model_path, input_size=input_size, min_face=min_face,
            tiles_per_frame=tiles_per_frame, low_thresh=low_thresh, threads=threads,
        )  # fmt: skip
    return CenterFace(model_path, input_size=input_size, low_thresh=low_thresh, threads=threads)


def _centerface_int8(*, model_path, **kw):
    # The same detector on the int8 graph (engines/centerface_int8.onnx, docs/benchmarks.md
    # "int8 CenterFace"); a missing file is refused here, before any frame is read.
    return _centerface(model_path=model_path or centerface_int8_path(), **kw)


def _scrfd(*, input_size, low_thresh, threads, model_path, **_):
    return SCRFD(model_path, input_size=input_size, low_thresh=low_thresh, threads=threads)


def _dlib(cls):
    def factory(*, input_size, **_):
        return cls(input_size=input_size)

    return factory


DETECTORS: Table[DetectorSpec] = Table("detector")
DETECTORS.register(
    DetectorSpec("centerface", _centerface, "CenterFace (default; MIT, shipped in engines/)")
)
DETECTORS.register(
    DetectorSpec(
        "centerface-int8", _centerface_int8,
        "CenterFace quantized to int8 (faster on CPUs with VNNI; engines/centerface_int8.onnx)",
    ),  # fmt: skip
    aliases=["centerface_int8"],
)
DETECTORS.register(DetectorSpec("dlib_hog", _dlib(DlibHOG), "dlib's HOG"), aliases=["dlib-hog"])
DETECTORS.register(
    DetectorSpec("dlib_mmod", _dlib(DlibMMOD), "dlib's MMOD CNN"), aliases=["dlib-mmod"]
)
DETECTORS.register(DetectorSpec("scrfd", _scrfd, "SCRFD (your insightface model file)"))


def make_detector(
    name: str = "centerface",
    *,
    thresh: float = 0.5,
    input_size: int | None = 640,
    landmarks: bool = True,
    threads: int | None = None,
    low_thresh: float = 0.1,
    model_path: str | Path | None = None,
    min_face: float | None = None,
    tiles_per_frame: int | None = None,
) -> Detector:
    """A face detector by name (`DETECTORS`; ``dlib-hog`` and ``dlib_hog`` both work).

    thresh: score from which a face counts as detected on its own (the tracker's high stage).
    input_size: longest side the frame is resized to before detection; None = native size.
    landmarks: also fill ``landmarks68`` with dlib's 68-point predictor.
    threads: ONNX Runtime intra-op threads (None = its default).
    low_thresh: lowest score returned (must be <= thresh): the tracker keeps low-score faces
    that continue a track (ByteTrack's second stage).
    model_path: model file for ``centerface``/``scrfd`` (defaults: shipped, insightface's).
    min_face, tiles_per_frame: ``centerface`` only; with a ``min_face`` (source px) the base
    pass is joined by a high-resolution tile sweep and a refresh of known small faces
    (`streamanon.detect.multiscale`). None: the base pass alone.
    """
    if not 0.0 < low_thresh <= thresh <= 1.0:
        raise InputError(
            f"need 0 < low_thresh <= thresh <= 1, got low_thresh={low_thresh}, thresh={thresh}"
        )
    spec = DETECTORS.get(name)
    backend = spec.factory(
        input_size=input_size, low_thresh=low_thresh, threads=threads, model_path=model_path,
        min_face=min_face, tiles_per_frame=tiles_per_frame,
    )  # fmt: skip
    return FaceDetector(
        backend, Landmarks68() if landmarks else None, thresh=thresh, low_thresh=low_thresh
    )


# -- box redactors (the classic methods) ------------------------------------------------------


@dataclass(frozen=True)
class RedactorSpec:
    """``factory(mask_scale, exact)`` -> a `Redactor`. ``exact``: cover the boxes as given
    (plates) rather than the head region grown from a face box; ``boxes``: the redactor can
    cover a plain box (the mask needs a face's shape)."""

    name: str
    factory: Callable[[float, bool], Redactor]
    help: str = ""
    boxes: bool = True


REDACTORS: Table[RedactorSpec] = Table("redaction method")
REDACTORS.register(
    RedactorSpec(
        "blur", lambda s, exact: BlurRedactor(s, BLUR_PIXELS, exact=exact), "blur the head"
    )
)
REDACTORS.register(
    RedactorSpec(
        "pixelate",
        lambda s, exact: PixelateRedactor(s, PIXELATE_BLOCKS, exact=exact),
        "large flat squares over the head",
    )
)
REDACTORS.register(
    RedactorSpec("solid", lambda s, exact: SolidRedactor(s, exact=exact), "a black box")
)
REDACTORS.register(
    RedactorSpec("mask", lambda s, exact: MaskRedactor(s), "blur the face's shape", boxes=False)
)


def make_redactor(name: str, *, mask_scale: float = 1.3, exact: bool = False) -> Redactor:
    """A classic redactor by name: blur | pixelate | solid | mask."""
    spec = REDACTORS.get(name)
    if exact and not spec.boxes:
        raise InputError(f"{name!r} cannot cover a plain box")
    return spec.factory(mask_scale, exact)


def box_redactor_for(method: str) -> str:
    """The redactor that covers plain boxes (plates) when faces use ``method``: the same when
    it is a box redactor, else blur (a face swap has no meaning for a plate)."""
    return method if method in REDACTORS.names() and REDACTORS.get(method).boxes else "blur"


def fallback_redactor(opts: Options) -> Redactor:
    """The cover for faces a method cannot serve (``opts.fallback``, a classic redactor)."""
    if opts.fallback not in REDACTORS.names():
        raise InputError(
            f"fallback {opts.fallback!r} must be one of {', '.join(REDACTORS.names())}"
        )
    return make_redactor(opts.fallback, mask_scale=opts.mask_scale)


# -- face methods -----------------------------------------------------------------------------


@runtime_checkable
class FaceMethod(Protocol):
    """What the face stage calls, per frame and per track."""

    name: str

    def apply(self, image_bgr: np.ndarray, faces: Detections) -> None:
        """Anonymize ``faces`` in ``image_bgr`` in place; raise on failure (the caller then
        covers the faces)."""
        ...

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop all state of tracks that ended (nothing about a person outlives the track)."""
        ...

    def report(self) -> dict:
        """A JSON-able summary for ``--report``; ``"fallbacks"``: {reason: faces} if any."""
        ...


@dataclass(frozen=True)
class MethodSpec:
    name: str
    factory: Callable[[Options], FaceMethod]
    needs_landmarks: bool = False
    needs_reid: bool = False  # re-identification on by default (a returning person keeps a face)
    extra: str | None = None  # the pip extra that must be installed, e.g. "torch"
    help: str = ""
    caution: str | None = None  # logged as a warning whenever the method is built


METHODS: Table[MethodSpec] = Table("method")


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a face method; ``replace=True`` swaps out an existing entry of the same name."""
    if spec.extra is not None and spec.extra not in EXTRAS:
        raise ValueError(f"unknown extra {spec.extra!r} (known: {', '.join(EXTRAS)})")
    return METHODS.register(spec, replace=replace)


def method_names() -> tuple[str, ...]:
    return METHODS.names()


def get_spec(name: str) -> MethodSpec:
    return METHODS.get(name)


def method_help() -> str:
    """One line per method for ``--method``'s help."""
    return METHODS.help()


def missing_extra(extra: str | None) -> str | None:
    """The first module of ``extra`` that is not installed, or None."""
    for module in EXTRAS.get(extra or "", ()):
        if importlib.util.find_spec(module) is None:
            return module
    return None


def require_extra(extra: str, what: str) -> None:
    """Raise a one-line `MissingExtraError` (exit 4) when ``extra`` is not installed."""
    module = missing_extra(extra)
    if module is not None:
        raise MissingExtraError(
            f'{what} needs {module}, which is not installed: pip install "streamanon[{extra}]"'
        )


_CAUTIONED: set[str] = set()


def make_method(opts: Options) -> FaceMethod:
    """The face method ``opts.method``, built with ``opts``."""
    spec = get_spec(opts.method)
    if spec.extra is not None:
        require_extra(spec.extra, f"--method {spec.name}")
    method = spec.factory(opts)
    if spec.caution and spec.name not in _CAUTIONED:  # once per process, not per file
        _CAUTIONED.add(spec.name)
        logging.getLogger("streamanon").warning("--method %s: %s", spec.name, spec.caution)
    if not isinstance(method, FaceMethod):
        raise TypeError(
            f"factory of {spec.name!r} returned {type(method).__name__}, not a FaceMethod"
        )
    return method


def _classic(name: str) -> Callable[[Options], FaceMethod]:
    def factory(opts: Options) -> FaceMethod:
        return make_redactor(name, mask_scale=opts.mask_scale)  # type: ignore[return-value]

    return factory


def _ida(opts: Options) -> FaceMethod:
    # Imported when chosen: ida and swap (with their visual.* parts) add ~30 ms to every
    # start-up, `--help` included (the allowlist in tests/test_imports.py).
    from streamanon.anonymize.ida import IdaMethod

    engine_file(GENERATOR_FILE)  # missing: one line naming the file and where it goes
    return IdaMethod(opts, fallback=fallback_redactor(opts))


def _swap(opts: Options) -> FaceMethod:
    from streamanon.anonymize.swap import SwapMethod

    return SwapMethod(opts, fallback=fallback_redactor(opts))


register(MethodSpec("blur", _classic("blur"), help="blur the head (default without a generator)"))
register(MethodSpec("pixelate", _classic("pixelate"), help="large flat squares over the head"))
register(MethodSpec("solid", _classic("solid"), help="a black box over the head"))
register(
    MethodSpec(
        "mask", _classic("mask"), needs_landmarks=True, help="blur only the face's own shape"
    )
)
# Measured on footage never tuned on (docs/generator.md, "Seventh session"): the realistic
# methods are verified against Ψ only, and a recognizer of another family sees through them.
NOT_PROVEN = (
    "not proven anonymous: on clips it was never tuned on, FaceNet (a recognizer of another "
    "family than the one the method checks against) re-identified 15 % (swap) and 24 % (ida) "
    "of faces (docs/generator.md); use blur (the default) where anonymity must hold"
)
register(
    MethodSpec(
        "swap",
        _swap,
        needs_landmarks=True,
        needs_reid=True,
        extra="torch",
        help="a realistic delegate face of nobody, re-shaped to each person (IPD)",
        caution=NOT_PROVEN,
    )
)
register(
    MethodSpec(
        "ida",
        _ida,
        needs_landmarks=True,
        needs_reid=True,
        extra="torch",
        help="swap refined by the paper's generator (engines/refiner_128.onnx); the default once it passes its release gate",
        caution=NOT_PROVEN,
    )
)


# -- plate detectors --------------------------------------------------------------------------


@dataclass(frozen=True)
class PlateDetectorSpec:
    """``factory(model_path, levels=, low_thresh=, threads=)`` -> a plate detector
    (``detector(image) -> Detections``; ``scan(image, i)`` when it has windows to cycle)."""

    name: str
    factory: Callable[..., Any]
    help: str = ""
    shipped: bool = True  # has a model in engines/ (else needs --plate-model)


def _plate_factory(cls, *, pyramid: bool = True) -> Callable[..., Any]:
    """``cls(path, low_thresh=, threads=)``, plus ``levels=`` when the detector runs a
    pyramid (PlateNet, SSD) and the caller names sizes (else the detector's own)."""

    def factory(path, *, levels, low_thresh, threads):
        extra = {"levels": tuple(levels)} if pyramid and levels else {}
        return cls(path, low_thresh=low_thresh, threads=threads, **extra)

    return factory


PLATE_DETECTORS: Table[PlateDetectorSpec] = Table("plate detector")
PLATE_DETECTORS.register(
    PlateDetectorSpec(
        "net", _plate_factory(P.PlateNetONNX), "PlateNet, trained here (engines/plate_net.onnx)"
    )
)
PLATE_DETECTORS.register(
    PlateDetectorSpec(
        "ssd",
        _plate_factory(P.PlateSSD),
        "HyperLPR's MobileNet-SSD (engines/plate_mininet_ssd.onnx)",
    )
)
PLATE_DETECTORS.register(
    PlateDetectorSpec(
        "yolo",
        _plate_factory(P.YoloV9Plates, pyramid=False),
        "your YOLOv9 plate model (--plate-model)",
        shipped=False,
    )
)
# What --plate-detector auto means without --plate-model: the shipped detector that scored
# best on the held-out photos (docs/plates.md, "Measured").
DEFAULT_PLATE_DETECTOR = "ssd"


def plate_detector_choices() -> tuple[str, ...]:
    """``--plate-detector`` choices: auto and the shipped detectors."""
    return ("auto", *(s for s in PLATE_DETECTORS.names() if PLATE_DETECTORS.get(s).shipped))


def make_plate_detector(
    model_path: str | Path | None = None,
    kind: str = "auto",
    levels: tuple[int, ...] | None = None,
    low_thresh: float = 0.1,
    threads: int | None = None,
):
    """A shipped detector (``kind`` "net", "ssd", or "auto": `DEFAULT_PLATE_DETECTOR`), or
    the model file ``model_path``: a PlateNet export (by its metadata, or ``kind`` "net") or
    a YOLOv9 plate model."""
    if kind not in plate_detector_choices():
        raise InputError(
            f"--plate-detector {kind!r}: choose from {', '.join(plate_detector_choices())}"
        )
    if model_path is not None and kind == "auto":  # a PlateNet export says so in its metadata
        kind = "net" if P.is_platenet_file(model_path) else "yolo"
    elif kind == "auto":
        kind = DEFAULT_PLATE_DETECTOR
    spec = PLATE_DETECTORS.get(kind)
    return spec.factory(model_path, levels=levels, low_thresh=min(low_thresh, 0.1), threads=threads)


# -- object classes (--objects) ---------------------------------------------------------------


@dataclass(frozen=True)
class StageSpec:
    """``factory(opts, detector)`` -> the `Stage` for one class of object; ``detector``: one
    already built for the same options (batch workers share it), or None to build one."""

    name: str
    factory: Callable[[Options, Detector | None], Stage]
    help: str = ""


# Registration order is the order stages run and cover a frame (faces last, so a face's method
# is applied on top where a face and a plate overlap).
STAGES: Table[StageSpec] = Table("object")


def parse_objects(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"face,plate"`` -> ("face", "plate") (`STAGES` names, duplicates dropped, order kept);
    an unknown or empty list is an input error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(s.strip().lower() for s in items if s.strip()))
    known = STAGES.names()
    if not names or any(n not in known for n in names):
        shown = text if isinstance(text, str) else ",".join(items)
        raise InputError(f"--objects {shown!r}: choose from {', '.join(known)} (comma-separated)")
    return names
