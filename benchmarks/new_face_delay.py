"""Frames until a new face is covered with detection on one frame in N (issue 23, item 4).

The reference is the same detector on every frame with the same tracker; a face "appears"
on the first frame its reference track is detected with a score >= 0.6. The delay is the
number of frames from there until the cadence output holds the face box (>= 90 % of it inside
one output box; the anonymizer then still adds the head region's margins). Real clips only.
``--backfill``: the file path's look-ahead (`streamanon.lookahead`) instead of forward-only
tracking (written to new_face_delay_backfill.json).

    python benchmarks/new_face_delay.py --every 2,3,4 [--frames 275] [--backfill]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fractions import Fraction  # noqa: E402

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.detect.base import box_iou  # noqa: E402
from streamanon.detect.multiscale import MultiScaleDetector  # noqa: E402
from streamanon.io.video import VideoReader  # noqa: E402
from streamanon.lookahead import Lookahead  # noqa: E402
from streamanon.track.association import inside_share  # noqa: E402
from streamanon.types import Frame  # noqa: E402

SHARED = Path(os.environ.get("STREAMANON_SHARED", REPO.parent / "shared" / "data"))
CLIPS = ["face_recognition_short_hamilton_clip.mp4", "intel_sample_videos_classroom.mp4"]


def run(
    frames: list[np.ndarray], every: int, fps: float, backfill: bool = False
) -> tuple[list, dict]:
    """The product's face stage at cadence ``every``: the boxes it covers per frame."""
    anon = Anonymizer(Options(method="blur", detect_every=every))
    stage = anon.faces
    todo = [Frame(im, i, round(i * 1000 / fps), Fraction(1, 1000)) for i, im in enumerate(frames)]
    if backfill and every > 1:
        look = Lookahead(anon)
        done = [f for frame in todo for f in look(frame)] + look.flush()
    else:
        done = [anon.track(frame) for frame in todo]
    assert [f.index for f in done] == list(range(len(frames)))
    outs = [f.faces for f in done]
    return outs, {"detections": stage.cadence.detected, "cuts": stage.cadence.cuts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--every", default="1,2,3,4")
    p.add_argument("--frames", type=int, default=275)
    p.add_argument("--backfill", action="store_true", help="files' look-ahead backfill")
    args = p.parse_args()
    result = {}
    for name in CLIPS:
        with VideoReader(SHARED / "videos" / name, audio=False) as r:
            fps = float(r.info.average_rate or 25)
            frames = [f.image.copy() for _, f in zip(range(args.frames), r, strict=False)]
        det = MultiScaleDetector()
        ref_raw = [det(im) for im in frames]
        ref_out, _ = run(frames, 1, fps)
        first: dict[int, int] = {}
        for i, o in enumerate(ref_out):
            for tid in o.track_id:
                first.setdefault(int(tid), i)
        for every in [int(x) for x in args.every.split(",")]:
            outs, stats = run(frames, every, fps, args.backfill)
            delays, never, late_faces = [], 0, []
            for tid, i0 in first.items():
                # The face of this track on the frames it was detected (score >= 0.6).
                hits = []
                for i in range(i0, min(i0 + 25, len(frames))):
                    o = ref_out[i]
                    rows = np.flatnonzero(o.track_id == tid)
                    d = ref_raw[i]
                    if not len(rows) or not len(d):
                        continue
                    iou = box_iou(o.xyxy[rows], d.xyxy)[0]
                    if iou.max() > 0.5 and d.score[iou.argmax()] >= 0.6:
                        hits.append((i, d.xyxy[iou.argmax()]))
                if not hits:
                    continue
                # From the first frame the face is detected with confidence on.
                late = next(
                    (i - hits[0][0] for i, f in hits if inside_share(f, outs[i].xyxy) >= 0.9), None
                )
                if late is None:
                    never += 1
                else:
                    delays.append(late)
                if late is None or late > 0:
                    late_faces.append({"track": tid, "first_frame": hits[0][0], "late": late})
            d = np.array(delays)
            row = {
                "fps": round(fps, 2),
                "frames": len(frames),
                "detected_frames": stats["detections"],
                "cuts": stats["cuts"],
                "new_faces": len(delays) + never,
                "covered_at_once": int((d == 0).sum()),
                "delay_frames_max": int(d.max()) if len(d) else None,
                "delay_frames_mean": round(float(d.mean()), 2) if len(d) else None,
                "not_within_25_frames": never,
                "late": late_faces,
            }
            result[f"{name} every={every}"] = row
            print(name, every, json.dumps(row), flush=True)
    name = "new_face_delay_backfill.json" if args.backfill else "new_face_delay.json"
    out = REPO / "benchmarks" / "results" / name
    out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
