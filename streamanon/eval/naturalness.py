"""Does a synthesized face look like a real face in its picture? Artefact metrics, pure functions.

Each metric takes a picture (BGR uint8) and the 68 landmarks of the face in it (the ORIGINAL
face's landmarks: they say where the face is, whatever was rendered there) and returns a number
that is small for real photos and grows with one kind of defect:

- `skin_delta_e`: CIEDE2000 between the skin inside the face and the skin just outside it
  (forehead/scalp, neck, temples). A delegate of another skin tone pasted on a face gives a
  large value. Outside pixels count as skin only where the *reference* (original) picture is
  skin-coloured like its own face, so hair, background and clothes never enter.
- `seam_energy`: mean gradient magnitude (lightness) in a band along the face hull, where it
  runs over skin, divided by that inside the face. A visible paste edge raises it.
- `colour_outliers`: share of pixels in the eye sockets (eye + brow hull) and the mouth whose
  hue is nowhere near a face colour (green, cyan, blue, violet) — the tinted sockets of a
  colour match fitted over eyes and brows.
- `refit_error`: mean distance between the 68 points found on the output and the intended
  geometry, in inter-ocular distances (does the face show the shape it was meant to?).
- `detector_confidence`: the detector's score for the face in the output (0 when not found).
- `face_flicker`: frame-to-frame change inside the face in aligned crops, output over input.

The scale of every region is the face's jaw width, so the metrics are resolution-independent.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from streamanon.eval.metrics import box_iou_matrix

# Outside pixels count as skin when their reference colour is within this CIE76 distance of
# the reference face's median skin colour (same-face skin under the same light: < ~12).
SKIN_GATE = 14.0
MIN_PIXELS = 30
# Hue band (degrees of atan2(b*, a*)) that no skin, lip, iris-brown or teeth colour falls in:
# greens through blues to violets. Pixels need chroma above OUTLIER_CHROMA to count.
OUTLIER_HUE = (100.0, 320.0)
OUTLIER_CHROMA = 8.0


def lab(image_bgr: np.ndarray) -> np.ndarray:
    """CIE L*a*b* float32 (L in 0-100, a/b about -128..127) of a BGR uint8 picture."""
    return cv2.cvtColor(image_bgr.astype(np.float32) * (1.0 / 255.0), cv2.COLOR_BGR2LAB)


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference of (..., 3) Lab arrays (Sharma, Wu & Dalal 2005)."""
    l1, a1, b1 = np.moveaxis(np.asarray(lab1, np.float64), -1, 0)
    l2, a2, b2 = np.moveaxis(np.asarray(lab2, np.float64), -1, 0)
    c1, c2 = np.hypot(a1, b1), np.hypot(a2, b2)
    cm7 = ((c1 + c2) / 2) ** 7
    g = 0.5 * (1 - np.sqrt(cm7 / (cm7 + 25.0**7)))
    a1p, a2p = a1 * (1 + g), a2 * (1 + g)
    c1p, c2p = np.hypot(a1p, b1), np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    dl, dc = l2 - l1, c2p - c1p
    dh = h2p - h1p
    dh = np.where(dh > 180, dh - 360, np.where(dh < -180, dh + 360, dh))
    dh = np.where(c1p * c2p == 0, 0.0, dh)
    dhh = 2 * np.sqrt(c1p * c2p) * np.sin(np.radians(dh / 2))
    lm, cm = (l1 + l2) / 2, (c1p + c2p) / 2
    hs = h1p + h2p
    hm = np.where(
        c1p * c2p == 0,
        hs,
        np.where(
            np.abs(h1p - h2p) <= 180, hs / 2, np.where(hs < 360, (hs + 360) / 2, (hs - 360) / 2)
        ),
    )
    t = (
        1
        - 0.17 * np.cos(np.radians(hm - 30))
        + 0.24 * np.cos(np.radians(2 * hm))
        + 0.32 * np.cos(np.radians(3 * hm + 6))
        - 0.20 * np.cos(np.radians(4 * hm - 63))
    )
    sl = 1 + 0.015 * (lm - 50) ** 2 / np.sqrt(20 + (lm - 50) ** 2)
    sc = 1 + 0.045 * cm
    sh = 1 + 0.015 * cm * t
    cm7p = cm**7
    rt = (
        -2
        * np.sqrt(cm7p / (cm7p + 25.0**7))
        * np.sin(np.radians(60 * np.exp(-(((hm - 275) / 25) ** 2))))
    )
    return np.sqrt((dl / sl) ** 2 + (dc / sc) ** 2 + (dhh / sh) ** 2 + rt * (dc / sc) * (dhh / sh))


