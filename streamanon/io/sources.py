"""What a user-given input or output name means: a live source, or a local file.

One definition for the whole package: only ``scheme://`` names with a network scheme, and
cameras (``webcam:N``, ``/dev/videoN``), are live. Everything else is a path on this machine,
including names with colons such as ``cam-2024-01-01T10:30:00.mp4`` or ``http:clip.mp4``, which
FFmpeg would otherwise read as a protocol (`ffmpeg_path` pins them to the file protocol).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "srt", "tcp")
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_CAMERA = re.compile(r"^(webcam:.*|/dev/video\d+)$")


def url_scheme(name: str) -> str | None:
    """The scheme of a ``scheme://...`` name (lower case), or None for anything else."""
    m = _URL.match(name)
    return m.group(1).lower() if m else None


def is_camera(name: str) -> bool:
    return bool(_CAMERA.match(name))


def is_live_source(name: str) -> bool:
    """True for stream URLs (``rtsp://``, ``srt://``, ...) and cameras; False for files."""
    return url_scheme(name) in NETWORK_SCHEMES or is_camera(name)


def ffmpeg_path(path: str | os.PathLike) -> str:
    """A local path as FFmpeg must be given it: through the ``file:`` protocol, so that a colon
    in the name is never taken for a protocol (and nothing touches the network)."""
    return "file:" + str(Path(path))


# Video files by extension (for folders, and to check an output name before any work).
VIDEO_EXTS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".ts", ".mts", ".m2ts", ".flv", ".wmv",
    ".asf", ".mpg", ".mpeg", ".3gp", ".3g2", ".ogv", ".vob", ".mxf", ".nut", ".gif", ".y4m",
}  # fmt: skip
