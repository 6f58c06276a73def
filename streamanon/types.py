"""Typed containers passed between the pipeline stages.

One per-frame container (`Detections`) carries parallel arrays from the detector through the
tracker to the anonymizers, the way supervision's `Detections` links its modules. Shapes are
checked once, on construction, so every stage can trust them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

import numpy as np


def _rows(a: np.ndarray | None, n: int, shape: tuple[int, ...], name: str) -> None:
    if a is None:
        return
    if a.shape[:1] != (n,) or a.shape[1:] != shape:
        raise ValueError(
            f"{name} must have shape ({n}, {', '.join(map(str, shape))}), got {a.shape}"
        )


@dataclass(slots=True)
class Detections:
    """Faces in one frame: parallel arrays, one row per face.

    xyxy        (n, 4) float32 pixel box, x1 y1 x2 y2 (exclusive right/bottom edge)
    score       (n,)   float32 detector confidence in [0, 1]
    landmarks5  (n, 5, 2) eyes, nose, mouth corners (optional)
    landmarks68 (n, 68, 2) iBUG 68-point layout (optional)
    track_id    (n,) int64, -1 for faces not (yet) on a track (optional)
    coasting    (n,) bool, True where the box is a tracker prediction without a detection
    """

    xyxy: np.ndarray
    score: np.ndarray
    landmarks5: np.ndarray | None = None
    landmarks68: np.ndarray | None = None
    track_id: np.ndarray | None = None
    coasting: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.score = np.asarray(self.score, dtype=np.float32).reshape(-1)
        _rows(self.score, n, (), "score")
        if self.landmarks5 is not None:
            self.landmarks5 = np.asarray(self.landmarks5, dtype=np.float32)
        if self.landmarks68 is not None:
            self.landmarks68 = np.asarray(self.landmarks68, dtype=np.float32)
        _rows(self.landmarks5, n, (5, 2), "landmarks5")
        _rows(self.landmarks68, n, (68, 2), "landmarks68")
        if self.track_id is not None:
            self.track_id = np.asarray(self.track_id, dtype=np.int64).reshape(-1)
            _rows(self.track_id, n, (), "track_id")
        if self.coasting is not None:
            self.coasting = np.asarray(self.coasting, dtype=bool).reshape(-1)
            _rows(self.coasting, n, (), "coasting")

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32))

    @classmethod
    def concat(cls, parts: list[Detections]) -> Detections:
        """The rows of ``parts`` in order; a column is kept when every non-empty part has it
        (an empty list or only empty parts: ``empty()``)."""
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        if len(parts) == 1:
            return parts[0]

        def cat(name: str) -> np.ndarray | None:
            cols = [getattr(p, name) for p in parts]
            return None if any(c is None for c in cols) else np.concatenate(cols)

        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            cat("landmarks5"),
            cat("landmarks68"),
            cat("track_id"),
            cat("coasting"),
        )

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice | list[int]) -> Detections:
        """Boolean-mask or integer indexing over rows, e.g. ``d[d.score > 0.5]``."""

        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Detections(
            self.xyxy[index],
            self.score[index],
            pick(self.landmarks5),
            pick(self.landmarks68),
            pick(self.track_id),
            pick(self.coasting),
        )

    @property
    def wh(self) -> np.ndarray:
        return self.xyxy[:, 2:] - self.xyxy[:, :2]

    @property
    def area(self) -> np.ndarray:
        wh = np.clip(self.wh, 0, None)
        return wh[:, 0] * wh[:, 1]


@dataclass(slots=True)
class Frame:
    """A decoded picture with its timing; ``image`` is BGR uint8 (h, w, 3)."""

    image: np.ndarray
    index: int
    pts: int | None = None
    time_base: Fraction | None = None
    # Display rotation of the source (degrees counter-clockwise, as in the stream's display
    # matrix). ``image`` is always upright (as players show it); writers turn it back and tag
    # the output, so faces are detected the way people see them.
    rotation: int = 0
    # Set by the pipeline: the faces that were anonymized in this frame.
    faces: Detections = field(default_factory=Detections.empty)
    # Other classes covered in this frame, by name ("plate"), when --objects asks for them.
    objects: dict[str, Detections] = field(default_factory=dict)

    @property
    def time(self) -> float:
        """Presentation time in seconds (index-based when the source has no pts)."""
        if self.pts is None or self.time_base is None:
            return float(self.index)
        return float(self.pts * self.time_base)


@dataclass(slots=True)
class FaceCrop:
    """An aligned face crop and the similarity transform that produced it.

    ``matrix`` (2, 3) maps frame coordinates to crop coordinates; its inverse puts a
    synthesized crop back into the frame.
    """

    image: np.ndarray
    matrix: np.ndarray
    landmarks: np.ndarray  # landmarks in crop coordinates
    track_id: int = -1
