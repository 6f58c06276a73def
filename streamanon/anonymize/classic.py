"""Classic redaction: blur, pixelate, solid box, face-shaped mask.

Every redactor changes the image in place over each face's head box (hairline to chin, see
`regions`), so one call covers detections and coasting predictions alike; with ``exact=True``
the box redactors cover the boxes as given instead (plates, whose detector pads its boxes).
Redactors are chosen by name in `streamanon.registry` (``REDACTORS``). Speed: blurring
is done by shrinking the head to a few pixels and enlarging it back, which costs about the
same for any face size, unlike a kernel as wide as the face.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from streamanon.anonymize.regions import clip_boxes, face_polygon, head_boxes, head_boxes_xyxy
from streamanon.errors import InputError
from streamanon.types import Detections

# Head boxes are shrunk to this many pixels along their longer side before the blur. 6 px
# leaves no identity (and no face CenterFace can find); see tests/test_classic.py.
BLUR_PIXELS = 6
PIXELATE_BLOCKS = 8


@runtime_checkable
class Redactor(Protocol):
    def apply(self, image_bgr: np.ndarray, faces: Detections) -> None:
        """Redact `faces` in `image_bgr` (BGR uint8, modified in place)."""
        ...


def _check(image: np.ndarray) -> None:
    if (
        not isinstance(image, np.ndarray)
        or image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
    ):
        raise InputError(
            f"redaction needs a BGR uint8 (h, w, 3) image, got {getattr(image, 'shape', image)}"
        )
    if not image.flags.writeable:
        raise InputError("redaction works in place but the image is read-only")


def _shrink_size(h: int, w: int, pixels: int) -> tuple[int, int]:
    """(w, h) of a copy whose longer side is `pixels`, keeping the aspect ratio."""
    s = pixels / max(h, w)
    return max(1, round(w * s)), max(1, round(h * s))


def blurred(roi: np.ndarray, pixels: int = BLUR_PIXELS) -> np.ndarray:
    """A heavily blurred copy of `roi`: shrink (area average), soften, enlarge (bilinear:
    8x faster than bicubic on a head-sized box)."""
    h, w = roi.shape[:2]
    small = cv2.resize(roi, _shrink_size(h, w, pixels), interpolation=cv2.INTER_AREA)
    if min(small.shape[:2]) >= 3:
        small = cv2.GaussianBlur(small, (3, 3), 0)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def pixelated(roi: np.ndarray, blocks: int = PIXELATE_BLOCKS) -> np.ndarray:
    h, w = roi.shape[:2]
    small = cv2.resize(roi, _shrink_size(h, w, blocks), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


class _Stateless:
    """Classic redactors keep nothing per track: `forget` and `report` are no-ops."""

    name = ""

    def forget(self, track_ids: Iterable[int]) -> None:
        pass

    def report(self) -> dict:
        return {}


class _BoxRedactor(_Stateless, ABC):
    def __init__(self, mask_scale: float = 1.3, exact: bool = False) -> None:
        head_boxes_xyxy(np.zeros((0, 4)), mask_scale)  # validates
        self.mask_scale, self.exact = mask_scale, exact

    @abstractmethod
    def _fill(self, roi: np.ndarray) -> None:
        """Subclasses fill this in."""

    def apply(self, image_bgr: np.ndarray, faces: Detections) -> None:
        _check(image_bgr)
        if self.exact:
            boxes = clip_boxes(faces.xyxy, image_bgr.shape)
        else:
            boxes = head_boxes(faces, image_bgr.shape, self.mask_scale)
        for x1, y1, x2, y2 in boxes.tolist():
            if x2 > x1 and y2 > y1:  # empty after clipping: face entirely off-frame
                self._fill(image_bgr[y1:y2, x1:x2])


class BlurRedactor(_BoxRedactor):
    """Blur the head box (shrink to `pixels` along its longer side, then enlarge)."""

    name = "blur"

    def __init__(
        self, mask_scale: float = 1.3, pixels: int = BLUR_PIXELS, *, exact: bool = False
    ) -> None:
        super().__init__(mask_scale, exact)
        if pixels < 1:
            raise InputError(f"blur pixels must be >= 1, got {pixels}")
        self.pixels = pixels

    def _fill(self, roi: np.ndarray) -> None:
        roi[...] = blurred(roi, self.pixels)


class PixelateRedactor(_BoxRedactor):
    """Replace the head box by `blocks` x `blocks`-ish flat squares."""

    name = "pixelate"

    def __init__(
        self, mask_scale: float = 1.3, blocks: int = PIXELATE_BLOCKS, *, exact: bool = False
    ) -> None:
        super().__init__(mask_scale, exact)
        if blocks < 1:
            raise InputError(f"pixelate blocks must be >= 1, got {blocks}")
        self.blocks = blocks

    def _fill(self, roi: np.ndarray) -> None:
        roi[...] = pixelated(roi, self.blocks)


class SolidRedactor(_BoxRedactor):
    """Fill the head box with one colour (BGR)."""

    name = "solid"

    def __init__(
        self,
        mask_scale: float = 1.3,
        color: tuple[int, int, int] = (0, 0, 0),
        *,
        exact: bool = False,
    ) -> None:
        super().__init__(mask_scale, exact)
        self.color = np.array(color, dtype=np.uint8)

    def _fill(self, roi: np.ndarray) -> None:
        roi[...] = self.color


class MaskRedactor(_Stateless):
    """Fill the face's shape. With landmarks: the 68-point hull extended to the hairline,
    joined with the ellipse inscribed in the detector's box (so a bad landmark fit can never
    uncover the face), cut to the head box. Without: the ellipse inscribed in the head box.
    `fill` is "blur" or "solid"."""

    name = "mask"

    def __init__(
        self,
        mask_scale: float = 1.3,
        fill: str = "blur",
        color: tuple[int, int, int] = (0, 0, 0),
        pixels: int = BLUR_PIXELS,
    ) -> None:
        head_boxes_xyxy(np.zeros((0, 4)), mask_scale)
        if fill not in ("blur", "solid"):
            raise InputError(f"mask fill must be 'blur' or 'solid', got {fill!r}")
        self.mask_scale, self.fill, self.pixels = mask_scale, fill, pixels
        self.color = np.array(color, dtype=np.uint8)

    def mask(
        self, faces: Detections, i: int, head: np.ndarray, roi_origin: tuple[int, int], roi_shape
    ) -> np.ndarray:
        """uint8 mask (255 = redact) of face `i` over the ROI at `roi_origin` (x, y)."""
        mask = np.zeros(roi_shape[:2], np.uint8)
        o = np.array(roi_origin, dtype=np.float64)
        has_lm = faces.landmarks68 is not None and np.isfinite(faces.landmarks68[i]).all()
        _fill_ellipse(mask, (faces.xyxy[i] if has_lm else head) - np.tile(o, 2))
        if has_lm:
            poly = face_polygon(faces.landmarks68[i], self.mask_scale) - o
            # Fixed-point polygon (4 fractional bits) so sub-pixel outlines stay in place.
            cv2.fillPoly(
                mask, [np.round(poly * 16).astype(np.int32)], 255, lineType=cv2.LINE_8, shift=4
            )
        if not mask.any():  # sub-pixel faces round away: cover the whole (tiny) box instead
            mask[...] = 255
        return mask

    def apply(self, image_bgr: np.ndarray, faces: Detections) -> None:
        _check(image_bgr)
        heads = head_boxes_xyxy(faces.xyxy, self.mask_scale, faces.landmarks5)
        rois = clip_boxes(heads, image_bgr.shape)
        for i, (x1, y1, x2, y2) in enumerate(rois.tolist()):
            if x2 <= x1 or y2 <= y1:
                continue
            roi = image_bgr[y1:y2, x1:x2]
            mask = self.mask(faces, i, heads[i], (x1, y1), roi.shape)
            if self.fill == "blur":
                fill = blurred(roi, self.pixels)
            else:
                fill = np.empty_like(roi)
                fill[...] = self.color
            # cv2.copyTo writes through the ROI view (row-strided is fine) and is ~50x faster
            # than np.copyto(where=...).
            cv2.copyTo(fill, mask, roi)


def _fill_ellipse(mask: np.ndarray, box: np.ndarray) -> None:
    """Fill the ellipse inscribed in `box` (xyxy, mask coordinates, may reach outside)."""
    x1, y1, x2, y2 = (float(v) for v in box)
    centre = (round((x1 + x2) / 2 * 16), round((y1 + y2) / 2 * 16))
    axes = (max(round((x2 - x1) / 2 * 16), 1), max(round((y2 - y1) / 2 * 16), 1))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 255, thickness=-1, lineType=cv2.LINE_8, shift=4)
