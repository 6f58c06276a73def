"""Face detectors on real photos (dlib's annotated PASCAL VOC faces and group photos)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.detect.base import Detector, box_iou, nms, pad_to_multiple
from streamanon.detect.centerface import decode
from streamanon.errors import InputError, ModelMissingError
from streamanon.registry import make_detector


def _annotated(root: Path, xml_name: str) -> list[tuple[Path, np.ndarray, np.ndarray | None]]:
    """(image, ground-truth boxes (n,4) xyxy, 68 landmarks (n,68,2) or None) from dlib's XML."""
    out = []
    for im in ET.parse(root / xml_name).getroot().iter("image"):
        boxes, parts = [], []
        for b in im.iter("box"):
            if b.get("ignore") == "1":
                continue
            x, y, w, h = (int(b.get(k)) for k in ("left", "top", "width", "height"))
            boxes.append([x, y, x + w, y + h])
            parts.append([[int(p.get("x")), int(p.get("y"))] for p in b.iter("part")])
        lm = np.array(parts, float) if parts and all(len(p) == 68 for p in parts) else None
        out.append((root / im.get("file"), np.array(boxes, float), lm))
    return out


@pytest.fixture(scope="module")
def centerface() -> Detector:
    return make_detector("centerface", landmarks=False)


@pytest.fixture(scope="module")
def dlib_faces(shared_data: Path) -> Path:
    return shared_data / "groups" / "dlib_faces"


def test_centerface_finds_every_annotated_face(centerface: Detector, dlib_faces: Path) -> None:
    found = total = false_pos = 0
    for path, gt, _ in _annotated(dlib_faces, "testing.xml") + _annotated(
        dlib_faces, "training.xml"
    ):
        dets = centerface(cv2.imread(str(path)))
        dets = dets[dets.score >= 0.5]
        iou = box_iou(gt, dets.xyxy)
        found += int((iou.max(axis=1) > 0.3).sum()) if len(dets) else 0
        false_pos += int((iou.max(axis=0) <= 0.3).sum()) if len(gt) else len(dets)
        total += len(gt)
    assert total == 43
    assert found == total  # measured: 43/43, 1 false positive
    assert false_pos <= 2


def test_centerface_output_is_consistent(centerface: Detector, shared_data: Path) -> None:
    img = cv2.imread(str(shared_data / "groups" / "misc" / "deepface_selfie-many-people.jpg"))
    dets = centerface(img)
    h, w = img.shape[:2]
    assert len(dets) >= 5
    assert dets.score.min() >= 0.1 and dets.score.max() <= 1.0
    assert (
        (dets.xyxy[:, :2] >= 0).all()
        and (dets.xyxy[:, 2] <= w).all()
        and (dets.xyxy[:, 3] <= h).all()
    )
    assert (dets.wh > 0).all()
    # The 5 landmarks of confident faces lie inside (a slightly grown) box; faces cut by the
    # frame edge are left out (their landmarks may lie off-frame, past the clipped box).
    inner = (
        (dets.xyxy[:, 0] > 0)
        & (dets.xyxy[:, 1] > 0)
        & (dets.xyxy[:, 2] < w)
        & (dets.xyxy[:, 3] < h)
    )
    good = dets[(dets.score >= 0.5) & inner]
    assert len(good) >= 3
    lo = good.xyxy[:, None, :2] - 0.1 * good.wh[:, None]
    hi = good.xyxy[:, None, 2:] + 0.1 * good.wh[:, None]
    assert ((good.landmarks5 >= lo) & (good.landmarks5 <= hi)).all()


def test_low_score_faces_are_returned_for_the_tracker(dlib_faces: Path) -> None:
    """Detections between low_thresh and thresh are returned; raising low_thresh drops them."""
    img = cv2.imread(str(dlib_faces / "2008_007676.jpg"))
    all_dets = make_detector(landmarks=False, low_thresh=0.1)(img)
    strict = make_detector(landmarks=False, low_thresh=0.5)(img)
    assert (all_dets.score >= 0.1).all() and (strict.score >= 0.5).all()
    assert len(all_dets) > len(strict) == int((all_dets.score >= 0.5).sum())


def test_input_size_maps_boxes_back_to_the_original_frame(shared_data: Path) -> None:
    img = cv2.imread(str(shared_data / "groups" / "misc" / "face_recognition_two_people.jpg"))
    native = make_detector(input_size=None, landmarks=False)(img)
    small = make_detector(input_size=320, landmarks=False)(img)
    native, small = native[native.score >= 0.5], small[small.score >= 0.5]
    assert len(native) == len(small) == 2
    assert box_iou(native.xyxy, small.xyxy).max(axis=1).min() > 0.7


def test_landmarks68_match_dlib_reference(dlib_faces: Path) -> None:
    """Our 68 points from CenterFace boxes vs the points dlib stored from its own boxes."""
    det = make_detector("centerface", landmarks=True)
    errors = []
    for path, gt, gt_lm in _annotated(dlib_faces, "testing_with_face_landmarks.xml"):
        dets = det(cv2.imread(str(path)))
        dets = dets[dets.score >= 0.5]
        iou = box_iou(gt, dets.xyxy)
        for i, j in enumerate(iou.argmax(axis=1)):
            if iou[i, j] > 0.3:
                err = np.linalg.norm(dets.landmarks68[j] - gt_lm[i], axis=1).mean()
                errors.append(err / (gt[i, 2] - gt[i, 0]))
    assert len(errors) >= 20
    assert np.median(errors) < 0.02  # measured ~0.009 of the face width


