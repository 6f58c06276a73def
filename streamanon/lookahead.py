"""Look-ahead backfill for files with detection on one frame in N (`--detect-every`, issue 23).

With a cadence of N the detector runs on frames p and k = p + N (and on cuts); between them
the tracker carries the faces it knows. A face that walks into view on p+1..k-1 is first found
at k, so forward-only tracking leaves it uncovered for up to N-1 frames. A file's output has
no latency to keep, so `Lookahead` holds the frames after p (tracked, not anonymized, never
emitted: fail closed) until k is tracked, and then, on each held frame j:

- a track NEW at k (its id is not among the boxes of frame k-1) is covered at its box at k
  moved back by the camera's shift measured on frames j+1..k (the cadence measures it on
  every frame), grown by `MARGIN_PER_FRAME` face sizes per side per frame of distance for
  the face's own, unknown, motion;
- a track at both p and k is covered by the union of what the tracker predicted (what is
  covered without look-ahead) and the camera-compensated interpolation from p to k.

Boxes are only added or grown, so every frame is covered by a superset of the forward-only
boxes. A cut frame (always detected) ends a segment without backfill: a face of the new scene
was not in the old one. At the end of the stream the held frames go out as tracked. Live
sources keep forward-only tracking (`pipeline.run_frames`: latency matters there); at most
N-1 frames are held (a 4K frame is 25 MB; `pipeline.queue_depth` counts them).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from streamanon.stage import Stage
from streamanon.types import Detections, Frame

# Per side, in face sizes (max(w, h)) per frame between the held frame and k. Measured on
# clips the look-ahead is not judged on (benchmarks/face_motion.py: talking heads, sign
# language, a street crowd; docs/benchmarks.md "Look-ahead backfill"): the 99th percentile
# of the growth a face's box at k needed to hold its box d frames earlier was 0.03-0.09 per
# frame of distance (d = 1-4); 0.15 covers the largest seen but one.
MARGIN_PER_FRAME = 0.15


def frames_held(work: Any) -> int:
    """How many frames a `Lookahead` over ``work`` (an `Anonymizer`) may hold: N-1 for the
    slowest cadence of its stages; 0 when every stage detects every frame."""
    stages = getattr(work, "stages", None) or []
    return max((s.every for s in stages), default=1) - 1


def _moved(d: Detections, shift: np.ndarray) -> Detections:
    """``d`` moved by ``shift`` (dx, dy): boxes and landmarks."""
    out = d[np.arange(len(d))]  # a copy with its own arrays
    out.xyxy = out.xyxy + np.tile(shift, 2).astype(np.float32)
    if out.landmarks5 is not None:
        out.landmarks5 = out.landmarks5 + shift.astype(np.float32)
    if out.landmarks68 is not None:
        out.landmarks68 = out.landmarks68 + shift.astype(np.float32)
    return out


def _joined(a: Detections, b: Detections) -> Detections:
    """Rows of ``a`` then ``b``; an optional column survives only when both have it."""

    def col(x: np.ndarray | None, y: np.ndarray | None) -> np.ndarray | None:
        return None if x is None or y is None else np.concatenate([x, y])

    return Detections(
        np.concatenate([a.xyxy, b.xyxy]),
        np.concatenate([a.score, b.score]),
        col(a.landmarks5, b.landmarks5),
        col(a.landmarks68, b.landmarks68),
        col(a.track_id, b.track_id),
        col(a.coasting, b.coasting),
    )


class _Segment:
    """One stage's frames since its last detected frame p, waiting for the next one."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.frames: list[tuple[int, Frame, np.ndarray]] = []  # (seq, frame, shift at it)
        self.last: Detections | None = None  # boxes at p
        self.prev_ids: set[int] = set()  # track ids of the previous frame's boxes

    def step(self, seq: int, frame: Frame) -> None:
        stage = self.stage
        boxes = stage.boxes(frame)
        shift = np.asarray(stage.cadence.shift or (0.0, 0.0), np.float64)
        if not stage.detected:
            self.frames.append((seq, frame, shift))
        else:
            if self.frames and not stage.cut and boxes is not None and len(boxes):
                self._backfill(boxes, shift)
            self.frames, self.last = [], boxes
        ids = boxes.track_id if boxes is not None and boxes.track_id is not None else ()
        self.prev_ids = {int(i) for i in ids}

    def _backfill(self, at_k: Detections, shift_k: np.ndarray) -> None:
        stage, held = self.stage, self.frames
        ids = at_k.track_id if at_k.track_id is not None else np.full(len(at_k), -1)
        new = np.array([int(i) not in self.prev_ids for i in ids])
        last = self.last
        both: list[tuple[int, int]] = []  # (row at p, row at k) of tracks at both ends
        if last is not None and last.track_id is not None and len(last):
            row_p = {int(i): r for r, i in enumerate(last.track_id) if i >= 0}
            both = [(row_p[int(i)], r) for r, i in enumerate(ids) if int(i) in row_p]
        # back[i]: the camera's shift from held frame i to k; fwd[i]: from p to held frame i.
        shifts = np.array([s for _, _, s in held] + [shift_k])
        back = np.cumsum(shifts[::-1], axis=0)[::-1][1:]
        fwd = np.cumsum(shifts[:-1], axis=0)
        span = len(held) + 1  # k - p
        for i, (_, frame, _) in enumerate(held):
            have = stage.boxes(frame)
            have = Detections.empty() if have is None else have
            add: list[Detections] = []
            if new.any():
                d = span - 1 - i  # frames from this one to k
                born = _moved(at_k[new], -back[i])
                size = born.wh.max(axis=1, keepdims=True)
                grow = (MARGIN_PER_FRAME * d * size).astype(np.float32)
                born.xyxy = born.xyxy + np.hstack([-grow, -grow, grow, grow])
                born.coasting = np.ones(len(born), bool)  # a guess: never synthesized
                add.append(born)
            if both:
                w = (i + 1) / span
                rp, rk = (np.array(c) for c in zip(*both, strict=True))
                between = (1 - w) * (last.xyxy[rp] + np.tile(fwd[i], 2)) + w * (
                    at_k.xyxy[rk] - np.tile(back[i], 2)
                )
                have, missing = self._grown(have, ids[rk], between.astype(np.float32))
                if missing.any():
                    extra = _moved(at_k[rk[missing]], -back[i])
                    extra.xyxy = between[missing].astype(np.float32)
                    extra.coasting = np.ones(len(extra), bool)
                    add.append(extra)
            for a in add:
                have = _joined(have, a)
                stage.counters.backfilled += len(a)
                stage.counters.covered += len(a)
            stage.set_boxes(frame, have)

    @staticmethod
    def _grown(
        have: Detections, ids: np.ndarray, boxes: np.ndarray
    ) -> tuple[Detections, np.ndarray]:
        """``have`` with each row of track ``ids[r]`` grown to hold ``boxes[r]``; and which
        of ``ids`` had no row (the tracker dropped it between p and k)."""
        missing = np.ones(len(ids), bool)
        if have.track_id is None or not len(have):
            return have, missing
        xyxy = have.xyxy.copy()
        for r, tid in enumerate(ids):
            rows = np.flatnonzero(have.track_id == tid)
            if len(rows):
                missing[r] = False
                xyxy[rows, :2] = np.minimum(xyxy[rows, :2], boxes[r, :2])
                xyxy[rows, 2:] = np.maximum(xyxy[rows, 2:], boxes[r, 2:])
        out = have[np.arange(len(have))]
        out.xyxy = xyxy
        return out, missing


