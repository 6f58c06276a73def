"""Constant-velocity Kalman filters in continuous time (dt in seconds, any frame rate).

Boxes use `BoxFilter` (constant velocity on [cx, cy, w, h, vcx, vcy, vw, vh], checked against
filterpy's KalmanFilter, `FilterpyBoxFilter`); the
tracker sees only its small interface (`predict`, `update`, `shift`, `state`, `velocity`), so
another box filter is one factory passed to `FaceTracker(box_filter=...)`. `PointsFilter` runs
many identical constant-velocity filters at once (the 68 landmarks, see `landmarks.py`): every
coordinate has the same model and is measured at the same moments, so all share one 2x2
covariance and one gain, and an update is a few numpy operations. Box noise levels are
relative to the face size, so small and large faces behave alike.
"""

from __future__ import annotations

import numpy as np
from filterpy.kalman import KalmanFilter

# Box filter noise, in face sizes (max(w, h)) and seconds.
BOX_MEAS_STD = 0.05  # detector jitter of centre and size
BOX_ACCEL_STD = 6.0  # how fast velocity can change (sizes / s^2)
BOX_INIT_VEL_STD = 1.0  # unknown initial velocity (sizes / s)


_POS, _VEL = np.arange(4), np.arange(4, 8)  # state layout [cx, cy, w, h, vcx, vcy, vw, vh]


def _cv_blocks(dt: float) -> tuple[np.ndarray, np.ndarray]:
    """Transition F and white-noise-acceleration Q (per unit accel variance) for [p, v]."""
    f = np.array([[1.0, dt], [0.0, 1.0]])
    q = np.array([[dt**3 / 3, dt**2 / 2], [dt**2 / 2, dt]])
    return f, q


def xyxy_to_z(box: np.ndarray) -> np.ndarray:
    """xyxy -> [cx, cy, w, h] with sizes clamped at 0 (degenerate boxes stay finite)."""
    b = np.asarray(box, dtype=np.float64)
    wh = np.maximum(b[2:] - b[:2], 0.0)  # ufunc: np.clip's wrapper costs more than the maths
    return np.concatenate([(b[:2] + b[2:]) / 2, wh])


def z_to_xyxy(z: np.ndarray) -> np.ndarray:
    """[cx, cy, w, h] (or (n, 4) of them, one row per box) -> xyxy, sizes clamped at 0."""
    c, wh = z[..., :2], np.maximum(z[..., 2:4], 0.0)
    return np.concatenate([c - wh / 2, c + wh / 2], axis=-1)


def face_size(z: np.ndarray) -> float:
    """Scale for the noise models: the larger side, at least one pixel."""
    return float(max(z[2], z[3], 1.0))


def make_box_filter(box: np.ndarray) -> KalmanFilter:
    """A filter started at `box` (xyxy) with zero velocity; call `predict_box` before use."""
    z = xyxy_to_z(box)
    s = face_size(z)
    kf = KalmanFilter(dim_x=8, dim_z=4)
    kf.x[:4, 0] = z
    kf.H = np.eye(4, 8)
    kf.R = np.eye(4) * (BOX_MEAS_STD * s) ** 2
    kf.P = np.diag([(BOX_MEAS_STD * s) ** 2] * 4 + [(BOX_INIT_VEL_STD * s) ** 2] * 4)
    return kf


def predict_box(kf: KalmanFilter, dt: float) -> None:
    """Advance the box filter by dt seconds (dt = 0 leaves it unchanged)."""
    if dt <= 0:
        return
    _, q = _cv_blocks(dt)
    q = q * (BOX_ACCEL_STD * face_size(kf.x[:4, 0])) ** 2
    kf.F = np.eye(8)
    kf.F[_POS, _VEL] = dt
    kf.Q = np.zeros((8, 8))
    kf.Q[_POS, _POS], kf.Q[_POS, _VEL], kf.Q[_VEL, _POS], kf.Q[_VEL, _VEL] = (
        q[0, 0],
        q[0, 1],
        q[1, 0],
        q[1, 1],
    )
    kf.predict()
    kf.x[2:4, 0] = np.clip(kf.x[2:4, 0], 0.0, None)


def update_box(kf: KalmanFilter, box: np.ndarray) -> None:
    z = xyxy_to_z(box)
    kf.R = np.eye(4) * (BOX_MEAS_STD * face_size(z)) ** 2
    kf.update(z)
    kf.x[2:4, 0] = np.clip(kf.x[2:4, 0], 0.0, None)


