"""Ψ, the dlib ResNet port: conversion, alignment, parity with dlib, ONNX, separation at 0.6."""

from __future__ import annotations

import functools
import io
from pathlib import Path

import cv2
import dlib
import numpy as np
import pytest
import torch

from streamanon.errors import InputError
from streamanon.identity import align, convert, embed, weights
from streamanon.identity.recognizer import load_recognizer
from streamanon.types import Detections
from tests.conftest import needs_shared

IMAGE_SUFFIXES = (".jpg", ".png")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    # On a shared 2-core machine one intra-op thread is ~10x faster than two contended ones.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@functools.cache
def _hog():  # building dlib's HOG detector takes ~1 s: once per session
    return dlib.get_frontal_face_detector()


def _largest_face(image_bgr: np.ndarray) -> np.ndarray | None:
    """dlib HOG on a copy at most 320 px wide (fast on a busy CPU), box in full-size pixels."""
    s = min(1.0, 320 / max(image_bgr.shape[:2]))
    small = (
        cv2.resize(image_bgr, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        if s < 1
        else image_bgr
    )
    upsample = 1 if max(small.shape[:2]) < 200 else 0  # the tiny ORL photos need it
    rects = _hog()(np.ascontiguousarray(small[:, :, ::-1]), upsample)
    if not rects:
        return None
    r = max(rects, key=lambda r: r.area())
    return np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1], np.float32) / s


def _photos(root: Path, folders: list[str], per_folder: int) -> list[Path]:
    out = []
    for name in folders:
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        out += files[:per_folder]
    return out


@pytest.fixture(scope="module")
def faces() -> dict:
    """~28 real faces from 9 people: image, box, chip and our torch embedding."""
    root = needs_shared("faces", "identities")
    folders = sorted(p.name for p in root.iterdir() if p.name.startswith(("fr_", "dlib_John")))
    folders += ["deepface_p01", "deepface_p02"]
    rows = []
    for path in _photos(root, folders, 3):
        image = cv2.imread(str(path))
        box = _largest_face(image)
        if box is not None:
            rows.append((path, image, box))
    chips = np.stack([align.align_chip(img, box)[0] for _, img, box in rows])
    return {
        "paths": [r[0] for r in rows],
        "images": [r[1] for r in rows],
        "boxes": np.stack([r[2] for r in rows]),
        "chips": chips,
        "emb": embed.embed_chips(chips),
    }


def test_converter_is_deterministic_and_matches_the_weights_in_use():
    data = convert.default_dat_path().read_bytes()
    a, b = convert.convert(data), convert.convert(data)
    in_use = weights.recognizer_state_dict()
    assert set(a) == set(in_use) and len(a) == 118
    for k in a:
        assert np.array_equal(a[k], b[k]) and np.array_equal(a[k], in_use[k]), k
    assert sum(v.size for v in a.values()) == 5_614_595
    np.testing.assert_allclose(a["mean_rgb"], [122.782, 117.001, 104.298], rtol=1e-6)


