"""Per-track identity state shared by the `swap` and `ida` methods.

What a track keeps for its whole life (its embedding, its delegate draw, its counters) and
the work both methods do per track: embed a face with Ψ, draw delegates from the bank with the
track's seeded stream (restricted to compatible bank faces), forget a track, report.

A track's embedding never leaves this object and is dropped (zeroed) with the track.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from streamanon.anonymize.regions import turn_ratio
from streamanon.identity.align import CHIP_SIZE, align_chips
from streamanon.identity.embed import chips_to_tensor, onnx_embedder
from streamanon.types import Detections, FaceCrop
from streamanon.visual.align import align_matrix, crop_scale, transform_points, warp_to_crop
from streamanon.visual.attributes import bank_attributes, compatible, face_attributes
from streamanon.visual.bank import default_bank
from streamanon.visual.delegates import choose_delegates
from streamanon.visual.ipd import track_rng
from streamanon.visual.masks import skin_mask
from streamanon.visual.pose import face_pose

# Below this face width (pixels) a 128² synthesis has too little to align on and the
# landmarks are too noisy; such faces get the fallback (see docs/generative.md).
MIN_FACE_PX = 32
# Beyond this yaw the 68-point landmarks (and the bank's poses) stop being reliable. It was 60:
# on Hamilton (a tuning clip) a side view whose collapsed 68 points read 39.3-48 degrees, its
# 5 points just under MAX_TURN, was rendered as a frontal face smeared over a profile (sheets
# opened; at 40 two of its frames, 39.3 and 39.7, still were); no face of the talking-head
# clips reads over 22.
MAX_YAW_DEG = 35.0
# dlib's 68 points collapse on a profile and its yaw reads 40-50 degrees for a face turned
# 80-90 (measured on the Hamilton clip), so a second opinion from the detector's 5 points:
# the nose this far (share of the box width) from the eyes' midpoint AND a 68-point yaw
# beyond TURNED_YAW_DEG is a profile. Either alone is not: talking heads stay under 0.07,
# but half of the Hamilton faces (stage light, upturned heads) exceed 0.12 at a median yaw
# of 21 degrees; with both, 34 of 344 faces there, the true profiles among them.
MAX_TURN = 0.12
# Distraction draws: appearance delegates at least this far (Ψ, dlib units) from the person.
# Near neighbours keep age, tone and build, but for faces the recognizer packs tightly
# (children, some East Asian adults on d11/d12) every near draw rendered within 0.45-0.64.
FAR_DIST = 0.8
TURNED_YAW_DEG = 30.0


@dataclass
class TrackState:
    """What a track keeps for its whole life: computed once (or on a redraw), reused per frame."""

    embedding: np.ndarray  # (128,) Ψ embedding at birth (never written anywhere)
    delegates: object  # visual.delegates.Delegates
    z_id: np.ndarray | None = None  # ida: (128,) IFA-recast identity feature
    z_a: np.ndarray | None = None  # ida: (3, S, S) appearance input
    draw: int = 0  # which draw of the track's seeded stream the delegates are
    synthesized: int = 0
    fallbacks: Counter = field(default_factory=Counter)
    last_crop: np.ndarray | None = None  # previous rendered crop (temporal smoothing)
    grain: np.ndarray | None = None  # swap: the track's detail textures (bands, frame px)
    verified_distance: float | None = None  # Ψ distance render ↔ person at the last check
    judge_distance: float | None = None  # second judge (LBP) at the last check
    checks: int = 0
    since_check: int = 0  # frames rendered since the last verification
    checked_yaw: float = 0.0  # yaw at the last verification
    eyewear: bool = False  # the person wears glasses (their eye openings are not put back)
    # Why the track is covered for the rest of its life ("" while it is rendered): no draw
    # kept the margin at birth ("reid_risk"), or it lost it at a recheck ("identity_covered").
    covered: str = ""


@dataclass(slots=True)
class FaceJob:
    """One face of the current frame that a method will render."""

    index: int  # row in the frame's Detections
    track_id: int
    crop: FaceCrop  # aligned crop of the ORIGINAL frame, its matrix and landmarks
    pose: np.ndarray  # (yaw, pitch, roll) degrees
    box: np.ndarray  # (4,) frame box
    state: TrackState | None = None
    skin: np.ndarray | None = None  # the person's skin mask in the crop, once computed
    openings: np.ndarray | None = None  # swap: where the render shows the person's eyes/mouth

    def skin_mask(self) -> np.ndarray:
        """(size, size) bool skin of the person in the crop (`visual.masks.skin_mask`), computed once."""
        if self.skin is None:
            self.skin = skin_mask(self.crop.landmarks, self.crop.image.shape[0])
        return self.skin


def decline_reason(faces: Detections, i: int) -> str | None:
    """Why face i cannot be synthesized (None when it can), before any alignment."""
    if faces.landmarks68 is None or not np.isfinite(faces.landmarks68[i]).all():
        return "no_landmarks"
    if faces.coasting is not None and faces.coasting[i]:
        return "coasting"
    if faces.track_id is None or faces.track_id[i] < 0:
        return "untracked"
    if float(faces.xyxy[i, 2] - faces.xyxy[i, 0]) < MIN_FACE_PX:
        return "too_small"
    return None


def _turned(faces: Detections, i: int) -> bool:
    if faces.landmarks5 is None:
        return False
    return abs(float(turn_ratio(faces.xyxy[i : i + 1], faces.landmarks5[i : i + 1])[0])) > MAX_TURN


# A face whose ``size`` crop would be enlarged this much into its frame is cropped at ``hires``;
# one it would be reduced to less than LORES_BELOW is cropped at ``lores`` (still at least the
# frame's own resolution: rendering pixels the frame cannot show is wasted time in a crowd).
HIRES_FROM = 1.4
LORES_BELOW = 0.75


SIDE_HYSTERESIS = 0.1  # a track changes crop side only 10 % past a threshold (no flip-flop)


def crop_side(scale: float, size: int, hires: int, lores: int, previous: int | None) -> int:
    """The crop side for a face at ``scale`` (frame px per ``size``-crop px); ``previous``: the
    track's side last frame (it is kept until the scale is clearly past the threshold)."""
    h = SIDE_HYSTERESIS
    if previous == hires and hires > size:
        return hires if scale >= HIRES_FROM * (1 - h) else size
    if previous == lores and 0 < lores < size:
        return lores if scale < LORES_BELOW * (1 + h) else size
    if hires > size and scale >= HIRES_FROM * (1 + h if previous else 1):
        return hires
    if 0 < lores < size and scale < LORES_BELOW * (1 - h if previous else 1):
        return lores
    return size


