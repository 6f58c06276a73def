"""The delegate bank: the shipped file, building one from real faces, the CLI, head pose."""

from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from streamanon.visual import dlib_models
from streamanon.visual.align import GEN_SIZE, TEMPLATE68, align_matrix, transform_points
from streamanon.visual.bank import (
    BankError,
    DelegateBank,
    build_bank,
    default_bank,
    default_bank_path,
)
from streamanon.visual.bank_cli import bank_main
from streamanon.visual.pose import face_pose, head_pose
from tests.conftest import needs_shared

SFHQ = ("faces", "synthetic", "sfhq")


def test_shipped_bank_is_small_licensed_and_consistent():
    path = default_bank_path()
    assert path.is_file(), "engines/bank.npz is part of the repository"
    assert path.stat().st_size <= 25 * 2**20
    bank = default_bank()
    n = len(bank)
    assert n >= 500
    assert set(np.unique(bank.licenses)) == {
        "MIT (SelfishGene/SFHQ-dataset @ 4c898bc7; synthetic faces)"
    }
    # Only SFHQ synthetic faces: no scraped/GPL "fakefaces", no real person.
    assert all(s.startswith("sfhq_") for s in bank.sources)
    assert len(set(bank.sources)) == n
    assert np.isfinite(bank.embeddings).all() and np.isfinite(bank.pose).all()
    assert (np.abs(bank.pose[:, :2]) < 60).all()
    # Landmarks are in the canonical crop: stable points near the template.
    assert bank.landmarks.min() > -5 and bank.landmarks.max() < GEN_SIZE + 5
    mean_shape = bank.landmarks.mean(0) / GEN_SIZE
    assert np.abs(mean_shape - TEMPLATE68).max() < 0.03
    for i in (0, n // 2, n - 1):
        crop = bank.crop(i)
        assert crop.shape == (GEN_SIZE, GEN_SIZE, 3) and crop.dtype == np.uint8
        mask = bank.mask(i)
        assert mask.shape == (GEN_SIZE, GEN_SIZE) and 0.25 < mask.mean() < 0.6
    # Distinct faces have distinct embeddings (no duplicated rows).
    d = np.linalg.norm(bank.embeddings[:, None] - bank.embeddings[None], axis=2)
    assert np.sort(d, axis=1)[:, 1].min() > 0.05


def test_shipped_bank_matches_its_source_images():
    # Recompute two rows from the original files: the shipped bank is not stale.
    root = needs_shared(*SFHQ)
    bank = default_bank()
    for i in (3, 400):
        bgr = cv2.imread(str(root / bank.sources[i]))
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        pts, shape = dlib_models.landmarks68(rgb, dlib_models.detect_largest(rgb))
        np.testing.assert_allclose(
            transform_points(pts, align_matrix(pts)), bank.landmarks[i], atol=1e-3
        )
        np.testing.assert_allclose(dlib_models.embedding(rgb, shape), bank.embeddings[i], atol=1e-4)
        np.testing.assert_allclose(face_pose(pts), bank.pose[i], atol=0.05)


def test_build_round_trip_and_non_face_skipped(tmp_path):
    root = needs_shared(*SFHQ)
    faces = tmp_path / "faces"
    (faces / "sub").mkdir(parents=True)
    for name in ("sfhq_sample_1x2_000.jpg", "sfhq_variability_age_003.jpg"):
        shutil.copy(root / name, faces / "sub" / name)
    cv2.imwrite(str(faces / "grey.png"), np.full((256, 256, 3), 128, np.uint8))
    (faces / "notes.txt").write_text("not an image")
    out = tmp_path / "bank.npz"
    report = build_bank(faces, out, "MIT (test)")
    assert len(report.bank) == 2 and report.hog_misses == 1
    assert len(report.skipped) == 1 and "grey.png" in report.skipped[0]
    loaded = DelegateBank.load(out)
    assert list(loaded.sources) == [
        "sub/sfhq_sample_1x2_000.jpg",
        "sub/sfhq_variability_age_003.jpg",
    ]
    np.testing.assert_array_equal(loaded.embeddings, report.bank.embeddings)
    np.testing.assert_array_equal(loaded.landmarks, report.bank.landmarks)
    np.testing.assert_array_equal(loaded.crop(1), report.bank.crop(1))
    assert loaded.hires_size == 2 * GEN_SIZE
    np.testing.assert_array_equal(loaded.crop(1, 256), report.bank.crop(1, 256))
    assert not list(tmp_path.glob("*.tmp*"))  # atomic write left nothing behind


def test_high_resolution_crops_are_the_same_faces_at_twice_the_detail():
    """Large faces render from the 256² crops: aligned like the 128² ones, and sharper."""
    bank = default_bank()
    assert bank.hires_size == 2 * GEN_SIZE and bank.hires_jpeg is not None
    detail = lambda im: cv2.Laplacian(cv2.cvtColor(im, cv2.COLOR_BGR2GRAY), cv2.CV_32F).std()  # noqa: E731
    gains = []
    for i in range(0, len(bank), 25):
        big, small = bank.crop(i, 256), bank.crop(i)
        assert big.shape == (256, 256, 3)
        down = cv2.resize(big, (GEN_SIZE, GEN_SIZE), interpolation=cv2.INTER_AREA)
        assert cv2.PSNR(down, small) > 28  # the same aligned face
        up = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC)
        gains.append(detail(big) / detail(up))
        np.testing.assert_allclose(bank.landmarks_at(i, 256), 2 * bank.landmarks[i], atol=1e-4)
    # Real detail, not an upsampled copy (the sources are 256² tiles of mixed quality).
    assert min(gains) > 1.1 and np.mean(gains) > 1.2
    # A bank without them still serves any size (resized from its own crops).
    plain = DelegateBank(
        bank.embeddings, bank.landmarks, bank.pose, bank.sources, bank.licenses, bank.jpeg,
        bank.jpeg_offsets,
    )  # fmt: skip
    assert plain.crop(0, 256).shape == (256, 256, 3)


