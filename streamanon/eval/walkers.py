"""A judged clip of fast walkers (issue 23): real faces crossing a real street video.

No judged clip has a pedestrian crossing the view (~0.4 face sizes a frame at 1.4 m/s and
25 fps), which is what a detector run on one frame in N misses between two detections. This
builds one from real material:

- background: the MOT20-05 street video (dlib's copy, ../shared/data/videos; CC BY-NC-SA 3.0,
  SOURCES.md), scaled to 1280 px wide and cut to 1280x720;
- people: one photo each of deepface identities p04-p07 and p10-p13 (MIT repo, photos from the
  web; SOURCES.md; none tunes the detector), the face found by the judge's RetinaFace, cut
  with its head and shoulders and pasted through a feathered ellipse;
- three walkers per clip, faces 40, 72 and 120 px wide, moving sideways at ``speed`` face sizes
  (max(w, h) of the face box) a frame, starting on frames 2, 3 and 4 (three cadence phases);
  ``scene="edge"``: they walk in from outside the frame (the middle one from the right);
  ``scene="occluder"``: they come out from behind a bar of real texture (a strip of another
  frame of the same video) in the middle of the frame. A walker that has left the frame
  starts again a few frames later (another birth).

Ground truth: each walker's face box per frame, and which share of it is visible (inside the
frame, not behind the bar). `judge` counts a face covered when >= 90 % of its visible part
lies inside the union of the output's head regions (the region blur covers,
`anonymize.regions.head_boxes_xyxy`), on the frames where >= 50 % of it is visible.

Limits: pasted faces do not turn, change pose or scale, and walk on straight lines; the
background people of MOT20-05 are too small to be judged; the camera does not move.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamanon.anonymize.regions import head_boxes_xyxy
from streamanon.errors import InputError
from streamanon.eval.retinaface import RetinaFace
from streamanon.io.video import VideoReader
from streamanon.types import Detections

SPEEDS = (0.1, 0.25, 0.4, 0.6)
SCENES = ("edge", "occluder")
FACE_SIZES = (40, 72, 120)
PHOTOS = (
    "deepface_p04/img13.jpg", "deepface_p05/img16.jpg", "deepface_p06/img18.jpg",
    "deepface_p07/img20.jpg", "deepface_p10/img26.jpg", "deepface_p11/img29.jpg",
    "deepface_p12/img34.jpg", "deepface_p13/img38.jpg",
)  # fmt: skip
VIDEO = "videos/dlib_MOT20-05-raw_even_shorter.mp4"
SIZE = (1280, 720)
BAR = (490, 790)  # the occluder's x range: wider than the largest walker's cut-out
COVERED = 0.9  # share of the visible face inside the covered region
JUDGED = 0.5  # share of the face visible for a frame to be judged


@dataclass
class WalkerClip:
    """Frames and per-walker ground truth: ``boxes`` (frames, walkers, 4) xyxy face boxes
    (NaN when the walker is not in the frame), ``visible`` (frames, walkers) share of each
    face box inside the frame and not behind the bar."""

    name: str
    frames: list[np.ndarray]
    boxes: np.ndarray
    visible: np.ndarray
    bar: tuple[int, int] | None = None
    births: int = 0


@dataclass
class _Person:
    cut: np.ndarray  # BGR head and shoulders
    alpha: np.ndarray  # float32 0..1, same h x w
    face: np.ndarray  # face box in ``cut``'s pixels


@dataclass
class Judged:
    """Per clip: faces judged / covered, and the uncovered (frame, walker) pairs."""

    judged: int = 0
    covered: int = 0
    missed: list[tuple[int, int]] = field(default_factory=list)


def _people(shared: Path, sizes: tuple[int, ...], offset: int) -> list[_Person]:
    rf = RetinaFace(0.8)
    out = []
    for k, size in enumerate(sizes):
        path = shared / "faces" / "identities" / PHOTOS[(offset + k) % len(PHOTOS)]
        photo = cv2.imread(str(path))
        if photo is None:
            raise InputError(f"cannot read {path}")
        faces = rf(photo)
        if not len(faces):
            raise InputError(f"no face found in {path}")
        x1, y1, x2, y2 = faces.xyxy[int(np.argmax(faces.wh.prod(axis=1)))].astype(float)
        w, h = x2 - x1, y2 - y1
        # Head and shoulders: the hair above, the neck and shoulders below.
        cx1, cy1 = max(0, int(x1 - 0.55 * w)), max(0, int(y1 - 0.45 * h))
        cx2 = min(photo.shape[1], int(x2 + 0.55 * w))
        cy2 = min(photo.shape[0], int(y2 + 0.9 * h))
        s = size / w
        cut = cv2.resize(photo[cy1:cy2, cx1:cx2], None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
        ch, cw = cut.shape[:2]
        mask = np.zeros((ch, cw), np.float32)
        cv2.ellipse(mask, (cw // 2, ch // 2), (int(cw * 0.46), int(ch * 0.48)), 0, 0, 360, 1.0, -1)
        mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, size * 0.06))
        face = np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1]) * s
        out.append(_Person(cut, mask, face))
    return out


def _background(shared: Path, n: int) -> list[np.ndarray]:
    path = shared / VIDEO
    if not path.is_file():
        raise InputError(f"missing {path}")
    frames = []
    with VideoReader(path, audio=False) as r:
        for _, f in zip(range(n + 40), r, strict=False):
            im = f.image
            s = SIZE[0] / im.shape[1]
            im = cv2.resize(im, (SIZE[0], round(im.shape[0] * s)), interpolation=cv2.INTER_LINEAR)
            frames.append(np.ascontiguousarray(im[-SIZE[1] :]))  # the bottom: no counter text
    return frames


def _paste(frame: np.ndarray, p: _Person, x: float, y: float) -> None:
    """``p``'s cut-out with its top-left corner at (x, y), clipped to the frame."""
    h, w = frame.shape[:2]
    ix, iy = int(round(x)), int(round(y))
    ch, cw = p.cut.shape[:2]
    fx1, fy1, fx2, fy2 = max(ix, 0), max(iy, 0), min(ix + cw, w), min(iy + ch, h)
    if fx1 >= fx2 or fy1 >= fy2:
        return
    src = p.cut[fy1 - iy : fy2 - iy, fx1 - ix : fx2 - ix].astype(np.float32)
    a = p.alpha[fy1 - iy : fy2 - iy, fx1 - ix : fx2 - ix, None]
    dst = frame[fy1:fy2, fx1:fx2].astype(np.float32)
    frame[fy1:fy2, fx1:fx2] = (a * src + (1 - a) * dst + 0.5).astype(np.uint8)


