"""Contact sheet of `swap` / `ida` faces on TUNING clips only (never the evaluation set).

    python scripts/tuning_sheet.py --out .train/tune/before [--methods swap ida]

Tuning windows (docs/generator.md, "Evaluation split"): d3, d10, the two Intel ASL clips,
Hamilton and examples/demo.mp4 — none of d11-d20, the gate's evaluation clips. Each window
is ``--frames`` frames from a start frame; ``--per-window`` faces (the largest of the frame)
are cut from the original and each output. Writes ``sheet.png`` and ``reports.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

from ida_gate import VIDEOS, face_crops, trim  # noqa: E402

# (name, file, first frame): several windows per clip, for expressions and gaze that differ.
WINDOWS = [
    ("d3a", VIDEOS / "liveportrait_driving_d3.mp4", 0),
    ("d3b", VIDEOS / "liveportrait_driving_d3.mp4", 200),
    ("d10a", VIDEOS / "liveportrait_driving_d10.mp4", 0),
    ("d10b", VIDEOS / "liveportrait_driving_d10.mp4", 250),
    ("asl1", VIDEOS / "intel_asl_gestures_again.mkv", 0),
    ("asl2", VIDEOS / "intel_asl_gestures_thanks.mkv", 0),
    ("ham", VIDEOS / "face_recognition_short_hamilton_clip.mp4", 60),
    ("demo", REPO / "examples" / "demo.mp4", 0),
]


def main(argv: list[str] | None = None) -> int:
    from streamanon.eval.sheet import contact_sheet, write_png
    from streamanon.run import anonymize_file

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--methods", nargs="+", default=["swap", "ida"])
    p.add_argument("--windows", nargs="+", default=[w[0] for w in WINDOWS])
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--per-window", type=int, default=4)
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    crops, reports = [], {}
    for name, path, start in WINDOWS:
        if name not in args.windows or not path.exists():
            continue
        src = trim(path, args.out / f"{name}.mp4", args.frames, start)
        outs = {}
        for m in args.methods:
            dst = args.out / f"{name}.{m}.mp4"
            rep = anonymize_file(src, dst, method=m, overwrite=True)
            reports[f"{name}.{m}"] = rep.extra.get(m, {}).get("fallbacks", {})
            outs[m] = dst
        step = max(1, args.frames // args.per_window)
        idx = list(range(0, args.frames, step))[: args.per_window]
        crops += [c | {"clip": name} for c in face_crops(src, outs, idx)]
        print(name, json.dumps({m: reports[f"{name}.{m}"] for m in args.methods}), flush=True)
    rows = [[c["original"], *(c[m] for m in args.methods)] for c in crops]
    labels = [[f"{c['clip']} #{c['frame']}", *args.methods] for c in crops]
    write_png(contact_sheet(rows, labels, 2), args.out / "sheet.png")
    (args.out / "reports.json").write_text(json.dumps(reports, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
