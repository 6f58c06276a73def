"""Objects other than faces (license plates): the plate `Stage` and every parameter it has.

A plate stage is the same `streamanon.stage.Stage` as the face stage: a plate detector
(`streamanon.registry.PLATE_DETECTORS`), its own `FaceTracker` (boxes only: the tracker
works on any boxes, and its fail-closed output, detections plus coasting predictions, is what
gets covered) and a box redactor from `streamanon.registry.REDACTORS`, used box-exact (the
detector already pads its boxes), never with the face's head-shaped region. The realistic
face methods (mask, swap, ida) have no meaning for a plate: plates are blurred then.

Every plate tracking and cadence parameter is here (`PLATE_COAST_S`, `PLATE_TRACKER`,
``every`` = ``--plate-every``).
"""

from __future__ import annotations

from streamanon.errors import InputError
from streamanon.registry import box_redactor_for, make_plate_detector, make_redactor
from streamanon.stage import Stage
from streamanon.track import FaceTracker

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
# The cover when the plate redactor fails (fail closed).
PLATE_COVER = "solid"


def plate_stage(
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
) -> Stage:
    """Plates: detector -> tracker -> box redactor (``method`` when it can cover a box, else
    blur). ``detector``: one already built (else ``kind`` / ``model_path``); ``thresh``:
    None = the detector's own (PlateNet: chosen on the tune split; SSD 0.2)."""
    if detector is None:
        detector = make_plate_detector(model_path, kind, levels, low_thresh, threads)
    if isinstance(detector, _PlateDetector):  # shared by another stage (batch workers)
        detector = detector.inner
    if thresh is None:
        thresh = float(getattr(detector, "thresh", 0.2))
    low_thresh = min(low_thresh, thresh)
    if not 0.0 < low_thresh <= thresh <= 1.0:
        raise InputError(f"need 0 < plate low_thresh <= thresh <= 1, got {low_thresh}, {thresh}")
    tracker_args = dict(
        thresh=thresh, low_thresh=low_thresh, coast_s=coast_s, smooth_landmarks=False,
        **PLATE_TRACKER,
    )  # fmt: skip
    return Stage(
        "plate",
        _PlateDetector(detector, thresh),
        lambda: FaceTracker(**tracker_args),
        make_redactor(box_redactor_for(method), exact=True),
        make_redactor(PLATE_COVER, exact=True),
        thresh=thresh,
        every=every,
    )


class _PlateDetector:
    """A plate detector seen through the stage's `Detector` protocol (plate detectors keep
    no state between frames and measure no camera motion)."""

    def __init__(self, inner, thresh: float) -> None:
        self.inner, self.thresh, self.name = inner, thresh, getattr(inner, "name", "plate")
        if hasattr(inner, "scan"):
            self.scan = inner.scan

    def __call__(self, image_bgr):
        return self.inner(image_bgr)

    def reset(self) -> None:
        pass

    camera_shift = None


def plate_stage_for(opts, detector=None) -> Stage:
    """The plate stage ``opts`` (`streamanon.anonymizer.Options`) asks for; ``detector``: a
    plate detector already built for the same options."""
    return plate_stage(
        method=opts.method,
        model_path=opts.plate_model,
        thresh=opts.plate_thresh,
        low_thresh=min(opts.low_thresh, opts.plate_thresh or 1.0),
        coast_s=max(opts.coast_s, PLATE_COAST_S),
        levels=opts.plate_levels,
        threads=opts.threads,
        kind=opts.plate_detector,
        every=opts.plate_every,
        detector=detector,
    )
