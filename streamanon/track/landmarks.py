"""Kalman smoothing of the 68 landmarks, split into head motion and face shape.

Head motion (centre, scale, in-plane angle) changes fast but is measured precisely (it is an
average over 68 points); the shape (points in the head's own frame) is noisy point by point
but changes slowly (expressions). Filtering them apart lets the head follow quick moves while
the jitter of single points is smoothed hard. All filters are constant-velocity in seconds.
"""

from __future__ import annotations

import numpy as np

from streamanon.track.kalman import PointsFilter

# Noise levels. Centre in face sizes; log-scale and angle dimensionless; shape in units of
# the points' RMS spread (about a third of the face size).
CENTER_MEAS, CENTER_ACCEL = 0.005, 6.0
POSE_MEAS, POSE_ACCEL = 0.01, 3.0
SHAPE_MEAS, SHAPE_ACCEL = 0.05, 0.6
INIT_VEL = 1.0


def pose_of(points: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(centre (2,), RMS spread, eye-line angle in radians) of 68 iBUG points.

    The eye line only sets the first frame's angle; later angles are fitted to the shape."""
    c = points.mean(axis=0)
    spread = float(np.sqrt(((points - c) ** 2).sum(axis=1).mean()))
    eye = points[42:48].mean(axis=0) - points[36:42].mean(axis=0)
    return c, max(spread, 1e-3), float(np.arctan2(eye[1], eye[0]))


def _rot(a: float) -> np.ndarray:
    return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])


class LandmarkSmoother:
    """Smooths one face's 68 landmarks over time: ``update(points, t) -> smoothed points``."""

    def __init__(self, points: np.ndarray, t: float) -> None:
        p = np.asarray(points, dtype=np.float64).reshape(68, 2)
        c, s, a = pose_of(p)
        self.t = t
        self.center = PointsFilter(c[None], CENTER_MEAS * 3 * s, INIT_VEL * 3 * s)
        self.pose = PointsFilter(np.array([[np.log(s), a]]), POSE_MEAS, INIT_VEL)
        self.shape = PointsFilter(self._local(p, c, s, a), SHAPE_MEAS, INIT_VEL)

    @staticmethod
    def _local(p: np.ndarray, c: np.ndarray, s: float, a: float) -> np.ndarray:
        return (p - c) @ _rot(-a).T / s

    @property
    def points(self) -> np.ndarray:
        """Current smoothed points (68, 2) in the frame."""
        log_s, a = self.pose.pos[0]
        return self.shape.pos @ _rot(a).T * np.exp(log_s) + self.center.pos[0]

    def update(self, points: np.ndarray, t: float) -> np.ndarray:
        p = np.asarray(points, dtype=np.float64).reshape(68, 2)
        c, s, _ = pose_of(p)
        # The angle that best turns the current shape onto these points (least squares over
        # all 68, far steadier than the eye line), kept continuous across the +-pi wrap.
        q, pc = self.shape.pos, (p - c) / s
        a = float(np.arctan2((q[:, 0] * pc[:, 1] - q[:, 1] * pc[:, 0]).sum(), (q * pc).sum()))
        a = self.pose.pos[0, 1] + (a - self.pose.pos[0, 1] + np.pi) % (2 * np.pi) - np.pi
        dt = t - self.t
        self.t = t
        face = 3 * s  # the RMS spread is about a third of the face size
        self.center.predict(dt, CENTER_ACCEL * face)
        self.pose.predict(dt, POSE_ACCEL)
        self.shape.predict(dt, SHAPE_ACCEL)
        self.center.update(c[None], CENTER_MEAS * face)
        self.pose.update(np.array([[np.log(s), a]]), POSE_MEAS)
        self.shape.update(self._local(p, c, s, a), SHAPE_MEAS)
        return self.points
