"""Still images: read with OpenCV (EXIF orientation applied), write in the same format.

Writing re-encodes the pixels only, so EXIF (GPS, camera serial, ...) never reaches the output.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from streamanon.errors import InputError, OutputError

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".jp2", ".pgm", ".ppm"}


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTS


def read_image(path: str | Path) -> np.ndarray:
    """BGR uint8 image; grey and alpha images are converted."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    data = np.fromfile(p, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise InputError(f"{p}: not an image OpenCV can decode")
    return image


def write_image(path: str | Path, image: np.ndarray, quality: int = 95) -> None:
    p = Path(path)
    ext = p.suffix.lower()
    params: list[int] = []
    if ext in (".jpg", ".jpeg"):
        params = [cv2.IMWRITE_JPEG_QUALITY, quality]
    elif ext == ".webp":
        params = [cv2.IMWRITE_WEBP_QUALITY, quality]
    ok, buf = cv2.imencode(ext, image, params)
    if not ok:
        raise OutputError(f"{p}: cannot encode as {ext}")
    try:
        buf.tofile(p)
    except OSError as exc:
        raise OutputError(f"{p}: cannot write ({exc.strerror})") from None
