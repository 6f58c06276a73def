"""`Stage`: one class of object (faces, plates) as detector -> tracker -> method, frame by frame.

The `Anonymizer` is a list of stages; faces and plates are two instances of this one class
(built by `streamanon.anonymizer.face_stage` and `streamanon.objects.plate_stage`).
A stage works in two halves, as the threaded frame loop runs them:

- `track(frame, t)` (stateful, in frame order): detect when the cadence says so, track, and
  store the boxes to cover on the frame (``frame.faces`` or ``frame.objects[kind]``);
  `update(frame, t, None)` is a frame that is not detected: the tracker predicts only;
- `apply(frame)`: cover those boxes with the method; if the method raises, the boxes are
  covered by the stage's ``cover`` (fail closed) and counted as fallbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from streamanon.cadence import Cadence
from streamanon.motion import CameraMotion
from streamanon.track import FaceTracker
from streamanon.types import Detections, Frame

if TYPE_CHECKING:
    from streamanon.detect.base import Detector
    from streamanon.registry import FaceMethod

log = logging.getLogger(__name__)

FACE = "face"


@dataclass
class Counters:
    """Per stage: frames seen, boxes covered (detected + coasting), detections at or above
    the stage's threshold, coasting boxes, boxes covered by the fallback, tracks."""

    frames: int = 0
    covered: int = 0
    detections: int = 0
    coasted: int = 0
    fallbacks: int = 0
    backfilled: int = 0  # boxes a file's look-ahead added to held frames (`lookahead`)
    closing_detections: int = 0  # the look-ahead's detections of a segment's last frame
    backward_windows: int = 0  # windows the look-ahead's backward search detected on
    track_ids: set[int] = field(default_factory=set)

    @property
    def faces(self) -> int:
        """The face stage's name for ``covered``."""
        return self.covered

    def count(self, dets: Detections | None, boxes: Detections, thresh: float) -> None:
        self.frames += 1
        if dets is not None and len(dets):
            self.detections += int((dets.score >= thresh).sum())
        self.covered += len(boxes)
        if boxes.coasting is not None:
            self.coasted += int(boxes.coasting.sum())
        if boxes.track_id is not None:
            self.track_ids.update(int(i) for i in boxes.track_id if i >= 0)

    def as_dict(self) -> dict:
        return {
            "covered": self.covered,
            "detections": self.detections,
            "coasted": self.coasted,
            "tracks": len(self.track_ids),
            "fallbacks": self.fallbacks,
        }


@runtime_checkable
class Scans(Protocol):
    """A detector with high-resolution windows to cycle through on video (PlateNet)."""

    def scan(self, image_bgr: np.ndarray, index: int) -> Detections: ...


