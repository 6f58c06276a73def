"""`Anonymizer`: detector + tracker + face anonymizer, one frame at a time.

This is the object people embed in their own loop (`anon(frame_bgr)`), and the pipeline uses
its two halves on separate threads: `track()` (stateful, in frame order) and `apply()`.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import asdict, dataclass, field
from fractions import Fraction

import numpy as np

from streamanon.anonymize.registry import (
    FaceMethod,
    fallback_redactor,
    get_spec,
    make_method,
    method_names,
)
from streamanon.motion import CameraMotion
from streamanon.types import Detections, Frame

log = logging.getLogger(__name__)

# Kept for callers of the old names; the registry is the source of truth.
METHODS = method_names()


@dataclass
class Options:
    """Every knob of an anonymization run. Most have a CLI flag; ``low_thresh``, ``landmarks``
    and ``reid`` are for Python callers only."""

    method: str = "blur"
    detector: str = "centerface"
    thresh: float = 0.5
    low_thresh: float = 0.1
    input_size: int | None = 640
    # Small faces (issue: every face, every frame): smallest face height to find (source px),
    # and high-resolution tiles searched per frame (0: base pass only). See detect/multiscale.
    min_face: float = 24.0
    tiles_per_frame: int | None = None  # None: the whole frame every 8 frames
    mask_scale: float = 1.3
    coast_s: float = 0.5
    threads: int | None = None
    landmarks: bool | None = None  # None: only when the method needs them
    # Generative method (issue: --method ida)
    epsilon: float = 2.0  # IPD privacy budget (docs/visual.md)
    neighbours: int = 10
    k_classes: int = 5  # IFA classes distracted: 1.7% re-id at dlib's 0.6 (docs/identity.md)
    seed: int = 0
    keep_appearance: bool = False
    keep_geometry: bool = False
    # The one cover for faces the method cannot serve (it declined them, or it raised):
    # a classic method (see anonymize/registry.py).
    fallback: str = "blur"

    # Classes to anonymize: "face", "plate" or both ("face,plate"); plates: docs/plates.md.
    objects: str = "face"
    plate_model: str | None = None  # a YOLOv9 plate ONNX the user supplies; None: shipped SSD
    plate_thresh: float | None = None  # None: the detector's own (SSD 0.2, PlateNet its tuned one)
    plate_levels: tuple[int, ...] | None = None  # pyramid (longest sides); None: detector default
    plate_detector: str = "auto"  # "net" (trained here), "ssd" or "auto" (the better one)
    plate_every: int = 1  # run the plate detector every N frames, the tracker in between

    # Re-identification gives a person who leaves and comes back (within 10 s) their track,
    # and so their fake identity, back. None: as the method's registry entry says.
    reid: bool | None = None

    def wants_reid(self) -> bool:
        return self.reid if self.reid is not None else get_spec(self.method).needs_reid

    def needs_landmarks(self) -> bool:
        if self.landmarks is not None:
            return self.landmarks
        return get_spec(self.method).needs_landmarks


@dataclass
class Counters:
    frames: int = 0
    faces: int = 0
    detections: int = 0
    coasted: int = 0
    fallbacks: int = 0
    track_ids: set[int] = field(default_factory=set)

    def as_dict(self) -> dict:
        d = asdict(self)
        d["tracks"] = len(self.track_ids)
        del d["track_ids"]
        return d


def _reid_function():
    """The recognizer's embedding as the tracker's re-identification hook (needs torch)."""
    from streamanon.identity.embed import reid_embeddings

    def embed(image: np.ndarray, dets: Detections) -> np.ndarray:
        # The aligner needs a few pixels; a sliver of a face gets a junk (never-matching) box.
        boxes = dets.xyxy.copy()
        centre, half = (
            (boxes[:, :2] + boxes[:, 2:]) / 2,
            np.maximum(boxes[:, 2:] - boxes[:, :2], 8) / 2,
        )
        return reid_embeddings(image, np.hstack([centre - half, centre + half]))

    return embed


class Anonymizer:
    """Anonymize faces in BGR frames.

    >>> anon = Anonymizer(method="blur")
    >>> out = anon(frame_bgr)            # a new, anonymized image
    """

    fps_hint = 30.0

    def __init__(self, options: Options | None = None, /, **kwargs) -> None:
        from streamanon.detect import make_detector

        opts = options or Options()
        for k, v in kwargs.items():
            if not hasattr(opts, k):
                raise TypeError(f"unknown option {k!r}")
            setattr(opts, k, v)
        self.options = opts
        low = min(opts.low_thresh, opts.thresh)
        self.detector = make_detector(
            opts.detector.replace("-", "_"),  # dlib-hog (README) and dlib_hog both work
            thresh=opts.thresh,
            low_thresh=low,
            input_size=opts.input_size,
            landmarks=opts.needs_landmarks(),
            threads=opts.threads,
            min_face=opts.min_face,
            tiles_per_frame=opts.tiles_per_frame,
        )
        self._reid = _reid_function() if opts.wants_reid() else None
        self.tracker = self._new_tracker()
        self._camera = CameraMotion()  # a panning camera moves coasting tracks too
        self._base_detector = self._multiscale()
        self._cover = fallback_redactor(opts)  # validated before the (slow) method is built
        self.face_anonymizer: FaceMethod = make_method(opts)
        self.counters = Counters()
        self._init_objects(opts)
        self._lock = threading.Lock()
        self._next_index = 0
        self._last_t = float("-inf")

    def _new_tracker(self):
        from streamanon.track import FaceTracker

        o = self.options
        low = min(o.low_thresh, o.thresh)
        # footprint: faces half hidden by an object (a pole) stay covered (issue 22).
        return FaceTracker(
            thresh=o.thresh, low_thresh=low, coast_s=o.coast_s, reid=self._reid, footprint=True
        )

    def _multiscale(self):
        """The detector behind its wrappers (landmarks, score cut), if it keeps state."""
        det = self.detector
        while True:
            inner = getattr(det, "inner", None) or getattr(det, "detector", None)
            if inner is None:
                return det
            det = inner

    def _camera_shift(self, image: np.ndarray) -> tuple[float, float]:
        """The scene's shift since the last frame: the multi-scale detector has just measured
        it on this frame, so it is reused rather than computed a second time."""
        if hasattr(self._base_detector, "camera_shift"):
            return self._base_detector.camera_shift
        return self._camera(image)

    def reset(self) -> None:
        """Start over for an unrelated input (the next file of a folder): no track, identity
        or count is carried over; the detector and the method's models are kept."""
        with self._lock:
            self.face_anonymizer.forget(sorted(self.counters.track_ids))
            self.tracker = self._new_tracker()
            self._camera = CameraMotion()
            for stage in self.object_stages:
                stage.reset()
            reset_detector = getattr(self._base_detector, "reset", None)
            if reset_detector is not None:
                reset_detector()
            self.counters = Counters()
            self._next_index = 0
            self._last_t = float("-inf")

    def track(self, frame: Frame) -> Frame:
        """Detect and track; stores every face to anonymize on ``frame.faces``. In frame order."""
        dets = self.detector(frame.image)
        # The tracker's clock must not run backwards, whatever the source's timestamps do.
        t = max(frame.time, self._last_t)
        self._last_t = t
        faces = self.tracker.update(
            dets,
            t,
            image=frame.image if self.tracker.reid else None,
            camera_shift=self._camera_shift(frame.image),
        )
        ended = self.tracker.pop_ended()
        if ended:
            self.face_anonymizer.forget([t.id for t in ended])
        frame.faces = faces
        for stage in self.object_stages:
            stage.track(frame, t)
        c = self.counters
        c.frames += 1
        c.detections += int((dets.score >= self.options.thresh).sum()) if len(dets) else 0
        c.faces += len(faces)
        if faces.coasting is not None:
            c.coasted += int(faces.coasting.sum())
        if faces.track_id is not None:
            c.track_ids.update(int(i) for i in faces.track_id if i >= 0)
        return frame

    def apply(self, frame: Frame) -> Frame:
        """Anonymize ``frame.faces`` in place. Any failure covers the faces (fail closed)."""
        for stage in self.object_stages:
            stage.apply(frame)
        faces = frame.faces
        if len(faces) == 0:
            return frame
        try:
            self.face_anonymizer.apply(frame.image, faces)
        except Exception as exc:  # noqa: BLE001 - never let a face through unanonymized
            log.warning(
                "frame %d: %s failed (%s); faces covered", frame.index, self.options.method, exc
            )
            self.counters.fallbacks += len(faces)
            self._cover.apply(frame.image, faces)
        return frame

    def _init_objects(self, opts: Options) -> None:
        from streamanon.anonymize.objects import make_object_stages, parse_objects

        self.object_stages = make_object_stages(opts)
        if "face" not in parse_objects(opts.objects):
            self.detector = lambda image: Detections.empty()  # plates only

    def object_report(self) -> dict:
        """Counts per non-face class, e.g. ``{"plate": {"covered": ..., "tracks": ...}}``."""
        return {s.kind: s.report() for s in self.object_stages}

    def method_report(self) -> dict:
        """The method's report, with every fallback (declined or failed) counted by reason."""
        rep = dict(self.face_anonymizer.report())
        reasons = dict(rep.get("fallbacks") or {})
        if self.counters.fallbacks:
            reasons["error"] = reasons.get("error", 0) + self.counters.fallbacks
        if reasons:
            rep["fallbacks"] = reasons
        return rep

    def __call__(self, image: np.ndarray, t: float | None = None) -> np.ndarray:
        """Anonymize one BGR frame (a copy is returned). ``t``: its time in seconds."""
        with self._lock:
            idx = self._next_index
            self._next_index += 1
        if t is None:
            t = idx / self.fps_hint  # no clock given: assume a steady frame rate
        frame = Frame(image.copy(), idx, round(t * 1_000_000), Fraction(1, 1_000_000))
        return self.apply(self.track(frame)).image
