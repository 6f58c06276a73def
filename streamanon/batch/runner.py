"""The driver loop: hand tasks to a backend, retry lost ones, join chunks, keep the journal.

Rules:
- a file is journaled once, when it is finished (done, or failed for good); an interrupted
  file is not journaled, so a rerun does it again;
- a task whose worker died is retried up to ``retries`` times, then its file fails with the
  reason; a task that ran and reported a bad input fails at once (it would fail again);
- outputs appear only complete (each file, each chunk, each join is written atomically).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from streamanon.batch.backend import Backend
from streamanon.batch.chunks import chunk_path, chunkable, join_chunks, plan_chunks
from streamanon.batch.journal import Journal
from streamanon.batch.plan import Item, Plan
from streamanon.batch.progress import BatchProgress
from streamanon.batch.worker import Task, remove_partials

log = logging.getLogger(__name__)

CHUNK_DIR = ".streamanon-chunks"


@dataclass
class FileState:
    item: Item
    tasks: list[Task]
    results: dict[str, dict] = field(default_factory=dict)  # task id → result
    attempts: int = 0  # tries of the task tried most often
    retry_reasons: list[str] = field(default_factory=list)
    failed: str | None = None
    chunk_dir: Path | None = None


@dataclass
class BatchResult:
    done: list[dict] = field(default_factory=list)  # journal lines of this run
    failed: list[dict] = field(default_factory=list)
    earlier: list[str] = field(default_factory=list)  # done by an earlier run: skipped
    skipped: list[tuple[str, str]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    frames: int = 0
    media_seconds: float = 0.0


def _chunk_dir(out_dir: Path, item: Item, fp: str) -> Path:
    key = f"{item.rel}|{item.size}|{item.mtime_ns}|{fp}"
    return out_dir / CHUNK_DIR / hashlib.sha256(key.encode()).hexdigest()[:20]


def run_batch(
    plan: Plan,
    out_dir: Path,
    backend: Backend,
    journal: Journal,
    fp: str,
    *,
    encode: Any,
    retries: int = 2,
    chunk_seconds: float = 0.0,
    chunk_overlap: float = 2.0,
    quiet: bool = False,
) -> BatchResult:
    """Run ``plan`` to completion (or Ctrl-C); returns what happened to every file."""
    res = BatchResult(skipped=list(plan.skipped))
    t0 = time.monotonic()
    todo: list[FileState] = []
    for item in plan.items:
        if item.error is not None:
            res.failed.append(journal.record(item, "failed", fp, error=item.error, attempts=0))
        elif journal.is_done(item, fp, out_dir):
            res.earlier.append(item.rel)
        else:
            todo.append(FileState(item, []))
    # Longest first: the last file to finish decides when the batch ends.
    todo.sort(key=lambda s: (-s.item.duration_s, s.item.rel))
    states: dict[str, FileState] = {}
    queue: deque[Task] = deque()
    for st in todo:
        item = st.item
        dst = out_dir / item.rel
        specs = []
        if (
            item.kind == "video"
            and chunk_seconds > 0
            and item.duration_s > 1.5 * chunk_seconds
            and chunkable(dst.suffix, encode)
        ):
            try:
                specs = plan_chunks(item.src, chunk_seconds, chunk_overlap)
            except Exception as exc:  # noqa: BLE001 - unreadable: the worker will say why
                log.debug("%s: no chunk plan (%s); whole file", item.rel, exc)
        if len(specs) > 1:
            st.chunk_dir = _chunk_dir(out_dir, item, fp)
            st.chunk_dir.mkdir(parents=True, exist_ok=True)
            for spec in specs:
                task = Task(
                    f"{item.rel}#{spec.index}", str(item.src), str(chunk_path(st.chunk_dir, spec)),
                    "video", spec, str(dst), item.rel,
                )  # fmt: skip
                st.tasks.append(task)
                reused = _reuse_chunk(Path(task.dst))
                if reused is not None:
                    st.results[task.id] = reused
                else:
                    queue.append(task)
        else:
            task = Task(item.rel, str(item.src), str(dst), item.kind, file=item.rel)
            st.tasks.append(task)
            queue.append(task)
        states[item.rel] = st
    bar = BatchProgress(plan, res.earlier, quiet=quiet, workers=backend.slots)
    attempts: dict[str, int] = {}
    partial: dict[str, tuple[int, float]] = {}
    running: dict[str, Task] = {}

    def file_of(task: Task) -> FileState | None:
        """The file a task belongs to; None once that file is finished (journaled)."""
        return states.get(task.file or task.id)

    def finish(st: FileState) -> None:
        """Every task of the file has a result: join, journal, clean up."""
        item = st.item
        if st.failed is None:
            try:
                report = _file_report(st, encode)
            except Exception as exc:  # noqa: BLE001 - the join failed: the file failed
                st.failed = str(exc)
        if st.failed is not None:
            line = journal.record(
                item, "failed", fp, error=st.failed, attempts=st.attempts,
                retried_after=st.retry_reasons or None,
            )  # fmt: skip
            res.failed.append(line)
            bar.file_done(item, ok=False)
        else:
            rss = [r.get("peak_rss_mb") or 0 for r in st.results.values()]
            line = journal.record(
                item, "done", fp, output=item.rel, attempts=st.attempts,
                retried_after=st.retry_reasons or None, worker_peak_rss_mb=max(rss, default=None),
                report=report,
            )  # fmt: skip
            res.done.append(line)
            res.frames += int(report.get("frames", 0))
            res.media_seconds += item.duration_s
            bar.file_done(item, ok=True)
        if st.chunk_dir is not None:
            shutil.rmtree(st.chunk_dir, ignore_errors=True)
            try:
                st.chunk_dir.parent.rmdir()  # the last long file of the batch: leave no trace
            except OSError:
                pass
        del states[item.rel]

    # Files whose chunks were all finished by an interrupted earlier run only need the join.
    for st in [s for s in states.values() if len(s.results) == len(s.tasks)]:
        finish(st)
    try:
        while queue or running:
            if backend.fatal:
                raise WorkerSetupError(backend.fatal)
            while queue and len(running) < backend.slots:
                task = queue.popleft()
                st = file_of(task)
                if st is None or st.failed is not None:
                    continue  # another chunk of this file already failed
                running[task.id] = task
                attempts[task.id] = attempts.get(task.id, 0) + 1
                backend.submit(task)
            for ev in backend.events(0.5):
                task = ev.task
                st = file_of(task)
                if task.id not in running or st is None:
                    continue
                if ev.kind == "progress":
                    partial[task.id] = ev.payload
                    continue
                if ev.kind == "started":
                    continue
                running.pop(task.id)
                partial.pop(task.id, None)
                st.attempts = max(st.attempts, attempts[task.id])
                if ev.kind == "cancelled":
                    queue.appendleft(task)  # only on Ctrl-C; never journaled
                    attempts[task.id] -= 1
                    continue
                if ev.kind == "died":
                    st.retry_reasons.append(str(ev.payload))
                    remove_partials(Path(task.dst))
                    if attempts[task.id] <= retries:
                        log.warning("%s: %s; retrying", task.id, ev.payload)
                        queue.appendleft(task)
                        continue
                    st.failed = f"{ev.payload} ({attempts[task.id]} attempts)"
                else:  # done
                    result = ev.payload
                    if not result.get("ok"):
                        st.failed = result.get("error", "failed")
                    else:
                        st.results[task.id] = result
                        bar.task_done(task, result)
                        if task.chunk is not None:
                            _save_chunk_report(Path(task.dst), result)
                if st.failed is not None and any(t.id in running for t in st.tasks):
                    continue  # wait for its other chunks to come back before journaling
                if st.failed is not None or len(st.results) == len(st.tasks):
                    finish(st)
            # Files that failed while chunks were in flight are finished once those return.
            for st in [s for s in states.values() if s.failed is not None]:
                if not any(t.id in running for t in st.tasks):
                    finish(st)
            bar.update(partial)
    except KeyboardInterrupt:
        res.interrupted = True
        backend.cancel()
        # Let workers drop their files cleanly; anything that still finishes is journaled.
        deadline = time.monotonic() + 20
        while running and time.monotonic() < deadline:
            try:
                evs = backend.events(0.5)
            except KeyboardInterrupt:
                break
            for ev in evs:
                if ev.task.id in running and ev.kind in ("done", "cancelled", "died"):
                    running.pop(ev.task.id)
                    st = file_of(ev.task)
                    if st is not None and ev.kind == "done" and ev.payload.get("ok"):
                        st.results[ev.task.id] = ev.payload
                        if ev.task.chunk is not None:
                            _save_chunk_report(Path(ev.task.dst), ev.payload)
                        if len(st.results) == len(st.tasks):
                            finish(st)
    finally:
        bar.close()
        res.seconds = time.monotonic() - t0
    return res


class WorkerSetupError(RuntimeError):
    """Workers cannot start (a model file or an extra is missing): the batch stops."""


def _reuse_chunk(path: Path) -> dict | None:
    """A chunk finished by an interrupted run (its file and its report both exist)."""
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        try:
            return json.loads(meta.read_text())
        except (OSError, json.JSONDecodeError):
            return None
    return None


def _save_chunk_report(path: Path, result: dict) -> None:
    meta = path.with_suffix(".json")
    tmp = meta.with_name(f".{meta.name}.tmp")
    tmp.write_text(json.dumps(result, default=str))
    os.replace(tmp, meta)


def _file_report(st: FileState, encode: Any) -> dict:
    """The file's report: the task's own, or the chunks' summed after joining them."""
    if len(st.tasks) == 1 and st.tasks[0].chunk is None:
        return dict(st.results[st.tasks[0].id]["report"])
    chunks = [Path(t.dst) for t in st.tasks]
    dst = Path(st.tasks[0].final_dst)
    remove_partials(dst)
    t0 = time.perf_counter()
    joined = join_chunks(st.item.src, chunks, dst, encode=encode)
    reports = [st.results[t.id]["report"] for t in st.tasks]
    total: dict[str, Any] = {"input": str(st.item.src), "output": str(dst), "kind": "video"}
    for key in ("frames", "faces", "detections", "tracks", "coasted", "fallbacks"):
        total[key] = sum(int(r.get(key, 0)) for r in reports)
    total["corrupt_packets"] = sum(int(r.get("corrupt_packets", 0)) for r in reports)
    total["seconds"] = sum(float(r.get("seconds", 0.0)) for r in reports)
    total["fps"] = total["frames"] / total["seconds"] if total["seconds"] else 0.0
    total["extra"] = {
        "chunks": len(reports),
        "warmup_frames": sum(int(r.get("extra", {}).get("warmup_frames", 0)) for r in reports),
        "join_seconds": round(time.perf_counter() - t0, 3),
        "packets_joined": joined["packets"],
        # Track ids restart in each chunk: a person seen across a cut counts in both.
        "tracks_counted_per_chunk": True,
    }
    return total


def summary_rows(res: BatchResult) -> list[dict]:
    rows = []
    for line in res.done:
        r = line.get("report", {})
        rows.append(
            {"file": line["file"], "status": "done", "frames": r.get("frames", 0),
             "faces": r.get("faces", 0), "fps": r.get("fps", 0.0),
             "attempts": line.get("attempts", 1), "note": ""}
        )  # fmt: skip
    for line in res.failed:
        rows.append(
            {"file": line["file"], "status": "FAILED", "frames": 0, "faces": 0, "fps": 0.0,
             "attempts": line.get("attempts", 0), "note": line.get("error", "")}
        )  # fmt: skip
    return rows
