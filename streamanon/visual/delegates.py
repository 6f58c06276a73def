"""VAA (eq. 7) and GSA (eq. 8): a track's appearance and geometry delegates, and Ŝ_x per frame.

Per track, once (`choose_delegates`):

- **VAA.** M_q = the k bank faces nearest to the face's embedding; u_a prefers near neighbours
  (eq. 7); the IPD draw gives the appearance delegate, kept as Z_a (its face foreground).
- **GSA.** M_q = the k bank faces nearest in embedding space among those with the *same pose*:
  |Δyaw| <= 12° and |Δpitch| <= 12° (see `YAW_TOLERANCE` for why). The distance d(S_x, X_i) is
  the Procrustes residual over the points GSA keeps from the delegate (brows, nose, eyes, outer
  lips); jaw and inner mouth are excluded because they are restored from S_x anyway, so they
  would only reward irrelevant differences (an open-mouthed delegate). u_g prefers *distinct*
  geometry (eq. 8); the IPD draw gives S̄ (bank landmarks, normalised to the canonical crop).

Per frame (`fit_geometry`), from the track's current (smoothed) crop landmarks S_x:

1. S̄ is put into the person's current pose and scale by a similarity fit on the stable points.
2. Brows, nose and eyes move with the person: the change of those points since the track was
   born (S_x now minus S_x at birth, both in the current frame) is added to the delegate's, so
   blinks, brow raises and small head turns follow the person while the delegate's proportions
   (eye spacing, nose length, brow shape) replace the person's.
3. The jaw line (0-16) and the inner lips (60-67, the mouth opening) are the person's.
4. The outer lips are the person's inner lips plus the delegate's lip thickness vectors
   (`lip_thickness`), rotated and scaled by the fit: the delegate's lip thickness is kept.

The result Ŝ_x differs from S̄ (jaw, mouth) and from S_x (brows, eyes, nose, lips), which the
paper notes lowers the chance of identity intrusion.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from streamanon.visual.align import (
    BROWS,
    EYES,
    JAW,
    LIPS_INNER,
    LIPS_OUTER,
    NOSE,
    STABLE,
    check_landmarks,
    similarity_fit,
    transform_points,
)
from streamanon.visual.bank import DelegateBank
from streamanon.visual.ipd import (
    DEFAULT_EPSILON,
    DEFAULT_NEIGHBOURS,
    SamplingError,
    appearance_utility,
    exponential_mechanism_probs,
    geometry_utility,
    knn,
    track_rng,
)
from streamanon.visual.pose import PoseError, face_pose

# Pose tolerance for "the same pose", measured on the default bank (4,000 random pairs, shape
# distance over the kept points in units of the inter-ocular distance, other angle < 6°): the
# median distance is nearly flat while |Δyaw| < 12° (0.067, 0.069, 0.071 for 0-4°, 4-8°, 8-12°:
# pose adds little over the shape difference between two people) and grows beyond (0.077 at
# 12-16°, 0.083 at 16-24°, 0.100 at 24-40°); pitch behaves alike (0.067, 0.071, 0.072, then
# 0.077, 0.089). Within 12° a delegate's geometry is therefore pose-compatible; the median face
# has ~246 bank faces inside that window (5th percentile 31), enough for k = 10.
YAW_TOLERANCE = 12.0
PITCH_TOLERANCE = 12.0
# Points GSA keeps from the delegate (the rest is restored from S_x).
KEPT = np.concatenate([BROWS, NOSE, EYES, LIPS_OUTER])
# Points that follow the person's expression/pose change since the track was born.
FOLLOW = np.concatenate([BROWS, NOSE, EYES])
# Each outer lip point's anchor on the inner lip contour: (outer index, inner a, inner b), the
# anchor being the midpoint of a and b. Corners pair with corners, the cupid's bow peaks (50,
# 52) with the inner points below them, the midline (51, 57) with the inner midline (62, 66).
_LIP_PAIRS = np.array(
    [
        [48, 60, 60], [49, 60, 61], [50, 61, 61], [51, 62, 62], [52, 63, 63], [53, 63, 64],
        [54, 64, 64], [55, 64, 65], [56, 65, 65], [57, 66, 66], [58, 67, 67], [59, 67, 60],
    ]
)  # fmt: skip


def lip_anchors(landmarks68: np.ndarray) -> np.ndarray:
    """(12, 2) points on the inner lip contour that the outer lip points 48-59 rest on."""
    pts = np.asarray(landmarks68, dtype=np.float64)
    return 0.5 * (pts[_LIP_PAIRS[:, 1]] + pts[_LIP_PAIRS[:, 2]])


def lip_thickness(landmarks68: np.ndarray) -> np.ndarray:
    """(12, 2) vectors from each inner-lip anchor to its outer lip point (48-59): lip thickness."""
    pts = np.asarray(landmarks68, dtype=np.float64)
    return pts[_LIP_PAIRS[:, 0]] - lip_anchors(pts)


def shape_distances(
    query: np.ndarray, candidates: np.ndarray, points: np.ndarray = KEPT
) -> np.ndarray:
    """RMS residual after a similarity fit of each candidate onto the query, over ``points``.

    query (68, 2), candidates (n, 68, 2); in units of the query's coordinates. Vectorised with
    complex numbers: for centred a (candidate) and b (query), the best similarity is
    z = <a, b> / <a, a> and the squared residual is |b|^2 - |<a, b>|^2 / |a|^2.
    """
    q = np.asarray(query, dtype=np.float64)[points]
    c = np.asarray(candidates, dtype=np.float64)[:, points]
    b = q[:, 0] + 1j * q[:, 1]
    a = c[..., 0] + 1j * c[..., 1]
    b = b - b.mean()
    a = a - a.mean(axis=1, keepdims=True)
    aa = (np.abs(a) ** 2).sum(1)
    if (aa < 1e-12).any():
        raise SamplingError("degenerate candidate landmarks (coincident points)")
    ab = (np.conj(a) * b).sum(1)
    resid = np.maximum((np.abs(b) ** 2).sum() - np.abs(ab) ** 2 / aa, 0.0)
    return np.sqrt(resid / len(points))


def pose_pool(
    bank_pose: np.ndarray, pose: np.ndarray, k: int, yaw_tol: float, pitch_tol: float
) -> tuple[np.ndarray, bool]:
    """Bank indices with the same pose as ``pose`` (yaw, pitch, roll); roll is aligned away.

    If fewer than k faces are within tolerance, the k faces nearest in pose (in units of the
    tolerances) are returned instead and the flag is False: the caller records it.
    """
    diff = np.abs(np.asarray(bank_pose, np.float64)[:, :2] - np.asarray(pose, np.float64)[:2])
    scaled = np.max(diff / np.array([yaw_tol, pitch_tol]), axis=1)
    inside = np.flatnonzero(scaled <= 1.0)
    if len(inside) >= min(k, len(scaled)):
        return inside, True
    return np.argsort(scaled, kind="stable")[:k], False


@dataclass(frozen=True)
class Delegates:
    """A track's visual delegates, chosen once when the track is born.

    appearance_index, geometry_index: rows of the bank.
    z_a: (3, S, S) RGB [-1, 1] appearance input (the appearance delegate's foreground).
    s_bar: (68, 2) the geometry delegate's landmarks in the canonical crop (normalised).
    reference: (68, 2) the person's crop landmarks at track birth (for expression transfer;
        dropped with the track).
    *_candidates / *_probs: M_q and the eq. 6 probabilities, for explanation and tests.
    pose_matched: False when fewer than k bank faces were within the pose tolerance.
    """

    appearance_index: int
    geometry_index: int
    z_a: np.ndarray
    s_bar: np.ndarray
    reference: np.ndarray
    appearance_candidates: np.ndarray
    appearance_probs: np.ndarray
    geometry_candidates: np.ndarray
    geometry_probs: np.ndarray
    pose_matched: bool


def choose_delegates(
    bank: DelegateBank,
    embedding: np.ndarray,
    landmarks68_crop: np.ndarray,
    pose: np.ndarray,
    rng: np.random.Generator,
    epsilon: float = DEFAULT_EPSILON,
    k: int = DEFAULT_NEIGHBOURS,
    *,
    yaw_tolerance: float = YAW_TOLERANCE,
    pitch_tolerance: float = PITCH_TOLERANCE,
    allowed: np.ndarray | None = None,
) -> Delegates:
    """VAA and GSA for one face: draw the appearance then the geometry delegate from ``rng``.

    ``embedding``: dlib's 128-D descriptor of the face; ``landmarks68_crop``: its landmarks in
    the canonical crop; ``pose``: ``face_pose(frame landmarks)`` (the bank's pose convention).
    ``allowed``: (n,) bool over the bank, the faces fit to be appearance delegates for this
    person (`visual.attributes.compatible`); M_q is then the k nearest among them.
    """
    s_x = check_landmarks(landmarks68_crop, "landmarks68_crop")
    pose = np.asarray(pose, dtype=np.float64).reshape(-1)
    if pose.shape != (3,) or not np.isfinite(pose).all():
        raise SamplingError(f"pose must be finite (yaw, pitch, roll), got {pose}")

    if allowed is not None and np.count_nonzero(allowed) > 0:
        pool_a = np.flatnonzero(allowed)
        local, a_dist = knn(bank.embeddings[pool_a], embedding, k)
        a_idx = pool_a[local]
    else:
        a_idx, a_dist = knn(bank.embeddings, embedding, k)
    a_probs = exponential_mechanism_probs(appearance_utility(a_dist), epsilon)
    a_pick = int(a_idx[rng.choice(len(a_probs), p=a_probs)])

    pool, matched = pose_pool(bank.pose, pose, k, yaw_tolerance, pitch_tolerance)
    g_local, _ = knn(bank.embeddings[pool], embedding, k)
    g_idx = pool[g_local]
    g_dist = shape_distances(s_x, bank.landmarks[g_idx])
    g_probs = exponential_mechanism_probs(geometry_utility(g_dist), epsilon)
    g_pick = int(g_idx[rng.choice(len(g_probs), p=g_probs)])

    return Delegates(
        appearance_index=a_pick,
        geometry_index=g_pick,
        z_a=bank.appearance(a_pick),
        s_bar=bank.landmarks[g_pick].astype(np.float64),
        reference=s_x.copy(),
        appearance_candidates=a_idx,
        appearance_probs=a_probs,
        geometry_candidates=g_idx,
        geometry_probs=g_probs,
        pose_matched=matched,
    )


def fit_geometry(
    delegates: Delegates, landmarks68_crop: np.ndarray, yaw: float | None = None
) -> np.ndarray:
    """Ŝ_x (68, 2) float64 for this frame, in the coordinates of ``landmarks68_crop`` (S_x now).

    ``yaw``: the person's yaw now (`pose.face_pose`), when the caller has it already.
    """
    cur = check_landmarks(landmarks68_crop, "landmarks68_crop")
    m = similarity_fit(delegates.s_bar[STABLE], cur[STABLE])
    out = transform_points(delegates.s_bar, m)
    own = out.copy()
    # The person's change since birth, expressed in the current frame.
    ref_now = transform_points(
        delegates.reference, similarity_fit(delegates.reference[STABLE], cur[STABLE])
    )
    out[FOLLOW] += (cur - ref_now)[FOLLOW]
    out[JAW] = cur[JAW]
    out[LIPS_INNER] = cur[LIPS_INNER]
    out[LIPS_OUTER] = lip_anchors(out) + lip_thickness(delegates.s_bar) @ m[:, :2].T
    cap_eye_opening(out, own)
    return keep_yaw(out, cur, yaw)


# The six contour points of each eye (0 and 3 the corners, 1-2 the upper lid, 5-4 the lower).
_LIDS = (slice(36, 42), slice(42, 48))


def _eye_frame(eye: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre of the corner line, its unit normal, the eye's width) of six eye points."""
    c0, c3 = eye[0], eye[3]
    along = c3 - c0
    width = float(np.hypot(*along))
    normal = np.array([-along[1], along[0]]) / max(width, 1e-6)
    return 0.5 * (c0 + c3), normal, width


# A rendered eye opens at most this many times the delegate's own opening (lid height over
# eye width). Its lids follow the person's blinks as a change since the track was born, and a
# track born on closed eyes got, when they opened, the delegate's open eye plus the whole
# opening again: lids twice as far apart, two dark goggles (d3, a tuning clip). Copying the
# person's opening ratio instead (issue 21, fourth session) fixed that but carried the person's
# eye shape into the render: FaceNet's distance to the person fell on three of four tuning
# clips (d3 0.989 -> 0.974, ASL 1.180 -> 1.168), so only a cap is applied.
EYE_OPEN_CAP = 1.2


def cap_eye_opening(s_hat: np.ndarray, own: np.ndarray) -> None:
    """Close each eye of ``s_hat`` (in place) about its corner line to at most
    ``EYE_OPEN_CAP`` times the opening of ``own`` (the delegate's S̄ in the same frame), and
    lids that crossed to closed; corners and every other landmark stay."""
    for eye in _LIDS:
        mid, normal, width = _eye_frame(s_hat[eye])
        o_mid, o_normal, o_width = _eye_frame(own[eye])
        o_across = (own[eye][[1, 2, 4, 5]] - o_mid) @ o_normal
        # Which side of the corner line is down (the same for both: corners 0 -> 3 in order).
        sign = 1.0 if o_across[2:].mean() >= o_across[:2].mean() else -1.0
        limit = EYE_OPEN_CAP * float(np.abs(o_across).mean()) * width / max(o_width, 1e-6)
        lids = s_hat[eye][[1, 2, 4, 5]] - mid
        across = sign * (lids @ normal)
        up, lo = across[[0, 1]], across[[3, 2]]  # pairs 1-5 and 2-4, facing each other
        centre = 0.5 * (up + lo)
        crossed = lo < up
        up, lo = np.where(crossed, centre, up), np.where(crossed, centre, lo)
        have = float(np.abs(np.concatenate([up, lo])).mean())
        if have > limit > 0:
            up, lo = up * (limit / have), lo * (limit / have)
        want = np.empty(4)
        want[[0, 1]], want[[3, 2]] = up, lo
        block = s_hat[eye].copy()
        block[[1, 2, 4, 5]] = mid + lids + np.outer(sign * want - lids @ normal, normal)
        s_hat[eye] = block


# A yaw correction moves the nose sideways by at most this share of the inter-ocular distance:
# beyond it the face would look lopsided, and the person's landmarks are then probably wrong.
MAX_YAW_SHIFT = 0.2
# How much of the sideways shift each nose point takes (27-30 bridge to tip, 31-35 base): a
# head turn moves the tip most, the bridge between the eyes least.
_NOSE_TURN = np.array([0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])


def keep_yaw(s_hat: np.ndarray, s_x: np.ndarray, target: float | None = None) -> np.ndarray:
    """``s_hat`` with its nose moved sideways so that its head-pose yaw is that of ``s_x``
    (both in the same crop coordinates; ``target``: that yaw, when the caller has it).

    The geometry delegate is drawn within 12° of the person's pose, and its nose sits where
    that face had it: the rendered head then looks several degrees off the person's direction
    (what the landmark pose of the output measures). The jaw, eyes and mouth corners stay;
    the nose tip against them is what turns a face in the picture. Yaw is smooth and close to
    linear in that shift over this range: one secant step from a probe finds it (to ~0.5°).
    """
    out = np.asarray(s_hat, np.float64)
    io = max(float(np.hypot(*(out[45] - out[36]))), 1.0)
    limit = MAX_YAW_SHIFT * io

    def moved(t: float) -> np.ndarray:
        p = out.copy()
        p[27:36, 0] += _NOSE_TURN * t
        return p

    try:
        want = float(face_pose(s_x)[0]) if target is None else float(target)
        y0 = float(face_pose(out)[0]) - want
        probe = 0.05 * io
        slope = (float(face_pose(moved(probe))[0]) - want - y0) / probe
    except PoseError:
        return out.copy()
    if not np.isfinite(slope) or abs(slope) < 1e-6:
        return out.copy()
    return moved(float(np.clip(-y0 / slope, -limit, limit)))


class DelegateCache:
    """Per-track delegates: chosen on a track's first face, kept until the track is dropped.

    The draw for a track uses ``track_rng(seed, track_id, "delegates")``, so the same seed and
    track id give the same delegates in every run; different tracks draw independently.
    """

    def __init__(
        self,
        bank: DelegateBank,
        seed: int = 0,
        epsilon: float = DEFAULT_EPSILON,
        k: int = DEFAULT_NEIGHBOURS,
    ) -> None:
        self.bank, self.seed, self.epsilon, self.k = bank, seed, epsilon, k
        self._tracks: dict[int, Delegates] = {}

    def __contains__(self, track_id: int) -> bool:
        return track_id in self._tracks

    def __len__(self) -> int:
        return len(self._tracks)

    def get(self, track_id: int) -> Delegates | None:
        """The track's delegates, or None while the track has none."""
        return self._tracks.get(track_id)

    def create(
        self,
        track_id: int,
        embedding: np.ndarray,
        landmarks68_crop: np.ndarray,
        pose: np.ndarray,
    ) -> Delegates:
        """Choose the delegates of a new track (an existing track keeps its own)."""
        found = self._tracks.get(track_id)
        if found is None:
            rng = track_rng(self.seed, track_id, "delegates")
            found = choose_delegates(
                self.bank, embedding, landmarks68_crop, pose, rng, self.epsilon, self.k
            )
            self._tracks[track_id] = found
        return found

    def drop(self, track_id: int) -> None:
        """Forget a finished track (its reference landmarks go with it)."""
        self._tracks.pop(track_id, None)
