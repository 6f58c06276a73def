"""Faces at any roll (`--orientations`, streamanon/detect/orientations.py) on a real talking
head turned upside down and on its side, judged by the coverage reference on the frames
turned back upright (the reference detectors, like the product's, look for upright faces)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamanon.anonymize.regions import head_boxes_xyxy, roll_side
from streamanon.anonymizer import Anonymizer, Options
from streamanon.detect.base import box_iou
from streamanon.detect.orientations import (
    TurnedDetector,
    detections_back,
    is_auto,
    parse_orientations,
    points_back,
    probe_turns,
    turn_image,
)
from streamanon.errors import InputError
from streamanon.registry import make_detector
from tests.conftest import needs_shared

# How to turn an upright frame so that its face is rolled: the inverse of the turn that
# puts it back upright (angle a clockwise is undone by 360 - a).
UNDO = {0: 0, 90: 270, 180: 180, 270: 90}


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    from streamanon.io.video import VideoReader

    path = needs_shared("videos", "liveportrait_driving_d3.mp4")
    with VideoReader(path, audio=False) as r:
        return [f.image.copy() for _, f in zip(range(24), r, strict=False)]


def test_parse_orientations() -> None:
    assert parse_orientations("0") == (0,)
    assert parse_orientations("180") == (0, 180)
    assert parse_orientations("all") == (0, 90, 180, 270)
    assert parse_orientations([270, 90, 90]) == (0, 90, 270)
    assert parse_orientations("auto") == (0,) and is_auto("auto") and not is_auto("0")
    for bad in ("45", "up", ""):
        with pytest.raises(InputError):
            parse_orientations(bad)


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_points_back_undoes_the_turn(angle: int) -> None:
    """A pixel's corners turned with OpenCV and mapped back land where they started."""
    img = np.zeros((30, 50, 3), np.uint8)
    img[7, 11] = 255
    turned = turn_image(img, angle)
    ys, xs = np.nonzero(turned[..., 0])
    corners = np.array([[xs[0], ys[0]], [xs[0] + 1, ys[0] + 1]], np.float32)
    back = points_back(corners, angle, img.shape)
    assert np.allclose(np.sort(back[:, 0]), [11, 12]) and np.allclose(np.sort(back[:, 1]), [7, 8])


@pytest.mark.parametrize("angle", [90, 180, 270])
def test_a_rolled_face_is_found_where_it_is(frames, angle: int) -> None:
    """The face of a real frame rolled by a quarter/half turn: the upright detector misses it
    (or boxes it badly), the turned detector finds it at the upright face's box turned."""
    image = frames[0]
    upright = make_detector(landmarks=False)(image)
    face = upright[upright.score >= 0.5]
    assert len(face) == 1
    rolled = turn_image(image, UNDO[angle])
    truth = detections_back(face, angle, rolled.shape)  # where the face is in `rolled`
    found = TurnedDetector(lambda: make_detector(landmarks=True), (0, angle))(rolled)
    sure = found[found.score >= 0.5]
    assert len(sure) >= 1
    assert box_iou(truth.xyxy, sure.xyxy).max() >= 0.7
    # The landmarks come back in the rolled frame's pixels too: the head's top is where the
    # turn put it (1 right, 2 down, 3 left).
    best = int(box_iou(truth.xyxy, sure.xyxy).argmax())
    assert roll_side(sure.landmarks5[best : best + 1])[0] == {90: 3, 180: 2, 270: 1}[angle]
    lm68 = sure.landmarks68[best]
    assert np.isfinite(lm68).all()
    x1, y1, x2, y2 = sure.xyxy[best]
    inside = (
        (lm68[:, 0] >= x1 - 5)
        & (lm68[:, 0] <= x2 + 5)
        & (lm68[:, 1] >= y1 - 5)
        & (lm68[:, 1] <= y2 + 5)
    )
    assert inside.mean() >= 0.9