def face_jobs(
    image: np.ndarray,
    faces: Detections,
    size: int,
    count,
    hires: int = 0,
    lores: int = 0,
    sides: dict[int, int] | None = None,
) -> tuple[list[FaceJob], list[int]]:
    """Aligned crops of the faces a method can render, and the rows it must decline.

    ``count(track_id, reason)`` is told about every declined face. With ``hires`` (> size) or
    ``lores`` (< size), faces large or small in the frame get their crop at that side instead
    (`crop_side`); ``sides`` (track id → side, updated here) keeps a track's side steady.
    """
    jobs, declined = [], []
    for i in range(len(faces)):
        tid = -1 if faces.track_id is None else int(faces.track_id[i])
        reason = decline_reason(faces, i)
        if reason is None:
            lm = faces.landmarks68[i].astype(np.float64)
            pose = face_pose(lm)
            yaw = abs(float(pose[0]))
            if yaw > MAX_YAW_DEG or (yaw > TURNED_YAW_DEG and _turned(faces, i)):
                reason = "profile"
        if reason is not None:
            declined.append(i)
            count(tid, reason)
            continue
        m = align_matrix(lm, size)
        side = crop_side(
            crop_scale(m), size, hires, lores, None if sides is None else sides.get(tid)
        )
        if sides is not None:
            sides[tid] = side
        if side != size:
            m = align_matrix(lm, side)
        crop = FaceCrop(warp_to_crop(image, m, side), m, transform_points(lm, m), tid)
        jobs.append(FaceJob(i, tid, crop, pose, faces.xyxy[i].astype(np.float64)))
    return jobs, declined


