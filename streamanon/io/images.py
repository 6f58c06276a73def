"""Still images: read with OpenCV (EXIF orientation applied), write in the same format.

Writing re-encodes the pixels only, so EXIF (GPS, camera serial, ...) never reaches the output;
``--keep-metadata`` applies to videos only (the pixels were rotated upright on reading, so the
source's EXIF orientation would be wrong on the output anyway).

Images are refused above `max_pixels()` before they are decoded (the size comes from the file
header): a 2.6 MB PNG of 30000² pixels would otherwise take ~5.6 GB of memory.
"""

from __future__ import annotations

import logging
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamanon.errors import InputError, OutputError
from streamanon.io.atomic import shown_name

log = logging.getLogger(__name__)

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}
# 100 megapixels: a 12000 x 8000 photo (the largest phone and camera sensors) fits; a decoded
# image of this size takes 300 MB, and the detector and the method need a few copies of it.
MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "STREAMANON_MAX_PIXELS"


def max_pixels() -> int:
    """The pixel limit for still images: ``$STREAMANON_MAX_PIXELS`` or `MAX_PIXELS`."""
    raw = os.environ.get(MAX_PIXELS_ENV)
    if not raw:
        return MAX_PIXELS
    try:
        return int(float(raw))
    except ValueError:
        raise InputError(f"{MAX_PIXELS_ENV}={raw!r}: expected a number of pixels") from None


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the header of a PNG, JPEG, GIF, BMP, WebP, TIFF or PNM file;
    None when the format is not one of these or the header is cut short."""
    try:
        return _image_size(data)
    except (struct.error, IndexError, ValueError):
        return None


def _image_size(d: bytes) -> tuple[int, int] | None:
    if d[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", d[16:24])
    if d[:6] in (b"GIF87a", b"GIF89a"):
        return struct.unpack("<HH", d[6:10])
    if d[:2] == b"BM":
        w, h = struct.unpack("<ii", d[18:26])
        return abs(w), abs(h)
    if d[:4] == b"RIFF" and d[8:12] == b"WEBP":
        kind = d[12:16]
        if kind == b"VP8X":
            return 1 + int.from_bytes(d[24:27], "little"), 1 + int.from_bytes(d[27:30], "little")
        if kind == b"VP8L":
            b = int.from_bytes(d[21:25], "little")
            return 1 + (b & 0x3FFF), 1 + ((b >> 14) & 0x3FFF)
        if kind == b"VP8 ":
            w, h = struct.unpack("<HH", d[26:30])
            return w & 0x3FFF, h & 0x3FFF
        return None
    if d[:2] == b"\xff\xd8":
        return _jpeg_size(d)
    if d[:4] in (b"II*\x00", b"MM\x00*"):
        return _tiff_size(d)
    if d[:1] == b"P" and d[1:2] in b"123456":
        fields = []
        for line in d[2:4096].split(b"\n"):
            fields += line.split(b"#")[0].split()
            if len(fields) >= 2:
                return int(fields[0]), int(fields[1])
    return None


def _jpeg_size(d: bytes) -> tuple[int, int] | None:
    i = 2
    while i + 4 <= len(d):
        if d[i] != 0xFF:
            return None
        marker = d[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        length = struct.unpack(">H", d[i + 2 : i + 4])[0]
        # SOF0..SOF15 carry the size, except DHT (C4), JPG (C8) and DAC (CC).
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h, w = struct.unpack(">HH", d[i + 5 : i + 9])
            return w, h
        i += 2 + length
    return None


def _tiff_size(d: bytes) -> tuple[int, int] | None:
    e = "<" if d[:2] == b"II" else ">"
    off = struct.unpack(e + "I", d[4:8])[0]
    (n,) = struct.unpack(e + "H", d[off : off + 2])
    size: dict[int, int] = {}
    for k in range(n):
        tag, typ, _count, val = struct.unpack(e + "HHI4s", d[off + 2 + 12 * k : off + 14 + 12 * k])
        if tag in (256, 257):  # ImageWidth, ImageLength: SHORT or LONG
            size[tag] = struct.unpack(e + ("H" if typ == 3 else "I"), val[: 2 if typ == 3 else 4])[
                0
            ]
    return (size[256], size[257]) if len(size) == 2 else None


def read_image(path: str | Path, limit: int | None = None) -> np.ndarray:
    """BGR uint8 image; grey and alpha images are converted.

    ``limit``: most pixels allowed (default `max_pixels()`), checked on the header before
    the image is decoded.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    data = np.fromfile(p, dtype=np.uint8)
    limit = max_pixels() if limit is None else limit
    size = image_size(data[:65536].tobytes())
    if size is not None and size[0] * size[1] > limit:
        raise InputError(
            f"{p}: {size[0]}x{size[1]} pixels is over the limit of {limit:,} "
            f"(raise it with {MAX_PIXELS_ENV}=N)"
        )
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{p}: not an image OpenCV can decode")
    if image.shape[0] * image.shape[1] > limit:  # a format whose header we do not read
        raise InputError(
            f"{p}: {image.shape[1]}x{image.shape[0]} pixels is over the limit of {limit:,} "
            f"(raise it with {MAX_PIXELS_ENV}=N)"
        )
    return image