class BoxFilter:
    """The tracker's box filter: constant velocity on [cx, cy, w, h], noise relative to size.

    The four coordinates share one motion model, one noise level and one measurement moment,
    so their 8x8 covariance is four copies of one 2x2 [pos, vel] block (as in `PointsFilter`):
    this filter keeps that block as three floats. Same estimates as filterpy's 8-state filter
    (`FilterpyBoxFilter`, tests/test_track_fast.py) at a tenth of the cost per call, which
    is what a crowd of hundreds of tracks spends its tracker time on.
    """

    __slots__ = ("_x", "_p00", "_p01", "_p11")

    def __init__(self, box: np.ndarray) -> None:
        z = xyxy_to_z(box)
        s = face_size(z)
        self._x = np.concatenate([z, np.zeros(4)])
        self._p00, self._p01, self._p11 = (BOX_MEAS_STD * s) ** 2, 0.0, (BOX_INIT_VEL_STD * s) ** 2

    def predict(self, dt: float) -> None:
        if dt <= 0:
            return
        x = self._x
        q = (BOX_ACCEL_STD * max(x[2], x[3], 1.0)) ** 2
        p00, p01, p11 = self._p00, self._p01, self._p11
        self._p00 = p00 + 2 * dt * p01 + dt * dt * p11 + q * dt**3 / 3
        self._p01 = p01 + dt * p11 + q * dt * dt / 2
        self._p11 = p11 + q * dt
        x[:4] += x[4:] * dt
        np.maximum(x[2:4], 0.0, out=x[2:4])

    def update(self, box: np.ndarray) -> None:
        z = xyxy_to_z(box)
        r = (BOX_MEAS_STD * face_size(z)) ** 2
        p00, p01 = self._p00, self._p01
        k0, k1 = p00 / (p00 + r), p01 / (p00 + r)
        x = self._x
        resid = z - x[:4]
        x[:4] += k0 * resid
        x[4:] += k1 * resid
        self._p00, self._p01, self._p11 = p00 - k0 * p00, p01 - k0 * p01, self._p11 - k1 * p01
        np.maximum(x[2:4], 0.0, out=x[2:4])

    def shift(self, d: np.ndarray) -> None:
        """Move the centre by ``d`` (dx, dy) px: the camera moved."""
        self._x[0:2] += d

    @property
    def state(self) -> np.ndarray:
        """[cx, cy, w, h] now (a view: copy before changing it)."""
        return self._x[:4]

    @property
    def box(self) -> np.ndarray:
        """The filtered box, xyxy."""
        return z_to_xyxy(self._x[:4])

    @property
    def velocity(self) -> np.ndarray:
        """(vcx, vcy) in px per second."""
        return self._x[4:6]


class FilterpyBoxFilter:
    """`BoxFilter` on filterpy's general 8-state Kalman filter: the reference it is checked
    against, and a template for a filter that does not share one block per coordinate."""

    def __init__(self, box: np.ndarray) -> None:
        self._kf = make_box_filter(box)

    def predict(self, dt: float) -> None:
        predict_box(self._kf, dt)

    def update(self, box: np.ndarray) -> None:
        update_box(self._kf, box)

    def shift(self, d: np.ndarray) -> None:
        self._kf.x[0:2, 0] += d

    @property
    def state(self) -> np.ndarray:
        return self._kf.x[:4, 0]

    @property
    def box(self) -> np.ndarray:
        return z_to_xyxy(self._kf.x[:4, 0])

    @property
    def velocity(self) -> np.ndarray:
        return self._kf.x[4:6, 0]


class PointsFilter:
    """Constant-velocity Kalman filter over many coordinates measured together.

    State: positions (k, d) and velocities (k, d); P is the 2x2 [pos, vel] covariance shared
    by every coordinate (exact, because all coordinates have the same model and noise).
    Noise levels are absolute (in the points' units) and may change with every call.
    """

    def __init__(self, points: np.ndarray, meas_std: float, init_vel_std: float) -> None:
        self.pos = np.asarray(points, dtype=np.float64).copy()
        self.vel = np.zeros_like(self.pos)
        self.P = np.diag([meas_std**2, init_vel_std**2])

    def predict(self, dt: float, accel_std: float) -> None:
        if dt <= 0:
            return
        f, q = _cv_blocks(dt)
        self.pos += self.vel * dt
        self.P = f @ self.P @ f.T + q * accel_std**2

    def update(self, points: np.ndarray, meas_std: float) -> None:
        gain = self.P[:, 0] / (self.P[0, 0] + meas_std**2)  # K for H = [1, 0]
        resid = np.asarray(points, dtype=np.float64) - self.pos
        self.pos += gain[0] * resid
        self.vel += gain[1] * resid
        self.P = self.P - np.outer(gain, self.P[0])