def test_cli_build_and_info(tmp_path, capsys):
    root = needs_shared(*SFHQ)
    out = tmp_path / "b.npz"
    rc = bank_main(["build", str(root), "-o", str(out), "--license", "MIT", "--limit", "2", "-q"])
    assert rc == 0 and out.is_file()
    assert "2 faces" in capsys.readouterr().out
    assert bank_main(["info", str(out)]) == 0
    assert "licences: MIT (2)" in capsys.readouterr().out


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert (
        bank_main(
            ["build", str(tmp_path / "nope"), "-o", str(tmp_path / "b.npz"), "--license", "MIT"]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert err.startswith("streamanon bank: error: faces folder not found") and "\n" not in err
    assert bank_main(["info", str(tmp_path / "missing.npz")]) == 2


def test_load_rejects_missing_corrupt_and_stale_banks(tmp_path):
    with pytest.raises(BankError, match="not found"):
        DelegateBank.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(BankError, match="cannot read"):
        DelegateBank.load(bad)
    # A bank made with another alignment template must be rebuilt, not silently misused.
    with np.load(default_bank_path()) as z:
        data = {k: z[k] for k in z.files}
    data["template"] = data["template"] + 0.01
    stale = tmp_path / "stale.npz"
    np.savez(stale, **data)
    with pytest.raises(BankError, match="another alignment template"):
        DelegateBank.load(stale)
    with pytest.raises(BankError, match="licence"):
        build_bank(tmp_path, None, "  ")


def _pose_inputs(img: np.ndarray) -> np.ndarray:
    rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    pts, _ = dlib_models.landmarks68(rgb, dlib_models.detect_largest(rgb))
    return pts


@pytest.mark.parametrize("pose_fn", ["head_pose", "face_pose"])
def test_head_pose_on_real_faces_and_mirror_images(pose_fn):
    path = needs_shared(*SFHQ, "sfhq_variability_expression_000.jpg")
    bgr = cv2.imread(str(path))
    poses = []
    for img in (bgr, np.ascontiguousarray(bgr[:, ::-1])):
        pts = _pose_inputs(img)
        poses.append(head_pose(pts, img.shape[:2]) if pose_fn == "head_pose" else face_pose(pts))
    (yaw, pitch, roll), (yaw_m, pitch_m, roll_m) = poses
    assert yaw > 10  # this face is turned: its nose is right of the eye midpoint
    assert yaw_m == pytest.approx(-yaw, abs=2.0)
    assert pitch_m == pytest.approx(pitch, abs=2.0)
    assert roll_m == pytest.approx(-roll, abs=2.0)


def test_face_pose_ignores_framing_and_reads_roll():
    # The same face small in a corner of a big frame, and rotated by 15 degrees.
    path = needs_shared(*SFHQ, "sfhq_variability_expression_002.jpg")
    face = cv2.imread(str(path))
    big = np.zeros((900, 1600, 3), np.uint8)
    big[600:856, 1300:1556] = face
    a, b = face_pose(_pose_inputs(face)), face_pose(_pose_inputs(big))
    np.testing.assert_allclose(a, b, atol=2.0)
    # head_pose, by contrast, depends on where the face sits (the reason face_pose exists).
    pts_big = _pose_inputs(big)
    assert abs(head_pose(pts_big, big.shape[:2])[1] - a[1]) > 5
    rot = cv2.getRotationMatrix2D((128, 128), -15, 1.0)  # clockwise on screen
    turned = cv2.warpAffine(face, rot, (256, 256), borderMode=cv2.BORDER_REPLICATE)
    c = face_pose(_pose_inputs(turned))
    assert c[2] - a[2] == pytest.approx(15.0, abs=2.0)
    np.testing.assert_allclose(c[:2], a[:2], atol=3.0)  # dlib landmark noise on a resampled face
