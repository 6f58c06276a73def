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

from streamanon.anonymizer import Anonymizer
from streamanon.detect.base import box_iou
from streamanon.detect.plates import PlateSSD
from streamanon.eval import metrics as M
from streamanon.eval.frames import box_covered, read_frames
from streamanon.eval.plate_valset import closeups, load_openalpr
from streamanon.io.video import VideoReader
from streamanon.registry import make_plate_detector
from streamanon.types import Detections, Frame

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


def load_unlabelled(folder: str | Path) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Every image of `folder` (recursively) with no labelled plate."""
    out = []
    for path in sorted(Path(folder).rglob("*")):
        if path.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
            image = cv2.imread(str(path))
            if image is not None:
                out.append((path.name, image, np.zeros((0, 4), np.float32)))
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


SIZE_BINS = ((20, 40), (40, 80), (80, 10_000))  # plate height bins (px) reported separately


@dataclass
class SetResult:
    plates: int  # labelled plates at least MIN_HEIGHT tall
    found: int
    detections: int
    false_detections: int
    ms_per_image: float
    median_iou: float = 0.0  # best IoU of each scored plate with a detection (missed: 0)
    bins: dict | None = None  # per plate-height bin: plates, found, recall

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
            "median_iou": round(self.median_iou, 3), "bins": self.bins,
        }  # fmt: skip


def match_image(gt: np.ndarray, boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per labelled plate: found (>= COVER of it under `boxes`) and best IoU; per box: false
    (touches no labelled plate)."""
    gt = np.asarray(gt, np.float32).reshape(-1, 4)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    found = covered_fraction(gt, boxes) >= COVER
    if len(boxes) and len(gt):
        iou = box_iou(gt, boxes)
        return found, iou.max(axis=1), (iou <= 0.0).all(axis=0)
    return found, np.zeros(len(gt)), np.ones(len(boxes), bool)


def score_set(
    dets: list[Detections],
    data: list[tuple[str, np.ndarray, np.ndarray]],
    thresh: float,
    ms_per_image: float = 0.0,
) -> SetResult:
    """Recall, precision, median IoU and per-size recall of detections (one per image of
    `data`) kept at score >= `thresh`."""
    plates = found = ndet = false = 0
    ious: list[float] = []
    bins = {f"{a}-{b}" if b < 10_000 else f">={a}": [0, 0] for a, b in SIZE_BINS}
    for d, (_, _, gt) in zip(dets, data, strict=True):
        boxes = d.xyxy[d.score >= thresh]
        hit, iou, bad = match_image(gt, boxes)
        heights = gt[:, 3] - gt[:, 1]
        tall = heights >= MIN_HEIGHT
        plates += int(tall.sum())
        found += int(hit[tall].sum())
        ious += [float(v) for v in iou[tall]]
        ndet += len(boxes)
        false += int(bad.sum())
        for (a, b), key in zip(SIZE_BINS, bins, strict=True):
            sel = (heights >= a) & (heights < b)
            bins[key][0] += int(sel.sum())
            bins[key][1] += int(hit[sel].sum())
    per_bin = {k: {"plates": n, "found": f, "recall": round(f / n, 4) if n else None}
               for k, (n, f) in bins.items()}  # fmt: skip
    med = float(np.median(ious)) if ious else 0.0
    return SetResult(plates, found, ndet, false, ms_per_image, med, per_bin)


def recall_on_set(
    detector: Callable[[np.ndarray], Detections],
    data: list[tuple[str, np.ndarray, np.ndarray]],
    thresholds: tuple[float, ...] = (0.2,),
) -> dict[float, SetResult]:
    """Recall and precision on the labelled set at each score threshold (one detector pass)."""
    dets, seconds = [], 0.0
    for _, image, _ in data:
        t0 = time.perf_counter()
        dets.append(detector(image))
        seconds += time.perf_counter() - t0
    ms = 1000.0 * seconds / max(len(data), 1)
    return {th: score_set(dets, data, th, ms) for th in thresholds}


