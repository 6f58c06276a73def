"""Long videos in time chunks: cut at keyframes, anonymized with a warm-up, joined by stream copy.

A chunk writes the frames with ``start <= pts < end``; ``start`` is a keyframe so a worker can
begin decoding there without the frames before it. Before ``start`` the worker decodes from an
earlier keyframe and runs detection and tracking (not the face method, not the encoder) over
the ``overlap`` seconds before the cut, so a face already in view at the cut, or one the
detector misses on the first frames of the chunk, is covered from the chunk's first frame
as in an uncut run (the tracker has seen the same last seconds).

Chunks are encoded into QuickTime files (they keep the encoder's time base, pts and dts
exactly; NUT and Matroska drop the dts of reordered frames, which the join needs), then
`join_chunks` stream-copies their video packets, in order, together with the input's untouched
audio packets into the final container: no second encode, same frame count, same pts, same
duration as the input. Outputs whose encoder QuickTime cannot hold (VP9 for .webm, GIF) and
``--keep-codec`` runs are not chunked: those files run whole.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterator
from fractions import Fraction
from pathlib import Path

import av

from streamanon.anonymizer import Anonymizer
from streamanon.batch.tasks import ChunkSpec, Progress
from streamanon.errors import InputError, OutputError
from streamanon.io.atomic import atomic_output
from streamanon.io.video import _DEFAULT_CODEC, VideoReader, VideoWriter, scrub_metadata
from streamanon.pipeline import StageTimes, run_frames
from streamanon.run import EncodeOptions, RunReport, _encoder_for
from streamanon.types import Frame

log = logging.getLogger(__name__)

CHUNK_EXT = ".mov"


# Encoders whose packets QuickTime holds and every output container here takes back.
CHUNK_CODECS = {"libx264", "h264", "libx265", "hevc", "mpeg4"}


def chunkable(final_suffix: str, encode: EncodeOptions) -> bool:
    """Whether a video written as ``final_suffix`` with ``encode`` can be done in chunks."""
    if encode.keep_codec:
        return False  # the encoder depends on each input's codec: keep it simple, run whole
    codec = encode.codec or _DEFAULT_CODEC.get(final_suffix.lower(), "libx264")
    return codec in CHUNK_CODECS


def keyframe_at_or_before(container: av.container.InputContainer, pts: int) -> int | None:
    """The pts of the last keyframe at or before ``pts`` (stream time base), by one seek."""
    stream = container.streams.video[0]
    container.seek(pts, stream=stream, backward=True, any_frame=False)
    for packet in container.demux(stream):
        if packet.pts is None:
            continue
        if packet.is_keyframe:
            return packet.pts
    return None


def plan_chunks(src: str | Path, seconds: float, overlap: float) -> list[ChunkSpec]:
    """Chunks of about ``seconds`` each; one chunk (the whole file) when it is not longer than
    1.5 chunks. Cuts are keyframes found by seeking (the file is not read through)."""
    with av.open(str(src)) as c:
        v = c.streams.video[0]
        tb = v.time_base
        start = v.start_time or 0
        if v.duration is not None:
            duration = float(v.duration * tb)
        elif c.duration is not None:
            duration = c.duration / av.time_base
        else:
            duration = 0.0
        if seconds <= 0 or duration <= 1.5 * seconds:
            return [ChunkSpec(0, 1, None, None, None)]
        cuts: list[int] = []
        t = seconds
        while t < duration - seconds / 2:
            k = keyframe_at_or_before(c, start + round(t / tb))
            # A keyframe too close to the previous cut (long GOP) would make a tiny chunk.
            if k is not None and k > start and (not cuts or (k - cuts[-1]) * tb >= seconds / 2):
                cuts.append(k)
            t += seconds
        warms = [max(start, k - round(overlap / tb)) for k in cuts]
    bounds = [None, *cuts]
    ends = [*cuts, None]
    n = len(bounds)
    return [ChunkSpec(i, n, bounds[i], ends[i], None if i == 0 else warms[i - 1]) for i in range(n)]


def chunk_path(chunk_dir: Path, spec: ChunkSpec) -> Path:
    return chunk_dir / f"chunk_{spec.index:05d}_of_{spec.count:05d}{CHUNK_EXT}"


def _window(reader: VideoReader, spec: ChunkSpec) -> Iterator[Frame]:
    """The reader's frames from ``warm`` up to (not including) ``end``; earlier ones are only
    decoded (needed to reach ``warm`` from the keyframe the seek landed on)."""
    for frame in reader:
        if not isinstance(frame, Frame):
            continue
        if spec.end is not None and frame.pts is not None and frame.pts >= spec.end:
            break
        if spec.warm is not None and frame.pts is not None and frame.pts < spec.warm:
            continue
        yield frame


def anonymize_chunk(
    src: str | Path,
    dst: str | Path,
    anonymizer: Anonymizer,
    spec: ChunkSpec,
    *,
    final_suffix: str = ".mp4",
    encode: EncodeOptions | None = None,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """Anonymize one chunk of ``src`` into ``dst`` (a .mov file, video only, written atomically).

    ``final_suffix``: extension of the joined output, which picks the default encoder."""
    enc = encode or EncodeOptions()
    t0 = time.perf_counter()
    times = StageTimes()
    tally = {"frames": 0, "faces": 0, "coasted": 0, "warm": 0, "t0": None, "last": 0.0}
    tracks: set[int] = set()
    start = spec.start

    def written(frame: Frame) -> bool:
        # Warm-up frames only feed the tracker; they are never shown, so never anonymized.
        return start is None or frame.pts is None or frame.pts >= start

    with VideoReader(src, audio=False) as reader:
        info = reader.info
        codec, bit_rate = enc.codec, enc.bit_rate
        if enc.keep_codec:
            codec = codec or _encoder_for(info.codec)
            bit_rate = bit_rate or info.bit_rate
        # The encoder the final container would get (chunks are .mov, which takes them all).
        codec = codec or _DEFAULT_CODEC.get(final_suffix.lower(), "libx264")
        if spec.warm is not None:
            reader.container.seek(spec.warm, stream=reader.stream, backward=True, any_frame=False)
        with atomic_output(dst) as tmp:
            writer = VideoWriter(
                tmp, info, codec=codec, crf=enc.crf, preset=enc.preset, bit_rate=bit_rate,
                codec_options=enc.codec_options, keep_metadata=enc.keep_metadata,
                options=_exact_offsets(info.time_base),
            )  # fmt: skip
            try:

                def sink(frame: Frame) -> None:
                    if not written(frame):
                        tally["warm"] += 1
                        return
                    writer.write(frame)
                    faces = frame.faces
                    tally["frames"] += 1
                    tally["faces"] += len(faces)
                    if faces.coasting is not None:
                        tally["coasted"] += int(faces.coasting.sum())
                    if faces.track_id is not None:
                        tracks.update(int(i) for i in faces.track_id if i >= 0)
                    if progress is not None:
                        if tally["t0"] is None:
                            tally["t0"] = frame.time
                        now = time.monotonic()
                        if now - tally["last"] >= 0.5:
                            tally["last"] = now
                            progress(tally["frames"], max(0.0, frame.time - tally["t0"]))

                run_frames(
                    _window(reader, spec), anonymizer, sink, shown=written, stop=stop, times=times
                )
                if writer.frames_written == 0:
                    raise InputError(f"{src}: chunk {spec.index} has no decodable frames")
            except BaseException:
                writer.abort()
                raise
            writer.close()
        corrupt = reader.corrupt_packets
    seconds = time.perf_counter() - t0
    c = anonymizer.counters
    return RunReport(
        str(src), str(dst), "chunk", frames=tally["frames"], faces=tally["faces"],
        detections=c.detections, tracks=len(tracks), coasted=tally["coasted"],
        fallbacks=c.fallbacks, corrupt_packets=corrupt, seconds=seconds,
        fps=tally["frames"] / seconds if seconds else 0.0, ms_per_frame=times.ms_per_frame(),
        extra={"chunk": spec.index, "warmup_frames": tally["warm"]},
    )  # fmt: skip


def join_chunks(
    src: str | Path,
    chunks: list[Path],
    dst: str | Path,
    *,
    encode: EncodeOptions | None = None,
    stop: Callable[[], bool] | None = None,
) -> dict:
    """Stream-copy the chunks' video, and the input's audio and subtitles, into ``dst``
    (atomic)."""
    enc = encode or EncodeOptions()
    dst = Path(dst)
    inputs = [av.open(str(p)) for p in chunks]
    original = av.open(str(src))
    try:
        with atomic_output(dst) as tmp:
            out = av.open(str(tmp), mode="w")
            try:
                for k, v in scrub_metadata(dict(original.metadata), enc.keep_metadata).items():
                    if k.lower() not in ("major_brand", "minor_version", "compatible_brands"):
                        out.metadata[k] = v
                vin = inputs[0].streams.video[0]
                vout = out.add_stream_from_template(vin)
                vout.time_base = vin.time_base
                # Audio and subtitles are copied from the input as the single-file path does.
                carried = (
                    [*original.streams.audio, *original.streams.subtitles] if enc.audio else []
                )
                audio_out = {}
                for a in carried:
                    try:
                        o = out.add_stream_from_template(a)
                    except (ValueError, av.error.FFmpegError) as exc:
                        log.warning(
                            "%s stream %d cannot go into %s (%s): dropped", a.type, a.index, dst, exc
                        )
                        continue
                    for k, v in scrub_metadata(dict(a.metadata), enc.keep_metadata).items():
                        o.metadata[k] = v
                    audio_out[a.index] = o
                streams = [(_packets(c, c.streams.video[0]), vout) for c in inputs]
                video = _chain(streams)
                audio = _audio_packets(original, [original.streams[i] for i in audio_out])
                frames = 0
                last_dts: Fraction | None = None
                for _, _, packet in heapq.merge(video, audio, key=lambda x: (x[0], x[1])):
                    if stop is not None and stop():
                        raise KeyboardInterrupt
                    if packet.stream.type == "video":
                        frames += 1
                        last_dts = _check_dts(packet, last_dts, dst)
                        packet.stream = vout
                    else:
                        packet.stream = audio_out[packet.stream.index]
                    out.mux(packet)
            except BaseException:
                out.close()
                raise
            out.close()
    except av.error.FFmpegError as exc:
        raise OutputError(f"{dst}: joining the chunks failed ({exc})") from None
    finally:
        for c in inputs:
            c.close()
        original.close()
    return {"packets": frames, "chunks": len(chunks)}


def _exact_offsets(tb: Fraction) -> dict[str, str]:
    """QuickTime stores a chunk's start offset in an edit list counted in the *movie* time
    scale (1/1000 s by default), which would move every frame of a chunk that does not start
    on a whole millisecond; counting it in the stream's own time base keeps pts exact."""
    return {"movie_timescale": str(Fraction(tb).denominator)}


