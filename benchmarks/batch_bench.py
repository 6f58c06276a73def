"""Throughput of `streamanon batch`: 1 and 2 workers, local pool and Ray, in one run.

Builds a folder of 720p clips from ../shared/data (scaled up with PyAV: the pixels per frame,
and so the cost, of dashcam footage), then runs the real command on it four ways and reports
frames per second, hours of video per hour, start-up time (pool spawn or Ray start, model
load) and the scheduling overhead per file (measured on many tiny files).

    python benchmarks/batch_bench.py                      # ~5 min on 2 cores
    python benchmarks/batch_bench.py --clips 4 --seconds 1 --tiny 8
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import SHARED  # noqa: E402
from tests.test_batch import make_clip  # noqa: E402

SOURCES = [
    "face_recognition_short_hamilton_clip.mp4",
    "liveportrait_driving_d3.mp4",
    "liveportrait_driving_d10.mp4",
    "liveportrait_driving_d11.mp4",
    "liveportrait_driving_d12.mp4",
    "liveportrait_driving_d14.mp4",
    "liveportrait_driving_d18.mp4",
    "liveportrait_driving_d19.mp4",
]


def build_set(root: Path, n: int, seconds: float, height: int) -> None:
    import av

    for i in range(n):
        name = SOURCES[i % len(SOURCES)]
        src = SHARED / "videos" / name
        with av.open(str(src)) as c:
            v = c.streams.video[0].codec_context
            width = round(v.width * height / v.height / 2) * 2
        sub = root / f"drive_{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        make_clip(src, sub / f"clip_{i:02d}.mp4", seconds, width)


def build_images(root: Path, n: int) -> None:
    """``n`` small face photos (256², synthetic): a file costs ~tens of ms to anonymize, so
    a batch of them is mostly the per-file cost of the batch machinery."""
    import shutil

    faces = sorted((SHARED / "faces" / "synthetic" / "sfhq").glob("*.jpg"))[:n]
    root.mkdir(parents=True, exist_ok=True)
    for p in faces:
        shutil.copy(p, root / p.name)


def run(src: Path, out: Path, *extra: str) -> dict:
    report = out.with_suffix(".json")
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    cmd = [sys.executable, "-m", "streamanon", "batch", str(src), "-o", str(out), "-q"]
    t0 = time.perf_counter()
    r = subprocess.run(
        [*cmd, "-m", "blur", "--report", str(report), *extra],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"batch failed ({r.returncode}): {r.stderr[-2000:]}")
    t = json.loads(report.read_text())["totals"]
    files = json.loads(report.read_text())["files"]
    return {
        "wall_s": round(wall, 2),
        "batch_s": t["seconds"],
        "startup_s": round(wall - t["seconds"], 2),
        "files": t["files"],
        "frames": t["frames"],
        "fps": t["fps"],
        "video_h_per_h": t["video_hours_per_hour"],
        "file_seconds": round(sum(f["report"]["seconds"] for f in files), 2),
        "worker_peak_rss_mb": max((f.get("worker_peak_rss_mb") or 0) for f in files),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--height", type=int, default=720)
    ap.add_argument("--tiny", type=int, default=40, help="small photos for the per-file overhead")
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--overhead-only", action="store_true", help="skip the throughput runs")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "batch_bench.json"))
    args = ap.parse_args()
    if not (SHARED / "videos").is_dir():
        raise SystemExit(f"needs {SHARED / 'videos'}")
    results: dict = {
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.platform()}",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "set": {"clips": args.clips, "seconds": args.seconds, "height": args.height},
        "runs": {},
    }
    backends = [("local", [])] + ([] if args.no_ray else [("ray", ["--ray"])])
    with tempfile.TemporaryDirectory(prefix="batch_bench_") as tmp:
        tmp = Path(tmp)
        clips, tiny, one = tmp / "clips", tmp / "tiny", tmp / "one"
        build_set(clips, args.clips, args.seconds, args.height)
        build_images(tiny, args.tiny)
        build_images(one, 1)
        # Interleaved (local, Ray, local, Ray): on a shared machine the load drifts, and
        # back-to-back pairs see about the same load.
        for workers in () if args.overhead_only else (1, 2):
            for name, flags in backends:
                key = f"{name} x{workers}"
                print(f"{key} ...", file=sys.stderr, flush=True)
                res = run(clips, tmp / f"out_{name}_{workers}", *flags, "--workers", str(workers))
                results["runs"][key] = res
                print(f"  {res}", file=sys.stderr, flush=True)
        for name, flags in backends:
            # Per-file overhead: (many-file batch − one-file batch) per extra file, minus the
            # time the files themselves took inside the worker. One worker: nothing overlaps.
            a = run(tiny, tmp / f"tiny_{name}", *flags, "--workers", "1")
            b = run(one, tmp / f"one_{name}", *flags, "--workers", "1")
            # Time inside the batch loop but outside the files themselves (scheduling, pipes or
            # Ray calls, journal fsync); the one-file run holds the one-time costs (worker
            # start, models), so the difference per extra file is the per-file overhead.
            out_a = a["batch_s"] - a["file_seconds"]
            out_b = b["batch_s"] - b["file_seconds"]
            results["runs"][f"{name} overhead"] = {
                "startup_s": b["startup_s"],
                "first_file_extra_s": round(out_b, 3),
                "per_file_s": round((a["batch_s"] - b["batch_s"]) / (args.tiny - 1), 3),
                "per_file_inside_worker_s": round(a["file_seconds"] / args.tiny, 3),
                "per_file_overhead_s": round((out_a - out_b) / (args.tiny - 1), 4),
            }
            print(f"  {name} overhead: {results['runs'][f'{name} overhead']}", file=sys.stderr)
    print("| run | frames | batch s | fps | video h/h | start-up s |")
    print("|---|---|---|---|---|---|")
    for key, r in results["runs"].items():
        if "fps" in r:
            print(
                f"| {key} | {r['frames']} | {r['batch_s']} | {r['fps']} | {r['video_h_per_h']} "
                f"| {r['startup_s']} |"
            )
    for key, r in results["runs"].items():
        if "per_file_s" in r:
            print(f"{key}: {r}")
    out = Path(args.out)
    if args.overhead_only and out.exists():  # keep the throughput runs of the last full run
        old = json.loads(out.read_text())
        results["runs"] = {**old["runs"], **results["runs"]}
    out.write_text(json.dumps(results, indent=2))
    print(f"written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
