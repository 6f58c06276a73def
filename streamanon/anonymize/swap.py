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
(`visual.lbp`, independent of Ψ). Losing the margin redraws the delegate at once; a render
that is still within dlib's 0.6 of the person after the redraw is covered for that frame.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from functools import lru_cache

import cv2
import numpy as np

from streamanon.anonymize.blend import (
    eye_mask,
    face_hull,
    grain_strength,
    grain_texture,
    lab_stats,
    paste_alpha,
    pyramid_blend,
    skin_mask,
    transfer_colour,
)
from streamanon.anonymize.identity_state import FaceJob, IdentityState, TrackState, face_jobs
from streamanon.types import Detections

log = logging.getLogger(__name__)

VERIFY_DIST = 0.7  # Ψ distance a render must keep from the person (dlib's threshold is 0.6)
REID_DIST = 0.6  # below this a render would be re-identified: never shown
CLEAR_DIST = 0.72  # a draw this far from the person (and passing the LBP judge) ends the search
MAX_DRAWS = 6  # draws tried at birth before keeping the most distant
REDRAWS = 3  # draws tried when a track loses its margin (inside a frame: keep it short)
RECHECK_FRAMES = 30  # re-verify a track's render this often...
RECHECK_YAW = 12.0  # ...or when its yaw moved this much (degrees) since the last check
TEMPORAL_EMA = 0.4  # weight of the previous rendered crop of the same track
MASK_LIFT = 0.15  # the pasted hull reaches this share of the face height above the brows
MASK_SOFT = 0.015  # Gaussian softening of the blend mask, share of the crop size
GRAIN_MAX = 6.0  # grain std cap (grey levels): a noisy night frame must not speckle the face
MOUTH_OPEN = 0.08  # inner-lip height over mouth width above which the interior is kept


def mouth_open_ratio(lm: np.ndarray) -> float:
    """Inner lip opening (62-66 … 60-64) over mouth width (48-54)."""
    gap = float(np.mean([np.hypot(*(lm[a] - lm[b])) for a, b in ((61, 67), (62, 66), (63, 65))]))
    return gap / max(float(np.hypot(*(lm[54] - lm[48]))), 1.0)


def mouth_interior_mask(lm: np.ndarray, size: int) -> np.ndarray:
    """(size, size) float32: the inner lip polygon, eroded a pixel and softened."""
    m = np.zeros((size, size), np.uint8)
    pts = np.round(np.asarray(lm, np.float64)[60:68] * 16).astype(np.int32)
    cv2.fillPoly(m, [pts], 255, cv2.LINE_AA, 4)
    m = cv2.erode(m, np.ones((3, 3), np.uint8))
    return cv2.GaussianBlur(m.astype(np.float32) / 255.0, (0, 0), 1.0)


