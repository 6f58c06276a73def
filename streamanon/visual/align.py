"""The generator's canonical face crop: a similarity transform from 68 landmarks to a template.

Contract with the generator (`streamanon/synth/`) and the blender (`streamanon/anonymize/`):

- Crops are ``GEN_SIZE`` x ``GEN_SIZE`` (128) BGR uint8, made with ``warp_to_crop``.
- ``align_matrix(landmarks68, size)`` is the (2, 3) float64 similarity matrix M that maps frame
  pixels to crop pixels (``crop_xy = M @ [x, y, 1]``). It is a least-squares fit of the stable
  points (eyes, nose, mouth corners) to ``TEMPLATE68 * size``; jaw, brows and inner mouth move
  with expression and are left out so the crop does not wobble when the person talks.
- ``TEMPLATE68`` is the iBUG 68-point mean shape in unit crop coordinates ([0, 1], x right, y
  down). It is the generalized-Procrustes mean of dlib's landmarks on the 521 MIT-licensed SFHQ
  synthetic faces, made left/right symmetric, with the eye line horizontal. The face (jaw width
  61 % of the crop, chin at 90 %) leaves ~32 % of the crop above the brows for forehead and
  hair, and ~19 % each side for background, so the generator sees context to blend into.
- ``warp_back`` / ``warp_back_roi`` invert the warp into the frame (for blending).

Pure numpy/cv2; each call is well under a millisecond at 128^2.
"""

from __future__ import annotations

import cv2
import numpy as np

GEN_SIZE = 128

# fmt: off
TEMPLATE68 = np.array([
    [0.1946, 0.4229], [0.1986, 0.5030], [0.2099, 0.5821], [0.2267, 0.6591],
    [0.2554, 0.7316], [0.3015, 0.7947], [0.3597, 0.8470], [0.4255, 0.8881],
    [0.5000, 0.8998], [0.5745, 0.8881], [0.6403, 0.8470], [0.6985, 0.7947],
    [0.7446, 0.7316], [0.7733, 0.6591], [0.7901, 0.5821], [0.8014, 0.5030],
    [0.8054, 0.4229], [0.2469, 0.3683], [0.2874, 0.3343], [0.3428, 0.3253],
    [0.3990, 0.3337], [0.4520, 0.3547], [0.5480, 0.3547], [0.6010, 0.3337],
    [0.6572, 0.3253], [0.7126, 0.3343], [0.7531, 0.3683], [0.5000, 0.4195],
    [0.5000, 0.4712], [0.5000, 0.5227], [0.5000, 0.5755], [0.4385, 0.6139],
    [0.4684, 0.6226], [0.5000, 0.6306], [0.5316, 0.6226], [0.5615, 0.6139],
    [0.3077, 0.4251], [0.3421, 0.4053], [0.3830, 0.4062], [0.4174, 0.4350],
    [0.3798, 0.4420], [0.3389, 0.4410], [0.5826, 0.4350], [0.6170, 0.4062],
    [0.6579, 0.4053], [0.6923, 0.4251], [0.6611, 0.4410], [0.6202, 0.4420],
    [0.3859, 0.7145], [0.4288, 0.6943], [0.4708, 0.6812], [0.5000, 0.6893],
    [0.5292, 0.6812], [0.5712, 0.6943], [0.6141, 0.7145], [0.5725, 0.7512],
    [0.5319, 0.7677], [0.5000, 0.7705], [0.4681, 0.7677], [0.4275, 0.7512],
    [0.4043, 0.7158], [0.4702, 0.7119], [0.5000, 0.7150], [0.5298, 0.7119],
    [0.5957, 0.7158], [0.5302, 0.7227], [0.5000, 0.7263], [0.4698, 0.7227],
], dtype=np.float64)
# fmt: on
TEMPLATE68.setflags(write=False)

# iBUG 68 index groups.
JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE = np.arange(27, 36)
EYES = np.arange(36, 48)
LIPS_OUTER = np.arange(48, 60)
LIPS_INNER = np.arange(60, 68)
# Points that move little with expression: eyes, nose, mouth corners.
STABLE = np.concatenate([EYES, NOSE, [48, 54]])


class AlignmentError(ValueError):
    """Landmarks or images that cannot be aligned (wrong shape, degenerate, non-finite)."""