def _visible(box: np.ndarray, bar: tuple[int, int] | None) -> float:
    x1, y1, x2, y2 = box
    area = max((x2 - x1) * (y2 - y1), 1e-6)
    ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, SIZE[0]), min(y2, SIZE[1])
    if ix1 >= ix2 or iy1 >= iy2:
        return 0.0
    seen = (ix2 - ix1) * (iy2 - iy1)
    if bar is not None:
        seen -= max(0.0, min(ix2, bar[1]) - max(ix1, bar[0])) * (iy2 - iy1)
    return float(seen / area)


def walker_clip(shared: Path, speed: float, scene: str = "edge", n: int = 40) -> WalkerClip:
    """Three walkers at ``speed`` face sizes a frame over ``n`` frames of real background."""
    if scene not in SCENES or speed <= 0:
        raise InputError(f"need scene in {SCENES} and speed > 0, got {scene!r}, {speed}")
    people = _people(shared, FACE_SIZES, 0 if scene == "edge" else 3)
    frames = _background(shared, n)
    bar = BAR if scene == "occluder" else None
    # The bar's texture: another part of the street, upside down (real, and unlike what it hides).
    bar_img = frames[n + 39][::-1, : BAR[1] - BAR[0]].copy() if bar else None
    frames = frames[:n]
    rows = (110, 300, 470)  # top of each cut-out
    lefts = [k != 1 for k in range(3)]  # the middle walker goes right to left
    starts, x, gap = [2 + k for k in range(3)], [0.0] * 3, [0] * 3
    for k, p in enumerate(people):
        x[k] = _start_x(p, lefts[k], bar)
    boxes = np.full((n, 3, 4), np.nan)
    visible = np.zeros((n, 3))
    births = 3
    for t in range(n):
        im = frames[t] = frames[t].copy()
        for k, p in enumerate(people):
            if t > starts[k]:
                v = speed * float(max(p.face[2] - p.face[0], p.face[3] - p.face[1]))
                x[k] += v if lefts[k] else -v
            cw = p.cut.shape[1]
            if x[k] >= SIZE[0] if lefts[k] else x[k] + cw <= 0:  # left: start again later
                gap[k] += 1
                if gap[k] > 2 + k:
                    x[k], gap[k], starts[k] = _start_x(p, lefts[k], bar), 0, t
                    births += 1
                continue
            _paste(im, p, x[k], rows[k])
            box = p.face + np.array([x[k], rows[k], x[k], rows[k]])
            boxes[t, k] = box
            visible[t, k] = _visible(box, bar)
        if bar_img is not None:
            im[:, BAR[0] : BAR[1]] = bar_img
    name = f"walkers_{scene}_{speed:g}"
    return WalkerClip(name, frames, boxes, visible, bar, births)


