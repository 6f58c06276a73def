"""Naturalness metrics: known answers on constructed faces, the real range on real photos, and a
panel gate that fails when the `swap` renderer regresses past the stored baseline."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.eval import naturalness as N
from streamanon.visual.align import TEMPLATE68
from tests.conftest import needs_module, needs_shared

REPO = Path(__file__).resolve().parents[1]
BASELINE = REPO / "tests" / "data" / "naturalness_baseline.json"


@pytest.mark.parametrize(
    "lab1, lab2, expected",  # Sharma, Wu & Dalal (2005), table 1, pairs 1, 2, 3, 7
    [
        ((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425),
        ((50, 3.1571, -77.2803), (50, 0, -82.7485), 2.8615),
        ((50, 2.8361, -74.0200), (50, 0, -82.7485), 3.4412),
        ((50, 0, 0), (50, -1, 2), 2.3669),
    ],
)
def test_ciede2000_reference_pairs(lab1, lab2, expected) -> None:
    assert N.ciede2000(np.array(lab1), np.array(lab2)) == pytest.approx(expected, abs=1e-4)
    assert N.ciede2000(np.array(lab2), np.array(lab1)) == pytest.approx(expected, abs=1e-4)


SKIN = (120, 150, 200)  # BGR, a light skin tone


def _face(size: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A flat skin-coloured picture and a face's landmarks in it."""
    img = np.full((size, size, 3), SKIN, np.uint8)
    return img, TEMPLATE68 * (size * 0.6) + size * 0.2


def _paste(img: np.ndarray, lm: np.ndarray, colour, soft: float = 0.0) -> np.ndarray:
    """The face hull painted in ``colour`` (hard edge, or feathered by ``soft`` px)."""
    region = N.face_regions(lm, img.shape)["hull"].astype(np.float32)
    if soft:
        region = cv2.GaussianBlur(region, (0, 0), soft)
    out = img.astype(np.float32) * (1 - region[..., None]) + np.float32(colour) * region[..., None]
    return out.astype(np.uint8)


def test_skin_delta_e_zero_on_one_colour_and_the_colour_difference_on_a_paste() -> None:
    img, lm = _face()
    assert N.skin_delta_e(img, lm) == pytest.approx(0.0, abs=0.01)
    dark = (60, 80, 110)
    out = _paste(img, lm, dark)
    want = N.ciede2000(N.lab(np.uint8([[dark]]))[0, 0], N.lab(np.uint8([[SKIN]]))[0, 0])
    assert N.skin_delta_e(out, lm, img) == pytest.approx(float(want), rel=0.02)


def test_outside_non_skin_is_ignored() -> None:
    """Blue background around the face does not count as 'skin outside'."""
    img, lm = _face()
    bg = img.copy()
    bg[~N.face_regions(lm, img.shape)["hull"]] = (200, 60, 20)
    bg[: int(lm[19, 1]) - 5] = SKIN  # only the forehead band is skin outside
    assert N.skin_delta_e(bg, lm) == pytest.approx(0.0, abs=0.01)
    bg[:] = (200, 60, 20)
    bg[N.face_regions(lm, img.shape)["hull"]] = SKIN
    assert np.isnan(N.skin_delta_e(bg, lm))  # no skin outside: not measurable


def test_seam_energy_hard_paste_vs_soft_vs_none() -> None:
    img, lm = _face()
    rng = np.random.default_rng(0)
    img = np.clip(img + rng.normal(0, 4, img.shape), 0, 255).astype(np.uint8)  # skin texture
    none = N.seam_energy(img, lm)
    hard = N.seam_energy(_paste(img, lm, (90, 120, 170)), lm, img)
    soft = N.seam_energy(_paste(img, lm, (90, 120, 170), soft=12), lm, img)
    assert 0.7 < none < 1.3
    assert hard > 2.5 * none
    assert none < soft < hard


def test_colour_outliers_count_cyan_sockets_not_skin_or_lips() -> None:
    img, lm = _face()
    assert N.colour_outliers(img, lm) == {"eyes": 0.0, "mouth": 0.0}
    reg = N.face_regions(lm, img.shape)
    tinted = img.copy()
    tinted[reg["eyes"]] = (200, 180, 60)  # cyan
    tinted[reg["mouth"]] = (60, 40, 170)  # red lips: fine
    got = N.colour_outliers(tinted, lm)
    assert got["eyes"] == pytest.approx(1.0) and got["mouth"] == 0.0


def test_refit_error_in_inter_ocular_units() -> None:
    lm = TEMPLATE68 * 200
    io = N.inter_ocular(lm)
    assert N.refit_error(lm, lm) == 0.0
    assert N.refit_error(lm + [io * 0.5, 0], lm) == pytest.approx(0.5)
    assert N.refit_error(lm + [io, 0], lm, np.arange(0, 17)) == pytest.approx(1.0)


def test_detector_confidence_matches_by_overlap() -> None:
    box = np.array([10, 10, 50, 50])
    found = np.array([[12, 11, 52, 49], [200, 200, 240, 240]], np.float32)
    assert N.detector_confidence(box, found, np.array([0.8, 0.99])) == pytest.approx(0.8)
    assert N.detector_confidence(box, found[1:], np.array([0.99])) == 0.0
    assert N.detector_confidence(box, found[:0], np.zeros(0)) == 0.0


