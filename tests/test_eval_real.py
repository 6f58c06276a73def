"""`streamanon eval` on real faces (../shared/data): answers known in advance."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from streamanon.eval import metrics as M
from streamanon.eval.cli import eval_main
from streamanon.eval.evaluate import EvalConfig, evaluate
from streamanon.eval.pairs import Pair
from tests.conftest import needs_shared


def _face(*parts: str, width: int = 480) -> np.ndarray:
    img = cv2.imread(str(needs_shared("faces", "identities", *parts)))
    s = width / img.shape[1]
    return cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def dlib_rec():
    from streamanon.eval.recognizers import DlibRecognizer

    return DlibRecognizer()


@pytest.fixture(scope="module")
def facenet_rec():
    from streamanon.eval.facenet import FaceNetJudge

    return FaceNetJudge()


def test_identical_input_reid_100_and_ssim_1(dlib_rec, facenet_rec):
    img = _face("fr_obama", "obama.jpg")
    r = evaluate([Pair("obama", 0, img, img.copy())], [dlib_rec, facenet_rec], config=EvalConfig())
    assert r["faces"] == 1
    for judge in ("dlib", "facenet"):  # both judges know the unchanged face
        assert all(v == 1.0 for v in r["privacy"][judge]["reid"].values()), judge
    u = r["utility"]
    assert u["ssim_background"] == pytest.approx(1.0) and u["ssim_face"] == pytest.approx(1.0)
    assert u["detection_rate"] == 1.0 and u["yaw"]["mae"] == pytest.approx(0.0, abs=1e-3)


def test_heavy_blur_drops_detection_and_reid_but_not_background(dlib_rec, facenet_rec):
    img = _face("fr_obama", "obama.jpg")
    from streamanon.registry import make_detector

    box = make_detector("centerface", landmarks=False)(img).xyxy[0]
    out = img.copy()
    x1, y1, x2, y2 = np.round(box).astype(int)
    out[y1:y2, x1:x2] = cv2.GaussianBlur(out[y1:y2, x1:x2], (0, 0), 40)
    r = evaluate([Pair("obama", 0, img, out)], [dlib_rec, facenet_rec], config=EvalConfig())
    assert r["utility"]["detection_rate"] == 0.0
    assert r["privacy"]["dlib"]["reid"][0.6] == 0.0
    assert all(v == 0.0 for v in r["privacy"]["facenet"]["reid"].values())
    assert r["utility"]["ssim_face"] < 0.8
    # pixels outside the grown face box were not touched
    assert r["utility"]["ssim_background"] == pytest.approx(1.0)


def test_different_person_low_similarity(dlib_rec):
    a, b = _face("fr_obama", "obama.jpg"), _face("fr_biden", "biden.jpg")
    c = _face("fr_obama", "obama2.jpg")
    from streamanon.registry import make_detector

    det = make_detector("centerface", landmarks=False)
    ea = dlib_rec.embed(a, det(a).xyxy[:1])
    eb = dlib_rec.embed(b, det(b).xyxy[:1])
    ec = dlib_rec.embed(c, det(c).xyxy[:1])
    assert M.score_matrix(ea, eb, "euclidean")[0, 0] > 0.6  # another person
    assert M.score_matrix(ea, ec, "euclidean")[0, 0] < 0.6  # the same person, another photo


def test_eval_cli_folders_with_labels(tmp_path, dlib_rec):
    # Anonymized "photos" that are each the other person: ReID vs original 0, swap 100%.
    from streamanon.registry import make_detector

    det = make_detector("centerface", landmarks=False)

    def portrait(img: np.ndarray) -> np.ndarray:
        # the face centred at the same place and size in every picture
        x1, y1, x2, y2 = det(img).xyxy[0]
        cx, cy, r = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1)
        m = np.float32([[120 / r, 0, 150 - cx * 120 / r], [0, 120 / r, 150 - cy * 120 / r]])
        return cv2.warpAffine(img, m, (300, 300), borderMode=cv2.BORDER_REPLICATE)

    a = portrait(_face("fr_obama", "obama.jpg"))
    b = portrait(_face("fr_biden", "biden.jpg"))
    orig, anon = tmp_path / "o", tmp_path / "a"
    for root, x, y in ((orig, a, b), (anon, b, a)):
        (root / "obama").mkdir(parents=True)
        (root / "biden").mkdir()
        cv2.imwrite(str(root / "obama" / "1.png"), x)
        cv2.imwrite(str(root / "biden" / "1.png"), y)
    out = tmp_path / "r.json"
    md = tmp_path / "r.md"
    assert (
        eval_main(
            [str(orig), str(anon), "--labels", "folders", "--json", str(out), "--markdown", str(md)]
        )
        == 0
    )
    r = json.loads(out.read_text())
    p = r["privacy"]["dlib"]
    assert r["faces"] == 2
    assert p["reid"]["0.6"] == 0.0 and p["swap"]["0.6"] == 1.0
    assert "dlib ℓ2 < 0.6" in md.read_text()


def test_mismatched_inputs_give_clear_errors(tmp_path):
    from streamanon.errors import InputError

    img = tmp_path / "x.png"
    cv2.imwrite(str(img), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(InputError, match="cannot pair"):
        eval_main([str(img), str(tmp_path)])
    with pytest.raises(InputError, match="no such file"):
        eval_main([str(tmp_path / "nope.png"), str(img)])


def test_a_face_the_judge_matches_to_its_own_blur_is_unjudgeable(dlib_rec, facenet_rec):
    """Hamilton's dark audience (a tuning clip): dlib matches those faces to a blur of
    themselves, so a match there says nothing; a lit face is judgeable, and its blur is not
    re-identified. ``reid`` still counts every face."""
    import av

    from streamanon.anonymize.classic import BlurRedactor
    from streamanon.registry import make_detector

    path = needs_shared("videos", "face_recognition_short_hamilton_clip.mp4")
    with av.open(str(path)) as c:
        frame = next(f for i, f in enumerate(c.decode(video=0)) if i == 48)
    dark = frame.to_ndarray(format="bgr24")
    lit = _face("fr_obama", "obama.jpg")
    det = make_detector("centerface")
    pairs = []
    for key, img in (("dark", dark), ("lit", lit)):
        out = img.copy()
        BlurRedactor().apply(out, det(img))
        pairs.append(Pair(key, 0, img, out))
    r = evaluate(pairs, [dlib_rec, facenet_rec], config=EvalConfig())
    p = r["privacy"]["dlib"]
    assert r["faces"] >= 3
    assert p["reid"][0.6] > 0.0  # the dark faces, matched to their blur
    assert 0.0 < p["judgeable"] < 1.0  # ...and so left out of the judgeable rate
    assert p["reid_judgeable"][0.6] == 0.0  # the lit face's blur is not re-identified