def _start_x(p: _Person, rightward: bool, bar: tuple[int, int] | None) -> float:
    cw = p.cut.shape[1]
    if bar is not None:  # hidden behind the bar, centred on it
        return (bar[0] + bar[1]) / 2 - cw / 2
    return float(-cw) if rightward else float(SIZE[0])


def covered_share(box: np.ndarray, regions: np.ndarray, bar: tuple[int, int] | None) -> float:
    """Share of ``box``'s visible pixels (in the frame, not behind ``bar``) inside the union
    of ``regions`` (n, 4)."""
    x1, y1 = int(np.floor(max(box[0], 0))), int(np.floor(max(box[1], 0)))
    x2, y2 = int(np.ceil(min(box[2], SIZE[0]))), int(np.ceil(min(box[3], SIZE[1])))
    if x1 >= x2 or y1 >= y2:
        return 1.0
    seen = np.ones((y2 - y1, x2 - x1), bool)
    if bar is not None:
        seen[:, max(bar[0] - x1, 0) : max(bar[1] - x1, 0)] = False
    inside = np.zeros_like(seen)
    for r in np.asarray(regions, float).reshape(-1, 4):
        a1, b1 = int(np.ceil(r[0])) - x1, int(np.ceil(r[1])) - y1
        a2, b2 = int(np.floor(r[2])) - x1, int(np.floor(r[3])) - y1
        if a2 > 0 and b2 > 0 and a1 < inside.shape[1] and b1 < inside.shape[0]:
            inside[max(b1, 0) : b2, max(a1, 0) : a2] = True
    n = int(seen.sum())
    return float((inside & seen).sum() / n) if n else 1.0


def judge(clip: WalkerClip, faces: list[Detections | None], mask_scale: float = 1.3) -> Judged:
    """Walkers covered on the frames where >= `JUDGED` of their face is visible; ``faces``:
    the boxes the output covered on each frame (a stage's ``frame.faces``)."""
    out = Judged()
    for t, d in enumerate(faces):
        regions = np.zeros((0, 4))
        if d is not None and len(d):
            regions = head_boxes_xyxy(d.xyxy, mask_scale, d.landmarks5)
        for k in range(clip.boxes.shape[1]):
            if clip.visible[t, k] < JUDGED:
                continue
            out.judged += 1
            if covered_share(clip.boxes[t, k], regions, clip.bar) >= COVERED:
                out.covered += 1
            else:
                out.missed.append((t, k))
    return out