def _check_dts(packet: av.Packet, last: Fraction | None, dst: Path) -> Fraction | None:
    """Decode times must rise across a cut. They do when every chunk's encoder has the same
    reorder delay (same settings); if not, refuse rather than write a file players choke on."""
    if packet.dts is None:
        return last
    t = packet.dts * packet.time_base
    if last is not None and t <= last:
        raise OutputError(f"{dst}: chunks do not join (decode time {float(t):.3f}s repeats)")
    return t


def _packets(container, stream) -> Iterator[av.Packet]:
    for p in container.demux(stream):
        if p.dts is not None or p.pts is not None:
            yield p


def _chain(parts) -> Iterator[tuple[float, int, av.Packet]]:
    """Video packets of every chunk, in order, keyed by decode time (seconds)."""
    for packets, _ in parts:
        for p in packets:
            ts = p.dts if p.dts is not None else p.pts
            yield (float(ts * p.time_base), 0, p)


def _audio_packets(container, streams) -> Iterator[tuple[float, int, av.Packet]]:
    if not streams:
        return
    for p in container.demux(streams):
        # The same packets the single-file path copies (io.video: audio with a dts, subtitles
        # with a pts or dts; never empty ones).
        ts = p.dts if p.dts is not None else (p.pts if p.stream.type == "subtitle" else None)
        if ts is not None and p.size:
            yield (float(ts * p.time_base), 1, p)


__all__ = ["ChunkSpec", "anonymize_chunk", "chunk_path", "chunkable", "join_chunks", "plan_chunks"]
