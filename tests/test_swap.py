"""The `swap` method (IPD delegate faces re-shaped onto each person's geometry) on real footage.

Checked with `streamanon eval`'s own metrics: the anonymized person is not re-identified,
the face is still a face (detected, same pose and mouth), one stable fake identity per track.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.anonymizer import Anonymizer
from streamanon.types import Detections, Frame
from tests.conftest import needs_module, needs_shared

needs_module("torch")  # a required test dependency: fails in CI when absent, never skips there


@pytest.fixture(scope="module")
def swapped_clip(tmp_path_factory) -> tuple[Path, Path, dict]:
    from streamanon.run import anonymize_file

    src = needs_shared("videos", "intel_asl_gestures_again.mkv")
    dst = tmp_path_factory.mktemp("swap") / "asl.mp4"
    report = anonymize_file(src, dst, method="swap")
    return src, dst, report


@pytest.mark.slow
def test_swap_video_privacy_and_utility(swapped_clip) -> None:
    from streamanon.eval.evaluate import evaluate
    from streamanon.eval.pairs import make_pairs
    from streamanon.eval.recognizers import DlibRecognizer

    src, dst, report = swapped_clip
    r = evaluate(make_pairs(src, dst, stride=2), [DlibRecognizer()])
    print({"privacy": r["privacy"]["dlib"]["reid"], "utility": r["utility"], "video": r["video"]})
    assert r["faces"] >= 30
    assert r["privacy"]["dlib"]["reid"][0.6] <= 0.05
    u = r["utility"]
    assert u["detection_rate"] >= 0.95
    # Issue 14's targets: yaw error <= 5 deg (3.6 measured: the nose is turned to the person's
    # yaw, `delegates.keep_yaw`), flicker inside the face <= 1.3x the original's (1.09).
    assert u["yaw"]["mae"] <= 5.0
    assert u["mouth"]["mae"] <= 0.1
    assert u["ssim_background"] >= 0.95
    (video,) = r["video"].values()
    assert video["identity_consistency"]["dlib"] >= 0.95  # issue 14: identity kept >= 95 %
    assert video["flicker_face"] <= 1.3
    assert video["leaked_frames"]["dlib"]["rate"] <= 0.05  # issue 7: ReID in <= 5 % of frames


@pytest.mark.slow
def test_swap_one_delegate_per_track(swapped_clip) -> None:
    _, _, report = swapped_clip
    tracks = report.extra["swap"]["tracks"]
    assert report.tracks == len(tracks) >= 1
    synthesized = sum(t["synthesized_frames"] for t in tracks.values())
    assert synthesized >= 0.9 * report.frames  # one person, facing the camera throughout
    assert all(t["appearance_delegate"] is not None for t in tracks.values())


def _group_photo() -> np.ndarray:
    return cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg")))


def test_swap_is_reproducible_per_seed() -> None:
    img = _group_photo()
    a = Anonymizer(method="swap", seed=3)(img)
    b = Anonymizer(method="swap", seed=3)(img)
    c = Anonymizer(method="swap", seed=4)(img)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_swap_failure_covers_the_face(monkeypatch) -> None:
    """If synthesis breaks, the face is covered, never shown (fail closed)."""
    img = _group_photo()
    anon = Anonymizer(method="swap")

    def broken(*args, **kwargs):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr(anon.face_anonymizer, "render", broken)
    frame = anon.track(Frame(img.copy(), 0))
    assert len(frame.faces) == 2
    out = anon.apply(frame).image
    assert anon.counters.fallbacks == 2
    for x1, y1, x2, y2 in frame.faces.xyxy.astype(int):
        assert np.abs(out[y1:y2, x1:x2].astype(int) - img[y1:y2, x1:x2]).mean() > 20


def test_small_and_profile_faces_fall_back() -> None:
    img = _group_photo()
    anon = Anonymizer(method="swap")
    faces = anon.track(Frame(img.copy(), 0)).faces
    tiny = Detections(
        faces.xyxy[:1] * 0.1, faces.score[:1], landmarks68=faces.landmarks68[:1] * 0.1,
        track_id=np.array([99]), coasting=np.array([False]),
    )  # fmt: skip
    out = img.copy()
    anon.face_anonymizer.apply(out, tiny)
    assert anon.face_anonymizer.fallback_reasons["too_small"] == 1
    x1, y1, x2, y2 = tiny.xyxy[0].astype(int)
    assert not np.array_equal(out[y1:y2, x1:x2], img[y1:y2, x1:x2])


def test_warp_face_moves_landmarks_onto_the_target_and_pins_the_border() -> None:
    """Pure geometry: sample a coordinate-encoding image; dst landmarks must read src coords."""
    from streamanon.anonymize.warp import warp_face
    from streamanon.visual.align import TEMPLATE68

    size = 128
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    coords = np.dstack([xs, ys, np.zeros_like(xs)])  # pixel value = its own position
    src = TEMPLATE68 * size
    centre = src.mean(0)
    # Another face shape: wider, shorter, mouth region lowered (no triangle folds over).
    dst = centre + (src - centre) * [1.06, 0.95] + [1.5, -1.0]
    dst[48:68, 1] += 2.0
    out = warp_face(coords, src, dst)
    inner = np.arange(17, 68)  # away from the jaw's triangles touching the border
    read = np.array([cv2.getRectSubPix(out, (1, 1), (x, y))[0, 0, :2] for x, y in dst[inner]])
    assert np.abs(read - src[inner]).max() < 0.6
    assert np.allclose(out[0, :, :2], coords[0, :, :2], atol=0.5)  # border pinned
    assert np.allclose(out[:, -1, :2], coords[:, -1, :2], atol=0.5)


# -- renderer parts (issue 14) -----------------------------------------------------------------
def _coords(size: int = 128) -> np.ndarray:
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return np.dstack([xs, ys, np.zeros_like(xs)])  # pixel value = its own position


def _other_shape(size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    from streamanon.visual.align import TEMPLATE68

    src = TEMPLATE68 * size
    centre = src.mean(0)
    dst = centre + (src - centre) * [1.06, 0.95] + [1.5, -1.0]
    dst[48:68, 1] += 2.0
    return src, dst


def test_tps_warp_moves_landmarks_onto_the_target() -> None:
    from streamanon.anonymize.warp import warp_face_tps

    src, dst = _other_shape()
    out = warp_face_tps(_coords(), src, dst)
    read = np.array([cv2.getRectSubPix(out, (1, 1), (x, y))[0, 0, :2] for x, y in dst[17:68]])
    # The coarse map is interpolated on the grid it was solved on (a pixel-centre resize
    # misplaced every landmark by ~0.7 px, up to 1.5 px).
    assert np.abs(read - src[17:68]).mean() < 0.15
    assert np.abs(read - src[17:68]).max() < 0.6


def test_tps_warp_has_no_kinks_where_the_piecewise_affine_one_does() -> None:
    """The second derivative of the sampling map inside the face: TPS is smooth, the
    piecewise-affine map jumps at every triangle edge (what drifted eyes/nose/mouth apart)."""
    from streamanon.anonymize.warp import warp_face, warp_face_tps

    src, dst = _other_shape()
    dst[36:48] += [0.8, -1.5]  # eyes move against the rest, as in a head turn

    def kink(out: np.ndarray) -> float:  # largest change of slope between neighbouring pixels
        m = out[30:110, 30:100, 0].astype(np.float64)
        return float(np.abs(np.diff(m, n=2, axis=1)).max())

    assert kink(warp_face_tps(_coords(), src, dst)) < 0.3 * kink(warp_face(_coords(), src, dst))


def test_pyramid_blend_takes_each_side_where_the_mask_says() -> None:
    from streamanon.anonymize.blend import pyramid_blend

    rng = np.random.default_rng(0)
    bg = rng.integers(0, 255, (128, 128, 3), np.uint8)
    face = rng.integers(0, 255, (128, 128, 3), np.uint8)
    assert np.abs(pyramid_blend(bg, face, np.zeros((128, 128))).astype(int) - bg).max() <= 1
    assert np.abs(pyramid_blend(bg, face, np.ones((128, 128))).astype(int) - face).max() <= 1
    half = np.zeros((128, 128), np.float32)
    half[:, 64:] = 1
    out = pyramid_blend(bg, face, half).astype(int)
    assert (
        np.abs(out[:, :40] - bg[:, :40]).mean() < 3
        and np.abs(out[:, 88:] - face[:, 88:]).mean() < 3
    )


def test_pyramid_blend_gives_a_flat_delegate_the_persons_texture_energy_not_texture() -> None:
    """Band gains: a smooth delegate in a textured photo gets its own bands scaled up (never
    the person's texture); a delegate as textured as the person is left alone."""
    from streamanon.anonymize.blend import BAND_GAIN, pyramid_blend

    rng = np.random.default_rng(2)
    grey = lambda a: np.dstack([a] * 3).astype(np.uint8)  # noqa: E731
    person = grey(np.clip(128 + 12 * rng.standard_normal((128, 128)), 0, 255))
    person = cv2.GaussianBlur(person, (0, 0), 1.2)  # texture at 2-4 px, like skin
    soft = cv2.GaussianBlur(grey(rng.integers(100, 156, (128, 128))), (0, 0), 1.2)
    soft = (128 + (soft.astype(np.float32) - 128) * 0.3).astype(np.uint8)  # a third of it
    ones, skin = np.ones((128, 128)), np.ones((128, 128), bool)
    plain = pyramid_blend(person, soft, ones)
    matched = pyramid_blend(person, soft, ones, skin=(skin, skin))
    detail = lambda im: float(np.std(im.astype(np.float32) - cv2.GaussianBlur(im, (0, 0), 4.0)))  # noqa: E731
    assert detail(plain) < 0.5 * detail(person)
    assert detail(matched) > 1.5 * detail(plain)
    assert detail(matched) <= BAND_GAIN[1] * detail(plain) + 1.0
    # The delegate's own pattern, amplified: correlated with it, not with the person.
    hp = lambda im: (im.astype(np.float32) - cv2.GaussianBlur(im, (0, 0), 4.0)).ravel()  # noqa: E731
    assert np.corrcoef(hp(matched), hp(soft))[0, 1] > 0.8
    assert abs(np.corrcoef(hp(matched), hp(person))[0, 1]) < 0.1
    same = pyramid_blend(person, person, ones, skin=(skin, skin))
    assert np.abs(same.astype(int) - person).max() <= 1
    # Lightness only: a delegate's colour detail (a tinted fringe) is not amplified.
    tinted = soft.copy()
    tinted[..., 1] = np.clip(tinted[..., 1].astype(int) + rng.integers(-6, 7, (128, 128)), 0, 255)
    out = pyramid_blend(person, tinted, ones, skin=(skin, skin)).astype(np.float32)
    chroma = lambda im: im[..., 1] - 0.5 * (im[..., 0] + im[..., 2])  # noqa: E731
    assert chroma(out).std() < 1.15 * chroma(tinted.astype(np.float32)).std()


def test_missing_detail_is_what_the_render_lacks_per_band() -> None:
    from streamanon.anonymize.blend import detail_textures, missing_detail

    rng = np.random.default_rng(3)
    tex = detail_textures(rng, 200, 200)
    assert tex.shape == (2, 200, 200) and np.allclose(tex.std(axis=(1, 2)), 1.0, atol=1e-3)
    flat = np.full((200, 200, 3), 120, np.uint8)
    grainy = np.clip(120 + 4.0 * tex[0] + 6.0 * tex[1], 0, 255).astype(np.uint8)
    region = np.ones((200, 200), bool)
    need = missing_detail(np.dstack([grainy] * 3), flat, region)
    assert need[0] > 2.0 and need[1] > 3.0  # both bands missing from a flat render
    assert (missing_detail(flat, np.dstack([grainy] * 3), region) == 0).all()  # nothing to add


def test_eye_interiors_follow_the_persons_gaze_inside_the_rendered_lids() -> None:
    """The iris stays where it is relative to the eye contour, moved onto Ŝ_x's eye."""
    from streamanon.anonymize.swap import eye_interiors
    from streamanon.visual.align import TEMPLATE68

    size = 256
    lm = TEMPLATE68 * size
    crop = np.full((size, size, 3), 200, np.uint8)
    left = lm[36:42].mean(0)
    iris = left + [3.0, 0.0]  # looking right, off the eye centre
    cv2.circle(crop, tuple(int(round(v)) for v in iris), 4, (40, 40, 40), -1)
    s_hat = lm.copy()
    s_hat[36:42] += [6.0, 4.0]  # the rendered eye sits elsewhere
    out, mask = eye_interiors(crop, lm, s_hat)
    assert mask.shape == (size, size, 1) and mask.max() > 0.9
    dark = (out[..., 0] < 100) & (mask[..., 0] > 0.5)
    ys, xs = np.nonzero(dark)
    assert np.hypot(xs.mean() - (iris[0] + 6.0), ys.mean() - (iris[1] + 4.0)) < 1.5
    closed = s_hat.copy()
    closed[[37, 38], 1] = closed[[41, 40], 1]  # a blink: the lids meet
    closed[[43, 44], 1] = closed[[47, 46], 1]
    assert eye_interiors(crop, lm, closed)[1].max() < 0.5


def test_crop_side_follows_the_faces_size_in_the_frame_with_hysteresis() -> None:
    from streamanon.anonymize.identity_state import crop_side

    assert crop_side(1.0, 128, 256, 96, None) == 128
    assert crop_side(2.0, 128, 256, 96, None) == 256  # enlarged: render from 256² crops
    assert crop_side(0.5, 128, 256, 96, None) == 96  # reduced: no pixels the frame cannot show
    assert crop_side(2.0, 128, 0, 96, None) == 128  # no high-resolution bank
    # A track near a threshold keeps its side until it is clearly past it.
    assert crop_side(1.45, 128, 256, 96, 128) == 128 and crop_side(1.35, 128, 256, 96, 256) == 256
    assert crop_side(0.72, 128, 256, 96, 128) == 128 and crop_side(0.78, 128, 256, 96, 96) == 96
    assert crop_side(1.2, 128, 256, 96, 256) == 128 and crop_side(0.9, 128, 256, 96, 96) == 128


def test_keep_yaw_turns_the_nose_to_the_persons_yaw() -> None:
    from streamanon.visual.bank import default_bank
    from streamanon.visual.delegates import keep_yaw
    from streamanon.visual.pose import face_pose

    bank = default_bank()
    errs, before = [], []
    for i, j in [(0, 4), (3, 9), (7, 15), (20, 24), (33, 40), (101, 109)]:
        a, b = bank.landmarks[i].astype(np.float64), bank.landmarks[j].astype(np.float64)
        out = keep_yaw(a, b)
        errs.append(abs(face_pose(out)[0] - face_pose(b)[0]))
        before.append(abs(face_pose(a)[0] - face_pose(b)[0]))
        assert np.allclose(np.delete(out, np.s_[27:36], 0), np.delete(a, np.s_[27:36], 0))
    assert np.mean(errs) < 1.0 and np.mean(errs) < 0.3 * np.mean(before)


def test_colour_transfer_is_fitted_on_skin_and_keeps_the_eyes_chroma() -> None:
    from streamanon.anonymize.blend import eye_mask, transfer_colour
    from streamanon.visual.align import TEMPLATE68
    from streamanon.visual.masks import skin_mask

    lm = TEMPLATE68 * 128
    skin = skin_mask(lm, 128)
    eyes = eye_mask(lm, 128)
    delegate = np.full((128, 128, 3), (70, 90, 140), np.uint8)  # a darker skin
    delegate[eyes > 0.5] = (235, 235, 235)  # white sclera
    person = np.full((128, 128, 3), (150, 175, 220), np.uint8)
    person[eyes > 0.5] = (255, 0, 0)  # whatever the eyes are must not steer the fit
    out = transfer_colour(delegate, skin, person, skin, keep_chroma=eyes)
    lab = lambda img: cv2.cvtColor(img, cv2.COLOR_BGR2LAB).astype(int)  # noqa: E731
    assert np.abs(lab(out)[skin].mean(0) - lab(person)[skin].mean(0)).max() <= 2
    sclera = lab(out)[eyes > 0.8]
    assert len(sclera) >= 20 and np.abs(sclera[:, 1:] - 128).max() <= 3  # neutral, not tinted


def test_compatible_delegates_exclude_reviewed_and_keep_identity_neighbours() -> None:
    from streamanon.visual.attributes import FIELDS, BankAttributes, compatible

    n, k = 200, 10
    rng = np.random.default_rng(1)
    values = np.column_stack([
        rng.uniform(30, 80, n), rng.uniform(5, 25, n), rng.uniform(5, 25, n),
        np.full(n, 0.9), np.full(n, 0.9), np.full(n, 4.0),
    ]).astype(np.float32)  # fmt: skip
    values[5, FIELDS.index("forehead_skin")] = 0.1  # a fringe
    values[13, FIELDS.index("sharpness")] = 2.0  # a soft, low-resolution tile
    excluded = np.zeros(n, bool)
    excluded[7] = True  # reviewed: glasses
    neutral = np.ones(n, bool)
    neutral[9] = False  # a turned head, or an open mouth
    beard = np.zeros(n, bool)
    beard[15] = True  # reviewed: a white beard the skin measure reads as skin
    dist = np.linspace(0.6, 1.3, n)
    dist[[5, 7, 9, 13, 15]] = 0.6  # nearest in identity, but unfit
    dist[11] = 0.3  # the person themselves is in the bank
    attrs = BankAttributes(values, "x", excluded, neutral=neutral, beard=beard)
    mask = compatible(attrs, values[3], k, dist)
    assert mask.sum() == 2 * k
    assert not mask[[5, 7, 9, 11, 13, 15]].any()
    assert np.flatnonzero(mask).max() < 4 * k + 6  # drawn among the identity neighbours
    bearded = values[3].copy()
    bearded[FIELDS.index("lower_skin")] = 0.2
    assert compatible(attrs, bearded, k, dist)[15]  # a beard is fine for a bearded person
    values[17, FIELDS.index("lower_skin")] = 0.2  # a measured beard
    dist[17] = 0.6
    assert not compatible(BankAttributes(values, "x", excluded), values[3], k, dist)[17]


def test_neutral_bank_faces_are_frontal_with_clear_brows_and_a_closed_mouth() -> None:
    from streamanon.visual.attributes import neutral_faces
    from streamanon.visual.bank import default_bank

    bank = default_bank()
    neutral = neutral_faces(bank.pose, bank.landmarks)
    assert 150 < neutral.sum() < len(bank)  # most faces, not all
    assert (np.abs(bank.pose[neutral, 0]) <= 12).all()
    face = bank.landmarks[int(np.flatnonzero(neutral)[0])].astype(np.float64)
    frown = face.copy()
    frown[17:27, 1] = frown[[36, 37, 38, 39, 39, 42, 42, 43, 44, 45], 1] - 1.0  # brows on lids
    gaping = face.copy()
    gaping[[65, 66, 67], 1] += 12.0
    turned = np.array([[0.0, 0, 0], [0, 0, 0], [0, 0, 0], [25.0, 0, 0]])
    lms = np.stack([face, frown, gaping, face])
    assert neutral_faces(turned, lms).tolist() == [True, False, False, False]


def test_lbp_judge_separates_a_face_from_another() -> None:
    from streamanon.visual.bank import default_bank
    from streamanon.visual.lbp import SAME_PERSON, lbp_descriptor, lbp_distance

    bank = default_bank()
    a, b = lbp_descriptor(bank.crop(0)), lbp_descriptor(bank.crop(1))
    assert lbp_distance(a, a) == 0.0
    assert lbp_distance(a, b) > SAME_PERSON


def test_swap_covers_a_track_that_loses_its_margin_instead_of_switching_identity(
    monkeypatch,
) -> None:
    """Privacy per track over time without a visible identity switch: a failed check covers
    the track for the rest of its life (the same draw is kept, never a new face)."""
    import streamanon.anonymize.swap as S

    img = _group_photo()
    anon = Anonymizer(method="swap")
    first = anon(img.copy())  # birth, verified
    method = anon.face_anonymizer
    draws = {t: s.draw for t, s in method.ids.tracks.items()}
    monkeypatch.setattr(S, "RECHECK_FRAMES", 1)
    monkeypatch.setattr(S, "KEEP_DIST", 10.0)  # no render can keep this margin: every check fails
    anon(img.copy())
    third = anon(img.copy())
    rep = method.report()["tracks"]
    assert all(t["covered"] == "identity_covered" and t["checks"] == 2 for t in rep.values())
    assert all(s.draw == draws[t] for t, s in method.ids.tracks.items())  # never redrawn
    assert all(t["fallbacks"].get("identity_covered", 0) == 2 for t in rep.values())
    assert method.report()["fallbacks"]["identity_covered"] == 2 * len(rep)
    # Covered frames show the fallback (blur), not the rendered face of the first frame.
    assert not np.array_equal(third, first)


@pytest.mark.slow
def test_swap_privacy_holds_over_a_talking_head_as_the_pose_changes(tmp_path: Path) -> None:
    """d3: before per-track re-verification 25 % of sampled frames came within dlib's 0.6."""
    from streamanon.eval.evaluate import evaluate
    from streamanon.eval.pairs import make_pairs
    from streamanon.eval.recognizers import DlibRecognizer
    from streamanon.run import anonymize_file

    src = needs_shared("videos", "liveportrait_driving_d3.mp4")
    dst = tmp_path / "d3.mp4"
    report = anonymize_file(src, dst, method="swap")
    r = evaluate(make_pairs(src, dst, stride=3), [DlibRecognizer()])
    (video,) = r["video"].values()
    print(r["privacy"]["dlib"]["reid"], r["utility"]["detection_rate"], video)
    assert r["privacy"]["dlib"]["reid"][0.6] <= 0.04
    assert video["identity_consistency"]["dlib"] >= 0.95
    assert r["utility"]["detection_rate"] >= 0.97
    assert video["flicker_face"] <= 1.3
    checks = sum(t["checks"] for t in report.extra["swap"]["tracks"].values())
    assert checks >= report.frames // 30  # re-verified along the track, not only at birth


def test_side_views_of_a_real_clip_are_covered_not_rendered(tmp_path) -> None:
    """Hamilton (a tuning clip), first 64 frames: the side view, whose collapsed 68 points read
    39-48 degrees of yaw, is declined as a profile (covered by the fallback) on every frame,
    never rendered."""
    import sys

    import streamanon.anonymize.identity_state as I
    import streamanon.anonymize.swap as S
    from streamanon.run import anonymize_file

    src = needs_shared("videos", "face_recognition_short_hamilton_clip.mp4")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    from ida_gate import trim

    clip = trim(src, tmp_path / "h.mp4", 64)
    seen = []
    original = S.face_jobs

    def watched(image, faces, *a, **k):
        jobs, declined = original(image, faces, *a, **k)
        for i in range(len(faces)):
            yaw = abs(float(I.face_pose(faces.landmarks68[i].astype(np.float64))[0]))
            seen.append((yaw, i in declined))
        return jobs, declined

    S.face_jobs = watched
    try:
        rep = anonymize_file(clip, tmp_path / "out.mp4", method="swap")
    finally:
        S.face_jobs = original
    side = [declined for yaw, declined in seen if yaw > 38.0]
    assert len(side) >= 10 and all(side)
    assert rep.extra["swap"]["fallbacks"]["profile"] > 0
