"""Shared fixtures. Tests that need ../shared/data skip, saying why, when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAMANON_SHARED", REPO.parent / "shared")) / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"needs the real-face data in {SHARED} (../shared/data beside the repo)")
    return SHARED


def needs_shared(*parts: str) -> Path:
    """Path inside ../shared/data, skipping the calling test when it is missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"needs {p} (../shared/data beside the repo)")
    return p