# -- regions --------------------------------------------------------------------------------
def face_scale(landmarks68: np.ndarray) -> float:
    """Jaw width (point 0 to 16) in pixels: the unit of every region size here."""
    lm = np.asarray(landmarks68, np.float64)
    return max(float(np.hypot(*(lm[16] - lm[0]))), 4.0)


def _poly(mask: np.ndarray, pts: np.ndarray) -> None:
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 4)


def _disk(r: float) -> np.ndarray:
    k = max(1, int(round(r))) * 2 + 1
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))


def face_regions(landmarks68: np.ndarray, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Boolean masks (h, w) of one face: hull, interior skin, outer ring, seam band, eyes, mouth.

    hull: jaw + brows lifted by 15 % of the brow-to-chin height (the region a renderer
    replaces). interior: the hull shrunk by 5 % of the jaw width, without eyes, brows and
    mouth. ring: 5-30 % of the jaw width outside the hull. band: within 7 % of the hull edge.
    eyes: hull of each eye with its brow; mouth: the outer lips grown by 3 %.
    """
    lm = np.asarray(landmarks68, np.float64)
    h, w = int(shape[0]), int(shape[1])
    s = face_scale(lm)
    up = 0.15 * (lm[8, 1] - lm[17:27, 1].mean())
    hull = np.zeros((h, w), np.uint8)
    _poly(hull, np.vstack([lm[0:17], lm[17:27] - [0.0, up]]))
    feats = np.zeros((h, w), np.uint8)
    eyes = np.zeros((h, w), np.uint8)
    for eye, brow in ((range(36, 42), range(17, 22)), (range(42, 48), range(22, 27))):
        _poly(eyes, np.vstack([lm[list(eye)], lm[list(brow)]]))
    mouth = np.zeros((h, w), np.uint8)
    _poly(mouth, lm[48:60])
    mouth = cv2.dilate(mouth, _disk(0.03 * s))
    feats = cv2.dilate(eyes, _disk(0.04 * s)) | cv2.dilate(mouth, _disk(0.03 * s))
    nostrils = np.zeros((h, w), np.uint8)
    _poly(nostrils, lm[31:36])
    feats |= cv2.dilate(nostrils, _disk(0.02 * s))
    interior = cv2.erode(hull, _disk(0.05 * s)) & ~feats
    outer = cv2.dilate(hull, _disk(0.30 * s))
    ring = outer & ~cv2.dilate(hull, _disk(0.05 * s))
    band = cv2.dilate(hull, _disk(0.07 * s)) & ~cv2.erode(hull, _disk(0.07 * s))
    return {
        "hull": hull > 0,
        "interior": interior > 0,
        "ring": ring > 0,
        "band": band > 0,
        "eyes": eyes > 0,
        "mouth": mouth > 0,
    }


def _roi(landmarks68: np.ndarray, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) around the face with room for the ring (faster than whole frames)."""
    lm = np.asarray(landmarks68, np.float64)
    s = face_scale(lm)
    x0, y0 = np.floor(lm.min(0) - 0.6 * s).astype(int)
    x1, y1 = np.ceil(lm.max(0) + 0.6 * s).astype(int)
    return max(x0, 0), max(y0, 0), min(x1, int(shape[1])), min(y1, int(shape[0]))


def _local(
    image: np.ndarray, landmarks68: np.ndarray
) -> tuple[np.ndarray, np.ndarray, tuple[int, int, int, int]]:
    x0, y0, x1, y1 = _roi(landmarks68, image.shape)
    return image[y0:y1, x0:x1], np.asarray(landmarks68, np.float64) - [x0, y0], (x0, y0, x1, y1)


def _skin_ring(
    ref_lab: np.ndarray, regions: dict[str, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(outside skin mask, reference interior median) from the reference picture."""
    inside = ref_lab[regions["interior"]]
    if len(inside) < MIN_PIXELS:
        return np.zeros_like(regions["ring"]), np.full(3, np.nan)
    med = np.median(inside, axis=0)
    close = np.linalg.norm(ref_lab - med, axis=-1) < SKIN_GATE
    return regions["ring"] & close, med


# -- metrics --------------------------------------------------------------------------------
def skin_delta_e(
    image: np.ndarray, landmarks68: np.ndarray, reference: np.ndarray | None = None
) -> float:
    """CIEDE2000 between median skin inside the face and just outside it (NaN: no outer skin).

    ``reference``: the original picture (same size); it chooses which outside pixels are skin.
    For a real photo pass nothing (the photo is its own reference).
    """
    img, lm, (x0, y0, x1, y1) = _local(image, landmarks68)
    ref = img if reference is None else reference[y0:y1, x0:x1]
    regions = face_regions(lm, img.shape)
    ring, _ = _skin_ring(lab(ref), regions)
    if ring.sum() < MIN_PIXELS or regions["interior"].sum() < MIN_PIXELS:
        return float("nan")
    out = lab(img)
    inside = np.median(out[regions["interior"]], axis=0)
    outside = np.median(out[ring], axis=0)
    return float(ciede2000(inside, outside))


def _grad(image: np.ndarray) -> np.ndarray:
    light = cv2.GaussianBlur(lab(image)[..., 0], (0, 0), 1.0)
    gx = cv2.Sobel(light, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(light, cv2.CV_32F, 0, 1, ksize=3)
    return np.hypot(gx, gy)


def seam_energy(
    image: np.ndarray, landmarks68: np.ndarray, reference: np.ndarray | None = None
) -> float:
    """Gradient magnitude along the face hull over skin, relative to the face interior.

    The band is kept only where the reference picture is skin (forehead, cheeks, chin-neck),
    so the natural edge between a face and the background does not count. ~1 for real photos.
    """
    img, lm, (x0, y0, x1, y1) = _local(image, landmarks68)
    ref = img if reference is None else reference[y0:y1, x0:x1]
    regions = face_regions(lm, img.shape)
    ref_lab = lab(ref)
    inside = ref_lab[regions["interior"]]
    if len(inside) < MIN_PIXELS:
        return float("nan")
    med = np.median(inside, axis=0)
    band = regions["band"] & (np.linalg.norm(ref_lab - med, axis=-1) < SKIN_GATE)
    if band.sum() < MIN_PIXELS:
        return float("nan")
    g = _grad(img)
    return float(g[band].mean() / max(float(g[regions["interior"]].mean()), 0.5))


def outlier_fraction(lab_pixels: np.ndarray) -> float:
    """Share of (n, 3) Lab pixels with a hue no face colour has (see ``OUTLIER_HUE``)."""
    px = np.asarray(lab_pixels, np.float64).reshape(-1, 3)
    if len(px) == 0:
        return float("nan")
    chroma = np.hypot(px[:, 1], px[:, 2])
    hue = np.degrees(np.arctan2(px[:, 2], px[:, 1])) % 360
    bad = (chroma > OUTLIER_CHROMA) & (hue > OUTLIER_HUE[0]) & (hue < OUTLIER_HUE[1])
    return float(bad.mean())


def colour_outliers(image: np.ndarray, landmarks68: np.ndarray) -> dict[str, float]:
    """{"eyes": share, "mouth": share} of off-hue pixels in the eye sockets and the mouth."""
    img, lm, _ = _local(image, landmarks68)
    regions = face_regions(lm, img.shape)
    out = lab(img)
    return {k: outlier_fraction(out[regions[k]]) for k in ("eyes", "mouth")}


def inter_ocular(landmarks68: np.ndarray) -> float:
    lm = np.asarray(landmarks68, np.float64)
    return max(float(np.hypot(*(lm[45] - lm[36]))), 1.0)


def refit_error(
    detected68: np.ndarray, intended68: np.ndarray, points: np.ndarray | None = None
) -> float:
    """Mean distance detected ↔ intended over ``points`` (default all 68), in inter-ocular units."""
    d = np.asarray(detected68, np.float64)
    t = np.asarray(intended68, np.float64)
    idx = np.arange(68) if points is None else np.asarray(points)
    return float(np.linalg.norm(d[idx] - t[idx], axis=1).mean() / inter_ocular(t))


def detector_confidence(box: np.ndarray, found_xyxy: np.ndarray, found_score: np.ndarray,
                        iou: float = 0.3) -> float:  # fmt: skip
    """Highest score among detections overlapping ``box`` by IoU >= ``iou`` (0 when none)."""
    if len(found_xyxy) == 0:
        return 0.0
    m = box_iou_matrix(np.asarray(box, np.float64)[None], np.asarray(found_xyxy, np.float64))[0]
    ok = m >= iou
    return float(np.asarray(found_score)[ok].max()) if ok.any() else 0.0


def face_flicker(
    original_crops: Sequence[np.ndarray],
    anonymized_crops: Sequence[np.ndarray],
    mask: np.ndarray | None = None,
) -> float:
    """Mean |frame-to-frame change| inside ``mask`` of the output over that of the input.

    Crops are aligned face crops of one track (same size; e.g. `visual.align.warp_to_crop`
    with each frame's ORIGINAL landmarks, so head motion is removed from both). 1 = the face
    changes as much as the real one; above 1 = flicker.
    """
    if len(original_crops) != len(anonymized_crops):
        raise ValueError("need as many anonymized as original crops")
    do, da = [], []
    for i in range(1, len(original_crops)):
        o = np.abs(original_crops[i].astype(np.float32) - original_crops[i - 1])
        a = np.abs(anonymized_crops[i].astype(np.float32) - anonymized_crops[i - 1])
        if mask is not None:
            o, a = o[mask], a[mask]
        do.append(float(o.mean()))
        da.append(float(a.mean()))
    if not do:
        return float("nan")
    return float(np.mean(da) / max(np.mean(do), 1e-6))


def measure_face(
    original: np.ndarray,
    anonymized: np.ndarray,
    landmarks68: np.ndarray,
    *,
    landmarks_out: np.ndarray | None = None,
    intended68: np.ndarray | None = None,
    confidence: float | None = None,
) -> dict[str, float]:
    """Every per-picture metric of one face (the original's landmarks locate it)."""
    out = {
        "skin_de": skin_delta_e(anonymized, landmarks68, original),
        "seam": seam_energy(anonymized, landmarks68, original),
        **{f"outliers_{k}": v for k, v in colour_outliers(anonymized, landmarks68).items()},
    }
    if landmarks_out is not None:
        target = landmarks68 if intended68 is None else intended68
        out["refit"] = refit_error(landmarks_out, target)
    if confidence is not None:
        out["confidence"] = float(confidence)
    return out


def summarise(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    """Mean (ignoring NaN) of every metric over faces; and the 90th percentile of skin/seam."""
    keys = sorted({k for r in rows for k in r})
    out: dict[str, float] = {}
    for k in keys:
        v = np.array([r.get(k, np.nan) for r in rows], np.float64)
        v = v[np.isfinite(v)]
        out[k] = float(v.mean()) if len(v) else float("nan")
        if k in ("skin_de", "seam") and len(v):
            out[f"{k}_p90"] = float(np.percentile(v, 90))
    return out
