"""End to end: the `streamanon` command on real footage, checked by an independent detector.

The independent check is dlib's HOG detector (not CenterFace, which the tool itself uses): every
face HOG finds on an input frame must be gone from the same place in the output frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamanon.cli import main
from tests.conftest import REPO, needs_shared


def hog_faces(image_bgr: np.ndarray, upsample: int = 1) -> np.ndarray:

    rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    rects = _hog()(rgb, upsample)
    return np.array(
        [[r.left(), r.top(), r.right(), r.bottom()] for r in rects], np.float32
    ).reshape(-1, 4)


_HOG = []


def _hog():
    import dlib

    if not _HOG:
        _HOG.append(dlib.get_frontal_face_detector())
    return _HOG[0]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


def leaks(original: np.ndarray, anonymized: np.ndarray) -> tuple[int, int]:
    """(faces HOG finds on the original, of those still found at the same place in the output)."""
    before = hog_faces(original)
    if len(before) == 0:
        return 0, 0
    after = hog_faces(anonymized)
    if len(after) == 0:
        return len(before), 0
    return len(before), int((iou(before, after).max(1) > 0.3).sum())


def decode_all(path: Path, every: int = 1) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [
            f.to_ndarray(format="bgr24") for i, f in enumerate(c.decode(video=0)) if i % every == 0
        ]


def stream_summary(path: Path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = sum(1 for _ in c.decode(video=0))
        return {
            "frames": frames,
            "size": (v.codec_context.width, v.codec_context.height),
            "duration": float(v.duration * v.time_base) if v.duration else None,
            "audio": [a.codec_context.name for a in c.streams.audio],
        }


@pytest.mark.slow
@pytest.mark.parametrize(
    "clip", ["face_recognition_short_hamilton_clip.mp4", "intel_asl_gestures_thanks.mkv"]
)
def test_video_no_leaks_and_stream_preserved(tmp_path: Path, clip: str) -> None:
    src = needs_shared("videos", clip)
    dst = tmp_path / f"out{src.suffix}"
    report = tmp_path / "r.json"
    assert main([str(src), "-o", str(dst), "--method", "blur", "-q", "--report", str(report)]) == 0
    a, b = stream_summary(src), stream_summary(dst)
    assert b["frames"] == a["frames"]
    assert b["size"] == a["size"]
    assert b["audio"] == a["audio"]
    if a["duration"]:
        assert abs(b["duration"] - a["duration"]) <= 1.5 / 25
    found = leaked = 0
    for x, y in zip(decode_all(src, every=3), decode_all(dst, every=3), strict=True):
        f, lk = leaks(x, y)
        found += f
        leaked += lk
    print(f"{clip}: HOG faces on input {found}, still found on output {leaked}")
    assert found > 0, "the independent detector should find faces on this clip"
    assert leaked == 0
    r = json.loads(report.read_text())["inputs"][0]
    assert r["frames"] == a["frames"] and r["faces"] > 0 and r["tracks"] >= 1
    assert set(r["ms_per_frame"]) >= {"detect", "anonymize", "write"}


@pytest.mark.slow
@pytest.mark.parametrize("method", ["blur", "pixelate", "solid", "mask"])
def test_group_photos_no_leaks(tmp_path: Path, method: str) -> None:
    folder = needs_shared("groups", "misc")
    out = tmp_path / "out"
    assert main([str(folder), "-o", str(out), "--method", method, "-q"]) == 0
    found = leaked = 0
    for p in sorted(folder.glob("*.jpg")):
        f, lk = leaks(cv2.imread(str(p)), cv2.imread(str(out / p.name)))
        found += f
        leaked += lk
    print(f"{method}: HOG faces on input {found}, still found on output {leaked}")
    assert found >= 10 and leaked == 0


def test_demo_clip_runs_from_the_repo(tmp_path: Path) -> None:
    """The README's first command, on the shipped demo (no ../shared needed)."""
    dst = tmp_path / "demo_out.mp4"
    assert main([str(REPO / "examples" / "demo.mp4"), "-o", str(dst), "-q"]) == 0
    a, b = stream_summary(REPO / "examples" / "demo.mp4"), stream_summary(dst)
    assert a["frames"] == b["frames"] and b["audio"] == ["aac"]
    with av.open(str(dst)) as c:
        assert not any("location" in k for k in c.metadata)  # the fake GPS tag is stripped
    from streamanon.registry import make_detector

    det = make_detector("centerface", thresh=0.5, landmarks=False)
    left = sum(int((det(img).score >= 0.5).sum()) for img in decode_all(dst, every=10))
    assert left == 0


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "streamanon", *args], capture_output=True, text=True, timeout=120
    )


