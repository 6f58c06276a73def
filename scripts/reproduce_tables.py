"""Our version of the paper's Table 1 (privacy) and Table 3 (utility) on ../shared/data.

    python scripts/reproduce_tables.py [--per-identity 2] [--methods blur,pixelate,solid,mask]
                                       [--videos 2] [--stride 3] [--write-docs]

What it does, deterministically (sorted file lists, no randomness; the generative method is
seeded by its own --seed default):
1. Takes the first ``--per-identity`` photos (sorted by name) of every identity folder in
   faces/identities whose name starts with ``deepface_`` or ``fr_`` (real photos of 18 people;
   the ORL and dlib "John" sets are tiny grey/aligned crops that the detector rarely finds).
2. Anonymizes them with every available method (classic ones, and ``ida`` when its generator
   is installed), one fresh Anonymizer per photo.
3. Evaluates each method with `streamanon.eval` (dlib + any ArcFace model on disk), identity
   labels = the folder name, and the first ``--videos`` of `VIDEOS` ( every
   ``--stride``-th frame, at most ``--max-frames``).
4. Prints the tables; ``--write-docs`` replaces the generated section of docs/evaluation.md.

Subsampling keeps the run to minutes on a 2-core CPU; raise the numbers for tighter estimates.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from streamanon.anonymizer import Anonymizer, Options  # noqa: E402
from streamanon.eval.evaluate import EvalConfig, evaluate  # noqa: E402
from streamanon.eval.pairs import make_pairs  # noqa: E402
from streamanon.eval.recognizers import available_recognizers  # noqa: E402
from streamanon.eval.report import privacy_table, utility_table, video_table  # noqa: E402
from streamanon.registry import REDACTORS  # noqa: E402
from streamanon.run import anonymize_folder, anonymize_video  # noqa: E402

SHARED = REPO.parent / "shared" / "data"
DOC = REPO / "docs" / "evaluation.md"
# A classroom (4 people facing the camera) and a talking head: faces large enough to verify.
VIDEOS = ("intel_sample_videos_classroom.mp4", "liveportrait_driving_d3.mp4")
BEGIN, END = "<!-- tables:begin -->", "<!-- tables:end -->"


def methods_available() -> list[str]:
    ms = list(REDACTORS.names())
    try:
        from streamanon.anonymize.generative import generator_available

        if generator_available():
            ms.append("ida")
    except ImportError:
        pass
    return ms


def stage_photos(root: Path, per_identity: int, dst: Path) -> dict[str, str]:
    """Copy the chosen photos flat into ``dst`` as ``<person>__<file>``; returns the labels."""
    dst.mkdir(parents=True, exist_ok=True)
    labels = {}
    for person in sorted(p for p in root.iterdir() if p.is_dir()):
        if not person.name.startswith(("deepface_", "fr_")):
            continue
        for f in sorted(person.iterdir())[:per_identity]:
            name = f"{person.name}__{f.name}"
            shutil.copyfile(f, dst / name)
            labels[name] = person.name
    return labels


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--per-identity", type=int, default=2)
    ap.add_argument("--methods", default=",".join(methods_available()))
    ap.add_argument("--videos", type=int, default=2)
    ap.add_argument("--stride", type=int, default=3)
    ap.add_argument("--max-frames", type=int, default=30)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    if not SHARED.is_dir():
        print(f"needs {SHARED}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="streamanon-tables-"))
    orig = work / "original"
    labels = stage_photos(SHARED / "faces" / "identities", args.per_identity, orig)
    videos = [SHARED / "videos" / n for n in VIDEOS if (SHARED / "videos" / n).is_file()]
    videos = videos[: args.videos]
    recs = available_recognizers()
    config = EvalConfig()
    photos: dict[str, dict] = {}
    clips: dict[str, dict] = {}
    for m in [s.strip() for s in args.methods.split(",") if s.strip()]:
        out = work / m
        anonymize_folder(orig, out, lambda m=m: Anonymizer(Options(method=m)))
        photos[m] = evaluate(make_pairs(orig, out), recs, labels, config)
        vres: dict = {}
        for v in videos:
            dst = work / f"{m}_{v.stem}.mp4"
            anonymize_video(v, dst, Anonymizer(Options(method=m)))
            r = evaluate(make_pairs(v, dst, args.stride, args.max_frames), recs, None, config)
            vres[v.name] = r
        clips[m] = vres
        print(f"{m}: done", file=sys.stderr)
    video_rows = {
        f"{m}": {"video": {k: r["video"][k] for r in vr.values() for k in r["video"]}}
        for m, vr in clips.items()
    }
    text = "\n".join(
        [
            f"Photos: {len(labels)} ({args.per_identity} per identity, "
            f"{len(set(labels.values()))} people); videos: {', '.join(v.name for v in videos)} "
            f"(every {args.stride}th frame, at most {args.max_frames}).",
            "",
            "Table 1 (ours): (ReID vs original %, IDS %, ReID vs the person's other photos %)",
            "",
            privacy_table(photos),
            "",
            "Table 3 (ours): utility on the photos",
            "",
            utility_table(photos),
            "",
            "Video:",
            "",
            video_table(video_rows),
            "",
        ]
    )
    print(text)
    if args.write_docs:
        doc = DOC.read_text()
        a, b = doc.index(BEGIN), doc.index(END) + len(END)
        DOC.write_text(doc[:a] + f"{BEGIN}\n{text}{END}" + doc[b:])
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
