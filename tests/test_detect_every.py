"""--detect-every N through the product (Options -> face stage -> CLI): the live mode that keeps
the frame rate (issue 23). Real footage: the Hamilton clip."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

from streamanon.anonymizer import Anonymizer, Options
from streamanon.types import Frame


def _frames(shared_data: Path, n: int) -> list[np.ndarray]:
    from streamanon.io.video import VideoReader

    clip = shared_data / "videos" / "face_recognition_short_hamilton_clip.mp4"
    with VideoReader(clip, audio=False) as r:
        return [f.image.copy() for _, f in zip(range(n), r, strict=False)]


def test_detect_every_covers_faces_on_frames_it_does_not_detect(shared_data: Path) -> None:
    frames = _frames(shared_data, 12)
    anon = Anonymizer(Options(method="blur", detect_every=3))
    assert anon.faces.every == 3
    covered = []
    for i, im in enumerate(frames):
        f = anon.apply(anon.track(Frame(im.copy(), i, i * 33, Fraction(1, 1000))))
        covered.append(len(f.faces))
        # What was covered changed the picture (blur), detected frame or not.
        if len(f.faces):
            assert np.abs(f.image.astype(int) - im.astype(int)).sum() > 0
    cadence = anon.faces.cadence
    assert cadence.detected == 4 and cadence.frames == 12  # frames 0, 3, 6, 9
    assert anon.faces.report()["detected_frames"] == 4
    # The two faces of the opening shot are covered on every frame, detected or not.
    assert min(covered) >= 2
    assert anon.counters.coasted > 0  # carried by the tracker between detections
    anon.reset()
    assert cadence.frames == 0  # an unrelated input: counts and state start over


def test_detect_every_out_of_range_is_one_line(tmp_path: Path, shared_data: Path) -> None:
    clip = shared_data / "videos" / "intel_sample_videos_classroom.mp4"
    r = subprocess.run(
        [sys.executable, "-m", "streamanon", str(clip), "-o", str(tmp_path / "o.mp4"),
         "--detect-every", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode != 0 and "--detect-every" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "o.mp4").exists()
