"""Shared fixtures. Tests that need ../shared/data or ffmpeg skip, saying why, when it is absent.

In CI (``.ci/run`` sets ``STREAMANON_REQUIRE_DATA=1``) the same tests FAIL instead: a missing
data folder or binary must not turn the privacy tests into a row of quiet skips. A newcomer
without the data still gets clean skips.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("STREAMANON_SHARED", REPO.parent / "shared")) / "data"
REQUIRE_DATA = os.environ.get("STREAMANON_REQUIRE_DATA", "") not in ("", "0")
FFMPEG = shutil.which("ffmpeg")


def missing(reason: str) -> None:
    """Skip the calling test with ``reason``, or fail it when CI requires the data."""
    if REQUIRE_DATA:
        pytest.fail(f"{reason} (STREAMANON_REQUIRE_DATA is set: this must not skip)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED.is_dir():
        missing(f"needs the real-face data in {SHARED} (../shared/data beside the repo)")
    return SHARED


def needs_shared(*parts: str) -> Path:
    """Path inside ../shared/data, skipping (or, in CI, failing) the calling test when missing."""
    p = SHARED.joinpath(*parts)
    if not p.exists():
        missing(f"needs {p} (../shared/data beside the repo)")
    return p


def needs_ffmpeg() -> str:
    """The ffmpeg binary (the RTSP peer of the live tests); skip or, in CI, fail without it."""
    if FFMPEG is None:
        missing("needs the ffmpeg binary (apt-get install ffmpeg)")
    return FFMPEG


@pytest.fixture
def ffmpeg_bin() -> str:
    return needs_ffmpeg()
