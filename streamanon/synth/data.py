"""Training data for the generator: face patches found once, cached, then augmented per step.

Preprocessing (slow, done once, cached as one ``.npz`` under ``.train/``): every image of a face
folder, and every ``frame_step``-th frame of a video, goes through dlib's HOG detector, the
68-point predictor and dlib's 128-D descriptor (the embedding that Ψ, our torch port of the same
network, reproduces). Each face is stored as a ``PATCH`` x ``PATCH`` patch around the canonical
crop of ``streamanon.visual`` (margin for augmentation and for pasting back in evaluation),
with its landmarks and the embeddings of the face and of its mirror image.

Per step (cheap): flip, small similarity jitter, colour jitter, then the canonical 128² crop and
the generator's inputs Z_a, Z_g from ``streamanon.visual``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from streamanon.visual import (
    GEN_SIZE,
    align_matrix,
    appearance_input,
    render_geometry,
    to_signed_rgb,
    transform_points,
    warp_to_crop,
)
from streamanon.visual import dlib_models as dm

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".pgm"}
VIDEO_SUFFIXES = {".mp4", ".mkv", ".mov", ".avi", ".webm"}
# iBUG-68 index permutation under a horizontal mirror.
FLIP68 = np.array(
    [16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    + [26, 25, 24, 23, 22, 21, 20, 19, 18, 17]
    + [27, 28, 29, 30, 35, 34, 33, 32, 31]
    + [45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40]
    + [54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55]
    + [64, 63, 62, 61, 60, 67, 66, 65]
)


class DatasetError(ValueError):
    """Training data that cannot be used (no faces found, bad source, stale cache)."""


@dataclass(frozen=True)
class FaceSet:
    """Cached faces: parallel arrays, one row per face."""

    patches: np.ndarray  # (n, P, P, 3) uint8 BGR, canonical crop centred with a margin
    landmarks: np.ndarray  # (n, 68, 2) float32, patch pixels
    embeddings: np.ndarray  # (n, 128) float32, dlib descriptor of the face
    embeddings_flip: np.ndarray  # (n, 128) float32, of the mirrored face
    names: np.ndarray  # (n,) str: source file (and frame) of each face

    def __len__(self) -> int:
        return len(self.patches)

    def subset(self, idx: np.ndarray) -> FaceSet:
        return FaceSet(
            self.patches[idx],
            self.landmarks[idx],
            self.embeddings[idx],
            self.embeddings_flip[idx],
            self.names[idx],
        )

    @property
    def patch_size(self) -> int:
        return int(self.patches.shape[1])


def patch_matrix(landmarks68: np.ndarray, patch: int, size: int = GEN_SIZE) -> np.ndarray:
    """Frame -> patch matrix: the canonical ``size`` crop placed at the centre of the patch."""
    m = align_matrix(landmarks68, size).copy()
    m[:, 2] += (patch - size) / 2.0
    return m


def crop_in_patch(patch: int, size: int = GEN_SIZE) -> np.ndarray:
    """Patch -> canonical crop matrix (a pure shift)."""
    off = (patch - size) / 2.0
    return np.array([[1.0, 0.0, -off], [0.0, 1.0, -off]])


def _faces_in_image(image_bgr: np.ndarray, patch: int, upsample: int, all_faces: bool):
    """Yield (patch, landmarks, emb, emb_flip) for the faces dlib finds in one image."""
    import dlib

    rgb = np.ascontiguousarray(image_bgr[:, :, ::-1])
    rects = list(dm.hog_detector()(rgb, upsample))
    if not all_faces and rects:
        rects = [max(rects, key=lambda r: r.width() * r.height())]
    flipped = np.ascontiguousarray(rgb[:, ::-1])
    w = rgb.shape[1]
    for r in rects:
        if r.width() < 40:  # too small to teach a 128² generator anything
            continue
        lm, shape = dm.landmarks68(rgb, r)
        emb = dm.embedding(rgb, shape)
        fr = dlib.rectangle(w - 1 - r.right(), r.top(), w - 1 - r.left(), r.bottom())
        _, fshape = dm.landmarks68(flipped, fr)
        emb_f = dm.embedding(flipped, fshape)
        m = patch_matrix(lm, patch)
        yield (
            warp_to_crop(image_bgr, m, patch),
            transform_points(lm, m).astype(np.float32),
            emb,
            emb_f,
        )


def _video_frames(path: Path, step: int, limit: int):
    import av

    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step == 0:
                yield i, frame.to_ndarray(format="bgr24")
            if limit and i >= limit * step:
                break


def list_sources(spec: dict) -> list[tuple[str, Path]]:
    """(kind, path) for a data spec ``{"faces": [dirs], "videos": [files or dirs]}``."""
    out: list[tuple[str, Path]] = []
    for d in spec.get("faces", []):
        p = Path(d)
        if not p.is_dir():
            raise DatasetError(f"face folder {p} does not exist")
        out += [("image", f) for f in sorted(p.rglob("*")) if f.suffix.lower() in IMAGE_SUFFIXES]
    for v in spec.get("videos", []):
        p = Path(v)
        if p.is_dir():
            out += [("video", f) for f in sorted(p.iterdir()) if f.suffix.lower() in VIDEO_SUFFIXES]
        elif p.is_file():
            out.append(("video", p))
        else:
            raise DatasetError(f"video {p} does not exist")
    if not out:
        raise DatasetError(f"no images or videos in {spec}")
    return out


def cache_key(spec: dict, patch: int) -> str:
    blob = json.dumps({"spec": spec, "patch": patch, "v": 1}, sort_keys=True)
    return hashlib.sha1(blob.encode()).hexdigest()[:12]


def build_faceset(spec: dict, patch: int = 192, progress: bool = True) -> FaceSet:
    """Detect, landmark and embed every face of the sources (slow: ~0.2 s per face)."""
    from tqdm import tqdm

    patches, lms, embs, embfs, names = [], [], [], [], []
    step = int(spec.get("frame_step", 10))
    limit = int(spec.get("max_frames_per_video", 60))
    for kind, path in tqdm(list_sources(spec), disable=not progress, desc="faces"):
        if kind == "image":
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise DatasetError(f"cannot read image {path}")
            items = [(str(path), img, False)]
        else:
            items = [(f"{path}#{i}", f, True) for i, f in _video_frames(path, step, limit)]
        for name, img, all_faces in items:
            for p, lm, e, ef in _faces_in_image(
                img, patch, int(spec.get("upsample", 0)), all_faces
            ):
                patches.append(p)
                lms.append(lm)
                embs.append(e)
                embfs.append(ef)
                names.append(name)
    if not patches:
        raise DatasetError("dlib found no usable face (>= 40 px) in the training sources")
    return FaceSet(
        np.stack(patches),
        np.stack(lms).astype(np.float32),
        np.stack(embs).astype(np.float32),
        np.stack(embfs).astype(np.float32),
        np.array(names),
    )


def load_or_build(spec: dict, cache_dir: Path, patch: int = 192) -> FaceSet:
    """The cached FaceSet for ``spec``, built (and saved atomically) when absent."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / f"faces_{cache_key(spec, patch)}.npz"
    if path.is_file():
        z = np.load(path, allow_pickle=False)
        return FaceSet(
            z["patches"], z["landmarks"], z["embeddings"], z["embeddings_flip"], z["names"]
        )
    fs = build_faceset(spec, patch)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        patches=fs.patches,
        landmarks=fs.landmarks,
        embeddings=fs.embeddings,
        embeddings_flip=fs.embeddings_flip,
        names=fs.names,
    )
    tmp.replace(path)
    return fs


