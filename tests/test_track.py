"""FaceTracker: life cycle frame by frame, time-based motion, association, landmarks, reid,
and a real video run with CenterFace."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from streamanon.errors import InputError
from streamanon.track import FaceTracker
from streamanon.track.association import inside_share, match_iou
from streamanon.track.kalman import PointsFilter
from streamanon.track.landmarks import LandmarkSmoother
from streamanon.types import Detections


def dets(boxes, scores, landmarks68=None) -> Detections:
    return Detections(
        np.array(boxes, float).reshape(-1, 4), np.array(scores, float), landmarks68=landmarks68
    )


def face_shape(cx: float, cy: float, size: float) -> np.ndarray:
    """A face-like 68-point layout: outline and mouth on ellipses, eyes left and right."""
    a = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    pts = np.stack([np.cos(a) * 0.4, np.sin(a) * 0.5], axis=1)
    pts[36:42] = [-0.18, -0.1] + 0.05 * np.stack([np.cos(a[:6] * 11), np.sin(a[:6] * 11)], axis=1)
    pts[42:48] = [0.18, -0.1] + 0.05 * np.stack([np.cos(a[:6] * 11), np.sin(a[:6] * 11)], axis=1)
    pts[48:68] = [0.0, 0.25] + np.stack(
        [np.cos(a[:20] * 3.4) * 0.15, np.sin(a[:20] * 3.4) * 0.05], axis=1
    )
    return pts * size + [cx, cy]


def box_at(cx: float, cy: float, size: float = 60.0) -> list[float]:
    return [cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2]


def test_lifecycle_appear_coast_expire() -> None:
    tr = FaceTracker(coast_s=0.5)
    fps = 10
    seen = []
    for i in range(13):
        t = i / fps
        d = dets([box_at(100 + 5 * i, 100)], [0.9]) if i < 5 else Detections.empty()
        out = tr.update(d, t)
        ended = tr.pop_ended()
        seen.append(
            (len(out), bool(out.coasting.any()) if len(out) else None, [e.id for e in ended])
        )
    # Detected on frames 0-4 (t <= 0.4), coasting for exactly 0.5 s (t = 0.5 .. 0.9), gone at 1.0.
    assert [s[0] for s in seen] == [1] * 10 + [0] * 3
    assert [s[1] for s in seen[:10]] == [False] * 5 + [True] * 5
    assert [s[2] for s in seen] == [[]] * 10 + [[1]] + [[]] * 2  # reported once
    assert tr.tracks == []
    assert out.track_id.shape == (0,) and out.coasting.shape == (0,)  # typed even when empty


def test_coasting_box_follows_motion_and_grows() -> None:
    tr = FaceTracker(coast_s=1.0)
    for i in range(10):  # 100 px/s to the right
        tr.update(dets([box_at(100 + 10 * i, 200)], [0.9]), i / 10)
    last = tr.tracks[0].box.copy()
    out = tr.update(Detections.empty(), 1.2)  # 0.3 s after the last hit
    assert out.coasting.tolist() == [True]
    cx = (out.xyxy[0, 0] + out.xyxy[0, 2]) / 2
    assert abs(cx - (190 + 100 * 0.3)) < 8  # moved on at the tracked speed
    assert (out.wh[0] > (last[2:] - last[:2])).all()  # grown, never shrunk


def test_ids_stable_through_short_misses() -> None:
    tr = FaceTracker(coast_s=0.5)
    ids = set()
    for i in range(60):  # 30 fps, the detector misses 1 frame in 3 and a 0.3 s gap
        t = i / 30
        missed = i % 3 == 2 or 30 <= i < 39
        d = Detections.empty() if missed else dets([box_at(200 + 3 * i, 150 + i)], [0.8])
        out = tr.update(d, t)
        assert len(out) == 1  # detected or coasting, never dropped
        ids |= set(out.track_id.tolist())
    assert ids == {1}


def test_time_not_frame_count_drives_motion_and_expiry() -> None:
    """Same motion sampled at irregular times: the prediction is in pixels per second."""
    rng = np.random.default_rng(0)
    times = np.cumsum(rng.uniform(1 / 60, 1 / 8, size=25))
    tr = FaceTracker(coast_s=0.4)
    for t in times:
        tr.update(dets([box_at(100 + 200 * t, 300)], [0.9]), t)
    t_last = times[-1]
    out = tr.update(Detections.empty(), t_last + 0.25)
    pred = tr.tracks[0].box
    cx = (pred[0] + pred[2]) / 2
    assert abs(cx - (100 + 200 * (t_last + 0.25))) < 10
    # What is covered holds the prediction, stretched ahead along the motion.
    assert (out.xyxy[0, :2] <= pred[:2] + 1e-3).all() and (out.xyxy[0, 2:] >= pred[2:] - 1e-3).all()
    assert out.xyxy[0, 2] - pred[2] > 20
    # Expiry is in seconds whatever the frame rate: still there at +0.4 s, gone after.
    assert len(tr.update(Detections.empty(), t_last + 0.4)) == 1
    assert len(tr.update(Detections.empty(), t_last + 0.41)) == 0


def test_two_crossing_faces_keep_their_ids() -> None:
    tr = FaceTracker()
    history: dict[int, list[float]] = {}
    for i in range(40):
        t = i / 25
        a = box_at(100 + 8 * i, 200, 70)  # moving right
        b = box_at(420 - 8 * i, 210, 64)  # moving left, crossing around i = 20
        out = tr.update(dets([a, b], [0.9, 0.85]), t)
        assert len(out) == 2
        for tid, box in zip(out.track_id, out.xyxy, strict=True):
            history.setdefault(int(tid), []).append((box[0] + box[2]) / 2)
    assert set(history) == {1, 2}
    for xs in history.values():  # each id moved one way only: no swap at the crossing
        steps = np.diff(xs)
        assert (steps > 0).all() or (steps < 0).all()


def test_low_score_detections_extend_tracks_but_do_not_start_them() -> None:
    tr = FaceTracker(thresh=0.5, low_thresh=0.1, coast_s=0.3)
    tr.update(dets([box_at(100, 100)], [0.9]), 0.0)
    for i in range(1, 21):  # 2 s of weak detections, far longer than coast_s
        out = tr.update(dets([box_at(100 + i, 100), box_at(400, 400)], [0.3, 0.3]), i / 10)
        assert out.track_id.tolist() == [1]  # the lone weak box far away is not a face yet
        assert out.coasting.tolist() == [False]
    assert len(tr.update(dets([box_at(400, 400)], [0.05]), 2.1)) == 1  # below low_thresh: coasting
    assert tr.update(Detections.empty(), 2.1).coasting.tolist() == [True]


def test_weak_detection_where_a_face_just_was_is_covered() -> None:
    """A pole sweeps across a standing face (the demo, issue 22): the detector's box follows
    the part still visible, jumps right with the pole's edge and the track coasts away; the
    part that reappears on the left scores low and continues no track. With ``footprint`` it
    is covered because a face was detected there less than coast_s ago; without, it is not."""
    seen = [box_at(100, 100)] * 5  # the face, detected
    jump = [box_at(100 + 12 * k, 100 - 3 * k, 60 - 4 * k) for k in range(1, 7)]  # with the pole
    back = box_at(85, 100, 45)  # the left part, weak, far behind the drifting track

    def run(footprint: bool) -> Detections:
        tr = FaceTracker(thresh=0.5, low_thresh=0.1, coast_s=0.5, footprint=footprint)
        t = 0.0
        for b in seen:
            tr.update(dets([b], [0.9]), t)
            t += 0.04
        for b in jump:
            tr.update(dets([b], [0.2]), t)
            t += 0.04
        return tr.update(dets([back], [0.3]), t)

    def covers(out: Detections) -> bool:  # some output box holds the visible part
        b = np.array(back)
        return any((o[:2] <= b[:2] + 1).all() and (o[2:] >= b[2:] - 1).all() for o in out.xyxy)

    assert not covers(run(False))
    assert covers(run(True))
    # A weak box where no face has been is still not a face.
    tr = FaceTracker(thresh=0.5, low_thresh=0.1, footprint=True)
    tr.update(dets([box_at(100, 100)], [0.9]), 0.0)
    assert tr.update(
        dets([box_at(100, 100), box_at(400, 400)], [0.9, 0.3]), 0.04
    ).track_id.tolist() == [1]


def test_degenerate_and_off_frame_boxes_stay_finite() -> None:
    tr = FaceTracker(coast_s=0.5)
    boxes = [[50, 50, 50, 50], [-500, -400, -440, -340], [10, 10, 11, 12], [3000, 10, 3100, 5]]
    for i in range(5):
        out = tr.update(dets(boxes, [0.9] * 4), i / 30)
        assert np.isfinite(out.xyxy).all()
    for i in range(5, 15):
        out = tr.update(Detections.empty(), i / 30)
        assert np.isfinite(out.xyxy).all() and (out.wh >= 0).all()
        assert all(np.isfinite(t.box).all() for t in tr.tracks)
    with pytest.raises(InputError, match="NaN"):
        tr.update(dets([[np.nan, 0, 10, 10]], [0.9]), 1.0)
    with pytest.raises(InputError, match="non-decreasing"):
        tr.update(Detections.empty(), 0.1)


def test_landmarks_are_smoothed_and_ride_with_coasting_boxes() -> None:
    rng = np.random.default_rng(1)
    base = face_shape(140, 140, 80)
    tr = FaceTracker(coast_s=0.5)
    raw_err, smooth_err = [], []
    for i in range(60):
        noisy = base + rng.normal(0, 1.5, size=base.shape)
        out = tr.update(dets([[100, 100, 180, 180]], [0.9], noisy[None]), i / 30)
        if i >= 10:
            raw_err.append(np.abs(noisy - base).mean())
            smooth_err.append(np.abs(out.landmarks68[0] - base).mean())
    assert np.mean(smooth_err) < 0.6 * np.mean(raw_err)  # measured ~0.4
    out = tr.update(Detections.empty(), 2.1)
    assert out.coasting.tolist() == [True] and out.landmarks68.shape == (1, 68, 2)
    assert np.isfinite(out.landmarks68).all()


def test_landmarks_follow_a_moving_face() -> None:
    """No lag build-up: a face moving at 300 px/s keeps its landmarks within a few pixels."""
    tr = FaceTracker()
    pts = face_shape(40, 40, 80)
    for i in range(30):
        dx = 10 * i
        out = tr.update(dets([[dx, 0, dx + 80, 80]], [0.9], (pts + [dx, 0])[None]), i / 30)
    assert np.abs(out.landmarks68[0] - (pts + [dx, 0])).mean() < 2.0


def test_tracks_api_survives_frames() -> None:
    tr = FaceTracker()
    out = tr.update(dets([box_at(50, 50)], [0.9]), 0.0)
    track = tr.get(int(out.track_id[0]))
    assert track is not None and track.hits == 1 and track.first_t == 0.0
    tr.update(dets([box_at(52, 50)], [0.9]), 0.04)
    assert tr.get(track.id) is track and track.hits == 2
    assert tr.get(999) is None


def test_reid_gives_a_returning_face_its_old_id() -> None:
    # Stand-in recognizer: the mean colour inside the box (faces are flat coloured squares).
    def reid(image: np.ndarray, d: Detections) -> np.ndarray:
        out = []
        for x1, y1, x2, y2 in d.xyxy.astype(int):
            e = np.zeros(128)
            e[:3] = image[y1:y2, x1:x2].reshape(-1, 3).mean(axis=0) / 100
            out.append(e)
        return np.array(out)

    def frame(color: tuple[int, int, int] | None) -> np.ndarray:
        img = np.zeros((200, 400, 3), np.uint8)
        if color is not None:
            img[50:110, 50:110] = color
        return img

    tr = FaceTracker(coast_s=0.2, reid=reid, reid_window_s=3.0)
    box = [50, 50, 110, 110]
    first = tr.update(dets([box], [0.9]), 0.0, frame((200, 0, 0))).track_id[0]
    tr.update(dets([box], [0.9]), 0.1, frame((200, 0, 0)))
    tr.update(Detections.empty(), 0.4, frame(None))  # the first look that misses: coasts
    tr.update(Detections.empty(), 0.5, frame(None))  # ended, held for reid
    assert tr.pop_ended() == []
    back = tr.update(dets([box], [0.9]), 1.5, frame((200, 0, 0))).track_id[0]
    assert back == first
    tr.update(Detections.empty(), 1.9, frame(None))
    tr.update(Detections.empty(), 2.0, frame(None))
    other = tr.update(dets([box], [0.9]), 2.5, frame((0, 0, 200))).track_id[0]
    assert other != first  # a different face gets a new id
    tr.update(Detections.empty(), 6.0, frame(None))
    assert sorted(t.id for t in tr.pop_ended()) == sorted([int(first), int(other)])


def test_match_iou_rejects_weak_pairs() -> None:
    iou = np.array([[0.9, 0.1], [0.2, 0.25]])
    pairs, free_r, free_c = match_iou(iou, 0.3)
    assert pairs.tolist() == [[0, 0]] and free_r.tolist() == [1] and free_c.tolist() == [1]
    with pytest.raises(ValueError, match="NaN"):
        match_iou(np.array([[np.nan]]), 0.3)


def test_points_filter_converges_to_constant_velocity() -> None:
    f = PointsFilter(np.zeros((3, 2)), meas_std=2.0, init_vel_std=100.0)
    for i in range(1, 40):
        f.predict(0.05, accel_std=600.0)
        f.update(np.full((3, 2), 50.0 * i * 0.05), meas_std=2.0)
    np.testing.assert_allclose(f.vel, 50.0, rtol=0.05)


# -- real video ---------------------------------------------------------------------------


def _run_video(path: Path, max_frames: int, input_size: int | None) -> tuple[set[int], list[int]]:
    import av

    from streamanon.registry import make_detector

    det = make_detector("centerface", landmarks=False, input_size=input_size)
    tracker = FaceTracker()
    ids: set[int] = set()
    counts = []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for k, frame in enumerate(container.decode(stream)):
            if k >= max_frames:
                break
            out = tracker.update(
                det(frame.to_ndarray(format="bgr24")), float(frame.pts * stream.time_base)
            )
            ids |= set(out.track_id.tolist())
            counts.append(len(out))
    return ids, counts


def test_real_video_classroom_keeps_four_ids(shared_data: Path) -> None:
    ids, counts = _run_video(shared_data / "videos" / "intel_sample_videos_classroom.mp4", 45, None)
    assert len(counts) == 45
    assert len(ids) == 4  # 4 seated people, measured: ids {1, 2, 3, 4} over all 45 frames
    assert min(counts) >= 4


def test_real_video_talking_head_keeps_one_id(shared_data: Path) -> None:
    ids, counts = _run_video(shared_data / "videos" / "liveportrait_driving_d3.mp4", 60, 320)
    assert len(ids) == 1 and min(counts) == 1


def test_landmark_smoother_follows_head_moves_and_expressions() -> None:
    """Fast head motion (turn + move) is followed closely; a mouth opening settles in ~0.1 s."""
    rng = np.random.default_rng(3)
    sm = None
    lag = []
    for i in range(60):
        t = i / 30
        truth = face_shape(200 + 400 * t, 200, 100 + 30 * t)  # 400 px/s, growing
        ang = 0.5 * np.sin(3 * t)  # head roll up to ~30 degrees
        c = truth.mean(axis=0)
        truth = (truth - c) @ np.array(
            [[np.cos(ang), -np.sin(ang)], [np.sin(ang), np.cos(ang)]]
        ).T + c
        noisy = truth + rng.normal(0, 1.0, truth.shape)
        if sm is None:
            sm = LandmarkSmoother(noisy, t)
            continue
        lag.append(np.abs(sm.update(noisy, t) - truth).mean())
    assert np.mean(lag[10:]) < 2.0
    # Mouth opens by 10% of the face in one step.
    face = face_shape(0, 0, 100)
    sm = LandmarkSmoother(face, 0.0)
    for i in range(1, 10):
        sm.update(face, i / 30)
    opened = face.copy()
    opened[57:63] += [0, 10]
    for i in range(10, 14):
        out = sm.update(opened, i / 30)
    assert np.abs(out[57:63] - opened[57:63]).max() < 2.5


def test_moving_face_is_covered_ahead_of_its_motion() -> None:
    """A head crossing the frame at 600 px/s (20 px per frame at 30 fps): the covered box
    reaches one frame's travel ahead of the detection and half of it behind (motion blur)."""
    tr = FaceTracker()
    for i in range(10):
        out = tr.update(dets([box_at(100 + 20 * i, 200)], [0.9]), i / 30)
    det = box_at(100 + 20 * 9, 200)
    assert out.xyxy[0, 2] >= det[2] + 15  # ahead, about 20 px
    assert out.xyxy[0, 0] <= det[0] - 7  # behind, about 10 px
    assert abs(out.xyxy[0, 1] - det[1]) < 3  # no vertical motion, no vertical growth


