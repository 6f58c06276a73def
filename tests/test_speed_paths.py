"""The fast paths of issue 23 give the same answers as the slow ones they replace, on real
crowd pictures (not on boxes made up for the test)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.detect.base import nms as numpy_nms
from streamanon.detect.base import pad_to_multiple
from streamanon.detect.centerface import CenterFace, decode, resized
from streamanon.detect.fast_nms import nms as fast_nms
from streamanon.motion import CameraMotion


@pytest.fixture(scope="module")
def crowd(shared_data: Path) -> np.ndarray:
    im = cv2.imread(str(shared_data / "groups" / "ultralight_crowd" / "11.jpg"))
    assert im is not None
    return im


def _candidates(net: CenterFace, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every heatmap cell >= 0.1 as a box (what decode hands to NMS): thousands on a crowd."""
    blob = pad_to_multiple(image, 32)
    heat, scale, offset, lms = net.session.run(
        ["537", "538", "539", "540"],
        {"input.1": cv2.dnn.blobFromImages([blob], 1.0, swapRB=True, crop=False)},
    )
    ys, xs = np.nonzero(heat[0, 0] >= 0.1)
    sh, sw = np.exp(scale[0, 0, ys, xs]) * 4, np.exp(scale[0, 1, ys, xs]) * 4
    cx, cy = (xs + offset[0, 1, ys, xs] + 0.5) * 4, (ys + offset[0, 0, ys, xs] + 0.5) * 4
    boxes = np.stack([cx - sw / 2, cy - sh / 2, cx + sw / 2, cy + sh / 2], 1)
    return boxes, heat[0, 0, ys, xs]


def test_fast_nms_keeps_exactly_what_numpy_nms_keeps(crowd: np.ndarray) -> None:
    net = CenterFace(input_size=None)
    for s in (1.0, 2.0):
        boxes, scores = _candidates(net, resized(crowd, s))
        assert len(boxes) > 150  # a real crowd: many overlapping candidates
        for iou in (0.3, 0.5):
            fast, slow = fast_nms(boxes, scores, iou), numpy_nms(boxes, scores, iou)
            assert np.array_equal(fast, slow)
            assert 20 < len(fast) < len(boxes)
    # Degenerate input goes the numpy way and still agrees.
    flat = np.array([[5, 5, 5, 9], [0, 0, 10, 10], [1, 1, 10, 10]], float)
    assert np.array_equal(fast_nms(flat, np.array([0.9, 0.8, 0.7]), 0.3), [0, 1])
    assert len(fast_nms(np.zeros((0, 4)), np.zeros(0))) == 0


def test_decode_with_fast_nms_finds_the_crowd(crowd: np.ndarray) -> None:
    """CenterFace on the crowd photo: the same faces as decoding with numpy's NMS."""
    net = CenterFace(input_size=None)
    crowd = resized(crowd, 2.0)
    blob = pad_to_multiple(crowd, 32)
    outs = net.session.run(
        ["537", "538", "539", "540"],
        {"input.1": cv2.dnn.blobFromImages([blob], 1.0, swapRB=True, crop=False)},
    )
    boxes, score, _ = decode(*(o[0] for o in outs), low_thresh=0.1)
    cand, cand_score = _candidates(net, crowd)
    ref = numpy_nms(cand, cand_score, 0.3)
    assert len(boxes) == len(ref) and (score >= 0.5).sum() >= 20
    assert np.allclose(np.sort(score), np.sort(cand_score[ref]))


def test_blob_packing_matches_numpy(crowd: np.ndarray) -> None:
    ims = [np.ascontiguousarray(crowd[:320, :320]), np.ascontiguousarray(crowd[-320:, -320:])]
    ref = np.stack([im[:, :, ::-1].transpose(2, 0, 1) for im in ims]).astype(np.float32)
    assert np.array_equal(cv2.dnn.blobFromImages(ims, 1.0, swapRB=True, crop=False), ref)


def test_camera_motion_on_the_shrunk_frame_matches_the_full_frame(crowd: np.ndarray) -> None:
    """The detector measures the pan on its base-pass image (one shrink a frame): the shift,
    in full-frame pixels, is within a pixel of measuring on the full frame."""
    big = cv2.resize(crowd, (2400, 1500), interpolation=cv2.INTER_CUBIC)
    a, b = big[100:1180, 100:2020], big[112:1192, 130:2050]  # the scene moves by (-30, -12)
    full, shrunk = CameraMotion(), CameraMotion()
    full(a)
    shrunk(resized(a, 1 / 3), 1 / 3)
    dx, dy = full(b)
    sx, sy = shrunk(resized(b, 1 / 3), 1 / 3)
    assert abs(dx + 30) < 1.5 and abs(dy + 12) < 1.5
    assert abs(sx - dx) < 1.0 and abs(sy - dy) < 1.0
