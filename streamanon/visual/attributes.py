"""Appearance attributes of a face crop, and which bank faces are compatible with a person.

Measured on the canonical aligned crop (``visual.align``) with its 68 landmarks, by the same
code for bank faces and for the person, so a threshold means the same on both sides:

- ``L, a, b``: median CIE Lab of the cheek/forehead skin (skin tone and scene light);
- ``forehead_skin``: share of skin-coloured pixels in the strip above the brows that a
  renderer pastes (fringes, hats and hands there are not skin);
- ``lower_skin``: share of skin-coloured pixels on chin and jaw (low with a beard or a hand);
- ``sharpness``: mean |fine detail| (lightness minus its Gaussian blur, sigma 1 px) inside the
  face, on the 128² crop: the bank's tiles come from figures of very different resolutions,
  and a soft delegate is a soft face on every frame it is rendered on.

Eyewear, sunglasses and headwear are NOT measured: edge and darkness heuristics around the
eyes could not tell glasses from eye make-up or dark irises on the bank (tried; docs/
generative.md). They come from a reviewed list, ``engines/bank_review.json`` (bank faces by
source file, looked at by eye on a contact sheet of the whole bank), and such faces are
never drawn: a person who wears glasses gets a face without them, nobody gets floating ones.

`compatible` turns these into a mask over the bank: no reviewed eyewear/headwear face, no
occluded forehead, a similar skin tone (relaxed step by step until enough faces remain), and
no beard on a beardless person. Age is not measured (no offline age model): the appearance
delegate is drawn among the person's nearest neighbours in Ψ's embedding space, which
already groups by age band and sex.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass

import cv2
import numpy as np

from streamanon.paths import find_engine
from streamanon.visual.masks import skin_mask

log = logging.getLogger(__name__)

FIELDS = ("L", "a", "b", "forehead_skin", "lower_skin", "sharpness")
SIDECAR = "bank_attributes.npz"
REVIEW = "bank_review.json"
FOREHEAD_MIN = 0.7  # less skin than this above the brows: fringe, hat or occlusion
BEARD = 0.55  # lower_skin below this: beard (or an occluded chin)
SHARP_MIN = 3.4  # sharpness below this (the bank's softest ~20 %) is not an appearance delegate
SKIN_L, SKIN_AB = 24.0, 8.0  # skin-tone difference scale (Lab units): L weighs 1/24, ab 1/8
SAME_PERSON_DIST = 0.6  # dlib's threshold: bank faces closer than this to the person are out
POOL = 4  # identity neighbours per delegate slot considered before the skin-tone ranking
SKIN_GATE = 16.0  # a pixel is skin-coloured within this CIE76 distance of the median skin


def _fill(mask: np.ndarray, pts: np.ndarray) -> None:
    hull = cv2.convexHull(np.round(np.asarray(pts, np.float64) * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 255, cv2.LINE_8, 4)


def face_attributes(crop_bgr: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(len(FIELDS),) float32 attributes of the face in an aligned crop (see module doc)."""
    size = crop_bgr.shape[0]
    lm = np.asarray(landmarks, np.float64)
    lab = cv2.cvtColor(crop_bgr.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)
    skin = skin_mask(lm, size)
    if skin.sum() < 16:
        return np.full(len(FIELDS), np.nan, np.float32)
    med = np.median(lab[skin], axis=0)
    skinlike = np.linalg.norm(lab - med, axis=-1) < SKIN_GATE
    height = float(lm[8, 1] - lm[17:27, 1].mean())
    strip = np.zeros((size, size), np.uint8)
    brows = lm[17:27]
    _fill(strip, np.vstack([brows - [0.0, 0.04 * height], brows - [0.0, 0.2 * height]]))
    forehead = float(skinlike[strip > 0].mean()) if (strip > 0).any() else 0.0
    lower = np.zeros((size, size), np.uint8)
    _fill(lower, np.vstack([lm[4:13], lm[57:60], lm[48:49], lm[54:57]]))
    mouth = np.zeros((size, size), np.uint8)
    _fill(mouth, lm[48:60])
    lower &= ~cv2.dilate(mouth, np.ones((5, 5), np.uint8))
    lower_skin = float(skinlike[lower > 0].mean()) if (lower > 0).any() else 0.0
    return np.array([*med, forehead, lower_skin, face_sharpness(crop_bgr, lm)], np.float32)


def face_sharpness(crop_bgr: np.ndarray, landmarks: np.ndarray) -> float:
    """Mean |lightness - its Gaussian blur (sigma 1 px)| inside the landmark hull."""
    gray = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    hull = np.zeros(gray.shape, np.uint8)
    _fill(hull, np.asarray(landmarks, np.float64))
    detail = np.abs(gray - cv2.GaussianBlur(gray, (0, 0), 1.0))
    return float(detail[hull > 0].mean()) if (hull > 0).any() else float("nan")