def test_stretch_along_motion_is_pure_geometry() -> None:
    from streamanon.track.tracker import stretch_along_motion

    b = np.array([[10.0, 10.0, 20.0, 20.0], [0, 0, 4, 4]])
    v = np.array([[100.0, -50.0], [0.0, 0.0]])
    out = stretch_along_motion(b, v, 0.1)
    assert np.allclose(out[0], [10 - 5, 10 - 5, 20 + 10, 20 + 2.5])
    assert np.allclose(out[1], b[1])


def test_a_face_lost_behind_another_coasts_longer() -> None:
    """Two people: B stands behind A and is lost there; a third face C is lost in the open.
    B (its box at least half inside A's detected box) is covered for ``behind_coast_s``,
    C only for ``coast_s``, and B's coasting box ends once that time is over."""
    tr = FaceTracker(coast_s=0.5, behind_coast_s=1.5)
    fps = 10
    alive: dict[str, list[bool]] = {"B": [], "C": []}
    for i in range(25):
        t = i / fps
        boxes, scores = [box_at(300, 200, 80)], [0.9]  # A, always detected
        if i < 5:
            boxes += [box_at(290, 205, 60), box_at(600, 200)]  # B, behind A; C
            scores += [0.9, 0.9]
        out = tr.update(dets(boxes, scores), t)
        for name, ref in (("B", box_at(290, 205, 60)), ("C", box_at(600, 200))):
            alive[name].append(
                any(inside_share(np.array(ref), b[None]) >= 0.9 for b in out.xyxy[out.coasting])
            )
    # Last seen at t = 0.4: C coasts to t = 0.9, B (behind A) to t = 1.9.
    assert alive["C"][5:10] == [True] * 5 and not any(alive["C"][10:])
    assert all(alive["B"][5:20]) and not any(alive["B"][20:])
    # A box deep inside a face 16x its area is a part of that face (its old track), not a
    # person behind it: it ends at coast_s.
    tr = FaceTracker(coast_s=0.5, behind_coast_s=1.5)
    for i in range(12):
        boxes = [box_at(300, 200, 80)] + ([box_at(300, 190, 20)] if i < 5 else [])
        out = tr.update(dets(boxes, [0.9] * len(boxes)), i / fps)
    assert len(out) == 1  # t = 1.1: only A
    plain = FaceTracker(coast_s=0.5)  # the default: no longer coast behind a face
    assert plain.behind_coast_s == plain.coast_s


