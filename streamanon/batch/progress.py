"""What the batch shows while it runs (one bar over frames) and when it ends (a table)."""

from __future__ import annotations

import sys
import time
from typing import Any

from streamanon.batch.plan import Item, Plan
from streamanon.batch.worker import Task


class BatchProgress:
    """A tqdm bar over every frame still to do, with files done, fps and video hours per hour
    in its postfix; its ETA is tqdm's (frames left at the recent rate)."""

    def __init__(self, plan: Plan, earlier: list[str], *, quiet: bool, workers: int) -> None:
        skip = set(earlier)
        self.items = {i.rel: i for i in plan.items}
        todo = [i for i in plan.items if i.rel not in skip]
        self.files_total = len(todo)
        self.files_done = 0
        self.files_failed = 0
        self.frames_done = 0  # frames of finished tasks
        self.media_done = 0.0
        self.shown = 0
        self.t0 = time.monotonic()
        self._last_post = 0.0
        self.bar = None
        if not quiet and todo:
            from tqdm import tqdm

            self.bar = tqdm(
                total=sum(i.frames for i in todo) or None,
                unit="f",
                desc=f"batch ({workers} worker{'s' if workers != 1 else ''})",
                dynamic_ncols=True,
                file=sys.stderr,
                smoothing=0.1,
            )

    def _spf(self, task: Task) -> float:
        """Seconds of video per frame of the task's file (for video hours per hour)."""
        item: Item | None = self.items.get(task.file or task.id)
        if item is None or not item.frames:
            return 0.0
        return item.duration_s / item.frames

    def task_done(self, task: Task, result: dict) -> None:
        frames = int(result.get("report", {}).get("frames", 0))
        self.frames_done += frames
        self.media_done += frames * self._spf(task)

    def file_done(self, item: Item, ok: bool) -> None:
        self.files_done += 1
        self.files_failed += 0 if ok else 1

    def update(self, partial: dict[str, tuple[int, float]]) -> None:
        if self.bar is None:
            return
        n = self.frames_done + sum(f for f, _ in partial.values())
        if n != self.shown:
            self.bar.update(n - self.shown)
            self.shown = n
        now = time.monotonic()
        if now - self._last_post >= 1.0:
            self._last_post = now
            wall = max(1e-6, now - self.t0)
            media = self.media_done + sum(s for _, s in partial.values())
            post = {
                "files": f"{self.files_done}/{self.files_total}",
                "fps": f"{n / wall:.1f}",
                "video h/h": f"{media / wall:.2f}",
            }
            if self.files_failed:
                post["failed"] = self.files_failed
            self.bar.set_postfix(post, refresh=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def format_table(rows: list[dict[str, Any]], limit: int = 40) -> str:
    """A plain-text table; beyond ``limit`` rows only the failed files are listed."""
    if len(rows) > limit:
        rows = [r for r in rows if r["status"] != "done"]
    if not rows:
        return ""
    cols = [("status", 6), ("file", 4), ("frames", 6), ("faces", 5), ("fps", 5), ("attempts", 8)]
    widths = {c: max(w, *(len(_cell(r, c)) for r in rows)) for c, w in cols}
    widths["file"] = min(widths["file"], 60)
    head = "  ".join(c.ljust(widths[c]) for c, _ in cols) + "  note"
    lines = [head, "-" * len(head)]
    for r in rows:
        cells = [
            _cell(r, c)[-widths[c] :].ljust(widths[c])
            if c == "file"
            else _cell(r, c).rjust(widths[c])
            for c, _ in cols
        ]
        lines.append("  ".join(cells) + "  " + str(r.get("note", "")))
    return "\n".join(lines)


def _cell(row: dict[str, Any], col: str) -> str:
    v = row.get(col, "")
    return f"{v:.1f}" if isinstance(v, float) else str(v)
