"""The delegate bank: faces whose appearance and geometry may stand in for a real person's.

One ``.npz`` file (no pickles) with, per face i:

- ``embeddings`` (n, 128) float32: dlib's ResNet descriptor (the recognizer Ψ's embedding space)
- ``landmarks`` (n, 68, 2) float32: dlib's 68 landmarks in the aligned crop (``GEN_SIZE``)
- ``pose`` (n, 3) float32: yaw, pitch, roll in degrees (`pose.face_pose`, framing-invariant)
- ``jpeg`` + ``jpeg_offsets``: the aligned 128^2 crops, JPEG bytes concatenated (a raw uint8
  bank would be 48 KiB per face; JPEG q90 is ~5 KiB)
- optional ``hires_jpeg`` + ``hires_offsets`` + ``hires_size``: the same crops aligned at
  ``hires_size`` (256): what `swap` renders from when a face is large in its frame (a 128²
  crop enlarged three times is visibly soft). Landmarks at that size are the stored ones
  scaled by ``hires_size / size``.
- ``sources``, ``licenses`` (n,) str: file path relative to the faces folder, and its licence
- ``template`` (68, 2): the alignment template the crops were made with (checked on load)

Foreground masks are not stored: they are ``face_mask(landmarks[i])``. The default bank,
``engines/bank.npz``, is built from the MIT-licensed SFHQ synthetic faces only, and is loaded on
first use (`default_bank`), never at import.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from streamanon.errors import StreamanonError
from streamanon.paths import engine_file
from streamanon.visual import dlib_models
from streamanon.visual.align import (
    GEN_SIZE,
    TEMPLATE68,
    align_matrix,
    transform_points,
    warp_to_crop,
)
from streamanon.visual.inputs import appearance_input, face_mask
from streamanon.visual.pose import face_pose

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
BANK_FORMAT = 2  # 2: pose from face_pose (framing-invariant)
# The share of landmarks that may fall outside the image before we call the fit "no face".
MAX_OUTSIDE = 0.2


class BankError(StreamanonError, ValueError):
    """A bank file that is missing, malformed or made with another template; or an empty build."""

    exit_code = 2


@dataclass
class DelegateBank:
    embeddings: np.ndarray
    landmarks: np.ndarray
    pose: np.ndarray
    sources: np.ndarray
    licenses: np.ndarray
    jpeg: np.ndarray = field(repr=False)
    jpeg_offsets: np.ndarray = field(repr=False)
    size: int = GEN_SIZE
    hires_jpeg: np.ndarray | None = field(default=None, repr=False)
    hires_offsets: np.ndarray | None = field(default=None, repr=False)
    hires_size: int = 0

    def __post_init__(self) -> None:
        n = len(self.embeddings)
        checks = {
            "embeddings": (self.embeddings.shape, (n, 128)),
            "landmarks": (self.landmarks.shape, (n, 68, 2)),
            "pose": (self.pose.shape, (n, 3)),
            "sources": (self.sources.shape, (n,)),
            "licenses": (self.licenses.shape, (n,)),
            "jpeg_offsets": (self.jpeg_offsets.shape, (n + 1,)),
        }
        for name, (got, want) in checks.items():
            if got != want:
                raise BankError(f"bank field {name} has shape {got}, expected {want}")
        if n == 0:
            raise BankError("the bank is empty")
        if self.hires_jpeg is not None and (
            self.hires_offsets is None or self.hires_offsets.shape != (n + 1,)
        ):
            raise BankError("bank field hires_offsets does not match the faces")

    def __len__(self) -> int:
        return len(self.embeddings)

    @classmethod
    def load(cls, path: str | os.PathLike) -> DelegateBank:
        """Read a bank file; crops stay JPEG-compressed until `crop` asks for one."""
        path = Path(path)
        if not path.is_file():
            raise BankError(f"delegate bank not found: {path}")
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError) as e:
            raise BankError(f"cannot read delegate bank {path}: {e}") from e
        missing = {"embeddings", "landmarks", "pose", "sources", "licenses", "jpeg", "jpeg_offsets",
                   "template", "size", "format"} - set(data)  # fmt: skip
        if missing:
            raise BankError(f"delegate bank {path} lacks {sorted(missing)}")
        if int(data["format"]) != BANK_FORMAT:
            raise BankError(
                f"delegate bank {path} has format {int(data['format'])}, expected {BANK_FORMAT}"
            )
        if not np.allclose(data["template"], TEMPLATE68, atol=1e-6):
            raise BankError(
                f"delegate bank {path} was built with another alignment template; rebuild it"
            )
        return cls(
            embeddings=data["embeddings"].astype(np.float32),
            landmarks=data["landmarks"].astype(np.float32),
            pose=data["pose"].astype(np.float32),
            sources=data["sources"],
            licenses=data["licenses"],
            jpeg=data["jpeg"],
            jpeg_offsets=data["jpeg_offsets"].astype(np.int64),
            size=int(data["size"]),
            hires_jpeg=data.get("hires_jpeg"),
            hires_offsets=(
                data["hires_offsets"].astype(np.int64) if "hires_offsets" in data else None
            ),
            hires_size=int(data.get("hires_size", 0)),
        )

    def save(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename) so a crashed build never leaves half a bank."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp.npz")
        hires = {}
        if self.hires_jpeg is not None:
            hires = {"hires_jpeg": self.hires_jpeg, "hires_offsets": self.hires_offsets,
                     "hires_size": np.int64(self.hires_size)}  # fmt: skip
        np.savez_compressed(
            tmp, embeddings=self.embeddings, landmarks=self.landmarks, pose=self.pose,
            sources=self.sources.astype(str), licenses=self.licenses.astype(str), jpeg=self.jpeg,
            jpeg_offsets=self.jpeg_offsets, template=TEMPLATE68, size=np.int64(self.size),
            format=np.int64(BANK_FORMAT), **hires,
        )  # fmt: skip
        os.replace(tmp, path)

    def crop(self, i: int, size: int | None = None) -> np.ndarray:
        """The aligned crop of face i, BGR uint8 (size, size, 3); ``size`` defaults to the
        bank's own. The stored crop nearest above it is decoded (and resized if needed)."""
        want = self.size if size is None else int(size)
        hires = self.hires_jpeg is not None and want > self.size
        data, offs, have = (
            (self.hires_jpeg, self.hires_offsets, self.hires_size)
            if hires
            else (self.jpeg, self.jpeg_offsets, self.size)
        )
        img = cv2.imdecode(data[offs[i] : offs[i + 1]], cv2.IMREAD_COLOR)
        if img is None or img.shape != (have, have, 3):
            raise BankError(f"bank crop {i} is corrupt")
        if have != want:
            img = cv2.resize(img, (want, want), interpolation=cv2.INTER_AREA if have > want
                             else cv2.INTER_CUBIC)  # fmt: skip
        return img

    def landmarks_at(self, i: int, size: int) -> np.ndarray:
        """Face i's 68 landmarks in its crop of side ``size``."""
        return self.landmarks[i].astype(np.float64) * (float(size) / self.size)

    def mask(self, i: int) -> np.ndarray:
        """Foreground mask of face i (derived from its landmarks, not stored)."""
        return face_mask(self.landmarks[i], self.size)

    def appearance(self, i: int) -> np.ndarray:
        """Z_a of face i: (3, size, size) RGB in [-1, 1], zero outside the face."""
        return appearance_input(self.crop(i), self.landmarks[i])


