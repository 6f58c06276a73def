"""Live streams: option translation, backoff, latency stats, and end-to-end runs against a real
RTSP peer (Debian's ffmpeg) on 127.0.0.1: anonymized frames arrive, timestamps rise, the
source is killed and restarted and streamanon reconnects while the output stays up."""

from __future__ import annotations

import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import av
import pytest

from streamanon.anonymizer import Options
from streamanon.errors import InputError
from streamanon.io.live_output import LatencyStats
from streamanon.io.rtsp_server import RtspServer
from streamanon.io.stream import Backoff, camera_spec, open_spec
from streamanon.live import output_spec, run_live

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "examples" / "demo.mp4"  # synthetic faces (MIT), see examples/README.md
FFMPEG = shutil.which("ffmpeg")
# Skips without ffmpeg, fails instead under STREAMANON_REQUIRE_DATA (CI): see conftest.
needs_ffmpeg = pytest.mark.usefixtures("ffmpeg_bin")


# -- pure parts ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "src, kwargs, expected",
    [
        ("rtsp://cam/live", {}, {"rtsp_transport": "tcp", "timeout": "5000000"}),
        ("rtsp://cam/live", {"transport": "udp", "timeout_s": 2}, {"rtsp_transport": "udp"}),
        ("rtsp://0.0.0.0:8554/in", {}, {"rtsp_flags": "listen", "listen_timeout": "5"}),
        ("rtsp://127.0.0.1:8554/in", {"listen": True}, {"rtsp_flags": "listen"}),
        ("udp://239.0.0.1:1234", {}, {"overrun_nonfatal": "1"}),
        ("http://cam/stream.m3u8", {"timeout_s": 3}, {"rw_timeout": "3000000"}),
        ("srt://0.0.0.0:9000", {}, {"mode": "listener"}),
        ("rtsp://cam/live", {"options": {"rtsp_transport": "http"}}, {"rtsp_transport": "http"}),
    ],
)
def test_open_spec_options(src, kwargs, expected):
    spec = open_spec(src, **kwargs)
    assert spec.url == src
    for k, v in expected.items():
        assert spec.options[k] == v
    if "rtsp_flags" in expected:
        assert spec.listen and "timeout" not in spec.options


@pytest.mark.parametrize(
    "src, kwargs",
    [
        ("rtsp://cam/live", {"transport": "quic"}),
        ("rtsp://cam/live", {"timeout_s": 0}),
        ("ftp://cam/live", {}),
        ("webcam:", {}),
    ],
)
def test_open_spec_rejects_bad_input(src, kwargs):
    with pytest.raises(InputError):
        open_spec(src, **kwargs)


@pytest.mark.parametrize(
    "src, platform, expected",
    [
        ("webcam:0", "linux", ("/dev/video0", "v4l2")),
        ("/dev/video2", "linux", ("/dev/video2", "v4l2")),
        ("webcam:1", "darwin", ("1", "avfoundation")),
        ("webcam:Integrated Camera", "win32", ("video=Integrated Camera", "dshow")),
    ],
)
def test_camera_spec(src, platform, expected):
    assert camera_spec(src, platform) == expected


def test_backoff_grows_caps_and_resets():
    b = Backoff(initial=0.5, factor=2, maximum=4, jitter=0.0)
    assert [b.next() for _ in range(6)] == [0.5, 1, 2, 4, 4, 4]
    b.reset()
    assert b.next() == 0.5
    j = Backoff(initial=1, factor=2, maximum=8, jitter=0.1, rng=random.Random(1))
    waits = [j.next() for _ in range(5)]
    assert all(0.9 * e <= w <= 1.1 * e for w, e in zip(waits, [1, 2, 4, 8, 8], strict=True))
    with pytest.raises(ValueError):
        Backoff(initial=0)


@pytest.mark.parametrize(
    "target, kwargs, kind, fmt",
    [
        ("rtsp://server:8554/anon", {}, "push", "rtsp"),
        ("rtsp://0.0.0.0:8554/anon", {}, "serve", "rtsp"),
        ("rtsp://127.0.0.1:8554/anon", {"serve": True}, "serve", "rtsp"),
        ("rtmp://server/live/key", {}, "push", "flv"),
        ("srt://server:9000", {}, "push", "mpegts"),
        ("rec.mkv", {}, "file", None),
        ("rec.mkv", {"segment_time": 60}, "segments", "segment"),
    ],
)
def test_output_spec(target, kwargs, kind, fmt):
    spec = output_spec(target, **kwargs)
    assert (spec.kind, spec.format) == (kind, fmt)
    if kind == "push" and fmt == "rtsp":
        assert spec.options["rtsp_transport"] == "tcp"
    if kind == "segments":
        assert spec.url == "rec_%Y%m%d-%H%M%S.mkv"
        assert spec.options["segment_time"] == "60" and spec.options["strftime"] == "1"


