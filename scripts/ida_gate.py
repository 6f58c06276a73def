"""The release gate of `--method ida` on the evaluation set: swap vs ida, two judges, A/B by eye.

    python scripts/ida_gate.py run  --out runs/gate [--model engines/refiner_128.onnx]
    (open runs/gate/ab_sheet.png, write one letter per row: L, R or =)
    python scripts/ida_gate.py score --out runs/gate --answers "LR=L..." [--ship engines/]

Evaluation set (docs/generator.md, "Evaluation split"): since the seventh session the seven
clips of `eval3` (not in ../shared: public GitHub snapshots, extracted as the doc says), given
as paths: ``--clips /path/tps_driving.mp4 /path/vr_1.mp4 …``. Without ``--clips`` the run is on
the first evaluation set, the LivePortrait clips d11, d12, d14, d18, d19, d20 of ../shared (a
development set now: it was looked at seven times). Never used to train G_r (SFHQ + the Intel
ASL clips). The first ``--frames`` frames of each clip; every ``--stride``-th (8 of 64 per
clip) is judged by `streamanon eval`'s evaluator with dlib's ResNet and FaceNet (another
family; `eval.facenet`); flicker over the first 32 frames, every frame.

`run` writes per method the anonymized clips, ``table.json`` (per clip and pooled), a
before/after sheet (original | swap | ida) of every sampled face and the blind A/B sheet with
its key kept in ``ab_key.json``. `score` adds the A/B answers, applies
`anonymize.generative.release_gate` and with ``--ship`` writes the gate table beside the model.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VIDEOS = REPO.parent / "shared" / "data" / "videos"
EVAL_CLIPS = ["d11", "d12", "d14", "d18", "d19", "d20"]
# The same measurement on tuning clips (`--tuning`): what a render change is checked on before
# the evaluation set sees it once. Names other than d<N> are files of ../shared/data/videos.
TUNING_CLIPS = {
    "d3": "liveportrait_driving_d3.mp4",
    "d10": "liveportrait_driving_d10.mp4",
    "hamilton": "face_recognition_short_hamilton_clip.mp4",
    "asl": "intel_asl_gestures_again.mkv",
}
METHODS = ("swap", "ida")
FLICKER_FRAMES = 32


VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov")  # a clip given as a file's path, not a name


def clip_path(clip: str) -> Path:
    """The source video of a clip: a video file's path (the newer evaluation sets live outside
    ../shared, docs/generator.md), a tuning clip's name, else a LivePortrait clip's name."""
    if clip.endswith(VIDEO_SUFFIXES):
        return Path(clip)
    return VIDEOS / TUNING_CLIPS.get(clip, f"liveportrait_driving_{clip}.mp4")


def clip_name(clip: str) -> str:
    return Path(clip).stem if clip.endswith(VIDEO_SUFFIXES) else clip


def trim(src: Path, dst: Path, frames: int, start: int = 0) -> Path:
    """Frames [start, start + frames) of ``src`` (re-encoded near-losslessly, no audio)."""
    import av

    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        vin = inp.streams.video[0]
        rate = vin.average_rate or 25
        vout = out.add_stream("libx264", rate=rate)
        vout.width, vout.height, vout.pix_fmt = vin.width, vin.height, "yuv420p"
        vout.options = {"crf": "12", "preset": "veryfast"}
        for i, frame in enumerate(inp.decode(vin)):
            if i >= start + frames:
                break
            if i < start:
                continue
            img = frame.to_ndarray(format="bgr24")
            for pkt in vout.encode(av.VideoFrame.from_ndarray(img, format="bgr24")):
                out.mux(pkt)
        for pkt in vout.encode():
            out.mux(pkt)
    return dst


def read_frames(path: Path, idx: list[int]) -> dict[int, np.ndarray]:
    import av

    want, out = set(idx), {}
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in want:
                out[i] = f.to_ndarray(format="bgr24")
            if i >= max(want):
                break
    return out


def judges():
    from streamanon.eval.facenet import FaceNetJudge
    from streamanon.eval.recognizers import DlibRecognizer

    return [DlibRecognizer(), FaceNetJudge()]


def measure(src: Path, dst: Path, stride: int, report) -> dict:
    from streamanon.eval.evaluate import evaluate
    from streamanon.eval.pairs import make_pairs

    js = judges()
    r = evaluate(make_pairs(src, dst, stride), js)
    # Flicker needs consecutive frames: the first FLICKER_FRAMES of the clip, every frame.
    every = evaluate(make_pairs(src, dst, 1, FLICKER_FRAMES), [])
    (v,) = every["video"].values() if every["video"] else ({},)
    priv = {j.name: r["privacy"][j.name]["reid"][j.default_threshold] for j in js}
    # Faces the judge tells from a blur of themselves (`eval.evaluate`): the tuning clips'
    # dark audience is matched to its own blur, whatever covers it.
    judgeable = {
        j.name: {"share": r["privacy"][j.name].get("judgeable", float("nan")),
                 "reid": r["privacy"][j.name].get("reid_judgeable", {}).get(j.default_threshold,
                                                                           float("nan"))}
        for j in js
    }  # fmt: skip
    nat = dict(r["naturalness"])
    nat["flicker_face"] = v.get("flicker_face", float("nan"))
    return {
        "faces": r["faces"],
        "reid": priv,
        "judgeable": judgeable,
        "detection": r["utility"]["detection_rate"],
        "yaw_mae": r["utility"].get("yaw", {}).get("mae"),
        "mouth_state": r["utility"].get("mouth", {}).get("state"),
        "naturalness": nat,
        "fallbacks": report.extra.get(report_key(report), {}).get("fallbacks", {}),
    }


def report_key(report) -> str:
    return next((k for k in METHODS if k in report.extra), "")


def pool(rows: list[dict]) -> dict:
    """Face-weighted means over clips (flicker: mean over clips)."""
    w = np.array([r["faces"] for r in rows], np.float64)
    out: dict = {"faces": int(w.sum()), "reid": {}, "naturalness": {}}
    for j in rows[0]["reid"]:
        out["reid"][j] = float(np.sum([r["reid"][j] * r["faces"] for r in rows]) / w.sum())
    out["detection"] = float(np.sum([r["detection"] * r["faces"] for r in rows]) / w.sum())
    if all("judgeable" in r for r in rows):
        out["judgeable"] = {}
        for j in rows[0]["judgeable"]:
            share = np.array([r["judgeable"][j]["share"] for r in rows], np.float64) * w
            rate = np.nan_to_num([r["judgeable"][j]["reid"] for r in rows])
            n = float(share.sum())
            out["judgeable"][j] = {"share": n / w.sum(),
                                   "reid": float(np.sum(rate * share) / n) if n else float("nan")}  # fmt: skip
    for k in rows[0]["naturalness"]:
        v = np.array([r["naturalness"].get(k, np.nan) for r in rows], np.float64)
        ok = np.isfinite(v)
        if k == "flicker_face":
            out["naturalness"][k] = float(v[ok].mean()) if ok.any() else float("nan")
        else:
            out["naturalness"][k] = float(np.sum(v[ok] * w[ok]) / w[ok].sum()) if ok.any() else float("nan")  # fmt: skip
    for k in ("yaw_mae", "mouth_state"):
        v = np.array([r.get(k) if r.get(k) is not None else np.nan for r in rows], np.float64)
        ok = np.isfinite(v)
        out[k] = float(np.sum(v[ok] * w[ok]) / w[ok].sum()) if ok.any() else None
    return out


def face_crops(src: Path, outs: dict[str, Path], idx: list[int]) -> list[dict]:
    """The largest face of each sampled frame, cut from the original and every output."""
    from streamanon.eval.sheet import face_crop
    from streamanon.registry import make_detector

    det = make_detector("centerface")
    frames = {
        "original": read_frames(src, idx),
        **{m: read_frames(p, idx) for m, p in outs.items()},
    }
    crops = []
    for i in idx:
        img = frames["original"].get(i)
        d = det(img) if img is not None else []
        if len(d) == 0:
            continue
        box = d.xyxy[int(np.argmax(d.xyxy[:, 2] - d.xyxy[:, 0]))]
        crops.append({k: face_crop(frames[k][i], box, 192) for k in frames} | {"frame": i})
    return crops


def run(args: argparse.Namespace) -> int:
    from streamanon.eval.sheet import ab_rows, contact_sheet, write_png
    from streamanon.run import anonymize_file

    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    if args.tuning:
        args.clips = list(TUNING_CLIPS)
    table: dict = {"clips": {}, "frames": args.frames, "stride": args.stride, "seconds": {}}
    crops: list[dict] = []
    paths = list(args.clips)
    args.clips = [clip_name(c) for c in paths]
    for clip, path in zip(args.clips, paths, strict=True):
        src = trim(clip_path(path), out / f"{clip}.mp4", args.frames)
        outs = {}
        for m in METHODS:
            dst = out / f"{clip}.{m}.mp4"
            t0 = time.perf_counter()
            rep = anonymize_file(src, dst, method=m, overwrite=True)
            table["seconds"][f"{clip}.{m}"] = time.perf_counter() - t0
            table["clips"].setdefault(clip, {})[m] = measure(src, dst, args.stride, rep)
            outs[m] = dst
            row = table["clips"][clip][m]
            print(clip, m, json.dumps(row["reid"]), "judgeable", json.dumps(row["judgeable"]),
                  flush=True)  # fmt: skip
        idx = list(range(0, args.frames, max(1, args.frames // args.per_clip)))[: args.per_clip]
        crops += [c | {"clip": clip} for c in face_crops(src, outs, idx)]
    for m in METHODS:
        table[m] = pool([table["clips"][c][m] for c in args.clips])
    labels = [[f"{c['clip']} #{c['frame']}", *METHODS] for c in crops]
    write_png(contact_sheet([[c["original"], *(c[m] for m in METHODS)] for c in crops], labels, 2),
              out / "before_after.png")  # fmt: skip
    rows, key = ab_rows([c["original"] for c in crops], [c["ida"] for c in crops],
                        [c["swap"] for c in crops], ("ida", "swap"), seed=args.seed)  # fmt: skip
    write_png(contact_sheet(rows, [[f"{n}", "left", "right"] for n in range(len(rows))], 2),
              out / "ab_sheet.png")  # fmt: skip
    (out / "ab_key.json").write_text(json.dumps(key, indent=1))
    (out / "table.json").write_text(json.dumps(table, indent=1, default=float))
    print(json.dumps({m: table[m] for m in METHODS}, indent=1, default=float))
    return 0


def score(args: argparse.Namespace) -> int:
    from streamanon.anonymize.generative import GATE_FILE, release_gate
    from streamanon.eval.sheet import score_ab

    table = json.loads((args.out / "table.json").read_text())
    key = json.loads((args.out / "ab_key.json").read_text())
    table["ab"] = score_ab(key, args.answers)
    ok, fails = release_gate(table)
    table["gate"] = {"passes": ok, "fails": fails}
    (args.out / "table.json").write_text(json.dumps(table, indent=1, default=float))
    print(json.dumps({"ab": table["ab"], "gate": table["gate"]}, indent=1))
    if args.ship:
        (args.ship / GATE_FILE).write_text(json.dumps(table, indent=1, default=float))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--clips", nargs="+", default=EVAL_CLIPS)
    r.add_argument("--tuning", action="store_true", help="the tuning clips, not the evaluation set")
    r.add_argument("--frames", type=int, default=64)
    r.add_argument("--stride", type=int, default=8)
    r.add_argument("--per-clip", type=int, default=4)
    r.add_argument("--seed", type=int, default=0)
    s = sub.add_parser("score")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--answers", required=True)
    s.add_argument("--ship", type=Path, default=None)
    args = p.parse_args(argv)
    return run(args) if args.cmd == "run" else score(args)


if __name__ == "__main__":
    sys.exit(main())
