"""Clips for `streamanon bench` coverage runs (issue: every face, every frame), into
benchmarks/clips/ (not committed; everything comes from ../shared/data):

- crowd1080.mp4: 1920x1080, 100 frames, a mosaic of four crowd photos panned and mirrored
  (faces 20-60 px, most 24-32 px);
- crowd4k.mp4: 3840x2160, 50 frames, the same idea with faces of 40-120 px;
- hamilton1080.mp4: the first 120 frames of the Hamilton clip (stage, cuts, profiles)
  upscaled to 1920x1080.

    python benchmarks/make_coverage_clips.py [--shared ../shared/data]
    streamanon bench benchmarks/clips/crowd1080.mp4 --methods blur --deface \\
        --detect-settings 640:0,640:24,960:0,960:24
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.io.video import VideoReader  # noqa: E402
from tests import crowd  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--out", default=str(REPO / "benchmarks" / "clips"))
    args = p.parse_args()
    shared, out = Path(args.shared), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    crowd.write_clip(out / "crowd1080.mp4", crowd.crowd_frames(shared, "crowd1080", 100))
    crowd.write_clip(out / "crowd4k.mp4", crowd.crowd_frames(shared, "crowd4k", 50))
    src = shared / "videos" / "face_recognition_short_hamilton_clip.mp4"
    with VideoReader(src, audio=False) as r:
        frames = [cv2.resize(f.image, (1920, 1080), interpolation=cv2.INTER_CUBIC) for f in r][:120]
    crowd.write_clip(out / "hamilton1080.mp4", frames, fps=25)
    print(f"clips in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
