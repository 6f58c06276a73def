"""Anonymize videos with a face method and measure privacy, utility and naturalness per video.

    python scripts/naturalness_videos.py --method swap --json out.json [--stride 3] [VIDEO ...]

Default videos: talking heads d3 and d10, the ASL clip, the Hamilton clip (../shared/data/videos),
plus examples/demo.mp4 (720p, 4 faces) for throughput. Per video: end-to-end fps of
`anonymize_file`, and `streamanon eval`'s numbers on every ``--stride``-th frame: dlib ReID at
0.6, identity kept within a track, detection rate, yaw MAE, mouth-state agreement, flicker
(box crops and inside the face in aligned crops) and the naturalness block.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
DEFAULT = [
    VIDEOS / "liveportrait_driving_d3.mp4",
    VIDEOS / "liveportrait_driving_d10.mp4",
    VIDEOS / "intel_asl_gestures_again.mkv",
    VIDEOS / "face_recognition_short_hamilton_clip.mp4",
    REPO / "examples" / "demo.mp4",
]


def measure(video: Path, method: str, stride: int, max_frames: int | None, work: Path) -> dict:
    from streamanon.eval.evaluate import evaluate
    from streamanon.eval.pairs import make_pairs
    from streamanon.eval.recognizers import DlibRecognizer
    from streamanon.run import anonymize_file

    dst = work / f"{video.stem}.{method}.mp4"
    t0 = time.perf_counter()
    rep = anonymize_file(video, dst, method=method, overwrite=True)
    seconds = time.perf_counter() - t0
    r = evaluate(make_pairs(video, dst, stride, max_frames), [DlibRecognizer()])
    (v,) = r["video"].values() if r["video"] else ({},)
    tracks = rep.extra.get(method, {}).get("tracks", {})
    u = r["utility"]
    return {
        "video": video.name,
        "frames": rep.frames,
        "fps": rep.frames / seconds,
        "faces": r["faces"],
        "reid_0.6": r["privacy"]["dlib"]["reid"][0.6],
        "mean_dlib_dist": r["privacy"]["dlib"].get("mean_score"),
        "identity_kept": v.get("identity_consistency", {}).get("dlib"),
        "leaked_frames": v.get("leaked_frames", {}).get("dlib", {}).get("rate"),
        "detection": u["detection_rate"],
        "yaw_mae": u.get("yaw", {}).get("mae"),
        "mouth_state": u.get("mouth", {}).get("state"),
        "flicker": v.get("flicker"),
        "flicker_face": v.get("flicker_face"),
        "naturalness": r["naturalness"],
        "fallbacks": rep.extra.get(method, {}).get("fallbacks", {}),
        "checks": sum(t.get("checks", 0) for t in tracks.values()),
        "covered_tracks": sum(bool(t.get("covered")) for t in tracks.values()),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("videos", nargs="*", type=Path)
    p.add_argument("--method", default="swap")
    p.add_argument("--stride", type=int, default=3)
    p.add_argument("--max-frames", type=int, default=None)
    p.add_argument("--json")
    args = p.parse_args(argv)
    videos = args.videos or [v for v in DEFAULT if v.exists()]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for v in videos:
            row = measure(v, args.method, args.stride, args.max_frames, Path(tmp))
            print(json.dumps(row, default=float))
            rows.append(row)
    if args.json:
        Path(args.json).write_text(json.dumps({"method": args.method, "videos": rows}, indent=1,
                                              default=float))  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