def split_holdout(n: int, holdout: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic (train, held-out) index split."""
    if holdout >= n:
        raise DatasetError(f"holdout {holdout} leaves no training faces out of {n}")
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[holdout:]), np.sort(perm[:holdout])


@dataclass(frozen=True)
class Augment:
    flip: float = 0.5
    rotate_deg: float = 5.0
    scale: float = 0.05
    shift_px: float = 3.0
    brightness: float = 0.08
    contrast: float = 0.1


def _jitter_matrix(rng: np.random.Generator, aug: Augment, size: int) -> np.ndarray:
    a = np.deg2rad(rng.uniform(-aug.rotate_deg, aug.rotate_deg))
    s = 1.0 + rng.uniform(-aug.scale, aug.scale)
    c = size / 2.0
    rot = s * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    t = np.array([c, c]) - rot @ np.array([c, c]) + rng.uniform(-aug.shift_px, aug.shift_px, 2)
    return np.hstack([rot, t[:, None]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine ``a`` after ``b`` (both (2, 3))."""
    return np.hstack([a[:, :2] @ b[:, :2], (a[:, :2] @ b[:, 2] + a[:, 2])[:, None]])


def make_sample(
    fs: FaceSet, i: int, rng: np.random.Generator | None, aug: Augment | None
) -> dict[str, np.ndarray]:
    """One training sample: x (3,S,S), z_a, z_g (10,S,S), z_id (128,), landmarks in the crop."""
    patch, lm, emb = fs.patches[i], fs.landmarks[i], fs.embeddings[i]
    m = crop_in_patch(fs.patch_size)
    if aug is not None and rng is not None:
        if rng.random() < aug.flip:
            w = patch.shape[1]
            patch = patch[:, ::-1]
            lm = lm[FLIP68].copy()
            lm[:, 0] = w - 1 - lm[:, 0]
            emb = fs.embeddings_flip[i]
        m = compose(_jitter_matrix(rng, aug, GEN_SIZE), m)
    crop = warp_to_crop(np.ascontiguousarray(patch), m, GEN_SIZE)
    if aug is not None and rng is not None:
        gain = 1.0 + rng.uniform(-aug.contrast, aug.contrast)
        bias = 255.0 * rng.uniform(-aug.brightness, aug.brightness)
        crop = np.clip((crop.astype(np.float32) - 128.0) * gain + 128.0 + bias, 0, 255).astype(
            np.uint8
        )
    lm_c = transform_points(lm, m).astype(np.float32)
    return {
        "x": to_signed_rgb(crop),
        "z_a": appearance_input(crop, lm_c),
        "z_g": render_geometry(lm_c, crop, GEN_SIZE),
        "z_id": emb.astype(np.float32),
        "landmarks": lm_c,
    }


def make_batch(
    fs: FaceSet, idx: np.ndarray, rng: np.random.Generator | None, aug: Augment | None
) -> dict[str, np.ndarray]:
    samples = [make_sample(fs, int(i), rng, aug) for i in idx]
    return {k: np.stack([s[k] for s in samples]) for k in samples[0]}