def test_converter_rejects_other_files():
    data = convert.default_dat_path().read_bytes()
    with pytest.raises(convert.DlibFormatError, match="truncated"):
        convert.parse_dat(data[: len(data) // 2])
    with pytest.raises(convert.DlibFormatError, match="unread bytes"):
        convert.parse_dat(data + b"\x00")
    with pytest.raises(convert.DlibFormatError):
        convert.parse_dat(b"\x01\x01\x05hello")


def test_feature_map_and_head_compose_to_forward():
    model = load_recognizer()
    x = torch.randn(2, 3, 150, 150) * 0.3
    a = model.features(x)
    assert a.shape == (2, 256, 2, 2)
    torch.testing.assert_close(model.head(a), model(x))
    with pytest.raises(ValueError, match="150, 150"):
        model(torch.zeros(1, 3, 112, 112))


def test_parity_with_dlib_compute_face_descriptor(faces):
    """≥ 20 real faces: cosine ≥ 0.999 against dlib's own descriptor (same 5-point shape)."""
    ref = dlib.face_recognition_model_v1(str(convert.default_dat_path()))
    assert len(faces["chips"]) >= 20
    cos, l2 = [], []
    for image, box, ours in zip(faces["images"], faces["boxes"], faces["emb"], strict=True):
        rgb = np.ascontiguousarray(image[:, :, ::-1])
        theirs = np.array(ref.compute_face_descriptor(rgb, align.landmarks5(rgb, box)))
        cos.append(ours @ theirs / np.linalg.norm(ours) / np.linalg.norm(theirs))
        l2.append(np.linalg.norm(ours - theirs))
    print(f"\n{len(cos)} faces: min cosine {min(cos):.7f}, max L2 {max(l2):.2e}")
    assert max(l2) < 1e-3
    assert min(cos) >= 0.999, min(cos)


def test_chip_is_dlibs_chip_and_matrix_maps_frame_to_chip(faces):
    image, box = faces["images"][0], faces["boxes"][0]
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    shape = align.landmarks5(rgb, box)
    chip, m = align.align_chip(image, box)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    np.testing.assert_array_equal(chip, np.asarray(dlib.get_face_chip(rgb, shape, 150, 0.25)))
    # The eyes land where dlib's template puts them: both eye centres at one height.
    pts = np.array([[p.x, p.y] for p in shape.parts()], np.float64)
    in_chip = pts @ m[:, :2].T + m[:, 2]
    right_eye, left_eye = in_chip[0:2].mean(0), in_chip[2:4].mean(0)
    assert abs(right_eye[1] - left_eye[1]) < 1.0
    assert 40 < right_eye[0] - left_eye[0] < 70
    # Warping with the matrix reproduces the chip (dlib may pre-blur with a pyramid).
    warped = cv2.warpAffine(rgb, m, (150, 150), flags=cv2.INTER_LINEAR)
    assert np.abs(warped.astype(float) - chip).mean() < 12


def test_onnx_runtime_matches_torch_batched(faces):
    ort = embed.onnx_embedder()
    chips = faces["chips"][:9]
    got8 = ort(chips, batch_size=8)  # one batch of 8 and one of 1
    np.testing.assert_allclose(got8, faces["emb"][:9], atol=1e-4)
    np.testing.assert_allclose(
        embed.embed_chips(chips, backend="onnx", batch_size=1), got8, atol=1e-5
    )


def test_export_onnx_to_file(tmp_path):
    import onnx

    path = tmp_path / "psi.onnx"
    embed.export_onnx(path)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


def test_embed_faces_and_reid_hook_take_detections(faces):
    image, box = faces["images"][0], faces["boxes"][0]
    dets = Detections(box[None], np.array([0.9], np.float32))
    e_torch = embed.embed_faces(image, dets)
    e_ort = embed.reid_embeddings(image, dets)
    assert e_torch.shape == (1, 128)
    np.testing.assert_allclose(e_torch[0], faces["emb"][0], atol=1e-5)
    np.testing.assert_allclose(e_ort, e_torch, atol=1e-4)
    assert embed.reid_embeddings(image, Detections.empty()).shape == (0, 128)


@pytest.mark.parametrize(
    "args, match",
    [
        ((np.zeros((10, 10), np.uint8), np.array([[0, 0, 5, 5]])), "BGR"),
        ((np.zeros((50, 50, 3), np.float32), np.array([[0, 0, 20, 20]])), "uint8"),
        ((np.zeros((50, 50, 3), np.uint8), np.array([[0, 0, 1, 1]])), "at least 2x2"),
        ((np.zeros((50, 50, 3), np.uint8), np.array([[0, 0, np.nan, 20]])), "finite"),
        ((np.zeros((50, 50, 3), np.uint8), np.zeros((2, 3))), r"\(n, 4\)"),
    ],
)
def test_bad_inputs_raise_one_line_errors(args, match):
    with pytest.raises(InputError, match=match):
        embed.embed_faces(*args)


def test_bad_chips_and_backend():
    with pytest.raises(InputError, match="150, 150, 3"):
        embed.embed_chips(np.zeros((2, 112, 112, 3), np.uint8))
    with pytest.raises(InputError, match="backend"):
        embed.embed_chips(np.zeros((1, 150, 150, 3), np.uint8), backend="tensorrt")


def test_same_and_different_people_separate_at_dlib_threshold():
    """Identity photos (4 each of 30 people): dlib's 0.6 threshold separates them."""
    root = needs_shared("faces", "identities")
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())[::2][:30]
    chips, labels = [], []
    for path in _photos(root, folders, 4):
        image = cv2.imread(str(path))
        box = _largest_face(image)
        if box is not None:
            chips.append(align.align_chip(image, box)[0])
            labels.append(path.parent.name)
    emb = embed.embed_chips(np.stack(chips), backend="onnx")
    labels = np.array(labels)
    d = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    iu = np.triu_indices(len(emb), 1)
    same = (labels[:, None] == labels[None])[iu]
    same_rate = (d[iu][same] < 0.6).mean()
    diff_rate = (d[iu][~same] >= 0.6).mean()
    print(f"\n{len(emb)} faces: same<0.6 {same_rate:.3f}, different>=0.6 {diff_rate:.3f}")
    assert same.sum() > 120 and (~same).sum() > 4000
    assert same_rate >= 0.97 and diff_rate >= 0.97


def test_export_to_bytes_runs_in_onnxruntime():
    import onnxruntime as ort

    buf = io.BytesIO()
    embed.export_onnx(buf)
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).normal(0, 0.3, (3, 3, 150, 150)).astype(np.float32)
    got = sess.run(None, {"chip": x})[0]
    with torch.no_grad():
        want = load_recognizer()(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_weights_are_built_once_into_the_cache_atomically(tmp_path, monkeypatch):
    """Ψ's port is not shipped: it is converted from the installed .dat at first use, into
    $STREAMANON_CACHE, byte-identical every time, with no temporary file left behind."""
    import hashlib

    monkeypatch.setenv("STREAMANON_CACHE", str(tmp_path / "cache"))
    out = weights.build_recognizer_weights()
    assert out.parent == tmp_path / "cache" and out.suffix == ".safetensors"
    first = hashlib.sha256(out.read_bytes()).hexdigest()
    mtime = out.stat().st_mtime_ns
    assert weights.build_recognizer_weights() == out and out.stat().st_mtime_ns == mtime
    out.unlink()
    assert hashlib.sha256(weights.build_recognizer_weights().read_bytes()).hexdigest() == first
    assert [p.name for p in out.parent.iterdir()] == [out.name]
