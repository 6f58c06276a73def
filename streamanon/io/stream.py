"""Live sources: network streams and cameras, with timeouts, reconnect and wall-clock timing.

`LiveSource` yields `Frame`s whose pts is the wall-clock capture time (monotonic clock, 1/90000
time base), so timestamps keep rising across reconnects and the latency streamanon adds can be
measured as "now minus capture time". When the source is lost it logs the outage, retries with
exponential backoff and carries on; `down` tells the output side to keep the stream alive.

Audio is not forwarded from live sources: its timestamps would need rebasing onto the wall
clock across reconnects, and a live privacy filter is about the picture.
"""

from __future__ import annotations

import logging
import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from urllib.parse import urlsplit

import av

from streamanon.errors import InputError
from streamanon.io.sources import NETWORK_SCHEMES, is_camera, is_live_source  # noqa: F401
from streamanon.io.video import VideoReader
from streamanon.types import Frame

log = logging.getLogger(__name__)

TIME_BASE = Fraction(1, 90000)  # the RTP video clock; fine-grained enough for any frame rate
TRANSPORTS = ("tcp", "udp", "udp_multicast", "http", "https")
# In listen mode the socket waits this long per attempt, so a stop request is seen promptly.
LISTEN_SLICE_S = 5.0


@dataclass(frozen=True)
class OpenSpec:
    """How to open one source with PyAV: ``av.open(url, format=format, options=options)``."""

    url: str
    format: str | None
    options: dict[str, str]
    listen: bool = False
    camera: bool = False


def camera_spec(src: str, platform: str = sys.platform) -> tuple[str, str]:
    """(url, PyAV input format) of a camera given as `webcam:N`, `webcam:NAME` or /dev/videoN."""
    if src.startswith("/dev/video"):
        return src, "v4l2"
    name = src.split(":", 1)[1]
    if not name:
        raise InputError(f"{src}: expected webcam:N (a camera number) or webcam:NAME")
    if platform.startswith("linux"):
        if not name.isdigit():
            raise InputError(f"{src}: on Linux use webcam:N for /dev/videoN")
        return f"/dev/video{name}", "v4l2"
    if platform == "darwin":
        return name, "avfoundation"
    if platform == "win32":
        # DirectShow names devices, it has no numbers: webcam:"Integrated Camera".
        return f"video={name}", "dshow"
    raise InputError(f"{src}: cameras are not supported on {platform}")


def open_spec(
    src: str,
    *,
    transport: str | None = "tcp",
    listen: bool | None = None,
    timeout_s: float = 5.0,
    options: dict[str, str] | None = None,
    platform: str = sys.platform,
) -> OpenSpec:
    """Translate a source and our options into PyAV/FFmpeg open arguments.

    transport: RTSP lower transport (tcp is the default: no UDP packet loss, passes NAT).
    listen: wait for a publisher to push to us instead of connecting; None = listen when the
    host is 0.0.0.0 / [::] (a bind address cannot be connected to).
    timeout_s: socket timeout for connect/read; the stream counts as lost after it.
    options: extra FFmpeg input options, applied last (they win).
    """
    if timeout_s <= 0:
        raise InputError(f"live timeout must be > 0 seconds, got {timeout_s}")
    if is_camera(src):
        url, fmt = camera_spec(src, platform)
        return OpenSpec(url, fmt, dict(options or {}), camera=True)
    parts = urlsplit(src)
    scheme = parts.scheme.lower()
    if scheme not in NETWORK_SCHEMES:
        raise InputError(f"{src}: not a stream URL ({', '.join(NETWORK_SCHEMES)}) or webcam:N")
    if listen is None:
        listen = parts.hostname in ("0.0.0.0", "::")
    opts: dict[str, str] = {}
    us = str(int(timeout_s * 1_000_000))
    if scheme in ("rtsp", "rtsps"):
        if transport is not None:
            if transport not in TRANSPORTS:
                raise InputError(
                    f"--rtsp-transport {transport!r}: choose from {', '.join(TRANSPORTS)}"
                )
            opts["rtsp_transport"] = transport
        if listen:
            opts["rtsp_flags"] = "listen"
            opts["listen_timeout"] = str(int(LISTEN_SLICE_S))
        else:
            opts["timeout"] = us  # socket I/O timeout (µs) of the RTSP demuxer
    elif scheme in ("rtmp", "rtmps"):
        if listen:
            opts["listen"] = "1"
            opts["timeout"] = str(int(LISTEN_SLICE_S))
        opts["rw_timeout"] = us
    elif scheme in ("http", "https"):
        opts["rw_timeout"] = us
    elif scheme == "udp":
        # A busy anonymizer must not turn into a fatal "circular buffer overrun".
        opts.update({"timeout": us, "overrun_nonfatal": "1", "fifo_size": "50000"})
    elif scheme == "srt":
        opts["timeout"] = us
        if listen:
            opts["mode"] = "listener"
    elif scheme == "tcp" and listen:
        opts["listen"] = "1"
    # Keep demuxer buffering small: we want the newest frame, not a smooth start.
    opts.setdefault("fflags", "nobuffer")
    opts.update(options or {})
    return OpenSpec(src, None, opts, listen=bool(listen))


