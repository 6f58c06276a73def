"""`render_vca`: the paper's Fig. 2c for one image: original, Z_a, S_x, S̄, Ŝ_x, Z_g side by side."""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.errors import InputError
from streamanon.visual import dlib_models
from streamanon.visual.align import GEN_SIZE, align_matrix, transform_points, warp_to_crop
from streamanon.visual.bank import DelegateBank, default_bank
from streamanon.visual.delegates import Delegates, choose_delegates, fit_geometry
from streamanon.visual.inputs import (
    EDGE_CHANNELS,
    from_signed_rgb,
    render_geometry,
    render_landmarks,
)
from streamanon.visual.ipd import DEFAULT_EPSILON, DEFAULT_NEIGHBOURS, track_rng
from streamanon.visual.pose import face_pose

# BGR colour per edge channel: jaw, brows, nose, eyes, outer lips, inner lips.
PART_COLOURS = np.array(
    [[200, 200, 200], [60, 180, 255], [80, 220, 80], [255, 160, 60], [90, 90, 255], [255, 80, 255]],
    np.float32,
)
LABELS = ("original x", "Z_a", "S_x", "S bar", "S hat", "Z_g")


class NoFaceError(InputError):
    """No face was found in the image."""


def draw_shape(landmarks_crop: np.ndarray, size: int = GEN_SIZE) -> np.ndarray:
    """The 68 landmarks as coloured part outlines on black, BGR uint8 (size, size, 3)."""
    edges = render_landmarks(landmarks_crop, size)  # (6, s, s) in [0, 1]
    img = np.einsum("chw,cb->hwb", edges, PART_COLOURS)
    return np.clip(img, 0, 255).astype(np.uint8)


def geometry_preview(z_g: np.ndarray) -> np.ndarray:
    """Z_g shown as the background x_b with the landmark edges drawn over it, BGR uint8."""
    bg = from_signed_rgb(z_g[EDGE_CHANNELS + 1 :]).astype(np.float32)
    edges = z_g[:EDGE_CHANNELS]
    colour = np.einsum("chw,cb->hwb", edges, PART_COLOURS)
    alpha = edges.max(0)[..., None]
    return np.clip(bg * (1 - alpha) + colour, 0, 255).astype(np.uint8)


def face_in_image(image_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest face: (landmarks68 in image pixels, 128-D embedding, pose), via dlib."""
    if image_bgr is None or image_bgr.ndim != 3 or image_bgr.shape[2] != 3:
        raise NoFaceError("expected a BGR image (h, w, 3)")
    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    rect = dlib_models.detect_largest(rgb, 0) or dlib_models.detect_largest(rgb, 1)
    if rect is None:
        raise NoFaceError("no face found in the image (dlib HOG)")
    pts, shape = dlib_models.landmarks68(rgb, rect)
    return pts, dlib_models.embedding(rgb, shape), face_pose(pts)


def render_vca(
    image_bgr: np.ndarray,
    *,
    bank: DelegateBank | None = None,
    seed: int = 0,
    epsilon: float = DEFAULT_EPSILON,
    k: int = DEFAULT_NEIGHBOURS,
    scale: int = 2,
) -> np.ndarray:
    """Panel (BGR uint8) of the visual clue anonymization of the largest face in ``image_bgr``."""
    bank = bank if bank is not None else default_bank()
    pts, emb, pose = face_in_image(image_bgr)
    m = align_matrix(pts, bank.size)
    crop = warp_to_crop(image_bgr, m, bank.size)
    s_x = transform_points(pts, m)
    d: Delegates = choose_delegates(
        bank, emb, s_x, pose, track_rng(seed, 0, "delegates"), epsilon, k
    )
    s_hat = fit_geometry(d, s_x)
    z_g = render_geometry(s_hat, crop, bank.size, erase_landmarks=s_x)
    tiles = [
        crop,
        from_signed_rgb(d.z_a),
        draw_shape(s_x, bank.size),
        draw_shape(d.s_bar, bank.size),
        draw_shape(s_hat, bank.size),
        geometry_preview(z_g),
    ]
    s = bank.size * scale
    out = []
    for tile, label in zip(tiles, LABELS, strict=True):
        big = cv2.resize(tile, (s, s), interpolation=cv2.INTER_LINEAR)
        head = np.full((24, s, 3), 255, np.uint8)
        cv2.putText(head, label, (6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        out.append(np.concatenate([head, big], 0))
        out.append(np.full((s + 24, 4, 3), 255, np.uint8))
    return np.concatenate(out[:-1], 1)
