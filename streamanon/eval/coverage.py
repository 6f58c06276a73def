"""Coverage judged by a reference that is not the detector under test.

Reference faces: CenterFace at native resolution (score >= 0.5) merged with dlib's MMOD CNN
(a different network and training set; it finds profiles and three-quarter views that a
frontal HOG detector never sees) on the frame upsampled ``mmod_upsample`` times. A reference
face counts as covered only when its eyes, nose and mouth AND most of its box are changed:
the box is split 3x3 and a cell is changed when its structure (SSIM against the original) or
its fine detail (Laplacian energy) is gone; the face is covered when the whole centre column
and at least 6 of the 9 cells are changed. No credit for half a face.

Everything here is a pure function of (original frame, output frame) except the reference
detectors, which are built once (`reference_detector`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from streamanon.eval import metrics as M

# Face height bins (reference box height, source pixels).
BINS = ((0, 24), (24, 32), (32, 48), (48, 80), (80, 10**9))
CELL_SSIM = 0.6  # a cell whose SSIM vs the original is below this has changed
CELL_CORR = 0.5  # ... or whose band-pass detail correlates less than this with the original
CELL_DETAIL = 0.35  # ... or keeps less than this share of the original's band-pass detail


def bin_name(lo: int, hi: int) -> str:
    return f"<{hi}" if lo == 0 else (f">={lo}" if hi >= 10**9 else f"{lo}-{hi}")


def size_bin(height: float) -> str:
    for lo, hi in BINS:
        if lo <= height < hi:
            return bin_name(lo, hi)
    return bin_name(*BINS[-1])


def band_pass(grey: np.ndarray, face_height: float) -> np.ndarray:
    """Difference of Gaussians at the scale of facial features (sigma ~ face height / 80..20)."""
    s = max(1.0, face_height / 40.0)
    return cv2.GaussianBlur(grey, (0, 0), 0.5 * s) - cv2.GaussianBlur(grey, (0, 0), 2.0 * s)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two equally shaped arrays (0 when either is constant)."""
    a = a.astype(np.float64) - a.mean()
    b = b.astype(np.float64) - b.mean()
    den = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / den) if den > 1e-9 else 0.0


def changed_cells(original: np.ndarray, output: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(3, 3) bool: which ninths of `box` no longer show the original (row-major, top first)."""
    h, w = original.shape[:2]
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    pad = 6 + int(3 * max(1.0, (y2 - y1) / 40.0))
    cx1, cy1 = int(max(np.floor(x1) - pad, 0)), int(max(np.floor(y1) - pad, 0))
    cx2, cy2 = int(min(np.ceil(x2) + pad, w)), int(min(np.ceil(y2) + pad, h))
    if cx2 - cx1 < 2 or cy2 - cy1 < 2:
        return np.ones((3, 3), bool)  # nothing left on screen to show
    a, b = original[cy1:cy2, cx1:cx2], output[cy1:cy2, cx1:cx2]
    smap = M.ssim_map(a, b)
    ga = band_pass(cv2.cvtColor(a, cv2.COLOR_BGR2GRAY).astype(np.float32), y2 - y1)
    gb = band_pass(cv2.cvtColor(b, cv2.COLOR_BGR2GRAY).astype(np.float32), y2 - y1)
    xs = np.linspace(x1, x2, 4) - cx1
    ys = np.linspace(y1, y2, 4) - cy1
    out = np.ones((3, 3), bool)
    for r in range(3):
        for c in range(3):
            sx1, sx2 = int(max(round(xs[c]), 0)), int(min(round(xs[c + 1]), cx2 - cx1))
            sy1, sy2 = int(max(round(ys[r]), 0)), int(min(round(ys[r + 1]), cy2 - cy1))
            if sx2 <= sx1 or sy2 <= sy1:
                continue  # off-frame: nothing shown
            if smap[sy1:sy2, sx1:sx2].mean() < CELL_SSIM:
                continue
            ca, cb = ga[sy1:sy2, sx1:sx2], gb[sy1:sy2, sx1:sx2]
            if cb.std() < CELL_DETAIL * ca.std() or correlation(ca, cb) < CELL_CORR:
                continue
            out[r, c] = False
    return out


def is_covered(cells: np.ndarray) -> bool:
    """The whole centre column (eyes, nose, mouth) and at least 6 of the 9 cells changed."""
    cells = np.asarray(cells, bool).reshape(3, 3)
    return bool(cells[:, 1].all() and cells.sum() >= 6)


def merge_references(a: np.ndarray, b: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Union of two box sets; a box of `b` that overlaps one of `a` (IoU >= iou, or mostly
    inside it) is the same face and is dropped."""
    a = np.asarray(a, np.float32).reshape(-1, 4)
    b = np.asarray(b, np.float32).reshape(-1, 4)
    if len(a) == 0 or len(b) == 0:
        return np.concatenate([a, b])
    overlap = M.box_iou_matrix(b, a)
    lt = np.maximum(b[:, None, :2], a[None, :, :2])
    rb = np.minimum(b[:, None, 2:], a[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 1e-6, None), axis=1)
    inside = inter / area_b[:, None]
    same = (overlap >= iou) | (inside >= 0.6)
    return np.concatenate([a, b[~same.any(axis=1)]])


def reference_detector(mmod_upsample: int | None = 1) -> Callable[[np.ndarray], np.ndarray]:
    """image BGR -> (n, 4) reference face boxes (CenterFace native + dlib MMOD, merged)."""
    from streamanon.detect import make_detector

    cf = make_detector("centerface", thresh=0.5, low_thresh=0.5, input_size=None, landmarks=False)
    mmod = None
    if mmod_upsample is not None:
        from streamanon.detect.dlib_detectors import DlibMMOD

        mmod = DlibMMOD(input_size=None, upsample=mmod_upsample)

    def detect(image: np.ndarray) -> np.ndarray:
        boxes = cf(image).xyxy
        if mmod is not None:
            boxes = merge_references(boxes, mmod(image).xyxy)
        return boxes

    return detect


@dataclass
class FaceResult:
    frame: int
    box: list[float]
    height: float
    covered: bool
    cells: list[list[bool]]


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
    original: np.ndarray, output: np.ndarray, references: np.ndarray, frame: int = 0
) -> list[FaceResult]:
    """Coverage of each reference face of one frame."""
    out = []
    for b in np.asarray(references, np.float64).reshape(-1, 4):
        cells = changed_cells(original, output, b)
        out.append(
            FaceResult(
                frame, [float(v) for v in b], float(b[3] - b[1]), is_covered(cells), cells.tolist()
            )  # fmt: skip
        )
    return out


def uncovered_sheet(
    originals: dict[int, np.ndarray],
    outputs: dict[int, np.ndarray],
    faces: Sequence[FaceResult],
    limit: int = 48,
) -> np.ndarray | None:
    """Contact sheet (original crop | output crop) of uncovered faces, largest first."""
    from streamanon.eval.sheet import contact_sheet, face_crop

    faces = sorted(faces, key=lambda f: -f.height)[:limit]
    if not faces:
        return None
    rows, labels = [], []
    for f in faces:
        b = np.array(f.box)
        rows.append([face_crop(originals[f.frame], b), face_crop(outputs[f.frame], b)])
        labels.append([f"frame {f.frame} h={f.height:.0f}px", "output"])
    return contact_sheet(rows, labels, columns=max(1, min(4, len(rows) // 8)))