class SwapMethod:
    """The `swap` face method (`FaceMethod` of `anonymize.registry`)."""

    name = "swap"

    def __init__(self, opts) -> None:
        from streamanon.anonymize.registry import fallback_redactor
        from streamanon.visual.align import GEN_SIZE

        self.opts = opts
        self.size = GEN_SIZE
        self.ids = IdentityState(opts)
        self._fallback = fallback_redactor(opts)
        self.fallback_reasons = self.ids.fallback_reasons
        self._source = lru_cache(maxsize=64)(self.ids.bank.crop)
        self._source_stats = lru_cache(maxsize=64)(self._skin_stats)

    def _skin_stats(self, index: int):
        """Lab skin statistics of bank face ``index`` (its crop, its own landmarks)."""
        return lab_stats(self._source(index), skin_mask(self.ids.bank.landmarks[index], self.size))

    # -- rendering ---------------------------------------------------------------------------
    def geometry(self, st: TrackState, lm_crop: np.ndarray) -> np.ndarray:
        """Ŝ_x for this frame (the person's own landmarks with --keep-geometry)."""
        from streamanon.visual import delegates as D

        return lm_crop.copy() if self.opts.keep_geometry else D.fit_geometry(st.delegates, lm_crop)

    def render(self, job: FaceJob, st: TrackState) -> tuple[np.ndarray, np.ndarray]:
        """(blended crop, face mask) of ``st``'s delegate on this face, in crop coordinates."""
        from streamanon.anonymize.warp import warp_face_tps

        crop, lm = job.crop.image, job.crop.landmarks
        s_hat = self.geometry(st, lm)
        if self.opts.keep_appearance:
            src, src_lm = crop, lm
        else:
            a = int(st.delegates.appearance_index)
            src, src_lm = self._source(a), self.ids.bank.landmarks[a]
        face = warp_face_tps(src, src_lm, s_hat)
        stats = None if self.opts.keep_appearance else self._source_stats(a)
        face = transfer_colour(
            face, stats or skin_mask(s_hat, self.size), crop, skin_mask(lm, self.size),
            keep_chroma=eye_mask(s_hat, self.size),
        )  # fmt: skip
        if mouth_open_ratio(lm) > MOUTH_OPEN:
            inner = mouth_interior_mask(lm, self.size)[..., None]
            face = (face * (1 - inner) + crop * inner).astype(np.uint8)
        # The hull stops a little above the brows (MASK_LIFT): a delegate's hairline or fringe
        # pasted onto a forehead looks wrong. Softened a little so the finest band fades too.
        mask = np.maximum(
            face_hull(s_hat, self.size, MASK_LIFT), face_hull(lm, self.size, MASK_LIFT)
        )
        # Shrunk by the softening's reach first: the soft edge must lie on the face, not on the
        # delegate's own hair or background beyond its hull.
        sigma = MASK_SOFT * self.size
        k = 2 * int(round(1.0 * sigma)) + 1
        mask = cv2.erode(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
        mask = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (0, 0), sigma)
        return pyramid_blend(crop, face, mask), mask

    def paste(
        self,
        image: np.ndarray,
        job: FaceJob,
        rendered: np.ndarray,
        mask: np.ndarray,
        st: TrackState | None = None,
    ) -> None:
        """Put the rendered crop back into the frame; with ``st``, add the track's grain where
        the face is larger in the frame than in the crop (see `blend.grain_strength`)."""
        from streamanon.visual.align import warp_back_roi

        m = job.crop.matrix
        patch, (x0, y0, x1, y1) = warp_back_roi(rendered, m, image.shape)
        alpha, _ = warp_back_roi(paste_alpha(mask), m, image.shape)
        if patch.size == 0:
            return
        roi = image[y0:y1, x0:x1]
        out = patch.astype(np.float32)
        if st is not None:
            face, _ = warp_back_roi(mask, m, image.shape)
            inside = face > 0.9
            strength = grain_strength(roi, patch, inside)
            if strength > 0.5:
                h, w = inside.shape
                if st.grain is None or st.grain.shape[0] < h or st.grain.shape[1] < w:
                    rng = np.random.default_rng([self.opts.seed, max(job.track_id, 0), 7])
                    st.grain = grain_texture(rng, max(h, 64) * 2, max(w, 64) * 2)
                out += (min(strength, GRAIN_MAX) * st.grain[:h, :w] * (face > 0.5))[..., None]
        a = alpha[..., None]
        blended = roi.astype(np.float32) * (1 - a) + out * a + 0.5
        image[y0:y1, x0:x1] = np.clip(blended, 0, 255).astype(np.uint8)

    def _steady(self, st: TrackState, rendered: np.ndarray) -> np.ndarray:
        """Average with the track's previous render (both in crop coordinates): landmark noise
        moves a sharp texture by a pixel per frame; the alignment carries the head motion."""
        if st.last_crop is not None and TEMPORAL_EMA > 0:
            rendered = cv2.addWeighted(rendered, 1 - TEMPORAL_EMA, st.last_crop, TEMPORAL_EMA, 0)
        st.last_crop = rendered
        return rendered

    # -- verification ------------------------------------------------------------------------
    def _judge(self, original_crop: np.ndarray, image: np.ndarray, job: FaceJob) -> float:
        from streamanon.visual.align import warp_to_crop
        from streamanon.visual.lbp import lbp_descriptor, lbp_distance

        out = warp_to_crop(image, job.crop.matrix, self.size)
        return lbp_distance(lbp_descriptor(original_crop), lbp_descriptor(out))

    def _trial(self, image: np.ndarray, job: FaceJob, st: TrackState, person: np.ndarray):
        """(Ψ distance, LBP distance) of ``st`` rendered into a scratch copy of the frame."""
        trial = image.copy()
        rendered, mask = self.render(job, st)
        self.paste(trial, job, rendered, mask, st)
        (emb,) = self.ids.embed_many([(trial, job.box[None])])
        return float(np.linalg.norm(emb[0] - person)), self._judge(job.crop.image, trial, job)

    def _safe(self, d: float, j: float) -> bool:
        from streamanon.visual.lbp import SAME_PERSON

        return d >= VERIFY_DIST and j >= SAME_PERSON

    def _draw_verified(
        self, image: np.ndarray, job: FaceJob, person: np.ndarray, first: int, tries: int = 0
    ) -> TrackState:
        """Draws ``first``, ``first + 1``, … until one is ``CLEAR_DIST`` from the person and
        passes the LBP judge, else the most distant that passes both judges (else the most
        distant); runs at birth and when a track loses its margin."""
        best, best_key = None, (False, -1.0)
        tries = 1 if self.opts.keep_appearance else (tries or MAX_DRAWS)
        for attempt in range(first, first + tries):
            d_ = self.ids.draw(job.track_id, person, job.crop, job.pose, attempt)
            st = TrackState(embedding=person.copy(), delegates=d_, draw=attempt)
            if tries == 1:
                return st
            d, j = self._trial(image, job, st, person)
            st.verified_distance, st.judge_distance = d, j
            if self._safe(d, j) and d >= CLEAR_DIST:
                return st
            # Otherwise keep looking for the widest margin: a draw that only just keeps 0.7
            # at this pose loses it a few degrees later (and every redraw changes the face).
            key = (self._safe(d, j), d)
            if key > best_key:
                best, best_key = st, key
        return best

    def _birth(self, image: np.ndarray, job: FaceJob) -> TrackState:
        (emb,) = self.ids.embed_many([(image, job.box[None])])
        st = self._draw_verified(image, job, emb[0], 0)
        st.checks, st.checked_yaw = 1, float(job.pose[0])
        return st

    def _due(self, st: TrackState, job: FaceJob) -> bool:
        moved = abs(float(job.pose[0]) - st.checked_yaw) > RECHECK_YAW
        return not self.opts.keep_appearance and (st.since_check >= RECHECK_FRAMES or moved)

    # -- FaceMethod --------------------------------------------------------------------------
    def apply(self, image: np.ndarray, faces: Detections) -> None:
        jobs, declined = face_jobs(image, faces, self.size, self.ids.count)
        original = image.copy() if jobs else image
        for job in jobs:
            st = self.ids.get(job.track_id)
            if st is None:
                st = self._birth(original, job)
                self.ids.put(job.track_id, st)
            job.state = st
        due = [job for job in jobs if self._due(job.state, job)]
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
        """Re-verify rendered faces against the person's face in this frame (see module doc)."""
        boxes = np.stack([j.box for j in due])
        person, out = self.ids.embed_many([(original, boxes), (image, boxes)])
        for job, p, o in zip(due, person, out, strict=True):
            st = job.state
            d = float(np.linalg.norm(o - p))
            j = self._judge(job.crop.image, image, job)
            st.checks += 1
            st.since_check, st.checked_yaw = 0, float(job.pose[0])
            st.verified_distance, st.judge_distance = d, j
            if self._safe(d, j):
                continue
            # Margin lost at this pose: redraw from the track's stream, render again now.
            new = self._draw_verified(original, job, p, st.draw + 1, REDRAWS)
            new.synthesized, new.fallbacks = st.synthesized, st.fallbacks
            new.checks, new.redraws = st.checks, st.redraws + 1
            new.checked_yaw = float(job.pose[0])
            new.embedding = st.embedding
            self.ids.put(job.track_id, new)
            job.state = new
            log.info("swap: track %d redrawn (Ψ distance %.2f, LBP %.2f)", job.track_id, d, j)
            rendered, mask = self.render(job, new)
            self.paste(image, job, rendered, mask, new)
            new.last_crop = rendered
            if new.verified_distance is not None and new.verified_distance < REID_DIST:
                self.ids.count(job.track_id, "reid_risk")
                self._fallback.apply(image, Detections(job.box[None], np.ones(1, np.float32)))

    def forget(self, track_ids: Iterable[int]) -> None:
        self.ids.forget(track_ids)

    def report(self) -> dict:
        return self.ids.report("tps-warp")
