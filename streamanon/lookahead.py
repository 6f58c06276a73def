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

The margin is measured on heads moving in place; a pedestrian crossing the view moves ~0.4
face sizes a frame. So, when the detector can search windows (`MultiScaleDetector.
detect_windows`; the plate detectors cannot: margin only), a sure face new at k is also
searched for on the held frames, newest first, around where it was on the frame after, and a
sure face detected at p and not at k (it may have walked out, or behind something) is searched
for forward from p; every face a window finds there is covered too, and a face's search stops
at the first window that finds nothing (`Stage.search_back`, counted as ``backward_windows``).

Boxes are only added or grown, so every frame is covered by a superset of the forward-only
boxes. A segment that gets no later detection in its scene (a cut follows: the cut frame is
always detected; or the stream ends) is closed by one detection of its last held frame: what
it finds that the frame does not already cover is covered there and, the same way, back on
the other held frames; nothing of a new scene is drawn onto the old one. Live sources keep
forward-only tracking (`pipeline.run_frames`: latency matters there); at most N-1 frames are
held (a 4K frame is 25 MB; `pipeline.queue_depth` counts them).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from streamanon.stage import Stage
from streamanon.track.association import inside_share, iou_matrix
from streamanon.types import Detections, Frame

# Per side, in face sizes (max(w, h)) per frame between the held frame and k. Measured on
# clips the look-ahead is not judged on (benchmarks/face_motion.py: three talking heads, two
# sign-language clips; the street crowd has no face the detector is sure of): the growth a
# face's box at k needed to hold its box d frames earlier, per frame of distance, has a 99th
# percentile of 0.017-0.126 per clip and d (1-4), largest 0.159 (a head turning fast, d = 1).
MARGIN_PER_FRAME = 0.15
# The search (see above): a window around where a face was on the neighbouring frame (moved
# by the camera's shift) reaches this far per side, face sizes, for the face's own motion
# (1.4 m/s at 25 fps is ~0.4 face sizes a frame) ...
BACK_REACH = 0.7
# ... plus this much context (face sizes per side: a window ~3 faces wide);
BACK_CONTEXT = 0.3
# at most this many windows per held frame and direction (one network batch each; the
# surest faces first, a crowd's others keep the margin alone).
MAX_BACK_WINDOWS = 16
# A face found this much inside a box the frame already has needs no box of its own.
COVERED = 0.9


def frames_held(work: Any) -> int:
    """How many frames a `Lookahead` over ``work`` (an `Anonymizer`) may hold: N-1 for the
    slowest cadence of its stages; 0 when every stage detects every frame."""
    stages = getattr(work, "stages", None) or []
    return max((s.every for s in stages), default=1) - 1


def _window_finder(detector: Any) -> Any:
    """The detector's (or its backend's) ``detect_windows``, or None (plates: margin only)."""
    for d in (detector, getattr(detector, "backend", None)):
        find = getattr(d, "detect_windows", None)
        if callable(find):
            return find
    return None


def _nearest(box: np.ndarray, boxes: np.ndarray) -> int:
    c = (box[:2] + box[2:]) / 2
    return int(np.argmin((((boxes[:, :2] + boxes[:, 2:]) / 2 - c) ** 2).sum(axis=1)))


def _stacked(parts: list[Detections]) -> Detections:
    """Rows of ``parts`` (boxes, scores, 5 landmarks) as one `Detections`."""
    return Detections(
        np.concatenate([p.xyxy for p in parts]).astype(np.float32),
        np.concatenate([p.score for p in parts]).astype(np.float32),
        landmarks5=np.concatenate([p.landmarks5 for p in parts]).astype(np.float32),
    )


def _moved(d: Detections, shift: np.ndarray) -> Detections:
    """``d`` moved by ``shift`` (dx, dy): boxes and landmarks."""
    out = d[np.arange(len(d))]  # a copy with its own arrays
    out.xyxy = out.xyxy + np.tile(shift, 2).astype(np.float32)
    if out.landmarks5 is not None:
        out.landmarks5 = out.landmarks5 + shift.astype(np.float32)
    if out.landmarks68 is not None:
        out.landmarks68 = out.landmarks68 + shift.astype(np.float32)
    return out