def test_demo_face_coming_out_from_behind_another_is_covered() -> None:
    """examples/demo.mp4, frame 108: a man lost behind a nearer face for 0.6 s comes out half
    visible one frame before the detector finds him again; his region must be covered."""
    from streamanon.anonymizer import Anonymizer, Options
    from streamanon.io.video import VideoReader
    from streamanon.types import Frame

    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.mp4"
    anon = Anonymizer(Options(method="blur"))
    with VideoReader(demo, audio=False) as r:
        for i, f in zip(range(109), r, strict=False):
            frame = anon.track(Frame(f.image, i, i * 40, Fraction(1, 1000)))
    assert frame.index == 108
    man = np.array([240.0, 280.0, 312.0, 362.0])  # where the detector finds him on frame 109
    assert inside_share(man, frame.faces.xyxy) >= 0.95


def test_a_gap_of_unlooked_frames_does_not_end_a_track() -> None:
    """Frames dropped under load, or between a cadence's detections, are not looks: a track
    past its coasting time still coasts until one frame the detector ran on misses it."""
    tr = FaceTracker(coast_s=0.5)
    for i in range(5):
        tr.update(dets([box_at(100 + 5 * i, 100)], [0.9]), i / 10)
    assert len(tr.update(Detections.empty(), 1.0, looked=False)) == 1  # not looked: kept
    out = tr.update(Detections.empty(), 1.1)  # the first look after the gap misses it
    assert len(out) == 1 and out.coasting.all()
    assert len(tr.update(Detections.empty(), 1.2)) == 0  # the second look ends it
    assert [e.id for e in tr.pop_ended()] == [1]

    tr = FaceTracker(coast_s=0.5)
    tr.update(dets([box_at(100, 100)], [0.9]), 0.0)
    assert len(tr.update(Detections.empty(), 3.0)) == 0  # an outage, not a gap: ended


