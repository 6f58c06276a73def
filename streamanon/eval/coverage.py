"""Coverage judged by a reference that is not the detector under test.

Reference faces: RetinaFace-MobileNet0.25 (`streamanon.eval.retinaface`: an anchor-based
network of another family than CenterFace, frames under 1280 px upsampled) merged with
CenterFace at native resolution (score >= 0.5) and, where asked, dlib's MMOD CNN (a different
network and training set that finds profiles and three-quarter views) on the frame upsampled
``mmod_upsample`` times. Every reference face carries five landmarks (both eyes, nose tip,
both mouth corners): RetinaFace's and CenterFace's own, dlib's 68-point predictor for MMOD.

A reference face counts as covered only when (landmark rule):
- a square patch of ~1/4 of the face height around EACH of the five landmarks has changed,
  so a face with one eye, half the nose or one mouth corner still shown is not covered; and
- at least 6 of the 9 cells of its box (3x3) have changed ("most of the box").
A patch or cell has changed when the output keeps less than half of the original's band-pass
detail pattern (difference of Gaussians at the scale of fine facial features; |cov| / var, in
either sign: an inverted face still shows its structure); a quarter of a landmark patch that
is plainly the original (a box stopping mid-eye) keeps its patch from counting as changed.
Pixel noise is NOT a change: the band-pass averages it away, so a face under noise of sigma
40 still counts as shown.

Everything here is a pure function of (original frame, output frame, reference faces) except
the reference detectors, which are built once (`reference_detector`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamanon.detect.dlib_detectors import DlibMMOD
from streamanon.detect.landmarks import Landmarks68
from streamanon.eval import metrics as M
from streamanon.eval.retinaface import RetinaFace
from streamanon.eval.sheet import contact_sheet, face_crop
from streamanon.identity.align import five_points_from_68
from streamanon.registry import make_detector
from streamanon.types import Detections

# Face height bins (reference box height, source pixels).
BINS = ((0, 24), (24, 32), (32, 48), (48, 80), (80, 10**9))
CELL_KEPT = 0.5  # a region keeping less of the original's band-pass pattern than this changed
PATCH = 0.25  # landmark patch side, as a share of the face (box) height
QUARTER_CORR = 0.75  # a quarter of a landmark patch correlating this well...
QUARTER_KEPT = 0.5  # ... and keeping this share of its detail pattern is still shown
QUARTER_MIN = 3  # px: a quarter patch narrower than this has too few pixels to judge
MIN_CELLS = 6  # of the 9 cells of the box that must have changed
RETINA_THRESH = 0.8  # RetinaFace score for a reference face
# Where the five points sit in a box that came without landmarks (a frontal face in a
# RetinaFace/CenterFace-style box), as shares of the box width and height.
TEMPLATE5 = np.array(
    [[0.30, 0.38], [0.70, 0.38], [0.50, 0.56], [0.34, 0.73], [0.66, 0.73]], np.float64
)


def bin_name(lo: int, hi: int) -> str:
    return f"<{hi}" if lo == 0 else (f">={lo}" if hi >= 10**9 else f"{lo}-{hi}")


def size_bin(height: float) -> str:
    for lo, hi in BINS:
        if lo <= height < hi:
            return bin_name(lo, hi)
    return bin_name(*BINS[-1])


def band_pass(grey: np.ndarray, face_height: float) -> np.ndarray:
    """Difference of Gaussians at the scale of fine facial features (sigma ~ face height /
    160..40, at least 0.5..2 px). Why this fine: pixelation keeps the coarse layout of a face
    (dark eye blocks where the eyes were) but none of this band; noise is averaged away by it
    on any face over ~80 px (a face under noise of sigma 40 still correlates at 0.97 here)."""
    s = max(1.0, face_height / 80.0)
    return cv2.GaussianBlur(grey, (0, 0), 0.5 * s) - cv2.GaussianBlur(grey, (0, 0), 2.0 * s)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (0 when either is constant)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def region_changed(orig_band: np.ndarray, out_band: np.ndarray) -> bool:
    """Has a region's band-pass detail gone? The share of the original's detail pattern the
    output still carries at its amplitude, |cov(orig, out)| / var(orig) = |correlation| x
    (detail ratio), is below CELL_KEPT. Taken together because neither alone separates a
    small pixelated face (detail ratio 0.46 with correlation 0.73 on a 31 px nose) from the
    same face under noise of sigma 40 (ratio >= 0.97, correlation >= 0.68); the sign is
    dropped because an inverted face still shows its structure."""
    if orig_band.size == 0:
        return True
    var = float(((orig_band - orig_band.mean()) ** 2).sum())
    if var < 1e-9:
        return True  # nothing there to show
    cov = float(((orig_band - orig_band.mean()) * (out_band - out_band.mean())).sum())
    return abs(cov) / var < CELL_KEPT


def region_shown(orig_band: np.ndarray, out_band: np.ndarray) -> bool:
    """Is a small region (a quarter of a landmark patch) plainly the original: correlated at
    >= QUARTER_CORR AND keeping >= QUARTER_KEPT of its detail pattern? Both, because 20 pixels
    of a pixelated face can correlate at 0.8 by chance, but then keep only ~0.3 of the detail;
    the visible outer half of an eye keeps 0.56-0.75 at 0.78-0.84 (27 px face)."""
    if min(orig_band.shape) < QUARTER_MIN:
        return False
    var = float(((orig_band - orig_band.mean()) ** 2).sum())
    if var < 1e-9:
        return False
    cov = float(((orig_band - orig_band.mean()) * (out_band - out_band.mean())).sum())
    corr = correlation(orig_band, out_band)
    return abs(corr) >= QUARTER_CORR and abs(cov) / var >= QUARTER_KEPT


def template_landmarks(box: np.ndarray) -> np.ndarray:
    """(5, 2) landmarks of a frontal face in ``box`` (for reference boxes without any)."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    return np.array([x1, y1]) + TEMPLATE5 * np.array([x2 - x1, y2 - y1])