def test_an_upside_down_head_box_covers_the_hairline(frames) -> None:
    """The head box of an upside-down face grows downward (its hairline), as an upright
    face's grows upward, and is never smaller than the upright rule's box."""
    image = frames[0]
    det = make_detector(landmarks=False)(image)
    det = det[det.score >= 0.5]
    up = head_boxes_xyxy(det.xyxy, 1.3, det.landmarks5)[0]
    flipped = detections_back(det, 180, image.shape)
    box = head_boxes_xyxy(flipped.xyxy, 1.3, flipped.landmarks5)[0]
    h, w = image.shape[:2]
    # The upright box turned by 180 degrees is what the upside-down face needs.
    need = np.array([w - up[2], h - up[3], w - up[0], h - up[1]])
    assert box[0] <= need[0] + 1 and box[1] <= need[1] + 1
    assert box[2] >= need[2] - 1 and box[3] >= need[3] - 1
    plain = head_boxes_xyxy(flipped.xyxy, 1.3, None)[0]  # the upright rule, no landmarks
    assert box[0] <= plain[0] and box[1] <= plain[1] and box[2] >= plain[2] and box[3] >= plain[3]


def _judged(
    frames, angle: int, orientations: str | tuple[int, ...], turns: list[int] | None = None
) -> tuple[int, int]:
    """(covered, judged) faces of the clip rolled by ``angle`` and anonymized, judged on the
    frames turned back upright. ``turns``: the turns the run's report must list."""
    from streamanon.eval import coverage as C
    from streamanon.run import report_for

    anon = Anonymizer(Options(method="blur", orientations=orientations))
    ref = C.reference_detector(mmod_upsample=None)
    covered = judged = 0
    for i, img in enumerate(frames):
        rolled = turn_image(img, UNDO[angle])
        out = anon(rolled, i / 25.0)
        if i % 3:
            continue
        back = cv2.rotate(out, cv2.ROTATE_180) if angle == 180 else turn_image(out, angle)
        for r in C.judge_frame(img, back, ref(img), i):
            judged += 1
            covered += bool(r.covered)
    if turns is not None:
        assert report_for(anon, "in", "out", "video").extra.get("orientations", [0]) == turns
    return covered, judged


def test_the_probe_finds_rolled_faces_and_not_upright_ones(frames) -> None:
    """auto's probe: nothing on an upright real frame, the half turn on the same frame upside
    down (a plain pass of the product's network on each turned copy)."""
    detect = make_detector(landmarks=False, min_face=None)
    assert probe_turns(frames[0], detect) == []
    from tests.conftest import hamilton_frames

    first = hamilton_frames(1)[0]
    assert probe_turns(first, detect) == []
    assert 180 in probe_turns(turn_image(first, 180), detect)


@pytest.fixture(scope="module")
def hamilton() -> list[np.ndarray]:
    from tests.conftest import hamilton_frames

    return hamilton_frames(60)


@pytest.mark.slow
def test_upside_down_faces_are_covered_with_orientations(hamilton) -> None:
    """Hamilton (faces 40-90 px) upside down: the upright detector covers almost none of the
    judged faces (why the option exists); with 0,180 as many as upright footage gets."""
    upright, judged = _judged(hamilton, 0, "0")
    assert judged >= 40 and upright >= judged - 2
    covered, judged_flipped = _judged(hamilton, 180, "0")  # upright only
    assert judged_flipped == judged and covered <= judged // 2
    covered, _ = _judged(hamilton, 180, (0, 180))
    assert covered >= upright
    # The default: the first frame's probe adds the half turn, and the report says so.
    covered, _ = _judged(hamilton, 180, "auto", turns=[0, 180])
    assert covered >= upright


@pytest.mark.slow
def test_faces_lying_on_their_side_are_covered_with_all(hamilton) -> None:
    upright, judged = _judged(hamilton, 0, "0")
    covered, judged_side = _judged(hamilton, 90, "0")
    assert judged_side == judged and covered <= judged // 2
    covered, _ = _judged(hamilton, 90, parse_orientations("all"))
    assert covered >= upright
