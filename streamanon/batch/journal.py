"""The batch journal: one JSON line per finished file, appended and fsynced as it finishes.

It lives in OUT_DIR (``streamanon-batch.jsonl``). A rerun reads it back and skips every file
whose last line says ``done`` for the same source (size, mtime), the same options and an output
that still exists; everything else (failed, interrupted, never started) is done again. Only the
driver writes it, so lines never interleave; a torn last line (power loss) is ignored.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamanon.batch.plan import Item

log = logging.getLogger(__name__)

JOURNAL_NAME = "streamanon-batch.jsonl"


def fingerprint(options: Any, encode: Any) -> str:
    """Hash of everything that changes an output (not how it is scheduled: threads, workers)."""
    opts = asdict(options)
    opts.pop("threads", None)
    enc = asdict(encode)
    enc.get("codec_options", {}).pop("threads", None)
    blob = json.dumps({"options": opts, "encode": enc}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Entry:
    file: str
    status: str  # "done" | "failed"
    data: dict


class Journal:
    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / JOURNAL_NAME
        self.entries: dict[str, Entry] = {}
        self._fh = None
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        lines = self.path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                self.entries[d["file"]] = Entry(d["file"], d["status"], d)
            except (json.JSONDecodeError, KeyError, TypeError):
                # A line cut short by a crash is only possible at the end; anything else is
                # worth a warning, but never a reason to stop: that file is simply redone.
                log.warning("%s:%d: unreadable journal line ignored", self.path, n)

    def is_done(self, item: Item, fp: str, out_dir: Path) -> bool:
        e = self.entries.get(item.rel)
        if e is None or e.status != "done":
            return False
        src = e.data.get("source", {})
        return (
            e.data.get("fingerprint") == fp
            and src.get("size") == item.size
            and src.get("mtime_ns") == item.mtime_ns
            and (out_dir / item.rel).is_file()
        )

    def other_options(self, fp: str) -> list[str]:
        """Files done with options other than ``fp`` (their outputs would be replaced)."""
        return [
            k
            for k, e in self.entries.items()
            if e.status == "done" and e.data.get("fingerprint") != fp
        ]

    def record(self, item: Item, status: str, fp: str, **fields: Any) -> dict:
        """Append one line and fsync it before returning: a line on disk means it is true."""
        line = {
            "file": item.rel,
            "status": status,
            "source": {"path": str(item.src), "size": item.size, "mtime_ns": item.mtime_ns},
            "fingerprint": fp,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            **fields,
        }
        if self._fh is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "a+b")  # noqa: SIM115 - held open for the whole run
            self._fh.seek(0, os.SEEK_END)
            if self._fh.tell() > 0:
                self._fh.seek(-1, os.SEEK_END)
                if self._fh.read(1) != b"\n":  # a torn line: start ours on a fresh one
                    self._fh.write(b"\n")
        self._fh.write((json.dumps(line, default=str) + "\n").encode())
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.entries[item.rel] = Entry(item.rel, status, line)
        return line

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
