"""Small faces at a cost close to one downscaled pass: a base pass, a sweep of high-resolution
tiles, and a refresh of the small faces already found.

A 640 px pass over a 1080p frame shrinks a 32 px face to 11 px, under CenterFace's limit
(measured on the crowd photos of ../shared/data: 44 % of faces 8-12 px tall at the network
input are found, 95 % of 12-16 px, 100 % from 16 px). Running the whole frame at the
resolution that keeps a ``min_face`` face at 16 px costs 4x (1080p) to 16x (4K) more, so per
frame this detector runs:

1. the base pass over the whole frame at ``input_size`` (every face >= ~16 / base_scale px);
2. ``tiles_per_frame`` tiles of the high-resolution grid, in turn, so the whole frame is
   searched for small faces every ``ceil(tiles / tiles_per_frame)`` frames (default: every
   8 frames: a tile every other frame at 1080p, 1.5 a frame at 4K); the first frame and a
   scene cut are searched whole;
3. strips along the edges where a fast-panning camera brings new people in (every frame
   while it pans by 8 px a frame or more);
4. one batched pass over fixed-size windows around every small face found in the last
   ``keep_s`` seconds, at high resolution, so a small face once found is detected in every
   frame (and its track never has to coast on a guess).

Results are merged with NMS; the tracker downstream covers what is found. A face that
appears from nowhere at 24-48 px may wait up to one sweep period to be found; one that
grows from the distance or walks in from the side is already tracked.
"""

from __future__ import annotations

import math

import numpy as np

from streamanon.detect.base import (
    box_iou,
    check_image,
    clip_detections,
    pad_to_multiple,
    resize_scale,
)
from streamanon.detect.centerface import CenterFace, resized
from streamanon.detect.fast_nms import nms
from streamanon.errors import InputError
from streamanon.motion import CameraMotion
from streamanon.types import Detections

# Faces at least this tall at the network input are found reliably (measured, see above).
NET_MIN_FACE = 16.0
# Mean absolute difference (0-255) of 32 px thumbnails above which a frame starts a new scene.
CUT_DIFF = 40.0
# With tiles_per_frame=None, enough tiles per frame to search the whole frame this often.
SWEEP_FRAMES = 8
# Pans slower than this (px per frame, or this share of the frame side) bring a face in over
# more frames than a sweep takes; faster ones get the entering strip searched every frame.
STRIP_MIN_SHIFT = (8.0, 0.005)
# Windows around known small faces are this many pixels (high-resolution) on a side.
WINDOW = 160
# `detect_windows` fits each window into a square this many pixels on a side: a window three
# face sizes wide (a face and its reach, the look-ahead's backward search) shows the face at
# ~40 px, well above NET_MIN_FACE; upscaling stops at MAX_UPSCALE.
SEARCH_SIDE = 128
MAX_UPSCALE = 4.0


