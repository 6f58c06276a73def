"""Coverage of a live run that drops frames before detection (what a busy machine does).

A live run (`streamanon.live`) detects only the frames it has time for; the others never
reach the tracker. This replays a clip through the per-frame path (`Anonymizer`, no
look-ahead) with frames dropped at random at ``--drop`` (seeded), and judges every frame that
is emitted with the coverage judge of `streamanon.eval.coverage` (RetinaFace + CenterFace at
native resolution, landmark rule; faces >= ``--min-height`` px). The drop pattern of a real
run depends on load; a random one at 60 % has gaps of 10+ frames (0.4 s at 25 fps), as at
start-up. Results in docs/coverage.md ("A face after a gap of dropped frames").

    python benchmarks/live_drops.py [--clips examples/demo.mp4,...] [--drop 0.6] [--seeds 3]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.eval.coverage import judge_frame, reference_detector  # noqa: E402
from streamanon.io.video import VideoReader  # noqa: E402
from streamanon.types import Frame  # noqa: E402

VIDEOS = REPO.parent / "shared" / "data" / "videos"
CLIPS = [
    str(REPO / "examples" / "demo.mp4"),
    str(VIDEOS / "face_recognition_short_hamilton_clip.mp4"),
    str(VIDEOS / "intel_sample_videos_classroom.mp4"),
]


def replay(clip: str, drop: float, seed: int, frames: int, min_height: float, judge) -> dict:
    """One replay of ``clip``: faces judged and the uncovered ones (frame, box)."""
    rng = random.Random(seed)
    anon = Anonymizer(Options(method="blur"))
    faces, uncovered = 0, []
    with VideoReader(Path(clip), audio=False) as reader:
        for i, f in zip(range(frames), reader, strict=False):
            if i > 0 and rng.random() < drop:
                continue  # dropped before detection: the tracker never sees it
            original = f.image.copy()
            frame = Frame(f.image, i, i * 40, Fraction(1, 1000))
            anon.apply(anon.track(frame))
            for r in judge_frame(original, frame.image, judge(original), i):
                if r.height >= min_height:
                    faces += 1
                    if not r.covered:
                        uncovered.append((i, [round(v) for v in r.box]))
    return {"faces": faces, "uncovered": uncovered}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", default=",".join(CLIPS))
    ap.add_argument("--drop", type=float, default=0.6)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--frames", type=int, default=150)
    ap.add_argument("--min-height", type=float, default=24.0)
    ap.add_argument("--json", type=Path, default=None, help="write the results here")
    args = ap.parse_args(argv)
    judge = reference_detector(mmod_upsample=None)
    results = {}
    print("| clip | drop | seeds | faces judged | uncovered |\n|---|---|---|---|---|")
    for clip in args.clips.split(","):
        runs = [
            replay(clip, args.drop, s, args.frames, args.min_height, judge)
            for s in range(args.seeds)
        ]
        faces = sum(r["faces"] for r in runs)
        bad = sum(len(r["uncovered"]) for r in runs)
        results[Path(clip).name] = runs
        print(f"| {Path(clip).name} | {args.drop:.0%} | {args.seeds} | {faces} | {bad} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
