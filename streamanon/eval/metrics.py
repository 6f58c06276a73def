"""Privacy, utility and temporal metrics: pure functions over arrays.

Every function here takes numbers (embeddings, boxes, images, landmarks) and returns numbers;
models and file I/O live in `recognizers`, `pairs` and `evaluate`. Rates are fractions in
[0, 1]; the reports turn them into percentages.

Verification follows the paper (sec. 4.1): a pair of faces "matches" when the recognizer's
score passes a threshold: Euclidean distance < t for dlib/FaceNet-style descriptors, cosine
similarity > t for ArcFace-style ones.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

METRICS = ("euclidean", "cosine")


class MetricError(ValueError):
    """Inputs to a metric have the wrong shape or kind."""


# ---------------------------------------------------------------- verification


def _check_metric(metric: str) -> None:
    if metric not in METRICS:
        raise MetricError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}")


def score_matrix(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """(n, m) distances (euclidean) or cosine similarities between rows of ``a`` and ``b``."""
    _check_metric(metric)
    a = np.asarray(a, np.float64).reshape(len(a), -1)
    b = np.asarray(b, np.float64).reshape(len(b), -1)
    if a.shape[1] != b.shape[1] and len(a) and len(b):
        raise MetricError(f"embedding sizes differ: {a.shape[1]} vs {b.shape[1]}")
    if metric == "euclidean":
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.clip(d2, 0.0, None))
    an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return an @ bn.T


def is_match(scores: np.ndarray, metric: str, threshold: float) -> np.ndarray:
    """Boolean: same person according to ``metric`` at ``threshold``."""
    _check_metric(metric)
    scores = np.asarray(scores)
    return scores < threshold if metric == "euclidean" else scores > threshold


def paired_scores(a: np.ndarray, b: np.ndarray, metric: str) -> np.ndarray:
    """Score of row i of ``a`` against row i of ``b`` (n,)."""
    if len(a) != len(b):
        raise MetricError(f"need as many anonymized as original faces, got {len(b)} vs {len(a)}")
    if len(a) == 0:
        return np.zeros((0,))
    return np.array([score_matrix(a[i : i + 1], b[i : i + 1], metric)[0, 0] for i in range(len(a))])


def reid_rate(
    original: np.ndarray, anonymized: np.ndarray, metric: str, thresholds: Sequence[float]
) -> dict[float, float]:
    """Fraction of faces whose anonymized version still matches its original, per threshold."""
    s = paired_scores(original, anonymized, metric)
    if len(s) == 0:
        return {float(t): float("nan") for t in thresholds}
    return {float(t): float(is_match(s, metric, t).mean()) for t in thresholds}


def labelled_rates(
    gallery: np.ndarray,
    gallery_labels: Sequence[str],
    anonymized: np.ndarray,
    source_index: Sequence[int],
    metric: str,
    thresholds: Sequence[float],
) -> dict[str, dict[float, float]]:
    """ReID against OTHER photos of the same person, and identity swap into other people.

    gallery: embeddings of the original faces, one per row, with their identity labels.
    anonymized[j] is the anonymized version of gallery[source_index[j]].

    reid_other: anonymized face j matches at least one other original photo of the same person
    (its own source photo excluded). Faces whose person has no other photo are left out.
    swap: anonymized face j matches at least one original photo of a different person (the
    paper's identity-swap / intrusion rate, IDS).
    """
    labels = np.asarray(list(gallery_labels))
    src = np.asarray(list(source_index), np.int64)
    if len(labels) != len(gallery) or len(src) != len(anonymized):
        raise MetricError("labels/source_index do not match the embeddings")
    out: dict[str, dict[float, float]] = {"reid_other": {}, "swap": {}}
    if len(anonymized) == 0 or len(gallery) == 0:
        for t in thresholds:
            out["reid_other"][float(t)] = out["swap"][float(t)] = float("nan")
        return out
    s = score_matrix(anonymized, gallery, metric)  # (n_anon, n_gallery)
    same = labels[src][:, None] == labels[None, :]
    own = np.zeros_like(same)
    own[np.arange(len(src)), src] = True
    other_same = same & ~own
    has_other = other_same.any(1)
    for t in thresholds:
        m = is_match(s, metric, t)
        reid = (m & other_same).any(1)[has_other]
        out["reid_other"][float(t)] = float(reid.mean()) if len(reid) else float("nan")
        out["swap"][float(t)] = float((m & ~same).any(1).mean())
    return out


# ---------------------------------------------------------------- detection


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(n, m) IoU of xyxy boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(-1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(-1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def matched_boxes(reference: np.ndarray, found: np.ndarray, iou: float = 0.3) -> np.ndarray:
    """Bool (n_ref,): reference box i has a found box overlapping it by IoU >= ``iou``.

    Greedy one-to-one by best IoU, so two reference faces cannot share one detection.
    """
    reference = np.asarray(reference).reshape(-1, 4)
    found = np.asarray(found).reshape(-1, 4)
    hit = np.zeros(len(reference), bool)
    if len(reference) == 0 or len(found) == 0:
        return hit
    m = box_iou_matrix(reference, found)
    while True:
        i, j = np.unravel_index(np.argmax(m), m.shape)
        if m[i, j] < iou or m[i, j] <= 0:
            break
        hit[i] = True
        m[i, :] = -1
        m[:, j] = -1
    return hit


def detection_rate(hits: Sequence[np.ndarray]) -> float:
    """Fraction of reference faces found again, over frames/images (NaN when there are none)."""
    flat = np.concatenate([np.asarray(h, bool).reshape(-1) for h in hits]) if hits else []
    return float(np.mean(flat)) if len(flat) else float("nan")


# ---------------------------------------------------------------- image quality


def face_region_mask(shape: tuple[int, int], boxes: np.ndarray, scale: float = 1.6) -> np.ndarray:
    """Bool (h, w) mask of the face regions: each box grown by ``scale`` about its centre.

    The default covers what an anonymizer may touch (mask scale 1.3 plus feathering) so that
    "non-face area" means pixels no method should have changed.
    """
    h, w = int(shape[0]), int(shape[1])
    mask = np.zeros((h, w), bool)
    for x1, y1, x2, y2 in np.asarray(boxes, np.float64).reshape(-1, 4):
        cx, cy, hw, hh = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) * scale / 2, (y2 - y1) * scale / 2
        xa, xb = int(max(np.floor(cx - hw), 0)), int(min(np.ceil(cx + hw), w))
        ya, yb = int(max(np.floor(cy - hh), 0)), int(min(np.ceil(cy + hh), h))
        if xb > xa and yb > ya:
            mask[ya:yb, xa:xb] = True
    return mask


def _gray(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    return img.astype(np.float64)


def _same_shape(a: np.ndarray, b: np.ndarray) -> None:
    if a.shape != b.shape:
        raise MetricError(f"images differ in size: {a.shape} vs {b.shape}")


def ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-pixel SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03, L 255)."""
    _same_shape(np.asarray(a), np.asarray(b))
    x, y = _gray(a), _gray(b)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(z: np.ndarray) -> np.ndarray:
        return cv2.GaussianBlur(z, (11, 11), 1.5, borderType=cv2.BORDER_REFLECT)

    mx, my = blur(x), blur(y)
    vx, vy, cxy = blur(x * x) - mx * mx, blur(y * y) - my * my, blur(x * y) - mx * my
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """Mean SSIM over the whole image, or over ``mask`` (NaN when the mask is empty)."""
    m = ssim_map(a, b)
    if mask is None:
        return float(m.mean())
    mask = np.asarray(mask, bool)
    return float(m[mask].mean()) if mask.any() else float("nan")


def psnr(a: np.ndarray, b: np.ndarray, mask: np.ndarray | None = None) -> float:
    """PSNR in dB over all channels (inside ``mask`` if given); inf for identical pixels."""
    a, b = np.asarray(a), np.asarray(b)
    _same_shape(a, b)
    d = (a.astype(np.float64) - b.astype(np.float64)) ** 2
    if mask is not None:
        mask = np.asarray(mask, bool)
        if not mask.any():
            return float("nan")
        d = d[mask]
    mse = float(d.mean())
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


# ---------------------------------------------------------------- landmarks


def _lm(landmarks68: np.ndarray) -> np.ndarray:
    p = np.asarray(landmarks68, np.float64)
    if p.shape[-2:] != (68, 2):
        raise MetricError(f"landmarks must be (..., 68, 2), got {p.shape}")
    return p


def mouth_opening(landmarks68: np.ndarray) -> np.ndarray:
    """Inner-lip gap over mouth width (iBUG points 61-63 vs 67-65, corners 60/64): 0 = closed."""
    p = _lm(landmarks68)
    gap = np.linalg.norm(p[..., [61, 62, 63], :] - p[..., [67, 66, 65], :], axis=-1).mean(-1)
    width = np.linalg.norm(p[..., 64, :] - p[..., 60, :], axis=-1)
    return gap / np.maximum(width, 1e-6)


def eye_opening(landmarks68: np.ndarray) -> np.ndarray:
    """Eye aspect ratio (Soukupova & Cech 2016), mean of both eyes: ~0.3 open, ~0.1 closed."""
    p = _lm(landmarks68)

    def ear(i: int) -> np.ndarray:
        e = p[..., i : i + 6, :]
        v = np.linalg.norm(e[..., 1, :] - e[..., 5, :], axis=-1) + np.linalg.norm(
            e[..., 2, :] - e[..., 4, :], axis=-1
        )
        return v / (2 * np.maximum(np.linalg.norm(e[..., 0, :] - e[..., 3, :], axis=-1), 1e-6))

    return (ear(36) + ear(42)) / 2


def agreement(original: np.ndarray, anonymized: np.ndarray) -> dict[str, float]:
    """Mean absolute difference and Pearson correlation of a per-face quantity."""
    a, b = np.asarray(original, np.float64), np.asarray(anonymized, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    a, b = a[ok], b[ok]
    if len(a) == 0:
        return {"mae": float("nan"), "corr": float("nan"), "n": 0}
    corr = (
        float(np.corrcoef(a, b)[0, 1])
        if len(a) > 1 and a.std() > 0 and b.std() > 0
        else float("nan")
    )
    return {"mae": float(np.abs(a - b).mean()), "corr": corr, "n": int(len(a))}


def state_agreement(original: np.ndarray, anonymized: np.ndarray, threshold: float) -> float:
    """Fraction of faces whose open/closed state (value > threshold) is the same in both."""
    a, b = np.asarray(original, np.float64), np.asarray(anonymized, np.float64)
    ok = np.isfinite(a) & np.isfinite(b)
    if not ok.any():
        return float("nan")
    return float(((a[ok] > threshold) == (b[ok] > threshold)).mean())


# ---------------------------------------------------------------- video


def link_tracks(boxes_per_frame: Sequence[np.ndarray], iou: float = 0.3) -> list[np.ndarray]:
    """Track ids (one int array per frame) linking boxes frame to frame by greedy IoU.

    The evaluation's own, deliberately simple tracker: it runs on the ORIGINAL video, so that
    per-track metrics do not depend on the tracker under test.
    """
    ids: list[np.ndarray] = []
    prev = np.zeros((0, 4))
    prev_ids = np.zeros((0,), np.int64)
    next_id = 0
    for boxes in boxes_per_frame:
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        cur = np.full(len(boxes), -1, np.int64)
        if len(prev) and len(boxes):
            m = box_iou_matrix(boxes, prev)
            while True:
                i, j = np.unravel_index(np.argmax(m), m.shape)
                if m[i, j] < iou:
                    break
                cur[i] = prev_ids[j]
                m[i, :] = -1
                m[:, j] = -1
        for i in np.flatnonzero(cur < 0):
            cur[i] = next_id
            next_id += 1
        ids.append(cur)
        prev, prev_ids = boxes, cur
    return ids


def identity_consistency(embeddings: np.ndarray, metric: str, threshold: float) -> dict[str, float]:
    """How stable one track's (anonymized) identity is: consecutive embeddings of the track.

    match: fraction of consecutive pairs that the recognizer calls the same person.
    score: mean distance/similarity of consecutive pairs.
    """
    e = np.asarray(embeddings, np.float64)
    if len(e) < 2:
        return {"match": float("nan"), "score": float("nan"), "pairs": 0}
    s = paired_scores(e[:-1], e[1:], metric)
    return {
        "match": float(is_match(s, metric, threshold).mean()),
        "score": float(s.mean()),
        "pairs": int(len(s)),
    }


def flicker(original_crops: Sequence[np.ndarray], anonymized_crops: Sequence[np.ndarray]) -> float:
    """Temporal change of a face in the output relative to the input.

    Mean absolute frame-to-frame difference of the anonymized crops divided by that of the
    original crops (same boxes): 1 = the face changes as much as the real one did; well above
    1 = flicker. Crops of one track at consecutive samples, equal sizes per step.
    """
    if len(original_crops) != len(anonymized_crops):
        raise MetricError("need as many anonymized as original crops")
    do, da = [], []
    for i in range(1, len(original_crops)):
        o0, o1 = original_crops[i - 1], original_crops[i]
        a0, a1 = anonymized_crops[i - 1], anonymized_crops[i]
        if o0.shape != o1.shape or a0.shape != a1.shape:
            raise MetricError("consecutive crops must have the same size")
        do.append(np.abs(o1.astype(np.float64) - o0).mean())
        da.append(np.abs(a1.astype(np.float64) - a0).mean())
    if not do:
        return float("nan")
    return float(np.mean(da) / max(np.mean(do), 1e-6))


def leaked_frames(frame_leaks: Sequence[bool]) -> dict[str, float]:
    """Count and fraction of frames in which some original identity was re-identified."""
    f = np.asarray(list(frame_leaks), bool)
    return {
        "frames": int(len(f)),
        "leaked": int(f.sum()),
        "rate": float(f.mean()) if len(f) else float("nan"),
    }
