"""Shared fixtures. Tests that need ../shared/data or ffmpeg skip, saying why, when it is absent.

In CI (``.ci/run`` sets ``STREAMANON_REQUIRE_DATA=1``) the same tests FAIL instead: a missing
data folder or binary must not turn the privacy tests into a row of quiet skips. A newcomer
without the data still gets clean skips. Under that variable every other skip fails as well,
unless its reason is listed in ``EXPECTED_SKIPS`` (GPU / TensorRT).
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
    pytest.skip(reason, allow_module_level=True)  # also from a module's top level


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


HAMILTON = "face_recognition_short_hamilton_clip.mp4"


def hamilton_frames(count: int) -> list:
    """The first ``count`` frames (BGR arrays) of the Hamilton clip (640x360, cuts, walk-ins)."""
    from streamanon.io.video import VideoReader

    with VideoReader(needs_shared("videos", HAMILTON), audio=False) as r:
        return [f.image.copy() for _, f in zip(range(count), r, strict=False)]


def needs_module(name: str, install: str = 'pip install "streamanon[torch]"'):
    """Import a test dependency the suite requires (torch): skip without it, or, in CI, fail
    (``pytest.importorskip`` would skip there too, silently)."""
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"needs {name} ({install})")


def needs_ffmpeg() -> str:
    """The ffmpeg binary (the RTSP peer of the live tests); skip or, in CI, fail without it."""
    if FFMPEG is None:
        missing("needs the ffmpeg binary (apt-get install ffmpeg)")
    return FFMPEG


@pytest.fixture
def ffmpeg_bin() -> str:
    return needs_ffmpeg()


# -- no skip CI did not expect ----------------------------------------------------------------
# With STREAMANON_REQUIRE_DATA set (CI), a skipped test fails unless its reason is one of
# these: hardware CI does not have (an NVIDIA GPU, TensorRT), or an option CI does not take.
# A skip that is not listed here is a test that quietly stopped running.
EXPECTED_SKIPS = (
    "needs an NVIDIA GPU",
    "TensorRT not installed",
    "TensorRT installed",  # the fallback test runs where TensorRT is absent (CI)
)


def _skip_reason(longrepr) -> str:
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def unexpected_skip(reason: str, gpu_marked: bool = False) -> bool:
    """Is a skip with this reason one CI must fail on?"""
    return not gpu_marked and not any(e in reason for e in EXPECTED_SKIPS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_DATA and rep.skipped and not hasattr(rep, "wasxfail"):
        reason = _skip_reason(rep.longrepr)
        if unexpected_skip(reason, item.get_closest_marker("gpu") is not None):
            rep.outcome = "failed"
            rep.longrepr = f"unexpected skip in CI (STREAMANON_REQUIRE_DATA is set): {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    """A module skipped whole at import (``importorskip`` at the top) counts too."""
    outcome = yield
    rep = outcome.get_result()
    if REQUIRE_DATA and rep.skipped:
        reason = _skip_reason(rep.longrepr)
        if unexpected_skip(reason):
            rep.outcome = "failed"
            rep.longrepr = f"unexpected skip in CI (STREAMANON_REQUIRE_DATA is set): {reason}"
