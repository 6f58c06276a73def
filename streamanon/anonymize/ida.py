"""`--method ida`: every tracked face replaced by a generated face of nobody (the paper's G).

Per track, once (`identity_state`): the recognizer embedding, the IFA-recast identity feature
Z_id (paper eqs. 1–5) and the IPD delegates (appearance Z_a, geometry S̄; eqs. 6–8), verified
by rendering the draw once and embedding it again.
Per frame: smoothed landmarks → canonical crop → Ŝ_x fitted to this frame → Z_g → one
generator call for all faces of the frame → inverse warp → feathered, colour-matched blend.

Faces the generator cannot serve (no landmarks, too small, profile, coasting) get the
fallback; a failure anywhere raises, and `Anonymizer.apply` covers the faces (fail closed).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from streamanon.anonymize.generative import (
    GENERATOR_FILE,
    colour_match,
    generator_gate,
)
from streamanon.anonymize.identity_state import FaceJob, IdentityState, TrackState, face_jobs
from streamanon.paths import find_engine
from streamanon.types import Detections

log = logging.getLogger(__name__)

FEATHER = 0.06  # mask edge blur, as a fraction of the crop size
VERIFY_DIST = 0.7
MAX_DRAWS = 6
TEMPORAL_EMA = 0.6  # weight of the previous rendered crop of the same track


class IdaMethod:
    """The `ida` face method (`FaceMethod` of `anonymize.registry`)."""

    name = "ida"

    def __init__(self, opts, model: str | Path | None = None, backend: str = "auto") -> None:
        from streamanon.anonymize.registry import fallback_redactor
        from streamanon.synth.runtime import load_runtime

        path = Path(model) if model else find_engine(GENERATOR_FILE)
        if path is None:
            from streamanon.errors import ModelMissingError

            raise ModelMissingError(
                f"{GENERATOR_FILE} not found in engines/: use --method swap or a classic method"
            )
        ok, why = generator_gate(path.with_suffix(".json"))
        if not ok:
            log.warning("ida: %s is experimental and fails its release gate: %s", path.name, why)
        self.opts = opts
        self.runtime = load_runtime(path, backend=backend, threads=opts.threads)
        self.size = self.runtime.size
        log.info("ida: generator %s on %s", path.name, self.runtime.name)
        self.ids = IdentityState(opts)
        self.fallback_reasons = self.ids.fallback_reasons
        self._fallback = fallback_redactor(opts)

    # -- per track -----------------------------------------------------------------------
    def _birth(self, image: np.ndarray, job: FaceJob) -> TrackState:
        """A track's identity state, its delegate draw verified against re-identification."""
        from streamanon.identity.ifa import recast_identity

        emb, x = self.ids.embed(image, job.box[None])
        if self.opts.k_classes > 0:
            recognizer, codebook = self.ids.models()
            f_x, _ = recast_identity(recognizer, x, codebook, k=self.opts.k_classes)
            z_id = f_x[0].detach().numpy()
        else:
            z_id = emb[0]
        best, best_d = None, -1.0
        tries = 1 if self.opts.keep_appearance else MAX_DRAWS
        for attempt in range(tries):
            st = self._state(job, emb[0], z_id, attempt)
            if tries == 1:
                return st
            trial = image.copy()
            gen, mask = self._generate([job], [st])[0]
            self._blend(trial, gen, job, mask)
            d = float(np.linalg.norm(self.ids.embed_many([(trial, job.box[None])])[0][0] - emb[0]))
            if d > best_d:
                best, best_d = st, d
            if d >= VERIFY_DIST:
                break
        best.verified_distance = best_d
        return best

    def _state(self, job: FaceJob, emb, z_id, attempt: int) -> TrackState:
        from streamanon.visual.inputs import appearance_input

        d = self.ids.draw(job.track_id, emb, job.crop, job.pose, attempt)
        crop = job.crop
        z_a = appearance_input(crop.image, crop.landmarks) if self.opts.keep_appearance else d.z_a
        return TrackState(emb, d, z_id.astype(np.float32), z_a.astype(np.float32), attempt)

    # -- per frame -----------------------------------------------------------------------
    def _generate(
        self, jobs: list[FaceJob], states: list[TrackState]
    ) -> list[tuple[np.ndarray, np.ndarray]]:
        """One generator call for all faces: (rendered crop BGR uint8, face mask) per face."""
        from streamanon.visual import delegates as D
        from streamanon.visual.inputs import MASK_CHANNEL, from_signed_rgb, render_geometry

        z_g = []
        for job, st in zip(jobs, states, strict=True):
            lm = job.crop.landmarks
            s_hat = lm if self.opts.keep_geometry else D.fit_geometry(st.delegates, lm)
            z_g.append(render_geometry(s_hat, job.crop.image, self.size, erase_landmarks=lm))
        out = self.runtime.run(
            np.stack(z_g), np.stack([s.z_id for s in states]), np.stack([s.z_a for s in states])
        )
        return [(from_signed_rgb(x), z[MASK_CHANNEL]) for x, z in zip(out, z_g, strict=True)]

    def apply(self, image: np.ndarray, faces: Detections) -> None:
        jobs, declined = face_jobs(image, faces, self.size, self.ids.count)
        for job in jobs:
            st = self.ids.get(job.track_id)
            if st is None:
                st = self._birth(image, job)
                self.ids.put(job.track_id, st)
            job.state = st
        if jobs:
            rendered = self._generate(jobs, [j.state for j in jobs])
            for job, (gen, mask) in zip(jobs, rendered, strict=True):
                self._blend(image, self._steady(job.state, gen), job, mask)
                job.state.synthesized += 1
        if declined:
            self._fallback.apply(image, faces[np.array(declined)])

    def _steady(self, st: TrackState, gen: np.ndarray) -> np.ndarray:
        if st.last_crop is not None and TEMPORAL_EMA > 0:
            gen = cv2.addWeighted(gen, 1.0 - TEMPORAL_EMA, st.last_crop, TEMPORAL_EMA, 0.0)
        st.last_crop = gen
        return gen

    def _blend(self, image: np.ndarray, gen: np.ndarray, job: FaceJob, mask: np.ndarray) -> None:
        from streamanon.visual.align import warp_back_roi

        crop, m = job.crop.image, job.crop.matrix
        gen = colour_match(gen, crop, mask)
        # Feather outwards: grow the mask first so the soft edge does not let the original
        # face show through at full strength inside the face region.
        k = max(3, int(self.size * FEATHER) | 1)
        grown = cv2.dilate(mask, np.ones((k, k), np.uint8))
        soft = np.maximum(cv2.GaussianBlur(grown, (0, 0), k / 3), mask)
        patch, (x0, y0, x1, y1) = warp_back_roi(gen, m, image.shape)
        alpha, _ = warp_back_roi(soft, m, image.shape)
        if patch.size == 0:
            return
        roi = image[y0:y1, x0:x1].astype(np.float32)
        a = alpha[..., None].astype(np.float32)
        image[y0:y1, x0:x1] = (roi * (1 - a) + patch.astype(np.float32) * a).astype(np.uint8)

    def forget(self, track_ids: Iterable[int]) -> None:
        self.ids.forget(track_ids)

    def report(self) -> dict:
        return self.ids.report(self.runtime.name)
