"""Training pairs for the refiner: a real face rendered onto itself through the `swap` path.

The refiner never sees a pair (swap render of a delegate, the same face photographed) — no
such pair exists. What it sees instead is self-supervised: the face x is its own delegate,
degraded the way bank faces differ from a person's frame (tone, softness, plastic skin,
blotches, a landmark fit a pixel off), then re-shaped onto x's own landmarks and blended by
`anonymize.swap.render_delegate`, the very function `--method swap` renders with. On top come
the defects seen on real footage (dark lips, dark rings round the eyes, a tone step at the
seam, JPEG). The target is x itself. So the network learns to turn swap's artefacts into a
photographed face while keeping what the render shows (the delegate's features at inference).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from streamanon.anonymize.blend import lip_mask
from streamanon.anonymize.ida import refiner_inputs
from streamanon.anonymize.swap import render_delegate
from streamanon.synth.data import FLIP68, Augment, FaceSet, _jitter_matrix, compose, crop_in_patch
from streamanon.visual import GEN_SIZE, to_signed_rgb, transform_points, warp_to_crop
from streamanon.visual.masks import skin_mask


@dataclass(frozen=True)
class Degrade:
    """Probabilities and ranges of the synthetic defects (config section ``[degrade]``)."""

    flip: float = 0.5
    rotate_deg: float = 6.0
    scale: float = 0.06
    shift_px: float = 3.0
    small_face: float = 0.3  # the whole frame seen at 36-90 px and enlarged into the crop
    frame_jpeg: float = 0.4  # the frame itself compressed (target and context alike)
    tone: float = 0.8  # delegate tone / white balance unlike the person's
    soft: float = 0.7  # delegate softer than the frame (low-resolution bank tile, enlarged)
    plastic: float = 0.3  # delegate skin smoothed
    blotch: float = 0.4  # low-frequency blotches on the delegate's skin
    lm_jitter_px: float = 0.6  # per-landmark error of the delegate's fit
    lm_shift_px: float = 1.0  # whole-face shift of the fit
    dark_lips: float = 0.3
    eye_rings: float = 0.25
    seam: float = 0.3  # a tone step along the mask edge
    render_jpeg: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def _lab_shift(img: np.ndarray, where: np.ndarray, dl: float, da: float, db: float, gain: float):
    lab = cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(np.float32)
    w = where.astype(np.float32)[..., None]
    mean_l = float((lab[..., 0] * w[..., 0]).sum() / max(w.sum(), 1.0))
    shifted = lab.copy()
    shifted[..., 0] = (lab[..., 0] - mean_l) * gain + mean_l + dl
    shifted[..., 1] += da
    shifted[..., 2] += db
    out = lab * (1 - w) + shifted * w
    return cv2.cvtColor(np.clip(out, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(q)])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR) if ok else img


def _resample(img: np.ndarray, factor: float) -> np.ndarray:
    s = img.shape[0]
    small = max(8, int(round(s * factor)))
    low = cv2.resize(img, (small, small), interpolation=cv2.INTER_AREA)
    return cv2.resize(low, (s, s), interpolation=cv2.INTER_LINEAR)


def _blotches(rng: np.random.Generator, size: int, amp: float) -> np.ndarray:
    grid = rng.normal(0.0, 1.0, (6, 6)).astype(np.float32)
    return cv2.resize(grid, (size, size), interpolation=cv2.INTER_CUBIC) * amp


def degrade_delegate(
    crop: np.ndarray, lm: np.ndarray, rng: np.random.Generator, d: Degrade
) -> np.ndarray:
    """The face as a bank delegate would arrive: other tone, softer, smoother, blotchy."""
    size = crop.shape[0]
    src = crop
    skin = skin_mask(lm, size)
    if rng.random() < d.tone:
        src = _lab_shift(
            src, np.ones(src.shape[:2], bool), rng.uniform(-14, 14), rng.uniform(-7, 7),
            rng.uniform(-7, 7), rng.uniform(0.8, 1.2),
        )  # fmt: skip
    if rng.random() < d.soft:
        src = _resample(src, rng.uniform(0.35, 0.9))
    if rng.random() < d.plastic:
        src = cv2.bilateralFilter(src, 5, rng.uniform(20, 50), 5)
    if rng.random() < d.blotch:
        lab = cv2.cvtColor(src, cv2.COLOR_BGR2LAB).astype(np.float32)
        lab[..., 0] += _blotches(rng, size, rng.uniform(3, 10)) * skin
        src = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
    return src


def _eye_ring(lm: np.ndarray, size: int) -> np.ndarray:
    ring = np.zeros((size, size), np.uint8)
    for eye in (slice(36, 42), slice(42, 48)):
        poly = np.zeros_like(ring)
        cv2.fillPoly(poly, [np.round(lm[eye] * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        grown = cv2.dilate(poly, np.ones((3, 3), np.uint8), iterations=max(2, size // 40))
        ring = np.maximum(ring, cv2.subtract(grown, poly))
    return cv2.GaussianBlur(ring.astype(np.float32) / 255.0, (0, 0), 1.0)


def render_defects(
    render: np.ndarray, mask: np.ndarray, lm: np.ndarray, rng: np.random.Generator, d: Degrade
) -> np.ndarray:
    """Defects `swap` shows on real footage, added to a render (inside its face mask)."""
    size = render.shape[0]
    out = render
    if rng.random() < d.dark_lips:
        lips = cv2.GaussianBlur(lip_mask(lm, size).astype(np.float32), (0, 0), 1.0)
        out = _lab_shift(out, lips > 0.3, -rng.uniform(5, 20), rng.uniform(-3, 6), 0.0, 1.0)
    if rng.random() < d.eye_rings:
        ring = _eye_ring(lm, size)
        lab = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).astype(np.float32)
        lab[..., 0] -= ring * rng.uniform(10, 35)
        out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
    if rng.random() < d.seam:
        hard = cv2.GaussianBlur((mask > 0.5).astype(np.float32), (0, 0), 0.8)
        lab = cv2.cvtColor(out, cv2.COLOR_BGR2LAB).astype(np.float32)
        lab[..., 0] += hard * rng.choice([-1.0, 1.0]) * rng.uniform(4, 12)
        out = cv2.cvtColor(np.clip(lab, 0, 255).astype(np.uint8), cv2.COLOR_LAB2BGR)
    if rng.random() < d.render_jpeg:
        out = _jpeg(out, int(rng.integers(40, 90)))
    return out


def _frame_crop(
    fs: FaceSet, i: int, rng: np.random.Generator, d: Degrade
) -> tuple[np.ndarray, np.ndarray]:
    """The person's canonical crop (augmented, as a frame would show it) and its landmarks."""
    patch, lm = fs.patches[i], fs.landmarks[i]
    if rng.random() < d.flip:
        w = patch.shape[1]
        patch = patch[:, ::-1]
        lm = lm[FLIP68].copy()
        lm[:, 0] = w - 1 - lm[:, 0]
    aug = Augment(rotate_deg=d.rotate_deg, scale=d.scale, shift_px=d.shift_px)
    m = compose(_jitter_matrix(rng, aug, GEN_SIZE), crop_in_patch(fs.patch_size))
    crop = warp_to_crop(np.ascontiguousarray(patch), m, GEN_SIZE)
    if rng.random() < d.small_face:
        crop = _resample(crop, rng.uniform(36, 90) / GEN_SIZE)
    if rng.random() < d.frame_jpeg:
        crop = _jpeg(crop, int(rng.integers(35, 90)))
    return crop, transform_points(lm, m)


def make_pair(fs: FaceSet, i: int, rng: np.random.Generator, d: Degrade) -> dict[str, np.ndarray]:
    """One training sample: render, context, mask (inputs) and x (target), CHW float32."""
    crop, lm = _frame_crop(fs, i, rng, d)
    src = degrade_delegate(crop, lm, rng, d)
    c = lm.mean(0)
    src_lm = (lm - c) * (1 + rng.uniform(-0.03, 0.03)) + c
    src_lm = src_lm + rng.normal(0, d.lm_shift_px, 2) + rng.normal(0, d.lm_jitter_px, lm.shape)
    render, mask, _ = render_delegate(crop, lm, lm, src, src_lm)
    render = render_defects(render, mask, lm, rng, d)
    # G_r's inputs exactly as `ida` builds them at run time (batch axis dropped).
    inputs = {k: v[0] for k, v in refiner_inputs(render, crop, mask).items()}
    return inputs | {"x": to_signed_rgb(crop)}


def make_pairs(
    fs: FaceSet, idx: np.ndarray, rng: np.random.Generator, d: Degrade
) -> dict[str, np.ndarray]:
    samples = [make_pair(fs, int(i), rng, d) for i in idx]
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
