"""Soak test of the live path (not in CI): minutes of RTSP in → anonymize → RTSP out.

ffmpeg publishes a looping clip in real time to streamanon (listen mode); streamanon serves the
result; optionally an ffmpeg client pulls it and the source is killed and restarted every
``--outage-every`` seconds. Every ``--interval`` seconds one row is recorded: resident memory,
frames in flight (read but neither dropped nor written: the backlog), drops, fills, outages and
the latency streamanon added in that interval. Flat RSS and a bounded backlog are the pass mark.

    python benchmarks/soak_live.py --minutes 10 --csv soak.csv
    python benchmarks/soak_live.py --minutes 1 --clip examples/demo.mp4 --height 720 --pull
    python benchmarks/soak_live.py --minutes 10 --detect-every 3 --queue-size 4   # issue 23
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Options  # noqa: E402
from streamanon.live import run_live  # noqa: E402


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Publisher:
    """ffmpeg pushing ``clip`` in real time, looping; restarted whenever it exits."""

    def __init__(self, ffmpeg: str, clip: str, url: str, height: int | None, fps: int) -> None:
        vf = [f"scale=-2:{height},fps={fps}"] if height else [f"fps={fps}"]
        self.cmd = [ffmpeg, "-hide_banner", "-loglevel", "quiet", "-re", "-stream_loop", "-1"]
        self.cmd += ["-i", clip, "-an", "-vf", *vf, "-c:v", "libx264", "-preset", "ultrafast"]
        self.cmd += ["-tune", "zerolatency", "-g", str(fps), "-f", "rtsp"]
        self.cmd += ["-rtsp_transport", "tcp", url]
        self.paused, self.done = threading.Event(), threading.Event()
        self.proc: subprocess.Popen | None = None
        self.lock = threading.Lock()
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        while not self.done.is_set():
            if self.paused.is_set():
                time.sleep(0.1)
                continue
            with self.lock:
                self.proc = subprocess.Popen(self.cmd)
            self.proc.wait()
            time.sleep(0.3)

    def kill(self) -> None:
        self.paused.set()
        with self.lock:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()

    def close(self) -> None:
        self.done.set()
        self.kill()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=5.0)
    ap.add_argument("--clip", default=str(REPO / "examples" / "demo.mp4"))
    ap.add_argument("--height", type=int, default=720, help="publish at this height (0: as is)")
    ap.add_argument("--fps", type=int, default=25)
    ap.add_argument("--method", default="blur")
    ap.add_argument("--min-face", type=float, default=Options().min_face, help="0: base pass only")
    ap.add_argument("--preset", default="veryfast", help="x264 preset of streamanon's output")
    ap.add_argument(
        "--detect-every", type=int, default=1, help="detect one frame in N (Options.detect_every)"
    )
    ap.add_argument("--queue-size", type=int, default=1, help="LiveOptions.queue_size")
    ap.add_argument("--interval", type=float, default=5.0, help="seconds between rows")
    ap.add_argument("--outage-every", type=float, default=0.0, help="kill the source every N s")
    ap.add_argument("--outage-for", type=float, default=3.0)
    ap.add_argument("--pull", action="store_true", help="also pull the output with ffmpeg")
    ap.add_argument("--csv", help="write the rows here")
    args = ap.parse_args()
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        print("soak_live: needs the ffmpeg binary", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(message)s")
    pin, pout = free_port(), free_port()
    rows: list[dict] = []
    stop = threading.Event()
    result: dict = {}

    def on_stats(s: dict) -> None:
        lat = s["recent_latency_ms"]
        row = {
            "t": s["t"],
            "rss_mb": round(rss_mb(), 1),
            "frames_in": s["frames_in"],
            "frames_out": s["frames_out"],
            "in_flight": s["in_flight"],
            "dropped": s["dropped"],
            "fill_frames": s["fill_frames"],
            "outages": s["outages"],
            "lat_p50": lat["p50"],
            "lat_p95": lat["p95"],
            "lat_max": lat["max"],
        }
        rows.append(row)
        print(json.dumps(row), flush=True)

    def go() -> None:
        from streamanon.run import EncodeOptions

        result["report"] = run_live(
            f"rtsp://127.0.0.1:{pin}/cam",
            f"rtsp://127.0.0.1:{pout}/anon",
            Options(method=args.method, min_face=args.min_face, detect_every=args.detect_every),
            EncodeOptions(preset=args.preset),
            stop=stop,
            listen=True,
            serve=True,
            latency_report=args.interval,
            on_stats=on_stats,
            queue_size=args.queue_size,
        )

    worker = threading.Thread(target=go, daemon=True)
    worker.start()
    pub = Publisher(ffmpeg, args.clip, f"rtsp://127.0.0.1:{pin}/cam", args.height or None, args.fps)
    client = None
    if args.pull:
        time.sleep(5)
        client = subprocess.Popen(
            [ffmpeg, "-hide_banner", "-loglevel", "error", "-i", f"rtsp://127.0.0.1:{pout}/anon"]
            + ["-f", "null", "-"]
        )
    end = time.monotonic() + 60 * args.minutes
    next_outage = time.monotonic() + args.outage_every if args.outage_every else float("inf")
    try:
        while time.monotonic() < end and worker.is_alive():
            if time.monotonic() >= next_outage:
                pub.kill()
                time.sleep(args.outage_for)
                pub.paused.clear()
                next_outage = time.monotonic() + args.outage_every
            time.sleep(0.2)
    finally:
        pub.close()
        stop.set()
        worker.join(30)
        if client is not None and client.poll() is None:
            client.kill()
    if args.csv and rows:
        with open(args.csv, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    report = result.get("report")
    warm = [r for r in rows if r["frames_out"] > 0]
    q = max(1, len(warm) // 4)
    summary = {
        "args": vars(args),
        "load_average": os.getloadavg(),
        "rows": len(rows),
        "rss_first_quarter_mb": round(sum(r["rss_mb"] for r in warm[:q]) / q, 1) if warm else None,
        "rss_last_quarter_mb": round(sum(r["rss_mb"] for r in warm[-q:]) / q, 1) if warm else None,
        "max_in_flight": max((r["in_flight"] for r in rows), default=None),
        "report": report.__dict__ if report is not None else None,
    }
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