class Stage:
    """detector -> tracker -> method for the objects of one ``kind``.

    new_tracker: builds the tracker (again at `reset`). every: run the detector on every
    N-th frame and on scene cuts, the tracker predicts in between (`streamanon.cadence`).
    camera: move the tracks with the scene (with ``every`` > 1 measured on every frame by the
    cadence; else the detector's own measurement when it has one, else a `CameraMotion`).
    reid: pass the image to the tracker (its re-identification embeds new faces).
    """

    def __init__(
        self,
        kind: str,
        detector: Detector,
        new_tracker: Callable[[], FaceTracker],
        method: FaceMethod,
        cover: FaceMethod,
        *,
        thresh: float,
        every: int = 1,
        camera: bool = False,
        reid: bool = False,
    ) -> None:
        self.kind, self.detector, self.method, self.cover = kind, detector, method, cover
        self.new_tracker, self.thresh = new_tracker, thresh
        self.camera, self.reid = camera, reid
        self.cadence = Cadence(every, camera=camera, what=f"{kind} detection")
        # The last tracked frame: was it detected, and was it a scene cut (`lookahead`).
        self.detected, self.cut = False, False
        # Called on a cut before its frame is detected (a file's look-ahead closes the old
        # scene's held frames: `lookahead`).
        self.before_cut: Callable[[], None] | None = None
        # A file's look-ahead searches the held frames for a face new at the next detection
        # (`lookahead`), when the detector can search windows; False: the margin alone.
        self.search_back = True
        self._scans = isinstance(detector, Scans)
        self.tracker = new_tracker()
        self._motion = self._own_motion()
        self.counters = Counters()

    @property
    def every(self) -> int:
        return self.cadence.every

    def _own_motion(self) -> CameraMotion | None:
        # With every > 1 the cadence measures the shift on every frame; the stage's own
        # measurement is for detectors that do not measure it themselves, at every == 1.
        return CameraMotion() if self.camera and self.every == 1 else None

    def reset(self) -> None:
        """Start over for an unrelated input: no track, per-track state or count is kept;
        the detector (its state reset) and the method's models are."""
        self.method.forget(sorted(self.counters.track_ids))
        self.tracker = self.new_tracker()
        self._motion = self._own_motion()
        self.detector.reset()
        self.cadence.reset()
        self.detected, self.cut = False, False
        self.counters = Counters()

    def track(self, frame: Frame, t: float) -> Detections:
        """Detect (when the cadence says so) and track at time ``t``; the boxes to cover are
        stored on the frame and returned. In frame order."""
        cuts = self.cadence.cuts
        self.detected = self.cadence.step(frame.image)
        self.cut = self.cadence.cuts > cuts
        if not self.detected:
            return self.update(frame, t, None)
        if self.cut and self.before_cut is not None:
            self.before_cut()
        if self._scans:  # high-resolution windows, one per detected frame
            dets = self.detector.scan(frame.image, self.cadence.frames // self.every)
        else:
            dets = self.detector(frame.image)
        return self.update(frame, t, dets)

    def update(self, frame: Frame, t: float, dets: Detections | None) -> Detections:
        """Track with this frame's detections; ``None``: the frame was not detected, the
        tracker predicts (and keeps covering) the boxes it believes in."""
        shift = None
        if self.camera:
            shift = self.cadence.shift  # measured on every frame when not every frame is detected
            if shift is None and dets is not None:
                shift = self.detector.camera_shift  # the detector measured it on this frame
            if shift is None and self._motion is not None:
                shift = self._motion(frame.image)
        boxes = self.tracker.update(
            Detections.empty() if dets is None else dets,
            t,
            image=frame.image if self.reid else None,
            camera_shift=shift,
            looked=dets is not None,
        )
        ended = self.tracker.pop_ended()
        if ended:
            self.method.forget([tr.id for tr in ended])
        self.set_boxes(frame, boxes)
        self.counters.count(dets, boxes, self.thresh)
        return boxes

    def boxes(self, frame: Frame) -> Detections | None:
        return frame.faces if self.kind == FACE else frame.objects.get(self.kind)

    def set_boxes(self, frame: Frame, boxes: Detections) -> None:
        if self.kind == FACE:
            frame.faces = boxes
        else:
            frame.objects[self.kind] = boxes

    def apply(self, frame: Frame) -> None:
        """Cover the frame's boxes in place; any failure covers them with ``cover``."""
        boxes = self.boxes(frame)
        if boxes is None or len(boxes) == 0:
            return
        try:
            self.method.apply(frame.image, boxes)
        except Exception as exc:  # noqa: BLE001 - never let an object through uncovered
            log.warning(
                "frame %d: %s on %s failed (%s); covered by %s",
                frame.index, getattr(self.method, "name", type(self.method).__name__), self.kind,
                exc, self.cover.name,
            )  # fmt: skip
            self.counters.fallbacks += len(boxes)
            self.cover.apply(frame.image, boxes)

    def report(self) -> dict:
        rep = self.counters.as_dict()
        if self.every > 1:
            rep.update(detected_frames=self.cadence.detected, cuts=self.cadence.cuts)
            if self.counters.backfilled or self.counters.closing_detections:
                rep["backfilled"] = self.counters.backfilled
                rep["closing_detections"] = self.counters.closing_detections
            if self.counters.backward_windows:
                rep["backward_windows"] = self.counters.backward_windows
        return rep
