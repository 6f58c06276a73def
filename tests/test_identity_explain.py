"""`streamanon explain`: the H | Ĥ Grad-CAM panel on a real face, and its errors."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from streamanon.explain import explain_main
from tests.conftest import needs_shared


@pytest.fixture(scope="module")
def face_path():
    return needs_shared("faces", "identities", "fr_biden", "biden.jpg")


def test_explain_writes_side_by_side_heatmaps(face_path, tmp_path):
    out = tmp_path / "cam.png"
    assert explain_main([str(face_path), "-o", str(out)]) == 0
    img = cv2.imread(str(out))
    assert img.shape[1] == 600 and img.shape[0] > 300
    left, right = img[:300, :300].astype(int), img[:300, 300:].astype(int)
    # Both panels show the same aligned face; the heat (strong red/blue tint) is on the left.
    tint = lambda p: np.abs(p[:, :, 2] - p[:, :, 0]).mean()  # noqa: E731
    assert tint(left) > tint(right) + 5


def test_explain_with_a_given_box_and_weights(face_path, tmp_path):
    image = cv2.imread(str(face_path))
    h, w = image.shape[:2]
    out = tmp_path / "cam.jpg"
    box = f"{w * 0.25:.0f},{h * 0.2:.0f},{w * 0.75:.0f},{h * 0.7:.0f}"
    assert (
        explain_main([str(face_path), "-o", str(out), "--box", box, "-k", "2", "--weights", "1,2"])
        == 0
    )
    assert cv2.imread(str(out)) is not None


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--box", "1,2,3"], "--box"),
        (["-k", "3", "--weights", "1,2"], "weights"),
        (["--weights", "a,b"], "--weights"),
        (["-k", "0"], "-k"),
        (["--frobnicate"], "unrecognized"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(face_path, tmp_path, capsys, extra, message):
    assert explain_main([str(face_path), "-o", str(tmp_path / "x.png"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_bad_inputs_exit_2(tmp_path, capsys):
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 200, 3), 128, np.uint8))
    assert explain_main([str(blank), "-o", str(tmp_path / "x.png")]) == 2
    assert "no face" in capsys.readouterr().err
    assert explain_main([str(tmp_path / "missing.jpg"), "-o", str(tmp_path / "x.png")]) == 2
    assert explain_main([str(blank), "-o", str(tmp_path / "x.gif")]) == 2


def test_vca_panel_is_appended_below(face_path, tmp_path):
    """--vca puts the real visual-clue panel (visual.explain.render_vca: delegates drawn from
    the shipped bank) under the IFA panel, scaled to its width; the IFA part is unchanged."""
    ifa, both = tmp_path / "ifa.png", tmp_path / "both.png"
    assert explain_main([str(face_path), "-o", str(ifa)]) == 0
    assert explain_main([str(face_path), "-o", str(both), "--vca"]) == 0
    top, img = cv2.imread(str(ifa)), cv2.imread(str(both))
    h = top.shape[0]
    assert img.shape[1] == top.shape[1] and img.shape[0] > h + 50
    assert np.abs(img[:h].astype(int) - top).mean() < 1.0  # same IFA panel (PNG, same run)
    assert img[h:].std() > 20  # a picture of faces, not a blank strip
