"""Write outputs to a temporary file beside the target and rename on success.

A crash, a Ctrl-C or an error never leaves a half-written file at the output path, and an
existing file is only replaced when the user asked for it.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from streamanon.errors import OutputError


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
    tmp = dst.with_name(f".{dst.stem}.{secrets.token_hex(4)}.partial{dst.suffix}")
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