@pytest.mark.parametrize(
    "name, content, expect",
    [
        ("missing.mp4", None, "no such file"),
        ("empty.mp4", b"", "empty file"),
        ("junk.mp4", b"\x00junk" * 100, "not a video"),
        ("bad.jpg", b"\xff\xd8\xff\xe0junk", "not an image"),
    ],
)
def test_bad_inputs_one_line_error(
    tmp_path: Path, name: str, content: bytes | None, expect: str
) -> None:
    src = tmp_path / name
    if content is not None:
        src.write_bytes(content)
    before = set(tmp_path.iterdir())
    r = _run_cli(str(src), "-o", str(tmp_path / f"out{src.suffix}"))
    assert r.returncode != 0
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and expect in lines[0], r.stderr
    assert "Traceback" not in r.stderr
    assert set(tmp_path.iterdir()) == before  # nothing half-written


def test_refuses_to_overwrite(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
    out = tmp_path / "a_anonymized.png"
    out.write_bytes(b"keep me")
    r = _run_cli(str(img))
    assert r.returncode == 3 and "already exists" in r.stderr
    assert out.read_bytes() == b"keep me"
    r = _run_cli(str(img), "-o", str(img), "--overwrite")
    assert r.returncode == 3 and "overwrite the input" in r.stderr
    assert _run_cli(str(img), "--overwrite").returncode == 0
    assert out.read_bytes() != b"keep me"


def test_unwritable_output(tmp_path: Path) -> None:
    img = tmp_path / "a.png"
    cv2.imwrite(str(img), np.zeros((40, 40, 3), np.uint8))
    r = _run_cli(str(img), "-o", str(tmp_path / "no" / "such" / "dir.png"))
    assert r.returncode == 3 and "does not exist" in r.stderr


def test_corrupt_packets_are_skipped(tmp_path: Path) -> None:
    """Garbage bytes in the middle of a stream: the run goes on and counts what it skipped."""
    from tests.test_io import make_clip

    src = make_clip(tmp_path / "c.ts", list(range(0, 4000, 40)), audio=False, size=(320, 240))
    data = bytearray(src.read_bytes())
    rng = np.random.default_rng(0)
    for off in rng.integers(len(data) // 4, 3 * len(data) // 4, 40):
        data[off : off + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
    bad = tmp_path / "corrupt.ts"
    bad.write_bytes(bytes(data))
    report = tmp_path / "r.json"
    r = _run_cli(str(bad), "-o", str(tmp_path / "o.mp4"), "-q", "--report", str(report))
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())["inputs"][0]
    assert rep["frames"] > 50
    assert (tmp_path / "o.mp4").exists()


def test_missed_face_is_still_covered(shared_data: Path) -> None:
    """A pole hides the middle of a tracked face: CenterFace misses it, the tracker keeps covering it."""
    from streamanon.anonymizer import Anonymizer
    from streamanon.types import Frame

    photo = cv2.imread(str(shared_data / "faces/identities/fr_obama/obama.jpg"))
    face = cv2.resize(photo[40:420, 300:590], (145, 190))  # the face spans x+20..x+127
    bg = np.full((360, 640, 3), 90, np.uint8)

    def frame(i: int, pole: bool) -> tuple[np.ndarray, tuple[int, int]]:
        im, x, y = bg.copy(), 100 + 4 * i, 80
        im[y : y + face.shape[0], x : x + face.shape[1]] = face
        if pole:
            cv2.rectangle(im, (x + 45, 0), (x + 100, 360), (40, 40, 45), -1)
        return im, (x, y)

    anon = Anonymizer(method="blur")
    for i in range(10):
        anon(frame(i, False)[0], t=i / 25)
    occluded, (x, y) = frame(10, True)
    assert (anon.detector(occluded).score >= 0.5).sum() == 0, (
        "the pole must hide the face from the detector"
    )
    f = anon.track(Frame(occluded.copy(), 10, 10 * 40, Fraction(1, 1000)))
    # Covered either as a coasting prediction or through a low-score match (ByteTrack stage 2).
    assert len(f.faces) == 1 and f.faces.track_id[0] >= 0
    out = anon.apply(f).image
    # The two visible strips of the face, either side of the pole, must be changed.
    for x0, x1 in ((x + 20, x + 45), (x + 100, x + 127)):
        strip_in = occluded[y + 30 : y + 160, x0:x1].astype(np.float32)
        strip_out = out[y + 30 : y + 160, x0:x1].astype(np.float32)
        assert np.abs(strip_in - strip_out).mean() > 8
