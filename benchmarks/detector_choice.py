"""Which network for the base pass and the tiles (issue 23, item 2): recall per face size and
cost of CenterFace and RetinaFace-MobileNet0.25 at the scales the default detector uses.

Tune split (never the clips the coverage gate reports): the ultralight crowd photos that are
NOT in crowd1080/crowd4k (those use 1, 11, 15, 26 and 27), each scaled to a 1920 px long side
(a 1080p frame). Each candidate is judged against the OTHER family at native resolution
(CenterFace is judged by RetinaFace's faces, RetinaFace by CenterFace's, both at score >= 0.8),
so neither is its own reference; a reference face counts as found when a candidate box with
score >= 0.5 overlaps it with IoU >= 0.4. Cost: median ms of one network run at that input on
this machine (ONNX Runtime, default threads), with the load average printed beside it.

    python benchmarks/detector_choice.py [--out benchmarks/results/detector_choice.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.detect.base import box_iou, pad_to_multiple  # noqa: E402
from streamanon.detect.centerface import CenterFace, resized  # noqa: E402
from streamanon.detect.fast_nms import nms  # noqa: E402
from streamanon.eval import retinaface as rf  # noqa: E402

SHARED = Path(os.environ.get("STREAMANON_SHARED", REPO.parent / "shared" / "data"))
IN_CLIPS = {"1.jpg", "11.jpg", "15.jpg", "26.jpg", "27.jpg"}
BINS = [(0, 24), (24, 32), (32, 48), (48, 80), (80, 10_000)]
SCALES = {"base 640 (1/3)": 1 / 3, "tile (2/3)": 2 / 3}


class Retina:
    """RetinaFace-MobileNet0.25 at a given scale (no upsampling rule: the candidate)."""

    def __init__(self) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(rf.weights_bytes(), so, providers=["CPUExecutionProvider"])

    def run(self, image: np.ndarray, s: float, thresh: float = 0.5) -> tuple[np.ndarray, float]:
        small = resized(image, s).astype(np.float32) - rf.MEAN_BGR
        ph, pw = -(-small.shape[0] // 32) * 32, -(-small.shape[1] // 32) * 32
        x = np.zeros((ph, pw, 3), np.float32)
        x[: small.shape[0], : small.shape[1]] = small
        t0 = time.perf_counter()
        loc, conf, lms = self.sess.run(None, {"input": x.transpose(2, 0, 1)[None]})
        ms = (time.perf_counter() - t0) * 1000
        boxes, score, _ = rf.decode(loc[0], conf[0], lms[0], rf.anchors(ph, pw), thresh)
        if len(boxes):
            boxes = boxes[nms(boxes, score, 0.4)]
        return boxes / s, ms


class Center:
    def __init__(self) -> None:
        self.net = CenterFace(input_size=None, low_thresh=0.5)

    def run(self, image: np.ndarray, s: float) -> tuple[np.ndarray, float]:
        small = pad_to_multiple(resized(image, s), 32)
        t0 = time.perf_counter()
        (d,) = self.net.detect_batch([small])
        ms = (time.perf_counter() - t0) * 1000
        return d.xyxy / s, ms


def recall(ref: np.ndarray, found: np.ndarray, counts: dict) -> None:
    h = ref[:, 3] - ref[:, 1]
    hit = (box_iou(ref, found).max(1) >= 0.4) if len(found) else np.zeros(len(ref), bool)
    for lo, hi in BINS:
        m = (h >= lo) & (h < hi)
        c = counts.setdefault(f"{lo}-{hi}", [0, 0])
        c[0] += int(hit[m].sum())
        c[1] += int(m.sum())


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "detector_choice.json"))
    args = p.parse_args()
    photos = sorted(
        f for f in (SHARED / "groups" / "ultralight_crowd").glob("*.jpg") if f.name not in IN_CLIPS
    )
    center, retina = Center(), Retina()
    results: dict = {}
    for path in photos:
        im = cv2.imread(str(path))
        im = resized(im, 1920 / max(im.shape[:2]))
        # References at native resolution, each from the other family.
        ref_by_retina, _ = retina.run(im, 1.0, thresh=0.8)
        ref_by_center = center.net.detect_scaled(im, 1.0)
        ref_by_center = ref_by_center.xyxy[ref_by_center.score >= 0.8]
        for sname, s in SCALES.items():
            for name, det, ref in (
                ("centerface", center, ref_by_retina),
                ("retinaface", retina, ref_by_center),
            ):
                boxes, ms = det.run(im, s)
                r = results.setdefault(f"{name} {sname}", {"bins": {}, "ms": []})
                r["ms"].append(ms)
                if len(ref):
                    recall(ref, boxes, r["bins"])
    table = {}
    for k, r in results.items():
        table[k] = {
            "ms_median": round(float(np.median(r["ms"])), 1),
            "bins": {b: f"{c[0]}/{c[1]}" for b, c in r["bins"].items()},
        }
        print(k, json.dumps(table[k]), flush=True)
    meta = {
        "photos": [f.name for f in photos],
        "load_average": os.getloadavg(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(args.out).write_text(json.dumps({"meta": meta, "table": table}, indent=1))
    print("load average", os.getloadavg())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
