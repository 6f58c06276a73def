"""Putting a rendered face into the person's crop: skin-only colour transfer, multi-band blend.

All functions work on the canonical aligned crop (``visual.align``), BGR uint8, with the
68 landmarks of the face in that crop.

- skin (`visual.masks.skin_mask`): cheeks, forehead strip, nose and chin: the face hull without eyes, brows,
  mouth and nostrils. Colour statistics are fitted here only, so dark irises, brows, lips or
  a delegate's eye shadow never pull the transfer (a fit over the whole crop is what tinted
  eye sockets cyan before).
- `transfer_colour`: the delegate's Lab statistics moved onto the person's skin statistics
  (mean per channel, spread of lightness and chroma within limits), applied to the whole
  delegate face.
- `pyramid_blend`: Laplacian-pyramid (multi-band) blending: coarse bands (colour, shading)
  blend over a wide transition, fine bands (texture, pores) over a narrow one, so there is
  neither a visible seam nor a ghost of the person's texture at the edge.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from streamanon.visual.masks import disk, fill_hull

# Limits of the spread ratio (person / delegate): a studio delegate in a washed-out frame
# needs its contrast lowered, but never so far that the face goes flat. Raised by a quarter at
# most: the spread stretches features as much as texture, and the texture's amount is matched
# band by band in `pyramid_blend` already; up to twice (the limit before issue 21's seventh
# session) gave a smooth delegate on a contrasty face black sockets and dark brown lips (d10,
# a tuning clip). Chroma spread is never raised: the faint violet under a delegate's eyes,
# stretched, became violet sockets.
L_SPREAD = (0.6, 1.25)
AB_SPREAD = (0.6, 1.0)
LEVELS = 4  # 128 -> 64 -> 32 -> 16 -> 8


def lab_stats(
    image: np.ndarray, mask: np.ndarray, lab: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(median, robust spread) of the Lab pixels (float32, OpenCV's 8-bit scale) under ``mask``;
    None if few. ``lab``: ``image`` already converted (uint8 Lab), when the caller has it."""
    if int(mask.sum()) < 32:
        return None
    lab = cv2.cvtColor(image, cv2.COLOR_BGR2LAB) if lab is None else lab
    px = lab.reshape(-1, 3)[mask.reshape(-1)].astype(np.float32)
    # Medians and a robust spread: specular highlights and stray hair must not steer the fit.
    q = np.percentile(px, [16, 50, 84], axis=0)
    return q[1], np.maximum((q[2] - q[0]) / 2.0, 1.0)


