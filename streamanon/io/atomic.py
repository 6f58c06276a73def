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

from streamanon.errors import OutputError, StreamanonError

log = logging.getLogger(__name__)

# Temporary outputs are named .<stem>.<pid>-<random>.partial<ext>: the pid says whether the
# writer may still be running. A stem too long for the file system's name limit is cut short.
_PARTIAL = re.compile(r"^\.(?P<stem>.*)\.(?P<pid>\d+)-[0-9a-f]{8}\.partial(?P<ext>\.[^.]*)?$")
STALE_PARTIAL_S = 3600.0  # an hour: no live writer leaves its file untouched that long
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems


def name_max(folder: str | Path) -> int:
    """The longest file name (in bytes) ``folder``'s file system takes."""
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (AttributeError, OSError, ValueError):
        return NAME_MAX


def _cut(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 without splitting a character."""
    return text.encode()[: max(0, max_bytes)].decode(errors="ignore")


def partial_name(dst: Path, pid: int | None = None) -> str:
    """The temporary name for ``dst``: short enough for any output name the folder takes."""
    tail = f".{os.getpid() if pid is None else pid}-{secrets.token_hex(4)}.partial{dst.suffix}"
    limit = name_max(dst.parent if str(dst.parent) else ".")
    return "." + _cut(dst.stem, limit - 1 - len(tail.encode())) + tail


def _partial_of(name: str, dst: Path) -> re.Match | None:
    """The match of ``name`` when it is a temporary file of ``dst`` (any writer's)."""
    m = _PARTIAL.match(name)
    if m is None or (m.group("ext") or "") != dst.suffix:
        return None
    stem = m.group("stem")
    if stem == dst.stem or (stem and dst.stem.startswith(stem) and len(name.encode()) >= 200):
        return m  # the whole stem, or one cut short for the name limit
    return None


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` may still be running on this machine (unsure counts as yes)."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists but is someone else's, or we cannot tell: keep the file
    return True


# Temporary path → the output it becomes, while it is being written: messages name the output.
_WRITING: dict[str, str] = {}


def shown_name(path: str | Path) -> str:
    """The name to show the user for ``path``: the output a temporary file will become."""
    return _WRITING.get(str(path), str(path))


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
            if old and not pid_alive(int(m.group("pid"))):
                os.unlink(e.path)
                removed.append(Path(e.path))
        except OSError:
            continue
    if removed:
        log.info("removed %d stale temporary file(s) of killed runs in %s", len(removed), folder)
    return removed


def remove_dead_partials(dst: str | Path) -> list[Path]:
    """Delete the temporary files of ``dst`` whose writer process is gone (a killed attempt);
    a live process's temporary file is never touched, whoever it belongs to."""
    dst = Path(dst)
    removed: list[Path] = []
    folder = dst.parent if str(dst.parent) else Path(".")
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for e in entries:
        m = _partial_of(e.name, dst)
        if m is None or int(m.group("pid")) == os.getpid() or pid_alive(int(m.group("pid"))):
            continue
        try:
            os.unlink(e.path)
            removed.append(Path(e.path))
        except OSError:
            continue
    return removed


def check_name_lengths(path: str | Path) -> None:
    """An OutputError when a part of ``path`` is longer than file names may be."""
    limit = NAME_MAX
    for part in Path(path).parts:
        n = len(os.fsencode(part))
        if n > limit:
            raise OutputError(
                f"{path}: a name in it is {n} bytes, over the file system's limit of {limit};"
                " give a shorter name with -o"
            )


def check_output(src: str | Path | None, dst: str | Path, overwrite: bool) -> Path:
    """Validate an output path before any work is done; returns it as a Path."""
    dst = Path(dst)
    parent = dst.parent if str(dst.parent) else Path(".")
    limit = name_max(parent if parent.is_dir() else ".")
    if len(os.fsencode(dst.name)) > limit:
        raise OutputError(
            f"{dst}: the output name is {len(os.fsencode(dst.name))} bytes, over the file "
            f"system's limit of {limit}; give a shorter name with -o"
        )
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
    tmp = dst.with_name(partial_name(dst))
    _WRITING[str(tmp)] = str(dst)
    try:
        yield tmp
    except StreamanonError as exc:
        tmp.unlink(missing_ok=True)
        # The user knows the output by its name, never by our temporary one.
        exc.args = (str(exc).replace(str(tmp), str(dst)), *exc.args[1:])
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        _WRITING.pop(str(tmp), None)
    if not tmp.exists():
        raise OutputError(f"{dst}: nothing was written")
    try:
        os.replace(tmp, dst)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"{dst}: cannot move the result into place ({exc.strerror})") from None


def write_text_atomic(path: str | Path, text: str) -> None:
    """A small text output (a report) written whole or not at all."""
    with atomic_output(path) as tmp:
        try:
            Path(tmp).write_text(text)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write ({exc.strerror})") from None
