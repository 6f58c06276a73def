"""Face tracking with time-based Kalman filters and ByteTrack-style two-stage association.

Fail closed: `FaceTracker.update` returns every face the caller must anonymize in the frame,
which is the union of
- every detection scoring >= ``thresh`` (on a track or just starting one),
- every low-score detection (``low_thresh`` <= score < ``thresh``) that continues a track,
  or (``footprint``) that lies where a face was detected less than ``coast_s`` ago: a face
  partly hidden by an object scores low and its box jumps to the part still visible, so the
  track follows the wrong part and coasts away while the visible part of the face stays,
- every track that lost its detection less than ``coast_s`` seconds ago, at its predicted
  box, grown a little per second of coasting (``coasting=True``).
Unlike ByteTrack, nothing detected with a high score is withheld while a track "activates".
Detected rows carry the detector's own box (where the face is now, no filter lag) and the
smoothed landmarks; `Track.box` holds the filtered box. Coasting lasts while
``t - last_hit_t <= coast_s`` (inclusive), and at least until one frame the detector ran on
has missed the face (within ``LOOK_GRACE_S``), then the track ends (see `pop_ended`).
Time is the frame's presentation time in seconds, so variable frame rates and dropped frames
only change dt.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from streamanon.errors import InputError
from streamanon.track.association import iou_matrix, match_iou
from streamanon.track.kalman import (
    BoxFilter,
    face_size,
    xyxy_to_z,
    z_to_xyxy,
)
from streamanon.track.landmarks import LandmarkSmoother
from streamanon.types import Detections

# (image_bgr, detections) -> (n, 128) embeddings; dlib's metric: same person below 0.6.
ReidFn = Callable[[np.ndarray, Detections], np.ndarray]

# Longest gap after a track's last hit over which it is kept until a frame is looked at
# (see `FaceTracker.update`); longer gaps are outages, the scene may have changed.
LOOK_GRACE_S = 2.0

# A landmark jump larger than this (in face sizes, mean over points) restarts the smoother
# instead of dragging the old shape across the face.
_LM_RESET = 0.35


@dataclass(eq=False)
class Track:
    """One tracked face (per-track state of later stages lives with them, keyed by ``id``)."""

    id: int
    box: np.ndarray  # xyxy: filtered at a hit, predicted (and grown) while coasting
    score: float
    hits: int
    first_t: float
    last_hit_t: float
    landmarks68: np.ndarray | None = None  # smoothed (68, 2), or None
    coasting: bool = False
    behind: bool = False  # lost while behind another detected face: coasts longer
    missed: int = 0  # frames detected (looked at) since the last hit that did not find it
    embedding: np.ndarray | None = None  # set only when the tracker has a reid function
    # Internal filter state.
    filter: BoxFilter | None = field(default=None, repr=False)
    state_t: float = field(default=0.0, repr=False)
    lm_filter: LandmarkSmoother | None = field(default=None, repr=False)
    hit_box: np.ndarray | None = field(default=None, repr=False)
    hit_landmarks5: np.ndarray | None = field(default=None, repr=False)
    hit_wh: np.ndarray | None = field(default=None, repr=False)


def _move_with_box(
    points: np.ndarray | None, src: np.ndarray, dst: np.ndarray
) -> np.ndarray | None:
    """Carry points drawn relative to box `src` into box `dst` (translation + per-axis scale)."""
    if points is None:
        return None
    s = np.maximum(src[..., 2:] - src[..., :2], 1e-6)
    d = np.maximum(dst[..., 2:] - dst[..., :2], 0.0)
    if points.ndim == 3:  # (k, n, 2) points of k boxes (k, 4)
        s, d, src, dst = s[:, None], d[:, None], src[:, None], dst[:, None]
    return ((points - src[..., :2]) / s * d + dst[..., :2]).astype(np.float32)


def _move_many(
    points: list[np.ndarray | None], src: np.ndarray, dst: np.ndarray
) -> list[np.ndarray | None]:
    """`_move_with_box` for many tracks: points per track (None where a track has none),
    boxes (k, 4); one array operation per group of same-shaped points."""
    out: list[np.ndarray | None] = [None] * len(points)
    have = [i for i, p in enumerate(points) if p is not None]
    for shape in {points[i].shape for i in have}:
        rows = [i for i in have if points[i].shape == shape]
        moved = _move_with_box(np.stack([points[i] for i in rows]), src[rows], dst[rows])
        for k, i in enumerate(rows):
            out[i] = moved[k]
    return out


def _shift_track(tr: Track, d: np.ndarray, d4: np.ndarray) -> None:
    """Move a track with the camera: filter state, boxes and landmarks by `d` (dx, dy);
    `d4` is (dx, dy, dx, dy) as float32 (made once per frame, not per track)."""
    tr.filter.shift(d)
    d2 = d4[:2]
    tr.box = tr.box + d4
    if tr.hit_box is not None:
        tr.hit_box = tr.hit_box + d4
    if tr.landmarks68 is not None:
        tr.landmarks68 = tr.landmarks68 + d2
    if tr.hit_landmarks5 is not None:
        tr.hit_landmarks5 = tr.hit_landmarks5 + d2
    if tr.lm_filter is not None:
        tr.lm_filter.center.pos += d


def stretch_along_motion(
    xyxy: np.ndarray, velocity: np.ndarray, dt: float, lead: float = 1.0, trail: float = 0.5
) -> np.ndarray:
    """Boxes grown by `lead` x one frame's travel (velocity * dt, px) ahead of the motion and
    `trail` x behind it (motion blur), per axis. Still faces are unchanged."""
    b = np.asarray(xyxy, np.float32).reshape(-1, 4).copy()
    step = np.nan_to_num(np.asarray(velocity, np.float64).reshape(-1, 2)) * max(dt, 0.0)
    ahead, behind = np.clip(step, 0, None), np.clip(-step, 0, None)
    b[:, :2] -= (lead * behind + trail * ahead).astype(np.float32)
    b[:, 2:] += (lead * ahead + trail * behind).astype(np.float32)
    return b


def behind_faces(boxes: np.ndarray, front: np.ndarray) -> np.ndarray:
    """(k,) bool: whether each lost face's box (``boxes`` (k, 4), ungrown) lies half or more
    inside one of the detected boxes ``front`` (m, 4) that is not over 4x its area: a person
    behind another. A box deep inside a face ten times its size is a part of that face (its
    old track), not someone behind it. One (k, m) computation for all lost tracks: a crowd
    loses hundreds a frame."""
    b = np.asarray(boxes, np.float32).reshape(-1, 4)
    f = np.asarray(front, np.float32).reshape(-1, 4)
    if not len(b) or not len(f):
        return np.zeros(len(b), bool)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    sizes = (f[:, 2] - f[:, 0]) * (f[:, 3] - f[:, 1])
    near = sizes[None, :] <= 4.0 * np.maximum(area, np.float32(1e-6))[:, None]
    f64 = f.astype(np.float64)
    lo = np.maximum(b[:, None, :2], f64[None, :, :2])
    hi = np.minimum(b[:, None, 2:], f64[None, :, 2:])
    wh = np.clip(hi - lo, 0, None)
    share = wh[..., 0] * wh[..., 1] / np.maximum(area.astype(np.float64), 1e-6)[:, None]
    return (np.where(near, share, 0.0) >= 0.5).any(axis=1)


class FaceTracker:
    """Tracks faces across frames; see the module docstring for what `update` returns.

    thresh / low_thresh: score cuts of the two association stages.
    match_iou: least IoU between a track's predicted box and a detection to match them.
    coast_s: seconds a track is still output at its predicted box after its last detection.
    min_hits: hits before a track may coast (its detections are output from the first frame).
    coast_grow: relative growth of a coasting box per second (uncertainty; never shrinks).
    stretch: (lead, trail) x one frame's travel added ahead of / behind a moving box.
    union_filtered: cover a detection's union with its track's filtered box (faces: a box
    that lands half off the face for one frame); off for objects whose detector box is tight
    (plates), where the lagging filtered box would trail behind an approaching plate.
    footprint: a weak detection that continues no track still starts one when it overlaps
    (IoU >= match_iou) a box where some face was detected in the last ``coast_s`` seconds
    (faces half hidden behind a pole; off for objects).
    behind_coast_s: a track that coasts while its box lies half or more inside a face detected
    on the same frame (a person passing behind another) is output for this long after its
    last detection instead of ``coast_s`` (None: ``coast_s``): the face comes out from behind
    the other one, partly visible, before the detector finds it again.
    reid / reid_window_s / reid_max_dist: optional re-identification. When `reid` is given and
    `update` gets the image, a new face whose embedding is within `reid_max_dist` of a track
    that ended less than `reid_window_s` ago gets that track back (id and cache).
    box_filter: box -> filter with `BoxFilter`'s interface (predict/update/shift/state/velocity).
    """

    def __init__(
        self,
        *,
        thresh: float = 0.5,
        low_thresh: float = 0.1,
        match_iou: float = 0.3,
        coast_s: float = 0.5,
        min_hits: int = 1,
        smooth_landmarks: bool = True,
        coast_grow: float = 0.5,
        stretch: tuple[float, float] = (1.0, 0.5),
        union_filtered: bool = True,
        footprint: bool = False,
        behind_coast_s: float | None = None,
        reid: ReidFn | None = None,
        reid_window_s: float = 10.0,
        reid_max_dist: float = 0.6,
        box_filter: Callable[[np.ndarray], BoxFilter] = BoxFilter,
    ) -> None:
        if not 0.0 <= low_thresh <= thresh <= 1.0:
            raise InputError(f"need 0 <= low_thresh <= thresh <= 1, got {low_thresh}, {thresh}")
        if coast_s < 0 or min_hits < 1 or not 0.0 < match_iou <= 1.0:
            raise InputError("need coast_s >= 0, min_hits >= 1 and 0 < match_iou <= 1")
        self.thresh, self.low_thresh, self.match_iou = thresh, low_thresh, match_iou
        self.coast_s, self.min_hits, self.coast_grow = coast_s, min_hits, coast_grow
        self.smooth_landmarks = smooth_landmarks
        self.stretch, self.union_filtered = (float(stretch[0]), float(stretch[1])), union_filtered
        self.reid, self.reid_window_s, self.reid_max_dist = reid, reid_window_s, reid_max_dist
        self.footprint = footprint
        self.behind_coast_s = coast_s if behind_coast_s is None else max(coast_s, behind_coast_s)
        self.box_filter = box_filter  # xyxy box -> a filter started there (norfair-style)
        # Recent hits: when (t) and where (detected box) some face was, as arrays.
        self._fp_t = np.zeros(0)
        self._fp_box = np.zeros((0, 4), np.float32)
        self._tracks: list[Track] = []
        self._lost: list[Track] = []  # ended, waiting for re-identification
        self._ended: list[Track] = []
        self._ids = itertools.count(1)
        self._t: float | None = None
        self._dt = 0.0  # time since the previous frame: how far a moving face may have gone

    @property
    def tracks(self) -> list[Track]:
        """Live tracks (detected this frame or coasting)."""
        return list(self._tracks)

    def get(self, track_id: int) -> Track | None:
        for tr in self._tracks:
            if tr.id == track_id:
                return tr
        return None

    def pop_ended(self) -> list[Track]:
        """Tracks that ended since the last call (free their caches); each is reported once.

        With `reid`, a track counts as ended only when its re-identification window is over.
        """
        ended, self._ended = self._ended, []
        return ended

    def update(
        self,
        dets: Detections,
        t: float,
        image: np.ndarray | None = None,
        camera_shift: tuple[float, float] | None = None,
        looked: bool = True,
    ) -> Detections:
        """Advance to time `t` (seconds) with this frame's detections; returns what to anonymize.

        `looked`: whether the detector ran on this frame (False: a frame between detections,
        ``dets`` empty). A track ends only once a frame that was looked at has missed it, so
        frames dropped under load or skipped by a cadence never end a track by themselves.

        `camera_shift` (dx, dy px): how far the whole scene moved since the previous frame
        (`streamanon.motion.CameraMotion`); every track is moved by it before prediction.
        """
        t = float(t)
        if not np.isfinite(t) or (self._t is not None and t < self._t):
            raise InputError(
                f"frame time must be finite and non-decreasing, got {t} after {self._t}"
            )
        if not (np.isfinite(dets.xyxy).all() and np.isfinite(dets.score).all()):
            raise InputError("detections contain NaN or infinite boxes/scores")
        self._dt = 0.0 if self._t is None else t - self._t
        self._t = t
        if camera_shift is not None and any(camera_shift):
            d = np.asarray(camera_shift, np.float64)
            d4 = np.tile(np.asarray(camera_shift, np.float32), 2)
            for tr in self._tracks:
                _shift_track(tr, d, d4)
            self._fp_box = self._fp_box + d4
        for tr in self._tracks:
            tr.filter.predict(t - tr.state_t)
            tr.state_t = t
        pred = z_to_xyxy(np.array([tr.filter.state for tr in self._tracks]).reshape(-1, 4))

        idx = np.arange(len(dets))
        high = idx[dets.score >= self.thresh]
        low = idx[(dets.score >= self.low_thresh) & (dets.score < self.thresh)]
        # Stage 1: confident detections against all tracks.
        pairs1, free_tr, free_hi = match_iou(iou_matrix(pred, dets.xyxy[high]), self.match_iou)
        matches = [(int(a), int(high[b])) for a, b in pairs1]
        # Stage 2: weak detections against the tracks still free (ByteTrack).
        pairs2, _, _ = match_iou(iou_matrix(pred[free_tr], dets.xyxy[low]), self.match_iou)
        matches += [(int(free_tr[a]), int(low[b])) for a, b in pairs2]

        row_track: dict[int, Track] = {}
        for ti, di in matches:
            tr = self._tracks[ti]
            self._hit(tr, dets, di, t)
            row_track[di] = tr
        new_rows = [int(high[b]) for b in free_hi]
        if self.footprint:
            new_rows += self._weak_in_footprint(
                dets, low, {di for _, di in matches} | set(new_rows), t
            )
        for di, tr in zip(new_rows, self._start_tracks(dets, new_rows, t, image), strict=True):
            row_track[di] = tr

        # Tracks without a detection: coast while young enough, else end.
        matched_ids = {id(tr) for tr in row_track.values()}
        front = dets.xyxy[list(row_track)].reshape(-1, 4)
        if len(front) and self.behind_coast_s > self.coast_s:
            lost = [tr for tr in self._tracks if id(tr) not in matched_ids and not tr.behind]
            hidden = behind_faces(
                np.array([tr.hit_box if tr.hit_box is not None else tr.box for tr in lost]), front
            )
            for tr, h in zip(lost, hidden.tolist(), strict=True):
                tr.behind = h
        live: list[Track] = []
        coasting: list[Track] = []
        for tr in self._tracks:
            if id(tr) in matched_ids:
                tr.behind = False
                live.append(tr)
                continue
            limit = self.behind_coast_s if tr.behind else self.coast_s
            tr.missed += int(looked)
            since = t - tr.last_hit_t
            # Past its time, a track still coasts until the first frame that was looked at
            # misses it (within LOOK_GRACE_S): after a gap of dropped frames (a busy live
            # run) the face is still where the track predicts, often scoring low as it turns
            # or goes behind something, and only a look can say it is gone.
            unseen = tr.missed <= 1 and since <= LOOK_GRACE_S
            if tr.hits >= self.min_hits and (since <= limit + 1e-9 or unseen):
                coasting.append(tr)
                live.append(tr)
            else:
                self._end(tr)
        self._coast(coasting, t)
        known = {id(tr) for tr in live}
        self._tracks = live + [tr for tr in row_track.values() if id(tr) not in known]
        self._expire_lost(t)
        if self.footprint:
            keep = t - self._fp_t <= self.coast_s
            rows = list(row_track)
            self._fp_t = np.concatenate([self._fp_t[keep], np.full(len(rows), t)])
            self._fp_box = np.concatenate(
                [self._fp_box[keep], dets.xyxy[rows].reshape(-1, 4).astype(np.float32)]
            )
        return self._output(dets, row_track)

    def _weak_in_footprint(
        self, dets: Detections, low: np.ndarray, taken: set[int], t: float
    ) -> list[int]:
        """Weak detections on no track that overlap where a face was detected lately and are
        not a second box of a face already output this frame."""
        recent = self._fp_box[t - self._fp_t <= self.coast_s + 1e-9]
        free = np.array([int(di) for di in low if int(di) not in taken], np.int64)
        if not len(recent) or not len(free):
            return []
        near = iou_matrix(dets.xyxy[free], recent).max(axis=1) >= self.match_iou
        cand = free[near]
        if not len(cand):
            return []
        # In order, a candidate is kept unless it is a second box of a face already output
        # (taken) or of a candidate kept before it.
        taken_rows = np.array(sorted(taken), np.int64)
        blocked = np.zeros(len(cand), bool)
        if len(taken_rows):
            blocked = (
                iou_matrix(dets.xyxy[cand], dets.xyxy[taken_rows]).max(axis=1) >= self.match_iou
            )
        same = iou_matrix(dets.xyxy[cand], dets.xyxy[cand]) >= self.match_iou
        out = []
        for k in range(len(cand)):
            if blocked[k]:
                continue
            out.append(int(cand[k]))
            blocked[k + 1 :] |= same[k, k + 1 :]
        return out

    # -- life cycle -------------------------------------------------------------------------

    def _hit(self, tr: Track, dets: Detections, di: int, t: float, fresh: bool = False) -> None:
        box = dets.xyxy[di]
        if not fresh:  # a fresh filter already sits on this box
            tr.filter.update(box)
        tr.box = tr.filter.box.astype(np.float32)
        tr.hit_box = tr.box.copy()
        tr.hit_wh = tr.box[2:] - tr.box[:2]
        tr.score = float(dets.score[di])
        tr.hits += 1
        tr.last_hit_t = t
        tr.missed = 0
        tr.coasting = False
        tr.hit_landmarks5 = None if dets.landmarks5 is None else dets.landmarks5[di].copy()
        if dets.landmarks68 is not None:
            self._smooth(tr, dets.landmarks68[di], face_size(xyxy_to_z(box)), t)

    def _smooth(self, tr: Track, points: np.ndarray, size: float, t: float) -> None:
        if not self.smooth_landmarks:
            tr.landmarks68 = points.astype(np.float32).copy()
            return
        f = tr.lm_filter
        if f is not None and np.linalg.norm(points - f.points, axis=1).mean() > _LM_RESET * size:
            f = None  # a jump (new face on the track, bad fit): restart rather than drag
        if f is None:
            tr.lm_filter = LandmarkSmoother(points, t)
            tr.landmarks68 = points.astype(np.float32).copy()
        else:
            tr.landmarks68 = f.update(points, t).astype(np.float32)

    def _new_track(self, dets: Detections, di: int, t: float) -> Track:
        box = dets.xyxy[di].astype(np.float64)
        tr = Track(
            id=next(self._ids),
            box=box.astype(np.float32),
            score=0.0,
            hits=0,
            first_t=t,
            last_hit_t=t,
        )
        tr.filter, tr.state_t = self.box_filter(box), t
        self._hit(tr, dets, di, t, fresh=True)
        return tr

    def _start_tracks(
        self, dets: Detections, rows: list[int], t: float, image: np.ndarray | None
    ) -> list[Track]:
        if not rows:
            return []
        emb = None
        if self.reid is not None and image is not None:
            emb = np.asarray(self.reid(image, dets[np.asarray(rows)]), dtype=np.float64).reshape(
                len(rows), -1
            )
        revived: dict[int, Track] = {}
        if emb is not None and self._lost:
            lost_emb = np.stack([tr.embedding for tr in self._lost])
            dist = np.linalg.norm(emb[:, None] - lost_emb[None], axis=2)
            # Same optimal assignment as IoU matching, on "closeness" = max_dist - distance.
            pairs, _, _ = match_iou(np.clip(self.reid_max_dist - dist, 0, None), 1e-9)
            for r, li in pairs:
                revived[int(r)] = self._lost[int(li)]
            self._lost = [tr for tr in self._lost if all(tr is not x for x in revived.values())]
        out = []
        for k, di in enumerate(rows):
            if k in revived:
                tr = revived[k]
                tr.filter, tr.state_t, tr.lm_filter = self.box_filter(dets.xyxy[di]), t, None
                self._hit(tr, dets, di, t, fresh=True)
            else:
                tr = self._new_track(dets, di, t)
                if emb is not None:
                    tr.embedding = emb[k]
            out.append(tr)
        return out

    def _coast(self, tracks: list[Track], t: float) -> None:
        """Move the tracks that lost their detection to their predicted boxes, all at once."""
        if not tracks:
            return
        z = np.array([tr.filter.state for tr in tracks], np.float64).reshape(-1, 4)
        predicted = z_to_xyxy(z)
        # Never smaller than at the last hit, and growing with the time since it.
        since = t - np.array([tr.last_hit_t for tr in tracks], np.float64)
        hit_wh = np.array([tr.hit_wh for tr in tracks]).reshape(-1, 2)
        z[:, 2:4] = np.maximum(z[:, 2:4], hit_wh) * (1.0 + self.coast_grow * since)[:, None]
        boxes = z_to_xyxy(z).astype(np.float32)
        hit_boxes = np.array([tr.hit_box for tr in tracks], np.float32).reshape(-1, 4)
        # Landmarks ride along with the (ungrown) predicted box.
        lm68 = _move_many([tr.landmarks68 for tr in tracks], hit_boxes, predicted)
        lm5 = _move_many([tr.hit_landmarks5 for tr in tracks], hit_boxes, predicted)
        new_hit = predicted.astype(np.float32)
        for i, tr in enumerate(tracks):
            tr.box, tr.hit_box, tr.coasting = boxes[i], new_hit[i], True
            tr.landmarks68, tr.hit_landmarks5 = lm68[i], lm5[i]
            tr.lm_filter = None  # restart smoothing when the face is seen again

    def _end(self, tr: Track) -> None:
        tr.coasting = False
        if self.reid is not None and tr.embedding is not None:
            self._lost.append(tr)
        else:
            self._ended.append(tr)

    def _expire_lost(self, t: float) -> None:
        keep = []
        for tr in self._lost:
            (keep if t - tr.last_hit_t <= self.reid_window_s else self._ended).append(tr)
        self._lost = keep

    # -- output -----------------------------------------------------------------------------

    def _output(self, dets: Detections, row_track: dict[int, Track]) -> Detections:
        rows = sorted(row_track)
        coasting = [tr for tr in self._tracks if tr.coasting]
        tracks = [row_track[r] for r in rows] + coasting
        if not tracks:  # still typed as tracker output: empty track_id / coasting columns
            return Detections(
                np.zeros((0, 4), np.float32),
                np.zeros(0, np.float32),
                track_id=np.zeros(0, np.int64),
                coasting=np.zeros(0, bool),
            )
        detected = dets.xyxy[rows].reshape(-1, 4)
        if rows and self.union_filtered:
            # Cover the union of the detection and the track's filtered box: a detector box
            # that lands half off the face for one frame still leaves the face covered.
            filtered = np.array([row_track[r].box for r in rows], np.float32).reshape(-1, 4)
            ok = np.isfinite(filtered).all(1)
            detected = detected.copy()
            detected[ok, :2] = np.minimum(detected[ok, :2], filtered[ok, :2])
            detected[ok, 2:] = np.maximum(detected[ok, 2:], filtered[ok, 2:])
        xyxy = np.concatenate([detected, np.array([tr.box for tr in coasting]).reshape(-1, 4)])
        # A moving head: cover where it is going and the smear it leaves (one frame's travel).
        vel = np.array([tr.filter.velocity if tr.hits > 1 else (0.0, 0.0) for tr in tracks])
        xyxy = stretch_along_motion(xyxy, vel.reshape(-1, 2), self._dt, *self.stretch)
        score = np.concatenate(
            [dets.score[rows], np.array([tr.score for tr in coasting], np.float32)]
        )
        lm68 = [row_track[r].landmarks68 if dets.landmarks68 is not None else None for r in rows]
        lm5 = [dets.landmarks5[r] if dets.landmarks5 is not None else None for r in rows]
        lm68 += [tr.landmarks68 for tr in coasting]
        lm5 += [tr.hit_landmarks5 for tr in coasting]
        return Detections(
            xyxy,
            score,
            # A column is all-or-nothing: present only when every face has it.
            landmarks5=None if any(p is None for p in lm5) else np.stack(lm5),
            landmarks68=None if any(p is None for p in lm68) else np.stack(lm68),
            track_id=np.array([tr.id for tr in tracks], np.int64),
            coasting=np.array([False] * len(rows) + [True] * len(coasting)),
        )
