"""Pair an original input with its anonymized version: images, folders of images, videos.

Folders are paired by relative path (recursively, so identity folders ``person/photo.jpg``
work), videos frame by frame in decode order, an image with an image.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from streamanon.errors import InputError
from streamanon.io.images import IMAGE_EXTS, is_image_path, read_image
from streamanon.io.video import VideoReader


@dataclass
class Pair:
    """One original picture and its anonymized counterpart."""

    key: str  # the original's path relative to the ORIGINAL argument ("" for a single file)
    frame: int  # frame index for videos, 0 for images
    original: np.ndarray
    anonymized: np.ndarray
    video: bool = False


def kind(path: str | Path) -> str:
    p = Path(path)
    if p.is_dir():
        return "folder"
    if not p.is_file():
        raise InputError(f"{p}: no such file or folder")
    return "image" if is_image_path(p) else "video"


def _images_under(root: Path) -> dict[str, Path]:
    return {
        p.relative_to(root).as_posix(): p
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.suffix.lower() in IMAGE_EXTS
    }


def _check_sizes(key: str, a: np.ndarray, b: np.ndarray) -> None:
    if a.shape[:2] != b.shape[:2]:
        raise InputError(
            f"{key or 'input'}: original is {a.shape[1]}x{a.shape[0]} but anonymized is "
            f"{b.shape[1]}x{b.shape[0]}"
        )


def image_pairs(original: Path, anonymized: Path, limit: int | None = None) -> Iterator[Pair]:
    ko, ka = kind(original), kind(anonymized)
    if ko == "image" and ka == "image":
        a, b = read_image(original), read_image(anonymized)
        _check_sizes(original.name, a, b)
        yield Pair("", 0, a, b)
        return
    if ko != "folder" or ka != "folder":
        raise InputError(
            f"cannot pair a {ko} with a {ka}: give two images, two folders or two videos"
        )
    left, right = _images_under(original), _images_under(anonymized)
    common = [k for k in left if k in right]
    if not common:
        raise InputError(f"{original} and {anonymized}: no image names in common")
    for k in common[:limit]:
        a, b = read_image(left[k]), read_image(right[k])
        _check_sizes(k, a, b)
        yield Pair(k, 0, a, b)


def video_pairs(
    original: Path, anonymized: Path, stride: int = 1, max_frames: int | None = None
) -> Iterator[Pair]:
    """Frames of two videos side by side (every ``stride``-th, at most ``max_frames``)."""
    if stride < 1:
        raise InputError(f"stride must be >= 1, got {stride}")
    with VideoReader(original, audio=False) as ro, VideoReader(anonymized, audio=False) as ra:
        it_o, it_a = iter(ro), iter(ra)
        n = 0
        for i, fo in enumerate(it_o):
            fa = next(it_a, None)
            if fa is None:
                raise InputError(f"{anonymized}: ends at frame {i}, before the original does")
            if i % stride:
                continue
            _check_sizes(original.name, fo.image, fa.image)
            yield Pair(original.name, i, fo.image, fa.image, video=True)
            n += 1
            if max_frames is not None and n >= max_frames:
                return


def make_pairs(
    original: str | Path,
    anonymized: str | Path,
    stride: int = 1,
    max_frames: int | None = None,
    limit: int | None = None,
) -> Iterator[Pair]:
    original, anonymized = Path(original), Path(anonymized)
    if kind(original) == "video":
        if kind(anonymized) != "video":
            raise InputError(f"{original} is a video but {anonymized} is not")
        return video_pairs(original, anonymized, stride, max_frames)
    return image_pairs(original, anonymized, limit)


def read_labels(path: str | Path) -> dict[str, str]:
    """``file,identity`` rows (header optional); file relative to the ORIGINAL folder."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: labels file not found")
    out: dict[str, str] = {}
    with path.open(newline="") as f:
        for row in csv.reader(f):
            if not row or row[0].startswith("#"):
                continue
            if len(row) < 2:
                raise InputError(f"{path}: expected 'file,identity' rows, got {row!r}")
            if row[0].strip().lower() in ("file", "path") and not out:
                continue  # header
            out[Path(row[0].strip()).as_posix()] = row[1].strip()
    if not out:
        raise InputError(f"{path}: no labels in this file")
    return out


def folder_labels(root: str | Path) -> dict[str, str]:
    """Identity = the name of the folder each image is in (``person/photo.jpg`` → person)."""
    return {k: (Path(k).parent.as_posix() or k) for k in _images_under(Path(root))}
