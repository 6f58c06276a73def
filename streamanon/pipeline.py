"""The one frame loop: source → detect+track → anonymize → sink (`run_frames`).

Files (`run.encode_video`), batch chunks (`batch.chunks`), live streams (`live`) and the
benchmark (`eval.bench`, through `run.encode_video`) all run their frames through
`run_frames`, on the threaded stage graph below (`run_pipeline`).

Each stage runs on its own thread and talks to the next through a bounded queue, so a slow
stage applies backpressure instead of letting frames pile up. Decode/encode (PyAV) and
inference (ONNX Runtime) release the GIL, which is what makes threads pay off here.

Items that are not frames (copied audio packets) ride through every stage untouched, in
order, so the sink can remux them beside the frames they came with.

Privacy rules kept in this one place:
- a live source may drop frames only before detection (``drop_when_busy``); after that, every
  frame is either anonymized and emitted or not emitted at all;
- a file with detection on one frame in N holds the frames between two detections in the
  tracking stage until the next detection has been tracked (`streamanon.lookahead`: a face
  first found there is covered back on them); held frames are never emitted unanonymized;
- any exception in a stage stops the whole graph; nothing after the failing frame is written.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import queue
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from streamanon.lookahead import Lookahead, frames_held
from streamanon.types import Frame

_END = object()

# Frames the queues may hold at once, in bytes. A 1080p frame is 6 MB, so small frames keep
# ``queue_size`` per queue; a 4K frame is 25 MB, and 3 queues of 8 would hold ~600 MB while
# the detector is the bottleneck (issue 23: 4K peak memory).
QUEUED_BYTES = 160 * 2**20


def queue_depth(
    frame_bytes: int, queue_size: int, queues: int, budget: int = QUEUED_BYTES, held: int = 0
) -> int:
    """Frames per queue so that ``queues`` full queues, plus ``held`` frames a stage keeps
    (a file's look-ahead), hold at most ``budget`` bytes of frames of ``frame_bytes``; never
    more than ``queue_size``, and not under 2 for lack of memory (one frame waiting while the
    next stage works keeps the stages overlapping)."""
    if queue_size <= 0:
        return queue_size  # unbounded on request
    fit = max(0, budget - held * frame_bytes) // max(1, frame_bytes * queues)
    return int(min(queue_size, max(2, fit)))


# glibc's mallopt parameter: allocations from this size on get their own mapping.
_M_MMAP_THRESHOLD = -3
# Frames from this size on (above 1080p) are allocated with their own mappings.
LARGE_FRAME_BYTES = 8 * 2**20


def map_large_buffers(threshold: int = 2**20) -> bool:
    """Give buffers of ``threshold`` bytes and more their own memory mapping (glibc only), so a
    freed frame goes back to the system at once. By default glibc raises that threshold to the
    size of the last freed buffer, after which 4K frames (25 MB) come from per-thread heaps
    that keep freed frames: measured +265 MB peak on 20 frames of 4K decode + encode. Returns
    whether the setting took."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, int(threshold)))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


@dataclass
class StageTimes:
    """Wall time spent inside each stage's function, and how many frames it saw."""

    seconds: dict[str, float] = field(default_factory=dict)
    frames: dict[str, int] = field(default_factory=dict)
    dropped: int = 0

    def add(self, name: str, dt: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + dt
        self.frames[name] = self.frames.get(name, 0) + 1

    def ms_per_frame(self) -> dict[str, float]:
        return {k: 1000.0 * v / max(1, self.frames.get(k, 0)) for k, v in self.seconds.items()}


class Cancelled(Exception):
    """Raised in the caller's thread when the run was stopped (Ctrl-C, SIGTERM)."""


class FrameWork(Protocol):
    """The per-frame work of the loop (an `Anonymizer`): ``track`` runs in frame order on
    one thread, ``apply`` on the next."""

    def track(self, frame: Frame) -> Frame: ...

    def apply(self, frame: Frame) -> Frame: ...


def run_frames(
    source: Iterable[Any],
    work: FrameWork,
    sink: Callable[[Any], None],
    *,
    shown: Callable[[Frame], bool] | None = None,
    queue_size: int = 8,
    drop_when_busy: bool = False,
    lookahead: bool | None = None,
    stop: threading.Event | None = None,
    times: StageTimes | None = None,
) -> StageTimes:
    """Every frame of ``source`` through ``work.track`` then ``work.apply`` into ``sink``:
    decoding, tracking, anonymizing and encoding overlap on their own threads, joined by
    bounded queues (``queue_size``), frames stay in order, and a frame reaches the sink only
    after ``apply`` covered everything ``track`` found in it (fail closed).

    shown: frames for which it is False are tracked but not anonymized (a chunk's warm-up
    frames, which its sink does not write). drop_when_busy: a live source may drop frames
    before detection. lookahead: with detection on one frame in N, hold the frames between
    two detections and cover on them the faces first found at the next one
    (`streamanon.lookahead`); None: for files, not for live sources (``drop_when_busy``:
    latency matters there). Raises `Cancelled` when ``stop`` was set.
    """
    track: Callable[[Any], Any] = work.track
    held = 0
    if (not drop_when_busy) if lookahead is None else lookahead:
        held = frames_held(work)
        if held:
            track = Lookahead(work)
    apply = work.apply
    if shown is not None:

        def apply(frame: Frame) -> Frame:
            return work.apply(frame) if shown(frame) else frame

    try:
        return run_pipeline(
            source,
            [("detect", track), ("anonymize", apply)],
            sink,
            queue_size=queue_size,
            drop_when_busy=drop_when_busy,
            held_frames=held,
            stop=stop,
            times=times,
        )
    finally:
        if isinstance(track, Lookahead):
            track.detach()


def run_pipeline(
    source: Iterable[Any],
    stages: list[tuple[str, Callable[[Any], Any]]],
    sink: Callable[[Any], None],
    *,
    queue_size: int = 8,
    drop_when_busy: bool = False,
    held_frames: int = 0,
    stop: threading.Event | None = None,
    times: StageTimes | None = None,
) -> StageTimes:
    """Run ``source`` through ``stages`` into ``sink``; returns per-stage times.

    ``stages`` are (name, function) pairs applied in order to every Frame; the source and the
    sink each get a thread too. A function with a ``flush`` method holds items (a file's
    look-ahead, at most ``held_frames`` frames): it is given every item, returns a list of
    the items that are done, in order, and ``flush()`` returns the rest at the end. ``stop`` may be set from outside (signal handler) to end early:
    ``Cancelled`` is then raised after all threads have finished.
    """
    stop = stop or threading.Event()
    times = times or StageTimes()
    queues = [queue.Queue(maxsize=queue_size) for _ in range(len(stages) + 1)]
    errors: list[BaseException] = []
    lock = threading.Lock()

    def fail(exc: BaseException) -> None:
        with lock:
            errors.append(exc)
        stop.set()

    def put(q: queue.Queue, item: Any) -> bool:
        """Blocking put that gives up when the run is stopping."""
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def get(q: queue.Queue) -> Any:
        while True:
            try:
                return q.get(timeout=0.1)
            except queue.Empty:
                if stop.is_set():
                    return _END

    def read() -> None:
        q = queues[0]
        sized = False
        try:
            it = iter(source)
            while not stop.is_set():
                t0 = time.perf_counter()
                item = next(it, _END)  # decoding happens here: time it as "read"
                if item is _END:
                    break
                if isinstance(item, Frame):
                    times.add("read", time.perf_counter() - t0)
                    if not sized:  # large frames: shallower queues, buffers given back
                        sized = True
                        if item.image.nbytes >= LARGE_FRAME_BYTES:
                            map_large_buffers()
                        depth = queue_depth(
                            item.image.nbytes, queue_size, len(queues), held=held_frames
                        )
                        for qq in queues:
                            with qq.mutex:
                                qq.maxsize = depth
                    if drop_when_busy and q.full():
                        # Live source: the only place a frame may be dropped. Drop the stale
                        # queued frame and keep the newest, so latency stays one detection.
                        try:
                            stale = q.get_nowait()
                        except queue.Empty:
                            stale = None
                        if stale is not None and not isinstance(stale, Frame):
                            # Never drop anything but frames, and keep the order: the packet
                            # goes back to the head of the queue, the new frame is dropped.
                            with q.mutex:
                                q.queue.appendleft(stale)
                                q.not_empty.notify()
                            times.dropped += 1
                            continue
                        if stale is not None:
                            times.dropped += 1
                if not put(q, item):
                    break
        except BaseException as exc:  # noqa: BLE001 - forwarded to the caller
            fail(exc)
        finally:
            put(q, _END) if not stop.is_set() else None

    def work(name: str, fn: Callable[[Any], Any], qin: queue.Queue, qout: queue.Queue) -> None:
        flush = getattr(fn, "flush", None)  # a stage that holds items (look-ahead)
        try:
            while True:
                item = get(qin)
                if item is _END:
                    break
                if isinstance(item, Frame):
                    t0 = time.perf_counter()
                    item = fn(item)
                    times.add(name, time.perf_counter() - t0)
                elif flush is not None:
                    item = fn(item)  # keeps its place behind held frames
                for out in item if flush is not None else (item,):
                    if not put(qout, out):
                        return
            if flush is not None and not stop.is_set():
                for out in flush():
                    if not put(qout, out):
                        return
        except BaseException as exc:  # noqa: BLE001
            fail(exc)
            return
        if not stop.is_set():
            put(qout, _END)

    def write() -> None:
        q = queues[-1]
        try:
            while True:
                item = get(q)
                if item is _END:
                    break
                t0 = time.perf_counter()
                sink(item)
                if isinstance(item, Frame):
                    times.add("write", time.perf_counter() - t0)
        except BaseException as exc:  # noqa: BLE001
            fail(exc)

    threads = [threading.Thread(target=read, name="read", daemon=True)]
    for i, (name, fn) in enumerate(stages):
        threads.append(
            threading.Thread(
                target=work, args=(name, fn, queues[i], queues[i + 1]), name=name, daemon=True
            )
        )
    threads.append(threading.Thread(target=write, name="write", daemon=True))
    for t in threads:
        t.start()
    try:
        # Join with a timeout so that Ctrl-C reaches this (main) thread promptly.
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.2)
    except KeyboardInterrupt:
        stop.set()
        for t in threads:
            t.join(timeout=5)
        raise
    if errors:
        raise errors[0]
    if stop.is_set():
        raise Cancelled("stopped")
    return times
