"""Inputs and outputs named the way users name them, through the real CLI (a subprocess).

Every case ends in a valid output or in one line on stderr with a non-zero exit; none leaves a
half-written file or a temporary file behind.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from streamanon.io.atomic import clean_stale_partials
from streamanon.io.images import image_size, read_image
from streamanon.io.sources import is_live_source
from tests.test_io import make_clip

pytestmark = pytest.mark.slow  # each case starts the CLI (~2 s of imports and models)


def cli(
    *args: str, env: dict | None = None, code: str | None = None
) -> subprocess.CompletedProcess:
    """Run ``streamanon ARGS`` (or ``code`` that ends by calling the CLI) in a subprocess."""
    prog = ["-m", "streamanon"] if code is None else ["-c", code]
    return subprocess.run(
        [sys.executable, *prog, *args, "-q", "--method", "blur"],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def one_line_error(r: subprocess.CompletedProcess, code: int) -> str:
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("streamanon: error: "), r.stderr
    return lines[0]


def no_temp_files(folder: Path) -> bool:
    return not any(".partial" in p.name for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", [i * 40 for i in range(25)])


@pytest.fixture(scope="module")
def photo(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("photo") / "photo.png"
    cv2.imwrite(str(p), np.full((64, 96, 3), 128, np.uint8))
    return p


def frames_of(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


# -- output names ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "out, message",
    [
        ("result", "no file extension"),
        ("result.xyz", "unknown video format '.xyz'"),
        ("result.png", "an image extension is for image inputs"),
    ],
)
def test_video_output_names_that_cannot_work_are_one_line(tmp_path, clip, out, message) -> None:
    r = cli(str(clip), "-o", str(tmp_path / out))
    assert message in one_line_error(r, 3)
    assert list(tmp_path.iterdir()) == []


def test_output_folder_that_does_not_exist_yet_is_created(tmp_path, clip) -> None:
    r = cli(str(clip), "-o", f"{tmp_path / 'new' / 'dir'}/")
    assert r.returncode == 0, r.stderr
    assert frames_of(tmp_path / "new" / "dir" / "clip_anonymized.mp4") == 25


def test_image_with_a_video_output_name_is_one_line(tmp_path, photo) -> None:
    r = cli(str(photo), "-o", str(tmp_path / "photo.mp4"))
    assert "is an image" in one_line_error(r, 3)
    assert list(tmp_path.iterdir()) == []


# -- input names -------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["cam-2024-01-01T10:30:00.mp4", "http:clip.mp4"])
def test_local_names_with_colons_are_files(tmp_path, clip, name) -> None:
    src = tmp_path / name
    src.write_bytes(clip.read_bytes())
    r = subprocess.run(
        [sys.executable, "-m", "streamanon", name, "-q", "--method", "blur"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert frames_of(tmp_path / name.replace(".mp4", "_anonymized.mp4")) == 25


def test_one_definition_of_a_live_source() -> None:
    assert is_live_source("rtsp://cam/live") and is_live_source("srt://h:9000")
    assert is_live_source("webcam:0") and is_live_source("/dev/video2")
    for name in ("http:clip.mp4", "cam-2024-01-01T10:30:00.mp4", "rtsp.mp4", "/dev/videos.mp4"):
        assert not is_live_source(name), name


# -- broken inputs -----------------------------------------------------------------------------
def test_corrupt_video_is_one_line_and_no_output(tmp_path, clip) -> None:
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypisom" + os.urandom(4000))
    r = cli(str(bad), "-o", str(tmp_path / "out.mp4"))
    one_line_error(r, 2)
    assert not (tmp_path / "out.mp4").exists() and no_temp_files(tmp_path)


def test_truncated_video_is_written_with_a_warning_and_counted(tmp_path, clip) -> None:
    """Index at the front (faststart), data cut: the frames that exist are anonymized, and
    the run says how many the header promised."""
    fast = tmp_path / "fast.mp4"
    with av.open(str(clip)) as i, av.open(str(fast), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    cut = tmp_path / "cut.mp4"
    data = fast.read_bytes()
    cut.write_bytes(data[: int(len(data) * 0.6)])
    out, rep = tmp_path / "out.mp4", tmp_path / "r.json"
    r = cli(str(cut), "-o", str(out), "--report", str(rep))
    assert r.returncode == 0, r.stderr
    assert "ends early" in r.stderr
    got = json.loads(rep.read_text())["inputs"][0]
    assert 0 < got["frames"] < 25 and got["missing_frames"] == 25 - got["frames"]
    assert frames_of(out) == got["frames"]


def test_a_stage_raising_mid_file_leaves_no_output_and_exits_1(tmp_path, clip) -> None:
    code = (
        "import sys\n"
        "from streamanon.anonymizer import Anonymizer\n"
        "orig = Anonymizer.apply\n"
        "def apply(self, frame):\n"
        "    if frame.index == 10:\n"
        "        raise RuntimeError('stage broke')\n"
        "    return orig(self, frame)\n"
        "Anonymizer.apply = apply\n"
        "from streamanon.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    r = cli(str(clip), "-o", str(tmp_path / "out.mp4"), code=code)
    assert r.returncode == 1, r.stderr
    assert "stage broke" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_sigint_exits_130_and_leaves_no_temp_file(tmp_path) -> None:
    src = make_clip(tmp_path / "long.mp4", [i * 40 for i in range(600)], size=(640, 360))
    out = tmp_path / "out"
    out.mkdir()
    p = subprocess.Popen(
        [sys.executable, "-m", "streamanon", str(src), "-o", f"{out}/", "-q"],
        stderr=subprocess.PIPE,
        text=True,
    )
    # Wait until the temporary output exists: the run is in the middle of the file.
    deadline = time.monotonic() + 120
    while not any(out.iterdir()) and time.monotonic() < deadline and p.poll() is None:
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert "interrupted" in err
    assert list(out.iterdir()) == []


# -- folders -----------------------------------------------------------------------------------
def test_folder_with_junk_goes_on_and_lists_failures(tmp_path, clip, photo) -> None:
    src = tmp_path / "in"
    (src / "sub" / "deeper").mkdir(parents=True)
    (src / "a.png").write_bytes(photo.read_bytes())
    (src / "sub" / "b.png").write_bytes(photo.read_bytes())
    (src / "sub" / "deeper" / "v.mp4").write_bytes(clip.read_bytes())
    (src / "broken.jpg").write_bytes(b"not a jpeg")
    (src / "sub" / "cut.mp4").write_bytes(clip.read_bytes()[:2000])
    (src / "notes.txt").write_text("not media")
    (src / ".hidden.png").write_bytes(photo.read_bytes())
    r = cli(str(src), "-o", str(tmp_path / "out"))
    assert r.returncode == 1, r.stderr
    assert "2 file(s) not anonymized" in r.stderr
    assert "broken.jpg" in r.stderr and "cut.mp4" in r.stderr
    out = tmp_path / "out"
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [
        "a.png",
        "sub/b.png",
        "sub/deeper/v.mp4",
    ]
    assert frames_of(out / "sub" / "deeper" / "v.mp4") == 25


# -- limits and leftovers (no subprocess) -------------------------------------------------------
def test_image_pixel_limit_is_checked_on_the_header(tmp_path, monkeypatch) -> None:
    from streamanon.errors import InputError

    big = tmp_path / "big.png"
    cv2.imwrite(str(big), np.zeros((300, 400, 3), np.uint8))
    assert image_size(big.read_bytes()[:64]) == (400, 300)
    monkeypatch.setenv("STREAMANON_MAX_PIXELS", "100000")
    with pytest.raises(InputError, match="400x300 pixels is over the limit"):
        read_image(big)
    monkeypatch.setenv("STREAMANON_MAX_PIXELS", "120000")
    assert read_image(big).shape == (300, 400, 3)


def test_stale_partials_of_dead_runs_are_removed(tmp_path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    old = time.time() - 2 * 3600
    stale = tmp_path / f".out.{dead.pid}-0123abcd.partial.mp4"
    mine = tmp_path / f".out.{os.getpid()}-0123abcd.partial.mp4"  # a live writer's
    fresh = tmp_path / f".x.{dead.pid}-89abcdef.partial.mp4"  # too young to judge
    for p in (stale, mine, fresh):
        p.write_bytes(b"x")
    os.utime(stale, (old, old))
    os.utime(mine, (old, old))
    assert clean_stale_partials(tmp_path) == [stale]
    assert mine.exists() and fresh.exists()
