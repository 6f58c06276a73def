"""Where to anonymize: head boxes and face-shaped masks from detections.

CenterFace boxes run from the lower forehead to the chin (measured on dlib's 68-point test
faces: their top is ~12% of the box height below the hairline-free dlib box top, i.e. well
under the hairline). A head box therefore grows upward more than downward.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.errors import InputError
from streamanon.types import Detections

# Extra height added above the box before scaling, as a fraction of the box height: brings
# the top from the lower forehead to the hairline.
HAIRLINE = 0.25
# Share of the mask_scale growth that goes upward (the rest goes below the chin).
UP_SHARE = 0.6
# A nose this far (share of the box width) from the eyes' midpoint is a full profile.
PROFILE_RATIO = 0.25
# A full profile's box grows by this share of its width behind the face and in front of it.
BACK_GROW = 0.5
FRONT_GROW = 0.15


def turn_ratio(xyxy: np.ndarray, landmarks5: np.ndarray) -> np.ndarray:
    """How far each face is turned, from its 5 landmarks: the nose's horizontal offset from
    the eyes' midpoint over the box width, signed (> 0: the face looks to image right).
    About 0 for a frontal face, 0.25 and more for a profile."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    p = np.asarray(landmarks5, np.float64).reshape(-1, 5, 2)
    w = np.clip(b[:, 2] - b[:, 0], 1.0, None)
    r = (p[:, 2, 0] - (p[:, 0, 0] + p[:, 1, 0]) / 2) / w
    return np.nan_to_num(r)


def head_boxes_xyxy(
    xyxy: np.ndarray, mask_scale: float = 1.3, landmarks5: np.ndarray | None = None
) -> np.ndarray:
    """Unclipped float head boxes (n, 4) for face boxes `xyxy`.

    With `landmarks5`, a turned face's box also grows sideways: toward the back of the head
    (a profile box from a face detector covers the face, not the skull and ear behind it) and
    a little toward the nose, which sticks out of a profile's box.
    """
    if mask_scale <= 0 or not np.isfinite(mask_scale):
        raise InputError(f"mask_scale must be a positive number, got {mask_scale}")
    b = np.asarray(xyxy, dtype=np.float64).reshape(-1, 4)
    w = np.clip(b[:, 2] - b[:, 0], 0, None)
    h = np.clip(b[:, 3] - b[:, 1], 0, None)
    cx = (b[:, 0] + b[:, 2]) / 2
    top = b[:, 1] - HAIRLINE * h
    hh = b[:, 3] - top
    grow_h = hh * (mask_scale - 1)
    y1 = top - UP_SHARE * grow_h
    y2 = b[:, 3] + (1 - UP_SHARE) * grow_h
    half_w = w * mask_scale / 2
    x1, x2 = cx - half_w, cx + half_w
    if landmarks5 is not None and len(b):
        r = turn_ratio(b, landmarks5)
        t = np.clip(np.abs(r) / PROFILE_RATIO, 0.0, 1.0)
        back, front = BACK_GROW * w * t, FRONT_GROW * w * t
        right = r > 0  # looks right: the back of the head is on the left
        x1 = x1 - np.where(right, back, front)
        x2 = x2 + np.where(right, front, back)
    return np.stack([x1, y1, x2, y2], axis=1)


def clip_boxes(boxes: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """Round outward to whole pixels and clip to [0, W] x [0, H] (exclusive ends), int64."""
    h, w = frame_shape[:2]
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    b = np.nan_to_num(b, nan=0.0, posinf=0.0, neginf=0.0)
    out = np.concatenate([np.floor(b[:, :2]), np.ceil(b[:, 2:])], axis=1)
    out[:, 0::2] = np.clip(out[:, 0::2], 0, w)
    out[:, 1::2] = np.clip(out[:, 1::2], 0, h)
    return out.astype(np.int64)


def head_boxes(
    faces: Detections, frame_shape: tuple[int, ...], mask_scale: float = 1.3
) -> np.ndarray:
    """Integer head boxes (n, 4), hairline to chin, clipped with exclusive W/H bounds.

    Boxes entirely off-frame come out with zero width or height; callers skip those.
    """
    return clip_boxes(head_boxes_xyxy(faces.xyxy, mask_scale, faces.landmarks5), frame_shape)


def face_polygon(landmarks68: np.ndarray, mask_scale: float = 1.3) -> np.ndarray:
    """Face outline (k, 2) float: the hull of the 68 points plus a forehead up to the hairline,
    scaled by `mask_scale` about its centre.

    The forehead points are the eyebrows lifted along the face's chin-to-brow axis by 60% of
    the brow-to-chin distance (hairline sits about a third of the face height above the brows).
    """
    p = np.asarray(landmarks68, dtype=np.float64).reshape(68, 2)
    brows = p[17:27]
    chin = p[8]
    brow_c = brows.mean(axis=0)
    up = brow_c - chin
    forehead = brows + 0.6 * up
    pts = np.concatenate([p, forehead])
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    c = hull.mean(axis=0)
    return (hull - c) * mask_scale + c
