"""Anonymize whole inputs: video files, still images, folders of both.

`anonymize_file(src, dst)` is the Python entry point; the CLI calls the same functions.

Names mean what a user means by them: only ``scheme://`` URLs and cameras are live sources
(`io.sources`); ``-o out/`` is a folder (created), ``-o out.mp4`` a file whose extension must
suit the input (an image stays an image), and a name without an extension is refused with a
hint rather than guessed at.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from streamanon.anonymizer import Anonymizer, Options
from streamanon.errors import InputError, OutputError, StreamanonError
from streamanon.io.atomic import atomic_output, check_output
from streamanon.io.images import IMAGE_EXTS, is_image_path, read_image_kept, write_image
from streamanon.io.sources import VIDEO_EXTS, is_live_source, url_scheme
from streamanon.io.video import AudioPacket, VideoInfo, VideoReader, VideoWriter
from streamanon.pipeline import Cancelled, FrameWork, StageTimes, run_frames
from streamanon.types import Frame

log = logging.getLogger(__name__)


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
    # Frames the file's header promised but that could not be decoded (a truncated file).
    missing_frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    # Folder mode: files that could not be anonymized, [{"input": ..., "error": ...}].
    errors: list[dict[str, str]] = field(default_factory=list)
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
    # The quarter turns faces were also searched at (--orientations; auto adds them).
    turns = list(getattr(anonymizer.detector, "angles", (0,)))
    if turns != [0]:
        extra["orientations"] = turns
    # Every face covered by the fallback instead of the method: declined by it or failed.
    fallbacks = sum((method.get("fallbacks") or {}).values())
    return RunReport(
        str(src), str(dst), kind, frames=c.frames, faces=c.faces, detections=c.detections,
        tracks=len(c.track_ids), coasted=c.coasted, fallbacks=fallbacks, extra=extra, **fields,
    )  # fmt: skip


def default_output(src: str | Path, out: str | Path | None, many: bool) -> Path:
    """Where the result of ``src`` goes: ``<stem>_anonymized<ext>`` beside it, or inside ``out``.

    ``out`` is a folder when it exists as one, ends with a path separator (it is created) or
    several inputs share it; otherwise it is the output file (or, for a folder input, folder).
    """
    src = Path(src)
    name = f"{src.name}_anonymized" if src.is_dir() else f"{src.stem}_anonymized{src.suffix}"
    if out is None:
        return src.with_name(name)
    text = str(out)
    out = Path(out)
    if many or out.is_dir() or text.endswith(("/", os.sep)):
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{out}: cannot create the output folder ({exc.strerror})") from None
        return out / name
    if not src.is_dir() and not out.suffix:
        raise OutputError(
            f"-o {text}: no file extension; name the file (e.g. {text}{src.suffix or '.mp4'}) "
            f"or end a folder with / ({text}/)"
        )
    return out


def input_kind(src: str) -> str:
    """ "stream", "folder", "image" or "video"; a bad input is an `InputError` here, before any
    work is done."""
    if is_live_source(src):
        return "stream"
    scheme = url_scheme(src)
    if scheme is not None:
        raise InputError(f"{src}: unsupported URL scheme {scheme!r} (rtsp, rtmp, srt, http, ...)")
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


def _check_kind(src: str | Path, dst: Path, image: bool) -> None:
    """The output's extension must suit the input: images stay images, videos videos."""
    ext = dst.suffix.lower()
    if image and not is_image_path(dst):
        raise OutputError(
            f"{dst}: {Path(src).name} is an image; name the output with an image extension "
            f"({', '.join(sorted(IMAGE_EXTS))})"
        )
    if not image and ext not in VIDEO_EXTS and (is_image_path(dst) or ext not in muxer_exts()):
        hint = "an image extension is for image inputs; " if is_image_path(dst) else ""
        raise OutputError(
            f"{dst}: {hint}unknown video format {ext or '(no extension)'!r}; "
            "name the output .mp4, .mkv, .mov or .webm"
        )


@functools.cache
def muxer_exts() -> frozenset[str]:
    """Every file extension an FFmpeg muxer of this PyAV build claims (".mp4", ".h264", ...)."""
    import av

    exts = set()
    for name in av.formats_available:
        try:
            fmt = av.format.ContainerFormat(name, "w")
        except (ValueError, av.error.FFmpegError):
            continue
        exts.update(f".{e.strip().lower()}" for e in fmt.extensions)
    return frozenset(exts)


def anonymize_image(
    src: str | Path,
    dst: str | Path,
    anonymizer: Anonymizer,
    *,
    overwrite: bool = False,
    keep_metadata: bool = False,
) -> RunReport:
    dst = check_output(src, dst, overwrite)
    _check_kind(src, dst, image=True)
    if keep_metadata:
        log.warning("%s: --keep-metadata applies to videos; images are written without EXIF", src)
    t0 = time.perf_counter()
    image, kept = read_image_kept(src)  # kept: alpha / bit depth the 8-bit copy lacks
    out = anonymizer(image)
    with atomic_output(dst) as tmp:
        write_image(tmp, out, original=kept)
    return report_for(anonymizer, src, dst, "image", seconds=time.perf_counter() - t0)


def folder_inputs(src: Path, skip: Path | None = None) -> tuple[list[Path], list[Path]]:
    """(images and videos under ``src``, recursively, sorted; other files), leaving out hidden
    files and folders and the subtree ``skip`` (an output folder inside the input)."""
    media, other = [], []
    skip = skip.resolve() if skip is not None else None
    for root, dirs, files in os.walk(src):
        r = Path(root)
        dirs[:] = sorted(
            d for d in dirs if not d.startswith(".") and (skip is None or (r / d).resolve() != skip)
        )
        for f in sorted(files):
            if f.startswith("."):
                continue
            p = r / f
            ext = p.suffix.lower()
            (media if ext in IMAGE_EXTS or ext in VIDEO_EXTS else other).append(p)
    return media, other