@dataclass
class BuildReport:
    bank: DelegateBank
    hog_misses: int  # faces where HOG found nothing and the whole image was used as the box
    skipped: list[str]  # files skipped, with the reason


def list_images(faces_dir: str | os.PathLike) -> list[Path]:
    root = Path(faces_dir)
    if not root.is_dir():
        raise BankError(f"faces folder not found: {root}")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def build_bank(
    faces_dir: str | os.PathLike,
    out_path: str | os.PathLike | None,
    license: str,
    *,
    size: int = GEN_SIZE,
    jpeg_quality: int = 90,
    hires_size: int = 2 * GEN_SIZE,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> BuildReport:
    """Detect, landmark, embed, pose and align every image under ``faces_dir``; save to ``out_path``.

    Faces are found with dlib's HOG detector (largest face per image); where HOG misses, the
    whole image is the box (the bank's inputs are face crops). An image whose 68-point fit falls
    mostly outside the image has no face and is skipped. ``license`` is recorded per image.
    ``hires_size`` (0: none): also store each crop aligned at that side (see the module doc).
    """
    if not license.strip():
        raise BankError("a licence string is required for every bank image")
    root = Path(faces_dir)
    files = list_images(root)[:limit]
    if not files:
        raise BankError(f"no images in {root}")
    import dlib

    emb, lms, poses, srcs, jpegs, hires = [], [], [], [], [], []
    skipped: list[str] = []
    misses = 0
    for n, path in enumerate(files):
        if progress is not None:
            progress(n, len(files))
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            skipped.append(f"{path}: unreadable image")
            continue
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        h, w = bgr.shape[:2]
        rect = dlib_models.detect_largest(rgb)
        hog_missed = rect is None
        if hog_missed:
            misses += 1
            rect = dlib.rectangle(0, 0, w - 1, h - 1)
        pts, shape = dlib_models.landmarks68(rgb, rect)
        outside = ((pts[:, 0] < 0) | (pts[:, 0] >= w) | (pts[:, 1] < 0) | (pts[:, 1] >= h)).mean()
        if outside > MAX_OUTSIDE:
            skipped.append(f"{path}: no landmarks inside the image")
            continue
        m = align_matrix(pts, size)
        crop = warp_to_crop(bgr, m, size)
        # The predictor returns 68 points for any box, face or not: on a HOG miss, accept the
        # whole-image fit only if HOG finds a face in the aligned (upright, centred) crop.
        if hog_missed and dlib_models.detect_largest(crop[:, :, ::-1].copy(), 1) is None:
            skipped.append(f"{path}: no face found (HOG on the image and on the aligned crop)")
            continue
        ok, buf = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
        if not ok:
            skipped.append(f"{path}: JPEG encoding failed")
            continue
        if hires_size:
            big = warp_to_crop(bgr, align_matrix(pts, hires_size), hires_size)
            ok, big_buf = cv2.imencode(".jpg", big, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
            if not ok:
                skipped.append(f"{path}: JPEG encoding failed")
                continue
            hires.append(big_buf.reshape(-1))
        emb.append(dlib_models.embedding(rgb, shape))
        lms.append(transform_points(pts, m).astype(np.float32))
        poses.append(face_pose(pts))
        srcs.append(path.relative_to(root).as_posix())
        jpegs.append(buf.reshape(-1))
    if not emb:
        raise BankError(f"no usable faces in {root} ({len(skipped)} skipped)")
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in jpegs])]).astype(np.int64)
    hires_fields = {}
    if hires:
        hires_fields = {
            "hires_jpeg": np.concatenate(hires).astype(np.uint8),
            "hires_offsets": np.concatenate([[0], np.cumsum([len(b) for b in hires])]).astype(
                np.int64
            ),
            "hires_size": hires_size,
        }
    bank = DelegateBank(
        embeddings=np.stack(emb).astype(np.float32),
        landmarks=np.stack(lms),
        pose=np.stack(poses).astype(np.float32),
        sources=np.array(srcs, dtype=str),
        licenses=np.array([license] * len(srcs), dtype=str),
        jpeg=np.concatenate(jpegs).astype(np.uint8),
        jpeg_offsets=offsets,
        size=size,
        **hires_fields,
    )
    if out_path is not None:
        bank.save(out_path)
    return BuildReport(bank, misses, skipped)


def default_bank_path() -> Path:
    """The shipped ``bank.npz`` ($STREAMANON_ENGINES, then engines/, then the install's share/).

    Raises ModelMissingError (naming the folders searched) when there is none.
    """
    return engine_file("bank.npz")


@lru_cache(maxsize=1)
def default_bank() -> DelegateBank:
    """The shipped bank, loaded on first use and kept."""
    return DelegateBank.load(default_bank_path())
