"""The sink of a live run: where the anonymized stream goes and how it is kept alive.

`output_spec` turns an output name (a file, a segment pattern, ``rtsp://``, ``rtmp://``,
``srt://``) into a muxer and its options; `LiveOutput` encodes the anonymized frames, fills
gaps so clients stay connected, reconnects push outputs and measures latency (`LatencyStats`).
`streamanon.live.run_live` wires it to the source and the pipeline.
"""

from __future__ import annotations

import logging
import math
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import av
import cv2
import numpy as np

from streamanon.errors import InputError, OutputError
from streamanon.io.rtsp_server import ServerProcess
from streamanon.io.sources import url_scheme
from streamanon.io.stream import TIME_BASE, Backoff, LiveSource
from streamanon.io.video import VideoWriter
from streamanon.types import Frame

if TYPE_CHECKING:
    from streamanon.live import LiveOptions
    from streamanon.pipeline import StageTimes
    from streamanon.run import EncodeOptions

log = logging.getLogger(__name__)

_SEGMENT_FORMATS = {
    ".mkv": "matroska",
    ".ts": "mpegts",
    ".mp4": "mp4",
    ".mov": "mov",
    ".flv": "flv",
}
_HEARTBEAT_S = 0.5
_MIN_STEP = round(Fraction(1, 1000) / TIME_BASE)  # 1 ms in output ticks
# Fragmented MP4: a recording cut short (power loss, kill -9) stays playable.
_FRAGMENTED_MP4 = {"movflags": "+frag_keyframe+empty_moov+default_base_moof"}


@dataclass(frozen=True)
class OutputSpec:
    """Where and how the anonymized stream goes. kind: file, segments, push or serve."""

    kind: str
    url: str
    format: str | None
    options: dict[str, str]


def output_spec(
    target: str,
    *,
    transport: str | None = "tcp",
    segment_time: float | None = None,
    serve: bool | None = None,
    options: dict[str, str] | None = None,
) -> OutputSpec:
    """Pick muxer and options for ``target`` (a file, a segment pattern or a stream URL)."""
    parts = urlsplit(target)
    scheme = url_scheme(target) or ""  # cam-10:30.mp4 is a file, not a "cam-10" URL
    extra = dict(options or {})
    if scheme in ("rtsp", "rtsps"):
        if segment_time:
            raise InputError("--segment-time applies to file outputs only")
        if serve is None:
            serve = parts.hostname in ("0.0.0.0", "::")
        if serve:
            if scheme == "rtsps":
                raise InputError(f"{target}: serving rtsps (TLS) is not supported; use rtsp://")
            return OutputSpec("serve", target, "rtsp", extra)
        return OutputSpec("push", target, "rtsp", {"rtsp_transport": transport or "tcp", **extra})
    if scheme in ("rtmp", "rtmps"):
        return OutputSpec("push", target, "flv", extra)
    if scheme in ("udp", "srt", "tcp"):
        return OutputSpec("push", target, "mpegts", extra)
    if scheme in ("http", "https"):
        raise InputError(
            f"{target}: cannot output to http(s); use rtsp://, rtmp://, srt:// or a file"
        )
    if scheme and len(scheme) > 1:
        raise InputError(f"{target}: unknown output URL scheme {scheme!r}")
    ext = Path(target).suffix.lower()
    if segment_time:
        if ext not in _SEGMENT_FORMATS:
            raise InputError(
                f"{target}: segmented recording needs one of {', '.join(_SEGMENT_FORMATS)}"
            )
        url = target
        if "%" not in Path(target).name:
            url = str(Path(target).with_name(f"{Path(target).stem}_%Y%m%d-%H%M%S{ext}"))
        opts = {
            "segment_time": f"{segment_time:g}",
            "segment_format": _SEGMENT_FORMATS[ext],
            "reset_timestamps": "1",
            # A name with date fields is a strftime pattern; else printf-style (%03d).
            "strftime": "1" if re.search(r"%[YmHMSjyb]", url) else "0",
        }
        if ext in (".mp4", ".mov"):
            opts["segment_format_options"] = "movflags=+frag_keyframe+empty_moov"
        return OutputSpec("segments", url, "segment", {**opts, **extra})
    opts = dict(_FRAGMENTED_MP4) if ext in (".mp4", ".mov", ".m4v") else {}
    return OutputSpec("file", target, None, {**opts, **extra})


