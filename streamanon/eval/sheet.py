"""Contact sheets for judging faces by eye: original | anonymized crops, and blind A/B sheets.

A sheet is one PNG: a row per face (track and sampled frame), a column per picture. The A/B
sheet shows two renderers' crops of the same face in an order shuffled per row with a seeded
generator; the key (which side is which) goes into JSON, never onto the picture.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

CELL = 160
LABEL_H = 16


def face_crop(
    image: np.ndarray, box: np.ndarray, size: int = CELL, grow: float = 1.5
) -> np.ndarray:
    """A square crop (size, size, 3) around ``box`` grown by ``grow`` (edge replicated)."""
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    c = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    side = max(x2 - x1, y2 - y1, 2.0) * grow
    # Cut the square (edges replicated), then scale it: area filter to shrink, bilinear to
    # enlarge (warpAffine with INTER_AREA draws stripes when enlarging).
    n = max(2, int(np.ceil(side)))
    patch = cv2.getRectSubPix(np.ascontiguousarray(image), (n, n), (float(c[0]), float(c[1])))
    interp = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interp)


def _labelled(img: np.ndarray, text: str) -> np.ndarray:
    out = np.full((img.shape[0] + LABEL_H, img.shape[1], 3), 255, np.uint8)
    out[LABEL_H:] = img
    cv2.putText(out, text[:30], (2, LABEL_H - 4), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (0, 0, 0), 1,
                cv2.LINE_AA)  # fmt: skip
    return out


def contact_sheet(
    rows: Sequence[Sequence[np.ndarray]],
    labels: Sequence[Sequence[str]] | None = None,
    columns: int = 1,
) -> np.ndarray:
    """Tile rows of equal-size crops; ``columns`` rows side by side (wraps long lists)."""
    if not rows:
        raise ValueError("a contact sheet needs at least one row")
    tiles = []
    for r, row in enumerate(rows):
        cells = [
            _labelled(c, labels[r][j] if labels is not None else "") for j, c in enumerate(row)
        ]
        tiles.append(np.hstack(cells + [np.full((cells[0].shape[0], 6, 3), 255, np.uint8)]))
    while len(tiles) % columns:
        tiles.append(np.full_like(tiles[0], 255))
    per = len(tiles) // columns
    cols = [np.vstack(tiles[i * per : (i + 1) * per]) for i in range(columns)]
    return np.hstack(cols)


def ab_rows(
    originals: Sequence[np.ndarray],
    a: Sequence[np.ndarray],
    b: Sequence[np.ndarray],
    names: tuple[str, str],
    seed: int = 0,
) -> tuple[list[list[np.ndarray]], list[dict]]:
    """Rows (original, left, right) with left/right shuffled per row; the key for each row."""
    rng = np.random.default_rng(seed)
    rows, key = [], []
    for i, (o, x, y) in enumerate(zip(originals, a, b, strict=True)):
        flip = bool(rng.integers(2))
        rows.append([o, y, x] if flip else [o, x, y])
        key.append({"row": i, "left": names[int(flip)], "right": names[1 - int(flip)]})
    return rows, key


def score_ab(key: Sequence[dict], answers: str) -> dict[str, int]:
    """Wins per method and ties from one answer letter per key row of `ab_rows` (``L``/``R``/``=``;
    whitespace ignored). A missing or unknown letter is an error, never a silent tie."""
    letters = [c for c in answers.upper() if not c.isspace()]
    if len(letters) != len(key):
        raise ValueError(f"{len(letters)} answers for {len(key)} pairs")
    out: dict[str, int] = {"tie": 0}
    for k in key:
        out.setdefault(k["left"], 0)
        out.setdefault(k["right"], 0)
    for k, c in zip(key, letters, strict=True):
        if c == "L":
            out[k["left"]] += 1
        elif c == "R":
            out[k["right"]] += 1
        elif c == "=":
            out["tie"] += 1
        else:
            raise ValueError(f"answer {c!r} for row {k['row']}: use L, R or =")
    return out


def write_png(image: np.ndarray, path: str | os.PathLike) -> None:
    """Write atomically (temp file + rename): a crash never leaves half a sheet."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp.png")
    if not cv2.imwrite(str(tmp), image):
        raise OSError(f"cannot write {path}")
    os.replace(tmp, path)


def write_json(obj: object, path: str | os.PathLike) -> None:
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=float))
    os.replace(tmp, path)