def test_output_spec_mp4_recording_is_fragmented_and_bad_targets_fail():
    assert "frag_keyframe" in output_spec("rec.mp4").options["movflags"]
    for target, kw in [
        ("http://x/y", {}),
        ("rtsp://x/y", {"segment_time": 5}),
        ("a.avi", {"segment_time": 5}),
    ]:
        with pytest.raises(InputError):
            output_spec(target, **kw)


def test_latency_stats_percentiles():
    s = LatencyStats(max_ms=1000)
    for ms in range(1, 101):  # 1..100 ms, one each
        s.add(ms - 0.5)
    assert s.count == 100
    assert s.percentile(50) == 50 and s.percentile(95) == 95 and s.percentile(100) == 100
    s.add(5000)  # beyond the histogram: reported as the true maximum
    assert s.percentile(100) == 5000 and s.as_dict()["max"] == 5000


def test_unknown_live_option_is_a_clear_error():
    with pytest.raises(InputError, match="unknown live option"):
        run_live("rtsp://127.0.0.1:1/x", "out.mkv", Options(), reconect=True)


def _rtsp(sock: socket.socket, request: str) -> str:
    sock.sendall(request.encode())
    return sock.recv(4096).decode()


def test_rtsp_server_refuses_foreign_publishers_and_udp():
    server = RtspServer("127.0.0.1", 0, "/anon")
    server.start()
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=5) as s:
            url = f"rtsp://127.0.0.1:{server.port}/anon"
            reply = _rtsp(s, f"ANNOUNCE {url} RTSP/1.0\r\nCSeq: 1\r\nContent-Length: 0\r\n\r\n")
            assert reply.startswith("RTSP/1.0 403")  # only the secret path may publish
            reply = _rtsp(s, f"DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\n\r\n")
            assert reply.startswith("RTSP/1.0 503")  # nothing published yet
            server.sdp = b"v=0\r\n"
            tr = "RTP/AVP;unicast;client_port=5000-5001"
            reply = _rtsp(
                s, f"SETUP {url}/streamid=0 RTSP/1.0\r\nCSeq: 3\r\nTransport: {tr}\r\n\r\n"
            )
            assert reply.startswith("RTSP/1.0 461")  # UDP: the client retries over TCP
            assert "CSeq: 3" in reply
    finally:
        server.stop()


