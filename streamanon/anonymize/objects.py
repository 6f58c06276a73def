"""Objects other than faces (license plates): detect, track and redact them like faces.

`ObjectStage` is the plate half of `Anonymizer`: its own detector (`streamanon.detect.plates`),
its own `FaceTracker` (boxes only: the tracker works on any boxes, and its fail-closed output,
detections plus coasting predictions, is what gets covered) and a box redactor. The face
half is untouched; `Anonymizer.track` / `apply` call `track` / `apply` here when plates are on.

Plates are covered box-exact (the detector already pads its boxes), never with the face's
head-shaped region. The realistic face methods (mask, swap, ida) have no meaning for a plate:
plates are blurred then.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from streamanon.anonymize.classic import BLUR_PIXELS, PIXELATE_BLOCKS, blurred, pixelated
from streamanon.anonymize.regions import clip_boxes
from streamanon.errors import InputError
from streamanon.types import Detections, Frame

log = logging.getLogger(__name__)

OBJECTS = ("face", "plate")
PLATE_METHODS = ("blur", "pixelate", "solid")
# Plates coast at least this long after their detector loses them. The shipped detector
# misses a plate for a few frames now and then (motion blur, angles); a parked or followed
# car's plate moves little in a second, and a stale blurred box costs nothing. On the
# composed clip this takes per-frame coverage from 98.0 % (0.5 s) to 99.3 % (docs/plates.md).
PLATE_COAST_S = 1.0
# Plate boxes are tight (the detector pads them itself), so the tracker covers the detection
# as it is: no union with the lagging filtered box (which trailed an approaching plate and
# grew the covered region to half the car's front), half a frame's travel ahead for the
# predicted boxes between detections and none behind, and a coasting box grows 20 % per
# second of coasting (faces: 50 %).
PLATE_TRACKER = dict(coast_grow=0.2, stretch=(0.5, 0.0), union_filtered=False)
# Which plate detector `--dashcam` / `--objects plate` use without --plate-model / --plate-
# detector: the one that scored best on the held-out photos (docs/plates.md, "Measured").
DEFAULT_PLATE_DETECTOR = "ssd"
PLATE_DETECTORS = ("auto", "net", "ssd")


def parse_objects(text: str | Iterable[str]) -> tuple[str, ...]:
    """``"face,plate"`` -> ("face", "plate"); unknown names are an input error."""
    items = text.split(",") if isinstance(text, str) else list(text)
    names = tuple(dict.fromkeys(s.strip().lower() for s in items if s.strip()))
    bad = [n for n in names if n not in OBJECTS]
    if bad or not names:
        raise InputError(
            f"--objects {','.join(items) if not isinstance(text, str) else text!r}: "
            f"choose from {', '.join(OBJECTS)} (comma-separated)"
        )
    return names


def plate_method(method: str) -> str:
    """The redaction used for plates when faces use `method`."""
    return method if method in PLATE_METHODS else "blur"


class BoxRedactor:
    """Blur / pixelate / fill exactly the given boxes (clipped to the frame)."""

    def __init__(self, method: str = "blur", color: tuple[int, int, int] = (0, 0, 0)) -> None:
        if method not in PLATE_METHODS:
            raise InputError(f"plate redaction {method!r}: choose from {', '.join(PLATE_METHODS)}")
        self.method = method
        self.color = np.array(color, np.uint8)

    def apply(self, image_bgr: np.ndarray, boxes: Detections) -> None:
        for x1, y1, x2, y2 in clip_boxes(boxes.xyxy, image_bgr.shape).tolist():
            if x2 <= x1 or y2 <= y1:
                continue
            roi = image_bgr[y1:y2, x1:x2]
            if self.method == "blur":
                roi[...] = blurred(roi, BLUR_PIXELS)
            elif self.method == "pixelate":
                roi[...] = pixelated(roi, PIXELATE_BLOCKS)
            else:
                roi[...] = self.color


@dataclass
class ObjectCounters:
    """Per class, like the face counters: boxes covered, detections, coasted boxes, tracks."""

    covered: int = 0
    detections: int = 0
    coasted: int = 0
    fallbacks: int = 0
    track_ids: set[int] = field(default_factory=set)

    def as_dict(self) -> dict:
        return {
            "covered": self.covered,
            "detections": self.detections,
            "coasted": self.coasted,
            "tracks": len(self.track_ids),
            "fallbacks": self.fallbacks,
        }


class ObjectStage:
    """Plates: detector -> tracker -> redactor, one frame at a time, in frame order."""

    kind = "plate"

    def __init__(
        self,
        *,
        method: str = "blur",
        model_path: str | None = None,
        thresh: float | None = None,
        low_thresh: float = 0.1,
        coast_s: float = PLATE_COAST_S,
        levels: tuple[int, ...] | None = None,
        threads: int | None = None,
        detector=None,
        kind: str = "auto",
        every: int = 1,
    ) -> None:
        from streamanon.track import FaceTracker

        if detector is None:
            detector = make_plate_detector(model_path, kind, levels, low_thresh, threads)
        if thresh is None:  # the detector's own (PlateNet: chosen on the tune split)
            thresh = float(getattr(detector, "thresh", 0.2))
        low_thresh = min(low_thresh, thresh)
        if not 0.0 < low_thresh <= thresh <= 1.0:
            raise InputError(
                f"need 0 < plate low_thresh <= thresh <= 1, got {low_thresh}, {thresh}"
            )
        if int(every) < 1:
            raise InputError(f"plate detection cadence must be >= 1 frame, got {every}")
        self.detector = detector
        self.thresh = thresh
        self.every = int(every)
        self._frames = 0
        self._tracker_args = dict(
            thresh=thresh, low_thresh=low_thresh, coast_s=coast_s, smooth_landmarks=False,
            **PLATE_TRACKER,
        )  # fmt: skip
        self.tracker = FaceTracker(**self._tracker_args)
        self.redactor = BoxRedactor(plate_method(method))
        self._cover = BoxRedactor("solid")
        self.counters = ObjectCounters()

    def reset(self) -> None:
        """Forget every plate track (the next, unrelated input of a folder)."""
        from streamanon.track import FaceTracker

        self.tracker = FaceTracker(**self._tracker_args)
        self.counters = ObjectCounters()
        self._frames = 0

    def track(self, frame: Frame, t: float) -> Detections:
        """Detect (every `every`-th frame; the tracker predicts the frames between) and track
        plates at time `t`; stores them on ``frame.objects['plate']``."""
        run = self._frames % self.every == 0
        self._frames += 1
        if not run:
            dets = Detections.empty()
        elif hasattr(self.detector, "scan"):  # high-resolution windows, one per detection
            dets = self.detector.scan(frame.image, self._frames // self.every)
        else:
            dets = self.detector(frame.image)
        boxes = self.tracker.update(dets, t)
        self.tracker.pop_ended()  # plates keep no per-track state
        frame.objects[self.kind] = boxes
        c = self.counters
        c.detections += int((dets.score >= self.thresh).sum()) if len(dets) else 0
        c.covered += len(boxes)
        if boxes.coasting is not None:
            c.coasted += int(boxes.coasting.sum())
        if boxes.track_id is not None:
            c.track_ids.update(int(i) for i in boxes.track_id if i >= 0)
        return boxes

    def apply(self, frame: Frame) -> None:
        """Redact the frame's plates in place; a failure fills them solid (fail closed)."""
        boxes = frame.objects.get(self.kind)
        if boxes is None or len(boxes) == 0:
            return
        try:
            self.redactor.apply(frame.image, boxes)
        except Exception as exc:  # noqa: BLE001 - never let a plate through unredacted
            log.warning("frame %d: plate redaction failed (%s); plates filled", frame.index, exc)
            self.counters.fallbacks += len(boxes)
            self._cover.apply(frame.image, boxes)

    def report(self) -> dict:
        return self.counters.as_dict()


