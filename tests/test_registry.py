"""The registry of parts: its tables drive the Anonymizer's stages, the CLI and Options."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from streamanon import registry
from streamanon.anonymizer import Anonymizer, Options
from streamanon.errors import InputError
from streamanon.registry import FaceMethod, MethodSpec, get_spec, method_names
from streamanon.types import Detections, Frame


def test_every_registered_method_says_what_it_needs() -> None:
    assert {"blur", "pixelate", "solid", "mask", "swap", "ida"} <= set(method_names())
    for name in method_names():
        spec = get_spec(name)
        assert spec.name == name and spec.help
        assert Options(method=name).needs_landmarks() is spec.needs_landmarks
        assert Options(method=name).wants_reid() is spec.needs_reid
    assert get_spec("swap").extra == "torch" and get_spec("blur").extra is None


def test_unknown_method_is_an_input_error_naming_the_choices() -> None:
    with pytest.raises(InputError, match="choose from blur"):
        Options(method="nope").needs_landmarks()


@pytest.mark.parametrize("name", ["blur", "pixelate", "solid", "mask"])
def test_classic_methods_are_face_methods(name: str) -> None:
    m = registry.make_method(Options(method=name))
    assert isinstance(m, FaceMethod) and m.name == name
    m.forget([1, 2])
    assert m.report() == {}


def test_the_realistic_methods_warn_that_they_are_not_proven_anonymous(
    caplog, monkeypatch
) -> None:
    """FaceNet re-identified 15-24 % of `swap`/`ida` faces on clips never tuned on
    (docs/generator.md): a user who picks them is told, once per run (a folder of 500
    pictures gets one line); the classic ones are not."""
    pytest.importorskip("torch")
    monkeypatch.setattr(registry, "_CAUTIONED", set())
    with caplog.at_level("WARNING", logger="streamanon"):
        registry.make_method(Options(method="swap"))
        registry.make_method(Options(method="swap"))
        registry.make_method(Options(method="blur"))
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and warned[0].startswith("--method swap: not proven anonymous")
    assert get_spec("ida").caution == get_spec("swap").caution


class _Exploding:
    name = "exploding"

    def __init__(self) -> None:
        self.forgotten: list[int] = []

    def apply(self, image_bgr: np.ndarray, faces: Detections) -> None:
        raise RuntimeError("boom")

    def forget(self, track_ids) -> None:
        self.forgotten.extend(track_ids)

    def report(self) -> dict:
        return {"fallbacks": {"too_small": 1}}


def test_a_registered_method_is_used_and_its_failures_are_one_counted_fallback(
    monkeypatch,
) -> None:
    spec = MethodSpec("exploding", lambda opts: _Exploding(), help="raises")
    monkeypatch.setitem(registry.METHODS._specs, "exploding", spec)
    anon = Anonymizer(method="exploding", fallback="solid")
    img = np.full((120, 160, 3), 200, np.uint8)
    frame = Frame(img.copy(), 0)
    frame.faces = Detections(np.array([[40.0, 30, 90, 90]]), np.array([0.9]))
    out = anon.apply(frame).image
    assert (out[40:80, 50:80] == 0).all()  # covered by the fallback (solid), never shown
    rep = anon.method_report()
    assert rep["fallbacks"] == {"too_small": 1, "error": 1}


def test_registering_twice_needs_replace() -> None:
    with pytest.raises(ValueError):
        registry.register(get_spec("blur"))


def test_missing_torch_is_one_line_naming_the_extra(tmp_path) -> None:
    """Without torch, --method swap and explain end with exit 4 and the install line."""
    img = tmp_path / "a.png"
    import cv2

    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    # A meta-path finder that hides torch, as on an install without the extra.
    code = textwrap.dedent(
        """
        import sys
        class Hide:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "safetensors"):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)
                return None
        sys.meta_path.insert(0, Hide())
        import importlib.util
        _orig = importlib.util.find_spec
        def find_spec(name, package=None):
            if name.split(".")[0] in ("torch", "safetensors"):
                return None
            return _orig(name, package)
        importlib.util.find_spec = find_spec
        from streamanon.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for argv in (
        [str(img), "--method", "swap", "-o", str(tmp_path / "o.png"), "-q"],
        [str(img), "--method", "ida", "-o", str(tmp_path / "o.png"), "-q"],
        ["explain", str(img), "-o", str(tmp_path / "e.png")],
    ):
        r = subprocess.run(
            [sys.executable, "-c", code, *argv], capture_output=True, text=True, env=env
        )
        assert r.returncode == 4, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and 'pip install "streamanon[torch]"' in lines[0], r.stderr
        assert not (tmp_path / "o.png").exists()