# -- end to end with ffmpeg as the peer ------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher:
    """ffmpeg pushing a looping clip with faces to ``url``; restarts itself like a camera would."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.paused = threading.Event()
        self.done = threading.Event()
        self.proc: subprocess.Popen | None = None
        self._lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.paused.is_set():
                time.sleep(0.1)
                continue
            cmd = [FFMPEG, "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop", "-1"]
            cmd += ["-i", str(DEMO), "-an", "-c:v", "libx264", "-preset", "ultrafast"]
            cmd += ["-tune", "zerolatency", "-g", "25", "-f", "rtsp", "-rtsp_transport", "tcp"]
            with self._lock:
                if self.done.is_set():
                    return
                self.proc = subprocess.Popen([*cmd, self.url])
            self.proc.wait()
            time.sleep(0.3)

    def kill(self) -> None:
        """The camera dies (no clean TEARDOWN)."""
        self.paused.set()
        with self._lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.done.set()
        self.kill()


def _wait_for(cond, timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.1)
    return False


def _assert_anonymized(faces_out: int, checked: int, faces_per_input_frame: float) -> None:
    """At most 5% of the input's faces may still be found on the output.

    Not zero: on this clip after two lossy encodes, CenterFace sometimes boxes one face
    (the man near x=930, y=300 in 720p) ~40 px too high at score 0.85, and the blur covers only
    its top half; about 1 frame in 25 shows it. That is a detector/mask size problem reported
    to the detection owners, not a live-path one; with anonymization off every face is found.
    (A second cause, faces lost over a gap of frames dropped under load, is fixed in the
    tracker: `tests/test_track.py::test_demo_face_after_dropped_frames_is_covered`.)
    """
    allowed = int(0.05 * checked * faces_per_input_frame)
    assert faces_out <= allowed, (
        f"{faces_out} face(s) found on {checked} anonymized frames (allowed {allowed})"
    )


def _decode_times_and_faces(path: Path, every: int = 4, limit: int = 12):
    from streamanon.registry import make_detector

    det = make_detector("centerface", thresh=0.5, landmarks=False)
    times, faces, checked = [], 0, 0
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            times.append(float(f.pts * f.time_base))
            if i % every == 0 and checked < limit:
                d = det(f.to_ndarray(format="bgr24"))
                faces += int((d.score >= 0.5).sum())
                checked += 1
    return times, faces, checked


@pytest.fixture(scope="module")
def input_has_faces() -> float:
    """Mean faces per frame of the source clip (every 30th frame)."""
    from streamanon.registry import make_detector

    det = make_detector("centerface", thresh=0.5, landmarks=False)
    counts = []
    with av.open(str(DEMO)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i % 30 == 0:
                counts.append(int((det(f.to_ndarray(format="bgr24")).score >= 0.5).sum()))
    mean = sum(counts) / len(counts)
    assert mean >= 1, "the demo clip should show faces"
    return mean


class LiveRun:
    """run_live on a thread; ``stats`` collects its status snapshots."""

    def __init__(self, src: str, out: str, **live) -> None:
        self.stop = threading.Event()
        self.stats: list[dict] = []
        self.report = None
        self.error: BaseException | None = None

        def go() -> None:
            try:
                self.report = run_live(
                    src,
                    out,
                    Options(method="blur"),
                    None,
                    stop=self.stop,
                    latency_report=0.5,
                    on_stats=self.stats.append,
                    **live,
                )
            except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
                self.error = exc

        self.thread = threading.Thread(target=go, daemon=True)
        self.thread.start()

    def last(self, key: str, default=0):
        return self.stats[-1][key] if self.stats else default

    def finish(self):
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive(), "run_live did not stop within 30 s of the stop signal"
        if self.error is not None:
            raise self.error
        return self.report


@needs_ffmpeg
@pytest.mark.slow
def test_rtsp_in_served_out_survives_source_restart(tmp_path, input_has_faces):
    pin, pout = _free_port(), _free_port()
    run = LiveRun(
        f"rtsp://127.0.0.1:{pin}/cam", f"rtsp://127.0.0.1:{pout}/anon", listen=True, serve=True
    )
    pub = Publisher(f"rtsp://127.0.0.1:{pin}/cam")
    client = None
    try:
        assert _wait_for(lambda: run.last("frames_out") >= 3 or run.error, 40), run.stats[-1:]
        pulled = tmp_path / "pulled.mkv"
        client = subprocess.Popen(
            [FFMPEG, "-hide_banner", "-loglevel", "error", "-i", f"rtsp://127.0.0.1:{pout}/anon"]
            + ["-t", "10", "-c", "copy", "-y", str(pulled)]
        )
        time.sleep(3)
        pub.kill()  # the camera dies mid-stream ...
        assert _wait_for(lambda: run.last("outages") == 1, 10), "source loss not noticed"
        fills_before = run.last("fill_frames")
        time.sleep(2)
        assert run.last("fill_frames") > fills_before, "output not kept alive during the outage"
        frames_before = run.last("frames_in")
        pub.paused.clear()  # ... and comes back
        assert _wait_for(lambda: run.last("frames_in") > frames_before + 5, 20), "no reconnect"
        assert client.wait(timeout=25) == 0
    finally:
        pub.close()
        if client is not None and client.poll() is None:
            client.kill()
        report = run.finish()
    assert report.extra["outages"] == 1 and report.extra["outage_seconds"] > 1
    assert report.extra["stopped_by_signal"]
    times, faces, checked = _decode_times_and_faces(pulled)
    # The client stayed connected across the outage and got a steady, rising timeline.
    assert len(times) >= 20
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(times, times[1:], strict=False)) if b <= a]
    assert not bad, f"timestamps not increasing at {bad[:5]}"
    assert max(b - a for a, b in zip(times, times[1:], strict=False)) < 1.5, "output went quiet"
    assert checked >= 5
    _assert_anonymized(faces, checked, input_has_faces)


@needs_ffmpeg
@pytest.mark.slow
def test_push_to_rtsp_listener_and_clean_stop(tmp_path, input_has_faces):
    pin, pout = _free_port(), _free_port()
    received = tmp_path / "received.mkv"
    # ffmpeg plays the existing RTSP server we push to (it accepts one ANNOUNCE/RECORD).
    sink = subprocess.Popen(
        [FFMPEG, "-hide_banner", "-loglevel", "error", "-rtsp_flags", "listen", "-timeout", "40"]
        + ["-i", f"rtsp://127.0.0.1:{pout}/anon", "-c", "copy", "-y", str(received)]
    )
    run = LiveRun(f"rtsp://127.0.0.1:{pin}/cam", f"rtsp://127.0.0.1:{pout}/anon", listen=True)
    pub = Publisher(f"rtsp://127.0.0.1:{pin}/cam")
    try:
        # 50 frames: the 5 % rule judges 12 of them (~40 faces); on 15 frames it judged 5
        # (17 faces), where one borderline face failed it.
        assert _wait_for(lambda: run.last("frames_out") >= 50 or run.error, 60), run.stats[-1:]
    finally:
        pub.close()
        report = run.finish()  # what SIGINT/SIGTERM do in the CLI
    # A clean stop sends TEARDOWN: the listening ffmpeg ends by itself, file complete.
    assert sink.wait(timeout=20) == 0
    lat = report.extra["latency_ms"]
    assert report.extra["frames_out"] >= 50 and lat["frames"] >= 15 and lat["p50"] > 0
    assert report.extra["frames_in"] >= report.frames + report.dropped_frames
    times, faces, checked = _decode_times_and_faces(received)
    assert len(times) >= 45
    # ffmpeg's RTSP-listen demuxer hands its first packet over untimed (the matroska muxer
    # warns "Timestamps are unset") and -c copy writes it at 0: judge the rest.
    times = times[1:] if times[:2] == [0.0, 0.0] else times
    bad = [(i, a, b) for i, (a, b) in enumerate(zip(times, times[1:], strict=False)) if b <= a]
    assert not bad, f"timestamps not increasing at {bad[:5]}"
    assert checked >= 10
    _assert_anonymized(faces, checked, input_has_faces)


@needs_ffmpeg
@pytest.mark.slow
def test_segmented_recording(tmp_path):
    pin = _free_port()
    run = LiveRun(
        f"rtsp://127.0.0.1:{pin}/cam",
        str(tmp_path / "rec_%03d.mkv"),
        listen=True,
        segment_time=1.0,
        gop=0.5,
    )
    pub = Publisher(f"rtsp://127.0.0.1:{pin}/cam")
    try:
        assert _wait_for(lambda: len(list(tmp_path.glob("rec_*.mkv"))) >= 3 or run.error, 45)
    finally:
        pub.close()
        run.finish()
    files = sorted(tmp_path.glob("rec_*.mkv"))
    assert len(files) >= 2
    with av.open(str(files[0])) as c:
        assert sum(1 for _ in c.decode(video=0)) >= 1


@needs_ffmpeg
@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_cli_live_run_stops_cleanly_on_signal(tmp_path, sig, input_has_faces):
    port = _free_port()
    out = tmp_path / "rec.mkv"
    # A 0.0.0.0 input host means "listen for a publisher"; the publisher uses loopback.
    cmd = [sys.executable, "-m", "streamanon", f"rtsp://0.0.0.0:{port}/cam", "-o", str(out)]
    proc = subprocess.Popen([*cmd, "-m", "blur", "-q"], cwd=REPO, stderr=subprocess.PIPE, text=True)
    pub = Publisher(f"rtsp://127.0.0.1:{port}/cam")
    try:
        assert _wait_for(lambda: out.exists() and out.stat().st_size > 20_000, 45)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=30)
    finally:
        pub.close()
        if proc.poll() is None:
            proc.kill()
    # SIGTERM is a service's normal stop; Ctrl-C is an interrupt (README: 130). Both close the
    # output cleanly.
    assert proc.returncode == (130 if sig == signal.SIGINT else 0), err
    times, faces, checked = _decode_times_and_faces(out)
    assert len(times) >= 5 and checked >= 2
    _assert_anonymized(faces, checked, input_has_faces)