def _chips(image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """dlib's aligned 150² chips of ``boxes``, cut from a window around them (converting a
    whole 4K frame to RGB for one face is most of the cost of an alignment)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(boxes) == 0:
        return np.zeros((0, CHIP_SIZE, CHIP_SIZE, 3), np.uint8)
    h, w = image.shape[:2]
    # One box size of margin: the chip (padding 0.25, any roll) lies well inside it.
    m = float(np.max(boxes[:, 2:] - boxes[:, :2]))
    x0, y0 = (max(int(v - m), 0) for v in boxes[:, :2].min(0))
    x1, y1 = int(min(boxes[:, 2].max() + m, w)), int(min(boxes[:, 3].max() + m, h))
    chips, _ = align_chips(image[y0:y1, x0:x1], boxes - [x0, y0, x0, y0])
    return chips


class IdentityState:
    """Track id → `TrackState`, plus the recognizer Ψ and the bank both methods draw from."""

    def __init__(self, opts) -> None:
        self.opts = opts
        self.bank = default_bank()
        self.tracks: dict[int, TrackState] = {}
        self.ended: dict[int, TrackState] = {}
        self.fallback_reasons: Counter = Counter()
        self._lock = threading.Lock()
        self._models = None  # (recognizer, codebook), loaded on the first track
        self._compatible = None  # visual.attributes.BankAttributes, loaded on the first draw

    # -- models ----------------------------------------------------------------------------
    def models(self):
        if self._models is None:
            from streamanon.identity.codebook import default_codebook
            from streamanon.identity.recognizer import load_recognizer

            self._models = (load_recognizer(), default_codebook())
        return self._models

    def embed(self, image: np.ndarray, boxes: np.ndarray):
        """(embeddings (n, 128), chip tensor) of the faces in ``boxes`` with Ψ, one batch.

        The tensor is what Grad-CAM (`ida`) differentiates; a caller that only needs the
        embeddings uses `embed_many` (ONNX Runtime, ~4x faster than the torch port on CPU).
        """
        import torch

        recognizer, _ = self.models()
        x = chips_to_tensor(_chips(image, boxes))
        with torch.no_grad():
            return recognizer(x).numpy(), x

    def embed_many(self, pairs: list[tuple[np.ndarray, np.ndarray]]) -> list[np.ndarray]:
        """Ψ embeddings (n_i, 128) of the faces ``boxes_i`` in ``image_i``, all in one batch:
        a verification compares a render with the person, and a batch of 2-3 chips costs
        little more than one."""
        chips = [_chips(image, boxes) for image, boxes in pairs]
        flat = onnx_embedder()(np.concatenate(chips)) if chips else np.zeros((0, 128))
        cuts = np.cumsum([len(c) for c in chips])[:-1]
        return np.split(np.asarray(flat, np.float32), cuts)

    def attributes(self):
        if self._compatible is None:
            self._compatible = bank_attributes(self.bank)
        return self._compatible

    # -- delegates -------------------------------------------------------------------------
    def draw(
        self,
        tid: int,
        embedding: np.ndarray,
        crop: FaceCrop,
        pose: np.ndarray,
        attempt: int,
        far: bool = False,
        attributes: np.ndarray | None = None,
    ):
        """The track's ``attempt``-th delegate draw (reproducible per seed and track id).

        Appearance delegates come only from bank faces compatible with the person (skin tone,
        eyewear, no occlusion: `visual.attributes`); the geometry delegate from the whole bank.
        ``far``: only bank faces at least ``FAR_DIST`` from the person in Ψ's space are
        candidates (the distraction draw, when near neighbours render too close to them).
        ``attributes``: the person's `face_attributes` in ``crop`` when the caller has them
        (they are the same for every draw of one birth).
        """
        rng = track_rng(
            self.opts.seed, tid, "delegates" if attempt == 0 else f"delegates/{attempt}"
        )
        dist = np.linalg.norm(self.bank.embeddings - np.asarray(embedding, np.float32), axis=1)
        if attributes is None:
            attributes = face_attributes(crop.image, crop.landmarks)
        allowed = compatible(
            self.attributes(),
            attributes,
            self.opts.neighbours,
            dist,
        )
        if far:
            if allowed is None:
                allowed = np.ones(len(dist), bool)
            away = allowed & (dist >= FAR_DIST)
            if not away.any():  # the farthest compatible faces, whatever their distance
                away = allowed & (dist >= np.sort(dist[allowed])[-min(10, allowed.sum())])
            allowed = away
        # The draw's utilities are distances in crop pixels: at the bank's side for every face,
        # whatever side this face was cropped at, so ε means the same for all.
        lm = crop.landmarks * (self.bank.size / crop.image.shape[0])
        return choose_delegates(
            self.bank, embedding, lm, pose, rng, self.opts.epsilon, self.opts.neighbours,
            allowed=allowed,
        )  # fmt: skip

    # -- bookkeeping -----------------------------------------------------------------------
    def get(self, tid: int) -> TrackState | None:
        return self.tracks.get(tid)

    def put(self, tid: int, st: TrackState) -> None:
        with self._lock:
            self.tracks[tid] = st

    def count(self, tid: int, reason: str) -> None:
        st = self.tracks.get(tid)
        if st is not None:
            st.fallbacks[reason] += 1
        self.fallback_reasons[reason] += 1

    def forget(self, track_ids: Iterable[int]) -> None:
        """Drop ended tracks' state (embeddings must not outlive the track)."""
        with self._lock:
            for tid in track_ids:
                st = self.tracks.pop(int(tid), None)
                if st is not None:
                    st.embedding = np.zeros(0, np.float32)
                    st.z_id = None
                    st.last_crop = st.grain = None
                    self.ended[int(tid)] = st

    def report(self, renderer: str) -> dict:
        """Per-track delegate ids, verification and fallbacks, for ``--report``."""
        tracks = {}
        for tid, st in sorted({**self.ended, **self.tracks}.items()):
            d = st.delegates
            tracks[str(tid)] = {
                "appearance_delegate": None if d is None else int(d.appearance_index),
                "geometry_delegate": None if d is None else int(d.geometry_index),
                "synthesized_frames": st.synthesized,
                "verified_distance": st.verified_distance,
                "judge_distance": st.judge_distance,
                "checks": st.checks,
                "covered": st.covered,
                "fallbacks": dict(st.fallbacks),
            }
        return {"renderer": renderer, "tracks": tracks, "fallbacks": dict(self.fallback_reasons)}
