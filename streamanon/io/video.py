"""Video files and streams on PyAV: decode to BGR frames, encode them back with timing intact.

The reader demuxes the video stream and, unless asked not to, the audio streams. Audio packets
are not decoded: they ride through the pipeline beside the frames and are remuxed untouched.
Frames keep their pts and time base, so variable frame rate and odd time bases survive.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from streamanon.errors import InputError, OutputError
from streamanon.io.atomic import shown_name
from streamanon.io.images import changed_boxes
from streamanon.io.sources import ffmpeg_path, is_camera, url_scheme
from streamanon.types import Frame

log = logging.getLogger(__name__)

# Tags that say where, by whom or with what device footage was taken. Stripped unless the user
# asks to keep metadata: a face-free video that still carries GPS is not anonymous.
_IDENTIFYING = re.compile(
    r"location|gps|xyz|iso6709|serial|comment|description|artist|author|make|model|"
    r"user|owner|copyright|keywords|title|album|software|encoder|handler_name|"
    r"creation_time|date",  # when it was filmed narrows down who filmed it
    re.IGNORECASE,
)

_DEFAULT_CODEC = {
    ".mp4": "libx264",
    ".m4v": "libx264",
    ".mov": "libx264",
    ".mkv": "libx264",
    ".avi": "libx264",
    ".ts": "libx264",
    ".flv": "libx264",
    ".webm": "libvpx-vp9",
    ".gif": "gif",
}


# The quality scale each encoder takes for --crf (x264/x265 stop at 51; the VPx/AV1 ones at 63).
CRF_RANGES = {
    "libx264": (0, 51), "libx264rgb": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63),
    "libvpx": (4, 63), "libaom-av1": (0, 63), "libsvtav1": (0, 63),
}  # fmt: skip


# Encoders that code interlaced video (field order and interlaced DCT/ME from the context).
INTERLACED_CODECS = {"libx264", "mpeg2video", "mpeg4", "libx264rgb"}
# Pictures larger than this (1440p) get a shorter x264 lookahead (memory; VideoWriter).
LOOKAHEAD_AREA = 2560 * 1440
# Encoders that take any frame size in subsampled chroma (x264, x265, mpeg4, ... want even).
ODD_SIZES_OK = {"libvpx-vp9", "libvpx", "libaom-av1", "ffv1", "png", "qtrle", "gif", "rawvideo"}


def _bits(fmt: av.VideoFormat) -> int:
    return max((c.bits for c in fmt.components), default=8)


def _alpha(fmt: av.VideoFormat) -> bool:
    return any(c.is_alpha for c in fmt.components)


def _subsampled(fmt: av.VideoFormat) -> tuple[bool, bool]:
    """(width, height) halved in chroma: such formats need even sizes from most encoders."""
    return fmt.chroma_width(2) < 2, fmt.chroma_height(2) < 2


def choose_format(
    codec: str, supported: list[str], asked: str | None, source: str | None, w: int, h: int
) -> tuple[str, tuple[int, int], list[str]]:
    """The pixel format and size to encode: the source's bit depth where the encoder has it,
    its exact size (4:4:4 when an encoder needs even sizes for 4:2:0), and a line for each
    thing that could not be kept (alpha, depth, an odd size). ``asked``: the user's format."""
    notes: list[str] = []
    wanted = asked or "yuv420p"
    src = None
    if source:
        try:
            src = av.VideoFormat(source)
        except (ValueError, av.error.FFmpegError):
            src = None
    if asked is None and src is not None:
        depth = _bits(src)
        keyed = [f for f in supported if _alpha(av.VideoFormat(f))]
        if _alpha(src) and keyed:
            keyed.sort(key=lambda f: abs(_bits(av.VideoFormat(f)) - depth))
            wanted = keyed[0]  # the encoder keeps an alpha channel: so do we
        elif _alpha(src):
            notes.append(f"the source's alpha channel ({source}) is not kept: {codec} has"
                         " none, the video is written opaque (qtrle, ffv1, prores_ks keep it)")  # fmt: skip
        if depth > 8 and not _alpha(av.VideoFormat(wanted)):
            deep = [
                f for f in supported
                if f.startswith("yuv") and not _alpha(av.VideoFormat(f))
                and _bits(av.VideoFormat(f)) > 8
            ]  # fmt: skip
            same = _subsampled(src)
            deep.sort(key=lambda f: (_subsampled(av.VideoFormat(f)) != same,
                                     abs(_bits(av.VideoFormat(f)) - depth)))  # fmt: skip
            if deep:
                wanted = deep[0]
            else:
                notes.append(f"{depth}-bit source written as 8-bit: {codec} has no deeper format")
    if supported and wanted not in supported:
        wanted = supported[0]
    ow, oh = w, h
    if codec not in ODD_SIZES_OK:
        half_w, half_h = _subsampled(av.VideoFormat(wanted))
        if (half_w and w % 2) or (half_h and h % 2):
            full = wanted.replace("420", "444").replace("422", "444")
            if full != wanted and full in supported:
                notes.append(f"odd size {w}x{h} kept by encoding 4:4:4 ({full}), which some"
                             " players (browsers, phones) cannot play")  # fmt: skip
                wanted = full
            else:
                ow, oh = w - w % 2 * half_w, h - h % 2 * half_h
                notes.append(f"cropped from {w}x{h} to {ow}x{oh}: {codec} needs even sizes")
    return wanted, (ow, oh), notes


