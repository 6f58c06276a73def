"""The tracker's fast paths (issue 23) give the answers of the general code they replace, on
real detections: the 3-float box filter vs filterpy's 8-state filter, the footprint and
matching IoU vs `box_iou`."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.detect.base import box_iou
from streamanon.detect.multiscale import MultiScaleDetector
from streamanon.track import FaceTracker
from streamanon.track.association import iou_matrix
from streamanon.track.kalman import BoxFilter, FilterpyBoxFilter


@pytest.fixture(scope="module")
def hamilton_dets(shared_data: Path) -> list:
    from streamanon.io.video import VideoReader

    det = MultiScaleDetector()
    out = []
    clip = shared_data / "videos" / "face_recognition_short_hamilton_clip.mp4"
    with VideoReader(clip, audio=False) as r:
        for _, f in zip(range(60), r, strict=False):
            out.append((det(f.image), det.camera_shift))
    return out


def test_box_filter_matches_filterpy(hamilton_dets: list) -> None:
    """Same tracks, same boxes, same velocities on a real clip (cuts, a moving camera)."""
    runs = []
    for factory in (BoxFilter, FilterpyBoxFilter):
        tracker = FaceTracker(coast_s=0.5, footprint=True, box_filter=factory)
        outs = [tracker.update(d, i / 25, camera_shift=s) for i, (d, s) in enumerate(hamilton_dets)]
        vel = [tr.filter.velocity.copy() for tr in tracker.tracks]
        runs.append((outs, vel))
    (fast, fast_v), (ref, ref_v) = runs
    assert sum(len(o) for o in ref) > 60
    for a, b in zip(fast, ref, strict=True):
        assert np.array_equal(a.track_id, b.track_id)
        assert np.allclose(a.xyxy, b.xyxy, atol=1e-3)
    assert np.allclose(fast_v, ref_v, atol=1e-6)


def test_iou_matrix_is_box_iou(shared_data: Path) -> None:
    im = cv2.imread(str(shared_data / "groups" / "ultralight_crowd" / "11.jpg"))
    d = MultiScaleDetector(input_size=None)(cv2.resize(im, None, fx=2, fy=2))
    assert len(d) > 20
    a, b = d.xyxy, d.xyxy[::-1] + np.float32([3, -2, 5, 1])
    assert np.array_equal(iou_matrix(a, b), box_iou(a, b))
    flat = np.array([[5, 5, 5, 9], [0, 0, 10, 10]], np.float32)
    assert np.array_equal(iou_matrix(flat, flat), box_iou(flat, flat))
    assert iou_matrix(np.zeros((0, 4)), a).shape == (0, len(a))


def test_inside_share_of_a_box() -> None:
    from streamanon.track.association import inside_share

    face = np.array([10.0, 10.0, 30.0, 30.0])  # 20 x 20
    assert inside_share(face, np.empty((0, 4))) == 0.0
    assert inside_share(face, np.array([[0, 0, 100, 100]])) == 1.0
    # Half of it in the first box, a quarter in the second: the best single box counts.
    assert inside_share(face, np.array([[0, 0, 20, 40], [20, 20, 40, 40]])) == 0.5
    assert inside_share(face, np.array([[40, 40, 50, 50]])) == 0.0


def test_behind_faces_is_the_per_box_rule(shared_data: Path) -> None:
    """The tracker decides "lost behind another face" for all lost tracks in one array
    operation; on a real crowd's boxes it must say what the per-box rule says (half or more of
    the box inside one detected box at most 4x its area)."""
    from streamanon.track.association import inside_share
    from streamanon.track.tracker import behind_faces

    im = cv2.imread(str(shared_data / "groups" / "ultralight_crowd" / "11.jpg"))
    d = MultiScaleDetector(input_size=None)(cv2.resize(im, None, fx=2, fy=2))
    front = d.xyxy[::2]
    rng = np.random.default_rng(0)
    # Lost faces: the other half of the crowd, some moved next to a front face, some shrunk
    # inside one (a small face behind a near one), some far larger than any.
    lost = np.concatenate([
        d.xyxy[1::2],
        front + rng.uniform(-8, 8, front.shape).astype(np.float32),
        (front[:, :2].repeat(2, axis=1) + np.float32([2, 2, 12, 12])),
        front + np.float32([-40, -40, 40, 40]),
    ])  # fmt: skip

    def rule(box: np.ndarray) -> bool:
        area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
        sizes = (front[:, 2] - front[:, 0]) * (front[:, 3] - front[:, 1])
        return inside_share(box, front[sizes <= 4.0 * area]) >= 0.5

    want = np.array([rule(b) for b in lost])
    got = behind_faces(lost, front)
    assert 10 < want.sum() < len(lost) - 10  # both answers occur
    assert np.array_equal(got, want)
    assert behind_faces(np.zeros((0, 4)), front).shape == (0,)
    assert not behind_faces(lost[:3], np.zeros((0, 4))).any()
