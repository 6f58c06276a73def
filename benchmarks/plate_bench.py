"""`--dashcam` cost on a 720p road-like clip: plain decode+encode, faces only, and faces plus
plates with each shipped plate detector (and PlateNet at a lower cadence), in one process,
run after run, so the numbers share the machine's load.

The clip: `streamanon.eval.plates.compose_clip` (held-out plates panned, scaled, sheared and
motion-blurred over real MOT20-05 street frames), 1280x720, 25 fps, written with x264.

    python benchmarks/plate_bench.py                  # 125 frames, ~3 min on the 2-core VM
    python benchmarks/plate_bench.py --frames 50 --out results/plates.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.conftest import SHARED  # noqa: E402

MOT = SHARED / "videos" / "dlib_MOT20-05-raw_even_shorter.mp4"


def compose(frames: int) -> list:
    """The composed road clip: [(BGR 1280x720 frame, true plate boxes)] x ``frames``."""
    from streamanon.eval import plates as PE

    sprites = PE.plate_sprites(PE.load_labelled())
    return list(PE.compose_clip(PE.read_backgrounds(MOT, 50), PE.default_tracks(sprites), frames))


def write_images(path: Path, images: list, crf: int | None = None) -> None:
    """``images`` (BGR) as an x264 clip at 25 fps (``crf``: None = x264's default)."""
    import av

    with av.open(str(path), "w") as out:
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = images[0].shape[1], images[0].shape[0], "yuv420p"
        if crf is not None:
            s.options = {"crf": str(crf)}
        for img in images:
            out.mux(s.encode(av.VideoFrame.from_ndarray(img, format="bgr24")))
        out.mux(s.encode())


def write_clip(path: Path, frames: int) -> None:
    write_images(path, [img for img, _ in compose(frames)])


def main(argv: list[str] | None = None) -> int:
    from streamanon.anonymizer import Anonymizer, Options
    from streamanon.eval.bench import transcode

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--frames", type=int, default=125)
    p.add_argument("--clip", help="use this clip instead of composing one")
    p.add_argument("--out", help="write the JSON here too")
    args = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="plate-bench-"))
    clip = Path(args.clip) if args.clip else work / "clip720.mp4"
    if not args.clip:
        if not MOT.is_file():
            print(f"error: {MOT} not found (needs ../shared/data)", file=sys.stderr)
            return 2
        write_clip(clip, args.frames)
    configs = {
        "faces": dict(objects="face"),
        "dashcam ssd": dict(objects="face,plate", plate_detector="ssd"),
        "dashcam net": dict(objects="face,plate", plate_detector="net"),
        "dashcam net every 2": dict(objects="face,plate", plate_detector="net", plate_every=2),
        # The speed option for files: faces and plates on one frame in 3, the look-ahead
        # covering back what the next detection finds (streamanon/lookahead.py).
        "faces every 3": dict(objects="face", detect_every=3),
        "dashcam ssd every 3": dict(
            objects="face,plate", plate_detector="ssd", detect_every=3, plate_every=3
        ),
    }
    plain = transcode(clip, work / "plain.mp4")
    res = {"machine": f"{platform.processor() or platform.machine()}, {platform.node()}",
           "decode+encode": {"fps": round(plain.fps, 1)}}  # fmt: skip
    print(f"decode+encode: {plain.fps:.1f} fps", flush=True)
    for name, kw in configs.items():
        anon = Anonymizer(Options(method="blur", **kw))
        e = transcode(clip, work / f"{name}.mp4", anon)
        res[name] = {
            "fps": round(e.fps, 1), "share_of_decode_encode": round(e.fps / plain.fps, 3),
            "ms_per_frame": {k: round(v, 1) for k, v in e.ms_per_frame.items()},
            # Boxes the face stage covered (detections and coasting), not faces judged: the
            # composed clip (MOT20-05 from above) has no face the coverage judge finds.
            "face_boxes": anon.counters.faces, "plates": anon.object_report().get("plate"),
        }  # fmt: skip
        print(f"{name}: {json.dumps(res[name])}", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
