"""`streamanon batch`: plan, journal, local pool, a real local Ray cluster, faults, chunks.

The slow tests build a folder of short clips and photos from ../shared/data (trimmed and
scaled down with PyAV so a batch takes seconds), run it locally and on Ray, and compare every
output with a single-file run of the same input: same frames, same pts, same audio packets.
Coverage at chunk cuts is judged by dlib's HOG detector, not by CenterFace, which drives the
redaction.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamanon.batch.journal import JOURNAL_NAME, Journal, fingerprint
from streamanon.batch.plan import discover
from tests.conftest import REPO, missing, needs_shared

PY = sys.executable


# ---------------------------------------------------------------- helpers


def make_clip(src: Path, dst: Path, seconds: float, width: int, gop: int | None = None) -> None:
    """The first ``seconds`` of ``src``'s video scaled to ``width`` (H.264, ultrafast), with
    the audio packets of that span copied."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        v = inp.streams.video[0]
        h = round(v.codec_context.height * width / v.codec_context.width / 2) * 2
        ov = out.add_stream("libx264", rate=v.average_rate)
        ov.width, ov.height, ov.pix_fmt = width, h, "yuv420p"
        ov.time_base = v.time_base
        ov.options = {"preset": "ultrafast", "crf": "26", **({"g": str(gop)} if gop else {})}
        auds = {a.index: out.add_stream_from_template(a) for a in inp.streams.audio}
        # Seconds of video: some files start their video well after 0 (hamilton: 0.85 s).
        end = float((v.start_time or 0) * v.time_base) + seconds
        for p in inp.demux(v, *inp.streams.audio):
            if p.pts is None:
                continue
            if float(p.pts * p.time_base) >= end:
                if p.stream.type == "video":
                    break
                continue
            if p.stream.type == "audio":
                if p.dts is not None and p.size:
                    p.stream = auds[p.stream.index]
                    out.mux(p)
                continue
            for f in p.decode():
                g = f.reformat(width, h, "yuv420p")
                g.pts, g.time_base = f.pts, f.time_base
                for q in ov.encode(g):
                    out.mux(q)
        for q in ov.encode(None):
            out.mux(q)


