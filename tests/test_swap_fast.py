"""The `swap` render's speed-ups give the very pixels of the plain arithmetic they replace.

Each fast path (per-channel tables for the Lab move, mixes confined to the openings' box,
squared distances without an axis reduction) is checked against the straightforward formula
on real faces (`examples/faces`, SFHQ synthetic faces), to the bit.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.anonymize.blend import (
    AB_SPREAD,
    L_SPREAD,
    channel_tables,
    lab_stats,
    lip_mask,
    mix_where,
    nonzero_box,
    transfer_colour,
)
from streamanon.anonymize.warp import _sq_dist, _u, tps_eval, tps_fit
from streamanon.visual.align import TEMPLATE68
from streamanon.visual.masks import skin_mask

FACES = sorted((Path(__file__).resolve().parents[1] / "examples" / "faces").glob("*.jpg"))


def _faces(size: int = 128) -> list[np.ndarray]:
    if len(FACES) < 2:
        pytest.skip("examples/faces is missing")
    return [
        cv2.resize(cv2.imread(str(p)), (size, size), interpolation=cv2.INTER_AREA) for p in FACES
    ]


def _reference_transfer(delegate, src, person, person_skin, lips):
    """The per-pixel float Lab move (the implementation before the tables)."""
    person_lab = cv2.cvtColor(person, cv2.COLOR_BGR2LAB)
    (sm, ss), (dm, ds) = src, lab_stats(person, person_skin, person_lab)
    ratio = ds / ss
    ratio[0] = np.clip(ratio[0], *L_SPREAD)
    ratio[1:] = np.clip(ratio[1:], *AB_SPREAD)
    lab = (cv2.cvtColor(delegate, cv2.COLOR_BGR2LAB).astype(np.float32) - sm) * ratio + dm
    inside_f, inside_p = lips[0] > 0.5, lips[1] > 0.5
    want = np.median(person_lab[inside_p][:, 1:].astype(np.float32), axis=0)
    lab[..., 1:] += lips[0][..., None] * (want - np.median(lab[inside_f][:, 1:], axis=0))
    return cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def test_table_colour_transfer_equals_the_per_pixel_move() -> None:
    faces = _faces()
    lm = TEMPLATE68 * 128
    skin = skin_mask(lm, 128)
    lips = (lip_mask(lm, 128), lip_mask(lm, 128))
    changed = 0
    for delegate, person in zip(faces, faces[1:] + faces[:1], strict=True):
        src = lab_stats(delegate, skin)
        out = transfer_colour(delegate, src, person, skin, lips=lips)
        assert np.array_equal(out, _reference_transfer(delegate, src, person, skin, lips))
        changed += int((out != delegate).any())
    assert changed == len(faces)  # the move did something on every pair


def test_channel_tables_hold_each_level_moved() -> None:
    sm, ratio, dm = (
        np.array([120.0, 130, 140]),
        np.array([1.5, 0.8, 1.0]),
        np.array([100.0, 128, 150]),
    )
    t = channel_tables(sm, ratio, dm)
    assert t.shape == (256, 3) and t.dtype == np.float64
    assert np.array_equal(t[200], (np.float32(200) - sm) * ratio + dm)


def test_mix_where_equals_the_full_mix_and_skips_nothing() -> None:
    a, b = _faces()[:2]
    w = np.zeros((128, 128), np.float32)
    cv2.circle(w, (40, 60), 9, 1.0, -1)
    w = cv2.GaussianBlur(w, (0, 0), 2.0)[..., None]
    full = (a * (1 - w) + b * w).astype(np.uint8)
    assert np.array_equal(mix_where(a, b, w), full)
    assert np.array_equal(mix_where(a, b, np.zeros_like(w)), a)


def test_nonzero_box_is_tight() -> None:
    m = np.zeros((50, 60), np.float32)
    assert nonzero_box(m) == (0, 0, 0, 0)
    m[10, 20] = m[30, 41] = 0.001
    assert nonzero_box(m) == (10, 31, 20, 42)


def test_tps_distances_and_kernel_are_bit_identical_to_the_broadcast_sum() -> None:
    rng = np.random.default_rng(3)
    ctrl, pts = rng.uniform(0, 1, (84, 2)), rng.uniform(0, 1, (300, 2))
    plain = ((pts[:, None, :] - ctrl[None, :, :]) ** 2).sum(-1)
    assert np.array_equal(_sq_dist(pts, ctrl), plain)
    assert np.array_equal(_u(plain.copy()), plain * np.log(np.maximum(plain, 1e-20)))
    # The spline still interpolates its control points (smoothing is near zero).
    coef = tps_fit(ctrl, ctrl + 0.01)
    assert np.abs(tps_eval(ctrl, coef, ctrl) - (ctrl + 0.01)).max() < 1e-3


def test_missing_detail_in_the_region_box_matches_the_whole_patch() -> None:
    from streamanon.anonymize.blend import BANDS, band_spreads, missing_detail

    big = cv2.resize(_faces()[0], (360, 300), interpolation=cv2.INTER_CUBIC)  # a 2.8x face
    smooth = cv2.GaussianBlur(big, (0, 0), 2.0)  # a render with less detail than the frame
    region = np.zeros(big.shape[:2], bool)
    region[90:210, 120:250] = True  # the skin, well inside the patch
    want, have = band_spreads(big, region), band_spreads(smooth, region)
    full = np.sqrt(np.maximum(want * want - have * have, 0.0))
    got = missing_detail(big, smooth, region)
    assert got.shape == (len(BANDS),) and (full > 0.5).all()
    assert np.allclose(got, full, rtol=1e-4, atol=1e-4)
    assert not missing_detail(big, smooth, np.zeros_like(region)).any()


def test_scratch_reuses_its_arrays_and_keeps_none_too_large() -> None:
    from streamanon.anonymize.scratch import Scratch

    s = Scratch(keep_max_bytes=4 * 100 * 100 * 3)
    a = s.get("patch", (100, 100, 3))
    assert a.shape == (100, 100, 3) and a.dtype == np.float32 and a.flags.c_contiguous
    b = s.get("patch", (50, 60, 3))  # smaller: a view of the same buffer
    assert np.shares_memory(a, b) and b.flags.c_contiguous
    assert not np.shares_memory(a, s.get("other", (10, 10)))
    big = s.get("patch", (101, 100, 3))  # over the cap: a fresh array, not kept
    assert not np.shares_memory(a, big) and np.shares_memory(a, s.get("patch", (10, 3)))