class Lookahead:
    """``Lookahead(work)``: ``work.track`` (an `Anonymizer`'s) for a file, with backfill.

    Call it with every item of the stream in order (frames; other items, such as audio
    packets, keep their place behind held frames); it returns the items that are done, in
    order (0..N of them). `flush` returns the rest at the end of the stream."""

    def __init__(self, work: Any) -> None:
        self.work = work
        self._segments = [_Segment(s) for s in work.stages if s.every > 1]
        self._held: deque[tuple[int, Any]] = deque()
        self._seq = 0

    def __call__(self, item: Any) -> list[Any]:
        seq, self._seq = self._seq, self._seq + 1
        if isinstance(item, Frame):
            self.work.track(item)
            for seg in self._segments:
                seg.step(seq, item)
        elif not self._held:
            return [item]
        self._held.append((seq, item))
        waiting = [seg.frames[0][0] for seg in self._segments if seg.frames]
        until = min(waiting) if waiting else self._seq
        done = []
        while self._held and self._held[0][0] < until:
            done.append(self._held.popleft()[1])
        return done

    def flush(self) -> list[Any]:
        """The held items, as tracked (no later detection to look at)."""
        done = [item for _, item in self._held]
        self._held.clear()
        for seg in self._segments:
            seg.frames = []
        return done