def media_summary(path: Path) -> dict:
    """What must match between a batch output and a single-file run: frames, pts, audio."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = [f.pts for f in c.decode(v)]
        tb = v.time_base
    audio = []
    with av.open(str(path)) as c:
        if c.streams.audio:
            for p in c.demux(*c.streams.audio):
                if p.size:
                    audio.append((p.stream.index, p.pts, hashlib.md5(bytes(p)).hexdigest()))
    return {"frames": len(pts), "pts_s": [float(x * tb) for x in pts], "audio": audio}


def journal_lines(out_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (out_dir / JOURNAL_NAME).read_text().splitlines() if x]


# The test cluster is the test's own (started and stopped by it, joined at 127.0.0.1); Ray's
# token authentication (on by default in Ray 2.60) is turned off for it and its drivers.
RAY_ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def run_batch_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [PY, "-m", "streamanon", "batch", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=RAY_ENV,
    )


def run_chunked(src: Path, out: Path, *, workers: int, overlap: float) -> dict:
    """`streamanon batch` of ``src`` into ``out`` in 2-s chunks (blur); its one journal line."""
    r = run_batch_cli(
        str(src), "-o", str(out), "--workers", str(workers), "--chunk-seconds", "2",
        "--chunk-overlap", str(overlap), "-m", "blur", "-q",
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    (line,) = journal_lines(out)
    return line


VIDEOS = {
    "drive_a/d3.mp4": ("liveportrait_driving_d3.mp4", 256),
    "drive_a/d10.mp4": ("liveportrait_driving_d10.mp4", 256),
    "drive_a/night/d11.mp4": ("liveportrait_driving_d11.mp4", 256),
    "drive_b/hamilton.mp4": ("face_recognition_short_hamilton_clip.mp4", 320),
    "drive_b/day2/classroom.mp4": ("intel_sample_videos_classroom.mp4", 320),
    "drive_b/day2/asl.mkv": ("intel_asl_gestures_again.mkv", 256),
}
PHOTOS = {
    "photos/couple.jpg": ("groups", "misc", "deepface_couple.jpg"),
    "photos/two.jpg": ("groups", "misc", "face_recognition_two_people.jpg"),
    "photos/crowd/1.jpg": ("groups", "ultralight_crowd", "1.jpg"),
}


@pytest.fixture(scope="module")
def clipset(tmp_path_factory) -> Path:
    """≥ 8 media files in subfolders, a junk text file and a corrupt .mp4."""
    videos = needs_shared("videos")
    root = tmp_path_factory.mktemp("batch_src")
    for rel, (name, width) in VIDEOS.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        make_clip(videos / name, root / rel, 1.2, width)
    for rel, parts in PHOTOS.items():
        src = needs_shared(*parts)
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / rel)
    (root / "README.txt").write_text("not media: listed as skipped\n")
    (root / "drive_b" / "broken.mp4").write_bytes(b"\x00not a video" * 64)
    return root


@pytest.fixture(scope="module")
def reference(clipset, tmp_path_factory) -> dict[str, Path]:
    """Each media file run alone through `anonymize_file` (the single-file path)."""
    from streamanon.run import anonymize_file

    out = tmp_path_factory.mktemp("batch_ref")
    refs = {}
    for rel in [*VIDEOS, *PHOTOS]:
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        anonymize_file(clipset / rel, dst, method="blur")
        refs[rel] = dst
    return refs


def check_outputs(out_dir: Path, reference: dict[str, Path]) -> None:
    for rel, ref in reference.items():
        got = out_dir / rel
        assert got.is_file(), rel
        if rel in VIDEOS:
            a, b = media_summary(got), media_summary(ref)
            assert a["frames"] == b["frames"], rel
            assert a["pts_s"] == b["pts_s"], rel
            assert a["audio"] == b["audio"], rel
        else:
            import cv2

            assert cv2.imread(str(got)).shape == cv2.imread(str(ref)).shape


def check_journal(out_dir: Path, expect_failed: set[str]) -> list[dict]:
    lines = journal_lines(out_dir)
    files = [x["file"] for x in lines]
    assert sorted(files) == sorted(set(files)), "a file was journaled twice"
    assert set(files) == set(VIDEOS) | set(PHOTOS) | {"drive_b/broken.mp4"}
    assert {x["file"] for x in lines if x["status"] == "failed"} == expect_failed
    return lines


# ---------------------------------------------------------------- fast: plan and journal


def test_discover_folder_keeps_layout_and_lists_junk(tmp_path):
    src = tmp_path / "src"
    for rel in ["a.mp4", "x/b.MOV", "x/y/c.jpg", "x/notes.txt", ".hidden.mp4", ".cache/d.mp4"]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(b"x")
    out = src / "anon"  # an output folder inside the source is not read back
    out.mkdir()
    (out / "a.mp4").write_bytes(b"x")
    plan = discover(src, out, probe=False)
    assert [(i.rel, i.kind) for i in plan.items] == [
        ("a.mp4", "video"),
        ("x/b.MOV", "video"),
        ("x/y/c.jpg", "image"),
    ]
    assert [Path(p).name for p, _ in plan.skipped] == ["notes.txt"]


def test_manifests_txt_and_csv(tmp_path):
    (tmp_path / "d").mkdir()
    for n in ("a.mp4", "b.jpg"):
        (tmp_path / "d" / n).write_bytes(b"x")
    txt = tmp_path / "list.txt"
    txt.write_text(f"# drives\nd/a.mp4\n{tmp_path / 'd' / 'b.jpg'}\n")
    assert [i.rel for i in discover(txt, probe=False).items] == ["d/a.mp4", "b.jpg"]
    csv_ = tmp_path / "list.csv"
    csv_.write_text("path,output\nd/a.mp4,cam1/a.mp4\nd/b.jpg,\n")
    assert [i.rel for i in discover(csv_, probe=False).items] == ["cam1/a.mp4", "d/b.jpg"]
    bad = tmp_path / "bad.txt"
    bad.write_text("d/missing.mp4\n")
    from streamanon.errors import InputError

    with pytest.raises(InputError, match="does not exist"):
        discover(bad, probe=False)
    escape = tmp_path / "esc.csv"
    escape.write_text("path,output\nd/a.mp4,../a.mp4\n")
    with pytest.raises(InputError, match="inside the output folder"):
        discover(escape, probe=False)


def test_journal_resume_rules(tmp_path):
    from streamanon.anonymizer import Options
    from streamanon.run import EncodeOptions

    src = tmp_path / "a.jpg"
    src.write_bytes(b"x")
    out = tmp_path / "out"
    out.mkdir()
    (item,) = discover(tmp_path, out, probe=False).items
    item = type(item)(src, "a.jpg", "image", 1, 0.0, src.stat().st_size, src.stat().st_mtime_ns)
    fp = fingerprint(Options(), EncodeOptions())
    assert fp == fingerprint(Options(threads=3), EncodeOptions())  # scheduling is not content
    assert fp != fingerprint(Options(method="pixelate"), EncodeOptions())
    j = Journal(out)
    j.record(item, "done", fp, report={"frames": 1})
    j.close()
    assert not Journal(out).is_done(item, fp, out)  # no output file: redo
    (out / "a.jpg").write_bytes(b"y")
    assert Journal(out).is_done(item, fp, out)
    assert not Journal(out).is_done(item, "other", out)
    changed = type(item)(src, "a.jpg", "image", 1, 0.0, item.size + 1, item.mtime_ns)
    assert not Journal(out).is_done(changed, fp, out)  # the source changed: redo
    # A line torn by a crash is ignored; the next line starts on a fresh line.
    with open(out / JOURNAL_NAME, "ab") as fh:
        fh.write(b'{"file": "b.jpg", "sta')
    j = Journal(out)
    assert j.is_done(item, fp, out)
    j.record(item, "failed", fp, error="x")
    j.close()
    lines = (out / JOURNAL_NAME).read_text().splitlines()
    assert json.loads(lines[-1])["status"] == "failed"
    assert not Journal(out).is_done(item, fp, out)  # last line wins


def test_cli_bad_source_is_one_line(tmp_path):
    r = run_batch_cli(str(tmp_path / "nope"), "-o", str(tmp_path / "out"), "-q", timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "no such file or folder" in r.stderr


def test_cli_refuses_to_write_into_the_source(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    r = run_batch_cli(str(tmp_path), "-o", str(tmp_path), "-q", timeout=120)
    assert r.returncode == 3 and "is the source folder" in r.stderr


def test_ray_flag_takes_an_address_or_leaves_the_source(tmp_path):
    from streamanon.batch.cli import _parse

    a = _parse(["--ray", str(tmp_path), "-o", "out"])
    assert (a.src, a.ray) == (str(tmp_path), "local")
    a = _parse(["src", "--ray", "127.0.0.1:6379", "-o", "out"])
    assert (a.src, a.ray) == ("src", "127.0.0.1:6379")
    a = _parse(["src", "--ray", "-o", "out", "--method", "pixelate"])
    assert (a.src, a.ray, a.method) == ("src", "local", "pixelate")
    # Every option the main command's Options/EncodeOptions builders read is on this parser.
    from streamanon.cli import _encode_options, _options

    assert _options(a).method == "pixelate"
    assert _encode_options(_parse(["src", "-o", "out", "--crf", "30"])).crf == 30


def test_plan_chunks_cut_at_keyframes(tmp_path):
    from streamanon.batch.chunks import plan_chunks

    clip = tmp_path / "c.mp4"
    make_clip(needs_shared("videos", "liveportrait_driving_d3.mp4"), clip, 6.0, 128, gop=15)
    with av.open(str(clip)) as c:
        keys = {p.pts for p in c.demux(c.streams.video[0]) if p.is_keyframe}
    specs = plan_chunks(clip, 2.0, 1.0)
    assert len(specs) == 3
    assert specs[0].start is None and specs[-1].end is None
    for a, b in zip(specs, specs[1:], strict=False):
        assert a.end == b.start and b.start in keys
        assert b.warm < b.start
    assert plan_chunks(clip, 5.0, 1.0)[0].end is None  # not 1.5 chunks long: one piece


def test_only_encoders_quicktime_holds_are_chunked():
    from streamanon.batch.chunks import chunkable
    from streamanon.run import EncodeOptions

    assert chunkable(".mp4", EncodeOptions()) and chunkable(".mkv", EncodeOptions())
    assert not chunkable(".webm", EncodeOptions())  # VP9
    assert not chunkable(".mp4", EncodeOptions(keep_codec=True))


class _FlakyBackend:
    """Runs nothing: every task of ``dies`` loses its worker, every other task succeeds."""

    name, slots, fatal = "fake", 2, None

    def __init__(self, dies: str) -> None:
        self.dies, self.pending, self.submitted = dies, [], []

    def submit(self, task) -> None:
        self.pending.append(task)
        self.submitted.append(task.id)

    def events(self, timeout: float):
        from streamanon.batch.backend import Event

        out, self.pending = self.pending, []
        return [
            Event("died", t, "worker process killed by SIGKILL")
            if t.id == self.dies
            else Event("done", t, {"ok": True, "report": {"frames": 1}})
            for t in out
        ]

    def running(self) -> int:
        return len(self.pending)

    def cancel(self) -> None: ...

    def close(self, timeout: float = 10.0) -> None: ...


def test_runner_retries_a_dying_file_then_fails_it_with_the_reason(tmp_path):
    from streamanon.anonymizer import Options
    from streamanon.batch.plan import Item, Plan
    from streamanon.batch.runner import run_batch
    from streamanon.run import EncodeOptions

    # "#" in a name: chunk task ids are "<file>#<n>", a file's own name must not confuse that.
    items = [Item(tmp_path / f"{n}.jpg", f"{n}.jpg", "image", 1) for n in ("a", "b#1", "c")]
    backend = _FlakyBackend(dies="b#1.jpg")
    journal = Journal(tmp_path / "out")
    fp = fingerprint(Options(), EncodeOptions())
    res = run_batch(
        Plan(items, []), tmp_path / "out", backend, journal, fp, encode=EncodeOptions(),
        retries=2, quiet=True,
    )  # fmt: skip
    journal.close()
    assert backend.submitted.count("b#1.jpg") == 3  # first try + 2 retries
    assert [x["file"] for x in res.failed] == ["b#1.jpg"]
    assert "SIGKILL" in res.failed[0]["error"] and res.failed[0]["attempts"] == 3
    lines = journal_lines(tmp_path / "out")
    assert sorted(x["file"] for x in lines) == ["a.jpg", "b#1.jpg", "c.jpg"]


# ---------------------------------------------------------------- slow: local pool


@pytest.mark.slow
def test_local_batch_matches_single_file_runs(clipset, reference, tmp_path):
    out = tmp_path / "out"
    report = tmp_path / "report.json"
    r = run_batch_cli(
        str(clipset), "-o", str(out), "--workers", "2", "-m", "blur", "--report", str(report)
    )
    assert r.returncode == 1, r.stderr  # the corrupt file fails; it is named
    assert "FAILED drive_b/broken.mp4" in r.stderr
    assert "Traceback" not in r.stderr
    check_outputs(out, reference)
    check_journal(out, {"drive_b/broken.mp4"})
    rep = json.loads(report.read_text())
    assert rep["totals"]["done"] == len(VIDEOS) + len(PHOTOS)
    assert rep["not_media"][0]["file"].endswith("README.txt")
    assert not list(out.rglob("*.partial*"))
    # A rerun does nothing but retry the failed file.
    r = run_batch_cli(str(clipset), "-o", str(out), "-m", "blur", "-q")
    assert r.returncode == 1
    lines = journal_lines(out)
    assert len(lines) == len(VIDEOS) + len(PHOTOS) + 2


@pytest.mark.slow
def test_interrupt_then_rerun_resumes(clipset, tmp_path):
    out = tmp_path / "out"
    cmd = [PY, "-m", "streamanon", "batch", str(clipset), "-o", str(out), "-m", "blur", "-q"]
    proc = subprocess.Popen([*cmd, "--workers", "1"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    journal = out / JOURNAL_NAME
    deadline = time.monotonic() + 300
    # Wait for the corrupt file's line plus two finished files, then press Ctrl-C.
    while time.monotonic() < deadline and proc.poll() is None:
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the batch ended before it could be interrupted"
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert not list(out.rglob("*.partial*")), "a half-written file was left behind"
    first = {x["file"]: x for x in journal_lines(out) if x["status"] == "done"}
    assert 2 <= len(first) < len(VIDEOS) + len(PHOTOS)
    mtimes = {f: (out / f).stat().st_mtime_ns for f in first}
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr  # only the corrupt file fails
    for f, m in mtimes.items():
        assert (out / f).stat().st_mtime_ns == m, f"{f} was redone"
    done = [x["file"] for x in journal_lines(out) if x["status"] == "done"]
    assert sorted(done) == sorted(set(done)) == sorted(set(VIDEOS) | set(PHOTOS))


# ---------------------------------------------------------------- slow: chunks


def _hog():
    import dlib

    return dlib.get_frontal_face_detector()


def _hog_boxes(det, bgr: np.ndarray) -> np.ndarray:
    import cv2

    rects = det(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), 1)
    return np.array([[r.left(), r.top(), r.right(), r.bottom()] for r in rects], float)


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(-1)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter + 1e-9)


@pytest.mark.slow
def test_chunked_video_is_whole_and_covered_at_every_cut(tmp_path):
    from streamanon.batch.chunks import plan_chunks

    src = tmp_path / "src"
    src.mkdir()
    clip = src / "drive.mp4"
    make_clip(needs_shared("videos", "liveportrait_driving_d10.mp4"), clip, 7.0, 256, gop=25)
    out = tmp_path / "out"
    line = run_chunked(src, out, workers=2, overlap=1.0)
    specs = plan_chunks(clip, 2.0, 1.0)
    assert line["report"]["extra"]["chunks"] == len(specs) >= 3
    # Every chunk after the first tracked the overlap before its cut (1 s at 30 fps, at least).
    assert line["report"]["extra"]["warmup_frames"] >= 30 * (len(specs) - 1)
    # Keyframes every 25 frames at 30 fps: cuts off the millisecond grid (QuickTime's default
    # edit-list clock), which once shifted every frame after a cut by up to 0.5 ms.
    with av.open(str(clip)) as c:
        tb = Fraction(c.streams.video[0].time_base)
    assert any((s.start * tb * 1000).denominator != 1 for s in specs[1:])
    assert not (out / ".streamanon-chunks").exists() or not any(
        (out / ".streamanon-chunks").iterdir()
    )
    a, b = media_summary(clip), media_summary(out / "drive.mp4")
    assert a["frames"] == b["frames"]
    assert a["pts_s"] == b["pts_s"]
    assert a["audio"] == b["audio"] and a["audio"]
    with av.open(str(clip)) as c1, av.open(str(out / "drive.mp4")) as c2:
        assert abs(c1.duration - c2.duration) <= 1000  # µs
        tb = c1.streams.video[0].time_base
        orig = {f.pts: f.to_ndarray(format="bgr24") for f in c1.decode(video=0)}
        anon = {f.pts: f.to_ndarray(format="bgr24") for f in c2.decode(video=0)}
    det = _hog()
    ordered = sorted(orig)
    checked = 0
    for spec in specs[1:]:
        i = ordered.index(spec.start)
        for pts in ordered[i : i + 3]:  # the first frames of the chunk
            before = _hog_boxes(det, orig[pts])
            assert len(before), f"no face at {float(pts * tb):.2f}s: the check would be empty"
            after = _hog_boxes(det, anon[pts])
            if len(after):
                assert (_iou(before, after).max(1) <= 0.3).all(), (
                    f"face visible at {float(pts * tb):.2f}s, first frames of a chunk"
                )
            checked += 1
    assert checked >= 6


# ---------------------------------------------------------------- slow: Ray


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ray_cluster(tmp_path_factory):
    """A real one-node Ray cluster on 127.0.0.1 (2 CPUs), stopped after the module."""
    try:
        import ray  # noqa: F401
    except ImportError:
        missing('needs Ray: pip install "streamanon[ray]"')  # CI: a failure, not a skip
    ray_bin = Path(PY).with_name("ray")
    port = _free_port()
    # A short temp dir: Ray's unix socket paths must stay under ~107 characters.
    tmp = Path(f"/tmp/sa_ray_{os.getpid()}")
    log = open(tmp_path_factory.mktemp("ray") / "ray_start.log", "w+")  # noqa: SIM115
    # --block keeps `ray start` in the foreground as the parent of the cluster's processes:
    # stopping that one process stops exactly this cluster (not every Ray on the machine).
    proc = subprocess.Popen(
        [
            str(ray_bin), "start", "--head", "--block", "--node-ip-address=127.0.0.1",
            f"--port={port}", "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false",
            "--disable-usage-stats", f"--temp-dir={tmp}", "--object-store-memory=100000000",
        ],
        env=RAY_ENV, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                log.seek(0)
                pytest.fail(f"ray start failed:\n{log.read()[-3000:]}")
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.5)
        time.sleep(3)  # the raylet registers a moment after the GCS port opens
        yield address
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: only this cluster
            proc.wait(timeout=10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.slow
def test_chunked_video_keeps_its_subtitles(tmp_path):
    """A video cut into chunks is joined with the input's subtitle stream, cue for cue, as
    the single-file path copies it (the join once kept only the audio)."""
    from tests.conftest import needs_ffmpeg

    srt = tmp_path / "s.srt"
    srt.write_text(
        "1\n00:00:00,500 --> 00:00:01,000\nfirst\n\n2\n00:00:04,000 --> 00:00:04,500\nlast\n"
    )
    src = tmp_path / "src"
    src.mkdir()
    clip = src / "talk.mkv"
    subprocess.run(
        [needs_ffmpeg(), "-v", "error", "-y", "-f", "lavfi", "-i", "testsrc=size=160x96:rate=25",
         "-i", str(srt), "-t", "5", "-c:v", "libx264", "-g", "25", "-pix_fmt", "yuv420p",
         "-c:s", "srt", str(clip)],
        check=True, timeout=120,
    )  # fmt: skip
    out = tmp_path / "out"
    line = run_chunked(src, out, workers=1, overlap=0.5)
    assert line["report"]["extra"]["chunks"] >= 2  # really joined from pieces
    with av.open(str(out / "talk.mkv")) as c:
        assert [s.type for s in c.streams] == ["video", "subtitle"]
        cues = [
            (bytes(p), round(float(p.pts * p.time_base), 2))
            for p in c.demux(c.streams.subtitles[0])
            if p.size
        ]
    assert cues == [(b"first", 0.5), (b"last", 4.0)]


def test_ray_batch_matches_single_file_runs(clipset, reference, ray_cluster, tmp_path):
    out = tmp_path / "out"
    r = run_batch_cli(str(clipset), "-o", str(out), f"--ray={ray_cluster}", "-m", "blur", "-q")
    assert r.returncode == 1, r.stderr
    assert "FAILED drive_b/broken.mp4" in r.stderr and "Traceback" not in r.stderr
    check_outputs(out, reference)
    check_journal(out, {"drive_b/broken.mp4"})


def _writing(folder: Path, stem: str) -> bool:
    return any(p.stat().st_size > 0 for p in folder.glob(f".{stem}.*.partial.mp4"))


def _fault_set(tmp_path: Path) -> tuple[Path, Path]:
    """A 4 s clip (the one killed) and two short ones; and the 4 s clip run alone."""
    src = tmp_path / "src"
    (src / "cam").mkdir(parents=True)
    videos = needs_shared("videos")
    make_clip(videos / "liveportrait_driving_d12.mp4", src / "cam" / "long.mp4", 4.0, 256)
    for name in ("d14", "d18"):
        make_clip(videos / f"liveportrait_driving_{name}.mp4", src / f"{name}.mp4", 1.0, 192)
    from streamanon.run import anonymize_file

    ref = tmp_path / "ref.mp4"
    anonymize_file(src / "cam" / "long.mp4", ref, method="blur")
    return src, ref


def _check_redone(out: Path, ref: Path) -> None:
    lines = journal_lines(out)
    assert sorted(x["file"] for x in lines) == ["cam/long.mp4", "d14.mp4", "d18.mp4"]  # once each
    long_line = next(x for x in lines if x["file"] == "cam/long.mp4")
    assert long_line["status"] == "done"
    assert long_line["attempts"] == 2
    assert long_line["retried_after"]
    a, b = media_summary(out / "cam" / "long.mp4"), media_summary(ref)
    assert a["frames"] == b["frames"] and a["pts_s"] == b["pts_s"] and a["audio"] == b["audio"]
    assert not list(out.rglob("*.partial*"))


@pytest.mark.slow
def test_local_worker_killed_mid_file_is_redone(tmp_path):
    src, ref = _fault_set(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PY, "-m", "streamanon", "batch", str(src), "-o", str(out), "--workers", "1", "-m",
         "blur", "-q"],
        cwd=REPO, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and killed is None:
        # Longest file first, one worker: the worker writing cam/long.mp4 is the pool's child.
        if _writing(out / "cam", "long"):
            (pid,) = _pool_workers(proc.pid)
            os.kill(pid, signal.SIGKILL)
            killed = pid
        time.sleep(0.1)
    assert killed is not None, "never saw cam/long.mp4 being written"
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    assert "SIGKILL" in json.dumps(journal_lines(out))
    _check_redone(out, ref)


def _pool_workers(parent: int) -> list[int]:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmd = (d / "cmdline").read_bytes()
            except (OSError, ValueError, IndexError):
                continue
            if ppid == parent and b"spawn_main" in cmd:
                pids.append(int(d.name))
    return pids


def _ray_task_pids(task_id: str) -> list[int]:
    """Ray names a worker process after the task it runs: ``ray::streamanon:<file>``."""
    want = f"ray::streamanon:{task_id}".encode()
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(want):
                    pids.append(int(d.name))
            except OSError:
                continue
    return pids


@pytest.mark.slow
def test_ray_worker_killed_mid_file_is_redone(ray_cluster, tmp_path):
    src, ref = _fault_set(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [PY, "-m", "streamanon", "batch", str(src), "-o", str(out), f"--ray={ray_cluster}",
         "--workers", "2", "--retries", "2", "-m", "blur", "-q"],
        cwd=REPO, stderr=subprocess.PIPE, text=True, env=RAY_ENV,
    )  # fmt: skip
    killed = None
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and proc.poll() is None and killed is None:
        pids = _ray_task_pids("cam/long.mp4")
        # Mid-file: its temporary output exists and frames are going into it.
        if pids and _writing(out / "cam", "long"):
            os.kill(pids[0], signal.SIGKILL)
            killed = pids[0]
        time.sleep(0.1)
    assert killed is not None, "never saw the worker running cam/long.mp4"
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _check_redone(out, ref)
