"""The coverage judge on the crowd-coverage clips with detection on one frame in N (issue 23).

The clips, sampled frames, reference and hand labels of `tests/test_coverage.py -k
crowd_coverage` (crowd1080, crowd4k, Hamilton, classroom); the product's defaults with
``detect_every`` N through the file path's frame loop (`pipeline.run_frames`, so N > 1 runs
with the look-ahead backfill) and, with ``--forward``, through forward-only tracking as a
live source runs it. Per clip, N and size bin: faces covered / faces.

    python benchmarks/backfill_coverage.py [--every 1,2,3] [--forward] [--clips crowd1080,...]
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

from streamanon.anonymizer import Anonymizer  # noqa: E402
from streamanon.eval import coverage as C  # noqa: E402
from streamanon.pipeline import run_frames  # noqa: E402
from streamanon.types import Frame  # noqa: E402
from tests.test_coverage import (  # noqa: E402
    CLIPS,
    VIDEO_FILES,
    _clip_frames,
    _reference,
    ground_truth,
)


def outputs(frames: list[np.ndarray], every: int, idx: list[int], forward: bool) -> dict:
    """The anonymized sampled frames of one run (blur, defaults but ``detect_every``)."""
    anon = Anonymizer(method="blur", detect_every=every)
    todo = (Frame(im.copy(), i, i * 40, Fraction(1, 1000)) for i, im in enumerate(frames))
    outs: dict[int, np.ndarray] = {}

    def sink(f: Frame) -> None:
        if f.index in idx:
            outs[f.index] = f.image

    run_frames(todo, anon, sink, lookahead=not forward)
    return outs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", default="1,2,3")
    p.add_argument("--forward", action="store_true", help="also forward-only for N > 1")
    p.add_argument("--clips", default=",".join(CLIPS))
    p.add_argument("--sheets", type=Path, default=Path("/tmp/backfill_coverage"))
    args = p.parse_args()
    args.sheets.mkdir(parents=True, exist_ok=True)
    result: dict = {}
    for name in args.clips.split(","):
        n, idx, mmod = CLIPS[name]
        frames = _clip_frames(name, n)
        ref = _reference(mmod)
        labels = ground_truth(f"videos/{VIDEO_FILES[name]}") if name in VIDEO_FILES else {}
        faces = {}
        for i in idx:
            faces[i] = ref(frames[i])
            if i in labels:
                faces[i] = C.with_ground_truth(faces[i], labels[i])
        runs = [(int(e), False) for e in args.every.split(",")]
        if args.forward:
            runs += [(e, True) for e, _ in runs if e > 1]
        for every, forward in runs:
            t0 = time.perf_counter()
            outs = outputs(frames, every, idx, forward)
            rep = C.CoverageReport()
            for i in idx:
                rep.faces += C.judge_frame(frames[i], outs[i], faces[i], i)
            got = rep.as_dict()
            key = f"{name} every={every}" + (" forward" if forward else "")
            row = {b: f"{v['covered']}/{v['faces']}" for b, v in got["bins"].items()}
            result[key] = {"bins": got["bins"], "uncovered_ge48": got["uncovered_ge48"]}
            print(key, json.dumps(row), f"{time.perf_counter() - t0:.0f} s", flush=True)
            sheet = C.uncovered_sheet({i: frames[i] for i in idx}, outs, rep.uncovered())
            if sheet is not None:
                cv2.imwrite(str(args.sheets / f"{key.replace(' ', '_')}.png"), sheet)
    out = REPO / "benchmarks" / "results" / "backfill_coverage.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