@dataclass
class BankAttributes:
    values: np.ndarray  # (n, len(FIELDS))
    digest: str  # of the bank the values were measured on
    excluded: np.ndarray | None = None  # (n,) bool: reviewed eyewear / headwear faces
    children: np.ndarray | None = None  # (n,) bool: reviewed children
    neutral: np.ndarray | None = None  # (n,) bool: frontal, neutral (`neutral_faces`)
    beard: np.ndarray | None = None  # (n,) bool: reviewed beards (the measure misses light ones)

    def column(self, name: str) -> np.ndarray:
        return self.values[:, FIELDS.index(name)]


def bank_digest(bank) -> str:
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(bank.jpeg_offsets).tobytes())
    h.update(np.ascontiguousarray(bank.embeddings[:, :4]).tobytes())
    return h.hexdigest()[:16]


def measure_bank(bank) -> BankAttributes:
    values = np.stack([face_attributes(bank.crop(i), bank.landmarks[i]) for i in range(len(bank))])
    return BankAttributes(values.astype(np.float32), bank_digest(bank))


def reviewed(bank, keys: tuple[str, ...]) -> np.ndarray:
    """(n,) bool: bank faces listed under any of ``keys`` in ``engines/bank_review.json``."""
    import json

    path = find_engine(REVIEW)
    out = np.zeros(len(bank), bool)
    if path is None:
        return out
    try:
        review = json.loads(path.read_text())
        names = {n for key in keys for n in review.get(key, [])}
    except (OSError, ValueError, AttributeError):
        log.warning("cannot read %s; no reviewed exclusions", path)
        return out
    return np.isin(np.asarray(bank.sources).astype(str), sorted(names))


def reviewed_exclusions(bank) -> np.ndarray:
    """(n,) bool: reviewed eyewear, sunglasses and headwear (never appearance delegates)."""
    return reviewed(bank, ("eyewear", "sunglasses", "headwear", "makeup"))


# An appearance delegate is warped onto every pose and expression of the person's track: a
# frontal, neutral face compresses well to a three-quarter view and takes the person's mouth
# opening, but a turned face cannot be turned back (its far cheek is not in the picture; warped
# frontal, it smears across the face), an open mouth stretches teeth over closed lips, and
# brows fitted onto the eyelids (a frown, or white brows dlib could not see) pull the dark eye
# line up into the forehead.
FRONTAL_YAW = 12.0
FRONTAL_PITCH = 15.0
BROW_GAP = 0.13  # brows at least this far above the upper eyelids (inter-ocular units)
MOUTH_CLOSED = 0.08  # inner-lip gap over mouth width below this


def mouth_open_ratio(landmarks68: np.ndarray) -> np.ndarray | float:
    """Inner-lip opening (61-67, 62-66, 63-65) over mouth width (48-54), per face of
    (68, 2) -> float or (n, 68, 2) -> (n,)."""
    lm = np.asarray(landmarks68, np.float64)
    gap = np.hypot(*np.moveaxis(lm[..., [61, 62, 63], :] - lm[..., [67, 66, 65], :], -1, 0))
    width = np.hypot(*np.moveaxis(lm[..., 54, :] - lm[..., 48, :], -1, 0))
    ratio = gap.mean(-1) / np.maximum(width, 1.0)
    return float(ratio) if lm.ndim == 2 else ratio


