"""`streamanon bench` pieces: plain transcode timing, the deface baseline, recall."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamanon.eval import bench
from streamanon.eval.deface_baseline import blur_faces, deface_available, ellipse_mask
from tests.conftest import needs_shared


def test_ellipse_mask_is_the_inscribed_ellipse():
    m = ellipse_mask(40, 60)
    assert m.shape == (40, 60)
    assert m[20, 30] and not m[0, 0] and not m[39, 59]
    assert m.sum() == pytest.approx(np.pi * 20 * 30, rel=0.05)
    assert ellipse_mask(1, 10).sum() == 0


def test_blur_faces_changes_only_the_box():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    out = img.copy()
    blur_faces(out, np.array([[40, 30, 80, 70, 0.9]]), mask_scale=1.0)
    changed = np.any(out != img, axis=2)
    assert changed[50, 60]
    assert not changed[:30].any() and not changed[:, :40].any() and not changed[71:].any()


@pytest.fixture(scope="module")
def face_clip(tmp_path_factory):
    """12 frames of a real face drifting over a grey background, 320x240."""
    from fractions import Fraction

    from streamanon.io.video import VideoWriter
    from streamanon.types import Frame

    face = cv2.imread(str(needs_shared("faces", "identities", "fr_obama", "obama.jpg")))
    face = cv2.resize(face, (120, 150))
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    w = VideoWriter(path, None, fps=Fraction(12), crf=18, preset="ultrafast")
    for i in range(12):
        img = np.full((240, 320, 3), 128, np.uint8)
        img[40:190, 60 + 5 * i : 180 + 5 * i] = face
        w.write(Frame(img, i, i, Fraction(1, 12)))
    w.close()
    return path


def test_plain_transcode_counts_frames_and_times_stages(face_clip, tmp_path):
    e = bench.transcode(face_clip, tmp_path / "plain.mp4")
    assert e.frames == 12 and e.fps > 0
    assert {"decode", "encode"} <= set(e.ms_per_frame)


@pytest.mark.skipif(not deface_available(), reason="deface is not installed")
def test_deface_covers_the_face_and_recall_sees_it(face_clip, tmp_path):
    plain = bench.transcode(face_clip, tmp_path / "plain.mp4")
    job = bench.Deface()
    d = bench.transcode(face_clip, tmp_path / "deface.mp4", job)
    assert job.stage.faces >= 10  # the face is found in (almost) every frame
    r = bench.measure_coverage(
        plain.output, {"deface": d.output, "none": plain.output}, samples=4, mmod_upsample=None
    )
    assert r["deface"]["reference_faces"] == 4
    assert r["deface"]["recall"] == 1.0
    assert r["none"]["recall"] == 0.0  # the untouched transcode covers nothing
