"""Plate detection and coverage measurements: the labelled set, composed clips, speed.

- `recall_on_set`: a plate counts as found when at least `COVER` of its labelled box lies
  inside the union of the detector's (padded) boxes: what matters for redaction is that the
  plate is covered, not that a box fits it (a car-sized box is fine, a missed plate is not).
  Precision: detections that touch no labelled plate count as false.
- `compose_clip`: plates (with a margin of their car) cut from the labelled photos, panned,
  scaled, sheared and motion-blurred across real street frames, with their ground-truth
  boxes per frame. `clip_coverage` runs an `Anonymizer` over it and counts, per frame and
  plate, whether the redacted boxes cover the plate.

``python -m streamanon.eval.plates [--background VIDEO]`` prints all numbers as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamanon.detect.base import box_iou
from streamanon.types import Detections

COVER = 0.9  # share of a plate's box that must be covered
MIN_HEIGHT = 20  # plates at least this tall (px) are scored
LABELLED = Path(__file__).resolve().parents[2] / "tests" / "data" / "plates"


def load_labelled(folder: str | Path = LABELLED) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, BGR image, (n, 4) xyxy boxes) for each labelled image."""
    folder = Path(folder)
    labels = json.loads((folder / "labels.json").read_text())
    out = []
    for name in sorted(labels):
        image = cv2.imread(str(folder / name))
        if image is None:
            raise FileNotFoundError(folder / name)
        out.append((name, image, np.asarray(labels[name], np.float32).reshape(-1, 4)))
    return out


