"""The frame loop's queues hold a bounded number of bytes: 4K frames get shallower queues
(issue 23: 4K peak memory), small frames keep the requested depth, and a live stream's depth
of 1 is never raised."""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

from streamanon.pipeline import QUEUED_BYTES, queue_depth, run_pipeline
from streamanon.types import Frame

K4 = 3840 * 2160 * 3
P1080 = 1920 * 1080 * 3


def test_queue_depth_by_frame_size() -> None:
    assert queue_depth(1280 * 720 * 3, 8, 3) == 8
    assert queue_depth(P1080, 8, 3) == 8
    d4k = queue_depth(K4, 8, 3)
    assert 2 <= d4k < 8 and d4k * 3 * K4 <= QUEUED_BYTES
    assert queue_depth(8 * K4, 8, 3) == 2  # never under 2 for lack of memory
    assert queue_depth(K4, 1, 3) == 1  # a live stream's queue of one stays one
    assert queue_depth(K4, 0, 3) == 0  # unbounded on request


def test_large_frames_never_fill_more_than_the_budget() -> None:
    """A slow middle stage (the detector at 4K) with a fast source: the queue in front of it
    never holds more frames than the byte budget allows; every frame arrives, in order."""
    h, w = 2160, 3840
    seen: list[int] = []
    peak = [0]
    queued = [0]

    def source():
        for i in range(12):
            queued[0] += 1
            peak[0] = max(peak[0], queued[0])
            yield Frame(np.zeros((h, w, 3), np.uint8), i, i, Fraction(1, 25))

    def slow(frame: Frame) -> Frame:
        queued[0] -= 1
        import time

        time.sleep(0.02)
        return frame

    run_pipeline(source(), [("detect", slow)], lambda f: seen.append(f.index), queue_size=8)
    assert seen == list(range(12))
    # queued-but-not-detected frames: the queue's depth, one in the reader's hand, one more
    # being put.
    assert peak[0] <= queue_depth(h * w * 3, 8, 2) + 2


def test_large_buffers_get_their_own_mapping() -> None:
    """On glibc the setting takes (the 4K memory figure in docs/benchmarks.md rests on it)."""
    import platform

    from streamanon.pipeline import map_large_buffers

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("mallopt is glibc's")
    assert map_large_buffers()
