"""Every face, every frame: small, turned, moving and rotated faces, judged by a reference that
is not the detector under test (`streamanon.eval.coverage`: CenterFace at native resolution
merged with dlib's MMOD CNN, 3x3 cells per face, no credit for half a face).

The crowd clips are composed from the group photos of ../shared/data (tests/crowd.py); the
coverage per clip and size bin is gated against absolute floors (>= 99 % of faces >= 32 px,
none >= 48 px left) and against tests/data/coverage_baseline.json with proportional slack, so a
change that lowers coverage fails. STREAMANON_UPDATE_BASELINE=1 writes new numbers; commit them
alone, with before -> after and why in the message (see `assert_floors`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.detect.multiscale import tile_grid
from streamanon.eval import coverage as C
from tests import crowd
from tests.conftest import REPO, needs_ffmpeg, needs_module, needs_shared

BASELINE = REPO / "tests" / "data" / "coverage_baseline.json"
GROUND_TRUTH = REPO / "tests" / "data" / "ground_truth_faces.json"


def ground_truth(source: str) -> dict[int, np.ndarray]:
    """Human-checked face boxes (tests/data/ground_truth_faces.json) of one source, by frame."""
    doc = json.loads(GROUND_TRUTH.read_text())
    return {
        e["frame"]: np.array(e["boxes"], np.float32) for e in doc["images"] if e["source"] == source
    }


UPDATE = os.environ.get("STREAMANON_UPDATE_BASELINE", "") not in ("", "0")


# -- pure pieces --------------------------------------------------------------------------


def test_tile_grid_covers_the_image_with_the_overlap_asked_for() -> None:
    for w, h, tile, ov in [(1920, 1080, 1056, 94), (3840, 2160, 1056, 94), (640, 360, 700, 40)]:
        grid = tile_grid(w, h, tile, ov)
        cover = np.zeros((h, w), np.int32)
        for x1, y1, x2, y2 in grid:
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
            assert x2 - x1 <= tile + 1 and y2 - y1 <= tile + 1
            cover[y1:y2, x1:x2] += 1
        assert cover.min() >= 1
        # Any ov x ov square lies whole inside some tile.
        for x in range(0, w - ov, max(ov // 3, 1)):
            for y in (0, h // 2 - ov // 2, h - ov):
                assert any(
                    x1 <= x and x + ov <= x2 and y1 <= y and y + ov <= y2 for x1, y1, x2, y2 in grid
                )


def test_is_covered_needs_every_landmark_patch_and_six_cells() -> None:
    five = np.ones(5, bool)
    assert C.is_covered(np.ones((3, 3), bool), five)
    cells = np.ones((3, 3), bool)
    cells[:, 0] = False  # six cells changed, every landmark patch changed
    assert C.is_covered(cells, five)
    cells[0, 2] = False  # five
    assert not C.is_covered(cells, five)
    for i in range(5):  # one eye, the nose or one mouth corner still shown
        one_left = five.copy()
        one_left[i] = False
        assert not C.is_covered(np.ones((3, 3), bool), one_left)


def test_merge_references_keeps_one_box_per_face() -> None:
    a = np.array([[10, 10, 50, 60]], np.float32)
    b = np.array([[14, 20, 46, 52], [100, 100, 140, 150]], np.float32)  # same face, a new one
    m = C.merge_references(a, b)
    assert len(m) == 2 and np.allclose(m[0], a[0]) and np.allclose(m[1], b[1])


# Real faces of ../shared/data for the table of the landmark rule: large studio faces, a
# group photo, and a 35 px face of a crowd photo (the size the crowd gates are about).
TABLE_FACES = {
    "obama": ("faces", "identities", "fr_obama", "obama.jpg"),
    "biden": ("faces", "identities", "fr_biden", "biden.jpg"),
    "two_people": ("groups", "misc", "face_recognition_two_people.jpg"),
    "deepface_p01": ("faces", "identities", "deepface_p01", "img1.jpg"),
    "crowd_35px": ("groups", "ultralight_crowd", "1.jpg"),
}


@pytest.fixture(scope="module", params=list(TABLE_FACES))
def face_photo(request):
    """(image, the largest reference face with its landmarks and 68 points)."""
    from streamanon.detect.landmarks import Landmarks68

    img = cv2.imread(str(needs_shared(*TABLE_FACES[request.param])))
    faces = _reference(None)(img)
    assert len(faces) >= 1
    face = faces[[int(np.argmax(faces.xyxy[:, 3] - faces.xyxy[:, 1]))]]
    face.landmarks68 = Landmarks68()(img, face)
    return img, face


def _jpeg(img: np.ndarray, q: int) -> np.ndarray:
    return cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1], 1)


def _fill(img: np.ndarray, x1: int, y1: int, x2: int, y2: int, how: str = "solid") -> np.ndarray:
    out = img.copy()
    roi = out[max(y1, 0) : max(y2, 0), max(x1, 0) : max(x2, 0)]
    if how == "solid":
        roi[...] = 0
    else:  # a heavy blur (what a blur redactor does) in that rectangle only
        roi[...] = cv2.resize(
            cv2.resize(roi, (6, 8), interpolation=cv2.INTER_AREA), roi.shape[1::-1]
        )
    return out


def _manipulated(img: np.ndarray, face, case: str) -> np.ndarray:
    """The output of one row of the table for the face (xyxy box) in ``img``."""
    from streamanon.registry import make_redactor

    x1, y1, x2, y2 = np.round(face.xyxy[0]).astype(int)
    w, h = x2 - x1, y2 - y1
    # The head around the box (forehead, hair, ears), as a redactor would grow it.
    hx1, hy1, hx2, hy2 = x1 - w // 4, y1 - h // 4, x2 + w // 4, y2 + h // 8
    if case == "half_left":
        return _fill(img, hx1, hy1, x1 + w // 2, hy2)
    if case == "half_right":
        return _fill(img, x1 + w // 2, hy1, hx2, hy2)
    if case == "60pct_left":
        return _fill(img, hx1, hy1, x1 + int(0.6 * w), hy2)
    if case == "60pct_top":
        return _fill(img, hx1, hy1, hx2, y1 + int(0.6 * h))
    if case == "shifted_third_right":
        return _fill(img, x1 + w // 3, y1, x2 + w // 3, y2, "blur")
    if case == "shifted_third_left":
        return _fill(img, x1 - w // 3, y1, x2 - w // 3, y2, "blur")
    if case == "noise_sigma40":
        out = img.astype(np.float32)
        roi = out[max(hy1, 0) : hy2, max(hx1, 0) : hx2]
        roi += np.random.default_rng(0).normal(0, 40, roi.shape)
        return np.clip(out, 0, 255).astype(np.uint8)
    if case == "inverted":
        out = img.copy()
        roi = out[max(hy1, 0) : hy2, max(hx1, 0) : hx2]
        roi[...] = 255 - roi
        return out
    if case == "reencoded_q30":
        return _jpeg(img, 30)
    # The redactors themselves, on the reference face, then a JPEG q80 re-encode.
    out = img.copy()
    make_redactor(case).apply(out, face)
    return _jpeg(out, 80)


NOT_COVERED = [
    "half_left",
    "half_right",
    "60pct_left",
    "60pct_top",
    "shifted_third_right",
    "shifted_third_left",
    "noise_sigma40",
    "inverted",
    "reencoded_q30",
]
COVERED = ["blur", "solid", "pixelate", "mask"]


@pytest.mark.parametrize("case", NOT_COVERED + COVERED)
def test_landmark_rule_on_real_faces(face_photo, case: str) -> None:
    """Half a face, 60 % of it, a box a third off, noise, an inverted or re-encoded face still
    show the person: not covered. A head blur, a solid box, pixelation, a face mask: covered."""
    img, face = face_photo
    out = _manipulated(img, face, case)
    cells, patches = C.changed_regions(img, out, face.xyxy[0], face.landmarks5[0])
    got = C.is_covered(cells, patches)
    assert got == (case in COVERED), (case, cells.astype(int).tolist(), patches.astype(int))
    # judge_frame gives the same verdict from the reference faces
    assert C.judge_frame(img, out, face)[0].covered == got


# -- rotation ------------------------------------------------------------------------------


def _player_frames(path: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """Frames as a player shows them: ffmpeg applies the display rotation (autorotate)."""
    ffmpeg = needs_ffmpeg()
    raw = subprocess.run(
        [ffmpeg, "-v", "error", "-i", str(path), "-f", "rawvideo", "-pix_fmt", "bgr24", "-"],
        capture_output=True,
        check=True,
    ).stdout
    import av

    with av.open(str(path)) as c:
        vf = next(c.decode(video=0))
        w, h = vf.width, vf.height
        if int(round((vf.rotation or 0) / 90)) % 2:
            w, h = h, w
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)
    return {i: frames[i] for i in indices if i < len(frames)}


@pytest.fixture(scope="module")
def sideways_clip(tmp_path_factory) -> tuple[Path, list[np.ndarray], Path]:
    """The Hamilton clip's first 40 frames stored sideways under a 90 degree display
    rotation, as a phone records (a player shows it upright), and the same frames stored
    upright."""
    from streamanon.io.video import VideoReader

    src = needs_shared("videos", "face_recognition_short_hamilton_clip.mp4")
    with VideoReader(src, audio=False) as r:
        upright = [f.image for _, f in zip(range(40), r, strict=False)]
    folder = tmp_path_factory.mktemp("rot")
    phone = crowd.write_clip(folder / "phone.mp4", upright, rotation=90)
    return phone, upright, crowd.write_clip(folder / "upright.mp4", upright)


ROT_SAMPLES = [0, 13, 26, 39]
_ROT_REFS: dict[int, np.ndarray] = {}


def _sideways_refs(upright: list[np.ndarray]) -> dict[int, np.ndarray]:
    """Reference faces of the sampled frames as shown (computed once for every method)."""
    if not _ROT_REFS:
        ref = _reference(1)
        _ROT_REFS.update({i: ref(upright[i]) for i in ROT_SAMPLES})
    return _ROT_REFS


def _left_visible(method: str, clip: Path, upright: list[np.ndarray], out: Path) -> list:
    from streamanon.cli import main

    assert main([str(clip), "-o", str(out), "-m", method, "-q"]) == 0
    shown = _player_frames(out, ROT_SAMPLES)
    assert shown[0].shape == upright[0].shape  # the player shows it upright, as the input
    faces = []
    for i in ROT_SAMPLES:
        faces += C.judge_frame(upright[i], shown[i], _sideways_refs(upright)[i], i)
    assert len(faces) >= 5
    if method == "swap":
        # A realistic face keeps the contour and the open mouth by design, so the pixel judge
        # does not apply: the person must not be recognised (dlib at the 0.6).
        from streamanon.eval.recognizers import DlibRecognizer

        rec = DlibRecognizer()
        for f in faces:
            b = np.array([f.box])
            d = np.linalg.norm(rec.embed(upright[f.frame], b) - rec.embed(shown[f.frame], b))
            f.covered = f.covered or d >= 0.6
    return [f for f in faces if not f.covered]


@pytest.mark.slow
@pytest.mark.parametrize("method", ["blur", "pixelate", "solid", "mask", "swap"])
def test_rotated_phone_clip_leaves_no_face(sideways_clip, tmp_path: Path, method: str) -> None:
    """Zero faces left on a phone clip, judged on the frames as a player shows them. For
    swap, the rotated clip must leak nothing the same clip stored upright does not (what
    swap does with a profile is judged by its own tests)."""
    if method == "swap":
        needs_module("torch")  # required in CI: a failure there, not a skip
    phone, upright, plain = sideways_clip
    left = _left_visible(method, phone, upright, tmp_path / "phone_out.mp4")
    if method == "swap":
        baseline = _left_visible(method, plain, upright, tmp_path / "upright_out.mp4")
        # swap replaces the face, not the hair and background in the box's corners, so its
        # renders sit near the "6 of 9 cells" line of the judge: one 55 px face on frame 13
        # reads 5 cells on the rotated clip and 6 upright. What must hold is that no
        # identity region (the five landmark patches) is shown on either clip, and that
        # rotation adds no more than that one face of judge noise.
        for f in left + baseline:
            assert all(f.patches), f"a landmark region is still shown: {f}"
        assert len(left) <= len(baseline) + 1, f"rotation leaks: {left} vs upright {baseline}"
    else:
        assert not left, f"{method}: {len(left)} faces left on the rotated clip: {left}"


def test_sideways_faces_are_missed_unless_turned(sideways_clip) -> None:
    """Why rotation must come first: on the stored (sideways) picture the detector finds far
    fewer faces than on the picture as shown."""
    from streamanon.registry import make_detector

    _, upright, _ = sideways_clip
    det = make_detector("centerface", landmarks=False)
    shown = sum(int((det(f).score >= 0.5).sum()) for f in upright[::10])
    stored = sum(
        int((det(cv2.rotate(f, cv2.ROTATE_90_CLOCKWISE)).score >= 0.5).sum()) for f in upright[::10]
    )
    assert shown >= 6 and stored <= shown // 2, (shown, stored)


def test_exif_rotated_photo_is_anonymized_upright(tmp_path: Path) -> None:
    """A phone photo stored sideways with EXIF orientation 6: faces found and covered as shown."""
    import struct

    from streamanon.cli import main

    img = cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg")))
    stored = cv2.rotate(img, cv2.ROTATE_90_COUNTERCLOCKWISE)
    jpg = cv2.imencode(".jpg", stored, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes()
    tiff = b"II*\x00" + struct.pack("<IH", 8, 1) + struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)
    exif = b"Exif\x00\x00" + tiff + struct.pack("<I", 0)
    src = tmp_path / "phone.jpg"
    src.write_bytes(jpg[:2] + b"\xff\xe1" + struct.pack(">H", len(exif) + 2) + exif + jpg[2:])
    out = tmp_path / "out.jpg"
    assert main([str(src), "-o", str(out), "-q"]) == 0
    res = cv2.imread(str(out))
    assert res.shape == img.shape
    faces = C.judge_frame(img, res, _reference(None)(img))
    assert len(faces) == 2 and all(f.covered for f in faces)


# -- crowds --------------------------------------------------------------------------------

_REFS: dict = {}


def _reference(mmod_upsample):
    if mmod_upsample not in _REFS:
        _REFS[mmod_upsample] = C.reference_detector(mmod_upsample)
    return _REFS[mmod_upsample]


# clip name -> (frames to make or read, sampled frame indices, MMOD upsampling or None)
CLIPS = {
    # Dense crowds of 20-60 px faces, panned and mirrored. MMOD cannot see faces this small
    # (it finds none under ~80 px without upsampling, and upsampling 1080p/4K costs minutes
    # per frame here), so the reference is CenterFace at native resolution.
    "crowd1080": (20, [0, 5, 10, 15, 19], None),
    "crowd4k": (10, [0, 3, 6, 9], None),
    # Real footage: stage lighting, faces turned away, profiles; MMOD joins the reference.
    "hamilton": (None, [0, 60, 120, 180, 240], 1),
    "classroom": (None, [0, 15, 30, 44], 1),
}


VIDEO_FILES = {
    "hamilton": "face_recognition_short_hamilton_clip.mp4",
    "classroom": "intel_sample_videos_classroom.mp4",
}


def _clip_frames(name: str, n: int | None) -> list[np.ndarray]:
    from streamanon.io.video import VideoReader

    if name.startswith("crowd"):
        return crowd.crowd_frames(needs_shared(), name, n)
    with VideoReader(needs_shared("videos", VIDEO_FILES[name]), audio=False) as r:
        return [f.image for f in r]


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CLIPS))
def test_crowd_coverage_does_not_regress(name: str, tmp_path: Path) -> None:
    from streamanon.anonymizer import Anonymizer
    from streamanon.types import Frame

    n, idx, mmod = CLIPS[name]
    frames = _clip_frames(name, n)
    anon = Anonymizer(method="blur")  # the defaults a user gets
    outs = {}
    for i, im in enumerate(frames):
        f = anon.apply(anon.track(Frame(im.copy(), i, i * 40, Fraction(1, 1000))))
        if i in idx:
            outs[i] = f.image
    ref = _reference(mmod)
    labels = ground_truth(f"videos/{VIDEO_FILES[name]}") if name in VIDEO_FILES else {}
    rep = C.CoverageReport()
    for i in idx:
        faces = ref(frames[i])
        if i in labels:  # a face checked by eye that no detector finds still counts
            faces = C.with_ground_truth(faces, labels[i])
        rep.faces += C.judge_frame(frames[i], outs[i], faces, i)
    got = rep.as_dict()
    sheet = C.uncovered_sheet({i: frames[i] for i in idx}, outs, rep.uncovered())
    if sheet is not None:
        cv2.imwrite(str(tmp_path / f"uncovered_{name}.png"), sheet)
    print(name, json.dumps(got["bins"]), "sheet:", tmp_path)

    # Absolute floors first: no baseline, however it was regenerated, can lower these.
    assert_floors(name, got)
    base = json.loads(BASELINE.read_text()) if BASELINE.is_file() else {}
    if UPDATE:
        base[name] = got["bins"]
        BASELINE.write_text(json.dumps(base, indent=1, sort_keys=True) + "\n")
        return
    assert name in base, f"no baseline for {name}: run with STREAMANON_UPDATE_BASELINE=1"
    for b, want in base[name].items():
        assert_bin_not_worse(f"{name} {b}", got["bins"][b], want)


# Floors (issue 22): whatever the baseline says, a clip's faces >= 32 px are >= 99 % covered
# and none >= 48 px is left. RULE: a baseline file is regenerated only in a commit of its own
# whose message gives every changed figure as before -> after and says why; never in the
# commit that changes the code it gates, and never to get a failing test through.
FLOOR_GE32 = 0.99
FLOOR_UNCOVERED_GE48 = 0
SLACK_SHARE = 0.01  # a bin's coverage may be this much lower than its baseline (CPU jitter)


def assert_floors(name: str, got: dict) -> None:
    if got["coverage_ge32"] is not None:
        assert got["coverage_ge32"] >= FLOOR_GE32, (
            f"{name}: {100 * got['coverage_ge32']:.1f} % of faces >= 32 px covered, floor 99 %"
        )
    assert got["uncovered_ge48"] <= FLOOR_UNCOVERED_GE48, (
        f"{name}: {got['uncovered_ge48']} faces >= 48 px left uncovered (floor 0)"
    )


def assert_bin_not_worse(label: str, have: dict, want: dict) -> None:
    """Proportional slack: the covered share may fall by SLACK_SHARE, never by a face count
    (one face of a 5-face 4K bin is 20 %). The reference may find a few faces more or fewer
    across CPUs (floating point at its score cut): 2 faces or 2 %."""
    assert abs(have["faces"] - want["faces"]) <= max(2, want["faces"] // 50), (label, have, want)
    if not want["faces"] or not have["faces"]:
        return
    share, was = have["covered"] / have["faces"], want["covered"] / want["faces"]
    # 1 % of a bin under 100 faces is less than one face: such a bin may lose none.
    assert share >= was - SLACK_SHARE, f"{label}: {have} below the baseline {want}"


def test_floors_and_slack_are_proportional() -> None:
    """A 5-face bin losing one face fails; a 700-face bin may lose a face to CPU jitter."""
    with pytest.raises(AssertionError):
        assert_bin_not_worse("4k", {"faces": 5, "covered": 4}, {"faces": 5, "covered": 5})
    assert_bin_not_worse("1080", {"faces": 700, "covered": 693}, {"faces": 700, "covered": 694})
    with pytest.raises(AssertionError):
        assert_bin_not_worse("1080", {"faces": 700, "covered": 680}, {"faces": 700, "covered": 694})
    with pytest.raises(AssertionError, match="floor 99"):
        assert_floors("x", {"coverage_ge32": 0.985, "uncovered_ge48": 0})
    with pytest.raises(AssertionError, match="floor 0"):
        assert_floors("x", {"coverage_ge32": 1.0, "uncovered_ge48": 1})


# -- human-checked ground truth -------------------------------------------------------------


def test_ground_truth_labels_are_well_formed() -> None:
    doc = json.loads(GROUND_TRUTH.read_text())
    assert sum(len(e["boxes"]) for e in doc["images"]) >= 60
    for e in doc["images"]:
        b = np.array(e["boxes"], np.float32).reshape(-1, 4)
        assert len(b) and (b[:, 2:] > b[:, :2]).all() and e["from"], e["source"]


def test_with_ground_truth_adds_only_what_no_detector_found() -> None:
    from streamanon.types import Detections

    found = Detections(np.array([[10, 10, 50, 60]], np.float32), np.ones(1, np.float32))
    labels = np.array([[12, 12, 50, 58], [100, 100, 130, 140]], np.float32)
    merged = C.with_ground_truth(found, labels)
    assert len(merged) == 2 and np.allclose(merged.xyxy[0], found.xyxy[0])
    assert np.allclose(merged.landmarks5[1], C.template_landmarks(labels[1]))


def test_group_photos_every_labelled_face_covered() -> None:
    """dlib's human-drawn boxes on its group photos (PASCAL VOC), checked by eye: the
    default anonymizer covers every labelled face by the landmark rule."""
    from streamanon.anonymizer import Anonymizer

    doc = json.loads(GROUND_TRUTH.read_text())
    photos = [e for e in doc["images"] if e["source"].startswith("groups/dlib_faces/")]
    assert len(photos) >= 9
    ref = _reference(None)
    left, total = [], 0
    for e in photos:
        img = cv2.imread(str(needs_shared(*e["source"].split("/"))))
        out = Anonymizer(method="blur")(img)
        labels = np.array(e["boxes"], np.float32)
        faces = C.with_ground_truth(ref(img), labels)
        judged = C.judge_frame(img, out, faces)
        # the labelled faces (each matched to the reference face that stands for it)
        boxes = np.array([f.box for f in judged], np.float32)
        iou = C.M.box_iou_matrix(labels, boxes)
        for k in range(len(labels)):
            f = judged[int(np.argmax(iou[k]))]
            total += 1
            if not f.covered:
                left.append((e["source"], [round(v) for v in f.box], f.patches))
    assert total >= 40 and not left, left


# -- the demo: a face half hidden behind a pole -----------------------------------------------


@pytest.mark.slow
def test_demo_leaves_no_face_in_any_frame(tmp_path: Path) -> None:
    """`streamanon examples/demo.mp4` (the quick start): a pole sweeps across a standing face
    (frames 44-62) and faces overlap. Every reference face of every frame is covered by the
    landmark rule, and FaceNet (a judge of another family than Ψ) re-identifies no face in the
    pole's frames. (dlib matches 8 featureless 6-pixel blurs of half-hidden or half-off-frame
    faces at 0.50-0.60 over the clip: judge artefacts, see docs/coverage.md.)"""
    from streamanon.cli import main
    from streamanon.eval.evaluate import EvalConfig, evaluate
    from streamanon.eval.facenet import FaceNetJudge
    from streamanon.eval.pairs import Pair
    from streamanon.io.video import VideoReader

    src = REPO / "examples" / "demo.mp4"
    out = tmp_path / "demo_out.mp4"
    assert main([str(src), "-o", str(out), "-q"]) == 0
    with VideoReader(src, audio=False) as r:
        orig = [f.image for f in r]
    with VideoReader(out, audio=False) as r:
        anon = [f.image for f in r]
    assert len(orig) == len(anon) == 150
    ref = _reference(None)
    leaked = {}
    for i, (o, a) in enumerate(zip(orig, anon, strict=True)):
        left = [f for f in C.judge_frame(o, a, ref(o), i) if not f.covered]
        if left:
            leaked[i] = [(round(f.height), f.patches) for f in left]
    assert not leaked, f"frames with a face left: {leaked}"
    pole = [Pair("demo", i, orig[i], anon[i], video=True) for i in range(44, 63)]
    r = evaluate(pole, [FaceNetJudge()], config=EvalConfig(coverage=False))
    leaks = r["video"]["demo"]["leaked_frames"]["facenet"]
    assert leaks["frames"] >= 15 and leaks["leaked"] == 0, r["video"]


# -- 4K memory -----------------------------------------------------------------------------


@pytest.mark.slow
def test_4k_memory_stays_near_1080p(tmp_path: Path) -> None:
    """Tiles, not a native-resolution pass: 4K costs a few hundred MB more than 1080p."""
    rss = {}
    for name, n in (("crowd1080", 6), ("crowd4k", 6)):
        clip = crowd.write_clip(
            tmp_path / f"{name}.mp4", crowd.crowd_frames(needs_shared(), name, n)
        )
        # VmHWM (peak resident set of this process image); ru_maxrss survives exec on Linux
        # and would report pytest's own peak.
        code = (
            "import sys\n"
            "from streamanon.cli import main\n"
            "rc = main(sys.argv[1:])\n"
            "hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]\n"
            "print('MAXRSS', hwm.split()[1])\n"
            "sys.exit(rc)\n"
        )
        out = tmp_path / f"{name}_out.mp4"
        p = subprocess.run(
            [sys.executable, "-c", code, str(clip), "-o", str(out), "-q"],
            capture_output=True,
            text=True,
            check=True,
        )
        rss[name] = int(p.stdout.split("MAXRSS")[1].split()[0]) / 1024  # MB
    print("peak RSS MB", rss)
    assert rss["crowd4k"] - rss["crowd1080"] < 600, rss
