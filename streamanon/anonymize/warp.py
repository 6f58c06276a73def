"""Piecewise-affine warping of a face crop from one set of 68 landmarks to another.

The `swap` renderer uses it to move a delegate face (from the bank) onto the geometry Ŝ_x that
GSA built for this frame, so the result has the person's pose, jaw line and mouth opening but
someone else's appearance. The triangulation is fixed (computed once on the template), so the
same triangles are used for every face and every frame: no flicker from re-triangulating.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from scipy.spatial import Delaunay

from streamanon.visual.align import TEMPLATE68


def _border(size: int) -> np.ndarray:
    s = size - 1
    h = s / 2
    return np.array([[0, 0], [h, 0], [s, 0], [s, h], [s, s], [h, s], [0, s], [0, h]], np.float64)


@lru_cache(maxsize=4)
def triangles(size: int) -> np.ndarray:
    """(T, 3) vertex indices over the 68 landmarks + 8 crop-border points."""
    pts = np.vstack([TEMPLATE68 * size, _border(size)])
    return Delaunay(pts).simplices.astype(np.int32)


def warp_face(image: np.ndarray, src68: np.ndarray, dst68: np.ndarray) -> np.ndarray:
    """``image`` (S, S, C) whose face has landmarks ``src68``, re-shaped so they land on ``dst68``.

    The crop border is pinned, so the background stays in place and only the face moves.
    One `cv2.remap` does the whole warp: every output pixel is labelled with the triangle it
    falls in, and that triangle's affine map (dst → src) gives its sampling position.
    """
    size = image.shape[0]
    src = np.vstack([np.asarray(src68, np.float64), _border(size)])
    dst = np.vstack([np.asarray(dst68, np.float64), _border(size)])
    tris = triangles(size)
    # Per triangle, A (3, 2) with [x, y, 1] @ A = source position; pinv keeps a collapsed
    # (zero-area) triangle finite — it then covers no pixel anyway.
    d = np.concatenate([dst[tris], np.ones((len(tris), 3, 1))], axis=2)
    affine = np.linalg.pinv(d) @ src[tris]
    label = np.zeros((size, size), np.int32)  # 0 = outside every triangle (identity map)
    pts = np.round(dst * 16).astype(np.int32)
    for t, tri in enumerate(tris, start=1):
        cv2.fillConvexPoly(label, pts[tri], int(t), cv2.LINE_8, 4)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    identity = np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
    a = np.concatenate([identity[None], affine])[label]  # (S, S, 3, 2)
    map_x = xs * a[..., 0, 0] + ys * a[..., 1, 0] + a[..., 2, 0]
    map_y = xs * a[..., 0, 1] + ys * a[..., 1, 1] + a[..., 2, 1]
    return cv2.remap(
        image, map_x.astype(np.float32), map_y.astype(np.float32), cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )  # fmt: skip


# -- thin-plate spline ------------------------------------------------------------------------
TPS_GRID = 8  # the map is solved every ~TPS_GRID pixels and interpolated (smooth anyway)
TPS_SMOOTH = 1e-3  # regularisation (relative): near-interpolation, no wild swings on noisy points


def _u(r2: np.ndarray) -> np.ndarray:
    """TPS kernel U(r) = r^2 log r^2 (0 at r = 0)."""
    out = np.maximum(r2, 1e-20)
    np.log(out, out=out)
    out *= r2
    return out


def tps_fit(ctrl: np.ndarray, values: np.ndarray, smooth: float = TPS_SMOOTH) -> np.ndarray:
    """(n + 3, 2) coefficients of the TPS f with f(ctrl_i) ~ values_i (coordinates scaled to ~1)."""
    n = len(ctrl)
    k = _u(_sq_dist(ctrl, ctrl))
    p = np.hstack([np.ones((n, 1)), ctrl])
    a = np.zeros((n + 3, n + 3))
    a[:n, :n] = k + smooth * np.eye(n)
    a[:n, n:] = p
    a[n:, :n] = p.T
    b = np.zeros((n + 3, 2))
    b[:n] = values
    return np.linalg.solve(a, b)


def _sq_dist(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) squared distances: dx*dx + dy*dy, the same sums a reduction over the
    last axis makes, without its cost (a sum over an axis of 2 is slow in numpy)."""
    dx = a[:, 0, None] - b[None, :, 0]
    dy = a[:, 1, None] - b[None, :, 1]
    dx *= dx
    dy *= dy
    dx += dy
    return dx


def tps_eval(ctrl: np.ndarray, coef: np.ndarray, pts: np.ndarray) -> np.ndarray:
    k = _u(_sq_dist(pts, ctrl))
    return k @ coef[: len(ctrl)] + coef[-3] + pts @ coef[-2:]


def _border_dense(size: int, per_side: int = 4) -> np.ndarray:
    s = size - 1
    t = np.linspace(0.0, s, per_side + 1)[:-1]
    z = np.zeros_like(t)
    return np.vstack([np.column_stack([t, z]), np.column_stack([z + s, t]),
                      np.column_stack([s - t, z + s]), np.column_stack([z, s - t])])  # fmt: skip


def warp_face_tps(image: np.ndarray, src68: np.ndarray, dst68: np.ndarray) -> np.ndarray:
    """Like `warp_face`, with a thin-plate spline: smooth everywhere (no triangle kinks), so
    the delegate's features keep their relative shape as the head turns.

    The backward map dst -> src is the TPS through the 68 landmarks and the pinned crop
    border, solved on a coarse grid and interpolated to every pixel.
    """
    size = image.shape[0]
    scale = float(size)
    src = np.vstack([np.asarray(src68, np.float64), _border_dense(size)]) / scale
    dst = np.vstack([np.asarray(dst68, np.float64), _border_dense(size)]) / scale
    coef = tps_fit(dst, src)
    n = max(size // TPS_GRID, 2) + 1
    g = np.linspace(0.0, (size - 1) / scale, n)
    gx, gy = np.meshgrid(g, g)
    mapped = (tps_eval(dst, coef, np.column_stack([gx.ravel(), gy.ravel()])) * scale).astype(
        np.float32
    )
    ux, uy = _grid_lookup(size, n)
    mx = cv2.remap(mapped[:, 0].reshape(n, n), ux, uy, cv2.INTER_LINEAR)
    my = cv2.remap(mapped[:, 1].reshape(n, n), ux, uy, cv2.INTER_LINEAR)
    return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


@lru_cache(maxsize=8)
def _grid_lookup(size: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``size`` pixels falls on an ``n``-point grid spanning the same 0..size-1.

    (`cv2.resize` would assume pixel-centre alignment, n/size scaling, and shift the whole map
    by up to 1.5 px: the delegate's landmarks then miss Ŝ_x.)
    """
    u = (np.arange(size) * ((n - 1) / (size - 1))).astype(np.float32)
    ux, uy = np.meshgrid(u, u)
    return ux, uy