@dataclass
class Backoff:
    """Exponential backoff with jitter: initial, initial*factor, ... capped at ``maximum``."""

    initial: float = 0.5
    factor: float = 2.0
    maximum: float = 30.0
    jitter: float = 0.1
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random, repr=False)

    def __post_init__(self) -> None:
        if not (0 < self.initial <= self.maximum and self.factor >= 1 and 0 <= self.jitter < 1):
            raise ValueError(
                f"bad backoff: need 0 < initial <= maximum, factor >= 1, 0 <= jitter < 1 ({self})"
            )

    def next(self) -> float:
        """Seconds to wait before the next attempt; grows until `reset()`."""
        base = min(self.maximum, self.initial * self.factor**self.attempt)
        self.attempt += 1
        return base * (1.0 + self.jitter * (2.0 * self.rng.random() - 1.0))

    def reset(self) -> None:
        self.attempt = 0


@dataclass
class Outage:
    start: float  # monotonic seconds
    end: float | None = None
    reason: str = ""

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


class LiveSource:
    """Iterate over the frames of a live source, reconnecting on loss.

    reconnect: retry after a loss (with `backoff`); False ends the iteration at the first loss.
    max_outage_s: give up (InputError) when the source stays down this long; None = never.
    The first open is not retried (except in listen mode, which waits for a publisher): a wrong
    URL should fail at once, not look like an outage.
    """

    def __init__(
        self,
        src: str,
        *,
        transport: str | None = "tcp",
        listen: bool | None = None,
        timeout_s: float = 5.0,
        options: dict[str, str] | None = None,
        reconnect: bool = True,
        max_outage_s: float | None = None,
        backoff: Backoff | None = None,
        stop: threading.Event | None = None,
        clock_origin: float | None = None,
    ) -> None:
        self.src = src
        self.spec = open_spec(
            src, transport=transport, listen=listen, timeout_s=timeout_s, options=options
        )
        self.timeout_s = timeout_s
        self.reconnect = reconnect
        self.max_outage_s = max_outage_s
        self.backoff = backoff or Backoff()
        self.stop = stop or threading.Event()
        self.t0 = time.monotonic() if clock_origin is None else clock_origin
        self.down = threading.Event()  # set while the source is lost
        self.outages: list[Outage] = []
        self.frames_in = 0
        self.last_frame_at = 0.0  # monotonic time of the newest frame
        self.corrupt_packets = 0
        self.nominal_fps: float = 25.0
        self.size: tuple[int, int] | None = None  # (width, height) of the last stream
        self._reader: VideoReader | None = None
        if self.spec.camera and self.spec.format not in av.formats_available:
            raise InputError(
                f"{src}: this PyAV build has no {self.spec.format!r} input; republish the camera "
                f"with ffmpeg (e.g. ffmpeg -f {self.spec.format} -i {self.spec.url} -f rtsp ...)"
            )

    def capture_time(self, frame: Frame) -> float:
        """Monotonic clock time at which ``frame`` was captured (left the decoder)."""
        return self.t0 + frame.time

    def _open(self) -> VideoReader:
        s = self.spec
        if s.listen:
            # Waiting for a publisher: the listen timeout bounds each attempt, not PyAV's.
            timeout: float | tuple[float, float] | None = (LISTEN_SLICE_S + 5.0, self.timeout_s)
        else:
            timeout = (self.timeout_s, self.timeout_s)
        reader = VideoReader(
            s.url, audio=False, options=s.options, format=s.format, timeout=timeout
        )
        info = reader.info
        rate = info.average_rate
        self.nominal_fps = float(rate) if rate and 1 <= float(rate) <= 240 else 25.0
        self.size = (info.width, info.height)
        log.info(
            "live: %s open, %dx%d @ %.2f fps", self.src, info.width, info.height, self.nominal_fps
        )
        return reader

    def _open_first(self) -> VideoReader:
        while True:
            try:
                return self._open()
            except InputError:
                if not self.spec.listen or self.stop.is_set():
                    raise
                log.debug("live: still waiting for a publisher on %s", self.src)

    def _reopen(self, outage: Outage) -> VideoReader | None:
        """Retry with backoff until the source is back, stop is set, or we give up."""
        while not self.stop.is_set():
            if self.max_outage_s is not None and outage.seconds > self.max_outage_s:
                raise InputError(
                    f"{self.src}: source lost for {outage.seconds:.0f} s "
                    f"(> --max-outage {self.max_outage_s:g}); giving up"
                )
            try:
                reader = self._open()
            except InputError as exc:
                if not self.spec.listen:  # listen attempts already waited their slice
                    wait = self.backoff.next()
                    log.debug("live: reconnect failed (%s); next try in %.1f s", exc, wait)
                    self.stop.wait(wait)
                continue
            return reader
        return None

    def __iter__(self) -> Iterator[Frame]:
        reader = self._open_first()
        while reader is not None:
            self._reader = reader
            reason = "end of stream"
            try:
                for item in reader:
                    if not isinstance(item, Frame):
                        continue
                    now = time.monotonic()
                    if self.down.is_set():
                        self._recovered(now)
                    self.size = (item.image.shape[1], item.image.shape[0])
                    pts = round((now - self.t0) / TIME_BASE)
                    self.last_frame_at = now
                    yield Frame(item.image, self.frames_in, pts, TIME_BASE)
                    self.frames_in += 1
                    if self.stop.is_set():
                        break
            except InputError as exc:
                reason = str(exc)
            finally:
                self.corrupt_packets += reader.corrupt_packets
                self._close(reader)
            if self.stop.is_set():
                return
            if not self.reconnect:
                log.warning("live: %s lost (%s); --no-reconnect, ending", self.src, reason)
                return
            outage = Outage(time.monotonic(), reason=reason)
            self.outages.append(outage)
            self.down.set()
            log.warning("live: %s lost (%s); reconnecting", self.src, reason)
            reader = self._reopen(outage)

    def _recovered(self, now: float) -> None:
        outage = self.outages[-1]
        outage.end = now
        self.down.clear()
        self.backoff.reset()
        log.warning("live: %s back after %.1f s outage", self.src, outage.seconds)

    def _close(self, reader: VideoReader) -> None:
        self._reader = None
        try:
            reader.close()
        except av.error.FFmpegError as exc:  # closing a dead connection may complain
            log.debug("live: close: %s", exc)

    @property
    def outage_seconds(self) -> float:
        return sum(o.seconds for o in self.outages)