@dataclass
class Original:
    """What an 8-bit BGR copy of a still image loses: its alpha, its bit depth, its greyness.

    ``pixels``: the image as stored (cv2.IMREAD_UNCHANGED, orientation applied); ``base``: the
    8-bit BGR copy the anonymizer saw.
    """

    pixels: np.ndarray
    base: np.ndarray

    @property
    def alpha(self) -> bool:
        return self.pixels.ndim == 3 and self.pixels.shape[2] == 4

    @property
    def deep(self) -> bool:
        return self.pixels.dtype != np.uint8

    @property
    def grey(self) -> bool:
        return self.pixels.ndim == 2 or self.pixels.shape[2] == 1


# What each output format can hold of an Original (alpha, more than 8 bits per channel).
_HOLDS = {
    ".png": (True, True), ".tif": (True, True), ".tiff": (True, True), ".webp": (True, False),
    ".jp2": (False, True), ".pgm": (False, True), ".ppm": (False, True), ".bmp": (False, False),
}  # fmt: skip


def read_image_kept(
    path: str | Path, limit: int | None = None
) -> tuple[np.ndarray, Original | None]:
    """`read_image`, plus what its 8-bit BGR copy dropped (None when nothing was: an 8-bit
    colour image without alpha), for `write_image` to put back."""
    image = read_image(path, limit)
    raw = cv2.imdecode(np.fromfile(Path(path), dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.shape[:2] != image.shape[:2]:
        return image, None  # rotated by EXIF (JPEG: 8-bit colour anyway) or unreadable as is
    if raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3:
        return image, None
    if raw.dtype not in (np.uint8, np.uint16):
        return image, None  # float TIFFs and the like: written as 8-bit
    # Only when the stored pixels are the ones read (no orientation tag turned them).
    colour = raw if raw.ndim == 3 else raw[:, :, None]
    eight = (colour[:, :, :3] >> 8).astype(np.uint8) if raw.dtype == np.uint16 else colour[:, :, :3]
    if eight.shape[2] == 1:
        eight = np.repeat(eight, 3, axis=2)
    if np.abs(eight.astype(np.int16) - image.astype(np.int16)).mean() > 2.0:
        log.warning("%s: alpha / bit depth not kept (stored turned by an orientation tag)", path)
        return image, None
    return image, Original(raw, image)


def changed_boxes(out: np.ndarray, base: np.ndarray, grow: int = 4) -> np.ndarray:
    """Mask of the boxes around every region the anonymizer changed (grown a little): inside
    them the output's own pixels are used whole, so no detail of a face survives in the bits
    an 8-bit copy does not see."""
    changed = np.any(out != base, axis=2).astype(np.uint8)
    mask = np.zeros_like(changed, dtype=bool)
    n, _, stats, _ = cv2.connectedComponentsWithStats(changed, connectivity=8)
    h, w = changed.shape
    for x, y, bw, bh, _area in stats[1:n]:
        mask[max(0, y - grow) : min(h, y + bh + grow), max(0, x - grow) : min(w, x + bw + grow)] = (
            True
        )
    return mask


def restore(out: np.ndarray, original: Original, ext: str) -> tuple[np.ndarray, list[str]]:
    """``out`` (8-bit BGR, anonymized) in the original's form as far as ``ext`` holds it;
    returns it and what could not be kept."""
    alpha_ok, deep_ok = _HOLDS.get(ext, (False, False))
    lost = []
    px = original.pixels
    img = out
    if original.deep:
        if deep_ok:
            colour = px if px.ndim == 3 else px[:, :, None]
            colour = colour[:, :, :3] if colour.shape[2] >= 3 else colour
            if colour.shape[2] == 1:
                colour = np.repeat(colour, 3, axis=2)
            img = colour.copy()
            mask = changed_boxes(out, original.base)
            img[mask] = out[mask].astype(np.uint16) * 257
        else:
            lost.append(
                f"{px.dtype.itemsize * 8}-bit depth (written as 8-bit: {ext} holds no more)"
            )
    if (
        original.grey
        and np.array_equal(img[:, :, 0], img[:, :, 1])
        and np.array_equal(img[:, :, 1], img[:, :, 2])
    ):
        img = img[:, :, 0]  # still grey after anonymizing: stays a grey image
    if original.alpha:
        if alpha_ok and img.ndim == 3:
            a = px[:, :, 3]
            if a.dtype != img.dtype:
                a = (
                    (a // 257).astype(np.uint8)
                    if img.dtype == np.uint8
                    else a.astype(np.uint16) * 257
                )
            img = np.dstack([img, a])
        else:
            lost.append(f"alpha channel ({ext} has none)" if not alpha_ok else "alpha channel")
    return img, lost


def write_image(
    path: str | Path, image: np.ndarray, quality: int = 95, original: Original | None = None
) -> None:
    """Encode ``image`` by ``path``'s extension; with ``original`` (from `read_image_kept`),
    its alpha, bit depth and greyness are put back where the format holds them, and what it
    cannot hold is said once."""
    p = Path(path)
    ext = p.suffix.lower()
    if original is not None:
        image, lost = restore(image, original, ext)
        for what in lost:
            log.warning("%s: %s not kept", shown_name(p), what)
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    try:
        ok, buf = cv2.imencode(ext, image, params)
    except cv2.error:
        ok = False
    if not ok:
        raise OutputError(f"{p}: cannot encode an image as {ext or '(no extension)'}")
    try:
        buf.tofile(p)
    except OSError as exc:
        raise OutputError(f"{p}: cannot write ({exc.strerror})") from None