def changed_regions(
    original: np.ndarray,
    output: np.ndarray,
    box: np.ndarray,
    landmarks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Which parts of the face in ``box`` no longer show the original: ``(cells, patches)``,
    cells (3, 3) bool row-major top first, patches (5,) bool for the five landmark patches.
    A region off the frame counts as changed (nothing of it is shown)."""
    h, w = original.shape[:2]
    box = np.asarray(box, np.float64)
    lm = template_landmarks(box) if landmarks is None else np.asarray(landmarks, np.float64)
    x1, y1, x2, y2 = box
    fh = max(y2 - y1, 1.0)
    half = max(1.5, PATCH * fh / 2)
    pad = 6 + int(3 * max(1.0, fh / 40.0))
    lo = np.minimum(box[:2], lm.min(0) - half) - pad
    hi = np.maximum(box[2:], lm.max(0) + half) + pad
    cx1, cy1 = int(max(np.floor(lo[0]), 0)), int(max(np.floor(lo[1]), 0))
    cx2, cy2 = int(min(np.ceil(hi[0]), w)), int(min(np.ceil(hi[1]), h))
    cells = np.ones((3, 3), bool)
    patches = np.ones(5, bool)
    if cx2 - cx1 < 2 or cy2 - cy1 < 2:
        return cells, patches  # nothing left on screen to show
    a, b = original[cy1:cy2, cx1:cx2], output[cy1:cy2, cx1:cx2]
    ga = band_pass(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float32), fh)
    gb = band_pass(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float32), fh)

    def changed(rx1: float, ry1: float, rx2: float, ry2: float) -> bool:
        sx1, sx2 = int(max(round(rx1 - cx1), 0)), int(min(round(rx2 - cx1), cx2 - cx1))
        sy1, sy2 = int(max(round(ry1 - cy1), 0)), int(min(round(ry2 - cy1), cy2 - cy1))
        if sx2 <= sx1 or sy2 <= sy1:
            return True  # off-frame: nothing shown
        return region_changed(ga[sy1:sy2, sx1:sx2], gb[sy1:sy2, sx1:sx2])

    def shown(rx1: float, ry1: float, rx2: float, ry2: float) -> bool:
        sx1, sx2 = int(max(round(rx1 - cx1), 0)), int(min(round(rx2 - cx1), cx2 - cx1))
        sy1, sy2 = int(max(round(ry1 - cy1), 0)), int(min(round(ry2 - cy1), cy2 - cy1))
        return sx2 > sx1 and sy2 > sy1 and region_shown(ga[sy1:sy2, sx1:sx2], gb[sy1:sy2, sx1:sx2])

    xs, ys = np.linspace(x1, x2, 4), np.linspace(y1, y2, 4)
    for r in range(3):
        for c in range(3):
            cells[r, c] = changed(xs[c], ys[r], xs[c + 1], ys[r + 1])
    for i, (px, py) in enumerate(lm):
        # And no quarter of it plainly shown: a box that stops in the middle of an eye leaves
        # half of it visible, which a whole-patch statistic would average away.
        patches[i] = changed(px - half, py - half, px + half, py + half) and not any(
            shown(qx, qy, qx + half, qy + half) for qx in (px - half, px) for qy in (py - half, py)
        )
    return cells, patches


def changed_cells(original: np.ndarray, output: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(3, 3) bool: which ninths of `box` no longer show the original (row-major, top first)."""
    return changed_regions(original, output, box)[0]


def is_covered(cells: np.ndarray, patches: np.ndarray | None = None) -> bool:
    """Every landmark patch (eyes, nose, mouth corners) and at least 6 of the 9 cells changed."""
    cells = np.asarray(cells, bool).reshape(3, 3)
    if patches is not None and not np.asarray(patches, bool).all():
        return False
    return bool(cells.sum() >= MIN_CELLS)


def merge_references(a: np.ndarray, b: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Union of two box sets; a box of `b` that overlaps one of `a` (IoU >= iou, or mostly
    inside it) is the same face and is dropped."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    return np.concatenate([a, b[_new_in(a, b, iou)]])


def _new_in(a: np.ndarray, b: np.ndarray, iou: float) -> np.ndarray:
    """(len(b),) bool: boxes of `b` that are not a face of `a` already."""
    if len(a) == 0 or len(b) == 0:
        return np.ones(len(b), bool)
    overlap = M.box_iou_matrix(b, a)
    lt = np.maximum(b[:, None, :2], a[None, :, :2])
    rb = np.minimum(b[:, None, 2:], a[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 1e-6, None), axis=1)
    inside = inter / area_b[:, None]
    return ~((overlap >= iou) | (inside >= 0.6)).any(axis=1)


def merge_faces(a: Detections, b: Detections, iou: float = 0.3) -> Detections:
    """`merge_references` for reference faces with their five landmarks (``a`` wins)."""
    new = _new_in(a.xyxy, b.xyxy, iou)
    return Detections(
        np.concatenate([a.xyxy, b.xyxy[new]]),
        np.concatenate([a.score, b.score[new]]),
        landmarks5=np.concatenate([_five(a), _five(b)[new]]),
    )


def _five(d: Detections) -> np.ndarray:
    if d.landmarks5 is not None:
        return d.landmarks5.astype(np.float32)
    return np.array([template_landmarks(b) for b in d.xyxy], np.float32).reshape(-1, 5, 2)


def with_ground_truth(faces: Detections, boxes: np.ndarray) -> Detections:
    """Reference faces plus every human-labelled face no detector found (IoU < 0.3 with all of
    them; the frontal template places its landmarks), so a face every detector misses still
    counts. Detected faces keep their own box and landmarks."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    labelled = Detections(boxes, np.ones(len(boxes), np.float32))
    return merge_faces(faces, labelled)


def reference_detector(
    mmod_upsample: int | None = 1, retina: bool = True
) -> Callable[[np.ndarray], Detections]:
    """image BGR -> reference faces with five landmarks each (RetinaFace + CenterFace native
    + dlib MMOD, merged in that order). ``retina=False`` is the old CenterFace-based
    reference, kept only to compare the two."""
    rf = None
    if retina:
        rf = RetinaFace(RETINA_THRESH)
    cf = make_detector("centerface", thresh=0.5, low_thresh=0.5, input_size=None, landmarks=True)
    mmod = lm68 = None
    if mmod_upsample is not None:
        mmod = DlibMMOD(input_size=None, upsample=mmod_upsample)
        lm68 = Landmarks68()

    def detect(image: np.ndarray) -> Detections:
        d = cf(image)
        d = Detections(d.xyxy, d.score, landmarks5=_five(d))
        faces = d if rf is None else merge_faces(rf(image), d)
        if mmod is not None:
            m = mmod(image)
            if len(m):
                m.landmarks5 = five_points_from_68(lm68(image, m))
            faces = merge_faces(faces, m)
        return faces

    return detect


@dataclass
class FaceResult:
    frame: int
    box: list[float]
    height: float
    covered: bool
    cells: list[list[bool]]
    patches: list[bool] = field(default_factory=lambda: [True] * 5)


@dataclass
class CoverageReport:
    faces: list[FaceResult] = field(default_factory=list)

    def by_bin(self) -> dict[str, dict[str, float]]:
        out = {}
        for lo, hi in BINS:
            name = bin_name(lo, hi)
            sel = [f for f in self.faces if size_bin(f.height) == name]
            n = len(sel)
            cov = sum(f.covered for f in sel)
            out[name] = {"faces": n, "covered": cov, "coverage": cov / n if n else None}
        return out

    def overall(self, min_height: float = 0.0) -> float | None:
        sel = [f for f in self.faces if f.height >= min_height]
        return sum(f.covered for f in sel) / len(sel) if sel else None

    def uncovered(self, min_height: float = 0.0) -> list[FaceResult]:
        return [f for f in self.faces if not f.covered and f.height >= min_height]

    def as_dict(self) -> dict:
        return {
            "faces": len(self.faces),
            "coverage": self.overall(),
            "coverage_ge32": self.overall(32),
            "uncovered_ge48": len(self.uncovered(48)),
            "bins": self.by_bin(),
        }


def judge_frame(
    original: np.ndarray,
    output: np.ndarray,
    references: Detections | np.ndarray,
    frame: int = 0,
) -> list[FaceResult]:
    """Coverage of each reference face of one frame (boxes without landmarks get the frontal
    template's five points)."""
    if isinstance(references, Detections):
        boxes, lms = references.xyxy.astype(np.float64), _five(references)
    else:
        boxes = np.asarray(references, np.float64).reshape(-1, 4)
        lms = [None] * len(boxes)
    out = []
    for b, lm in zip(boxes, lms, strict=True):
        cells, patches = changed_regions(original, output, b, lm)
        out.append(
            FaceResult(
                frame,
                [float(v) for v in b],
                float(b[3] - b[1]),
                is_covered(cells, patches),
                cells.tolist(),
                patches.tolist(),
            )
        )
    return out


def uncovered_sheet(
    originals: dict[int, np.ndarray],
    outputs: dict[int, np.ndarray],
    faces: Sequence[FaceResult],
    limit: int = 48,
) -> np.ndarray | None:
    """Contact sheet (original crop | output crop) of uncovered faces, largest first."""
    faces = sorted(faces, key=lambda f: -f.height)[:limit]
    if not faces:
        return None
    rows, labels = [], []
    for f in faces:
        b = np.array(f.box)
        rows.append([face_crop(originals[f.frame], b), face_crop(outputs[f.frame], b)])
        labels.append([f"frame {f.frame} h={f.height:.0f}px", "output"])
    return contact_sheet(rows, labels, columns=max(1, min(4, len(rows) // 8)))
