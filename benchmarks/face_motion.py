"""How far a face moves on its own between frames, for the look-ahead margin (issue 23).

A face that a detection finds first at frame k is drawn back onto the held frames k-d at its
box at k, moved by the camera's shift. Its own motion over d frames is unknown there; this
measures it. On every frame the product's face detector runs and the tracker links the
detections; for each track detected at both j and k = j + d (d = 1..4), the box at k moved
back by the camera shift (phase correlation, as the cadence measures it) must be grown by
``need`` face sizes (max(w, h) at k) per side to hold the box at j. Reported: percentiles of
need / d per clip. The clips are NOT the ones the look-ahead is judged on (Hamilton,
classroom, the crowd clips): talking heads, sign language and a street crowd.

    python benchmarks/face_motion.py [--frames 120]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.detect.base import box_iou  # noqa: E402
from streamanon.io.video import VideoReader  # noqa: E402
from streamanon.motion import CameraMotion  # noqa: E402
from streamanon.types import Frame  # noqa: E402

SHARED = Path(os.environ.get("STREAMANON_SHARED", REPO.parent / "shared" / "data"))
# Chosen on these; judged elsewhere (split by clip and identity, docs/benchmarks.md).
CLIPS = [
    "dlib_MOT20-05-raw_even_shorter.mp4",
    "liveportrait_driving_d10.mp4",
    "liveportrait_driving_d14.mp4",
    "liveportrait_driving_d3.mp4",
    "intel_asl_gestures_thanks.mkv",
    "intel_asl_gestures_again.mkv",
]
GAPS = (1, 2, 3, 4)


def need(back: np.ndarray, face: np.ndarray) -> float:
    """Per-side growth of ``back`` (face sizes) so that it holds ``face``."""
    size = max(float(back[2] - back[0]), float(back[3] - back[1]), 1.0)
    over = np.array([back[0] - face[0], back[1] - face[1], face[2] - back[2], face[3] - back[3]])
    return float(max(0.0, over.max()) / size)


def measure(name: str, frames: int) -> dict:
    stage = Anonymizer(Options(method="blur")).faces
    motion = CameraMotion()
    boxes: list[dict[int, np.ndarray]] = []  # per frame: track id -> detected box
    shifts: list[np.ndarray] = []
    with VideoReader(SHARED / "videos" / name, audio=False) as r:
        fps = float(r.info.average_rate or 25)
        for i, f in zip(range(frames), r, strict=False):
            shifts.append(np.array(motion(f.image), np.float32))
            dets = stage.detector(f.image)
            out = stage.update(
                Frame(f.image, i, round(i * 1000 / fps), Fraction(1, 1000)), i / fps, dets
            )
            seen: dict[int, np.ndarray] = {}
            strong = dets[dets.score >= 0.6]
            rows = np.flatnonzero(~out.coasting)
            if len(strong) and len(rows):
                iou = box_iou(strong.xyxy, out.xyxy[rows])
                for di, row in enumerate(iou.argmax(1)):
                    if iou[di, row] > 0.5:
                        seen[int(out.track_id[rows[row]])] = strong.xyxy[di]
            boxes.append(seen)
    res: dict[str, dict] = {}
    for d in GAPS:
        per_frame = []
        for k in range(d, len(boxes)):
            back_shift = np.sum(shifts[k - d + 1 : k + 1], axis=0)
            for tid, bk in boxes[k].items():
                bj = boxes[k - d].get(tid)
                if bj is None:
                    continue
                back = bk - np.tile(back_shift, 2)
                per_frame.append(need(back, bj) / d)
        a = np.array(per_frame)
        if not len(a):
            res[f"d={d}"] = {"pairs": 0}
            continue
        res[f"d={d}"] = {
            "pairs": len(a),
            **{f"p{q}": round(float(np.percentile(a, q)), 4) for q in (50, 90, 99)},
            "max": round(float(a.max()), 4),
        }
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=120)
    args = p.parse_args()
    result = {}
    for name in CLIPS:
        result[name] = measure(name, args.frames)
        print(name, json.dumps(result[name]), flush=True)
    out = REPO / "benchmarks" / "results" / "face_motion.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