X26X_PRESETS = (
    "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower",
    "veryslow", "placebo",
)  # fmt: skip


def check_crf(codec: str, crf: int | None, preset: str | None = None) -> None:
    """An InputError (one line, before any work) for a --crf or --preset the encoder does not
    take."""
    lo, hi = CRF_RANGES.get(codec, (0, 63))
    if crf is not None and not lo <= crf <= hi:
        raise InputError(f"--crf {crf}: {codec} takes {lo} to {hi}")
    if preset and codec in ("libx264", "libx264rgb", "libx265") and preset not in X26X_PRESETS:
        raise InputError(f"--preset {preset!r}: {codec} takes {', '.join(X26X_PRESETS)}")


_SAID: set[str] = set()  # inputs whose alpha loss was already said


@dataclass(slots=True)
class AudioPacket:
    """A demuxed, undecoded packet of a stream that is copied to the output."""

    packet: av.Packet
    stream_index: int


def scrub_metadata(tags: dict[str, str], keep: bool) -> dict[str, str]:
    """Container/stream tags to write: everything when ``keep``, else the non-identifying ones."""
    if keep:
        return dict(tags)
    return {k: v for k, v in tags.items() if not _IDENTIFYING.search(k)}


@dataclass
class VideoInfo:
    width: int
    height: int
    codec: str
    time_base: Fraction
    average_rate: Fraction | None
    frames: int
    duration_s: float | None
    bit_rate: int | None
    pix_fmt: str | None
    metadata: dict[str, str]
    audio_streams: list[int] = field(default_factory=list)
    # FFmpeg's AVFieldOrder: 0 unknown, 1 progressive, 2 tt, 3 bb, 4 tb, 5 bt.
    field_order: int = 0


def normalize_rotation(degrees: float) -> int:
    """A display rotation snapped to 0, 90, 180 or 270 (counter-clockwise degrees)."""
    return int(round(float(degrees) / 90.0)) % 4 * 90


_TO_UPRIGHT = {
    90: cv2.ROTATE_90_COUNTERCLOCKWISE,
    180: cv2.ROTATE_180,
    270: cv2.ROTATE_90_CLOCKWISE,
}
_TO_STORED = {90: cv2.ROTATE_90_CLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_COUNTERCLOCKWISE}


def upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """The stored picture turned the way a player shows it (display rotation applied)."""
    code = _TO_UPRIGHT.get(normalize_rotation(rotation))
    return image if code is None else cv2.rotate(image, code)


def stored(image: np.ndarray, rotation: int) -> np.ndarray:
    """Inverse of `upright`: the picture as it is stored beside a display rotation tag."""
    code = _TO_STORED.get(normalize_rotation(rotation))
    return image if code is None else cv2.rotate(image, code)