def tile_grid(width: int, height: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """xyxy tiles of at most `tile` px covering a width x height image, neighbours overlapping
    by at least `overlap` px so that any object smaller than `overlap` lies whole in a tile."""
    if tile <= overlap:
        raise InputError(f"tile size {tile} must exceed the overlap {overlap}")

    def cuts(n: int) -> list[tuple[int, int]]:
        if n <= tile:
            return [(0, n)]
        k = math.ceil((n - overlap) / (tile - overlap))
        size = math.ceil((n + (k - 1) * overlap) / k)
        step = (n - size) / (k - 1)
        return [(round(i * step), round(i * step) + size) for i in range(k)]

    return [(x1, y1, x2, y2) for y1, y2 in cuts(height) for x1, x2 in cuts(width)]


class MultiScaleDetector:
    """CenterFace with a base pass, a high-resolution tile sweep and a small-face refresh.

    input_size: longest side of the base pass (None: native, which makes the rest moot).
    min_face: smallest face height (source pixels) to find; sets the high-resolution factor.
    tiles_per_frame: high-resolution tiles searched per frame (0: no sweep; None: a whole
    sweep every SWEEP_FRAMES frames).
    refresh: also re-detect known small faces at high resolution every frame.
    """

    name = "centerface"

    def __init__(
        self,
        model_path=None,
        *,
        input_size: int | None = 640,
        min_face: float = 24.0,
        tiles_per_frame: int | None = None,
        tile: int = 704,
        max_windows: int = 12,
        refresh: bool = True,
        keep_s: float = 1.0,
        low_thresh: float = 0.1,
        threads: int | None = None,
    ) -> None:
        if min_face <= 0 or (tiles_per_frame is not None and tiles_per_frame < 0):
            raise InputError("need min_face > 0 and tiles_per_frame >= 0")
        self.net = CenterFace(
            model_path, input_size=input_size, low_thresh=low_thresh, threads=threads
        )
        self.input_size = input_size
        self.min_face, self.tiles_per_frame, self.tile = float(min_face), tiles_per_frame, tile
        self.refresh, self.keep_s, self.max_windows = refresh, keep_s, max_windows
        self._next_tile = 0
        self._credit = 0.0
        self._thumb: np.ndarray | None = None
        self._camera = CameraMotion()
        self._shift = (0.0, 0.0)
        self._frame = 0
        # Small faces seen recently: (box in source px, frame index last seen).
        self._small: list[tuple[np.ndarray, int]] = []
        self.stats = {"base": 0, "tiles": 0, "windows": 0, "search": 0}

    @property
    def camera_shift(self) -> tuple[float, float]:
        """How far the scene moved between the last two frames (px); the tracker reuses it."""
        return self._shift

    def reset(self) -> None:
        """Forget the small faces, the sweep position and the camera (an unrelated input)."""
        self._next_tile, self._frame, self._small, self._credit = 0, 0, [], 0.0
        self._thumb, self._camera, self._shift = None, CameraMotion(), (0.0, 0.0)

    # -- geometry ----------------------------------------------------------------------------

    def hires_scale(self) -> float:
        """Factor that brings a `min_face` face to NET_MIN_FACE px (never above native)."""
        return min(1.0, NET_MIN_FACE / self.min_face)

    def small_limit(self, shape: tuple[int, ...]) -> float:
        """Faces below this height (source px) may be missed by the base pass."""
        base = resize_scale(shape, self.input_size)
        return NET_MIN_FACE * 1.5 / base

    # -- detection ---------------------------------------------------------------------------

    def __call__(self, image_bgr: np.ndarray) -> Detections:
        image = check_image(image_bgr)
        base_s = resize_scale(image.shape, self.input_size)
        hi = self.hires_scale()
        # One shrink of the frame serves the base pass, the camera motion and the cut test.
        small = resized(image, base_s)
        self._shift = self._camera(small, base_s)
        parts = [self.net.detect_resized(small, image.shape)]
        self.stats["base"] += 1
        if hi > base_s * 1.2:  # the base pass is not already fine enough
            base = parts[0]
            parts += self._sweep(image, hi, small)
            if self.refresh:
                # Faces the base pass or this frame's tiles already found need no window.
                fresh = [base.xyxy[base.score >= 0.5]] + [p.xyxy[p.score >= 0.3] for p in parts[1:]]
                parts += self._windows(image, hi, np.concatenate(fresh).reshape(-1, 4))
        dets = _merge(parts, self.net.nms_iou)
        dets = clip_detections(dets, image.shape)
        self._remember(dets, image.shape)
        self._frame += 1
        return dets

    def detect_windows(self, image_bgr: np.ndarray, windows: np.ndarray) -> list[Detections]:
        """Faces inside each of ``windows`` ((n, 4) xyxy source px; clipped to the image), one
        network batch for all: each window is resized to fit a `SEARCH_SIDE` square. Boxes
        and landmarks in the image's pixels, scores >= the detector's ``low_thresh``. No state
        changes (the sweep, the small faces and the camera are left as they were)."""
        image = check_image(image_bgr)
        h, w = image.shape[:2]
        wins = np.asarray(windows, np.float64).reshape(-1, 4)
        crops, origins = [], []
        for x1, y1, x2, y2 in wins:
            x1, y1 = int(np.clip(np.floor(x1), 0, w - 1)), int(np.clip(np.floor(y1), 0, h - 1))
            x2, y2 = int(np.clip(np.ceil(x2), x1 + 1, w)), int(np.clip(np.ceil(y2), y1 + 1, h))
            crop = image[y1:y2, x1:x2]
            s = min(SEARCH_SIDE / max(crop.shape[:2]), MAX_UPSCALE)
            scaled = _resize(crop, s)
            canvas = np.zeros((SEARCH_SIDE, SEARCH_SIDE, 3), np.uint8)  # one batch: equal sizes
            ch, cw = min(scaled.shape[0], SEARCH_SIDE), min(scaled.shape[1], SEARCH_SIDE)
            canvas[:ch, :cw] = scaled[:ch, :cw]
            crops.append(canvas)
            origins.append(
                (x1, y1, crop.shape[1] / scaled.shape[1], crop.shape[0] / scaled.shape[0])
            )
        out = []
        for d, (x1, y1, fx, fy) in zip(self.net.detect_batch(crops), origins, strict=True):
            d.xyxy *= np.array([fx, fy, fx, fy], np.float32)
            d.landmarks5 *= np.array([fx, fy], np.float32)
            out.append(clip_detections(_shift(d, x1, y1), image.shape))
        self.stats["search"] += len(crops)
        return out

    def _sweep(self, image: np.ndarray, hi: float, small: np.ndarray) -> list[Detections]:
        h, w = image.shape[:2]
        # Overlap: any face small enough to be missed by the base pass fits whole in a tile.
        overlap = math.ceil(self.small_limit(image.shape) * 1.3)
        src_tile = max(int(self.tile / hi), overlap + 32)
        grid = tile_grid(w, h, src_tile, overlap)
        out = []
        # The first frame and a cut (a new scene) are searched whole: nothing is tracked yet.
        per_frame = self.tiles_per_frame
        if per_frame is None:  # auto: the whole frame every SWEEP_FRAMES frames
            # Fractional rates (4 tiles in 8 frames) are paid as whole tiles on some frames.
            self._credit += len(grid) / SWEEP_FRAMES
            per_frame, self._credit = int(self._credit), self._credit - int(self._credit)
        n = len(grid) if self._cut(small) else per_frame
        regions = [grid[(self._next_tile + k) % len(grid)] for k in range(min(n, len(grid)))]
        self._next_tile += len(regions)
        if n < len(grid):
            regions += self._entering(w, h, overlap)
        for x1, y1, x2, y2 in regions:
            d = self.net.detect_scaled(image[y1:y2, x1:x2], hi)
            out.append(_shift(d, x1, y1))
            self.stats["tiles"] += 1
        return out

    def _entering(self, w: int, h: int, overlap: int) -> list[tuple[int, int, int, int]]:
        """Strips along the edges where a panning camera brings new people into view: they
        are searched every frame, not only when the sweep comes round."""
        dx, dy = self._shift
        out = []
        if abs(dx) >= max(STRIP_MIN_SHIFT[0], STRIP_MIN_SHIFT[1] * w):
            m = min(w, math.ceil(2 * abs(dx) + overlap))
            out.append((0, 0, m, h) if dx > 0 else (w - m, 0, w, h))
        if abs(dy) >= max(STRIP_MIN_SHIFT[0], STRIP_MIN_SHIFT[1] * h):
            m = min(h, math.ceil(2 * abs(dy) + overlap))
            out.append((0, 0, w, m) if dy > 0 else (0, h - m, w, h))
        return out

    def _cut(self, image: np.ndarray) -> bool:
        thumb = _resize(image, 32 / max(image.shape[:2])).astype(np.int16)
        prev, self._thumb = self._thumb, thumb
        if prev is None or prev.shape != thumb.shape:
            return True
        return float(np.abs(thumb - prev).mean()) > CUT_DIFF

    def _windows(self, image: np.ndarray, hi: float, fresh: np.ndarray) -> list[Detections]:
        if not self._small:
            return []
        stale = self._small
        if len(fresh):
            iou = box_iou(np.array([b for b, _ in stale]), fresh)
            stale = [s for s, row in zip(stale, iou, strict=True) if row.max() < 0.3]
        h, w = image.shape[:2]
        side = int(WINDOW / hi)  # window side in source px
        crops, origins, windows = [], [], []
        # Longest unseen first, so that in a crowd every face gets its turn.
        for box, _ in sorted(stale, key=lambda e: e[1]):
            if len(windows) >= self.max_windows:
                break
            if any(_inside(box, win, 0.1 * side) for win in windows):
                continue  # a neighbour's window already holds this face
            cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
            x1 = int(np.clip(round(cx - side / 2), 0, max(w - side, 0)))
            y1 = int(np.clip(round(cy - side / 2), 0, max(h - side, 0)))
            windows.append((x1, y1, x1 + side, y1 + side))
            crop = image[y1 : y1 + side, x1 : x1 + side]
            scaled = _resize(crop, hi)
            # One batch needs equal sizes: pad every crop to the full window.
            canvas = np.zeros((WINDOW, WINDOW, 3), np.uint8)
            ch, cw = min(scaled.shape[0], WINDOW), min(scaled.shape[1], WINDOW)
            canvas[:ch, :cw] = scaled[:ch, :cw]
            crops.append(pad_to_multiple(canvas, 32))
            fx = crop.shape[1] / max(scaled.shape[1], 1)
            origins.append((x1, y1, fx, crop.shape[0] / max(scaled.shape[0], 1)))
        out = []
        for d, (x1, y1, fx, fy) in zip(self.net.detect_batch(crops), origins, strict=True):
            d.xyxy *= np.array([fx, fy, fx, fy], np.float32)
            d.landmarks5 *= np.array([fx, fy], np.float32)
            out.append(_shift(d, x1, y1))
        self.stats["windows"] += len(crops)
        return out

    def _remember(self, dets: Detections, shape: tuple[int, ...]) -> None:
        limit = self.small_limit(shape)
        keep_frames = max(1, round(self.keep_s * 30))  # frames; the detector has no clock
        old = [(b, f) for b, f in self._small if self._frame - f < keep_frames]
        conf = dets[dets.score >= 0.3]
        new = [(b.copy(), self._frame) for b in conf.xyxy if b[3] - b[1] < limit]
        # A face seen again replaces its older entries.
        if new and old:
            iou = box_iou(np.array([b for b, _ in old]), np.array([b for b, _ in new]))
            old = [o for o, row in zip(old, iou, strict=True) if row.max() < 0.2]
        self._small = (old + new)[-64:]  # bounded: a crowd of tiny faces is swept by tiles


def _inside(box: np.ndarray, win: tuple[int, int, int, int], margin: float) -> bool:
    return (
        box[0] >= win[0] + margin
        and box[1] >= win[1] + margin
        and box[2] <= win[2] - margin
        and box[3] <= win[3] - margin
    )


def _resize(image: np.ndarray, s: float) -> np.ndarray:
    import cv2

    if s == 1.0:
        return image
    h, w = image.shape[:2]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def _shift(d: Detections, dx: float, dy: float) -> Detections:
    d.xyxy += np.array([dx, dy, dx, dy], np.float32)
    if d.landmarks5 is not None:
        d.landmarks5 += np.array([dx, dy], np.float32)
    return d


def _merge(parts: list[Detections], iou: float) -> Detections:
    parts = [p for p in parts if len(p)]
    if not parts:
        return Detections(np.zeros((0, 4)), np.zeros(0), landmarks5=np.zeros((0, 5, 2)))
    if len(parts) == 1:
        return parts[0]
    dets = Detections.concat(parts)
    return dets[nms(dets.xyxy, dets.score, iou)]