class LatencyStats:
    """Latency histogram in 1 ms bins (memory stays flat over days); percentiles from it."""

    def __init__(self, max_ms: int = 10_000) -> None:
        self.bins = np.zeros(max_ms + 1, np.int64)  # last bin: everything >= max_ms
        self.count = 0
        self.total_ms = 0.0
        self.max_ms = 0.0

    def clear(self) -> None:
        self.bins[:] = 0
        self.count, self.total_ms, self.max_ms = 0, 0.0, 0.0

    def add(self, ms: float) -> None:
        ms = max(0.0, ms)
        self.bins[min(int(ms), len(self.bins) - 1)] += 1
        self.count += 1
        self.total_ms += ms
        self.max_ms = max(self.max_ms, ms)

    def percentile(self, q: float) -> float:
        """Upper edge (ms) of the bin holding the q-th percentile; 0 when empty."""
        if self.count == 0:
            return 0.0
        rank = max(1, math.ceil(q / 100.0 * self.count))
        i = int(np.searchsorted(np.cumsum(self.bins), rank, side="left"))
        return round(self.max_ms, 1) if i >= len(self.bins) - 1 else float(i + 1)

    def as_dict(self) -> dict[str, float]:
        return {
            "frames": self.count,
            "mean": round(self.total_ms / self.count, 1) if self.count else 0.0,
            "p50": self.percentile(50),
            "p95": self.percentile(95),
            "p99": self.percentile(99),
            "max": round(self.max_ms, 1),
        }