class VideoReader:
    """Iterate over a video's frames (``Frame``) and, optionally, its audio packets.

    Frames come out upright: a phone clip stored sideways with a display rotation is turned
    before anything looks for faces in it (``Frame.rotation`` says how to store it back).

    ``corrupt_packets`` counts packets the decoder rejected; they are skipped, not fatal.
    """

    def __init__(
        self,
        source: str | Path,
        *,
        audio: bool = True,
        options: dict[str, str] | None = None,
        format: str | None = None,
        timeout: float | tuple[float, float] | None = None,
        threads: bool = True,
    ) -> None:
        self.source = str(source)
        local = format is None and url_scheme(self.source) is None and not is_camera(self.source)
        self._read_timeout = timeout[1] if isinstance(timeout, tuple) else timeout
        open_timeout = timeout[0] if isinstance(timeout, tuple) else timeout
        t0 = time.monotonic()
        try:
            self.container = av.open(
                ffmpeg_path(self.source) if local else self.source,
                mode="r",
                options=options or {},
                format=format,
                timeout=timeout,
            )
        except FileNotFoundError:
            raise InputError(f"{self.source}: no such file") from None
        except av.error.FFmpegError as exc:
            waited = time.monotonic() - t0
            # PyAV's timeout ends a silent open with ExitError; a protocol's own socket timeout
            # (RTSP's) with "invalid data" once the time is up: both mean nobody answered.
            if not local and (
                isinstance(exc, av.error.ExitError)
                or (open_timeout and waited >= 0.9 * open_timeout)
            ):
                raise InputError(
                    f"{self.source}: no answer within {waited:.0f} s (nothing sent a stream;"
                    " check the URL and that the camera is on, or raise --timeout)"
                ) from None
            if isinstance(exc, (av.error.InvalidDataError, av.error.EOFError)):
                what = "a video or image file" if local else "a stream"
                raise InputError(f"{self.source}: not {what} PyAV can read") from None
            raise InputError(f"{self.source}: cannot open ({_ffmsg(exc)})") from None
        vstreams = self.container.streams.video
        if not vstreams:
            self.container.close()
            raise InputError(f"{self.source}: has no video stream")
        self.stream = vstreams[0]
        try:
            ctx = self.stream.codec_context
            if threads:
                ctx.thread_type = "AUTO"
        except av.error.FFmpegError as exc:
            self.container.close()
            raise InputError(f"{self.source}: unsupported video codec ({_ffmsg(exc)})") from None
        if self.stream.codec_context.codec is None or self.stream.codec_context.width == 0:
            self.container.close()
            raise InputError(f"{self.source}: unsupported or unreadable video stream")
        if str(self.stream.metadata.get("alpha_mode", "")) == "1" and self.source not in _SAID:
            # WebM keeps VP8/VP9 alpha beside the picture; FFmpeg's decoders do not read it.
            _SAID.add(self.source)  # once per input, however often it is opened
            log.warning("%s: its alpha channel is not decoded here; written opaque", self.source)
        self.audio_streams = list(self.container.streams.audio) if audio else []
        # Subtitles ride with the audio (copied, never decoded); --no-audio keeps video only.
        self.subtitle_streams = list(self.container.streams.subtitles) if audio else []
        self.corrupt_packets = 0
        self.fixed_timestamps = 0
        self.rotation = 0
        self.field_order = int(self.stream.codec_context.field_order or 0)
        # Decoded frames kept by index for a writer that puts their deep pixels back
        # (`VideoWriter` turns this on for sources of more than 8 bits, and takes each one).
        self.keep_originals = False
        self._originals: dict[int, av.VideoFrame] = {}
        self._last_pts: int | None = None
        # A gap longer than this between two frames is taken as a corrupt timestamp. Files
        # cannot jump past their own length; live sources may pause, so they get a minute.
        d = self.container.duration
        self._max_jump_s = max(10.0, d / av.time_base + 1.0) if d else 60.0

    def _sane_pts(self, pts: int | None, tb: Fraction | None) -> int | None:
        """Timestamps the tracker and the encoder can trust: increasing, no wild jumps.

        Corrupt packets can decode to frames with garbage pts (hours ahead, or backwards);
        such a frame gets the previous pts plus one nominal frame duration instead.
        """
        if tb is None:
            return pts
        rate = self.stream.average_rate or self.stream.guessed_rate or 25
        step = max(1, round(1 / (float(rate) * float(tb))))
        last = self._last_pts
        if pts is not None and last is not None:
            jump = float((pts - last) * tb)
            if pts <= last and last - pts <= step:
                # A duplicate (or slightly out-of-order) timestamp: the smallest step keeps
                # this frame and every later one at its own time (a full frame step per
                # duplicate would push the rest of the video later and later).
                self.fixed_timestamps += 1
                pts = last + 1
            elif pts <= last or jump > self._max_jump_s:
                self.fixed_timestamps += 1
                pts = last + step
        elif pts is None:
            self.fixed_timestamps += 1
            pts = 0 if last is None else last + step
        self._last_pts = pts
        return pts

    @property
    def info(self) -> VideoInfo:
        s = self.stream
        ctx = s.codec_context
        duration = None
        if s.duration is not None and s.time_base is not None:
            duration = float(s.duration * s.time_base)
        elif self.container.duration is not None:
            duration = self.container.duration / av.time_base
        return VideoInfo(
            width=ctx.width,
            height=ctx.height,
            codec=ctx.name,
            time_base=s.time_base or Fraction(1, 90000),
            average_rate=s.average_rate or s.guessed_rate,
            frames=s.frames,
            duration_s=duration,
            bit_rate=ctx.bit_rate or None,
            pix_fmt=ctx.pix_fmt,
            metadata=dict(self.container.metadata),
            audio_streams=[a.index for a in self.audio_streams],
            field_order=self.field_order,
        )

    def __iter__(self) -> Iterator[Frame | AudioPacket]:
        index = 0
        streams = [self.stream, *self.audio_streams, *self.subtitle_streams]
        tb = self.stream.time_base
        try:
            packets = self.container.demux(streams)
            while True:
                try:
                    packet = next(packets)
                except StopIteration:
                    break
                except (av.error.InvalidDataError, av.error.UndefinedError) as exc:
                    # A broken container chunk: count it and keep demuxing what follows.
                    self.corrupt_packets += 1
                    log.debug("skipping unreadable data: %s", exc)
                    continue
                if packet.stream.type == "audio":
                    if packet.dts is not None and packet.size:
                        yield AudioPacket(packet, packet.stream.index)
                    continue
                if packet.stream.type == "subtitle":
                    if packet.size and (packet.pts is not None or packet.dts is not None):
                        yield AudioPacket(packet, packet.stream.index)
                    continue
                try:
                    frames = packet.decode()
                except (av.error.InvalidDataError, av.error.UndefinedError, ValueError) as exc:
                    self.corrupt_packets += 1
                    log.debug("skipping corrupt packet: %s", exc)
                    continue
                for vf in frames:
                    rotation = normalize_rotation(getattr(vf, "rotation", 0) or 0)
                    if index == 0:
                        self.rotation = rotation
                        if vf.interlaced_frame and self.field_order < 2:
                            # Interlaced pictures in a container that did not say so: the
                            # decoder knows the order; top field first when it does not.
                            order = int(self.stream.codec_context.field_order or 0)
                            self.field_order = order if order >= 2 else 2
                    image = upright(vf.to_ndarray(format="bgr24"), rotation)
                    if self.keep_originals and not rotation:
                        self._originals[index] = vf
                    ftb = vf.time_base or tb
                    yield Frame(image, index, self._sane_pts(vf.pts, ftb), ftb, rotation)
                    index += 1
        except av.error.ExitError:
            # Only PyAV's read timeout interrupts a read: the source went quiet.
            quiet = f" for {self._read_timeout:g} s" if self._read_timeout else ""
            raise InputError(f"{self.source}: no data{quiet} (the stream went silent)") from None
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.source}: read failed ({_ffmsg(exc)})") from None

    def take_original(self, index: int) -> av.VideoFrame | None:
        """The decoded frame ``index`` as the file stores it (kept when `keep_originals`)."""
        return self._originals.pop(index, None)

    def close(self) -> None:
        self.container.close()

    def __enter__(self) -> VideoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoWriter:
    """Encode BGR frames (and copied audio packets) into a container.

    The output stream is created on the first frame, so its size is the real decoded size.
    ``codec=None`` picks a default from the file extension; ``crf``/``preset`` apply to x264/x265.
    """

    def __init__(
        self,
        target: str | Path,
        reader_info: VideoInfo | None = None,
        *,
        audio_from: VideoReader | None = None,
        codec: str | None = None,
        crf: int | None = 20,
        preset: str | None = "veryfast",
        bit_rate: int | None = None,
        pix_fmt: str | None = None,
        codec_options: dict[str, str] | None = None,
        keep_metadata: bool = False,
        rotation: int = 0,
        format: str | None = None,
        options: dict[str, str] | None = None,
        fps: float | Fraction | None = None,
    ) -> None:
        self.target = str(target)
        self.shown = shown_name(self.target)  # the output's name, not its temporary file's
        self.info = reader_info
        ext = Path(self.target).suffix.lower()
        self.codec = codec or _DEFAULT_CODEC.get(ext, "libx264")
        check_crf(self.codec, crf if bit_rate is None else None, preset)
        self.crf, self.preset, self.bit_rate = crf, preset, bit_rate
        self.pix_fmt = pix_fmt
        self.codec_options = dict(codec_options or {})
        self.rotation = rotation
        self._rotation_tagged = False
        self.fps = fps
        local = format is None and url_scheme(self.target) is None
        try:
            self.container = av.open(
                ffmpeg_path(self.target) if local else self.target,
                mode="w",
                format=format,
                options=options or {},
            )
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.shown}: cannot write ({_ffmsg(exc)})") from None
        except ValueError:  # PyAV: "Could not determine output format"
            raise OutputError(
                f"{self.shown}: unknown video format {ext or '(no extension)'!r}; "
                "name the output .mp4, .mkv, .mov or .webm"
            ) from None
        except (PermissionError, IsADirectoryError, FileNotFoundError) as exc:
            raise OutputError(f"{self.shown}: cannot write ({exc.strerror})") from None
        tags = reader_info.metadata if reader_info else {}
        for k, v in scrub_metadata(tags, keep_metadata).items():
            if k.lower() not in ("major_brand", "minor_version", "compatible_brands", "encoder"):
                self.container.metadata[k] = v
        # Audio streams are added after the video stream (so video stays stream 0).
        self._audio_from = audio_from
        self._keep_metadata = keep_metadata
        self._audio_wanted = (
            {a.index for a in (*audio_from.audio_streams, *audio_from.subtitle_streams)}
            if audio_from
            else set()
        )
        self.audio_map: dict[int, av.stream.Stream] = {}
        self.stream: av.video.stream.VideoStream | None = None
        self._pending: list[AudioPacket] = []
        self._tb: Fraction | None = None
        self._last_pts: int | None = None
        self._fields: av.filter.Graph | None = None  # marks frames interlaced (tff/bff)
        self._deep = False  # writing more than 8 bits: the source's own pixels outside faces
        self._keyed = False  # writing an alpha channel: the source's own alpha
        if audio_from is not None and reader_info is not None and reader_info.pix_fmt:
            try:
                fmt = av.VideoFormat(reader_info.pix_fmt)
                audio_from.keep_originals = _bits(fmt) > 8 or _alpha(fmt)
            except (ValueError, av.error.FFmpegError):
                pass
        self.frames_written = 0

    def _open_stream(self, frame: Frame) -> None:
        self._rotation_tagged = False
        h, w = stored(frame.image, self.rotation).shape[:2]
        rate = self.fps or (self.info.average_rate if self.info else None) or Fraction(25, 1)
        rate = Fraction(rate).limit_denominator(100000)
        try:
            stream = self.container.add_stream(self.codec, rate=rate)
        except (ValueError, av.error.FFmpegError, av.codec.codec.UnknownCodecError) as exc:
            raise OutputError(f"{self.shown}: encoder {self.codec!r} unavailable ({exc})") from None
        supported = [f.name for f in (stream.codec_context.codec.video_formats or [])]
        wanted, (ow, oh), notes = choose_format(
            self.codec, supported, self.pix_fmt, self.info.pix_fmt if self.info else None, w, h
        )
        for note in notes:  # each once per output: what could not be kept, and why
            log.warning("%s: %s", self.shown, note)
        stream.width, stream.height = ow, oh
        stream.pix_fmt = wanted
        self._keep_fields(stream, ow, oh)
        self._deep = _bits(av.VideoFormat(wanted)) > 8 and self._fields is None
        self._keyed = _alpha(av.VideoFormat(wanted)) and self._fields is None
        tb = (
            frame.time_base
            if frame.time_base is not None
            else (self.info.time_base if self.info else None)
        )
        if tb is not None:
            stream.time_base = tb
            stream.codec_context.time_base = tb
        opts = dict(self.codec_options)
        if self.codec in ("libx264", "libx265") and self.bit_rate is None:
            if self.crf is not None:
                opts.setdefault("crf", str(self.crf))
            if self.preset:
                opts.setdefault("preset", self.preset)
        if self.codec == "libx264" and ow * oh > LOOKAHEAD_AREA:
            # x264 holds its lookahead's frames (~30 MB each at 4K, veryfast looks 10 ahead):
            # 5 keeps 4K under 1.2 GB in all (docs/benchmarks.md), at a small cost in bit rate.
            opts.setdefault("rc-lookahead", "5")
        if self.bit_rate:
            stream.bit_rate = int(self.bit_rate)
        stream.options = opts
        if self.rotation:
            try:
                stream.set_display_rotation(self.rotation)
                self._rotation_tagged = True
            except (AttributeError, ValueError, av.error.FFmpegError) as exc:
                # Without the tag the upright picture is written as is: still shown upright.
                log.warning("rotation %d° not kept (%s); writing upright", self.rotation, exc)
                h, w = frame.image.shape[:2]
                _, (ow, oh), _ = choose_format(self.codec, supported, wanted, wanted, w, h)
                stream.width, stream.height = ow, oh
        self.stream = stream
        self._tb = tb
        if self._audio_from is not None:
            src = self._audio_from
            for a in (*src.audio_streams, *src.subtitle_streams):
                try:
                    out = self.container.add_stream_from_template(a)
                except (ValueError, av.error.FFmpegError) as exc:
                    log.warning(
                        "%s stream %d cannot go into %s (%s): dropped",
                        a.type, a.index, self.shown, exc,
                    )  # fmt: skip
                    continue
                for k, v in scrub_metadata(dict(a.metadata), self._keep_metadata).items():
                    out.metadata[k] = v
                self.audio_map[a.index] = out

    def write(self, frame: Frame) -> None:
        if self.stream is None:
            if frame.rotation and not self.rotation:
                self.rotation = frame.rotation
            self._open_stream(frame)
        stream = self.stream
        assert stream is not None
        # Store the picture the way the source did, under the same display rotation tag.
        img = stored(frame.image, self.rotation) if self._rotation_tagged else frame.image
        if img.shape[1] != stream.width or img.shape[0] != stream.height:
            img = img[: stream.height, : stream.width]
        orig = self._audio_from.take_original(frame.index) if self._audio_from else None
        vf = None
        if orig is not None and self._keyed and not self._rotation_tagged:
            vf = self._with_alpha(np.ascontiguousarray(img), orig)
        elif orig is not None and self._deep and not self._rotation_tagged:
            vf = self._composite(np.ascontiguousarray(img), orig)
        if vf is None:
            vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="bgr24")
        if self._fields is not None:
            self._fields.push(vf)
            vf = self._fields.pull()
        pts = frame.pts
        if pts is None or self._tb is None or frame.time_base != self._tb:
            pts = None if self._last_pts is None else self._last_pts + 1
            pts = 0 if pts is None else pts
        elif self._last_pts is not None and pts <= self._last_pts:
            # Encoders reject non-increasing timestamps; nudge instead of dropping a frame.
            pts = self._last_pts + 1
        vf.pts = pts
        if self._tb is not None:
            vf.time_base = self._tb
        self._last_pts = pts
        try:
            for p in stream.encode(vf):
                self.container.mux(p)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.shown}: encoding failed ({_ffmsg(exc)})") from None
        self.frames_written += 1

    @staticmethod
    def _with_alpha(img: np.ndarray, orig: av.VideoFrame) -> av.VideoFrame | None:
        """The anonymized colours under the source frame's own alpha channel."""
        if (orig.width, orig.height) != (img.shape[1], img.shape[0]):
            return None
        bgra = orig.to_ndarray(format="bgra")
        bgra[:, :, :3] = img
        return av.VideoFrame.from_ndarray(bgra, format="bgra")

    def _composite(self, img: np.ndarray, orig: av.VideoFrame) -> av.VideoFrame | None:
        """The source frame at its own depth, with the anonymizer's pixels pasted into the
        boxes around every region it changed: a 10-bit file keeps its 10-bit gradients, and
        no face detail survives in bits the 8-bit pipeline never saw."""
        h, w = img.shape[:2]
        if (orig.width, orig.height) != (w, h):
            return None  # cropped for the encoder: the plain path
        fmt = self.stream.pix_fmt
        mask = changed_boxes(img, orig.to_ndarray(format="bgr24"))
        out = orig.reformat(format=fmt)
        if not mask.any():
            return out
        new = av.VideoFrame.from_ndarray(img, format="bgr24").reformat(format=fmt)
        size = 2 if _bits(av.VideoFormat(fmt)) > 8 else 1
        dtype = np.uint16 if size == 2 else np.uint8
        for po, pn in zip(out.planes, new.planes, strict=True):
            pw, ph = po.width, po.height
            m = mask
            if (pw, ph) != (w, h):  # subsampled chroma: any changed luma pixel counts
                m = cv2.resize(mask.astype(np.uint8), (pw, ph), interpolation=cv2.INTER_AREA) > 0
            ao = np.frombuffer(po, dtype).reshape(ph, po.line_size // size)[:, :pw]
            an = np.frombuffer(pn, dtype).reshape(ph, pn.line_size // size)[:, :pw]
            ao[m] = an[m]
        return out

    def _keep_fields(self, stream: av.video.stream.VideoStream, w: int, h: int) -> None:
        """An interlaced source stays interlaced: field order in the container, fields coded
        as fields, each frame marked with its field order (x264 reads it from the frame)."""
        src = self._audio_from
        order = src.field_order if src is not None else (self.info.field_order if self.info else 0)
        if order < 2:
            return
        if self.codec not in INTERLACED_CODECS:
            log.warning(
                "%s: the interlaced source is written as progressive frames (fields woven as"
                " they are): %s does not code interlaced video; use --codec libx264",
                self.shown, self.codec,
            )  # fmt: skip
            return
        ctx = stream.codec_context
        ctx.field_order = order
        ctx.flags |= av.codec.context.Flags.interlaced_dct | av.codec.context.Flags.interlaced_me
        graph = av.filter.Graph()
        tb = self.info.time_base if self.info else Fraction(1, 25)
        buf = graph.add_buffer(width=w, height=h, format="bgr24", time_base=tb)
        mark = graph.add("setfield", "tff" if order in (2, 4) else "bff")
        buf.link_to(mark)
        mark.link_to(graph.add("buffersink"))
        graph.configure()
        self._fields = graph

    def write_audio(self, item: AudioPacket) -> None:
        if self.stream is None:
            # Audio before the first video frame waits for the output streams to exist.
            if item.stream_index in self._audio_wanted:
                self._pending.append(item)
            return
        out = self.audio_map.get(item.stream_index)
        if out is None:
            return
        self._flush_pending()
        self._mux_audio(item, out)

    def _mux_audio(self, item: AudioPacket, out: av.stream.Stream) -> None:
        item.packet.stream = out
        try:
            self.container.mux(item.packet)
        except av.error.FFmpegError as exc:
            log.debug("audio packet dropped: %s", exc)

    def _flush_pending(self) -> None:
        pending, self._pending = self._pending, []
        for item in pending:
            if item.stream_index in self.audio_map:
                self._mux_audio(item, self.audio_map[item.stream_index])

    def close(self) -> None:
        try:
            if self.stream is not None:
                self._flush_pending()
                for p in self.stream.encode(None):
                    self.container.mux(p)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.shown}: finishing the file failed ({_ffmsg(exc)})") from None
        finally:
            self.container.close()

    def abort(self) -> None:
        """Close without flushing: the run failed and the file will be deleted anyway."""
        try:
            self.container.close()
        except (av.error.FFmpegError, OSError) as exc:
            log.debug("closing an aborted output: %s", exc)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ffmsg(exc: BaseException) -> str:
    msg = getattr(exc, "strerror", None) or str(exc)
    return str(msg).strip().splitlines()[0] if msg else type(exc).__name__