# Five points of a frontal face in its box (eyes, nose, mouth corners): a row without its own
# keeps the frame's landmark column, so the other faces' head regions do not change.
_FRONTAL5 = np.array([[0.3, 0.4], [0.7, 0.4], [0.5, 0.55], [0.35, 0.75], [0.65, 0.75]], np.float32)


def _column(d: Detections, name: str) -> np.ndarray:
    """``d``'s optional column ``name``, or a stand-in for rows that lack it."""
    have = getattr(d, name)
    if have is not None:
        return have
    n = len(d)
    if name == "landmarks5":
        return d.xyxy[:, None, :2] + _FRONTAL5[None] * d.wh[:, None, :]
    if name == "landmarks68":
        return np.full((n, 68, 2), np.nan, np.float32)  # methods that need them decline
    if name == "track_id":
        return np.full(n, -1, np.int64)
    return np.ones(n, bool)  # coasting: not a detection of this frame


def _joined(have: Detections, add: Detections) -> Detections:
    """Rows of ``have`` then ``add``. A column ``have`` has stays (``add`` gets stand-ins):
    the landmarks of the faces already there keep shaping their head regions."""

    def col(name: str) -> np.ndarray | None:
        if getattr(have, name) is None:
            return None
        return np.concatenate([getattr(have, name), _column(add, name)])

    return Detections(
        np.concatenate([have.xyxy, add.xyxy]),
        np.concatenate([have.score, add.score]),
        col("landmarks5"),
        col("landmarks68"),
        col("track_id"),
        col("coasting"),
    )


def _grown(have: Detections, ids: np.ndarray, boxes: np.ndarray) -> tuple[Detections, np.ndarray]:
    """``have`` with the row of track ``ids[r]`` grown to hold ``boxes[r]``; and which of
    ``ids`` had no row (the tracker dropped it between p and k). One array pass: a crowd
    has hundreds of tracks."""
    if have.track_id is None or not len(have):
        return have, np.ones(len(ids), bool)
    order = np.argsort(have.track_id, kind="stable")
    known = have.track_id[order]
    pos = np.minimum(np.searchsorted(known, ids), len(known) - 1)
    found = known[pos] == ids
    rows = order[pos[found]]
    out = have[np.arange(len(have))]
    out.xyxy[rows, :2] = np.minimum(out.xyxy[rows, :2], boxes[found, :2])
    out.xyxy[rows, 2:] = np.maximum(out.xyxy[rows, 2:], boxes[found, 2:])
    return out, ~found


