"""Write outputs to a temporary file beside the target and rename on success.

A crash, a Ctrl-C or an error never leaves a half-written file at the output path, and an
existing file is only replaced when the user asked for it. A run killed outright (SIGKILL,
power loss) cannot delete its temporary file; the next run writing into the same folder does,
once the process that wrote it is gone and the file is older than `STALE_PARTIAL_S`.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamanon.errors import OutputError

log = logging.getLogger(__name__)

# Temporary outputs are named .<stem>.<pid>-<random>.partial<ext>: the pid says whether the
# writer may still be running.
_PARTIAL = re.compile(r"^\..*\.(\d+)-[0-9a-f]{8}\.partial(\.[^.]*)?$")
STALE_PARTIAL_S = 3600.0  # an hour: no live writer leaves its file untouched that long


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but is someone else's, or we cannot tell: keep the file
    return True


def clean_stale_partials(folder: str | Path, max_age_s: float = STALE_PARTIAL_S) -> list[Path]:
    """Delete temporary outputs in ``folder`` left by killed runs; returns what was deleted."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    now = time.time()
    for e in entries:
        m = _PARTIAL.match(e.name)
        if m is None or not e.is_file(follow_symlinks=False):
            continue
        try:
            old = now - e.stat(follow_symlinks=False).st_mtime > max_age_s
            if old and not _pid_alive(int(m.group(1))):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    if removed:
        log.info("removed %d stale temporary file(s) of killed runs in %s", len(removed), folder)
    return removed


def check_output(src: str | Path | None, dst: str | Path, overwrite: bool) -> Path:
    """Validate an output path before any work is done; returns it as a Path."""
    dst = Path(dst)
    if src is not None and Path(src).exists() and dst.exists():
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = False
        if same:
            raise OutputError(f"{dst}: output would overwrite the input")
    if dst.exists() and not overwrite:
        raise OutputError(f"{dst}: already exists (use --overwrite to replace it)")
    if dst.is_dir():
        raise OutputError(f"{dst}: is a directory")
    parent = dst.parent if str(dst.parent) else Path(".")
    if not parent.is_dir():
        raise OutputError(f"{parent}: output folder does not exist")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{parent}: output folder is not writable")
    return dst


@contextmanager
def atomic_output(dst: str | Path) -> Iterator[Path]:
    """Yield a temporary path with the same extension; move it to ``dst`` if the block succeeds."""
    dst = Path(dst)
    clean_stale_partials(dst.parent if str(dst.parent) else ".")
    tmp = dst.with_name(f".{dst.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial{dst.suffix}")
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if not tmp.exists():
        raise OutputError(f"{dst}: nothing was written")
    try:
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{dst}: cannot move the result into place ({exc.strerror})") from None
