"""Anonymize whole inputs: video files, still images, folders of images.

`anonymize_file(src, dst)` is the Python entry point; the CLI calls the same functions.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamanon.anonymizer import Anonymizer, Options
from streamanon.errors import InputError, OutputError
from streamanon.io.atomic import atomic_output, check_output
from streamanon.io.images import IMAGE_EXTS, is_image_path, read_image, write_image
from streamanon.io.video import AudioPacket, VideoReader, VideoWriter
from streamanon.pipeline import StageTimes, run_pipeline
from streamanon.types import Frame

log = logging.getLogger(__name__)

STREAM_PREFIXES = (
    "rtsp://",
    "rtsps://",
    "rtmp://",
    "rtmps://",
    "http://",
    "https://",
    "udp://",
    "srt://",
    "tcp://",
)


@dataclass
class EncodeOptions:
    codec: str | None = None
    crf: int | None = 20
    preset: str | None = "veryfast"
    bit_rate: int | None = None
    keep_codec: bool = False
    keep_metadata: bool = False
    audio: bool = True
    codec_options: dict[str, str] = field(default_factory=dict)


@dataclass
class RunReport:
    """What one input produced; serialised into ``--report``."""

    input: str
    output: str
    kind: str
    frames: int = 0
    faces: int = 0
    detections: int = 0
    tracks: int = 0
    coasted: int = 0
    fallbacks: int = 0
    corrupt_packets: int = 0
    dropped_frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    extra: dict = field(default_factory=dict)


def report_for(
    anonymizer: Anonymizer, src: str | Path, dst: str | Path, kind: str, **fields
) -> RunReport:
    """A RunReport filled from the anonymizer's counters (and its method's own report)."""
    c = anonymizer.counters
    extra = dict(fields.pop("extra", {}))
    method = anonymizer.method_report()
    if method:
        extra[anonymizer.options.method] = method
    objects = anonymizer.object_report()  # plates etc., counted per class
    if objects:
        extra["objects"] = objects
    # Every face covered by the fallback instead of the method: declined by it or failed.
    fallbacks = sum((method.get("fallbacks") or {}).values())
    return RunReport(
        str(src), str(dst), kind, frames=c.frames, faces=c.faces, detections=c.detections,
        tracks=len(c.track_ids), coasted=c.coasted, fallbacks=fallbacks, extra=extra, **fields,
    )  # fmt: skip


def default_output(src: str | Path, out: str | Path | None, many: bool) -> Path:
    """Where the result of ``src`` goes: ``<stem>_anonymized<ext>`` beside it, or inside ``out``."""
    src = Path(src)
    name = f"{src.name}_anonymized" if src.is_dir() else f"{src.stem}_anonymized{src.suffix}"
    if out is None:
        return src.with_name(name)
    out = Path(out)
    if many or out.is_dir() or str(out).endswith(os.sep):
        return out / name
    return out


def input_kind(src: str) -> str:
    if src.startswith(STREAM_PREFIXES) or src.startswith("webcam:") or src.startswith("/dev/video"):
        return "stream"
    p = Path(src)
    if p.is_dir():
        return "folder"
    if not p.exists():
        raise InputError(f"{src}: no such file")
    if not os.access(p, os.R_OK):
        raise InputError(f"{src}: permission denied")
    if p.stat().st_size == 0:
        raise InputError(f"{src}: empty file")
    return "image" if is_image_path(p) else "video"


def anonymize_image(
    src: str | Path, dst: str | Path, anonymizer: Anonymizer, *, overwrite: bool = False
) -> RunReport:
    dst = check_output(src, dst, overwrite)
    t0 = time.perf_counter()
    image = read_image(src)
    out = anonymizer(image)
    with atomic_output(dst) as tmp:
        write_image(tmp, out)
    return report_for(anonymizer, src, dst, "image", seconds=time.perf_counter() - t0)


def anonymize_folder(
    src: str | Path,
    dst: str | Path,
    make_anonymizer: Callable[[], Anonymizer],
    *,
    overwrite: bool = False,
) -> RunReport:
    """Every image directly inside ``src`` → same name inside ``dst`` (created)."""
    src, dst = Path(src), Path(dst)
    images = sorted(p for p in src.iterdir() if p.suffix.lower() in IMAGE_EXTS and p.is_file())
    if not images:
        raise InputError(f"{src}: no images in this folder")
    if dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: output folder is the input folder")
    dst.mkdir(parents=True, exist_ok=True)
    report = RunReport(str(src), str(dst), "folder")
    t0 = time.perf_counter()
    for p in images:
        # Photos in a folder are unrelated: a fresh tracker per image, no identity carried over.
        r = anonymize_image(p, dst / p.name, make_anonymizer(), overwrite=overwrite)
        report.frames += 1
        report.faces += r.faces
        report.detections += r.detections
        report.tracks += r.tracks
        report.fallbacks += r.fallbacks
    report.seconds = time.perf_counter() - t0
    return report


def anonymize_video(
    src: str | Path,
    dst: str | Path,
    anonymizer: Anonymizer,
    *,
    encode: EncodeOptions | None = None,
    overwrite: bool = False,
    progress: Callable[[Frame], None] | None = None,
    stop: threading.Event | None = None,
    preview: Callable[[Frame], None] | None = None,
) -> RunReport:
    enc = encode or EncodeOptions()
    dst = check_output(src, dst, overwrite)
    t0 = time.perf_counter()
    times = StageTimes()
    with VideoReader(src, audio=enc.audio) as reader:
        info = reader.info
        codec, bit_rate = enc.codec, enc.bit_rate
        if enc.keep_codec:
            codec = codec or _encoder_for(info.codec)
            bit_rate = bit_rate or info.bit_rate
        with atomic_output(dst) as tmp:
            writer = VideoWriter(
                tmp,
                info,
                audio_from=reader,
                codec=codec,
                crf=enc.crf,
                preset=enc.preset,
                bit_rate=bit_rate,
                codec_options=enc.codec_options,
                keep_metadata=enc.keep_metadata,
            )
            try:

                def sink(item: Frame | AudioPacket) -> None:
                    if isinstance(item, AudioPacket):
                        writer.write_audio(item)
                        return
                    if writer.stream is None and reader.rotation:
                        writer.rotation = reader.rotation
                    writer.write(item)
                    if preview is not None:
                        preview(item)
                    if progress is not None:
                        progress(item)

                run_pipeline(
                    reader,
                    [("detect", anonymizer.track), ("anonymize", anonymizer.apply)],
                    sink,
                    stop=stop,
                    times=times,
                )
                if writer.frames_written == 0:
                    raise InputError(f"{src}: no decodable video frames")
            except BaseException:
                writer.abort()
                raise
            writer.close()
        corrupt = reader.corrupt_packets
        fixed_ts = reader.fixed_timestamps
    seconds = time.perf_counter() - t0
    frames = anonymizer.counters.frames
    return report_for(
        anonymizer, src, dst, "video",
        corrupt_packets=corrupt, dropped_frames=times.dropped, seconds=seconds,
        fps=frames / seconds if seconds else 0.0, ms_per_frame=times.ms_per_frame(),
        extra={"fixed_timestamps": fixed_ts} if fixed_ts else {},
    )  # fmt: skip


def _encoder_for(decoder_name: str) -> str:
    """An encoder for the input's codec, so --keep-codec re-encodes into the same format."""
    import av

    candidates = {
        "h264": ["libx264", "h264"],
        "hevc": ["libx265", "hevc"],
        "vp9": ["libvpx-vp9"],
        "vp8": ["libvpx"],
        "av1": ["libaom-av1", "libsvtav1"],
        "mpeg4": ["mpeg4"],
        "mjpeg": ["mjpeg"],
        "mpeg2video": ["mpeg2video"],
    }.get(decoder_name, [decoder_name])
    for name in candidates:
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # noqa: BLE001 - try the next encoder name
            continue
    log.warning("no encoder for %s here; using libx264", decoder_name)
    return "libx264"


def anonymize_file(
    src: str | Path,
    dst: str | Path | None = None,
    *,
    overwrite: bool = False,
    encode: EncodeOptions | None = None,
    **options,
) -> RunReport:
    """Anonymize one video, image or folder of images; returns its report.

    ``options`` are `Options` fields (method, thresh, mask_scale, coast_s, ...).
    """
    opts = Options(**options)
    kind = input_kind(str(src))
    out = default_output(src, dst, many=False)
    if kind == "image":
        return anonymize_image(src, out, Anonymizer(opts), overwrite=overwrite)
    if kind == "folder":
        return anonymize_folder(
            src, out, lambda: Anonymizer(Options(**options)), overwrite=overwrite
        )
    if kind == "video":
        return anonymize_video(src, out, Anonymizer(opts), encode=encode, overwrite=overwrite)
    raise InputError(f"{src}: live streams are run with `streamanon {src} -o OUTPUT`")
