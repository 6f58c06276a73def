"""Where a frame's time goes, per stage and per face count (issue 23, item 1).

Runs the default face path (detector -> tracker -> method) single-threaded over frames held
in memory, so that decode/encode and the other stages' threads do not blur the figures, and
reports ms per frame for: the networks (ONNX Runtime), everything the detector does outside
them (resizes, decoding, NMS, tiles, windows, camera motion), the tracker, the method.
cProfile's top functions by own time go to the JSON beside it.

Clips at 1080p with about 1, 10 and 150 faces a frame:
- ``one``: a slow pan over a one-person photo (dlib's Tom Cruise picture);
- ``ten``: the same over ``deepface_selfie-many-people.jpg``;
- ``crowd``: ``benchmarks/clips/crowd1080.mp4`` (make_coverage_clips.py).

    python benchmarks/profile_stages.py --frames 40 [--out benchmarks/results/profile.json]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import sys
import time
from collections import defaultdict
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.io.video import VideoReader  # noqa: E402
from streamanon.types import Frame  # noqa: E402

SHARED = Path(os.environ.get("STREAMANON_SHARED", REPO.parent / "shared" / "data"))
PHOTOS = {
    "one": SHARED / "groups" / "dlib_faces" / "Tom_Cruise_avp_2014_4.jpg",
    "ten": SHARED / "groups" / "misc" / "deepface_selfie-many-people.jpg",
}


def pan_frames(photo: Path, frames: int, size=(1920, 1080)) -> list[np.ndarray]:
    """A slow diagonal pan over `photo` scaled to cover 1.15x the frame (faces move)."""
    w, h = size
    im = cv2.imread(str(photo))
    s = 1.15 * max(w / im.shape[1], h / im.shape[0])
    big = cv2.resize(im, (round(im.shape[1] * s), round(im.shape[0] * s)), interpolation=cv2.INTER_CUBIC)  # fmt: skip
    out = []
    for i in range(frames):
        t = i / max(frames - 1, 1)
        x0, y0 = round((big.shape[1] - w) * t), round((big.shape[0] - h) * t)
        out.append(np.ascontiguousarray(big[y0 : y0 + h, x0 : x0 + w]))
    return out


def clip_frames(path: Path, frames: int) -> list[np.ndarray]:
    out = []
    with VideoReader(path, audio=False) as r:
        for f in r:
            out.append(f.image.copy())
            if len(out) >= frames:
                break
    return out


class Timer:
    """Wraps methods of a class and adds their wall time to a named bucket."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def wrap(self, cls, attr: str, name: str) -> None:
        fn = getattr(cls, attr)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.ms[name] += (time.perf_counter() - t0) * 1000
                self.calls[name] += 1

        setattr(cls, attr, timed)


def _instrument() -> Timer:
    """Time every ONNX Runtime run, tracker update and camera-motion call, whatever object
    makes them (class-level wrappers: the script only uses the public Anonymizer API)."""
    import onnxruntime as ort

    from streamanon.motion import CameraMotion
    from streamanon.track import FaceTracker

    timer = Timer()
    timer.wrap(ort.InferenceSession, "run", "network")
    timer.wrap(FaceTracker, "update", "tracker")
    timer.wrap(CameraMotion, "__call__", "camera motion")
    return timer


TIMER: Timer | None = None


def profile(frames: list[np.ndarray], options: Options) -> dict:
    global TIMER
    TIMER = TIMER or _instrument()
    timer = TIMER
    anon = Anonymizer(options)
    # Warm-up frame (session first-run allocation) is not counted.
    anon.apply(anon.track(Frame(frames[0].copy(), 0, 0, Fraction(1, 1_000_000))))
    anon.reset()
    timer.ms.clear()
    timer.calls.clear()
    total = {"detect+track": 0.0, "anonymize": 0.0}
    faces = 0
    pr = cProfile.Profile()
    for i, im in enumerate(frames):
        frame = Frame(im.copy(), i, round(i * 40_000), Fraction(1, 1_000_000))
        pr.enable()
        t0 = time.perf_counter()
        anon.track(frame)
        t1 = time.perf_counter()
        anon.apply(frame)
        t2 = time.perf_counter()
        pr.disable()
        total["detect+track"] += (t1 - t0) * 1000
        total["anonymize"] += (t2 - t1) * 1000
        faces += len(frame.faces)
    n = len(frames)
    row = {"total": round(sum(total.values()) / n, 2)}
    row["tracker"] = round(timer.ms["tracker"] / n, 2)
    row["detect"] = round(total["detect+track"] / n - row["tracker"], 2)
    row["network"] = round(timer.ms["network"] / n, 2)
    row["network calls"] = round(timer.calls["network"] / n, 2)
    row["camera motion"] = round(timer.ms["camera motion"] / n, 2)
    row["detect outside network"] = round(row["detect"] - row["network"], 2)
    row["anonymize"] = round(total["anonymize"] / n, 2)
    row["faces per frame"] = round(faces / n, 1)
    stats = pstats.Stats(pr)
    top = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:25]
    row["top_own_ms"] = [
        (f"{Path(k[0]).name}:{k[1]}:{k[2]}", round(v[2] * 1000 / n, 2), v[1]) for k, v in top
    ]
    return row


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--frames", type=int, default=40)
    p.add_argument("--clips", default="one,ten,crowd")
    p.add_argument("--method", default="blur")
    p.add_argument("--min-face", type=float, default=24.0)
    p.add_argument("--detector", default="centerface")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "profile.json"))
    p.add_argument("--threads", type=int, default=None)
    args = p.parse_args()
    rows = {}
    for name in args.clips.split(","):
        if name in PHOTOS:
            frames = pan_frames(PHOTOS[name], args.frames)
        else:
            path = REPO / "benchmarks" / "clips" / ("crowd1080.mp4" if name == "crowd" else name)
            frames = clip_frames(path, args.frames)
        opts = Options(method=args.method, min_face=args.min_face, detector=args.detector)
        opts.threads = args.threads
        rows[name] = profile(frames, opts)
        r = rows[name]
        print(
            f"{name:6s} faces {r['faces per frame']:6.1f}  total {r['total']:7.1f} ms  "
            f"detect {r['detect']:6.1f} (network {r['network']:6.1f} in {r['network calls']} "
            f"calls, outside {r['detect outside network']:5.1f}, camera {r['camera motion']:4.1f})"
            f"  track {r['tracker']:5.1f}  anonymize {r['anonymize']:5.1f}",
            flush=True,
        )
        for fn, ms, calls in r["top_own_ms"][:12]:
            print(f"    {ms:7.2f} ms/frame  {calls:7d} calls  {fn}")
    meta = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "frames": args.frames,
        "method": args.method,
        "detector": args.detector,
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print("load average", os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