class _Segment:
    """One stage's frames since its last detected frame p, waiting for the next one."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.frames: list[tuple[int, Frame]] = []  # (seq, frame)
        self.shifts: list[np.ndarray] = []  # the camera's shift measured at each held frame
        self.last: Detections | None = None  # boxes at p
        self.prev_ids = np.zeros(0, np.int64)  # track ids of the previous frame's boxes

    def step(self, seq: int, frame: Frame) -> None:
        stage = self.stage
        boxes = stage.boxes(frame)
        shift = np.asarray(stage.cadence.shift or (0.0, 0.0), np.float64)
        if not stage.detected:
            self.frames.append((seq, frame))
            self.shifts.append(shift)
        else:
            if self.frames and boxes is not None and len(boxes):
                self._backfill(boxes, shift)
            self.frames, self.shifts, self.last = [], [], boxes
        ids = boxes.track_id if boxes is not None else None
        self.prev_ids = ids if ids is not None else np.zeros(0, np.int64)

    def close(self) -> None:
        """The held frames get no later detection in their scene (a cut follows, or the
        stream ends): detect the last of them, and cover what it finds there and back on the
        others as a new track at the next detection would be."""
        if not self.frames:
            return
        held, shifts = self.frames, self.shifts
        self.frames, self.shifts = [], []  # the segment ends here: its frames may go
        stage = self.stage
        _, last = held[-1]
        dets = stage.detector(last.image)
        stage.counters.closing_detections += 1
        dets = dets[dets.score >= stage.thresh]
        have = stage.boxes(last)
        if have is not None and len(have) and len(dets):
            # Faces the frame already covers keep their track's row (and its method).
            new = [inside_share(b, have.xyxy) < 0.5 for b in dets.xyxy]
            dets = dets[np.array(new, bool)]
        if not len(dets):
            return
        dets.coasting = np.ones(len(dets), bool)  # not on a track: never synthesized
        self._add(last, dets, have)
        self._cover_back(held[:-1], dets, np.array(shifts[1:]).reshape(-1, 2))

    def _cover_back(self, held: list, born: Detections, shifts: np.ndarray) -> None:
        """Cover ``born`` (boxes on the frame after ``held``, whose shifts ``shifts`` are,
        one per frame after each held one) on every held frame: moved back by the camera's
        shift, grown by `MARGIN_PER_FRAME` per frame of distance."""
        back = np.cumsum(shifts[::-1], axis=0)[::-1]
        size = born.wh.max(axis=1, keepdims=True)
        for i, (_, frame) in enumerate(held):
            d = len(held) - i  # frames from this one to the one ``born`` was found on
            rows = _moved(born, -back[i])
            grow = (MARGIN_PER_FRAME * d * size).astype(np.float32)
            rows.xyxy = rows.xyxy + np.hstack([-grow, -grow, grow, grow])
            rows.coasting = np.ones(len(rows), bool)  # a guess: never synthesized
            have = self.stage.boxes(frame)
            self._add(frame, rows, have)
        self._search_back(held, born, shifts)

    def _search_back(self, held: list, born: Detections, shifts: np.ndarray) -> None:
        """Find the sure faces of ``born`` (on the frame after ``held``) on the held frames,
        newest first: a face new at k walked in, or came out from behind something, since p."""
        steps = [(held[i][1], -shifts[i]) for i in range(len(held) - 1, -1, -1)]
        self._search(steps, born)

    def _search(self, steps: list[tuple[Frame, np.ndarray]], start: Detections) -> None:
        """Follow the sure faces of ``start`` through ``steps`` ((held frame, camera shift from
        the frame before it in the walk), in walking order) and cover every face a search
        window holds on each (with the margin boxes and the tracker's: a superset). A face is
        searched for around where it was found on the frame before (moved by the shift); its
        search stops at the first frame whose window finds nothing."""
        stage = self.stage
        find = _window_finder(stage.detector)
        sure = start.score >= stage.thresh
        if find is None or not stage.search_back or not sure.any():
            return
        at = start.xyxy[sure].astype(np.float64)
        at = at[np.argsort(-start.score[sure], kind="stable")][:MAX_BACK_WINDOWS]  # surest first
        for frame, shift in steps:
            pred = at + np.tile(shift, 2)  # where the scene put it on this frame
            size = np.maximum(pred[:, 2] - pred[:, 0], pred[:, 3] - pred[:, 1])[:, None]
            grow = (BACK_REACH + BACK_CONTEXT) * size
            found = find(frame.image, pred + np.hstack([-grow, -grow, grow, grow]))
            stage.counters.backward_windows += len(pred)
            keep, rows = [], []
            for f, d in enumerate(found):
                if not len(d):
                    continue  # not in view here: no further either
                rows.append(d)
                keep.append(f)
                iou = iou_matrix(pred[f : f + 1], d.xyxy)[0]
                best = int(np.argmax(iou)) if iou.max() > 0 else _nearest(pred[f], d.xyxy)
                at[f] = d.xyxy[best]
            if rows:
                self._add_found(frame, _stacked(rows))
            at = at[keep]
            if not len(at):
                return

    def _add_found(self, frame: Frame, found: Detections) -> None:
        """Cover the faces of ``found`` that no box of the frame holds yet (a face inside its
        track's box or a margin is covered; one more box over it only adds a seam)."""
        have = self.stage.boxes(frame)
        boxes = np.zeros((0, 4), np.float32) if have is None else have.xyxy
        new: list[int] = []
        for r in np.argsort(-found.score, kind="stable"):  # a face two windows found: once
            if inside_share(found.xyxy[r], np.vstack([boxes, found.xyxy[new]])) < COVERED:
                new.append(int(r))
        if new:
            add = found[np.array(sorted(new))]
            add.coasting = np.ones(len(add), bool)  # found, not tracked: never synthesized
            self._add(frame, add, have)

    def _add(self, frame: Frame, rows: Detections, have: Detections | None) -> None:
        stage = self.stage
        stage.counters.backfilled += len(rows)
        stage.counters.covered += len(rows)
        stage.set_boxes(frame, rows if have is None or not len(have) else _joined(have, rows))

    def _backfill(self, at_k: Detections, shift_k: np.ndarray) -> None:
        stage, held = self.stage, self.frames
        ids = at_k.track_id if at_k.track_id is not None else np.full(len(at_k), -1)
        shifts = np.array(self.shifts[1:] + [shift_k]).reshape(-1, 2)
        new = ~np.isin(ids, self.prev_ids)
        if new.any():
            self._cover_back(held, at_k[new], shifts)
        last = self.last
        if last is None or last.track_id is None or not len(last):
            return
        # A face detected at p and not at k may have walked out (or behind something) since:
        # the tracker's guess for a new track has no speed yet, so it is searched for forward.
        det_k = ids[~at_k.coasting] if at_k.coasting is not None else ids
        gone = np.ones(len(last), bool) if last.coasting is None else ~last.coasting
        gone &= ~np.isin(last.track_id, det_k)
        if gone.any():
            self._search([(f, s) for (_, f), s in zip(held, self.shifts, strict=True)], last[gone])
        # Tracks at both p and k: also the camera-compensated interpolation from p to k.
        row_p = {int(i): r for r, i in enumerate(last.track_id) if i >= 0}
        both = [(row_p[int(i)], r) for r, i in enumerate(ids) if int(i) in row_p]
        if not both:
            return
        rp, rk = (np.array(c) for c in zip(*both, strict=True))
        back = np.cumsum(shifts[::-1], axis=0)[::-1]  # from held frame i to k
        fwd = np.cumsum(np.array(self.shifts), axis=0)  # from p to held frame i
        span = len(held) + 1  # k - p
        for i, (_, frame) in enumerate(held):
            w = (i + 1) / span
            between = (1 - w) * (last.xyxy[rp] + np.tile(fwd[i], 2)) + w * (
                at_k.xyxy[rk] - np.tile(back[i], 2)
            )
            have = stage.boxes(frame)
            have = Detections.empty() if have is None else have
            have, missing = _grown(have, ids[rk], between.astype(np.float32))
            stage.set_boxes(frame, have)
            if missing.any():
                extra = _moved(at_k[rk[missing]], -back[i])
                extra.xyxy = between[missing].astype(np.float32)
                extra.coasting = np.ones(len(extra), bool)
                self._add(frame, extra, have)


class Lookahead:
    """``Lookahead(work)``: ``work.track`` (an `Anonymizer`'s) for a file, with backfill.

    Call it with every item of the stream in order (frames; other items, such as audio
    packets, keep their place behind held frames); it returns the items that are done, in
    order (0..N of them). `flush` returns the rest at the end of the stream."""

    def __init__(self, work: Any) -> None:
        self.work = work
        self._segments = [_Segment(s) for s in work.stages if s.every > 1]
        for seg in self._segments:
            seg.stage.before_cut = seg.close  # the stage calls it before detecting a cut
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
        """The held items at the end of the stream (each stage detects its last held frame
        and covers back what it finds there)."""
        for seg in self._segments:
            seg.close()
        self.detach()
        done = [item for _, item in self._held]
        self._held.clear()
        return done

    def detach(self) -> None:
        """Unhook from the stages (the run is over, or failed: its held frames are dropped)."""
        for seg in self._segments:
            if seg.stage.before_cut == seg.close:
                seg.stage.before_cut = None
            seg.frames, seg.shifts = [], []
