"""Face methods by name: the one place that knows which methods exist and what each needs.

A face method is any object with the `FaceMethod` shape. Adding one (or a plate redactor) is a
new module with a factory plus one `MethodSpec` here; the `Anonymizer`, the CLI's ``--method``
choices and help, and `Options.needs_landmarks()` / `wants_reid()` all read this table.

Faces a method cannot serve (too small, no landmarks, it raised) are covered by ONE fallback:
the classic redactor named by ``Options.fallback``. A method may decline faces itself (it
covers them with `fallback_redactor(opts)` and counts them in ``report()["fallbacks"]``); when
it raises, the `Anonymizer` covers every face of the frame and counts them as ``"error"``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from streamanon.errors import InputError, MissingExtraError
from streamanon.types import Detections

if TYPE_CHECKING:
    from streamanon.anonymizer import Options

# An extra → the modules it installs (checked before a method is built, so a missing one is a
# one-line message rather than an ImportError from deep inside the method).
EXTRAS: dict[str, tuple[str, ...]] = {"torch": ("torch", "safetensors")}


@runtime_checkable
class FaceMethod(Protocol):
    """What the `Anonymizer` calls, per frame and per track."""

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


_REGISTRY: dict[str, MethodSpec] = {}


def register(spec: MethodSpec, *, replace: bool = False) -> MethodSpec:
    """Add a method; ``replace=True`` swaps out an existing entry of the same name."""
    if spec.name in _REGISTRY and not replace:
        raise ValueError(f"face method {spec.name!r} is already registered")
    if spec.extra is not None and spec.extra not in EXTRAS:
        raise ValueError(f"unknown extra {spec.extra!r} (known: {', '.join(EXTRAS)})")
    _REGISTRY[spec.name] = spec
    return spec


def method_names() -> tuple[str, ...]:
    return tuple(_REGISTRY)


def get_spec(name: str) -> MethodSpec:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise InputError(f"unknown method {name!r} (choose from {', '.join(_REGISTRY)})") from None


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


def make_method(opts: Options) -> FaceMethod:
    """The face method ``opts.method``, built with ``opts``."""
    spec = get_spec(opts.method)
    if spec.extra is not None:
        require_extra(spec.extra, f"--method {spec.name}")
    method = spec.factory(opts)
    if not isinstance(method, FaceMethod):
        raise TypeError(
            f"factory of {spec.name!r} returned {type(method).__name__}, not a FaceMethod"
        )
    return method


def fallback_redactor(opts: Options) -> FaceMethod:
    """The cover for faces a method cannot serve (``opts.fallback``, a classic method)."""
    from streamanon.anonymize.classic import METHODS, make_redactor

    if opts.fallback not in METHODS:
        raise InputError(f"fallback {opts.fallback!r} must be one of {', '.join(METHODS)}")
    return make_redactor(opts.fallback, mask_scale=opts.mask_scale)


def method_help() -> str:
    """One line per method for ``--method``'s help."""
    return "; ".join(f"{s.name} = {s.help}" for s in _REGISTRY.values())


# -- built-in methods -------------------------------------------------------------------------


def _classic(name: str) -> Callable[[Options], FaceMethod]:
    def factory(opts: Options) -> FaceMethod:
        from streamanon.anonymize.classic import make_redactor

        return make_redactor(name, mask_scale=opts.mask_scale)

    return factory


def _ida(opts: Options) -> FaceMethod:
    from streamanon.anonymize.generative import GENERATOR_FILE
    from streamanon.anonymize.ida import IdaMethod
    from streamanon.paths import engine_file

    engine_file(GENERATOR_FILE)  # missing: one line naming the file and where it goes
    return IdaMethod(opts)


def _swap(opts: Options) -> FaceMethod:
    from streamanon.anonymize.swap import SwapMethod

    return SwapMethod(opts)


register(MethodSpec("blur", _classic("blur"), help="blur the head (default without a generator)"))
register(MethodSpec("pixelate", _classic("pixelate"), help="large flat squares over the head"))
register(MethodSpec("solid", _classic("solid"), help="a black box over the head"))
register(
    MethodSpec(
        "mask", _classic("mask"), needs_landmarks=True, help="blur only the face's own shape"
    )
)
register(
    MethodSpec(
        "swap",
        _swap,
        needs_landmarks=True,
        needs_reid=True,
        extra="torch",
        help="a realistic delegate face of nobody, re-shaped to each person (IPD)",
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
    )
)
