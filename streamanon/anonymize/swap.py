"""`--method swap`: a real-looking delegate face of nobody, re-shaped onto each person.

Per track, once (`identity_state`): Ψ embedding → IPD draw of an appearance delegate among
the bank faces compatible with the person (skin tone, no eyewear/headwear/fringe, no beard on
a beardless face) and of a geometry delegate → the draw is rendered and verified.

Per frame, in the canonical crop of the person's face:

1. Ŝ_x = GSA geometry for this frame (delegate proportions, person's jaw and mouth opening);
2. the delegate crop is warped from its landmarks onto Ŝ_x with a thin-plate spline
   (smooth: no triangle kinks as the head turns);
3. its colour is moved onto the person's skin statistics, fitted on skin only;
4. when the person's mouth is open, the mouth interior (teeth, tongue, dark) is the person's
   own, inside the person's inner lip line: a closed-lip delegate stretched over an open
   mouth is what made open smiles into smeared closed ones;
5. Laplacian-pyramid blend into the person's crop, short temporal average, and the crop is put
   back into the frame with an alpha that fades out where the blend cannot differ.

Privacy is re-verified per track as the pose changes: every ``RECHECK_FRAMES`` frames, or when
the yaw moved by more than ``RECHECK_YAW`` since the last check, the rendered face is embedded
again with Ψ next to the person's own face in this frame, and compared with the LBP judge
(`visual.lbp`, independent of Ψ). A track none of whose draws keeps the margin at birth is
never rendered (``reid_risk``: children, whom the recognizer tells apart poorly, and faces too
dim to embed); one that loses it later is covered by the fallback from that frame to its end
(``identity_covered``): redrawing it would switch the fake identity a viewer sees.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache

import cv2
import numpy as np

from streamanon.anonymize.blend import (
    LEVELS,
    detail_textures,
    eye_mask,
    lab_stats,
    lip_mask,
    missing_detail,
    mix_where,
    nonzero_box,
    paste_alpha,
    pyramid_blend,
    transfer_colour,
)
from streamanon.anonymize.classic import Redactor
from streamanon.anonymize.identity_state import FaceJob, IdentityState, TrackState, face_jobs
from streamanon.anonymize.scratch import Scratch
from streamanon.anonymize.warp import warp_face_tps
from streamanon.types import Detections
from streamanon.visual import delegates as D
from streamanon.visual.align import GEN_SIZE, crop_scale, warp_back_roi, warp_to_crop
from streamanon.visual.attributes import face_attributes, mouth_open_ratio, wears_glasses
from streamanon.visual.lbp import SAME_PERSON, lbp_descriptor, lbp_distance
from streamanon.visual.masks import face_hull, skin_mask

log = logging.getLogger(__name__)

VERIFY_DIST = 0.7  # Ψ distance a render must keep from the person (dlib's threshold is 0.6)
REID_DIST = 0.6  # below this a render would be re-identified: never shown
# A shown track stays rendered while its checks keep this much (a draw needs VERIFY_DIST at
# birth; later, covering a track that is still past dlib's 0.6 took half of the d18/d19 faces
# away for nothing — the margin over 0.6 covers the frames between two checks).
KEEP_DIST = REID_DIST + 0.04
# A draw this far from the person (and passing the LBP judge) ends the search. It was 0.72: a
# draw accepted just over it can still look like the person to another family of recognizer
# (tuning clips: d3's at 0.756 was re-identified by FaceNet on 7 of 16 frames; d10's and
# ASL's at 0.81 on 1 and 0) — 0.8 is the distance distraction draws keep (FAR_DIST).
CLEAR_DIST = 0.8
WIDE_DIST = 0.72  # when no draw is clear: the first this far is kept (else the most distant)
MAX_DRAWS = 6  # draws tried at birth among near neighbours...
FAR_DRAWS = 4  # ...then among bank faces far from the person, before covering the track
RECHECK_FRAMES = 30  # re-verify a track's render this often...
RECHECK_YAW = 12.0  # ...or when its yaw moved this much (degrees) since the last check
TEMPORAL_EMA = 0.4  # weight of the previous rendered crop of the same track
MASK_LIFT = 0.15  # the pasted hull reaches this share of the face height above the brows
# Above the brows the paste keeps to skin: from BROW_LIFT of the face height over the brows'
# landmarks up to MASK_LIFT, hair (`hair_above`: reaching HAIR_REACH of the face height above
# the hull) is left to the person. Skin likeness (`skin_likeness`) in robust spreads of the
# skin's Lab colour: skin within SKIN_NEAR, not skin from SKIN_FAR.
BROW_LIFT = 0.10
HAIR_REACH = 0.05
SKIN_NEAR, SKIN_FAR = 3.0, 5.0
MASK_SOFT = 0.015  # Gaussian softening of the blend mask, share of the crop size
SHARPEN = 0.35  # unsharp-mask amount per unit of upsampling beyond 1 ...
SHARPEN_MAX = 0.9  # ... up to this (halos beyond)
# Detail std cap per band (grey levels): a noisy night frame must not speckle a face.
GRAIN_MAX = 6.0
LORES = 96  # crop side for faces the frame shows smaller than 3/4 of a 128² crop
MOUTH_OPEN = 0.08  # inner-lip height over mouth width above which the interior is kept
# The person's eye openings are pasted only when they show an iris: the darkest tenth of the
# opening at least IRIS_DARK L* below the skin median, and its brightest tenth no more than
# SCLERA_BRIGHT above it (an opening that is mostly white is an eye rolled up or aside, or
# lens glare; one with nothing dark is a blurred or shaded eye). Between the limits and these
# plus IRIS_RAMP the weight goes smoothly from 0 to 1 (no pop from frame to frame). Measured
# on the tuning clips (d3, d10, ASL, demo): open eyes with a seen iris 25-60 below the skin and
# their bright tenth 0-5 above it; through glare (a missed pair of glasses) 0-12 below; eyes
# looking far aside, mostly sclera, 16-19 above (pasted on a delegate's lids, they stare).
IRIS_DARK, SCLERA_BRIGHT, IRIS_RAMP = 14.0, 10.0, 4.0


def mouth_interior_mask(lm: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32: the inner lip polygon, softened by half a pixel (of a 128² crop).

    Not eroded: the polygon is the lips' inner edge already, and each pixel taken off it
    narrowed an open mouth by a tenth (a smile with teeth read as half-closed).
    """
    m = np.zeros((size, size), np.uint8)
    pts = np.round(np.asarray(lm, np.float64)[60:68] * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 0.5 * size / 128.0)


