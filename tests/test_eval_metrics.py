"""Evaluation metrics on inputs whose answer is known (pure functions, no models)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from streamanon.eval import metrics as M


def test_score_matrix_known_values():
    a = np.array([[0.0, 0.0], [3.0, 4.0]])
    b = np.array([[0.0, 0.0], [0.0, 1.0]])
    np.testing.assert_allclose(M.score_matrix(a, b, "euclidean"), [[0, 1], [5, np.sqrt(18)]])
    c = M.score_matrix(
        np.array([[1.0, 0.0]]), np.array([[2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]]), "cosine"
    )
    np.testing.assert_allclose(c, [[1.0, 0.0, -1.0]], atol=1e-12)
    with pytest.raises(M.MetricError, match="unknown metric"):
        M.score_matrix(a, b, "manhattan")


@pytest.mark.parametrize(
    "metric,thr,expect", [("euclidean", 0.6, [True, False]), ("cosine", 0.3, [False, True])]
)
def test_is_match_direction(metric, thr, expect):
    # distances match when small, similarities when large
    s = np.array([0.5, 0.7]) if metric == "euclidean" else np.array([0.2, 0.4])
    assert M.is_match(s, metric, thr).tolist() == expect


def test_reid_rate_identical_is_one_and_far_is_zero():
    rng = np.random.default_rng(0)
    e = rng.normal(size=(20, 128))
    assert M.reid_rate(e, e, "euclidean", [0.5, 0.6]) == {0.5: 1.0, 0.6: 1.0}
    assert M.reid_rate(e, e + 10, "euclidean", [0.6])[0.6] == 0.0
    half = e.copy()
    half[:10] += 10
    assert M.reid_rate(e, half, "euclidean", [0.6])[0.6] == 0.5
    with pytest.raises(M.MetricError):
        M.reid_rate(e, e[:3], "euclidean", [0.6])


def test_labelled_rates_other_photos_and_swap():
    # persons A (rows 0, 1) and B (row 2); B has no other photo
    gallery = np.array([[0.0, 0.0], [0.1, 0.0], [5.0, 5.0]])
    labels = ["A", "A", "B"]
    # anon of 0 still looks like A; anon of 2 now looks like A (a swap into A)
    anon = np.array([[0.05, 0.0], [0.1, 0.05]])
    r = M.labelled_rates(gallery, labels, anon, [0, 2], "euclidean", [0.6])
    assert r["reid_other"][0.6] == 1.0  # only face 0 has another photo; it matches row 1
    assert r["swap"][0.6] == 0.5  # face from B matches A's photos


def test_matched_boxes_one_to_one():
    ref = np.array([[0, 0, 10, 10], [100, 100, 110, 110]])
    found = np.array([[1, 1, 10, 10]])
    assert M.matched_boxes(ref, found).tolist() == [True, False]
    # one detection cannot serve two overlapping reference faces
    ref2 = np.array([[0, 0, 10, 10], [0, 0, 10, 10]])
    assert M.matched_boxes(ref2, found).sum() == 1
    assert M.detection_rate([np.array([True, False]), np.array([True])]) == pytest.approx(2 / 3)
    assert math.isnan(M.detection_rate([]))


def test_ssim_psnr_identical_and_noisy():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    assert M.ssim(img, img) == pytest.approx(1.0)
    assert M.psnr(img, img) == math.inf
    smooth = np.repeat(np.linspace(60, 200, 80)[None, :, None], 64, 0).repeat(3, 2)
    smooth = smooth.astype(np.uint8)
    noisy = np.clip(smooth + rng.integers(-40, 41, smooth.shape), 0, 255).astype(np.uint8)
    assert M.ssim(smooth, noisy) < 0.5
    assert 10 < M.psnr(smooth, noisy) < 30
    # only the changed region differs: the masked background stays identical
    part = img.copy()
    part[:20, :20] = 0
    mask = M.face_region_mask(img.shape[:2], np.array([[0, 0, 20, 20]]), scale=1.6)
    assert M.psnr(img, part, ~mask) == math.inf
    assert M.ssim(img, part, ~mask) == pytest.approx(1.0)
    with pytest.raises(M.MetricError, match="differ in size"):
        M.ssim(img, img[:10])


def test_face_region_mask_clips_to_image():
    m = M.face_region_mask((50, 60), np.array([[-10, -10, 10, 10], [55, 45, 70, 60]]), 1.0)
    assert m.shape == (50, 60)
    assert m[:10, :10].all() and m[45:, 55:].all() and m.sum() == 100 + 25


def _face68(mouth_gap: float, eye_gap: float) -> np.ndarray:
    """A schematic 68-point face: eyes and inner lips with given openings."""
    p = np.zeros((68, 2))
    for base, x0 in ((36, 30.0), (42, 60.0)):
        p[base + 0] = (x0, 40)
        p[base + 3] = (x0 + 20, 40)
        p[base + 1], p[base + 2] = (x0 + 7, 40 - eye_gap / 2), (x0 + 13, 40 - eye_gap / 2)
        p[base + 5], p[base + 4] = (x0 + 7, 40 + eye_gap / 2), (x0 + 13, 40 + eye_gap / 2)
    p[60], p[64] = (40, 80), (70, 80)
    for top, bot, x in ((61, 67, 48), (62, 66, 55), (63, 65, 62)):
        p[top], p[bot] = (x, 80 - mouth_gap / 2), (x, 80 + mouth_gap / 2)
    return p


def test_mouth_and_eye_opening():
    closed, open_ = _face68(0.0, 2.0), _face68(15.0, 8.0)
    assert M.mouth_opening(closed) == pytest.approx(0.0)
    assert M.mouth_opening(open_) == pytest.approx(15.0 / 30.0)
    assert M.eye_opening(open_) == pytest.approx(8.0 / 20.0)
    both = np.stack([closed, open_])
    assert M.mouth_opening(both).shape == (2,)
    assert M.state_agreement(M.mouth_opening(both), M.mouth_opening(both[::-1]), 0.15) == 0.0
    a = M.agreement([1.0, 2.0, 3.0], [1.0, 2.0, 3.5])
    assert a["mae"] == pytest.approx(0.5 / 3) and a["corr"] > 0.9


def test_link_tracks_follows_moving_boxes():
    f = [
        np.array([[0, 0, 10, 10]]),
        np.array([[1, 0, 11, 10], [50, 50, 60, 60]]),
        np.array([[52, 50, 62, 60], [2, 0, 12, 10]]),
    ]
    ids = M.link_tracks(f)
    assert ids[0].tolist() == [0] and ids[1].tolist() == [0, 1] and ids[2].tolist() == [1, 0]


def test_identity_consistency_and_flicker_and_leaks():
    stable = np.tile(np.array([[1.0, 0.0]]), (5, 1))
    assert M.identity_consistency(stable, "cosine", 0.3)["match"] == 1.0
    jumping = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    assert M.identity_consistency(jumping, "cosine", 0.3)["match"] == 0.0
    rng = np.random.default_rng(2)
    crops = [rng.integers(0, 256, (8, 8, 3)).astype(np.uint8) for _ in range(4)]
    assert M.flicker(crops, crops) == pytest.approx(1.0)
    still = [crops[0]] * 4
    assert M.flicker(crops, still) == 0.0
    assert M.leaked_frames([False, True, False, False]) == {"frames": 4, "leaked": 1, "rate": 0.25}
