"""What the look-ahead's backward/forward search costs on a clip (issue 23): the file path's
frame loop with ``detect_every`` N, the search on and off (``Stage.search_back``), alternated
over ``--rounds``; per run the "detect" stage's ms a frame (the track stage, which runs the
search), windows searched, boxes added. Decoded frames are kept in memory, so the run times
detection, tracking and blur only.

    python benchmarks/backward_cost.py benchmarks/clips/crowd1080.mp4 [--every 3] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.io.video import VideoReader  # noqa: E402
from streamanon.pipeline import StageTimes, run_frames  # noqa: E402
from streamanon.types import Frame  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("clip", type=Path)
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--frames", type=int, default=100)
    args = p.parse_args()
    with VideoReader(args.clip, audio=False) as r:
        images = [f.image.copy() for _, f in zip(range(args.frames), r, strict=False)]
    rows = []
    for k in range(args.rounds):
        for search in (True, False) if k % 2 == 0 else (False, True):
            anon = Anonymizer(Options(method="blur", detect_every=args.every))
            anon.faces.search_back = search
            todo = (Frame(im.copy(), i, i * 40, Fraction(1, 1000)) for i, im in enumerate(images))
            times = StageTimes()
            run_frames(todo, anon, lambda f: None, times=times)
            rep = anon.faces.report()
            row = {
                "search": search,
                "detect_ms": round(times.ms_per_frame()["detect"], 1),
                "anonymize_ms": round(times.ms_per_frame()["anonymize"], 1),
                "backward_windows": rep.get("backward_windows", 0),
                "backfilled": rep.get("backfilled", 0),
                "load": round(os.getloadavg()[0], 2),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    out = REPO / "benchmarks" / "results" / f"backward_cost_{args.clip.stem}.json"
    out.write_text(json.dumps({"clip": args.clip.name, "every": args.every, "runs": rows}) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
