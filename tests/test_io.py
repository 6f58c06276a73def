"""Video/image I/O: timing, audio, metadata, rotation, atomic writes, broken inputs."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from streamanon.errors import InputError, OutputError
from streamanon.io.atomic import atomic_output, check_output
from streamanon.io.images import read_image, write_image
from streamanon.io.video import AudioPacket, VideoReader, VideoWriter, scrub_metadata
from streamanon.types import Frame


def make_clip(
    path: Path,
    pts: list[int],
    time_base: Fraction = Fraction(1, 1000),
    audio: bool = True,
    size: tuple[int, int] = (160, 96),
    rotation: int = 0,
    metadata: dict[str, str] | None = None,
) -> Path:
    """A small clip whose frame i shows the number i as a grey level, at the given pts."""
    w, h = size
    with av.open(str(path), "w") as c:
        for k, v in (metadata or {}).items():
            c.metadata[k] = v
        vs = c.add_stream("libx264", rate=25)
        vs.width, vs.height, vs.pix_fmt = w, h, "yuv420p"
        vs.time_base = time_base
        vs.codec_context.time_base = time_base
        vs.options = {"preset": "ultrafast", "qp": "0"}
        if rotation:
            vs.set_display_rotation(rotation)
        if audio:
            aus = c.add_stream("aac", rate=16000)
            aus.layout = "mono"
        for i, p in enumerate(pts):
            img = np.full((h, w, 3), (i * 7) % 256, np.uint8)
            vf = av.VideoFrame.from_ndarray(img, format="bgr24")
            vf.pts, vf.time_base = p, time_base
            for pkt in vs.encode(vf):
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)
        if audio:
            dur = float(pts[-1] * time_base) + 0.2
            n = int(dur * 16000)
            tone = (0.2 * np.sin(np.arange(n) * 0.1)).astype(np.float32)
            for s in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(
                    tone[None, s : s + 1024], format="fltp", layout="mono"
                )
                af.sample_rate, af.pts = 16000, s
                for pkt in aus.encode(af):
                    c.mux(pkt)
            for pkt in aus.encode(None):
                c.mux(pkt)
    return path


def roundtrip(src: Path, dst: Path, **writer_kw) -> tuple[VideoReader, VideoWriter]:
    with VideoReader(src) as r:
        w = VideoWriter(dst, r.info, audio_from=r, preset="ultrafast", **writer_kw)
        with w:
            for item in r:
                if isinstance(item, Frame):
                    if w.stream is None:
                        w.rotation = r.rotation
                    w.write(item)
                else:
                    assert isinstance(item, AudioPacket)
                    w.write_audio(item)
    return r, w


def read_pts(path: Path) -> tuple[list[float], Fraction]:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        return [float(f.pts * f.time_base) for f in c.decode(s)], s.time_base


def test_variable_frame_rate_and_audio_survive(tmp_path: Path) -> None:
    pts = [0, 40, 80, 200, 233, 266, 600, 640, 680, 720]  # ms, with gaps: VFR
    src = make_clip(tmp_path / "vfr.mp4", pts)
    dst = tmp_path / "out.mp4"
    r, w = roundtrip(src, dst)
    times, _ = read_pts(dst)
    assert times == pytest.approx([p / 1000 for p in pts], abs=1e-3)
    with av.open(str(dst)) as c:
        assert len(c.streams.audio) == 1
        assert c.streams.video[0].index == 0
        src_audio = sum(1 for _ in av.open(str(src)).demux(audio=0))
        out_audio = sum(1 for p in c.demux(audio=0) if p.size)
    assert out_audio >= src_audio - 1  # the final flush packet is empty


def test_metadata_scrubbed_unless_kept(tmp_path: Path) -> None:
    src = make_clip(
        tmp_path / "tags.mp4",
        [0, 40, 80],
        audio=False,
        metadata={
            "location": "+48.85+002.29/",
            "comment": "cam serial 123",
            "title": "t",
            "creation_time": "2024-01-01T10:30:00.000000Z",
        },
    )
    roundtrip(src, tmp_path / "scrub.mp4")
    roundtrip(src, tmp_path / "keep.mp4", keep_metadata=True)
    scrubbed = dict(av.open(str(tmp_path / "scrub.mp4")).metadata)
    kept = dict(av.open(str(tmp_path / "keep.mp4")).metadata)
    assert not any("location" in k for k in scrubbed) and "comment" not in scrubbed
    assert "creation_time" not in scrubbed and "creation_time" in kept
    assert any("location" in k for k in kept) and kept.get("comment") == "cam serial 123"


def test_scrub_metadata_table() -> None:
    tags = {"com.apple.quicktime.location.ISO6709": "x", "creation_time": "2020", "rotate": "90"}
    # When it was filmed narrows down who filmed it: creation_time goes too (issue 13).
    assert scrub_metadata(tags, keep=False) == {"rotate": "90"}
    assert scrub_metadata(tags, keep=True) == tags


def test_rotation_kept(tmp_path: Path) -> None:
    src = make_clip(tmp_path / "rot.mp4", [0, 40, 80], audio=False, rotation=90)
    r, _ = roundtrip(src, tmp_path / "rot_out.mp4")
    assert r.rotation in (90, -90, 270)
    with VideoReader(tmp_path / "rot_out.mp4") as r2:
        list(r2)
    assert r2.rotation == r.rotation


def test_truncated_video_decodes_what_is_there(tmp_path: Path) -> None:
    # mkv is streamable: a cut file still holds its first frames.
    src = make_clip(tmp_path / "full.mkv", list(range(0, 2000, 40)), audio=False, size=(320, 240))
    data = src.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    with VideoReader(cut) as r:
        frames = [f for f in r if isinstance(f, Frame)]
    assert 0 < len(frames) < 50


@pytest.mark.parametrize(
    "content, message",
    [(b"", "not a video"), (b"hello, not a video at all" * 10, "not a video")],
)
def test_not_a_video(tmp_path: Path, content: bytes, message: str) -> None:
    p = tmp_path / "bad.mp4"
    p.write_bytes(content)
    with pytest.raises(InputError, match=message):
        VideoReader(p)


def test_missing_video() -> None:
    with pytest.raises(InputError, match="no such file"):
        VideoReader("/nonexistent/x.mp4")


def test_atomic_output_leaves_nothing_on_error(tmp_path: Path) -> None:
    dst = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError), atomic_output(dst) as tmp:
        tmp.write_bytes(b"partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with atomic_output(dst) as tmp:
        tmp.write_bytes(b"done")
    assert dst.read_bytes() == b"done" and list(tmp_path.iterdir()) == [dst]


def test_check_output_rules(tmp_path: Path) -> None:
    src = tmp_path / "a.mp4"
    src.write_bytes(b"x")
    with pytest.raises(OutputError, match="overwrite the input"):
        check_output(src, src, overwrite=True)
    with pytest.raises(OutputError, match="already exists"):
        check_output(None, src, overwrite=False)
    with pytest.raises(OutputError, match="does not exist"):
        check_output(None, tmp_path / "nope" / "b.mp4", overwrite=False)
    assert check_output(src, tmp_path / "b.mp4", overwrite=False) == tmp_path / "b.mp4"


def test_image_roundtrip_formats(tmp_path: Path) -> None:
    img = (np.arange(64 * 48 * 3) % 251).astype(np.uint8).reshape(48, 64, 3)
    for ext in (".png", ".jpg", ".webp", ".bmp"):
        p = tmp_path / f"i{ext}"
        write_image(p, img)
        back = read_image(p)
        assert back.shape == img.shape
    assert np.array_equal(read_image(tmp_path / "i.png"), img)
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(InputError, match="not an image"):
        read_image(tmp_path / "broken.jpg")


def _mjpeg_with_pts(path: Path, pts_ms: list[int]) -> Path:
    """An intra-only clip whose packets carry exactly ``pts_ms`` (duplicates allowed in mkv)."""
    with av.open(str(path), "w") as c:
        vs = c.add_stream("mjpeg", rate=25)
        vs.width, vs.height, vs.pix_fmt = 64, 48, "yuvj420p"
        for i, p in enumerate(pts_ms):
            vf = av.VideoFrame.from_ndarray(np.full((48, 64, 3), i * 2 % 256, np.uint8), "bgr24")
            vf.pts, vf.time_base = i, Fraction(1, 25)
            for pkt in vs.encode(vf):
                pkt.pts = pkt.dts = p
                pkt.time_base = Fraction(1, 1000)
                c.mux(pkt)
        for pkt in vs.encode(None):
            c.mux(pkt)
    return path


def test_duplicate_timestamps_do_not_push_the_video_later(tmp_path: Path) -> None:
    """Every fifth frame repeats its predecessor's timestamp: each keeps (about) its own time
    instead of shifting all later frames by a frame (issue 13: 7.02 s instead of 6.56 s)."""
    pts, t = [], 0
    for i in range(50):
        if i % 5 == 4:
            pts.append(pts[-1])
        else:
            pts.append(t)
            t += 40
    src = _mjpeg_with_pts(tmp_path / "dup.mkv", pts)
    dst = tmp_path / "out.mkv"
    r, w = roundtrip(src, dst)
    got, _ = read_pts(dst)
    assert len(got) == 50 and r.fixed_timestamps == 10
    assert all(b > a for a, b in zip(got, got[1:], strict=False))
    assert abs(got[-1] - pts[-1] / 1000) < 0.005


@pytest.mark.parametrize(("size", "lookahead"), [((160, 96), b"rc_lookahead=10"), ((2592, 1472), b"rc_lookahead=5")])  # fmt: skip
def test_large_pictures_get_a_shorter_x264_lookahead(
    tmp_path: Path, size: tuple[int, int], lookahead: bytes
) -> None:
    """Above 1440p x264 looks 5 frames ahead instead of veryfast's 10: its frames held for the
    lookahead were most of the 4K peak memory (issue 23). x264 writes its settings into the
    stream, so the file says what it was given."""
    src = make_clip(tmp_path / "in.mp4", [0, 40], audio=False, size=size)
    dst = tmp_path / "out.mp4"
    with VideoReader(src) as r, VideoWriter(dst, r.info) as w:  # the default preset: veryfast
        for item in r:
            w.write(item)
    assert lookahead in dst.read_bytes()