def error_sheet(
    data: list[tuple[str, np.ndarray, np.ndarray]],
    dets: list[Detections],
    thresh: float,
    path: str | Path,
    tile: int = 220,
    cols: int = 5,
) -> dict:
    """A contact sheet (PNG) of every missed plate (>= MIN_HEIGHT) and every false detection:
    one tile each, cut around it with context; labelled boxes green, detections red (score
    printed). Returns the lists written (image name, kind, box)."""
    items = []
    for d, (name, image, gt) in zip(dets, data, strict=True):
        boxes = d.xyxy[d.score >= thresh]
        scores = d.score[d.score >= thresh]
        hit, _, bad = match_image(gt, boxes)
        tall = (gt[:, 3] - gt[:, 1]) >= MIN_HEIGHT
        for i in np.nonzero(tall & ~hit)[0]:
            items.append((name, "missed", gt[i], image, gt, boxes, scores))
        for j in np.nonzero(bad)[0]:
            items.append((name, f"false {scores[j]:.2f}", boxes[j], image, gt, boxes, scores))
    tiles_out = []
    for name, kind, box, image, gt, boxes, _ in items:
        h, w = image.shape[:2]
        bw, bh = box[2] - box[0], box[3] - box[1]
        side = max(bw, bh) * 2.2 + 40
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        x1, y1 = int(max(0, cx - side / 2)), int(max(0, cy - side / 2))
        x2, y2 = int(min(w, cx + side / 2)), int(min(h, cy + side / 2))
        view = image.copy()
        for b in gt:
            cv2.rectangle(view, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 220, 0), 2)
        for b in boxes:
            cv2.rectangle(view, (int(b[0]), int(b[1])), (int(b[2]), int(b[3])), (0, 0, 255), 2)
        crop = view[y1:y2, x1:x2]
        s = tile / max(crop.shape[:2])
        crop = cv2.resize(crop, (max(1, int(crop.shape[1] * s)), max(1, int(crop.shape[0] * s))))
        cell = np.full((tile + 22, tile, 3), 40, np.uint8)
        cell[22 : 22 + crop.shape[0], : crop.shape[1]] = crop
        label = f"{name[:-4]} {kind} h={int(bh)}"
        cv2.putText(cell, label, (3, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1)
        tiles_out.append(cell)
    if not tiles_out:
        tiles_out.append(np.full((tile + 22, tile, 3), 40, np.uint8))
        cv2.putText(tiles_out[0], "no errors", (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255,) * 3)
    rows = []
    for r in range(0, len(tiles_out), cols):
        row = tiles_out[r : r + cols]
        row += [np.full_like(tiles_out[0], 40)] * (cols - len(row))
        rows.append(np.hstack(row))
    cv2.imwrite(str(path), np.vstack(rows))
    return {
        "missed": [(n, [round(float(v), 1) for v in b]) for n, k, b, *_ in items if k == "missed"],
        "false": [(n, [round(float(v), 1) for v in b]) for n, k, b, *_ in items if k != "missed"],
    }


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

    plates = covered = frames_all = 0
    seconds = 0.0
    ratios: list[float] = []  # covered box area / plate area, per covered plate-frame
    for i, (image, gt) in enumerate(clip):
        frame = Frame(image, i, i, Fraction(1, int(round(fps))))
        t0 = time.perf_counter()
        anonymizer.track(frame)
        seconds += time.perf_counter() - t0
        boxes = frame.objects.get("plate", Detections.empty()).xyxy
        cov = covered_fraction(gt, boxes)
        if len(boxes) and len(gt):  # how much more than the plate its box covers
            iou = box_iou(np.asarray(gt, np.float32), boxes)
            for g, j, c in zip(gt, iou.argmax(axis=1), cov, strict=True):
                if c >= COVER:
                    b = boxes[j]
                    area = (g[2] - g[0]) * (g[3] - g[1])
                    ratios.append(float((b[2] - b[0]) * (b[3] - b[1]) / max(area, 1e-6)))
        plates += len(gt)
        covered += int((cov >= COVER).sum())
        frames_all += int(len(gt) == 0 or (cov >= COVER).all())
        n = i + 1
    return {
        "frames": n, "plates": plates, "covered": covered,
        "coverage": round(covered / max(plates, 1), 4),
        "frames_fully_covered": round(frames_all / max(n, 1), 4),
        "ms_per_frame_track": round(1000.0 * seconds / max(n, 1), 1),
        "box_area_ratio": [round(float(np.percentile(ratios, q)), 2) for q in (50, 90)]
        if ratios else None,
    }  # fmt: skip


def read_backgrounds(video: str | Path, count: int = 50) -> list[np.ndarray]:
    out = []
    with VideoReader(video, audio=False) as r:
        for f in r:
            out.append(f.image)
            if len(out) >= count:
                break
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m streamanon.eval.plates")
    p.add_argument("--background", help="street video for the composed clip")
    p.add_argument("--plate-model", help="a YOLOv9 plate model to measure instead")
    p.add_argument("--detector", default="net,ssd", help="shipped detectors: net, ssd or both")
    p.add_argument("--thresh", type=float, help="score threshold (default: each detector's own)")
    p.add_argument("--sheet", help="folder for contact sheets of every missed and false plate")
    p.add_argument(
        "--negatives", help="folder of photos without readable plates: detections there are false"
    )
    p.add_argument(
        "--valset",
        help="openalpr/benchmarks export (streamanon.eval.plate_valset): also measure its photos "
        "(every 2nd) and close-up cuts (every 4th)",
    )
    p.add_argument("--no-heldout", action="store_true", help="skip the held-out photos")
    args = p.parse_args(argv)
    data = [] if args.no_heldout else load_labelled()
    if args.sheet:
        Path(args.sheet).mkdir(parents=True, exist_ok=True)
    negatives = load_unlabelled(args.negatives) if args.negatives else []
    res: dict = {}
    kinds = ["yolov9"] if args.plate_model else [k.strip() for k in args.detector.split(",")]
    for kind in kinds:
        det = make_plate_detector(args.plate_model, "auto" if args.plate_model else kind, threads=1)
        th = args.thresh or float(getattr(det, "thresh", 0.2))
        if args.valset:
            sets = {"val": load_openalpr(args.valset, every=2)}
            sets["val_closeups"] = closeups(load_openalpr(args.valset, every=4))
            for name, vdata in sets.items():
                t0 = time.perf_counter()
                vd = [det(image) for _, image, _ in vdata]
                ms = 1000.0 * (time.perf_counter() - t0) / max(len(vdata), 1)
                for t in sorted({0.3, th, 0.5}):
                    res[f"{kind}_{name}@{t:g}"] = score_set(vd, vdata, t, ms).as_dict()
                if args.sheet:
                    out = Path(args.sheet) / f"plates_errors_{kind}_{name}.png"
                    res[f"{kind}_{name}_errors"] = error_sheet(vdata, vd, th, out)
        if not data:
            continue
        dets, seconds = [], 0.0
        for _, image, _ in data:
            t0 = time.perf_counter()
            dets.append(det(image))
            seconds += time.perf_counter() - t0
        ms = 1000.0 * seconds / max(len(data), 1)
        for t in sorted({0.1, th, 0.3, 0.5}):
            res[f"{kind}@{t:g}"] = score_set(dets, data, t, ms).as_dict()
        if args.sheet:
            Path(args.sheet).mkdir(parents=True, exist_ok=True)
            out = Path(args.sheet) / f"plates_errors_{kind}.png"
            res[f"{kind}_errors"] = error_sheet(data, dets, th, out)
        if negatives:
            neg = [det(image) for _, image, _ in negatives]
            n = [int((d.score >= th).sum()) for d in neg]
            res[f"{kind}_negatives"] = {
                "images": len(n), "detections": int(sum(n)), "images_with_any": int(sum(v > 0 for v in n)),
            }  # fmt: skip
            if args.sheet:
                out = Path(args.sheet) / f"plates_negatives_{kind}.png"
                error_sheet(negatives, neg, th, out)
        if args.background:
            bgs = read_backgrounds(args.background)
            clip = list(compose_clip(bgs, default_tracks(plate_sprites(data)), 50))
            kw = dict(objects="plate", plate_thresh=args.thresh, threads=1)
            if args.plate_model:
                kw["plate_model"] = args.plate_model
            else:
                kw["plate_detector"] = kind
            res[f"{kind}_clip"] = clip_coverage(Anonymizer(**kw), clip)
            res[f"{kind}_clip_every2"] = clip_coverage(Anonymizer(plate_every=2, **kw), clip)
    json.dump(res, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())


def bench_plate_coverage(plain: str | Path, outputs: dict[str, str], samples: int = 12) -> dict:
    """`streamanon bench --objects face,plate`: per output, the share of reference plates
    covered on sampled frames. Reference plates: the shipped detector's full pyramid at score
    >= 0.5 on the plain transcode (the bench has no labels); covered: the bench's own test
    (structure or fine detail gone, `eval.frames.box_covered`)."""
    with VideoReader(plain, audio=False) as r:
        total = r.info.frames or sum(1 for _ in r)
    idx = set(int(i) for i in np.linspace(0, max(total - 1, 0), samples))
    ref = PlateSSD(low_thresh=0.5)
    ref_frames = read_frames(plain, idx)
    refs = {i: ref(img).xyxy for i, img in ref_frames.items()}
    res = {}
    for name, path in outputs.items():
        frames = read_frames(path, idx)
        covered = []
        for i, boxes in refs.items():
            for b in boxes if i in frames else []:
                m = M.face_region_mask(frames[i].shape[:2], b[None], 1.0)
                covered.append(box_covered(ref_frames[i], frames[i], b, m))
        res[name] = {
            "recall": float(np.mean(covered)) if covered else None,
            "reference_plates": int(sum(len(b) for b in refs.values())),
        }
    return res
