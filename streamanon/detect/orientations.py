"""Faces at any roll: the face detector run on the frame turned by quarter turns.

Face detectors are trained on upright faces: CenterFace finds faces rolled up to ~45°, and
misses an upside-down face entirely (a 2 s talking-head clip turned by 180°: the default left
the first 32 of 65 frames unanonymized). Upside-down and sideways faces are ordinary in real
footage: a dashcam mounted under the mirror without its flip setting, a body camera, people
lying down. ``--orientations 0,180`` (or ``0,90,180,270``) runs one detector per listed turn,
each on its own turned copy of every frame, so each keeps its own state (tile sweep, small
faces, camera motion) on a stream that looks the same from frame to frame; their boxes and
landmarks are turned back into the frame's pixels and merged by NMS. Cost: one detection per
listed turn.

An angle is how far the frame is turned clockwise before detection: 180 finds upside-down
faces, 90 faces whose top points to the frame's left, 270 to its right.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import cv2
import numpy as np

from streamanon.detect.fast_nms import nms
from streamanon.errors import InputError
from streamanon.types import Detections

TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
MERGE_IOU = 0.3  # the same face found in two turns (a face rolled ~45°) is kept once


def parse_orientations(text: str | Sequence[int]) -> tuple[int, ...]:
    """ "0,180" / "all" / (0, 90) -> sorted unique quarter turns, 0 always first."""
    if isinstance(text, str):
        words = [w.strip() for w in text.split(",") if w.strip()]
        if words == ["all"]:
            return (0, 90, 180, 270)
        try:
            angles = [int(w) for w in words]
        except ValueError:
            raise InputError(
                f"orientations must be 0, 90, 180, 270 or 'all', got {text!r}"
            ) from None
    else:
        angles = [int(a) for a in text]
    bad = [a for a in angles if a not in (0, 90, 180, 270)]
    if bad or not angles:
        raise InputError(f"orientations must be among 0, 90, 180, 270, got {text!r}")
    return tuple(sorted(set(angles) | {0}))


def turn_image(image: np.ndarray, angle: int) -> np.ndarray:
    """``image`` turned clockwise by ``angle`` (0, 90, 180 or 270)."""
    return image if angle == 0 else cv2.rotate(image, TURNS[angle])


def points_back(points: np.ndarray, angle: int, shape: tuple[int, ...]) -> np.ndarray:
    """Points (..., 2) in the image turned by ``angle`` -> the same points in the original
    image of ``shape`` (h, w, ...). Continuous pixel coordinates (edges, not centres)."""
    p = np.asarray(points, np.float32)
    h, w = shape[:2]
    x, y = p[..., 0], p[..., 1]
    if angle == 0:
        return p.copy()
    if angle == 90:  # turned clockwise: x' = h - y, y' = x
        out = (y, h - x)
    elif angle == 180:
        out = (w - x, h - y)
    elif angle == 270:  # turned anticlockwise: x' = y, y' = w - x
        out = (w - y, x)
    else:
        raise InputError(f"angle must be 0, 90, 180 or 270, got {angle}")
    return np.stack(out, axis=-1).astype(np.float32)


def detections_back(dets: Detections, angle: int, shape: tuple[int, ...]) -> Detections:
    """Detections found in the image turned by ``angle``, in the original image's pixels."""
    if angle == 0 or len(dets) == 0:
        return dets
    corners = points_back(dets.xyxy.reshape(-1, 2, 2), angle, shape)
    xyxy = np.concatenate([corners.min(axis=1), corners.max(axis=1)], axis=1)
    return Detections(
        xyxy.astype(np.float32),
        dets.score.copy(),
        landmarks5=None if dets.landmarks5 is None else points_back(dets.landmarks5, angle, shape),
        landmarks68=None
        if dets.landmarks68 is None
        else points_back(dets.landmarks68, angle, shape),
    )


def _concat(parts: list[Detections]) -> Detections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections.empty()
    if len(parts) == 1:
        return parts[0]

    def cat(name: str) -> np.ndarray | None:
        cols = [getattr(p, name) for p in parts]
        return None if any(c is None for c in cols) else np.concatenate(cols)

    return Detections(
        np.concatenate([p.xyxy for p in parts]),
        np.concatenate([p.score for p in parts]),
        landmarks5=cat("landmarks5"),
        landmarks68=cat("landmarks68"),
    )


class TurnedDetector:
    """One detector per quarter turn (see the module docstring); a `Detector` itself.

    ``make``: builds one detector (a `FaceDetector`); it is called once per angle. The
    upright detector's camera motion and window search (the look-ahead's) serve the stage."""

    def __init__(self, make: Callable[[], object], angles: Sequence[int]) -> None:
        self.angles = parse_orientations(angles)
        self.detectors = [make() for _ in self.angles]
        up = self.detectors[0]
        self.thresh = up.thresh
        self.low_thresh = getattr(up, "low_thresh", None)
        self.backend = getattr(up, "backend", None)
        self.name = f"{up.name}@{'/'.join(str(a) for a in self.angles)}"

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        parts = [self.detectors[0](image_bgr)]
        for angle, det in zip(self.angles[1:], self.detectors[1:], strict=True):
            found = det(turn_image(image_bgr, angle))
            parts.append(detections_back(found, angle, image_bgr.shape))
        dets = _concat(parts)
        if len(parts) > 1 and len(dets) > 1:
            dets = dets[nms(dets.xyxy, dets.score, MERGE_IOU)]
        return dets

    def reset(self) -> None:
        for d in self.detectors:
            d.reset()

    @property
    def camera_shift(self) -> tuple[float, float] | None:
        return self.detectors[0].camera_shift