def test_ida_without_a_generator_names_the_file_and_where_it_goes(tmp_path) -> None:
    """A wheel installed without engines/ (or a user who deleted the file): one line, exit 4."""
    import cv2

    from streamanon.anonymize.generative import GENERATOR_FILE

    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((32, 32, 3), np.uint8))
    empty = tmp_path / "engines"
    empty.mkdir()
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        import streamanon.paths as P
        real = P.engines_dirs
        # Every engine but the generator stays where it is.
        P.engines_dirs = lambda: [Path({str(empty)!r})] + [
            d for d in real() if not (d / {GENERATOR_FILE!r}).exists()
        ]
        _find = P.find_engine
        P.find_engine = lambda n: None if n == {GENERATOR_FILE!r} else _find(n)
        from streamanon.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    r = subprocess.run(
        [sys.executable, "-c", code, str(img), "--method", "ida", "-q"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert r.returncode == 4, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and GENERATOR_FILE in lines[0] and "engines" in lines[0], r.stderr
    assert not (tmp_path / "a_anonymized.png").exists()


def test_reset_starts_over_but_keeps_the_models(monkeypatch) -> None:
    """Folder mode and several inputs share one Anonymizer: nothing of a person carries over."""
    import cv2

    from tests.conftest import needs_shared

    img = cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg")))
    anon = Anonymizer(method="blur", detector="dlib-hog")  # README spelling of dlib_hog
    assert anon.detector.name.startswith("dlib_hog")
    detector, method = anon.detector, anon.face_anonymizer
    forgotten: list[int] = []
    monkeypatch.setattr(method, "forget", lambda ids: forgotten.extend(ids))
    anon(img)
    tracks = set(anon.counters.track_ids)
    assert len(tracks) == 2
    anon.reset()
    assert sorted(forgotten) == sorted(tracks) and anon.counters.frames == 0
    assert anon.tracker.tracks == [] and anon.detector is detector
    anon(img)
    assert anon.counters.frames == 1 and len(anon.counters.track_ids) == 2


def test_cli_choices_come_from_the_registry() -> None:
    from streamanon.cli_args import build_parser

    actions = {a.dest: a for a in build_parser()._actions}
    assert tuple(actions["method"].choices) == registry.METHODS.names()
    assert tuple(actions["fallback"].choices) == registry.REDACTORS.names()
    assert tuple(actions["plate_detector"].choices) == registry.plate_detector_choices()
    assert set(registry.plate_detector_choices()) == {"auto", "net", "ssd"}
    for name in registry.DETECTORS.names():
        assert name in actions["detector"].help


def test_one_box_redactor_covers_faces_head_region_and_plates_exact_box() -> None:
    from streamanon.anonymize.classic import BlurRedactor

    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    box = Detections(np.array([[40.0, 40, 80, 80]]), np.array([0.9]))
    face, plate = img.copy(), img.copy()
    registry.fallback_redactor(Options(fallback="blur")).apply(face, box)
    registry.make_redactor("blur", exact=True).apply(plate, box)
    assert type(registry.fallback_redactor(Options())) is BlurRedactor
    changed_face = (face != img).any(2)
    changed_plate = (plate != img).any(2)
    assert not changed_plate[:40].any() and not changed_plate[:, 80:].any()  # box-exact
    assert changed_face[30:40, 45:75].any()  # the head region reaches above the face box
    assert (
        registry.box_redactor_for("mask") == "blur"
        and registry.box_redactor_for("solid") == "solid"
    )
    with pytest.raises(InputError, match="plain box"):
        registry.make_redactor("mask", exact=True)


def test_unknown_parts_are_one_line_input_errors_naming_the_choices() -> None:
    with pytest.raises(InputError, match="unknown detector 'yolo' .choose from centerface"):
        registry.make_detector("yolo")
    with pytest.raises(InputError, match="choose from auto, net, ssd"):
        registry.make_plate_detector(kind="tiny")
    with pytest.raises(InputError, match="fallback 'swap' must be one of blur"):
        registry.fallback_redactor(Options(fallback="swap"))


def test_detectors_follow_the_protocol_and_shared_ones_are_reset(monkeypatch) -> None:
    """Batch workers reuse one anonymizer's detectors; each new anonymizer resets them (the
    multi-scale detector keeps small faces, the sweep position and the camera per input)."""
    from streamanon.detect.base import Detector
    from streamanon.detect.multiscale import MultiScaleDetector

    first = Anonymizer(method="blur")
    det = first.detector
    assert isinstance(det, Detector) and isinstance(det.backend, MultiScaleDetector)
    img = np.full((360, 640, 3), 90, np.uint8)
    first(img)
    first(np.roll(img, 7, axis=1))
    assert det.camera_shift is not None
    resets: list[int] = []
    monkeypatch.setattr(det.backend, "reset", lambda: resets.append(1))
    second = Anonymizer(method="blur", detectors_from=first)
    assert second.detector is det and resets == [1]
    assert second.tracker is not first.tracker and second.counters.frames == 0
    # A backend without state or motion measurement: reset is a no-op, no camera shift.
    native = registry.make_detector(input_size=None, landmarks=False)
    native.reset()
    assert native.camera_shift is None


def test_one_onnx_session_factory_with_its_cache() -> None:
    """Every ONNX model comes from models.onnx_session: one provider policy, the judges on the
    CPU, and one shared session per model and settings when asked to cache."""
    import pathlib

    from streamanon import models

    model = pathlib.Path(__file__).resolve().parents[1] / "engines" / "plate_mininet_ssd.onnx"
    a = models.onnx_session(model, "plate test", 1, cache=True)
    assert models.onnx_session(model, "plate test", 1, cache=True) is a
    assert models.onnx_session(model, "plate test", 1) is not a
    judge = models.onnx_session(model, "judge test", providers=models.CPU)
    assert judge.get_providers() == ["CPUExecutionProvider"]
    src = pathlib.Path(__file__).resolve().parents[1] / "streamanon"
    builders = [p for p in src.rglob("*.py") if "InferenceSession(" in p.read_text()]
    assert builders == [src / "models.py"]


def test_object_classes_come_from_the_registry():
    """--objects names are the STAGES table's, in the order the stages cover a frame (faces
    last), and the CLI's help lists them."""
    from streamanon.anonymizer import Anonymizer
    from streamanon.cli_args import build_parser
    from streamanon.registry import STAGES, parse_objects

    assert STAGES.names() == ("plate", "face")
    assert parse_objects(" face ,plate,face") == ("face", "plate")
    with pytest.raises(InputError, match="choose from plate, face"):
        parse_objects("face,car")
    with pytest.raises(InputError):
        parse_objects(" , ")
    # Asked face first, built plate first: the face's method lands on top of a plate's cover.
    anon = Anonymizer(objects="face,plate")
    assert [s.kind for s in anon.stages] == ["plate", "face"] and anon.faces is anon.stages[1]
    assert [s.kind for s in Anonymizer(objects="plate").stages] == ["plate"]
    assert Anonymizer(objects="plate").faces is None
    assert "plate = license plates" in " ".join(build_parser().format_help().split())