def test_face_flicker_ratio() -> None:
    rng = np.random.default_rng(1)
    orig = [rng.integers(0, 255, (32, 32, 3), np.uint8) for _ in range(4)]
    assert N.face_flicker(orig, orig) == pytest.approx(1.0)
    still = [orig[0]] * 4
    assert N.face_flicker(orig, still) == 0.0
    mask = np.zeros((32, 32), bool)
    mask[8:24, 8:24] = True
    assert N.face_flicker(orig, orig, mask) == pytest.approx(1.0)


# -- real photos: the range two real photos of a person span ---------------------------------
def _real_pairs() -> list[tuple[str, str]]:
    panel = json.loads((REPO / "tests/data/naturalness_panel.json").read_text())["faces"]
    return [(f["file"], f["other"][0]) for f in panel[:6]]


@pytest.fixture(scope="module")
def detector():
    from streamanon.registry import make_detector

    return make_detector("centerface", thresh=0.5, landmarks=True, low_thresh=0.5)


@pytest.mark.parametrize("files", _real_pairs(), ids=lambda f: Path(f[0]).parent.name)
def test_real_photos_of_a_person_lie_in_the_real_range(files, detector) -> None:
    """Unmodified photos score as real faces: small skin ΔE, seam ~1, almost no outliers."""
    for rel in files:
        img = cv2.imread(str(needs_shared(*Path(rel).parts)))
        dets = detector(img)
        lm = dets.landmarks68[int(np.argmax(dets.area))]
        assert N.skin_delta_e(img, lm) < 8.0
        assert 0.5 < N.seam_energy(img, lm) < 1.7
        out = N.colour_outliers(img, lm)
        assert out["eyes"] < 0.05 and out["mouth"] < 0.02


# -- the panel gate ----------------------------------------------------------------------------
GATE_FACES = 8
# Metrics where smaller is better, and how much worse than the baseline a run may be (noise of
# landmark fits and JPEG decoding is well below these).
GATE = {"skin_de": 0.5, "seam": 0.08, "outliers_eyes": 0.01, "outliers_mouth": 0.005,
        "refit_person": 0.01, "yaw_err": 1.0}  # fmt: skip


@pytest.mark.slow
def test_swap_panel_does_not_regress_past_the_baseline() -> None:
    """`swap` on the first panel faces, against tests/data/naturalness_baseline.json."""
    needs_module("torch")  # required in CI: a failure there, not a skip
    needs_shared()  # skips, or fails in CI (STREAMANON_REQUIRE_DATA)
    import sys

    sys.path.insert(0, str(REPO / "scripts"))
    from naturalness_panel import run_panel, summary

    res = run_panel("swap", limit=GATE_FACES)
    got = summary(res["faces"])
    base = json.loads(BASELINE.read_text())["swap"]
    print(json.dumps(got, indent=1))
    for key, slack in GATE.items():
        assert got[key] <= base[key] + slack, f"{key}: {got[key]:.3f} vs baseline {base[key]:.3f}"
    assert got["confidence"] >= base["confidence"] - 0.03
    assert got["detected"] >= 0.97
    assert got["reid_0.6"] == 0.0 and got["reid_other_0.6"] == 0.0
    # And by a judge that is not Ψ (FaceNet, another family). First measurement (never 0):
    # FaceNet re-identifies 1 of these 8 swap renders against the same photo (mean distance
    # 1.09 vs its 1.01 threshold) and none against the person's other photo; the target 0 is
    # not met (docs/generator.md, "Release gate"). This gate keeps it from getting worse.
    assert got["reid_facenet"] <= 1 / GATE_FACES and got["reid_other_facenet"] == 0.0
    assert got["mouth_state_agreement"] >= 0.85


def test_eval_writes_a_contact_sheet_and_a_blind_ab_sheet(tmp_path: Path) -> None:
    from streamanon.anonymizer import Anonymizer
    from streamanon.eval.cli import eval_main

    img = cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg")))
    orig, a, b = tmp_path / "o.png", tmp_path / "blur.png", tmp_path / "pix.png"
    cv2.imwrite(str(orig), img)
    cv2.imwrite(str(a), Anonymizer(method="blur")(img))
    cv2.imwrite(str(b), Anonymizer(method="pixelate")(img))
    sheet, ab = tmp_path / "sheet.png", tmp_path / "ab.png"
    argv = [str(orig), str(a), "--sheet", str(sheet), "--ab", str(b), "--ab-sheet", str(ab)]
    assert eval_main([*argv, "--json", str(tmp_path / "r.json")]) == 0
    s = cv2.imread(str(sheet))
    assert s is not None and s.shape[1] > s.shape[0]  # two faces, original | anonymized
    key = json.loads((tmp_path / "ab.png.json").read_text())["rows"]
    assert len(key) == 2 and all({r["left"], r["right"]} == {str(a), str(b)} for r in key)
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["naturalness"]["confidence"] == 0.0  # blurred faces are not found again
