"""The generator's crop contract: alignment, inverse warp, face mask, Z_a and Z_g."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamanon.visual import (
    GEN_SIZE,
    GEOMETRY_CHANNELS,
    TEMPLATE68,
    AlignmentError,
    align_matrix,
    appearance_input,
    face_mask,
    from_signed_rgb,
    render_geometry,
    to_signed_rgb,
    transform_points,
    warp_back,
    warp_back_roi,
    warp_to_crop,
)
from streamanon.visual.align import STABLE, similarity_fit
from streamanon.visual.explain import face_in_image
from streamanon.visual.inputs import face_hull_points
from tests.conftest import needs_shared


def _similarity(angle_deg: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    a = np.radians(angle_deg)
    m = np.zeros((2, 3))
    m[:, :2] = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    m[:, 2] = shift
    return m


@pytest.fixture(scope="module")
def real_face():
    path = needs_shared("faces", "identities", "fr_obama", "obama.jpg")
    image = cv2.imread(str(path))
    pts, _, _ = face_in_image(image)
    return image, pts


def test_similarity_fit_recovers_a_known_transform():
    src = TEMPLATE68 * 100
    m = _similarity(23.0, 1.7, (40.0, -12.0))
    np.testing.assert_allclose(similarity_fit(src, transform_points(src, m)), m, atol=1e-9)


def test_align_matrix_maps_any_pose_of_the_template_onto_it():
    frame_pts = transform_points(TEMPLATE68 * GEN_SIZE, _similarity(-35.0, 2.4, (300.0, 90.0)))
    crop_pts = transform_points(frame_pts, align_matrix(frame_pts))
    np.testing.assert_allclose(crop_pts, TEMPLATE68 * GEN_SIZE, atol=1e-6)


def test_template_leaves_room_for_forehead_and_background():
    t = TEMPLATE68
    assert 0.55 < t[16, 0] - t[0, 0] < 0.65  # jaw width
    assert 0.85 < t[8, 1] < 0.95  # chin near the bottom
    assert t[17:27, 1].min() > 0.3  # a third of the crop above the brows
    np.testing.assert_allclose(t[:, 0].mean(), 0.5, atol=1e-3)  # centred


def test_real_face_crop_and_inverse_warp(real_face):
    image, pts = real_face
    m = align_matrix(pts)
    crop = warp_to_crop(image, m)
    assert crop.shape == (GEN_SIZE, GEN_SIZE, 3) and crop.dtype == np.uint8
    crop_pts = transform_points(pts, m)
    rms = np.sqrt(((crop_pts[STABLE] - TEMPLATE68[STABLE] * GEN_SIZE) ** 2).sum(1).mean())
    assert rms < 4.0, rms  # a real face's stable points sit near the template
    back = warp_back(crop, m, image.shape)
    inside = warp_back(np.full((GEN_SIZE, GEN_SIZE), 255, np.uint8), m, image.shape) == 255
    err = np.abs(back.astype(int) - image.astype(int))[inside].mean()
    assert err < 12, err  # a 128px round trip of a ~300px face: interpolation blur only
    patch, (x0, y0, x1, y1) = warp_back_roi(crop, m, image.shape)
    # Same warp, only the output window differs (cv2's fixed-point maths may round by 1).
    assert np.abs(patch.astype(int) - back[y0:y1, x0:x1]).max() <= 1
    assert back[:y0].max(initial=0) == 0 and back[y1:].max(initial=0) == 0


def test_face_mask_covers_the_face_not_the_corners(real_face):
    image, pts = real_face
    crop_pts = transform_points(pts, align_matrix(pts))
    mask = face_mask(crop_pts)
    assert mask.shape == (GEN_SIZE, GEN_SIZE) and mask.dtype == np.float32
    assert 0.0 <= mask.min() and mask.max() <= 1.0
    inner = np.round(crop_pts[17:68]).astype(int)  # brows, eyes, nose, mouth
    assert (mask[inner[:, 1], inner[:, 0]] > 0.99).all()
    assert mask[:6, :6].max() == 0 and mask[:6, -6:].max() == 0
    # The forehead arc is above the brows.
    assert face_hull_points(crop_pts)[17:, 1].max() < crop_pts[17:27, 1].min()
    assert 0.25 < mask.mean() < 0.6


def test_appearance_input_is_foreground_only(real_face):
    image, pts = real_face
    m = align_matrix(pts)
    crop, crop_pts = warp_to_crop(image, m), transform_points(pts, m)
    z_a = appearance_input(crop, crop_pts)
    assert z_a.shape == (3, GEN_SIZE, GEN_SIZE) and z_a.dtype == np.float32
    assert z_a.min() >= -1 and z_a.max() <= 1
    mask = face_mask(crop_pts)
    assert np.abs(z_a[:, mask == 0]).max() == 0
    # RGB order: channel 0 is the crop's red (BGR index 2).
    full = mask == 1
    np.testing.assert_allclose(z_a[0][full], crop[:, :, 2][full] / 127.5 - 1, atol=1e-6)


def test_render_geometry_channels(real_face):
    image, pts = real_face
    m = align_matrix(pts)
    crop, crop_pts = warp_to_crop(image, m), transform_points(pts, m)
    z_g = render_geometry(crop_pts, crop)
    assert z_g.shape == (GEOMETRY_CHANNELS, GEN_SIZE, GEN_SIZE) and z_g.dtype == np.float32
    edges, mask, bg = z_g[:6], z_g[6], z_g[7:]
    assert edges.min() >= 0 and edges.max() <= 1 and (edges.reshape(6, -1).max(1) > 0.9).all()
    # Each part's channel is lit at that part's landmarks (jaw ch 0, inner lips ch 5).
    for ch, idx in ((0, 8), (1, 19), (2, 28), (3, 37), (4, 51), (5, 62)):
        x, y = np.round(crop_pts[idx]).astype(int)
        assert edges[ch, y - 1 : y + 2, x - 1 : x + 2].max() > 0.3, ch
    np.testing.assert_array_equal(mask, face_mask(crop_pts))
    assert np.abs(bg[:, mask == 1]).max() == 0  # no original face pixel in x_b
    outside = mask == 0
    np.testing.assert_allclose(bg[:, outside], to_signed_rgb(crop)[:, outside])
    # erase_landmarks widens the erased region to the union.
    shifted = crop_pts + [0, 10]
    z_u = render_geometry(shifted, crop, erase_landmarks=crop_pts)
    assert np.abs(z_u[7:, face_mask(crop_pts) == 1]).max() == 0


def test_signed_rgb_round_trip():
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    np.testing.assert_array_equal(from_signed_rgb(to_signed_rgb(img)), img)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: align_matrix(np.zeros((5, 2))), r"\(68, 2\)"),
        (lambda: align_matrix(np.full((68, 2), np.nan)), "NaN"),
        (lambda: align_matrix(np.zeros((68, 2))), "coincident"),
        (lambda: warp_to_crop(np.zeros((0, 5, 3), np.uint8), np.eye(2, 3)), "non-empty"),
        (lambda: render_geometry(TEMPLATE68 * 128, np.zeros((64, 64, 3), np.uint8)), "uint8"),
        (lambda: appearance_input(np.zeros((128, 128, 3), np.float32), TEMPLATE68 * 128), "uint8"),
    ],
)
def test_bad_input_raises_alignment_error(call, message):
    with pytest.raises(AlignmentError, match=message):
        call()
