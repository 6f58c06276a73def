"""One batch at a time per output folder: a lock file naming the process that holds it.

Two batches on one folder would each redo, and race on, the other's files. The second one is
refused with a one-line message naming the first one's pid, before any work. The lock is an
advisory ``flock`` on ``OUT_DIR/.streamanon-batch.lock``: the kernel drops it when its process
dies, however it dies, so the lock of a killed batch is simply taken over (and said so). Where
``fcntl`` does not exist the pid written in the file is checked for liveness instead.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from pathlib import Path

from streamanon.errors import OutputError
from streamanon.io.atomic import pid_alive

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

LOCK_NAME = ".streamanon-batch.lock"


def _holder(text: str) -> dict:
    try:
        d = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return d if isinstance(d, dict) else {}


def _describe(d: dict) -> str:
    pid = d.get("pid", "?")
    host = d.get("host")
    where = f" on {host}" if host and host != socket.gethostname() else ""
    since = f", started {d['started']}" if d.get("started") else ""
    return f"pid {pid}{where}{since}"


class FolderLock:
    """``with FolderLock(out_dir):`` holds the folder for this process, or raises OutputError."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.path = self.folder / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> None:
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create the lock ({exc.strerror})") from None
            try:
                before = _holder(os.read(fd, 4096).decode("utf-8", "replace"))
                if fcntl is not None:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except BlockingIOError:
                        raise self._busy(before) from None
                elif before.get("pid") and pid_alive(int(before["pid"])):
                    raise self._busy(before)
                # The file may have been removed by its holder between our open and our lock:
                # then we hold a lock on a name nobody sees; start again on the new file.
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:
                    os.close(fd)
                    continue
            except BaseException:
                os.close(fd)
                raise
            break
        if before.get("pid") and before.get("pid") != os.getpid():
            log.info("%s: taking over the lock of a batch that is gone (%s)", self.folder,
                     _describe(before))  # fmt: skip
        me = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, json.dumps(me).encode())
        self._fd = fd

    def _busy(self, holder: dict) -> OutputError:
        return OutputError(
            f"{self.folder}: another streamanon batch ({_describe(holder)}) is writing to this "
            "folder; wait for it to finish or use another output folder"
        )

    def release(self) -> None:
        if self._fd is None:
            return
        # Remove the name while still holding the lock (a waiter re-checks the name, above).
        try:
            self.path.unlink()
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