def make_plate_detector(
    model_path: str | None = None,
    kind: str = "auto",
    levels: tuple[int, ...] | None = None,
    low_thresh: float = 0.1,
    threads: int | None = None,
):
    """A shipped detector (``kind`` "net": PlateNet, trained here; "ssd": HyperLPR's SSD;
    "auto": `DEFAULT_PLATE_DETECTOR`), or the model file `model_path`: a PlateNet export
    (by its metadata, or ``kind`` "net") or a YOLOv9 plate model."""
    from streamanon.detect import plates as P

    if kind not in PLATE_DETECTORS:
        raise InputError(f"--plate-detector {kind!r}: choose from {', '.join(PLATE_DETECTORS)}")
    low = min(low_thresh, 0.1)
    kw = {"levels": tuple(levels)} if levels else {}
    if model_path is not None:
        if kind == "auto":  # a PlateNet export says so in its metadata; else YOLOv9
            kind = "net" if P.is_platenet_file(model_path) else "yolo"
        if kind == "net":
            return P.PlateNetONNX(model_path, low_thresh=low, threads=threads, **kw)
        if kind == "ssd":
            return P.PlateSSD(model_path, low_thresh=low, threads=threads, **kw)
        return P.YoloV9Plates(model_path, low_thresh=low, threads=threads)
    kind = DEFAULT_PLATE_DETECTOR if kind == "auto" else kind
    if kind == "net":
        return P.PlateNetONNX(low_thresh=low, threads=threads, **kw)
    return P.PlateSSD(low_thresh=low, threads=threads, **kw)


def make_object_stages(opts) -> list[ObjectStage]:
    """The stages for every non-face class in ``opts.objects`` (empty: faces only)."""
    names = parse_objects(opts.objects)
    if "plate" not in names:
        return []
    return [
        ObjectStage(
            method=opts.method,
            model_path=opts.plate_model,
            thresh=opts.plate_thresh,
            low_thresh=min(opts.low_thresh, opts.plate_thresh or 1.0),
            coast_s=max(opts.coast_s, PLATE_COAST_S),
            levels=opts.plate_levels,
            threads=opts.threads,
            kind=getattr(opts, "plate_detector", "auto"),
            every=getattr(opts, "plate_every", 1),
        )
    ]