def _levels(size: int) -> int:
    """Pyramid levels for a crop of ``size``: the same bands, relative to the face, at any side."""
    return LEVELS + max(int(round(np.log2(size / GEN_SIZE))), 0)


def eye_interiors(
    crop: np.ndarray, lm: np.ndarray, s_hat: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(image, mask (size, size, 1) float32): the person's two eye openings in ``crop``, each
    moved by the affine map that takes the person's eye contour (36-41, 42-47) onto Ŝ_x's; the
    mask is Ŝ_x's eye polygons, eroded a pixel and softened. A closed eye gives an empty mask."""
    size = crop.shape[0]
    px = size / 128.0
    out = np.zeros_like(crop)
    mask = np.zeros((size, size), np.float32)
    for eye in (slice(36, 42), slice(42, 48)):
        src = np.asarray(lm[eye], np.float64)
        dst = np.asarray(s_hat[eye], np.float64)
        # Least-squares affine person eye -> Ŝ_x eye (6 points, 6 unknowns per axis pair).
        m = np.linalg.lstsq(np.c_[src, np.ones(6)], dst, rcond=None)[0].T
        if not np.isfinite(m).all():
            continue
        poly = np.zeros((size, size), np.uint8)
        cv2.fillPoly(poly, [np.round(dst * 16).astype(np.int32)], 255, cv2.LINE_AA, 4)
        poly = cv2.erode(poly, np.ones((3, 3), np.uint8), iterations=max(1, round(px)))
        inside = poly > 0
        if not inside.any():
            continue
        near = cv2.dilate(poly, np.ones((3, 3), np.uint8), iterations=2 * max(1, round(px))) > 0
        # Only the eye's box is warped (beyond the polygon too: the softened mask reaches there).
        x0, y0, bw, bh = cv2.boundingRect(near.view(np.uint8))
        x1, y1 = x0 + bw, y0 + bh
        shifted = m.copy()
        shifted[:, 2] -= [x0, y0]
        warped = cv2.warpAffine(crop, shifted, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REFLECT)  # fmt: skip
        box = near[y0:y1, x0:x1]
        out[y0:y1, x0:x1][box] = warped[box]
        mask = np.maximum(mask, poly.astype(np.float32) / 255.0)
    return out, cv2.GaussianBlur(mask, (0, 0), 0.7 * px)[..., None]


def eye_region(lm: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32: both eyes with their sockets and brows (the hull of contour,
    brow and the contour lowered by a quarter of the eye spacing), softened."""
    lm = np.asarray(lm, np.float64)
    io = max(float(np.hypot(*(lm[45] - lm[36]))), 4.0)
    m = np.zeros((size, size), np.uint8)
    for eye, brow in ((slice(36, 42), slice(17, 22)), (slice(42, 48), slice(22, 27))):
        pts = np.vstack([lm[eye], lm[brow], lm[eye] + [0.0, 0.25 * io]])
        hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
        cv2.fillConvexPoly(m, hull, 255, cv2.LINE_AA, 4)
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 0.08 * io)


def _opening_light(crop: np.ndarray, lm: np.ndarray, skin: np.ndarray) -> list[tuple[float, float]]:
    """Per eye (darkness of its darkest tenth, brightness of its brightest tenth), L* units
    relative to the median skin lightness; an eye too closed to measure is left out."""
    size = crop.shape[0]
    if skin.sum() < 16:
        return []
    light = cv2.cvtColor(crop.astype(np.float32) / 255.0, cv2.COLOR_BGR2LAB)[..., 0]
    ref = float(np.median(light[skin]))
    out = []
    for eye in (slice(36, 42), slice(42, 48)):
        poly = np.zeros((size, size), np.uint8)
        cv2.fillPoly(poly, [np.round(np.asarray(lm[eye]) * 16).astype(np.int32)], 255,
                     cv2.LINE_AA, 4)  # fmt: skip
        # The lid edge and lashes are not the opening: one pixel (of a 128² crop) off.
        poly = cv2.erode(poly, np.ones((3, 3), np.uint8), iterations=max(1, round(size / 128)))
        v = light[poly > 0]
        if v.size >= 6:
            lo, hi = np.percentile(v, [10, 90])
            out.append((ref - float(lo), float(hi) - ref))
    return out


def opening_weight(crop: np.ndarray, lm: np.ndarray, skin: np.ndarray) -> float:
    """0-1: how far the person's eye openings are fit to be pasted: 0 up to ``IRIS_DARK``,
    1 from ``IRIS_DARK + IRIS_RAMP``, and 1 up to ``SCLERA_BRIGHT``, 0 from ``SCLERA_BRIGHT +
    IRIS_RAMP``, linear between; both
    eyes take the weight of the worse one (one eye the person's and one the delegate's shows
    two gazes). Closed eyes give 1: their thin interior is lid and lashes either way."""
    w = 1.0
    for dark, bright in _opening_light(crop, lm, skin):
        w = min(w, np.clip((dark - IRIS_DARK) / IRIS_RAMP, 0.0, 1.0),
                np.clip((SCLERA_BRIGHT + IRIS_RAMP - bright) / IRIS_RAMP, 0.0, 1.0))  # fmt: skip
    return float(w)


def skin_likeness(crop: np.ndarray, skin: np.ndarray, rows: slice = slice(None)) -> np.ndarray:
    """(h, size) float32 in [0, 1] for ``crop[rows]``: how much each pixel's Lab colour is
    that of the skin under ``skin`` (bool, the whole crop): 1 within ``SKIN_NEAR`` robust
    spreads of its median (all channels together), 0 from ``SKIN_FAR``; hair, a hat,
    background are 0. Softened by a pixel so a strand of hair does not speckle the mask; all 1
    where the skin is too small to measure."""
    step = max(1, crop.shape[0] // GEN_SIZE)  # the skin's statistics need no more than 128²
    stats = lab_stats(crop[::step, ::step], skin[::step, ::step])
    part = crop[rows]
    if stats is None:
        return np.ones(part.shape[:2], np.float32)
    med, spread = stats
    z = (cv2.cvtColor(part, cv2.COLOR_BGR2LAB).astype(np.float32) - med) / spread
    d = np.sqrt((z * z).sum(axis=2))
    near = np.clip((SKIN_FAR - d) / (SKIN_FAR - SKIN_NEAR), 0.0, 1.0)
    return cv2.GaussianBlur(near, (0, 0), crop.shape[0] / 128.0)


def hair_above(likeness: np.ndarray, hull: np.ndarray, reach: int) -> np.ndarray:
    """float32 in [0, 1], the shape of ``likeness`` (a band of rows of a crop, reaching above
    the hull's top): hair coming down into ``hull`` (bool, the same rows) from above: the
    pixels that are not skin (``likeness`` < 0.5) with nothing but not-skin above them, in
    their column, up to ``reach`` pixels above the hull's top. A raised brow has forehead
    above it and is not hair: left out of the paste, it showed as a second brow."""
    non = likeness < 0.5
    start = np.maximum(np.argmax(hull, axis=0) - reach, 0)
    # Skin pixels counted down each column: none between ``start`` and a pixel = hair.
    skin = np.cumsum(~non, axis=0, dtype=np.int32)
    cols = np.arange(non.shape[1])
    above = np.where(start > 0, skin[np.maximum(start - 1, 0), cols], 0)
    ys = np.arange(non.shape[0])[:, None]
    hair = non & hull.any(axis=0)[None, :] & (ys >= start[None, :]) & (skin == above[None, :])
    return cv2.GaussianBlur(hair.astype(np.float32), (0, 0), non.shape[1] / 128.0)


def render_delegate(
    crop: np.ndarray,
    lm: np.ndarray,
    s_hat: np.ndarray,
    src: np.ndarray,
    src_lm: np.ndarray,
    src_stats=None,
    skin_person: np.ndarray | None = None,
    eyewear: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(blended crop, face mask, openings mask (size, size, 1)) of the face ``src`` (landmarks
    ``src_lm``) re-shaped onto Ŝ_x = ``s_hat`` in the person's ``crop`` (landmarks ``lm``).

    The whole per-frame render of `swap` (steps 2-5 of the module doc) as a pure function: the
    generator's training data goes through exactly this path (`synth.refine_data`).
    ``src_stats``: the source's Lab skin statistics when known (cached per bank face).
    ``eyewear``: the person wears glasses: their eye openings are not put back (through a
    lens frame the person's own eyes come with dark rims), the delegate's eyes stay. Nor are
    they where they show no iris (`opening_weight`): rolled up, looking far aside, glare,
    blur or shade; there the delegate's own eyes, warped onto Ŝ_x's lids, stay.
    """
    size = crop.shape[0]
    face = warp_face_tps(src, src_lm, s_hat)
    skin_face = skin_mask(s_hat, size)
    if skin_person is None:
        skin_person = skin_mask(lm, size)
    weight = 0.0 if eyewear else opening_weight(crop, lm, skin_person)
    # Where the delegate's own eyes stay, they keep their own chroma (a skin-fitted shift
    # tints white sclera pink or cyan); lightness still moves with the face.
    keep = eye_mask(s_hat, size) * np.float32(1.0 - weight) if weight < 1.0 else None
    face = transfer_colour(
        face, src_stats or skin_face, crop, skin_person, keep_chroma=keep,
        lips=(lip_mask(s_hat, size), lip_mask(lm, size)),
    )  # fmt: skip
    # The eye openings are the person's (iris and sclera, re-shaped onto Ŝ_x's lids) when
    # they show an iris: the gaze follows the person.
    if weight <= 0.0:
        eyes, inside = np.zeros_like(crop), np.zeros((size, size, 1), np.float32)
    else:
        eyes, inside = eye_interiors(crop, lm, s_hat)
        inside = inside * np.float32(weight)
    openings = eyes
    if mouth_open_ratio(lm) > MOUTH_OPEN:
        inner = mouth_interior_mask(lm, size)[..., None]
        openings = mix_where(eyes, crop, inner)
        inside = np.maximum(inside, inner)
    face = mix_where(face, openings, inside)
    # The hull stops a little above the brows (MASK_LIFT): a delegate's hairline or fringe
    # pasted onto a forehead looks wrong. Softened a little so the finest band fades too.
    mask = np.maximum(face_hull(s_hat, size, MASK_LIFT), face_hull(lm, size, MASK_LIFT))
    # Above the brows the paste keeps to skin in both faces: a person's low hairline (or brows
    # raised toward it) got a band of the delegate's forehead pasted over the hair, with a
    # straight upper edge; a delegate's fringe came down onto the person's bare forehead.
    # (The brows' own landmarks run along their middle: BROW_LIFT keeps both brows whole.)
    brows = np.maximum(face_hull(s_hat, size, BROW_LIFT), face_hull(lm, size, BROW_LIFT))
    band = (mask > 0) & (brows == 0)
    if band.any():
        # Where either face has hair there, the face itself takes the person's pixels: left
        # out of the mask only, hair or a fringe still reached the blend through coarse bands.
        hull = mask > 0
        reach = max(2, int(round(HAIR_REACH * (lm[8, 1] - lm[17:27, 1].mean()))))
        # Only the rows from above the hull's top to the band's foot are looked at.
        y0 = max(int(np.argmax(hull.any(axis=1))) - reach - 2, 0)
        rows = slice(y0, int(np.flatnonzero(band.any(axis=1))[-1]) + 3)
        bare = np.ones((size, size), np.float32)
        own = np.ones((size, size), np.float32)  # where the face stays the delegate's
        bare[rows] -= hair_above(skin_likeness(crop, skin_person, rows), hull[rows], reach)
        own[rows] = bare[rows] * (
            1.0 - hair_above(skin_likeness(face, skin_face, rows), hull[rows], reach)
        )
        face = mix_where(crop, face, np.where(band, own, 1.0)[..., None])
        mask = np.where(band, mask * bare, mask).astype(np.uint8)
    # Shrunk by the softening's reach first: the soft edge must lie on the face, not on the
    # delegate's own hair or background beyond its hull.
    sigma = MASK_SOFT * size
    k = 2 * int(round(1.0 * sigma)) + 1
    mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    mask = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)
    out = pyramid_blend(crop, face, mask, _levels(size), (skin_person, skin_face),
                        calm=eye_region(s_hat, size))  # fmt: skip
    # The openings go back untouched: the band gains (and, at frame scale, the detail
    # pass) are for skin; on teeth near white they clipped a channel and tinted them.
    out = mix_where(out, openings, inside)
    return out, mask, inside


class SwapMethod:
    """The `swap` face method (a `FaceMethod` of `streamanon.registry`)."""

    name = "swap"

    def __init__(self, opts, *, fallback: Redactor) -> None:
        """``fallback``: the cover for faces this method declines (`registry.fallback_redactor`)."""
        self.opts = opts
        self.size = GEN_SIZE
        self.ids = IdentityState(opts)
        self._fallback = fallback
        self.fallback_reasons = self.ids.fallback_reasons
        self._source = lru_cache(maxsize=64)(self.ids.bank.crop)
        self._source_stats = lru_cache(maxsize=64)(self._skin_stats)
        bank = self.ids.bank
        self.hires = bank.hires_size if bank.hires_jpeg is not None else 0
        self._sides: dict[int, int] = {}  # track id -> crop side last frame
        self._scratch = Scratch()  # the paste's frame-scale work arrays, reused

    def _skin_stats(self, index: int):
        """Lab skin statistics of bank face ``index`` (its crop, its own landmarks)."""
        return lab_stats(
            self._source(index, self.size), skin_mask(self.ids.bank.landmarks[index], self.size)
        )

    # -- rendering ---------------------------------------------------------------------------
    def geometry(self, st: TrackState, job: FaceJob) -> np.ndarray:
        """Ŝ_x for this frame (the person's own landmarks with --keep-geometry)."""
        lm = job.crop.landmarks
        if self.opts.keep_geometry:
            return lm.copy()
        return D.fit_geometry(st.delegates, lm, float(job.pose[0]))

    def render(self, job: FaceJob, st: TrackState) -> tuple[np.ndarray, np.ndarray]:
        """(blended crop, face mask) of ``st``'s delegate on this face, in crop coordinates."""
        crop, lm = job.crop.image, job.crop.landmarks
        size = crop.shape[0]  # GEN_SIZE, or the bank's high-resolution side for a large face
        s_hat = self.geometry(st, job)
        if self.opts.keep_appearance:
            src, src_lm, stats = crop, lm, None
        else:
            a = int(st.delegates.appearance_index)
            src, src_lm = self._source(a, size), self.ids.bank.landmarks_at(a, size)
            stats = self._source_stats(a)
        out, mask, inside = render_delegate(
            crop, lm, s_hat, src, src_lm, stats, job.skin_mask(), eyewear=st.eyewear
        )
        job.openings = inside[..., 0]
        return out, mask

    def paste(
        self,
        image: np.ndarray,
        job: FaceJob,
        rendered: np.ndarray,
        mask: np.ndarray,
        st: TrackState | None = None,
    ) -> None:
        """Put the rendered crop back into the frame; with ``st``, give it the fine detail
        the person's skin has at frame scale (see `restore_detail`)."""
        m = job.crop.matrix
        # Cubic: a face larger in the frame than in the crop is upsampled here.
        patch, (x0, y0, x1, y1) = warp_back_roi(rendered, m, image.shape, cv2.INTER_CUBIC)
        alpha, _ = warp_back_roi(paste_alpha(mask, _levels(mask.shape[0])), m, image.shape)
        if patch.size == 0:
            return
        roi = image[y0:y1, x0:x1]
        out = self._scratch.get("patch", patch.shape)
        np.copyto(out, patch)
        if st is not None:
            self.restore_detail(roi, out, job, mask, st, image.shape)
        # roi * (1 - a) + out * a + 0.5, in reused arrays (the same float ops).
        a = alpha[..., None]
        blended = self._scratch.get("blend", roi.shape)
        np.copyto(blended, roi)
        blended *= np.subtract(1, a, out=self._scratch.get("alpha", a.shape))
        out *= a
        blended += out
        blended += 0.5
        np.copyto(roi, np.clip(blended, 0, 255, out=blended), casting="unsafe")

    def restore_detail(
        self,
        roi: np.ndarray,
        out: np.ndarray,
        job: FaceJob,
        mask: np.ndarray,
        st: TrackState,
        frame_shape: tuple[int, ...],
    ) -> None:
        """Add to ``out`` (float patch, in place) the track's fixed noise textures, per detail
        band as strong as the person's skin has more detail than the render there.

        Only where the face is larger in the frame than in the crop does this add anything:
        a 128² delegate on a 300-pixel face is smooth where its frame has pores, grain and
        compression noise. The textures are seeded per track, so they do not flicker.
        """
        m = job.crop.matrix
        scale = crop_scale(m)
        if scale < 1.0:  # the crop is reduced into the frame: it has all the detail it needs
            return
        # Face mask, person's skin and the openings back to the frame in one warp.
        openings = np.zeros_like(mask) if job.openings is None else job.openings
        layers = np.dstack([mask, job.skin_mask().astype(np.float32), openings])
        back, _ = warp_back_roi(layers, m, frame_shape)
        if back.shape[:2] != out.shape[:2]:
            return
        face, skin = back[..., 0], back[..., 1]
        h, w = face.shape
        # Skin only: the eye and mouth openings are the person's own pixels, left as they are.
        where = np.clip(face, 0.0, 1.0) * (1.0 - back[..., 2])
        if scale > 1.25:
            # Unsharp mask at the upsampling's scale: the delegate's eyelids, brows, nostrils
            # and lips get back the edge contrast a 128² crop loses when it is enlarged.
            amount = min(SHARPEN * (scale - 1.0), SHARPEN_MAX)
            soft = cv2.GaussianBlur(
                out, (0, 0), 0.5 * scale, dst=self._scratch.get("soft", out.shape)
            )
            # Only where the face is (outside, where = 0 adds nothing): a large face's patch
            # is mostly the background around it.
            y0, y1, x0, x1 = nonzero_box(where)
            box = out[y0:y1, x0:x1]
            edge = np.subtract(box, soft[y0:y1, x0:x1], out=self._scratch.get("edge", box.shape))
            edge *= (amount * where[y0:y1, x0:x1])[..., None]
            box += edge
        need = np.minimum(missing_detail(roi, out.astype(np.uint8), skin > 0.5), GRAIN_MAX)
        if float(need.max()) < 0.5:
            return
        tex = st.grain
        if tex is None or tex.shape[1] < h or tex.shape[2] < w:
            rng = np.random.default_rng([self.opts.seed, max(job.track_id, 0), 7])
            tex = st.grain = detail_textures(rng, max(h, 64) * 2, max(w, 64) * 2)
        detail = np.tensordot(need.astype(np.float32), tex[:, :h, :w], axes=1)
        out += (detail * where)[..., None]

    def _steady(self, st: TrackState, rendered: np.ndarray) -> np.ndarray:
        """Average with the track's previous render (both in crop coordinates): landmark noise
        moves a sharp texture by a pixel per frame; the alignment carries the head motion."""
        if st.last_crop is not None and st.last_crop.shape == rendered.shape and TEMPORAL_EMA > 0:
            rendered = cv2.addWeighted(rendered, 1 - TEMPORAL_EMA, st.last_crop, TEMPORAL_EMA, 0)
        st.last_crop = rendered
        return rendered

    # -- verification ------------------------------------------------------------------------
    def _judge(self, original_crop: np.ndarray, image: np.ndarray, job: FaceJob) -> float:
        out = warp_to_crop(image, job.crop.matrix, original_crop.shape[0])
        if out.shape[0] != self.size:  # the judge's threshold was set on GEN_SIZE crops
            out = cv2.resize(out, (self.size, self.size), interpolation=cv2.INTER_AREA)
            original_crop = cv2.resize(original_crop, (self.size, self.size),
                                       interpolation=cv2.INTER_AREA)  # fmt: skip
        return lbp_distance(lbp_descriptor(original_crop), lbp_descriptor(out))

    def _trial(self, image: np.ndarray, job: FaceJob, st: TrackState, person: np.ndarray):
        """(Ψ distance, LBP distance) of ``st`` rendered into a scratch copy of the frame."""
        trial = image.copy()
        rendered, mask = self.render(job, st)
        self.paste(trial, job, rendered, mask, st)
        (emb,) = self.ids.embed_many([(trial, job.box[None])])
        return float(np.linalg.norm(emb[0] - person)), self._judge(job.crop.image, trial, job)

    def _safe(self, d: float, j: float, margin: float | None = None) -> bool:
        return d >= (VERIFY_DIST if margin is None else margin) and j >= SAME_PERSON

    def _draw_verified(
        self,
        image: np.ndarray,
        job: FaceJob,
        person: np.ndarray,
        eyewear: bool = False,
    ) -> TrackState:
        """Draws 0, 1, … (``MAX_DRAWS`` near, then ``FAR_DRAWS`` distraction draws) until one
        is ``CLEAR_DIST`` from the person and passes the LBP judge, else the first that is
        ``WIDE_DIST`` away and passes both (the sampler's earlier draws are the more natural
        ones), else the most distant that passes both (else the most distant); runs once, at
        a track's birth."""
        best, best_key, wide = None, (False, -1.0), None
        tries = 1 if self.opts.keep_appearance else MAX_DRAWS
        plan = [(a, False) for a in range(tries)]
        attrs = face_attributes(job.crop.image, job.crop.landmarks)  # the same for every draw
        if tries > 1:  # then distraction draws among bank faces far from the person
            plan += [(a, True) for a in range(tries, tries + FAR_DRAWS)]
        for attempt, far in plan:
            if far and best_key[0]:
                break  # a near draw keeps the margin: no need to look further away
            d_ = self.ids.draw(
                job.track_id, person, job.crop, job.pose, attempt, far=far, attributes=attrs
            )
            st = TrackState(embedding=person.copy(), delegates=d_, draw=attempt, eyewear=eyewear)
            if tries == 1:
                return st
            d, j = self._trial(image, job, st, person)
            st.verified_distance, st.judge_distance = d, j
            if self._safe(d, j) and d >= CLEAR_DIST:
                return st
            if wide is None and self._safe(d, j) and d >= WIDE_DIST:
                wide = st
            # Otherwise keep looking for the widest margin: a draw that only just keeps 0.7
            # at this pose loses it a few degrees later (and every redraw changes the face).
            key = (self._safe(d, j), d)
            if key > best_key:
                best, best_key = st, key
        return best if wide is None else wide

    def _birth(self, image: np.ndarray, job: FaceJob) -> TrackState:
        (emb,) = self.ids.embed_many([(image, job.box[None])])
        glasses = wears_glasses(job.crop.image, job.crop.landmarks)
        st = self._draw_verified(image, job, emb[0], eyewear=glasses)
        # (with --keep-appearance the single draw is not verified: nothing to judge)
        if not self.opts.keep_appearance and not self._safe(
            st.verified_distance, st.judge_distance
        ):
            st.covered = "reid_risk"  # fail closed: no draw is far enough from the person
        st.checks, st.checked_yaw = 1, float(job.pose[0])
        return st

    def _due(self, st: TrackState, job: FaceJob) -> bool:
        moved = abs(float(job.pose[0]) - st.checked_yaw) > RECHECK_YAW
        return not self.opts.keep_appearance and (st.since_check >= RECHECK_FRAMES or moved)

    # -- FaceMethod --------------------------------------------------------------------------
    def apply(self, image: np.ndarray, faces: Detections) -> None:
        jobs, declined = face_jobs(
            image, faces, self.size, self.ids.count, self.hires, LORES, self._sides
        )
        for job in jobs:
            st = self.ids.get(job.track_id)
            if st is None:
                st = self._birth(image, job)  # nothing is rendered yet: ``image`` is the original
                self.ids.put(job.track_id, st)
            job.state = st
        covered = [job for job in jobs if job.state.covered]
        if covered:
            jobs = [job for job in jobs if not job.state.covered]
            for job in covered:
                self.ids.count(job.track_id, job.state.covered)
            declined = declined + [job.index for job in covered]
        due = [job for job in jobs if self._due(job.state, job)]
        # The person's faces for the re-verification; copied only when one is due (a frame
        # copy per frame was a few ms at 720p: the pipeline maps every buffer over 1 MiB).
        original = image.copy() if due else image
        for job in jobs:
            rendered, mask = self.render(job, job.state)
            self.paste(image, job, self._steady(job.state, rendered), mask, job.state)
            job.state.synthesized += 1
            job.state.since_check += 1
        if due:
            self._recheck(original, image, due)
        if declined:
            self._fallback.apply(image, faces[np.array(declined)])

    def _recheck(self, original: np.ndarray, image: np.ndarray, due: list[FaceJob]) -> None:
        """Re-verify rendered faces against the person's face in this frame (see module doc).

        A track that lost its margin is covered from this frame on, never redrawn: a redraw
        switched the fake identity a viewer sees in the middle of a track.
        """
        boxes = np.stack([j.box for j in due])
        person, out = self.ids.embed_many([(original, boxes), (image, boxes)])
        lost = []
        for job, p, o in zip(due, person, out, strict=True):
            st = job.state
            d = float(np.linalg.norm(o - p))
            j = self._judge(job.crop.image, image, job)
            st.checks += 1
            st.since_check, st.checked_yaw = 0, float(job.pose[0])
            st.verified_distance, st.judge_distance = d, j
            if self._safe(d, j, KEEP_DIST):
                continue
            st.covered = "identity_covered"
            lost.append(job)
            self.ids.count(job.track_id, "identity_covered")
            log.info("%s: track %d covered (Ψ distance %.2f, LBP %.2f)", self.name,
                     job.track_id, d, j)  # fmt: skip
        if lost:
            boxes = np.stack([j.box for j in lost])
            self._fallback.apply(image, Detections(boxes, np.ones(len(lost), np.float32)))

    def forget(self, track_ids: Iterable[int]) -> None:
        track_ids = list(track_ids)
        for tid in track_ids:
            self._sides.pop(tid, None)
        self.ids.forget(track_ids)

    def report(self) -> dict:
        return self.ids.report("tps-warp")
