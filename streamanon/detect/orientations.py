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

``auto`` (the default) probes instead: on the first frame of an input all three turned copies,
then one turned copy every `PROBE_EVERY` / 3 detections in rotation (each turn every
`PROBE_EVERY`), with one plain pass of the upright detector's own network (no second model
in memory, no spike of three passes on a live frame); a turn
that finds a sure face (>= `PROBE_SURE`) where the upright pass finds none (>= 0.5) is added
for the rest of the input, from that frame on, with one warning. A probe costs two base
passes (upright and one turned copy; four on the first frame), ~1 ms a frame spread over
its period. Measured on every clip of ../shared/data and
the bench clips (8 probes each): no upright footage triggered it; one of 123 photos did (a
close-up filling the frame: a turned pass scored the face 0.81, so that photo was searched
twice). Hamilton turned 90, 180 or 270 degrees triggers it on its first frame.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import cv2
import numpy as np

from streamanon.detect.base import box_iou
from streamanon.detect.fast_nms import nms
from streamanon.errors import InputError
from streamanon.types import Detections

log = logging.getLogger(__name__)

TURNS = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}
MERGE_IOU = 0.3  # the same face found in two turns (a face rolled ~45°) is kept once
PROBE_EVERY = 50  # detections between two probes of ``auto`` (2 s at 25 fps, every frame)
PROBE_SURE = 0.8  # score of a turned copy's face that adds its turn
UPRIGHT_SURE = 0.5  # ... where the upright pass has no face this sure (weak ones are not covered)


def parse_orientations(text: str | Sequence[int]) -> tuple[int, ...]:
    """ "0,180" / "all" / (0, 90) -> sorted unique quarter turns, 0 always first ("auto" and
    "0": upright; `is_auto` tells them apart)."""
    if isinstance(text, str):
        words = [w.strip() for w in text.split(",") if w.strip()]
        if words == ["auto"]:
            return (0,)
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


def is_auto(text: str | Sequence[int]) -> bool:
    """Does ``--orientations`` ask for probing (the default)?"""
    return isinstance(text, str) and text.strip() == "auto"


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


def probe_turns(
    image: np.ndarray,
    detect: Callable[[np.ndarray], Detections],
    angles: Sequence[int] = (90, 180, 270),
) -> list[int]:
    """Of ``angles``, the quarter turns whose turned copy of ``image`` shows a sure face
    (>= PROBE_SURE) where ``detect`` on the upright image finds none (>= UPRIGHT_SURE, IoU
    >= 0.3)."""
    up = detect(image)
    up = up[up.score >= UPRIGHT_SURE]
    found = []
    for angle in angles:
        d = detections_back(detect(turn_image(image, angle)), angle, image.shape)
        sure = d.xyxy[d.score >= PROBE_SURE]
        if len(sure) and len(up):
            sure = sure[box_iou(sure, up.xyxy).max(axis=1) < 0.3]
        if len(sure):
            found.append(angle)
    return found


class TurnedDetector:
    """One detector per quarter turn (see the module docstring); a `Detector` itself.

    ``make``: builds one detector (a `FaceDetector`); it is called once per angle. The
    upright detector's camera motion and window search (the look-ahead's) serve the stage.
    ``probe``: ``auto``: turns are added when probes find rolled faces, with this plain
    detector, or True: the upright detector's own network (its backend's ``net``, or the
    backend itself); None: the listed turns only."""

    def __init__(
        self,
        make: Callable[[], object],
        angles: Sequence[int] = (0,),
        probe: Callable[[np.ndarray], Detections] | bool | None = None,
    ) -> None:
        self._make = make
        self._fixed = parse_orientations(angles)
        self.angles = self._fixed
        self.detectors = [make() for _ in self.angles]
        self._calls = 0
        up = self.detectors[0]
        self.thresh = up.thresh
        self.low_thresh = getattr(up, "low_thresh", None)
        self.backend = getattr(up, "backend", None)
        self._base_name = up.name
        if probe is True:  # a plain, stateless pass of the network the stage already holds
            probe = getattr(self.backend, "net", None) or self.backend or up
        self._probe = probe or None

    @property
    def name(self) -> str:
        auto = "+auto" if self._probe is not None else ""
        return f"{self._base_name}@{'/'.join(str(a) for a in self.angles)}{auto}"

    def _maybe_probe(self, image: np.ndarray) -> None:
        step = max(PROBE_EVERY // 3, 1)
        k, self._calls = self._calls, self._calls + 1
        if self._probe is None or k % step or len(self.angles) == 4:
            return
        left = [a for a in (90, 180, 270) if a not in self.angles]
        # The first frame: every turn; then one turn a time, in rotation.
        ask = left if k == 0 else [left[(k // step) % len(left)]]
        new = probe_turns(image, self._probe, ask)
        if not new:
            return
        log.warning(
            "faces found on the frame turned by %s degrees that the upright detector misses "
            "(a camera mounted upside down, people lying down?): detecting at those turns too "
            "from now on (--orientations)", "/".join(str(a) for a in new),
        )  # fmt: skip
        for _ in new:
            self.detectors.append(self._make())
        self.angles = self.angles + tuple(new)

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        self._maybe_probe(image_bgr)
        if len(self.detectors) == 1:  # upright only (auto before any probe found a turn)
            return self.detectors[0](image_bgr)
        parts = [self.detectors[0](image_bgr)]
        for angle, det in zip(self.angles[1:], self.detectors[1:], strict=True):
            found = det(turn_image(image_bgr, angle))
            parts.append(detections_back(found, angle, image_bgr.shape))
        dets = Detections.concat(parts)
        return dets[nms(dets.xyxy, dets.score, MERGE_IOU)] if len(dets) > 1 else dets

    def reset(self) -> None:
        """A new input: the listed turns only, probed again."""
        keep = len(self._fixed)
        self.detectors, self.angles = self.detectors[:keep], self._fixed
        self._calls = 0
        for d in self.detectors:
            d.reset()

    @property
    def camera_shift(self) -> tuple[float, float] | None:
        return self.detectors[0].camera_shift
