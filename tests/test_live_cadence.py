"""CadenceDetector (a live mode that keeps the frame rate): detection on one frame in N, the
tracker carrying every face in between; the first frame and scene cuts always detected.
Real footage: the Hamilton clip (stage, cuts at frames 20 and 82, profiles, a moving camera)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from streamanon.detect.base import box_iou
from streamanon.detect.cadence import CadenceDetector
from streamanon.detect.multiscale import MultiScaleDetector
from streamanon.errors import InputError
from streamanon.track import FaceTracker
from streamanon.track.association import inside_share
from streamanon.types import Detections

FPS = 25.0


@pytest.fixture(scope="module")
def hamilton(shared_data: Path) -> list[np.ndarray]:
    from streamanon.io.video import VideoReader

    clip = shared_data / "videos" / "face_recognition_short_hamilton_clip.mp4"
    with VideoReader(clip, audio=False) as r:
        return [f.image.copy() for _, f in zip(range(150), r, strict=False)]


def _run(frames: list[np.ndarray], every: int) -> tuple[CadenceDetector, list, list]:
    det = CadenceDetector(MultiScaleDetector(), every=every)
    tracker = FaceTracker(coast_s=0.5, footprint=True)
    raw, outs = [], []
    for i, im in enumerate(frames):
        d = det(im)
        raw.append(d)
        outs.append(tracker.update(d, i / FPS, camera_shift=det.camera_shift))
    return det, raw, outs


def test_cadence_keeps_every_tracked_face_covered(hamilton: list[np.ndarray]) -> None:
    every = 3
    _, ref_raw, ref_out = _run(hamilton, 1)  # the detector on every frame: the reference
    det, raw, outs = _run(hamilton, every)
    # A subset of frames is detected: one in 3, plus the first frame and the two cuts.
    assert det.stats["cuts"] == 2
    assert det.stats["detections"] <= len(hamilton) // every + 3
    assert sum(len(d) == 0 for d in raw) >= len(hamilton) // 2
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


def test_cadence_of_one_is_the_detector(hamilton: list[np.ndarray]) -> None:
    det = CadenceDetector(MultiScaleDetector(), every=1)
    ref = MultiScaleDetector()
    for im in hamilton[:5]:
        a, b = det(im), ref(im)
        assert np.array_equal(a.xyxy, b.xyxy)
        assert det.camera_shift == ref.camera_shift
    with pytest.raises(InputError):
        CadenceDetector(ref, every=0)
    assert isinstance(CadenceDetector(ref, every=2)(hamilton[0]), Detections)