def neutral_faces(pose: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """(n,) bool: bank faces that are near-frontal, with clear brows and a closed mouth."""
    pose = np.asarray(pose, np.float64).reshape(-1, 3)
    lm = np.asarray(landmarks, np.float64).reshape(-1, 68, 2)
    io = np.maximum(np.hypot(*(lm[:, 45] - lm[:, 36]).T), 1.0)
    gap = (
        np.minimum(
            lm[:, [37, 38], 1].mean(1) - lm[:, 18:21, 1].mean(1),
            lm[:, [43, 44], 1].mean(1) - lm[:, 23:26, 1].mean(1),
        )
        / io
    )
    mouth = mouth_open_ratio(lm)
    frontal = (np.abs(pose[:, 0]) <= FRONTAL_YAW) & (np.abs(pose[:, 1]) <= FRONTAL_PITCH)
    return frontal & (gap >= BROW_GAP) & (mouth < MOUTH_CLOSED)


def bank_attributes(bank) -> BankAttributes:
    """The bank's attributes: from the sidecar next to it when it matches, else measured now."""
    path = find_engine(SIDECAR)
    digest = bank_digest(bank)
    excluded, children = reviewed_exclusions(bank), reviewed(bank, ("children",))
    if path is not None:
        try:
            with np.load(path, allow_pickle=False) as z:
                if str(z["digest"]) == digest and tuple(z["fields"]) == FIELDS:
                    values = z["values"].astype(np.float32)
                    return BankAttributes(
                        values, digest, excluded, children,
                        neutral_faces(bank.pose, bank.landmarks), reviewed(bank, ("beard",)),
                    )  # fmt: skip
        except (OSError, KeyError, ValueError):
            pass
    log.info("bank attributes: %s missing or stale, measuring %d faces", SIDECAR, len(bank))
    attrs = measure_bank(bank)
    attrs.excluded, attrs.children = excluded, children
    attrs.neutral = neutral_faces(bank.pose, bank.landmarks)
    attrs.beard = reviewed(bank, ("beard",))
    return attrs


# A person is a child when ALL of their 10 nearest bank faces are children: Ψ's neighbours of
# a young man in a low-resolution webcam clip were 20-90 % children from frame to frame.
CHILD_SHARE = 1.0


def compatible(
    attrs: BankAttributes, person: np.ndarray, k: int, distances: np.ndarray | None = None
) -> np.ndarray | None:
    """Bool mask over the bank of appearance delegates fit for ``person`` (None: no filter).

    Hard rules first (reviewed eyewear/headwear; children only for a child and never for an
    adult, the person's age band read from the share of children among the 10 nearest bank
    faces in Ψ's space; a frontal neutral face, a sharp crop, no occluded forehead and no beard
    on a beardless face, these last four dropped from the end if fewer than ``k`` remain). Then, when ``distances``
    (Ψ embedding distances bank → person) are given, the ``POOL * k`` nearest in identity space
    (which keeps age band and sex: a skin-tone window alone picked children and the other sex
    for adults) re-ranked by skin-tone difference: the ``2 k`` closest in tone remain.
    """
    if not np.isfinite(person).all():
        return None
    col = attrs.column
    p = dict(zip(FIELDS, person.tolist(), strict=True))
    beard = np.zeros(len(attrs.values), bool) if attrs.beard is None else attrs.beard
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(attrs.values).all(1)
        if attrs.excluded is not None:
            ok &= ~attrs.excluded
        if attrs.children is not None and distances is not None and attrs.children.any():
            near = np.argsort(np.asarray(distances), kind="stable")[:10]
            child = attrs.children[near].mean() >= CHILD_SHARE
            age_ok = attrs.children == child
            if (ok & age_ok).sum() >= k:
                ok &= age_ok
        # Dropped from the end while fewer than k faces pass: a neutral pose is kept longest.
        rules = [
            np.ones(len(ok), bool) if attrs.neutral is None else attrs.neutral,
            col("sharpness") >= SHARP_MIN,
            col("forehead_skin") >= FOREHEAD_MIN,
            ((col("lower_skin") >= BEARD) & ~beard) | (p["lower_skin"] < BEARD),
        ]
        tone = np.hypot(
            (col("L") - p["L"]) / SKIN_L, np.hypot(col("a") - p["a"], col("b") - p["b"]) / SKIN_AB
        )
    while rules:
        hard = ok & np.logical_and.reduce(rules)
        if hard.sum() >= k:
            break
        rules.pop()
    else:
        hard = ok
    if hard.sum() < k:
        return None
    if distances is None:
        return hard
    # Never the person themselves: a bank face within dlib's same-person distance of the
    # person (a bank built from footage, or a synthetic face that is in the bank) is out.
    hard &= np.asarray(distances) >= SAME_PERSON_DIST
    if hard.sum() < k:
        return None
    pool = np.flatnonzero(hard)
    near = pool[np.argsort(np.asarray(distances)[pool], kind="stable")[: POOL * k]]
    keep = near[np.argsort(tone[near], kind="stable")[: 2 * k]]
    mask = np.zeros(len(hard), bool)
    mask[keep] = True
    return mask


# Glasses on the person (not a bank review: a property of the face being anonymized). The
# bridge of a frame is a horizontal edge right across the nose between the inner eye corners,
# where bare skin has only the soft shading of the nose root. Measured on the 521 bank faces
# against the reviewed eyewear/sunglasses lists (13 faces): the median over the band's columns
# of the strongest vertical Sobel response separates them with AUC 0.96; at 150 grey levels
# (128² crop) 11 of 13 glasses are found and 5 % of bare faces are taken for glasses.
EYEWEAR_BRIDGE = 150.0


def eyewear_score(crop_bgr: np.ndarray, landmarks: np.ndarray) -> float:
    """Strength of a horizontal edge across the nose bridge (see ``EYEWEAR_BRIDGE``), in
    grey levels of a 128² crop (a crop of another side is resized first)."""
    lm = np.asarray(landmarks, np.float64)
    side = crop_bgr.shape[0]
    if side != 128:
        crop_bgr = cv2.resize(crop_bgr, (128, 128), interpolation=cv2.INTER_AREA)
        lm = lm * (128.0 / side)
    g = cv2.cvtColor(crop_bgr, cv2.COLOR_BGR2GRAY).astype(np.float32)
    gy = np.abs(cv2.Sobel(g, cv2.CV_32F, 0, 1, ksize=3))
    io = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    x0, x1 = int(lm[39, 0] + 0.05 * io), int(lm[42, 0] - 0.05 * io)
    y0, y1 = int(min(lm[21, 1], lm[22, 1]) + 0.05 * io), int(lm[29, 1])
    x0, y0 = max(x0, 0), max(y0, 0)
    if x1 - x0 < 2 or y1 - y0 < 3:
        return 0.0
    return float(np.median(gy[y0:y1, x0:x1].max(0)))


def wears_glasses(crop_bgr: np.ndarray, landmarks: np.ndarray) -> bool:
    return eyewear_score(crop_bgr, landmarks) > EYEWEAR_BRIDGE