def eye_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: both eye openings (sclera and iris), softened.

    Not the lids: they are skin, and a lid that kept a lighter delegate's chroma on a darker
    face (or the reverse) showed as a pink or violet ring around the eye.
    """
    lm = np.asarray(landmarks, np.float64)
    io = max(float(np.hypot(*(lm[45] - lm[36]))), 4.0)
    m = np.zeros((size, size), np.uint8)
    fill_hull(m, lm[36:42])
    fill_hull(m, lm[42:48])
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 0.03 * io)


def lip_mask(landmarks: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32 in [0, 1]: the lips (outer contour 48-59 less the inner 60-67)."""
    lm = np.asarray(landmarks, np.float64)
    io = max(float(np.hypot(*(lm[45] - lm[36]))), 4.0)
    m = np.zeros((size, size), np.uint8)
    cv2.fillPoly(m, [np.round(lm[48:60] * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
    cv2.fillPoly(m, [np.round(lm[60:68] * 16).astype(np.int32)], 0, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 0.03 * io)


def transfer_colour(
    delegate: np.ndarray,
    delegate_skin: np.ndarray | tuple[np.ndarray, np.ndarray] | None,
    person: np.ndarray,
    person_skin: np.ndarray,
    keep_chroma: np.ndarray | None = None,
    lips: tuple[np.ndarray, np.ndarray] | None = None,
) -> np.ndarray:
    """``delegate`` with its skin's Lab statistics moved to those of the person's skin.

    ``delegate_skin``: the delegate's skin mask, or its `lab_stats` already measured (they
    do not change as the delegate is re-shaped frame to frame).
    ``keep_chroma`` (float mask): where the delegate keeps its own a*/b* (eyes: a chroma shift
    fitted on skin turns white sclera and grey irises pink or cyan); lightness still moves.
    ``lips`` (`lip_mask` of the delegate, of the person): there the chroma is moved to the
    median of the person's lips instead. Lips are not skin: the skin-fitted shift turned a
    delegate's pink lips violet on a person whose skin is less yellow than the delegate's, and
    a delegate's lipstick on a man is the first thing one sees. Lightness stays as fitted
    (moving it toward the person's lips too was tried in issue 21: FaceNet then matched one
    panel render to the person's other photo).
    """
    src = (
        delegate_skin
        if isinstance(delegate_skin, tuple) or delegate_skin is None
        else (lab_stats(delegate, delegate_skin))
    )
    person_lab = cv2.cvtColor(person, cv2.COLOR_BGR2LAB)
    dst = lab_stats(person, person_skin, person_lab)
    if src is None or dst is None:
        return delegate
    (sm, ss), (dm, ds) = src, dst
    ratio = ds / ss
    ratio[0] = np.clip(ratio[0], *L_SPREAD)
    ratio[1:] = np.clip(ratio[1:], *AB_SPREAD)
    orig = cv2.cvtColor(delegate, cv2.COLOR_BGR2LAB)
    # The affine move is per channel of a uint8 image: a 256-entry table per channel holds the
    # exact values the per-pixel arithmetic gives (the same float ops), and one lookup
    # replaces it. Only where the eyes or lips mix in more is the float image needed.
    table = channel_tables(sm, ratio, dm)
    out = cv2.LUT(orig, np.clip(table, 0, 255).astype(np.uint8)[:, None, :])
    if keep_chroma is not None:
        lab = table[orig, np.arange(3)]
        k = keep_chroma[..., None]
        lab[..., 1:] = lab[..., 1:] * (1 - k) + orig[..., 1:].astype(np.float32) * k
    else:
        lab = None
    if lips is not None:
        inside_f, inside_p = lips[0] > 0.5, lips[1] > 0.5
        if inside_f.sum() >= 8 and inside_p.sum() >= 8:
            if lab is None:  # only the lips' box (where the soft lip mask is not 0) moves on
                y0, y1, x0, x1 = nonzero_box(lips[0])
                win = table[orig[y0:y1, x0:x1], np.arange(3)]
                want = np.median(person_lab[inside_p][:, 1:].astype(np.float32), axis=0)
                shift = want - np.median(win[inside_f[y0:y1, x0:x1]][:, 1:], axis=0)
                win[..., 1:] += lips[0][y0:y1, x0:x1, None] * shift
                out[y0:y1, x0:x1] = np.clip(win, 0, 255).astype(np.uint8)
                return cv2.cvtColor(out, cv2.COLOR_LAB2BGR)
            want = np.median(person_lab[inside_p][:, 1:].astype(np.float32), axis=0)
            shift = want - np.median(lab[inside_f][:, 1:], axis=0)
            lab[..., 1:] += lips[0][..., None] * shift
    if lab is not None:
        out = np.clip(lab, 0, 255).astype(np.uint8)
    return cv2.cvtColor(out, cv2.COLOR_LAB2BGR)


def channel_tables(median_from, ratio, median_to) -> np.ndarray:
    """(256, 3) the Lab value each uint8 level of each channel moves to: (v - m) * r + m'
    with the very float ops (float32 levels, the statistics' dtype) a per-pixel move does."""
    levels = np.arange(256, dtype=np.float32)[:, None]
    return (levels - median_from) * ratio + median_to


def mix_where(base: np.ndarray, other: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``(base * (1 - weight) + other * weight).astype(uint8)`` (uint8 images, float weight
    (h, w, 1)), computed only in the box where ``weight`` is not 0: outside it the mix is
    ``base`` exactly, and the openings it serves (eyes, mouth) are a small part of a crop."""
    out = base.copy()
    y0, y1, x0, x1 = nonzero_box(weight[..., 0])
    w = weight[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = (base[y0:y1, x0:x1] * (1 - w) + other[y0:y1, x0:x1] * w).astype(np.uint8)
    return out


def nonzero_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1): the smallest box holding every non-zero pixel of ``mask`` (an
    empty box at 0 when there is none)."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if len(rows) == 0:
        return 0, 0, 0, 0
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _gauss(img: np.ndarray, levels: int) -> list[np.ndarray]:
    out = [img]
    for _ in range(levels):
        out.append(cv2.pyrDown(out[-1]))
    return out


def _laplace(img: np.ndarray, levels: int) -> list[np.ndarray]:
    g = _gauss(img, levels)
    lap = [g[i] - cv2.pyrUp(g[i + 1], dstsize=g[i].shape[1::-1]) for i in range(levels)]
    return lap + [g[-1]]


# Texture contrast matching: each band of the delegate is scaled toward the person's band
# energy on skin, within these limits (a studio delegate in a sharp, contrasty photo reads as
# a smooth patch; never more than this, or its own JPEG blocks and wrinkles turn harsh).
BAND_GAIN = (1.0, 2.5)


def _luma(band: np.ndarray) -> np.ndarray:
    """The achromatic part of a BGR band (Rec. 601 weights)."""
    return band[..., 0] * 0.114 + band[..., 1] * 0.587 + band[..., 2] * 0.299


def _spread(band: np.ndarray, region: np.ndarray) -> float:
    if region.shape != band.shape[:2]:
        region = cv2.resize(region.astype(np.uint8), band.shape[1::-1],
                            interpolation=cv2.INTER_NEAREST) > 0  # fmt: skip
    v = np.abs(band[region])
    return 1.4826 * float(np.median(v)) if v.size >= 16 else 0.0


def pyramid_blend(
    background: np.ndarray,
    face: np.ndarray,
    mask: np.ndarray,
    levels: int = LEVELS,
    skin: tuple[np.ndarray, np.ndarray] | None = None,
    calm: np.ndarray | None = None,
) -> np.ndarray:
    """Multi-band blend of ``face`` into ``background`` (same size, uint8) under ``mask`` [0, 1].

    Each band of the Laplacian pyramids is mixed with the mask blurred to that band's scale
    (the Gaussian pyramid of the mask), then the pyramid is collapsed. With ``skin`` (bool
    masks of the skin in background and in face), the face's bands between the finest and the
    coarsest are first scaled to the background's energy on skin (``BAND_GAIN``): only the
    amount of texture is the person's, the texture is the delegate's. ``calm`` (float mask
    [0, 1], face-sized): where the bands keep their own energy (the eyes and their sockets:
    a gain fitted on a contoured, contrasty skin turned a delegate's lids and lashes into
    dark smeared holes).
    """
    b = background.astype(np.float32)
    f = face.astype(np.float32)
    m = mask.astype(np.float32)
    lb, lf, gm = _laplace(b, levels), _laplace(f, levels), _gauss(m, levels)
    keep = None if calm is None else _gauss(1.0 - calm.astype(np.float32), levels)
    if skin is not None:
        for i in range(1, levels):
            # Lightness detail only: scaling the colour bands too put green fringes on teeth.
            yb, yf = _luma(lb[i]), _luma(lf[i])
            sf = _spread(yf, skin[1])
            if sf > 0:
                gain = float(np.clip(_spread(yb, skin[0]) / sf, *BAND_GAIN))
                extra = (gain - 1.0) * yf if keep is None else (gain - 1.0) * yf * keep[i]
                lf[i] = lf[i] + extra[..., None]
    out = None
    for i in range(levels, -1, -1):
        w = gm[i][..., None]
        # lb * (1 - w) + lf * w, in place (the same float ops, no temporaries).
        band = np.multiply(lb[i], 1.0 - w, out=lb[i])
        band += np.multiply(lf[i], w, out=lf[i])
        if out is not None:
            band += cv2.pyrUp(out, dstsize=band.shape[1::-1])
        out = band
    return np.clip(out, 0, 255).astype(np.uint8)


def paste_alpha(mask: np.ndarray, levels: int = LEVELS) -> np.ndarray:
    """Alpha for putting a pyramid-blended crop back into the frame: 1 wherever the blend can
    differ from the background (the mask grown by the coarsest band's reach), fading out."""
    size = mask.shape[0]
    reach = max(3, int(round(2 ** (levels - 1))))
    inside = mask > 0.01
    grown = cv2.dilate(inside.astype(np.uint8) * 255, disk(reach))
    soft = cv2.GaussianBlur(grown.astype(np.float32) / 255.0, (0, 0), reach / 2)
    soft = np.maximum(soft, inside.astype(np.float32))
    soft *= _edge_fade(size)
    return soft


@lru_cache(maxsize=8)
def _edge_fade(size: int) -> np.ndarray:
    """(size, size) float32: 0 on a crop's border rising to 1 four pixels in. The crop's own
    border can never be blended seamlessly: a paste fades out before it."""
    d = np.minimum(np.arange(size), np.arange(size)[::-1])
    edge = np.minimum.outer(d, d)
    fade = np.clip(edge / 4.0, 0.0, 1.0).astype(np.float32)
    fade.flags.writeable = False
    return fade


# Detail bands (Gaussian sigmas, frame pixels): fine grain/pores [0, 1], skin texture [1, 2.5].
# A 128² delegate put on a 300-pixel face has neither: it reads as a smooth patch in a sharp
# picture, and its outline as a seam however well it is blended.
BANDS = ((0.0, 1.0), (1.0, 2.5))


def _band(gray: np.ndarray, lo: float, hi: float) -> np.ndarray:
    fine = gray if lo <= 0 else cv2.GaussianBlur(gray, (0, 0), lo)
    return fine - cv2.GaussianBlur(gray, (0, 0), hi)


def band_spreads(image: np.ndarray, region: np.ndarray) -> np.ndarray:
    """(len(BANDS),) robust spread (1.48 x median |x|) of each detail band of ``image``'s
    lightness inside ``region`` (0 where the region is too small)."""
    gray = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY).astype(np.float32)
    out = np.zeros(len(BANDS))
    if int(region.sum()) < 16:
        return out
    blurred: dict[float, np.ndarray] = {}  # one blur per sigma: a band's top is the next's floor

    def blur(sigma: float) -> np.ndarray:
        if sigma <= 0:
            return gray
        if sigma not in blurred:
            blurred[sigma] = cv2.GaussianBlur(gray, (0, 0), sigma)
        return blurred[sigma]

    for k, (lo, hi) in enumerate(BANDS):
        out[k] = _spread(blur(lo) - blur(hi), region)
    return out


def missing_detail(reference: np.ndarray, rendered: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Per band, the std of the texture that gives ``rendered`` the detail ``reference`` has in
    ``region`` (both the same size). Only these numbers are taken from the person, never
    their texture.

    Measured in the box of ``region`` grown by the widest band's blur reach: the spreads are
    of pixels in ``region`` only, and a large face's patch is mostly background around it."""
    y0, y1, x0, x1 = nonzero_box(region)
    reach = int(np.ceil(4.5 * max(hi for _, hi in BANDS))) + 1  # OpenCV's kernel: ~4 sigma
    h, w = region.shape[:2]
    y0, x0, y1, x1 = max(y0 - reach, 0), max(x0 - reach, 0), min(y1 + reach, h), min(x1 + reach, w)
    box = (slice(y0, y1), slice(x0, x1))
    region = region[box]
    want, have = band_spreads(reference[box], region), band_spreads(rendered[box], region)
    return np.sqrt(np.maximum(want * want - have * have, 0.0))


def detail_textures(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(len(BANDS), h, w) float32 unit-variance noise textures, one per detail band."""
    noise = rng.standard_normal((h, w)).astype(np.float32)
    out = []
    for lo, hi in BANDS:
        t = _band(noise, max(lo, 0.5), hi)  # the finest band softened a little: grain, not salt
        out.append(t / max(float(t.std()), 1e-6))
    return np.stack(out)
