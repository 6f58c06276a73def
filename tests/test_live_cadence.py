"""The detection cadence of the face stage (`--detect-every`, a live mode that keeps the frame rate): detection on one frame in N, the
tracker carrying every face in between; the first frame and scene cuts always detected.
Real footage: the Hamilton clip (stage, cuts at frames 20 and 82, profiles, a moving camera)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamanon.anonymizer import Anonymizer, Options
from streamanon.cadence import Cadence, thumb_difference
from streamanon.detect.base import box_iou
from streamanon.detect.multiscale import MultiScaleDetector
from streamanon.errors import InputError
from streamanon.stage import Stage
from streamanon.track.association import inside_share
from streamanon.types import Detections, Frame
from tests.conftest import hamilton_frames

FPS = 25.0


@pytest.fixture(scope="module")
def hamilton() -> list[np.ndarray]:
    return hamilton_frames(150)


def _run(frames: list[np.ndarray], every: int) -> tuple[Stage, list]:
    """The product's face stage (blur) at cadence ``every``: the boxes it covers per frame."""
    stage = Anonymizer(Options(method="blur", detect_every=every)).faces
    outs = []
    for i, im in enumerate(frames):
        outs.append(stage.track(Frame(im, i, i * 40, Fraction(1, 1000)), i / FPS))
    return stage, outs


def _reference(frames: list[np.ndarray]) -> list[Detections]:
    det = MultiScaleDetector()
    return [det(im) for im in frames]


def test_cadence_keeps_every_tracked_face_covered(hamilton: list[np.ndarray]) -> None:
    every = 3
    ref_raw = _reference(hamilton)  # the detector on every frame: the reference
    _, ref_out = _run(hamilton, 1)
    stage, outs = _run(hamilton, every)
    # A subset of frames is detected: one in 3, plus the first frame and the two cuts.
    assert stage.cadence.cuts == 2
    assert stage.cadence.detected <= len(hamilton) // every + 3
    assert stage.report()["detected_frames"] == stage.cadence.detected
    first: dict[int, int] = {}
    for i, o in enumerate(ref_out):
        for tid in o.track_id:
            first.setdefault(int(tid), i)
    shares, old_shares = [], []
    for i, d in enumerate(ref_raw):
        for face in d.xyxy[d.score >= 0.6]:
            share = inside_share(face, outs[i].xyxy)
            shares.append(share)
            iou = box_iou(face[None], ref_out[i].xyxy)[0]
            if iou.max() > 0.3 and i - first[int(ref_out[i].track_id[iou.argmax()])] >= 2 * every:
                old_shares.append(share)
    shares, old_shares = np.array(shares), np.array(old_shares)
    # Measured (2026-12-06): 195 faces, 181 at least 90 % inside a box, 191 at least 70 %;
    # every face tracked for two detection periods or more at least 40 % inside before the
    # head region's margins (the anonymizer covers 1.3x the box). A face new since the last
    # detection frame may be missed for up to `every` - 1 frames: the documented risk.
    assert len(shares) > 150
    assert (shares >= 0.9).mean() >= 0.92
    assert (shares >= 0.7).mean() >= 0.97
    assert old_shares.min() >= 0.4
    # The first frame and the frames of a cut are detected: all their faces are inside.
    for i in (0, 20):
        assert all(
            inside_share(f, outs[i].xyxy) >= 0.9 for f in ref_raw[i].xyxy[ref_raw[i].score >= 0.6]
        )


def test_cadence_of_one_detects_every_frame(hamilton: list[np.ndarray]) -> None:
    stage, outs = _run(hamilton[:5], 1)
    ref = _reference(hamilton[:5])
    assert stage.cadence.detected == 5 and "detected_frames" not in stage.report()
    for o, d in zip(outs, ref, strict=True):
        assert len(o) == int((d.score >= 0.5).sum())
    with pytest.raises(InputError, match="cadence"):
        Anonymizer(Options(method="blur", detect_every=0))


def test_cadence_thumbnails() -> None:
    a = np.zeros((18, 32, 3), np.uint8)
    assert thumb_difference(a, a) == 0.0
    assert thumb_difference(a, a + 30) == 30.0
    assert thumb_difference(a, np.zeros((24, 32, 3), np.uint8)) == float("inf")
    cad = Cadence(3)
    flat = np.full((90, 160, 3), 100, np.uint8)
    # frames 0 and 3 by the cadence, 4 by a cut (a new scene), then 7.
    scenes = [flat] * 4 + [flat + 60] * 4
    assert [cad.step(im) for im in scenes] == [True, False, False, True, True, False, False, True]
    assert (cad.detected, cad.cuts) == (4, 1)
    cad.reset()
    assert cad.step(flat) and cad.detected == 1


def test_scene_cuts_on_clips_the_threshold_was_not_chosen_on(shared_data: Path) -> None:
    """CUT_DIFF was chosen on the Hamilton clip; three other real clips joined end to end
    (a crowd, a talking head, a classroom, each shrunk to 640x360) are cut exactly at their
    joins, and nowhere inside them, with a cadence long enough that only cuts trigger."""
    import cv2

    from streamanon.io.video import VideoReader

    frames = []
    for name in ("dlib_MOT20-05-raw_even_shorter.mp4", "liveportrait_driving_d10.mp4",
                 "intel_sample_videos_classroom.mp4"):  # fmt: skip
        with VideoReader(shared_data / "videos" / name, audio=False) as r:
            for _, f in zip(range(30), r, strict=False):
                frames.append(cv2.resize(f.image, (640, 360), interpolation=cv2.INTER_AREA))
    cad = Cadence(1000)
    detected = [i for i, im in enumerate(frames) if cad.step(im)]
    assert detected == [0, 30, 60] and cad.cuts == 2
