"""The generator's inputs built from an aligned crop: foreground mask, Z_a and Z_g.

All arrays are channel-first float32, ready for ``torch.from_numpy(x)[None]``:

- ``face_mask(landmarks_crop, size)`` -> (size, size) in [0, 1]: the convex hull of the jaw line
  and a forehead arc (the brows lifted by 0.4 x eye-to-chin distance, along the face's up axis).
  No face parser exists offline here, so the hull stands in for the paper's segmentation.
- ``appearance_input(crop_bgr, landmarks_crop)`` -> Z_a, (3, size, size), **RGB** in [-1, 1],
  zero (mid grey) outside the face mask: the appearance delegate's foreground only.
- ``render_geometry(landmarks_crop, background_crop_bgr, size)`` -> Z_g,
  (GEOMETRY_CHANNELS = 10, size, size):

  ====  ===============================================================  ========
  ch    content                                                          range
  ====  ===============================================================  ========
  0     jaw line (points 0-16), open polyline                            [0, 1]
  1     both brows (17-21, 22-26), open polylines                        [0, 1]
  2     nose bridge (27-30) and nostril line (31-35)                     [0, 1]
  3     both eyes (36-41, 42-47), closed                                 [0, 1]
  4     outer lips (48-59), closed                                       [0, 1]
  5     inner lips (60-67), closed (the mouth opening)                   [0, 1]
  6     face mask: the region G must synthesize                          [0, 1]
  7-9   background x_b, RGB, the crop with the face mask zeroed          [-1, 1]
  ====  ===============================================================  ========

  Lines are 1 px, anti-aliased, at sub-pixel precision. The zeroed region is the union of the
  hull of the rendered landmarks and (``erase_landmarks``) of the original face's landmarks, so
  no pixel of the original face survives in x_b when the delegate's brows sit lower.

Budget: ~0.3 ms per call at 128^2 on one core.
"""

from __future__ import annotations

import cv2
import numpy as np

from streamanon.visual.align import GEN_SIZE, AlignmentError, check_landmarks

GEOMETRY_CHANNELS = 10
EDGE_CHANNELS = 6
MASK_CHANNEL = 6
# (channel, index ranges, closed) for the landmark rendering.
_PARTS: tuple[tuple[int, tuple[range, ...], bool], ...] = (
    (0, (range(0, 17),), False),
    (1, (range(17, 22), range(22, 27)), False),
    (2, (range(27, 31), range(31, 36)), False),
    (3, (range(36, 42), range(42, 48)), True),
    (4, (range(48, 60),), True),
    (5, (range(60, 68),), True),
)
_SHIFT = 4  # cv2 fixed-point bits: draw at 1/16 px precision
FOREHEAD_LIFT = 0.4


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def face_hull_points(landmarks_crop: np.ndarray) -> np.ndarray:
    """Jaw (17) and forehead (10) points whose convex hull is the face region, (27, 2)."""
    pts = check_landmarks(landmarks_crop, "landmarks_crop")
    eyes = pts[36:48].mean(0)
    up = eyes - pts[8]
    length = float(np.hypot(*up))
    if length < 1e-6:
        raise AlignmentError("degenerate landmarks: eyes coincide with the chin")
    forehead = pts[17:27] + up * FOREHEAD_LIFT
    return np.concatenate([pts[0:17], forehead])


def _fill_hull(canvas: np.ndarray, landmarks_crop: np.ndarray) -> None:
    hull = cv2.convexHull(_fixed(face_hull_points(landmarks_crop)).reshape(-1, 1, 2))
    # Anti-aliased fill blends towards 255, so filling twice on one canvas gives the union.
    cv2.fillConvexPoly(canvas, hull, 255, lineType=cv2.LINE_AA, shift=_SHIFT)


def face_mask(
    landmarks_crop: np.ndarray, size: int = GEN_SIZE, also: np.ndarray | None = None
) -> np.ndarray:
    """Foreground mask (size, size) float32 in [0, 1]: hull of jaw and forehead, anti-aliased edge.

    ``also``: a second face's landmarks whose hull is added (the union of both masks).
    """
    canvas = np.zeros((size, size), np.uint8)
    _fill_hull(canvas, landmarks_crop)
    if also is not None:
        _fill_hull(canvas, also)
    return canvas.astype(np.float32) * (1.0 / 255.0)


def _check_crop(crop_bgr: np.ndarray, size: int, name: str) -> None:
    if crop_bgr.shape != (size, size, 3) or crop_bgr.dtype != np.uint8:
        raise AlignmentError(
            f"{name} must be uint8 ({size}, {size}, 3) BGR, got {crop_bgr.dtype} {crop_bgr.shape}"
        )


def to_signed_rgb(crop_bgr: np.ndarray) -> np.ndarray:
    """BGR uint8 (h, w, 3) -> RGB float32 (3, h, w) in [-1, 1]."""
    rgb = crop_bgr[:, :, ::-1].transpose(2, 0, 1).astype(np.float32)
    return rgb * (2.0 / 255.0) - 1.0


def from_signed_rgb(chw: np.ndarray) -> np.ndarray:
    """RGB float (3, h, w) in [-1, 1] -> BGR uint8 (h, w, 3); for display and blending."""
    img = (np.clip(chw, -1.0, 1.0) + 1.0) * 127.5
    return np.ascontiguousarray(np.round(img).astype(np.uint8).transpose(1, 2, 0)[:, :, ::-1])


def appearance_input(crop_bgr: np.ndarray, landmarks_crop: np.ndarray) -> np.ndarray:
    """Z_a: the face foreground of an aligned crop, RGB float32 (3, size, size) in [-1, 1]."""
    size = crop_bgr.shape[0]
    _check_crop(crop_bgr, size, "crop_bgr")
    return to_signed_rgb(crop_bgr) * face_mask(landmarks_crop, size)[None]


def render_landmarks(landmarks_crop: np.ndarray, size: int = GEN_SIZE) -> np.ndarray:
    """The six landmark edge channels (6, size, size) float32 in [0, 1]."""
    pts = _fixed(check_landmarks(landmarks_crop, "landmarks_crop"))
    out = np.zeros((EDGE_CHANNELS, size, size), np.uint8)
    for ch, ranges, closed in _PARTS:
        polys = [pts[list(r)].reshape(-1, 1, 2) for r in ranges]
        cv2.polylines(out[ch], polys, closed, 255, 1, cv2.LINE_AA, _SHIFT)
    return out.astype(np.float32) * (1.0 / 255.0)


def render_geometry(
    landmarks_crop: np.ndarray,
    background_crop_bgr: np.ndarray,
    size: int = GEN_SIZE,
    erase_landmarks: np.ndarray | None = None,
) -> np.ndarray:
    """Z_g (GEOMETRY_CHANNELS, size, size) float32: landmark edges, face mask, background x_b.

    ``landmarks_crop`` is the geometry to synthesize (Ŝ_x); ``background_crop_bgr`` is the
    original aligned crop; ``erase_landmarks`` (the original S_x) widens the erased region.
    """
    _check_crop(background_crop_bgr, size, "background_crop_bgr")
    out = np.empty((GEOMETRY_CHANNELS, size, size), np.float32)
    out[:EDGE_CHANNELS] = render_landmarks(landmarks_crop, size)
    mask = face_mask(landmarks_crop, size, also=erase_landmarks)
    out[MASK_CHANNEL] = mask
    out[MASK_CHANNEL + 1 :] = to_signed_rgb(background_crop_bgr) * (1.0 - mask)[None]
    return out
