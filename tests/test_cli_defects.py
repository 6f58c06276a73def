"""Defects a new user hit (issue 24), each tried again through the real CLI (a subprocess).

Every case must end in a valid output or in one line on stderr with a non-zero exit: no
traceback, no input replaced, no other run's work deleted, no silent change to the media.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from streamanon.batch.journal import JOURNAL_NAME
from streamanon.batch.lock import LOCK_NAME
from tests.conftest import REPO, needs_shared
from tests.test_io import make_clip

PY = sys.executable
pytestmark = pytest.mark.slow  # every case starts the CLI (~2-5 s of imports and models)


def run(*args: str, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "streamanon", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


def one_line(r: subprocess.CompletedProcess, code: int, prefix: str = "streamanon") -> str:
    assert r.returncode == code, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(prefix), r.stderr
    assert "Traceback" not in r.stderr
    return lines[0]


# ---------------------------------------------------------------- explain


@pytest.fixture()
def grey_png(tmp_path) -> Path:
    p = tmp_path / "img.png"
    cv2.imwrite(str(p), np.full((64, 64, 3), 100, np.uint8))
    return p


@pytest.mark.parametrize("link", ["same", "relative", "hard", "symlink"])
def test_explain_never_replaces_its_input(tmp_path, grey_png, link) -> None:
    before = grey_png.read_bytes()
    out = {
        "same": grey_png,
        "relative": tmp_path / "." / "img.png",
        "hard": tmp_path / "hard.png",
        "symlink": tmp_path / "sym.png",
    }[link]
    if link == "hard":
        os.link(grey_png, out)
    elif link == "symlink":
        out.symlink_to(grey_png)
    # --overwrite does not make replacing the input acceptable.
    r = run("explain", str(grey_png), "-o", str(out), "--overwrite")
    assert "would overwrite the input" in one_line(r, 3, "streamanon explain:")
    assert grey_png.read_bytes() == before


def test_explain_keeps_an_existing_output_without_overwrite(tmp_path, grey_png) -> None:
    other = tmp_path / "other.png"
    other.write_bytes(b"keep me")
    r = run("explain", str(grey_png), "-o", str(other))
    assert "already exists (use --overwrite" in one_line(r, 3, "streamanon explain:")
    assert other.read_bytes() == b"keep me"


@pytest.mark.slow
def test_explain_overwrite_replaces_atomically(tmp_path) -> None:
    face = needs_shared("groups", "misc", "deepface_couple.jpg")
    out = tmp_path / "cam.png"
    out.write_bytes(b"old")
    r = run("explain", str(face), "-o", str(out), "--overwrite")
    assert r.returncode == 0, r.stderr
    img = cv2.imread(str(out))
    assert img is not None and img.shape[1] == 600  # two 300 px panels
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


# ---------------------------------------------------------------- batch: one run per folder


@pytest.fixture(scope="module")
def small_src(tmp_path_factory) -> Path:
    """Two tiny clips: a batch over them takes a few seconds."""
    root = tmp_path_factory.mktemp("defects_src")
    make_clip(root / "a.mp4", [i * 40 for i in range(10)], audio=False)
    make_clip(root / "b.mp4", [i * 40 for i in range(10)], audio=False)
    return root


HOLD = """
import sys, time
from streamanon.batch.lock import FolderLock
with FolderLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(60)
"""


def test_second_batch_on_one_folder_is_refused_naming_the_first(tmp_path, small_src) -> None:
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen(
        [PY, "-c", HOLD, str(out)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        # The first run's temporary output (a live process's): never deleted by the second.
        partial = out / f".a.{holder.pid}-0123abcd.partial.mp4"
        partial.write_bytes(b"in progress")
        r = run("batch", str(small_src), "-o", str(out), "-m", "blur", "-q")
        line = one_line(r, 3, "streamanon: error:")
        assert f"pid {holder.pid}" in line and "another streamanon batch" in line
        assert partial.read_bytes() == b"in progress"
        assert not (out / "a.mp4").exists() and not (out / JOURNAL_NAME).exists()
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone (killed: it could not clean up): its lock is taken over.
    assert (out / LOCK_NAME).exists()
    r = run("batch", str(small_src), "-o", str(out), "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr
    assert (out / "a.mp4").is_file() and (out / "b.mp4").is_file()
    assert not (out / LOCK_NAME).exists()  # released at the end: no trace left
    # The dead process's temporary file of a.mp4 was removed; nothing else of ours is left.
    assert not [p for p in out.iterdir() if ".partial" in p.name]


def test_batch_keeps_a_live_processes_temporary_file(tmp_path, small_src) -> None:
    out = tmp_path / "out"
    out.mkdir()
    sleeper = subprocess.Popen([PY, "-c", "import time; time.sleep(60)"])
    try:
        # e.g. `streamanon a.mp4 -o out/a.mp4` running beside the batch
        partial = out / f".a.{sleeper.pid}-0123abcd.partial.mp4"
        partial.write_bytes(b"in progress")
        r = run("batch", str(small_src), "-o", str(out), "-m", "blur", "-q")
        assert r.returncode == 0, r.stderr
        assert partial.read_bytes() == b"in progress"
    finally:
        sleeper.kill()
        sleeper.wait()


# ---------------------------------------------------------------- batch journal


def test_journal_with_bad_bytes_and_a_torn_last_line_goes_on(tmp_path, small_src) -> None:
    out = tmp_path / "out"
    r = run("batch", str(small_src), "-o", str(out), "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr
    journal = out / JOURNAL_NAME
    lines = journal.read_bytes().splitlines(keepends=True)
    assert len(lines) == 2
    first, last = (json.loads(x)["file"] for x in lines)  # in the order they finished
    mtime = (out / last).stat().st_mtime_ns
    # What a crash leaves: the last output in place, its line half-written; plus junk bytes.
    journal.write_bytes(lines[0] + b"\xff\xfe junk\n" + lines[1][:30])
    r = run("batch", str(small_src), "-o", str(out), "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stderr.count("cut short") == 1 and f"{last} is done again" in r.stderr
    assert (out / last).stat().st_mtime_ns != mtime  # redone, not refused
    text = journal.read_bytes()
    assert text.endswith(b"\n")
    good = [json.loads(x) for x in text.splitlines() if x.startswith(b"{")]
    assert [x["file"] for x in good] == [first, last]  # the torn line was cut off


def test_other_options_message_names_the_file(tmp_path, small_src) -> None:
    out = tmp_path / "out"
    r = run("batch", str(small_src), "-o", str(out), "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr
    r = run("batch", str(small_src), "-o", str(out), "-m", "pixelate", "-q")
    line = one_line(r, 3, "streamanon: error:")
    assert str(out / "a.mp4") in line and "made with other options" in line
    assert "1 more file" in line


def test_two_batches_started_together_share_nothing(tmp_path, small_src) -> None:
    """Both started at once on one folder: one does the work, the other is refused."""
    out = tmp_path / "out"
    cmd = [PY, "-m", "streamanon", "batch", str(small_src), "-o", str(out), "-m", "blur", "-q"]
    procs = [subprocess.Popen(cmd, cwd=REPO, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    t0 = time.monotonic()
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]  # type: ignore[union-attr]
    assert time.monotonic() - t0 < 300
    codes = sorted(c for c, _ in results)
    if codes == [0, 0]:  # the first finished before the second started: a rerun skips all
        pass
    else:
        assert codes == [0, 3], results
        err = next(e for c, e in results if c == 3)
        assert "another streamanon batch" in err and "Traceback" not in err
    assert (out / "a.mp4").is_file() and (out / "b.mp4").is_file()
    assert not [p for p in out.iterdir() if ".partial" in p.name]


# ---------------------------------------------------------------- names, options, streams


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_clip(tmp_path_factory.mktemp("clip") / "clip.mp4", [i * 40 for i in range(5)])


def test_a_244_character_input_name_works(tmp_path, clip) -> None:
    # 244 + "_anonymized" = 255 bytes: the longest name Linux takes; the temporary name must fit.
    src = tmp_path / ("n" * 240 + ".mp4")
    src.write_bytes(clip.read_bytes())
    r = run(str(src), "-q", "-m", "blur")
    assert r.returncode == 0, r.stderr
    out = tmp_path / ("n" * 240 + "_anonymized.mp4")
    assert out.is_file() and len(out.name) == 255
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_an_output_name_over_the_limit_is_one_line(tmp_path, clip) -> None:
    src = tmp_path / ("n" * 246 + ".mp4")  # its default output name would be 261 bytes
    src.write_bytes(clip.read_bytes())
    line = one_line(run(str(src), "-q", "-m", "blur"), 3)
    assert "over the file system's limit of 255" in line and "shorter name with -o" in line
    line = one_line(run(str(clip), "-o", str(tmp_path / ("x" * 300 + ".mp4")), "-q"), 3)
    assert "304 bytes, over the file system's limit" in line


def test_errors_name_the_output_not_its_temporary_file(tmp_path, clip) -> None:
    out = tmp_path / "out.mp4"
    for extra in (["--codec", "nonexistent"], ["--codec-option", "profile=bogus"]):
        r = run(str(clip), "-o", str(out), "-q", "-m", "blur", *extra)
        assert r.returncode == 3, r.stderr
        assert f"streamanon: error: {out}:" in r.stderr and ".partial" not in r.stderr
        assert "Traceback" not in r.stderr
    r = run(str(clip), "-o", str(tmp_path / "out.webm"), "-m", "blur")  # aac cannot go in webm
    assert r.returncode == 0, r.stderr
    assert "audio stream 1 cannot go into" in r.stderr and ".partial" not in r.stderr
    assert not [p for p in tmp_path.iterdir() if ".partial" in p.name]


def test_one_file_output_for_several_inputs_is_refused(tmp_path, clip) -> None:
    out = tmp_path / "x.mp4"
    line = one_line(run(str(clip), str(clip), "-o", str(out), "-q", "-m", "blur"), 2)
    assert "several inputs need an output folder" in line
    assert not out.exists()
    # A folder whose name has a dot is fine when it says so (trailing /).
    r = run(str(clip), str(tmp_path / "photo.png"), "-o", f"{tmp_path / 'v1.0'}/", "-q")
    assert r.returncode != 0 and "several inputs" not in r.stderr  # (photo.png: no such file)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--crf", "999"], "--crf 999: must be >= 0 and <= 63"),
        (["--crf", "60"], "--crf 60: libx264 takes 0 to 51"),
        (["--crf", "-1"], "--crf -1: must be >= 0"),
        (["--thresh", "1.5"], "--thresh 1.5: must be >= 0 and <= 1"),
        (["--mask-scale", "0"], "--mask-scale 0: must be > 0"),
        (["--threads", "0"], "--threads 0: must be >= 1"),
        (["--plate-every", "0"], "--plate-every 0: must be >= 1"),
        (["--coast", "-2"], "--coast -2: must be >= 0"),
        (["--bitrate", "0"], "--bitrate '0': must be more than 0"),
        (["--timeout", "0"], "--timeout 0: must be > 0"),
        (["--preset", "nonsense"], "--preset 'nonsense': libx264 takes ultrafast,"),
    ],
)
def test_numeric_options_out_of_range_are_one_line(tmp_path, clip, flags, message) -> None:
    out = tmp_path / "out.mp4"
    line = one_line(run(str(clip), "-o", str(out), "-q", "-m", "blur", *flags), 2)
    assert message in line
    assert not out.exists()


def test_batch_checks_ranges_too(tmp_path, small_src) -> None:
    line = one_line(run("batch", str(small_src), "-o", str(tmp_path / "o"), "--crf", "99"), 2)
    assert "--crf 99" in line


SILENT_SERVER = """
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(8)
print(s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept()[0])  # accept, never answer
"""


@pytest.mark.parametrize("scheme", ["http", "rtsp", "tcp"])
def test_a_stream_that_never_answers_is_a_timeout(tmp_path, scheme) -> None:
    server = subprocess.Popen([PY, "-c", SILENT_SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        url = f"{scheme}://127.0.0.1:{port}/cam"
        out = tmp_path / "live.mkv"
        t0 = time.monotonic()
        r = run(url, "-o", str(out), "--timeout", "1", "--no-reconnect", "-q", "-m", "blur")
        line = one_line(r, 2)
        assert line.startswith(f"streamanon: error: {url}: no answer within")
        assert "not a video" not in line
        assert time.monotonic() - t0 < 60
        assert not out.exists()
    finally:
        server.kill()
        server.wait()


# ---------------------------------------------------------------- --plate-model


def _onnx(path: Path, in_shape: list[int], out: str, elem: str = "FLOAT") -> Path:
    """A valid ONNX graph that is not a plate detector: Identity, or a mean over H and W."""
    from onnx import TensorProto, helper, save

    et = getattr(TensorProto, elem)
    x = helper.make_tensor_value_info("images", et, in_shape)
    if out == "identity":
        node = helper.make_node("Identity", ["images"], ["y"])
        y = helper.make_tensor_value_info("y", et, in_shape)
    else:
        node = helper.make_node("ReduceMean", ["images"], ["y"], axes=[2, 3], keepdims=0)
        y = helper.make_tensor_value_info("y", et, in_shape[:2])
    graph = helper.make_graph([node], "not_plates", [x], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    save(model, str(path))
    return path


@pytest.mark.parametrize(
    "in_shape, out, elem, message",
    [
        ([1, 3, 64, 64], "identity", "FLOAT", "output of shape (1, 3, 64, 64) is not a YOLOv9"),
        ([1, 3, 64, 64], "mean", "FLOAT", "output of shape (1, 3) is not a YOLOv9"),
        ([1, 3, 64, 64], "identity", "UINT8", "does not run on a (1, 3, H, W) float image"),
        ([1, 1, 64, 64], "identity", "FLOAT", "expected one fixed (1, 3, S, S) input"),
    ],
)
def test_a_plate_model_of_the_wrong_shape_is_refused_before_any_work(
    tmp_path, clip, in_shape, out, elem, message
) -> None:
    model = _onnx(tmp_path / "plates.onnx", in_shape, out, elem)
    dst = tmp_path / "out.mp4"
    r = run(str(clip), "-o", str(dst), "--dashcam", "--plate-model", str(model), "-m", "blur")
    line = one_line(r, 2)
    assert line.startswith(f"streamanon: error: --plate-model {model}: ") and message in line
    assert not dst.exists() and not [p for p in tmp_path.iterdir() if ".partial" in p.name]


# ---------------------------------------------------------------- nothing changed silently


def _encode(path: Path, codec: str, pix_fmt: str, size: tuple[int, int], n: int = 10) -> Path:
    """``n`` frames of a moving gradient (no face: only the format is under test)."""
    import av

    w, h = size
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = w, h, pix_fmt
        for i in range(n):
            img = np.zeros((h, w, 3), np.uint8)
            img[:, :, 1] = (np.arange(w)[None, :] + 5 * i) % 256
            img[:, :, 2] = (np.arange(h)[:, None] * 2) % 256
            f = av.VideoFrame.from_ndarray(img, format="bgr24")
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    return path


def _probe(path: Path) -> dict:
    import av

    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frame = next(c.decode(v))
        return {
            "size": (frame.width, frame.height),
            "pix_fmt": frame.format.name,
            "field_order": v.codec_context.field_order,
            "interlaced": frame.interlaced_frame,
            "streams": [s.type for s in c.streams],
        }


def test_ten_bit_video_stays_ten_bit(tmp_path) -> None:
    src = _encode(tmp_path / "p10.mkv", "libx264", "yuv420p10le", (160, 96))
    out = tmp_path / "out.mp4"
    r = run(str(src), "-o", str(out), "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert _probe(out)["pix_fmt"] == "yuv420p10le"
    assert "8-bit" not in r.stderr
    # An encoder without a deeper format: written as 8-bit, and said so (once).
    r = run(str(src), "-o", str(tmp_path / "out.avi"), "--codec", "mpeg4", "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("10-bit source written as 8-bit: mpeg4") == 1


def test_an_odd_size_is_kept(tmp_path) -> None:
    src = _encode(tmp_path / "odd.mkv", "ffv1", "yuv420p", (161, 97))
    out = tmp_path / "out.mp4"  # x264 cannot do 4:2:0 at odd sizes: 4:4:4, said once
    r = run(str(src), "-o", str(out), "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert _probe(out)["size"] == (161, 97)
    assert r.stderr.count("odd size 161x97 kept by encoding 4:4:4") == 1
    webm = tmp_path / "out.webm"  # VP9 takes odd sizes in 4:2:0: nothing to say
    r = run(str(src), "-o", str(webm), "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert _probe(webm)["size"] == (161, 97) and _probe(webm)["pix_fmt"] == "yuv420p"
    assert "odd size" not in r.stderr and "cropped" not in r.stderr
    r = run(str(src), "-o", str(tmp_path / "out.avi"), "--codec", "mpeg4", "-m", "blur")
    assert r.returncode == 0, r.stderr  # mpeg4 has no 4:4:4: cropped, and said so
    assert r.stderr.count("cropped from 161x97 to 160x96: mpeg4 needs even sizes") == 1


def test_video_alpha_that_cannot_be_kept_is_said(tmp_path) -> None:
    src = _encode(tmp_path / "alpha.mov", "qtrle", "argb", (64, 48))
    r = run(str(src), "-o", str(tmp_path / "out.mp4"), "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("alpha channel (argb) is not kept: libx264 has none") == 1
    # WebM's VP9 alpha is stored beside the picture and FFmpeg does not decode it: said once.
    webm = tmp_path / "alpha.webm"
    _ffmpeg("-f", "lavfi", "-t", "0.2", "-i", "testsrc=size=64x48:rate=25,format=yuva420p",
            "-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p", str(webm))  # fmt: skip
    r = run(str(webm), "-o", str(tmp_path / "out.webm"), "-m", "blur", "--no-audio")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("its alpha channel is not decoded here") == 1


def _ffmpeg(*args: str) -> None:
    from tests.conftest import needs_ffmpeg

    subprocess.run([needs_ffmpeg(), "-v", "error", "-y", *args], check=True, timeout=120)


def test_subtitles_are_copied(tmp_path) -> None:
    srt = tmp_path / "s.srt"
    srt.write_text("1\n00:00:00,000 --> 00:00:00,300\nhello\n")
    src = tmp_path / "subs.mkv"
    _ffmpeg("-f", "lavfi", "-t", "0.4", "-i", "testsrc=size=160x96:rate=25", "-i", str(srt),
            "-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:s", "srt", str(src))  # fmt: skip
    out = tmp_path / "out.mkv"
    r = run(str(src), "-o", str(out), "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr
    assert _probe(out)["streams"] == ["video", "subtitle"]
    import av

    with av.open(str(out)) as c:
        texts = [bytes(p) for p in c.demux(c.streams.subtitles[0]) if p.size]
    assert texts == [b"hello"]
    # MP4 cannot hold SubRip: the stream is dropped, and that is said.
    r = run(str(src), "-o", str(tmp_path / "out.mp4"), "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr
    assert "subtitle stream 1 cannot go into" in r.stderr and "dropped" in r.stderr


def test_interlaced_video_stays_interlaced(tmp_path) -> None:
    src = tmp_path / "interlaced.mp4"
    _ffmpeg("-f", "lavfi", "-t", "0.4", "-i", "testsrc=size=160x96:rate=25", "-vf", "setfield=tff",
            "-flags", "+ildct+ilme", "-c:v", "libx264", "-x264-params", "tff=1",
            "-pix_fmt", "yuv420p", str(src))  # fmt: skip
    assert _probe(src)["interlaced"]
    out = tmp_path / "out.mkv"
    r = run(str(src), "-o", str(out), "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr
    got = _probe(out)
    assert got["interlaced"] and got["field_order"] == 2  # top field first, as the source
    r = run(str(src), "-o", str(tmp_path / "out.webm"), "-m", "blur", "-q")
    assert r.returncode == 0 and "written as progressive frames" in r.stderr


@pytest.mark.parametrize(
    "kind, ext, keeps",
    [
        ("rgba", ".png", "alpha"),
        ("rgba", ".webp", "alpha"),
        ("rgba", ".jpg", None),
        ("deep", ".png", "16-bit"),
        ("grey16", ".png", "16-bit grey"),
    ],
)
def test_image_alpha_and_depth_are_kept(tmp_path, kind, ext, keeps) -> None:
    face = cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg")))
    h, w = face.shape[:2]
    alpha = np.full((h, w), 255, np.uint8)
    alpha[: h // 5] = 0
    stored = {
        "rgba": np.dstack([face, alpha]),
        "deep": face.astype(np.uint16) * 256 + 77,  # low bits that 8 bits cannot carry
        "grey16": cv2.cvtColor(face, cv2.COLOR_BGR2GRAY).astype(np.uint16) * 256 + 77,
    }[kind]
    src = tmp_path / f"{kind}{'.webp' if ext == '.webp' else '.png'}"
    cv2.imwrite(str(src), stored, [cv2.IMWRITE_WEBP_QUALITY, 101] if ext == ".webp" else [])
    out = tmp_path / f"out{ext}"
    r = run(str(src), "-o", str(out), "-m", "blur")
    assert r.returncode == 0, r.stderr
    got = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    plain = cv2.imread(str(src), cv2.IMREAD_COLOR)
    anonymized = cv2.imread(str(out), cv2.IMREAD_COLOR)
    assert np.mean(np.any(anonymized != plain, axis=2)) > 0.02  # the faces were blurred
    if keeps is None:
        assert got.ndim == 3 and got.shape[2] == 3
        assert r.stderr.count("alpha channel (.jpg has none) not kept") == 1
        return
    assert "not kept" not in r.stderr
    source = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
    assert got.dtype == source.dtype and got.shape == source.shape
    if kind == "rgba":
        assert np.array_equal(got[:, :, 3], source[:, :, 3])
    else:
        # Away from the faces every 16-bit value is the source's own, low bits included.
        same = got == source
        assert np.mean(same) > 0.7 and np.all(got[same] % 256 == 77)


# ---------------------------------------------------------------- more tracebacks of the kind


def test_manifest_that_is_not_utf8_is_one_line(tmp_path, small_src) -> None:
    bad = tmp_path / "list.txt"
    bad.write_bytes(f"{small_src / 'a.mp4'}\n".encode() + b"caf\xe9.mp4\n")  # Latin-1
    line = one_line(run("batch", str(bad), "-o", str(tmp_path / "out"), "-q"), 2)
    assert f"{bad}:2: not UTF-8 text" in line


def test_csv_manifest_with_a_short_row_goes_on(tmp_path, small_src) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text(f"name,path\nonly-a-name\nb,{small_src / 'b.mp4'}\n")
    r = run("batch", str(manifest), "-o", str(tmp_path / "out"), "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert "no path column; line ignored" in r.stderr and "Traceback" not in r.stderr
    assert (tmp_path / "out" / "b.mp4").is_file()


@pytest.mark.parametrize("batch", [False, True])
def test_a_report_that_cannot_be_written_is_refused_before_the_work(
    tmp_path, small_src, batch
) -> None:
    report = tmp_path / "missing" / "report.json"
    out = tmp_path / ("out" if batch else "a.mp4")
    args = ["batch", str(small_src)] if batch else [str(small_src / "a.mp4")]
    line = one_line(run(*args, "-o", str(out), "--report", str(report), "-m", "blur", "-q"), 3)
    assert "output folder does not exist" in line
    assert not (out / "a.mp4" if batch else out).exists()


def test_ten_bit_pixels_outside_faces_keep_their_ten_bits(tmp_path) -> None:
    """Not only the format: outside the anonymized boxes every 10-bit sample is the source's
    (FFV1, lossless, so equality can be asserted); the faces are covered."""
    import av

    face = cv2.resize(
        cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg"))),
        (320, 188),
    )
    h, w = face.shape[:2]
    src = tmp_path / "deep.mkv"
    with av.open(str(src), "w") as c:
        s = c.add_stream("ffv1", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p10le"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(face, format="bgr24").reformat(format="yuv420p10le")
            y = np.frombuffer(f.planes[0], np.uint16).reshape(h, -1)[:, :w]
            y[:] = np.clip(y.astype(np.int32) + np.arange(w)[None, :] % 4, 0, 1023)  # < 8 bits
            f.pts = i
            for p in s.encode(f):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "out.mkv"
    r = run(str(src), "-o", str(out), "--codec", "ffv1", "-m", "blur", "-q")
    assert r.returncode == 0, r.stderr

    def luma(path: Path) -> np.ndarray:
        with av.open(str(path)) as c:
            f = next(c.decode(video=0))
            assert f.format.name == "yuv420p10le"
            return np.frombuffer(f.planes[0], np.uint16).reshape(f.height, -1)[:, : f.width].copy()

    a, b = luma(src), luma(out)
    same = a == b
    assert 0.6 < np.mean(same) < 0.97  # the background exactly, the faces not
    assert np.mean(a[same] % 4 != 0) > 0.5  # detail below 8 bits is there, not rounded away


def test_video_alpha_is_kept_by_an_encoder_that_has_it(tmp_path) -> None:
    import av

    face = cv2.resize(
        cv2.imread(str(needs_shared("groups", "misc", "face_recognition_two_people.jpg"))),
        (320, 188),
    )
    h, w = face.shape[:2]
    alpha = np.full((h, w), 255, np.uint8)
    alpha[:, : w // 3] = 0  # the left third transparent
    src = tmp_path / "keyed.mov"
    with av.open(str(src), "w") as c:
        s = c.add_stream("qtrle", rate=25)
        s.width, s.height, s.pix_fmt = w, h, "argb"
        for i in range(3):
            f = av.VideoFrame.from_ndarray(np.dstack([face, alpha]), format="bgra")
            f.pts = i
            for p in s.encode(f.reformat(format="argb")):
                c.mux(p)
        for p in s.encode(None):
            c.mux(p)
    out = tmp_path / "out.mov"
    r = run(str(src), "-o", str(out), "--codec", "qtrle", "-m", "blur")
    assert r.returncode == 0, r.stderr
    assert "not kept" not in r.stderr
    with av.open(str(out)) as c:
        got = next(c.decode(video=0)).to_ndarray(format="bgra")
    assert np.array_equal(got[:, :, 3], alpha)
    assert np.mean(np.any(got[:, :, :3] != face, axis=2)) > 0.02  # the faces were blurred
