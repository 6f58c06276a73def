"""The stage graph's promises: order kept, only frames dropped, and only before detection."""

from __future__ import annotations

import time

import numpy as np

from streamanon.pipeline import run_frames, run_pipeline
from streamanon.types import Frame


def test_busy_live_source_drops_frames_only_and_keeps_packet_order() -> None:
    img = np.zeros((4, 4, 3), np.uint8)

    def source():
        for i in range(60):
            yield Frame(img, i)
            if i % 3 == 0:
                yield ("packet", i)  # a non-frame item (an audio packet in real runs)

    def slow(frame: Frame) -> Frame:
        time.sleep(0.01)
        return frame

    out: list = []
    times = run_pipeline(
        source(), [("detect", slow)], out.append, queue_size=2, drop_when_busy=True
    )
    packets = [x[1] for x in out if isinstance(x, tuple)]
    frames = [x.index for x in out if isinstance(x, Frame)]
    assert packets == list(range(0, 60, 3))  # every packet, in order
    assert frames == sorted(frames) and len(frames) + times.dropped >= 60
    # Each packet stays between the frames it came between (a remuxed audio packet must not
    # end up after later video).
    for pos, x in enumerate(out):
        if isinstance(x, tuple):
            before = [f.index for f in out[:pos] if isinstance(f, Frame)]
            after = [f.index for f in out[pos:] if isinstance(f, Frame)]
            assert all(i <= x[1] for i in before) and all(i > x[1] for i in after), x
    assert times.dropped > 0  # the stage was slower than the source


class _Marking:
    """Work that marks each frame it covers, slowly and unevenly (threads interleave)."""

    def __init__(self) -> None:
        self.tracked: list[int] = []

    def track(self, frame: Frame) -> Frame:
        self.tracked.append(frame.index)
        time.sleep(0.002 * (frame.index % 3))
        return frame

    def apply(self, frame: Frame) -> Frame:
        time.sleep(0.003 * (frame.index % 2))
        frame.image[0, 0] = 255  # "covered"
        return frame


def test_the_frame_loop_emits_in_order_and_only_covered_frames() -> None:
    work = _Marking()
    out: list[tuple[int, bool]] = []

    def sink(frame: Frame) -> None:
        out.append((frame.index, bool(frame.image[0, 0, 0] == 255)))

    source = (Frame(np.zeros((2, 2, 3), np.uint8), i) for i in range(40))
    times = run_frames(source, work, sink, shown=lambda f: f.index >= 10, queue_size=2)
    assert [i for i, _ in out] == list(range(40)) and work.tracked == list(range(40))
    # Warm-up frames (not shown) are tracked, never covered; every shown frame is covered.
    assert [c for _, c in out] == [False] * 10 + [True] * 30
    assert {"read", "detect", "anonymize", "write"} <= set(times.ms_per_frame())


def test_bench_times_the_product_loop(tmp_path) -> None:
    """A benchmark entry is the product's own output: the same frames as `anonymize_video`."""
    from fractions import Fraction

    import cv2

    from streamanon.anonymizer import Anonymizer
    from streamanon.eval import bench
    from streamanon.io.video import VideoReader, VideoWriter
    from streamanon.run import EncodeOptions, anonymize_video
    from tests.conftest import needs_shared

    face = cv2.resize(
        cv2.imread(str(needs_shared("faces", "identities", "fr_obama", "obama.jpg"))), (100, 120)
    )
    clip = tmp_path / "clip.mp4"
    w = VideoWriter(clip, None, fps=Fraction(10), crf=18, preset="ultrafast")
    for i in range(8):
        img = np.full((240, 320, 3), 120, np.uint8)
        img[50:170, 60 + 6 * i : 160 + 6 * i] = face
        w.write(Frame(img, i, i, Fraction(1, 10)))
    w.close()
    e = bench.transcode(clip, tmp_path / "bench.mp4", Anonymizer(method="blur"))
    anonymize_video(
        clip, tmp_path / "run.mp4", Anonymizer(method="blur"), encode=EncodeOptions(audio=False)
    )

    def frames(p):
        with VideoReader(p, audio=False) as r:
            return [f.image for f in r]

    a, b = frames(tmp_path / "bench.mp4"), frames(tmp_path / "run.mp4")
    assert e.frames == len(a) == len(b) == 8
    assert all((x == y).all() for x, y in zip(a, b, strict=True))
    assert {"decode", "detect", "anonymize", "encode"} <= set(e.ms_per_frame)
