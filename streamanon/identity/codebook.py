"""The codebook: Ψ's "classes" are identity centroids, scored by scaled cosine similarity.

dlib's ResNet was trained with a metric loss, so it has no classifier layer; following the
paper ("we simply employ the pre-trained classes as the codebook") the classes are the
centroids of labelled embeddings (e.g. the synthetic SFHQ faces, one identity per image).

Cosine similarity is measured about ``center`` (the mean of all embeddings, by default):
dlib descriptors all lie in a narrow cone (two different people are typically at cosine ~0.85
uncentered), and centring spreads the classes apart without changing which one is nearest
for Euclidean-equivalent reasons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from streamanon import models
from streamanon.errors import InputError
from streamanon.identity.embed import embed_faces
from streamanon.paths import engine_file

CODEBOOK_FILE = "recognizer_codebook_sfhq.npz"
# The repository's copy (paths.find_engine also looks in $STREAMANON_ENGINES and share/).
DEFAULT_CODEBOOK = Path(__file__).resolve().parents[2] / "engines" / CODEBOOK_FILE
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class CodebookError(InputError):
    """The codebook cannot be built from what was given."""


@dataclass(frozen=True, eq=False)  # arrays: compare with np.array_equal, not ==
class Codebook:
    """(n, 128) identity centroids with labels; logits = scale * cos(f - center, c - center)."""

    centroids: np.ndarray
    labels: np.ndarray
    scale: float = 16.0
    center: np.ndarray | None = None

    def __post_init__(self) -> None:
        c = np.asarray(self.centroids, np.float32)
        if c.ndim != 2 or c.shape[1] != 128 or len(c) == 0:
            raise CodebookError(f"centroids must be (n>0, 128), got {c.shape}")
        labels = np.asarray(self.labels).astype(str)
        if labels.shape != (len(c),):
            raise CodebookError(f"need one label per centroid, got {labels.shape} for {len(c)}")
        if not np.isfinite(c).all() or not np.isfinite(self.scale) or self.scale <= 0:
            raise CodebookError("centroids must be finite and scale > 0")
        object.__setattr__(self, "centroids", c)
        object.__setattr__(self, "labels", labels)
        if self.center is not None:
            object.__setattr__(self, "center", np.asarray(self.center, np.float32).reshape(128))

    def __len__(self) -> int:
        return len(self.centroids)

    @classmethod
    def from_embeddings(
        cls, emb: np.ndarray, labels, *, scale: float = 16.0, centered: bool = True
    ) -> Codebook:
        """Centroids of the (n, 128) embeddings grouped by label (sorted label order)."""
        emb = np.asarray(emb, np.float32)
        labels = np.asarray(labels).astype(str)
        if emb.ndim != 2 or emb.shape[1] != 128 or len(emb) != len(labels) or len(emb) == 0:
            raise CodebookError(
                f"need (n, 128) embeddings and n labels, got {emb.shape}, {labels.shape}"
            )
        uniq, inv = np.unique(labels, return_inverse=True)
        sums = np.zeros((len(uniq), 128), np.float64)
        np.add.at(sums, inv, emb)
        cent = (sums / np.bincount(inv)[:, None]).astype(np.float32)
        center = cent.mean(axis=0) if centered else None
        return cls(cent, uniq, scale=scale, center=center)

    @classmethod
    def from_folder(
        cls, path: str | Path, *, scale: float = 16.0, centered: bool = True
    ) -> Codebook:
        """Identities from a folder: one sub-folder per identity, or (flat) one image each.

        Faces are found with dlib's HOG detector (largest face per image) and aligned as dlib
        does; images without a face are skipped, and a folder with none is an error.
        """
        import cv2

        root = Path(path)
        if not root.is_dir():
            raise CodebookError(f"{root} is not a folder")
        files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        nested = any(p.parent != root for p in files)
        detector = models.hog_detector()
        embs, labels = [], []
        for p in files:
            image = cv2.imread(str(p))
            if image is None:
                continue
            rects = detector(
                np.ascontiguousarray(image[:, :, ::-1]), 1 if max(image.shape) < 400 else 0
            )
            if not rects:
                continue
            r = max(rects, key=lambda r: r.area())
            box = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1]], np.float32)
            embs.append(embed_faces(image, box)[0])
            labels.append(p.parent.name if nested else p.stem)
        if not embs:
            raise CodebookError(f"no faces found in {root}")
        return cls.from_embeddings(np.stack(embs), labels, scale=scale, centered=centered)

    @classmethod
    def load(cls, path: str | Path = DEFAULT_CODEBOOK) -> Codebook:
        path = Path(path)
        if not path.is_file():
            raise CodebookError(f"codebook {path} not found")
        with np.load(path, allow_pickle=False) as z:
            center = z["center"] if "center" in z.files else None
            return cls(z["centroids"], z["labels"], float(z["scale"]), center)

    def save(self, path: str | Path) -> None:
        arrays = {
            "centroids": self.centroids,
            "labels": self.labels,
            "scale": np.float32(self.scale),
        }
        if self.center is not None:
            arrays["center"] = self.center
        np.savez(path, **arrays)

    def _unit_classes(self, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = torch.as_tensor(self.centroids, dtype=f.dtype, device=f.device)
        mu = (
            torch.as_tensor(self.center, dtype=f.dtype, device=f.device)
            if self.center is not None
            else torch.zeros(128, dtype=f.dtype, device=f.device)
        )
        return torch.nn.functional.normalize(c - mu, dim=1), mu

    def logits(self, f: torch.Tensor) -> torch.Tensor:
        """(B, 128) -> (B, n): scale * cosine similarity about ``center`` (used for ranking)."""
        chat, mu = self._unit_classes(f)
        return self.scale * torch.nn.functional.normalize(f - mu, dim=1) @ chat.T

    def class_scores(self, f: torch.Tensor) -> torch.Tensor:
        """(B, 128) -> (B, n): the un-normalized score y^c = scale * ĉ·(f - center).

        It ranks classes like :meth:`logits` for one face (they differ by the factor
        |f - center|), but unlike the cosine it is not scale-invariant in f, so its Grad-CAM
        is informative (see streamanon.identity.ifa).
        """
        chat, mu = self._unit_classes(f)
        return self.scale * (f - mu) @ chat.T

    def topk(self, f: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Indices (B, k) and logits (B, k) of the k best classes."""
        if not 0 <= k <= len(self):
            raise CodebookError(f"k must be in 0..{len(self)}, got {k}")
        vals, idx = self.logits(f).topk(k, dim=1)
        return idx, vals

    def nearest(self, emb: np.ndarray) -> np.ndarray:
        """Label of the best class for each (n, 128) embedding."""
        with torch.no_grad():
            idx, _ = self.topk(torch.as_tensor(np.asarray(emb, np.float32).reshape(-1, 128)), 1)
        return self.labels[idx[:, 0].numpy()]


def default_codebook() -> Codebook:
    """The shipped SFHQ codebook (521 synthetic identities, MIT) from engines/ (loaded once)."""
    return models.cached("codebook/sfhq", lambda: Codebook.load(engine_file(CODEBOOK_FILE)))


def main(argv: list[str] | None = None) -> int:
    """``python -m streamanon.identity.codebook SRC_FOLDER OUT.npz``: (re)build a codebook.

    The shipped one is ``SRC_FOLDER = ../shared/data/faces/synthetic/sfhq`` (MIT).
    """
    import sys

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print("usage: python -m streamanon.identity.codebook SRC_FOLDER OUT.npz", file=sys.stderr)
        return 2
    cb = Codebook.from_folder(argv[0])
    cb.save(argv[1])
    print(f"{len(cb)} identities -> {argv[1]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