def test_dlib_detectors_find_two_faces(shared_data: Path) -> None:
    img = cv2.imread(str(shared_data / "groups" / "misc" / "face_recognition_two_people.jpg"))
    for name, size in (("dlib_hog", 640), ("dlib_mmod", 480)):
        dets = make_detector(name, landmarks=True, input_size=size)(img)
        dets = dets[dets.score >= 0.5]
        assert len(dets) == 2, name
        assert dets.landmarks68.shape == (2, 68, 2)


def test_blank_and_grey_images(centerface: Detector) -> None:
    assert len(centerface(np.zeros((720, 1280, 3), np.uint8))) == 0
    assert len(centerface(np.full((37, 53), 128, np.uint8))) == 0  # grey, odd size


def test_bad_input_is_rejected(centerface: Detector) -> None:
    with pytest.raises(InputError, match="uint8"):
        centerface(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(InputError, match="shape"):
        centerface(np.zeros((64, 64, 4), np.uint8))
    with pytest.raises(InputError, match="unknown detector"):
        make_detector("yolo")
    with pytest.raises(InputError, match="low_thresh"):
        make_detector(thresh=0.3, low_thresh=0.4)


def test_scrfd_missing_model_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "det_10g.onnx"
    with pytest.raises(ModelMissingError, match="det_10g.onnx") as info:
        make_detector("scrfd", model_path=missing, landmarks=False)
    assert str(missing) in str(info.value) and "never downloads" in str(info.value)


# -- pure maths ---------------------------------------------------------------------------


def test_box_iou_handles_degenerate_boxes() -> None:
    a = np.array([[0, 0, 10, 10], [5, 5, 5, 5], [3, 3, 3, 9]], float)
    iou = box_iou(a, a)
    assert np.isfinite(iou).all()
    assert iou[0, 0] == 1.0 and iou[1, 1] == 0.0 and iou[2, 2] == 0.0
    assert box_iou(np.zeros((0, 4)), a).shape == (0, 3)


def test_nms_keeps_best_of_overlapping_boxes() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 10]], float)
    keep = nms(boxes, np.array([0.5, 0.9, 0.8, 0.1]), 0.3)
    assert keep.tolist() == [1, 2]
    assert nms(np.zeros((0, 4)), np.zeros(0)).shape == (0,)


def test_decode_places_a_face_at_its_heatmap_peak() -> None:
    h, w = 8, 10
    heat = np.zeros((1, h, w), np.float32)
    heat[0, 3, 4] = 0.9
    scale = np.full((2, h, w), np.log(20 / 4), np.float32)  # 20 px box
    offset = np.zeros((2, h, w), np.float32)
    lms = np.full((10, h, w), 0.5, np.float32)  # every landmark at the box centre
    boxes, score, pts = decode(heat, scale, offset, lms, 0.5)
    cx, cy = (4 + 0.5) * 4, (3 + 0.5) * 4
    np.testing.assert_allclose(boxes, [[cx - 10, cy - 10, cx + 10, cy + 10]], atol=1e-4)
    np.testing.assert_allclose(score, [0.9])
    np.testing.assert_allclose(pts[0], np.tile([cx, cy], (5, 1)), atol=1e-4)


def test_pad_to_multiple() -> None:
    img = np.ones((33, 64, 3), np.uint8)
    out = pad_to_multiple(img, 32)
    assert out.shape == (64, 64, 3) and out[:33].all() and not out[33:].any()


def test_scrfd_decode_places_a_face_at_its_anchor() -> None:
    from streamanon.detect.scrfd import decode as scrfd_decode

    h, w = 64, 96  # network input
    outs = []
    for stride in (8, 16, 32):  # scores (n,1) per stride, 2 anchors per location
        outs.append(np.zeros((h // stride * (w // stride) * 2, 1), np.float32))
    for stride in (8, 16, 32):
        outs.append(np.ones((h // stride * (w // stride) * 2, 4), np.float32))
    for stride in (8, 16, 32):
        outs.append(np.zeros((h // stride * (w // stride) * 2, 10), np.float32))
    # Stride 16, location (row 1, col 3), second anchor: centre (48, 16).
    k = (1 * (w // 16) + 3) * 2 + 1
    outs[1][k] = 0.8
    outs[4][k] = [1.0, 0.5, 2.0, 1.5]  # distances left, top, right, bottom in strides
    outs[7][k] = np.tile([0.25, -0.25], 5)
    boxes, score, pts = scrfd_decode(outs, (h, w), 0.5)
    np.testing.assert_allclose(boxes, [[48 - 16, 16 - 8, 48 + 32, 16 + 24]])
    np.testing.assert_allclose(score, [0.8])
    np.testing.assert_allclose(pts[0], np.tile([52.0, 12.0], (5, 1)))
