"""What a batch has to do: every video and image under a folder, or listed in a manifest.

Each input keeps its path relative to the source root as its output path under OUT_DIR, so a
tree of drives comes back as the same tree. Files that are neither videos nor images by their
extension are listed as skipped (never silently dropped); hidden files are ignored.
"""

from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from streamanon.errors import InputError
from streamanon.io.images import IMAGE_EXTS

log = logging.getLogger(__name__)

VIDEO_EXTS = {
    ".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".ts", ".mts", ".m2ts", ".flv",
    ".mpg", ".mpeg", ".wmv", ".3gp", ".mxf", ".gif",
}  # fmt: skip
MANIFEST_EXTS = {".txt", ".csv", ".list", ".lst"}


@dataclass(frozen=True)
class Item:
    """One input file and where its output goes (``rel``: POSIX path relative to OUT_DIR)."""

    src: Path
    rel: str
    kind: str  # "video" | "image"
    frames: int = 0  # from the container header; 0 when it does not say
    duration_s: float = 0.0
    size: int = 0
    mtime_ns: int = 0
    error: str | None = None  # could not even be probed: recorded as failed, never run


@dataclass
class Plan:
    items: list[Item]
    skipped: list[tuple[str, str]]  # (path, reason)

    @property
    def total_seconds(self) -> float:
        return sum(i.duration_s for i in self.items)


def kind_of(path: Path) -> str | None:
    ext = path.suffix.lower()
    if ext in IMAGE_EXTS:
        return "image"
    if ext in VIDEO_EXTS:
        return "video"
    return None


def discover(src: str | Path, out_dir: str | Path | None = None, *, probe: bool = True) -> Plan:
    """Inputs under folder ``src`` (recursively) or listed in manifest ``src`` (.txt/.csv)."""
    src = Path(src)
    if src.is_dir():
        pairs = list(_walk(src, Path(out_dir) if out_dir else None))
    elif src.is_file() and src.suffix.lower() in MANIFEST_EXTS:
        pairs = _read_manifest(src)
    elif src.exists():
        raise InputError(f"{src}: not a folder or a manifest (.txt or .csv list of files)")
    else:
        raise InputError(f"{src}: no such file or folder")
    items: list[Item] = []
    skipped: list[tuple[str, str]] = []
    seen: dict[str, Path] = {}
    for path, rel in pairs:
        kind = kind_of(path)
        if kind is None:
            skipped.append((str(path), "not a video or image (by its extension)"))
            continue
        if rel in seen:
            raise InputError(f"{path} and {seen[rel]} would both be written to {rel}")
        seen[rel] = path
        items.append(_probe(path, rel, kind) if probe else Item(path, rel, kind))
    return Plan(items, skipped)


def _walk(root: Path, out_dir: Path | None):
    out_real = out_dir.resolve() if out_dir else None
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        here = Path(dirpath)
        # Hidden folders hold our own temporaries (and tools' caches); the output folder may
        # sit inside the source folder and must not be read back as input.
        dirnames[:] = sorted(
            d for d in dirnames if not d.startswith(".") and (here / d).resolve() != out_real
        )
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            p = here / name
            yield p, PurePosixPath(*p.relative_to(root).parts).as_posix()


def _read_manifest(path: Path) -> list[tuple[Path, str]]:
    """Paths from a text list (one per line, # comments) or a CSV with a ``path`` column.

    A CSV may also have an ``output`` column (relative output path). Relative entries are
    relative to the manifest's folder and keep that relative path as their output path;
    absolute ones are placed relative to the deepest folder they all share.
    """
    base = path.parent
    rows: list[tuple[str, str | None]] = []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not UTF-8 text; save the list as UTF-8 (one path per line)"
        ) from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the manifest ({exc.strerror})") from None
    if path.suffix.lower() == ".csv":
        reader = csv.reader(text.splitlines())
        header = next(reader, [])
        lower = [h.strip().lower() for h in header]
        if "path" in lower:
            pi, oi = lower.index("path"), (lower.index("output") if "output" in lower else None)
        else:  # no header: the first column is the path
            pi, oi = 0, None
            reader = csv.reader(text.splitlines())
        for row in reader:
            if len(row) <= pi:  # a short row (no path column): nothing to do for it
                if any(c.strip() for c in row):
                    log.warning("%s:%d: no path column; line ignored", path, reader.line_num)
                continue
            if row[pi].strip() and not row[pi].lstrip().startswith("#"):
                out = row[oi].strip() if oi is not None and oi < len(row) else None
                rows.append((row[pi].strip(), out or None))
    else:
        for line in text.splitlines():
            line = line.strip()
            if line and not line.startswith("#"):
                rows.append((line, None))
    if not rows:
        raise InputError(f"{path}: the manifest lists no files")
    absolute = [Path(p) for p, _ in rows if Path(p).is_absolute()]
    common = Path(os.path.commonpath([str(p.parent) for p in absolute])) if absolute else None
    out: list[tuple[Path, str]] = []
    for entry, rel_out in rows:
        p = Path(entry)
        full = p if p.is_absolute() else base / p
        if not full.is_file():
            raise InputError(f"{path}: listed file {entry} does not exist")
        rel = rel_out or (full.relative_to(common) if p.is_absolute() else p).as_posix()
        rel = PurePosixPath(rel)
        if rel.is_absolute() or ".." in rel.parts:
            raise InputError(f"{path}: output path {rel} must stay inside the output folder")
        out.append((full, rel.as_posix()))
    return out


def _probe(path: Path, rel: str, kind: str) -> Item:
    st = path.stat()
    if kind == "image":
        return Item(path, rel, kind, 1, 0.0, st.st_size, st.st_mtime_ns)
    import av

    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                raise InputError("has no video stream")
            v = c.streams.video[0]
            duration = 0.0
            if v.duration is not None and v.time_base is not None:
                duration = float(v.duration * v.time_base)
            elif c.duration is not None:
                duration = c.duration / av.time_base
            frames = v.frames
            if not frames and duration and (v.average_rate or v.guessed_rate):
                frames = round(duration * float(v.average_rate or v.guessed_rate))
    except (av.error.InvalidDataError, av.error.EOFError):
        reason = "not a video file PyAV can read"
        return Item(path, rel, kind, size=st.st_size, mtime_ns=st.st_mtime_ns, error=reason)
    except (av.error.FFmpegError, InputError, OSError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc).strip() or type(exc).__name__
        reason = str(reason).splitlines()[0]
        return Item(path, rel, kind, size=st.st_size, mtime_ns=st.st_mtime_ns, error=reason)
    return Item(path, rel, kind, int(frames), duration, st.st_size, st.st_mtime_ns)