def test_demo_face_after_dropped_frames_is_covered() -> None:
    """examples/demo.mp4 as a busy live run sees it: frames 23-35 dropped, then frame 36, where
    the woman going behind the pole scores 0.41 (under --thresh) and no footprint is recent.
    Before the fix her face went out uncovered (found again at 0.6 by CenterFace on the
    re-encoded output)."""
    from streamanon.anonymizer import Anonymizer, Options
    from streamanon.io.video import VideoReader
    from streamanon.registry import make_detector
    from streamanon.types import Frame

    demo = Path(__file__).resolve().parents[1] / "examples" / "demo.mp4"
    anon = Anonymizer(Options(method="blur"))
    kept = {0, 1, 2, 5, 8, 12, 15, 18, 22, 36}
    with VideoReader(demo, audio=False) as r:
        for i, f in zip(range(37), r, strict=False):
            if i in kept:
                frame = anon.track(Frame(f.image, i, i * 40, Fraction(1, 1000)))
                image = f.image
    assert frame.index == 36
    weak = make_detector("centerface", thresh=0.3, low_thresh=0.3, landmarks=False)(image)
    woman = weak.xyxy[(weak.xyxy[:, 0] < 280) & (weak.score < 0.5)]
    assert len(woman) == 1  # the face at 0.41, left of the pole
    assert inside_share(woman[0], frame.faces.xyxy) >= 0.95