def check_landmarks(landmarks68: np.ndarray, name: str = "landmarks68") -> np.ndarray:
    """Return landmarks as float64 (68, 2), raising AlignmentError on bad shape or values."""
    pts = np.asarray(landmarks68, dtype=np.float64)
    if pts.shape != (68, 2):
        raise AlignmentError(f"{name} must have shape (68, 2), got {pts.shape}")
    if not np.isfinite(pts).all():
        raise AlignmentError(f"{name} contains NaN or inf")
    return pts


def similarity_fit(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, shift) with dst ~ M @ [src, 1] (Umeyama).

    src, dst: (n, 2) with n >= 2. Returns (2, 3) float64. Reflections are excluded.
    """
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var = (s**2).sum()
    if var < 1e-12:
        raise AlignmentError("cannot fit a similarity to coincident points")
    u, sig, vt = np.linalg.svd(d.T @ s)
    sign = np.array([1.0, 1.0 if np.linalg.det(u @ vt) >= 0 else -1.0])
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var
    m = np.empty((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine matrix to (n, 2) points."""
    pts = np.asarray(points, dtype=np.float64)
    return pts @ matrix[:, :2].T + matrix[:, 2]


def invert_matrix(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (crop -> frame for an alignment matrix)."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def align_matrix(landmarks68: np.ndarray, size: int = GEN_SIZE) -> np.ndarray:
    """(2, 3) similarity matrix mapping frame pixels to the canonical ``size`` x ``size`` crop."""
    pts = check_landmarks(landmarks68)
    if size < 8:
        raise AlignmentError(f"crop size must be >= 8, got {size}")
    return similarity_fit(pts[STABLE], TEMPLATE68[STABLE] * size)


def warp_to_crop(image: np.ndarray, matrix: np.ndarray, size: int = GEN_SIZE) -> np.ndarray:
    """The aligned crop (size, size, C) of ``image``; outside the frame the edge is replicated."""
    if image.ndim not in (2, 3) or image.shape[0] == 0 or image.shape[1] == 0:
        raise AlignmentError(f"image must be (h, w) or (h, w, c) and non-empty, got {image.shape}")
    return cv2.warpAffine(
        image, np.asarray(matrix, np.float64), (size, size), flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REPLICATE,
    )  # fmt: skip


def warp_back(crop: np.ndarray, matrix: np.ndarray, frame_shape: tuple[int, ...]) -> np.ndarray:
    """The crop put back into a frame of ``frame_shape`` (h, w[, c]); zero outside the crop."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    return cv2.warpAffine(
        crop, np.asarray(matrix, np.float64), (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip


def crop_roi(
    matrix: np.ndarray, size: int, frame_shape: tuple[int, ...]
) -> tuple[int, int, int, int]:
    """Frame box (x0, y0, x1, y1), exclusive and clipped, covering the crop's footprint."""
    h, w = int(frame_shape[0]), int(frame_shape[1])
    # Bilinear sampling touches crop coordinates in (-1, size): pad the footprint by a pixel.
    corners = np.array([[-1, -1], [size, -1], [-1, size], [size, size]], np.float64)
    fr = transform_points(corners, invert_matrix(matrix))
    x0, y0 = np.floor(fr.min(0)).astype(int)
    x1, y1 = np.ceil(fr.max(0)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)


def crop_scale(matrix: np.ndarray) -> float:
    """Frame pixels per crop pixel of the (2, 3) frame -> crop ``matrix`` (a similarity)."""
    return 1.0 / np.sqrt(abs(float(np.linalg.det(np.asarray(matrix, np.float64)[:, :2]))))


def warp_back_roi(
    crop: np.ndarray,
    matrix: np.ndarray,
    frame_shape: tuple[int, ...],
    interpolation: int = cv2.INTER_LINEAR,
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Like ``warp_back`` but only over the crop's footprint: (patch, (x0, y0, x1, y1)).

    Warping into the whole frame costs ~ms at 1080p; the patch is what blending needs.
    """
    x0, y0, x1, y1 = crop_roi(matrix, crop.shape[0], frame_shape)
    if x1 <= x0 or y1 <= y0:
        return crop[:0, :0], (x0, y0, x0, y0)
    shifted = np.asarray(matrix, np.float64).copy()
    # frame (x, y) = roi (x - x0, y - y0): fold the shift into the matrix.
    shifted[:, 2] += shifted[:, :2] @ np.array([x0, y0], np.float64)
    patch = cv2.warpAffine(
        crop, shifted, (x1 - x0, y1 - y0),
        flags=interpolation | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_CONSTANT, borderValue=0,
    )  # fmt: skip
    return patch, (x0, y0, x1, y1)
