"""The batch journal: one JSON line per finished file, appended and fsynced as it finishes.

It lives in OUT_DIR (``streamanon-batch.jsonl``). A rerun reads it back and skips every file
whose last line says ``done`` for the same source (size, mtime), the same options and an output
that still exists; everything else (failed, interrupted, never started) is done again. Only the
driver writes it, so lines never interleave. A torn last line (a crash or power loss while it
was written) is reported once and cut off before the next line is written; the file it names
counts as this batch's own (it is done again, no --overwrite needed). Lines that are not UTF-8
or not JSON are warned about and ignored: never a reason to stop.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from streamanon.batch.plan import Item
from streamanon.errors import OutputError

log = logging.getLogger(__name__)

JOURNAL_NAME = "streamanon-batch.jsonl"
# The start of a line as `record` writes it: the file name comes first, so a torn line names it.
_FILE_FIELD = re.compile(rb'^\{"file": ("(?:[^"\\]|\\.)*")')


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
        self._torn_at: int | None = None  # offset of a torn last line, cut off on first write
        self.torn_file: str | None = None  # the file that torn line was about, when it says
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        try:
            data = self.path.read_bytes()
        except OSError as exc:
            msg = f"{self.path}: cannot read the batch journal ({exc.strerror})"
            raise OutputError(msg) from None
        offset = 0
        lines = data.split(b"\n")
        for n, raw in enumerate(lines, 1):
            start, offset = offset, offset + len(raw) + 1
            if not raw.strip():
                continue
            last = n == len(lines)  # no newline after it: the write never finished
            try:
                d = json.loads(raw.decode("utf-8"))
                self.entries[d["file"]] = Entry(d["file"], d["status"], d)
                continue
            except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError):
                pass
            if last:
                self._torn_at = start
                self.torn_file = _file_of(raw)
                if self.torn_file is not None:
                    # Its output may be in place without its line: ours, to be done again.
                    self.entries[self.torn_file] = Entry(self.torn_file, "torn", {})
                log.warning(
                    "%s: the last line was cut short (a crash while writing it); ignored%s",
                    self.path,
                    f", {self.torn_file} is done again" if self.torn_file else "",
                )
            else:
                # Anything else is worth a warning, never a reason to stop: that file is redone.
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
            if self._torn_at is not None:  # cut the torn line off: the journal stays clean
                self._fh.truncate(self._torn_at)
                self._torn_at = None
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


def _file_of(raw: bytes) -> str | None:
    """The file a torn journal line is about, when enough of it was written to say."""
    m = _FILE_FIELD.match(raw)
    if m is None:
        return None
    try:
        name = json.loads(m.group(1).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return None
    return name if isinstance(name, str) and name else None
