"""Anonymize a live stream or camera in real time: `run_live(src, output, opts, encode)`.

Source (`streamanon.io.stream.LiveSource`) → detect+track → anonymize → `LiveOutput`, on the
one frame loop (`pipeline.run_frames`) with small queues. When the anonymizer is slower than
the source, frames are dropped before detection (counted in the report); after detection
every frame is anonymized or not emitted. While no anonymized frame arrives (source lost,
reconnecting, or a stall) the output repeats the last anonymized frame (or black) at the
nominal rate, so clients stay on. Output timestamps are the wall-clock capture times, made
strictly increasing.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from streamanon.anonymizer import Anonymizer, Options
from streamanon.errors import InputError
from streamanon.io.atomic import check_output
from streamanon.io.live_output import LiveOutput, output_spec
from streamanon.io.stream import LiveSource
from streamanon.pipeline import Cancelled, StageTimes, run_frames
from streamanon.run import EncodeOptions, RunReport, report_for
from streamanon.types import Frame

log = logging.getLogger(__name__)


@dataclass
class LiveOptions:
    """Live-only knobs; `run_live(**live_options)` and the CLI flags map onto these."""

    rtsp_transport: str | None = "tcp"  # RTSP lower transport, for input and push output
    listen: bool | None = None  # input: wait for a publisher (None: when host is 0.0.0.0)
    timeout: float = 5.0  # seconds without data before the source counts as lost
    reconnect: bool = True
    max_outage: float | None = None  # give up after this many seconds down (None = never)
    input_options: dict[str, str] | None = None  # extra FFmpeg input options
    output_options: dict[str, str] | None = None  # extra FFmpeg muxer options
    segment_time: float | None = None  # file output: start a new file every N seconds
    serve: bool | None = None  # rtsp:// output: serve it to clients (None: host 0.0.0.0)
    fill: str = "repeat"  # while no frame arrives: "repeat" the last anonymized one, or "black"
    fill_after: float = 0.25  # seconds without a frame before filling starts
    gop: float = 1.0  # keyframe interval in seconds (how fast a joining client gets a picture)
    queue_size: int = 1  # per-stage queue; 1 = lowest latency, frames dropped soonest
    latency_report: float = 10.0  # seconds between status log lines; 0 = none
    overwrite: bool = False
    on_stats: Callable[[dict], None] | None = None  # called with `stats()` at every status line

    def __post_init__(self) -> None:
        if self.fill not in ("repeat", "black"):
            raise InputError(f"--fill {self.fill!r}: choose repeat or black")
        if self.segment_time is not None and self.segment_time <= 0:
            raise InputError(f"--segment-time must be > 0, got {self.segment_time}")
        if self.queue_size < 1:
            raise InputError(f"queue size must be >= 1, got {self.queue_size}")
        if self.gop <= 0 or self.fill_after <= 0:
            raise InputError("--gop and fill delay must be > 0 seconds")


def _live_options(live_options: dict) -> LiveOptions:
    known = {f.name for f in fields(LiveOptions)}
    unknown = sorted(set(live_options) - known)
    if unknown:
        raise InputError(f"unknown live option(s): {', '.join(unknown)}")
    return LiveOptions(**live_options)


def run_live(
    src: str,
    output: str | Path | None,
    opts: Options,
    encode: EncodeOptions | None = None,
    *,
    quiet: bool = False,
    preview: Callable[[Frame], None] | None = None,
    stop: threading.Event | None = None,
    **live_options,
) -> RunReport:
    """Anonymize live ``src`` into ``output`` until ``stop`` is set (or the source ends).

    ``live_options`` are `LiveOptions` fields (rtsp_transport, listen, timeout, reconnect,
    max_outage, segment_time, serve, fill, latency_report, ...). Setting ``stop`` (SIGINT,
    SIGTERM) is the normal end of a live run: the output is closed cleanly and the report
    returned.
    """
    live = _live_options(live_options)
    if quiet and "latency_report" not in live_options:
        live.latency_report = 0.0
    if output is None:
        raise InputError(f"{src}: a live input needs -o OUTPUT (a file, rtsp://..., rtmp://...)")
    output = str(output)
    spec = output_spec(
        output,
        transport=live.rtsp_transport,
        segment_time=live.segment_time,
        serve=live.serve,
        options=live.output_options,
    )
    if spec.kind == "file":
        check_output(None, output, live.overwrite)
    stop = stop or threading.Event()
    anonymizer = Anonymizer(opts)
    source = LiveSource(
        src,
        transport=live.rtsp_transport,
        listen=live.listen,
        timeout_s=live.timeout,
        options=live.input_options,
        reconnect=live.reconnect,
        max_outage_s=live.max_outage,
        stop=stop,
    )
    times = StageTimes()
    out = LiveOutput(spec, source, encode or EncodeOptions(), live, times, preview)
    t0 = time.perf_counter()
    stopped = False
    try:
        run_frames(
            source,
            anonymizer,
            out.write,
            queue_size=live.queue_size,
            drop_when_busy=True,
            stop=stop,
            times=times,
        )
    except (Cancelled, KeyboardInterrupt):
        # SIGTERM (stop set) or Ctrl-C: the normal end of a live run, not a failure.
        stop.set()
        stopped = True
        log.info("live: stopping (signal)")
    finally:
        out.close()
    seconds = time.perf_counter() - t0
    return report_for(
        anonymizer,
        src,
        output,
        "stream",
        corrupt_packets=source.corrupt_packets,
        dropped_frames=times.dropped,
        seconds=seconds,
        fps=out.frames_out / seconds if seconds else 0.0,
        ms_per_frame=times.ms_per_frame(),
        extra={
            "stopped_by_signal": stopped,
            "frames_in": source.frames_in,
            "frames_out": out.frames_out,
            "fill_frames": out.fill_frames,
            "output_drops": out.output_drops,
            "output_outages": out.output_outages,
            "outages": len(source.outages),
            "outage_seconds": round(source.outage_seconds, 2),
            "latency_ms": out.latency.as_dict(),
            "served_at": spec.url if spec.kind == "serve" else None,
        },
    )
