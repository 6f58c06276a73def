"""Fast walkers with detection on one frame in N (issue 23): the walker clips of
`streamanon.eval.walkers` (real faces crossing MOT20-05 at 0.1-0.6 face sizes a frame, from
the frame's edge and from behind a bar) through the file path's frame loop, blur, defaults
but ``detect_every``. Modes: N=1; N=3 forward-only (as live); N=3 look-ahead with the margin
alone (``Stage.search_back`` off); N=3 look-ahead with the backward search. Per speed and
scene: walker-frames covered / judged.

    python benchmarks/walker_coverage.py [--every 3] [--speeds 0.1,0.25,0.4,0.6] [--sheets DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.eval import walkers as W  # noqa: E402
from streamanon.pipeline import run_frames  # noqa: E402
from streamanon.types import Frame  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
MODES = ("N=1", "fwd", "margin", "search")


def run(clip: W.WalkerClip, mode: str, every: int) -> tuple[list, list, dict]:
    """(faces per frame, output images, stage report) of one mode on ``clip``."""
    anon = Anonymizer(Options(method="blur", detect_every=1 if mode == "N=1" else every))
    anon.faces.search_back = mode != "margin"
    todo = (Frame(im.copy(), i, i * 40, Fraction(1, 1000)) for i, im in enumerate(clip.frames))
    out: list = []
    run_frames(todo, anon, out.append, lookahead=mode != "fwd")
    return [f.faces for f in out], [f.image for f in out], anon.faces.report()


def sheet(clip: W.WalkerClip, images: list, missed: list, path: Path) -> None:
    """Uncovered walkers (up to 12): the output frame cropped around the face."""
    tiles = []
    for t, k in missed[:12]:
        x1, y1, x2, y2 = clip.boxes[t, k]
        m = 0.6 * (x2 - x1)
        crop = images[t][
            max(int(y1 - m), 0) : int(y2 + m), max(int(x1 - m), 0) : int(x2 + m)
        ].copy()
        cv2.putText(crop, f"{t}/{k}", (2, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 255), 1)
        tiles.append(cv2.resize(crop, (160, 160)))
    if tiles:
        cv2.imwrite(str(path), np.hstack(tiles))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", type=int, default=3)
    p.add_argument("--speeds", default=",".join(f"{s:g}" for s in W.SPEEDS))
    p.add_argument("--scenes", default=",".join(W.SCENES))
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--sheets", type=Path, default=Path("/tmp/walker_coverage"))
    args = p.parse_args()
    args.sheets.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    for scene in args.scenes.split(","):
        for speed in (float(s) for s in args.speeds.split(",")):
            clip = W.walker_clip(SHARED, speed, scene, args.frames)
            row: dict = {"births": clip.births}
            for mode in args.modes.split(","):
                t0 = time.perf_counter()
                faces, images, rep = run(clip, mode, args.every)
                j = W.judge(clip, faces)
                row[mode] = {"covered": j.covered, "judged": j.judged, "missed": j.missed}
                if "backward_windows" in rep:
                    row[mode]["backward_windows"] = rep["backward_windows"]
                sheet(clip, images, j.missed, args.sheets / f"{clip.name}_{mode}.png")
                print(
                    f"{clip.name} {mode}: {j.covered}/{j.judged} missed {j.missed[:8]}"
                    f" windows {rep.get('backward_windows', 0)} {time.perf_counter() - t0:.1f} s",
                    flush=True,
                )
            result[clip.name] = row
    out = REPO / "benchmarks" / "results" / "walker_coverage.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
