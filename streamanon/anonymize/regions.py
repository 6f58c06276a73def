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
        out = np.stack([x1, y1, x2, y2], axis=1)
        return _rolled(out, b, mask_scale, landmarks5)
    return np.stack([x1, y1, x2, y2], axis=1)


def roll_side(landmarks5: np.ndarray) -> np.ndarray:
    """(n,) int: where the top of each head points in the image, from its 5 landmarks (mouth
    to eyes): 0 up (rolled less than 45°), 1 right, 2 down (upside down), 3 left."""
    p = np.asarray(landmarks5, np.float64).reshape(-1, 5, 2)
    up = (p[:, 0] + p[:, 1]) / 2 - (p[:, 3] + p[:, 4]) / 2
    ux, uy = np.nan_to_num(up[:, 0]), np.nan_to_num(up[:, 1])
    side = np.where(np.abs(ux) > np.abs(uy), np.where(ux > 0, 1, 3), np.where(uy > 0, 2, 0))
    return side.astype(np.int64)


def _rolled(
    boxes: np.ndarray, b: np.ndarray, mask_scale: float, landmarks5: np.ndarray
) -> np.ndarray:
    """Head boxes of faces rolled past 45° (sideways or upside down: `detect.orientations`)
    grown towards where their hairline is, as an upright face's box grows upward; the result
    is the union with the upright box, so no box gets smaller."""
    side = roll_side(landmarks5)
    rolled = np.flatnonzero(side != 0)
    if not len(rolled):
        return boxes
    out = boxes.copy()
    for i in rolled.tolist():
        x1, y1, x2, y2 = b[i]
        w, h = max(x2 - x1, 0.0), max(y2 - y1, 0.0)
        if side[i] in (1, 3):  # the face's height runs along x
            w, h = h, w
        top = HAIRLINE * h  # past the box on the hairline side
        grow = (h + top) * (mask_scale - 1)
        ahead, behind = top + UP_SHARE * grow, (1 - UP_SHARE) * grow
        half = w * mask_scale / 2
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        if side[i] == 2:  # hairline below the box
            r = (cx - half, y1 - behind, cx + half, y2 + ahead)
        elif side[i] == 1:  # hairline to the right
            r = (x1 - behind, cy - half, x2 + ahead, cy + half)
        else:  # hairline to the left
            r = (x1 - ahead, cy - half, x2 + behind, cy + half)
        out[i, :2] = np.minimum(out[i, :2], r[:2])
        out[i, 2:] = np.maximum(out[i, 2:], r[2:])
    return out


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
