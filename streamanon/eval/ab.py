"""Blind A/B by eye: two renders of the same faces side by side, sides shuffled, key kept apart.

`ab_sheet` writes a numbered contact sheet (each row: the pair, left/right drawn per row from a
seeded generator) and returns the key (which side is which method); the viewer writes one
letter per row — ``L``, ``R`` or ``=`` — and `score_ab` turns the answers and the key into wins
per method. The sheet never names the methods, so the viewer cannot know which is which.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np


def ab_sheet(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]],
    names: tuple[str, str],
    path: str | Path,
    seed: int = 0,
    cell: int = 192,
    per_row: int = 4,
) -> list[dict]:
    """Write the sheet (PNG) of ``pairs`` [(face by names[0], face by names[1])]; return the key:
    one ``{"row": n, "left": name, "right": name}`` per pair (row numbers start at 1)."""
    rng = np.random.default_rng(seed)
    key, tiles = [], []
    for n, (a, b) in enumerate(pairs, start=1):
        swap = bool(rng.integers(0, 2))
        left, right = (b, a) if swap else (a, b)
        key.append({"row": n, "left": names[int(swap)], "right": names[1 - int(swap)]})
        pair = [cv2.resize(x, (cell, cell), interpolation=cv2.INTER_AREA if x.shape[0] > cell
                           else cv2.INTER_CUBIC) for x in (left, right)]  # fmt: skip
        tile = np.full((cell + 24, 2 * cell + 12, 3), 255, np.uint8)
        tile[24:, :cell], tile[24:, cell + 12 :] = pair
        cv2.putText(tile, f"{n}", (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1, cv2.LINE_AA)
        cv2.putText(tile, "L", (cell // 2, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (90, 90, 90), 1)
        cv2.putText(tile, "R", (cell + 12 + cell // 2, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5,
                    (90, 90, 90), 1)  # fmt: skip
        tiles.append(tile)
    if not tiles:
        raise ValueError("no pairs for an A/B sheet")
    while len(tiles) % per_row:
        tiles.append(np.full_like(tiles[0], 255))
    rows = [np.concatenate(tiles[i : i + per_row], axis=1) for i in range(0, len(tiles), per_row)]
    cv2.imwrite(str(path), np.concatenate(rows, axis=0))
    return key


def score_ab(key: Sequence[dict], answers: str) -> dict[str, int]:
    """Wins per method and ties from one answer letter per key row (``L``/``R``/``=``;
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