class LiveOutput:
    """The sink: encodes anonymized frames, keeps the stream alive, reconnects push outputs.

    ``write`` is the pipeline's sink; a ticker thread writes fill frames when no frame came for
    ``fill_after`` seconds, and logs a status line every ``latency_report`` seconds.
    """

    def __init__(
        self,
        spec: OutputSpec,
        source: LiveSource,
        encode: EncodeOptions,
        live: LiveOptions,
        times: StageTimes,
        preview: Callable[[Frame], None] | None = None,
    ) -> None:
        self.spec, self.source, self.encode, self.live = spec, source, encode, live
        self.times, self.preview = times, preview
        self.latency = LatencyStats()
        self.recent = LatencyStats()  # since the last status line
        self.lock = threading.Lock()
        self.writer: VideoWriter | None = None
        self.frames_out = 0  # anonymized frames written
        self.fill_frames = 0  # repeated/black frames written while no frame arrived
        self.output_drops = 0  # anonymized frames not written while a push output was down
        self.output_outages = 0
        self._backoff = Backoff()
        self._retry_at = 0.0
        self._ever_open = False
        self._last_image: np.ndarray | None = None
        self._last_pts: int | None = None
        self._last_write = 0.0
        self._last_latency = 0.0
        self._closing = threading.Event()
        self.server = None
        self.url = spec.url
        if spec.kind == "serve":
            parts = urlsplit(spec.url)
            self.server = ServerProcess(
                parts.hostname or "0.0.0.0", parts.port or 8554, parts.path or "/"
            )
            # Our own muxer publishes to a secret path on loopback; clients read the public one.
            self.url = urlunsplit(
                ("rtsp", f"127.0.0.1:{self.server.port}", self.server.publish_path, "", "")
            )
        self._ticker = threading.Thread(target=self._tick, name="live-output", daemon=True)
        self._ticker.start()

    # -- writer life cycle -------------------------------------------------------------------

    def _new_writer(self) -> VideoWriter:
        enc = self.encode
        fps = self.source.nominal_fps
        copts = dict(enc.codec_options)
        codec = enc.codec or "libx264"
        if codec in ("libx264", "libx265"):
            # No B-frames and no lookahead: a frame leaves the encoder as soon as it goes in.
            copts.setdefault("tune", "zerolatency")
        copts.setdefault("g", str(max(1, round(fps * self.live.gop))))
        fmt_opts = dict(self.spec.options)
        if self.spec.kind == "serve":
            fmt_opts["rtsp_transport"] = "tcp"
        return VideoWriter(
            self.url,
            None,
            codec=codec,
            crf=enc.crf,
            preset=enc.preset,
            bit_rate=enc.bit_rate,
            codec_options=copts,
            keep_metadata=enc.keep_metadata,
            format=self.spec.format,
            options=fmt_opts,
            fps=fps,
        )

    def _encode(self, image: np.ndarray, pts: int) -> bool:
        """Write one image; False (and the writer dropped) when a push output failed."""
        now = time.monotonic()
        if self.writer is None:
            if now < self._retry_at:
                return False
            try:
                self.writer = self._new_writer()
            except OutputError as exc:
                return self._output_failed(exc)
        if self._last_pts is not None and pts < self._last_pts + _MIN_STEP:
            # Strictly increasing, and by at least 1 ms: millisecond containers (mkv, flv)
            # and players would otherwise see two frames at one time.
            pts = self._last_pts + _MIN_STEP
        stream = self.writer.stream
        if stream is not None and image.shape[:2] != (stream.height, stream.width):
            # The source came back at another size: the open output stream cannot change.
            image = cv2.resize(image, (stream.width, stream.height), interpolation=cv2.INTER_AREA)
        try:
            self.writer.write(Frame(image, 0, pts, TIME_BASE))
        except (OutputError, av.error.FFmpegError, OSError) as exc:
            return self._output_failed(exc)
        self._last_pts = pts
        self._last_write = now
        if not self._ever_open or self._retry_at:
            if self._ever_open:
                log.warning("live: output %s reconnected", self.spec.url)
            self._ever_open, self._retry_at = True, 0.0
            self._backoff.reset()
        return True

    def _output_failed(self, exc: BaseException) -> bool:
        # A file that cannot be written, or a push target that never worked, is an error;
        # a push target that worked before is retried (the server may be restarting).
        if self.spec.kind not in ("push",) or not self._ever_open or not self.live.reconnect:
            raise (
                exc
                if isinstance(exc, OutputError)
                else OutputError(f"{self.spec.url}: output failed ({exc})")
            )
        if self.writer is not None:
            self._discard_writer()
            self.output_outages += 1
            log.warning("live: output %s lost (%s); retrying", self.spec.url, exc)
        self._retry_at = time.monotonic() + self._backoff.next()
        return False

    def _discard_writer(self) -> None:
        w, self.writer = self.writer, None
        try:
            w.close()
        except (OutputError, av.error.FFmpegError, OSError) as exc:
            log.debug("live: closing failed output: %s", exc)

    # -- the sink and the ticker -------------------------------------------------------------

    def write(self, item: object) -> None:
        if not isinstance(item, Frame):
            return  # live sources forward no audio
        with self.lock:
            ok = self._encode(item.image, item.pts)
            now = time.monotonic()
            self._last_image = item.image
            if ok:
                self.frames_out += 1
                lat = now - self.source.capture_time(item)
                self._last_latency = lat
                self.latency.add(1000.0 * lat)
                self.recent.add(1000.0 * lat)
            else:
                self.output_drops += 1
        if self.preview is not None:
            self.preview(item)

    def _fill_image(self) -> np.ndarray | None:
        if self._last_image is None:
            return None  # nothing shown yet: the output opens with the first real frame
        if self.live.fill == "black":
            return np.zeros_like(self._last_image)
        return self._last_image

    def _tick(self) -> None:
        next_report = time.monotonic() + self.live.latency_report
        while not self._closing.wait(0.5 / max(1.0, self.source.nominal_fps)):
            now = time.monotonic()
            period = 1.0 / max(1.0, self.source.nominal_fps)
            period_ticks = round(period / TIME_BASE)
            if (
                not self.source.down.is_set()
                and now - self.source.last_frame_at < self.live.fill_after
            ):
                # Frames are coming, the anonymizer is just slow: a heartbeat is enough to keep
                # clients on, and full-rate fills would steal CPU from the real frames.
                period = max(period, _HEARTBEAT_S)
            with self.lock:
                idle = now - self._last_write
                threshold = max(period, self.live.fill_after)
                if self._last_image is not None and idle >= threshold:
                    # Wall clock minus the last real frame's latency: continues its timeline.
                    pts = round((now - self._last_latency - self.source.t0) / TIME_BASE)
                    image = self._fill_image()
                    if self._last_pts is not None and pts < self._last_pts + period_ticks // 2:
                        image = None  # a real frame was just written: no fill needed yet
                    if image is not None and self._encode(image, pts):
                        self.fill_frames += 1
                        # Next fill one period later, not after another fill_after.
                        self._last_write = now + period - threshold
            if self.live.latency_report and now >= next_report:
                next_report = now + self.live.latency_report
                self._report()

    def stats(self) -> dict:
        src = self.source
        return {
            "t": round(time.monotonic() - src.t0, 1),
            "frames_in": src.frames_in,
            "frames_out": self.frames_out,
            "dropped": self.times.dropped,
            # Frames read but neither dropped nor written: the pipeline's backlog right now.
            "in_flight": src.frames_in - self.times.dropped - self.frames_out - self.output_drops,
            "fill_frames": self.fill_frames,
            "outages": len(src.outages),
            "source_down": src.down.is_set(),
            "latency_ms": self.latency.as_dict(),
            "recent_latency_ms": self.recent.as_dict(),
        }

    def _report(self) -> None:
        with self.lock:
            s = self.stats()
            self.recent.clear()
        lat = s["recent_latency_ms"]
        log.info(
            "live: in %d, out %d, dropped %d, filled %d, outages %d, "
            "latency p50 %.0f / p95 %.0f ms",
            s["frames_in"],
            s["frames_out"],
            s["dropped"],
            s["fill_frames"],
            s["outages"],
            lat["p50"],
            lat["p95"],
        )
        if self.live.on_stats is not None:
            self.live.on_stats(s)

    def close(self) -> None:
        self._closing.set()
        self._ticker.join(timeout=5)
        with self.lock:
            if self.writer is not None:
                w, self.writer = self.writer, None
                try:
                    w.close()
                except (OutputError, av.error.FFmpegError, OSError) as exc:
                    if self.spec.kind in ("file", "segments"):
                        raise OutputError(f"{self.spec.url}: closing failed ({exc})") from None
                    log.warning("live: closing %s: %s", self.spec.url, exc)
        if self.server is not None:
            self.server.stop()