def covered_fraction(gt: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """For each ground-truth box, the share of its area inside the union of `boxes`."""
    gt = np.asarray(gt, np.float64).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    out = np.zeros(len(gt))
    for i, (x1, y1, x2, y2) in enumerate(gt):
        w, h = max(int(np.ceil(x2 - x1)), 1), max(int(np.ceil(y2 - y1)), 1)
        mask = np.zeros((h, w), bool)
        for b in boxes:
            xa, xb = np.clip([np.floor(b[0] - x1), np.ceil(b[2] - x1)], 0, w).astype(int)
            ya, yb = np.clip([np.floor(b[1] - y1), np.ceil(b[3] - y1)], 0, h).astype(int)
            mask[ya:yb, xa:xb] = True
        out[i] = mask.mean()
    return out


@dataclass
class SetResult:
    plates: int  # labelled plates at least MIN_HEIGHT tall
    found: int
    detections: int
    false_detections: int
    ms_per_image: float

    @property
    def recall(self) -> float:
        return self.found / max(self.plates, 1)

    @property
    def precision(self) -> float:
        return 1.0 - self.false_detections / max(self.detections, 1)

    def as_dict(self) -> dict:
        return {
            "plates": self.plates, "found": self.found, "recall": round(self.recall, 4),
            "detections": self.detections, "false_detections": self.false_detections,
            "precision": round(self.precision, 4), "ms_per_image": round(self.ms_per_image, 1),
        }  # fmt: skip


def recall_on_set(
    detector: Callable[[np.ndarray], Detections],
    data: list[tuple[str, np.ndarray, np.ndarray]],
    thresholds: tuple[float, ...] = (0.2,),
) -> dict[float, SetResult]:
    """Recall and precision on the labelled set at each score threshold (one detector pass)."""
    runs, seconds = [], 0.0
    for _, image, gt in data:
        t0 = time.perf_counter()
        dets = detector(image)
        seconds += time.perf_counter() - t0
        runs.append((dets, gt))
    out = {}
    for th in thresholds:
        plates = found = ndet = false = 0
        for dets, gt in runs:
            boxes = dets.xyxy[dets.score >= th]
            tall = (gt[:, 3] - gt[:, 1]) >= MIN_HEIGHT
            cov = covered_fraction(gt, boxes)
            plates += int(tall.sum())
            found += int((cov[tall] >= COVER).sum())
            ndet += len(boxes)
            if len(boxes):
                false += int((box_iou(gt, boxes) <= 0.0).all(axis=0).sum())
        ms = 1000.0 * seconds / max(len(data), 1)
        out[th] = SetResult(plates, found, ndet, false, ms)
    return out


# -- composed clips --------------------------------------------------------------------------


@dataclass
class Sprite:
    """A plate with a margin of its car, and the plate's box inside the patch."""

    patch: np.ndarray
    box: np.ndarray


def plate_sprites(data, margin: tuple[float, float] = (0.6, 1.5)) -> list[Sprite]:
    """One sprite per labelled plate at least MIN_HEIGHT tall: the plate plus `margin` of its
    width / height on each side (the car around it), cut from its photo."""
    out = []
    for _, image, gt in data:
        h, w = image.shape[:2]
        for x1, y1, x2, y2 in gt:
            if y2 - y1 < MIN_HEIGHT:
                continue
            mx, my = margin[0] * (x2 - x1), margin[1] * (y2 - y1)
            a, b = int(max(0, x1 - mx)), int(max(0, y1 - my))
            c, d = int(min(w, x2 + mx)), int(min(h, y2 + my))
            out.append(Sprite(image[b:d, a:c].copy(), np.array([x1 - a, y1 - b, x2 - a, y2 - b])))
    return out


@dataclass
class Track:
    sprite: Sprite
    start: tuple[float, float]  # plate centre at the first frame (fraction of frame w, h)
    end: tuple[float, float]
    height: tuple[float, float]  # plate height in px at first / last frame
    shear: float = 0.0  # horizontal shear (angled plate)
    blur: int = 0  # horizontal motion blur kernel length in px


def _place(sprite: Sprite, height: float, shear: float, blur: int):
    """The sprite scaled so its plate is `height` px tall, sheared and blurred: (patch, box)."""
    s = height / float(sprite.box[3] - sprite.box[1])
    ph, pw = sprite.patch.shape[:2]
    m = np.array([[s, shear * s, 0.0], [0.0, s, 0.0]])
    if shear < 0:
        m[0, 2] = -shear * s * ph
    size = (int(np.ceil(pw * s + abs(shear) * s * ph)), int(np.ceil(ph * s)))
    patch = cv2.warpAffine(
        sprite.patch,
        m,
        size,
        flags=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    x1, y1, x2, y2 = sprite.box
    corners = np.array([[x1, y1, 1], [x2, y1, 1], [x1, y2, 1], [x2, y2, 1]]) @ m.T
    box = np.array([*corners.min(0), *corners.max(0)])
    if blur > 1:
        kernel = np.full((1, blur), 1.0 / blur, np.float32)
        patch = cv2.filter2D(patch, -1, kernel)
        box = box + np.array([-blur / 2, 0, blur / 2, 0])  # smeared plate is wider
    return patch, box


def compose_clip(
    backgrounds: list[np.ndarray], tracks: list[Track], frames: int, size=(1280, 720)
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Frames (BGR) with the tracks' plates pasted, and their (k, 4) ground-truth boxes."""
    w, h = size
    for i in range(frames):
        f = i / max(frames - 1, 1)
        frame = cv2.resize(backgrounds[i % len(backgrounds)], size, interpolation=cv2.INTER_LINEAR)
        gts = []
        for tr in tracks:
            height = tr.height[0] + f * (tr.height[1] - tr.height[0])
            patch, box = _place(tr.sprite, height, tr.shear, tr.blur)
            cx = (tr.start[0] + f * (tr.end[0] - tr.start[0])) * w
            cy = (tr.start[1] + f * (tr.end[1] - tr.start[1])) * h
            ox = int(round(cx - (box[0] + box[2]) / 2))
            oy = int(round(cy - (box[1] + box[3]) / 2))
            ph, pw = patch.shape[:2]
            a, b = max(ox, 0), max(oy, 0)
            c, d = min(ox + pw, w), min(oy + ph, h)
            if c <= a or d <= b:
                continue
            frame[b:d, a:c] = patch[b - oy : d - oy, a - ox : c - ox]
            gt = box + np.array([ox, oy, ox, oy])
            gt = np.clip(gt, [0, 0, 0, 0], [w, h, w, h])
            if gt[2] - gt[0] >= 4 and gt[3] - gt[1] >= 4:
                gts.append(gt)
        yield frame, np.asarray(gts, np.float32).reshape(-1, 4)


def default_tracks(sprites: list[Sprite]) -> list[Track]:
    """Three plates at a time, as a dashcam sees them: a car ahead drifting away (shrinking),
    one overtaken on the left (growing, angled), one crossing fast (motion blur)."""
    pick = [sprites[i % len(sprites)] for i in (0, 7, 14)]
    return [
        Track(pick[0], (0.50, 0.62), (0.54, 0.58), (40, 20)),
        Track(pick[1], (0.30, 0.60), (0.10, 0.70), (22, 48), shear=0.25),
        Track(pick[2], (0.85, 0.66), (0.60, 0.64), (30, 30), blur=9),
    ]


def clip_coverage(anonymizer, clip, fps: float = 25.0) -> dict:
    """Run `anonymizer` (with plates on) over `clip`; per-frame plate coverage and timing."""
    from fractions import Fraction

    from streamanon.types import Frame

    plates = covered = frames_all = 0
    seconds = 0.0
    for i, (image, gt) in enumerate(clip):
        frame = Frame(image, i, i, Fraction(1, int(round(fps))))
        t0 = time.perf_counter()
        anonymizer.track(frame)
        seconds += time.perf_counter() - t0
        boxes = frame.objects.get("plate", Detections.empty()).xyxy
        cov = covered_fraction(gt, boxes)
        plates += len(gt)
        covered += int((cov >= COVER).sum())
        frames_all += int(len(gt) == 0 or (cov >= COVER).all())
        n = i + 1
    return {
        "frames": n, "plates": plates, "covered": covered,
        "coverage": round(covered / max(plates, 1), 4),
        "frames_fully_covered": round(frames_all / max(n, 1), 4),
        "ms_per_frame_track": round(1000.0 * seconds / max(n, 1), 1),
    }  # fmt: skip


def read_backgrounds(video: str | Path, count: int = 50) -> list[np.ndarray]:
    from streamanon.io.video import VideoReader

    out = []
    with VideoReader(video, audio=False) as r:
        for f in r:
            out.append(f.image)
            if len(out) >= count:
                break
    return out


def main(argv: list[str] | None = None) -> int:
    from streamanon.anonymizer import Anonymizer
    from streamanon.detect.plates import PlateSSD

    p = argparse.ArgumentParser(prog="python -m streamanon.eval.plates")
    p.add_argument("--background", help="street video for the composed clip")
    p.add_argument("--plate-model", help="a YOLOv9 plate model to measure instead")
    p.add_argument("--thresh", type=float, default=0.2)
    args = p.parse_args(argv)
    data = load_labelled()
    res: dict = {}
    if args.plate_model:
        from streamanon.detect.plates import YoloV9Plates

        dets = {"yolov9": YoloV9Plates(args.plate_model, threads=1)}
    else:
        dets = {
            "ssd_320_640_1280": PlateSSD(threads=1),
            "ssd_640": PlateSSD(levels=(640,), threads=1),
        }
    for name, det in dets.items():
        for th, r in recall_on_set(det, data, (0.1, args.thresh, 0.3, 0.5)).items():
            res[f"{name}@{th}"] = r.as_dict()
    if args.background:
        bgs = read_backgrounds(args.background)
        clip = list(compose_clip(bgs, default_tracks(plate_sprites(data)), 50))
        kw = dict(objects="plate", plate_thresh=args.thresh, threads=1)
        if args.plate_model:
            kw["plate_model"] = args.plate_model
        res["clip"] = clip_coverage(Anonymizer(**kw), clip)
        res["clip_640"] = clip_coverage(Anonymizer(plate_levels=(640,), **kw), clip)
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def bench_plate_coverage(plain: str | Path, outputs: dict[str, str], samples: int = 12) -> dict:
    """`streamanon bench --objects face,plate`: per output, the share of reference plates
    covered on sampled frames. Reference plates: the shipped detector's full pyramid at score
    >= 0.5 on the plain transcode (the bench has no labels); covered: the bench's own test
    (structure or fine detail gone, `bench._covered`)."""
    from streamanon.detect.plates import PlateSSD
    from streamanon.eval import metrics as M
    from streamanon.eval.bench import _covered, _read_frames
    from streamanon.io.video import VideoReader

    with VideoReader(plain, audio=False) as r:
        total = r.info.frames or sum(1 for _ in r)
    idx = set(int(i) for i in np.linspace(0, max(total - 1, 0), samples))
    ref = PlateSSD(low_thresh=0.5)
    ref_frames = _read_frames(plain, idx)
    refs = {i: ref(img).xyxy for i, img in ref_frames.items()}
    res = {}
    for name, path in outputs.items():
        frames = _read_frames(path, idx)
        covered = []
        for i, boxes in refs.items():
            for b in boxes if i in frames else []:
                m = M.face_region_mask(frames[i].shape[:2], b[None], 1.0)
                covered.append(_covered(ref_frames[i], frames[i], b, m))
        res[name] = {
            "recall": float(np.mean(covered)) if covered else None,
            "reference_plates": int(sum(len(b) for b in refs.values())),
        }
    return res
