"""Plate coverage at a lower plate cadence, judged on every frame against the composed clip's
own labels (the plates' true boxes), through the product's file path (look-ahead included).

The clip is `streamanon.eval.plates.compose_clip` (held-out plates moved over MOT20-05
frames, as in `plate_bench.py`), written near-losslessly; every output frame is compared with
the input frame inside each true plate box (`eval.frames.box_covered`).

    python benchmarks/plate_cadence.py --frames 100 --every 1,2,3,4
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

sys.path.insert(0, str(REPO / "benchmarks"))

from plate_bench import MOT, compose, write_images  # noqa: E402


def _frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def main(argv: list[str] | None = None) -> int:
    from streamanon.anonymizer import Anonymizer, Options
    from streamanon.eval import metrics as M
    from streamanon.eval.bench import transcode
    from streamanon.eval.frames import box_covered

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=100)
    p.add_argument("--every", default="1,2,3,4", help="plate cadences, comma-separated")
    p.add_argument("--detector", default="ssd", choices=("ssd", "net"))
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    if not MOT.is_file():
        print(f"error: {MOT} not found (needs ../shared/data)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="plate-cadence-"))
    clip = compose(args.frames)
    src = work / "clip.mp4"
    write_images(src, [img for img, _ in clip], crf=12)
    plain = _frames(src)  # what the product reads: judged against the decoded input
    res: dict = {}
    for every in (int(v) for v in args.every.split(",")):
        anon = Anonymizer(
            Options(method="blur", objects="face,plate", plate_detector=args.detector,
                    plate_every=every)
        )  # fmt: skip
        e = transcode(src, work / f"every{every}.mp4", anon)
        out = _frames(e.output)
        covered, missed = 0, []
        for i, (_, gt) in enumerate(clip):
            for g in np.asarray(gt, np.float32).reshape(-1, 4):
                m = M.face_region_mask(plain[i].shape[:2], g[None], 1.0)
                if box_covered(plain[i], out[i], g, m):
                    covered += 1
                else:
                    missed.append(i)
        plates = sum(len(gt) for _, gt in clip)
        res[f"plates every {every}"] = {
            "plate_frames": plates, "covered": covered, "missed_on_frames": missed,
            "fps": round(e.fps, 1), "report": anon.object_report().get("plate"),
        }  # fmt: skip
        print(f"plates every {every}: {covered}/{plates} covered, missed on {missed}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
