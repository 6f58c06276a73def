"""The stage graph's promises: order kept, only frames dropped, and only before detection."""

from __future__ import annotations

import time

import numpy as np

from streamanon.pipeline import run_pipeline
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