def anonymize_folder(
    src: str | Path,
    dst: str | Path,
    make_anonymizer: Callable[[], Anonymizer],
    *,
    overwrite: bool = False,
    encode: EncodeOptions | None = None,
    stop: threading.Event | None = None,
) -> RunReport:
    """Every image and video under ``src`` → the same relative path under ``dst`` (created).

    The models are built once (one `Anonymizer`, reset between files: no track or identity is
    carried from one file to the next). A file that fails (corrupt, unreadable, unwritable) is
    recorded in ``report.errors`` with its reason and the batch goes on.
    """
    src, dst = Path(src), Path(dst)
    inside = dst.resolve().is_relative_to(src.resolve())
    if dst.resolve() == src.resolve():
        raise OutputError(f"{dst}: output folder is the input folder")
    media, other = folder_inputs(src, skip=dst if inside else None)
    if not media:
        raise InputError(f"{src}: no images or videos in this folder")
    if other:
        log.info("%s: %d file(s) that are not images or videos left out", src, len(other))
    try:
        dst.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{dst}: cannot create the output folder ({exc.strerror})") from None
    report = RunReport(str(src), str(dst), "folder")
    t0 = time.perf_counter()
    anonymizer = make_anonymizer()
    for p in media:
        if stop is not None and stop.is_set():
            raise Cancelled()
        out = dst / p.relative_to(src)
        anonymizer.reset()
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            if is_image_path(p):
                r = anonymize_image(p, out, anonymizer, overwrite=overwrite)
            else:
                r = anonymize_video(
                    p, out, anonymizer, encode=encode, overwrite=overwrite, stop=stop
                )
        except StreamanonError as exc:
            msg = str(exc)
            report.errors.append({"input": str(p), "error": msg.removeprefix(f"{p}: ")})
            log.warning("%s", msg)
            continue
        except OSError as exc:
            report.errors.append({"input": str(p), "error": f"{exc.strerror or exc}"})
            log.warning("%s: %s", p, exc.strerror or exc)
            continue
        report.frames += r.frames
        report.faces += r.faces
        report.detections += r.detections
        report.tracks += r.tracks
        report.coasted += r.coasted
        report.fallbacks += r.fallbacks
        report.corrupt_packets += r.corrupt_packets
        report.missing_frames += r.missing_frames
        for kind, counts in r.extra.get("objects", {}).items():  # plates, summed per class
            total = report.extra.setdefault("objects", {}).setdefault(kind, {})
            for k, v in counts.items():
                total[k] = total.get(k, 0) + v
    report.seconds = time.perf_counter() - t0
    return report


@dataclass
class VideoRun:
    """What `encode_video` measured: frames in and out, decode problems, per-stage times."""

    info: VideoInfo
    frames: int
    corrupt_packets: int
    fixed_timestamps: int
    times: StageTimes
    seconds: float


def encode_video(
    src: str | Path,
    dst: str | Path,
    work: FrameWork,
    *,
    encode: EncodeOptions | None = None,
    progress: Callable[[Frame], None] | None = None,
    stop: threading.Event | None = None,
    preview: Callable[[Frame], None] | None = None,
) -> VideoRun:
    """Decode ``src``, run every frame through ``work`` (`pipeline.run_frames`), encode into
    ``dst`` (written atomically; checked by the caller). The one video path: files, batch
    files and the benchmark's entries all come through here."""
    enc = encode or EncodeOptions()
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

                run_frames(reader, work, sink, stop=stop, times=times)
                if writer.frames_written == 0:
                    raise InputError(f"{src}: no decodable video frames")
            except BaseException:
                writer.abort()
                raise
            writer.close()
            frames = writer.frames_written
        corrupt = reader.corrupt_packets
        fixed_ts = reader.fixed_timestamps
    return VideoRun(info, frames, corrupt, fixed_ts, times, time.perf_counter() - t0)


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
    dst = check_output(src, dst, overwrite)
    _check_kind(src, dst, image=False)
    run = encode_video(
        src, dst, anonymizer, encode=encode, progress=progress, stop=stop, preview=preview
    )
    info, seconds = run.info, run.seconds
    frames = anonymizer.counters.frames
    # The header's frame count is an estimate for some containers; more than one frame short
    # means the file ends early (cut off while copying or recording).
    missing = max(0, info.frames - frames) if info.frames else 0
    if missing > 1:
        log.warning(
            "%s: the file ends early: %d of %d frames decoded (truncated?)",
            src,
            frames,
            info.frames,
        )
    return report_for(
        anonymizer, src, dst, "video",
        corrupt_packets=run.corrupt_packets, dropped_frames=run.times.dropped,
        missing_frames=missing, seconds=seconds,
        fps=frames / seconds if seconds else 0.0, ms_per_frame=run.times.ms_per_frame(),
        extra={"fixed_timestamps": run.fixed_timestamps} if run.fixed_timestamps else {},
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
            src, out, lambda: Anonymizer(opts), overwrite=overwrite, encode=encode
        )
    if kind == "video":
        return anonymize_video(src, out, Anonymizer(opts), encode=encode, overwrite=overwrite)
    raise InputError(f"{src}: live streams are run with `streamanon {src} -o OUTPUT`")
