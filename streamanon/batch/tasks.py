"""What a batch task is made of: a chunk of a video, and the progress callback of a task.

Kept apart from `worker` (which runs tasks) and `chunks` (which anonymizes one), so both can
use them without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

Progress = Callable[[int, float], None]  # (frames written, media seconds written) of the task


@dataclass(frozen=True)
class ChunkSpec:
    """Frames with ``start <= pts < end`` (stream time base) are written; tracking starts at
    ``warm`` (<= start), so faces in view at the cut are already tracked."""

    index: int
    count: int
    start: int | None  # None: from the first frame
    end: int | None  # None: to the last frame
    warm: int | None
