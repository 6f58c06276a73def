"""The command line's vocabulary: its subcommands, its flags, and what the flags turn into
(`Options`, `EncodeOptions`, live options).

`streamanon.cli` runs the jobs; everything a flag is (its name, default, help) lives here, so
adding a flag touches this module and the option it maps onto.
"""

from __future__ import annotations

import argparse

from streamanon import __version__
from streamanon.anonymize.generative import generator_available
from streamanon.anonymizer import Options, parse_objects
from streamanon.detect.orientations import is_auto, parse_orientations
from streamanon.errors import InputError
from streamanon.registry import (
    DETECTORS,
    REDACTORS,
    STAGES,
    method_help,
    method_names,
    plate_detector_choices,
)
from streamanon.run import EncodeOptions

# name → (module, function taking argv and returning an exit code, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str, str]] = {
    "explain": ("streamanon.explain", "explain_main", "show what the identity distraction changes"),
    "bank": ("streamanon.visual.bank_cli", "bank_main", "build or inspect a delegate face bank"),
    "train": ("streamanon.synth.cli", "train_main", "train the face generator from a config"),
    "engine": ("streamanon.synth.runtime", "engine_main", "build a TensorRT engine for this GPU"),
    "eval": ("streamanon.eval.cli", "eval_main", "privacy/utility metrics: original vs anonymized"),
    "bench": ("streamanon.eval.bench", "bench_main", "fps and per-stage time of each method"),
    "batch": ("streamanon.batch.cli", "batch_main", "many files, resumable, local pool or Ray"),
}

# Subcommands that need an optional extra (checked first: a one-line message, never a traceback).
SUBCOMMAND_EXTRAS = {"explain": "torch", "train": "torch"}

EPILOG = """\
subcommands (streamanon COMMAND --help):
{subs}

examples:
  streamanon drive.mp4                       writes drive_anonymized.mp4
  streamanon a.mp4 b.jpg photos/ -o out/     several inputs into one folder
  streamanon cam.mp4 --method pixelate --report report.json
  streamanon rtsp://cam/live -o rtsp://0.0.0.0:8554/anon
"""


def build_parser() -> argparse.ArgumentParser:
    d = Options()
    subs = "\n".join(f"  {k:<10} {v[2]}" for k, v in SUBCOMMANDS.items())
    p = argparse.ArgumentParser(
        prog="streamanon",
        description="Anonymize faces in videos, images and live streams.",
        epilog=EPILOG.format(subs=subs),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="video files, images, folders of images, or a stream URL / webcam:N",
    )
    p.add_argument(
        "-o",
        "--output",
        metavar="PATH",
        help="output file, or folder (default: <name>_anonymized<ext> beside each input)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    g = p.add_argument_group("anonymization")
    g.add_argument(
        "-m",
        "--method",
        choices=method_names(),
        default=None,
        help=method_help(),
    )
    g.add_argument(
        "--fallback",
        choices=REDACTORS.names(),
        default=d.fallback,
        help="cover for faces the method cannot serve or fails on (default: %(default)s)",
    )
    g.add_argument(
        "--mask-scale",
        type=float,
        default=d.mask_scale,
        help="grow the covered region by this factor (default: %(default)s)",
    )
    g.add_argument(
        "--epsilon",
        type=float,
        default=d.epsilon,
        help="swap/ida: privacy budget of the delegate sampler; lower = more random (default: %(default)s)",
    )
    g.add_argument(
        "--neighbours",
        type=int,
        default=d.neighbours,
        help="swap/ida: candidate delegates per face (default: %(default)s)",
    )
    g.add_argument(
        "--k-classes",
        type=int,
        default=d.k_classes,
        help="ida: identity classes distracted per face (default: %(default)s)",
    )
    g.add_argument(
        "--keep-appearance", action="store_true", help="swap/ida: keep the original appearance"
    )
    g.add_argument(
        "--keep-geometry", action="store_true", help="swap/ida: keep the original face geometry"
    )
    g.add_argument(
        "--seed", type=int, default=d.seed, help="swap/ida: seed for reproducible output"
    )
    g = p.add_argument_group("detection and tracking")
    g.add_argument(
        "--detector",
        default=d.detector,
        help=DETECTORS.help(),
    )
    g.add_argument(
        "-t",
        "--thresh",
        type=float,
        default=d.thresh,
        help="detection score threshold (default: %(default)s)",
    )
    g.add_argument(
        "--scale",
        dest="input_size",
        type=int,
        default=d.input_size,
        metavar="PX",
        help="detect on frames resized to this longest side, 0 = native (default: %(default)s)",
    )
    g.add_argument(
        "--min-face",
        type=float,
        default=d.min_face,
        metavar="PX",
        help="smallest face height to find; below what --scale finds, high-resolution tiles "
        "are searched in turn and small faces re-detected every frame; 0 = --scale pass "
        "only (default: %(default)s)",
    )
    g.add_argument(
        "--tiles-per-frame",
        type=int,
        default=d.tiles_per_frame,
        metavar="N",
        help="high-resolution tiles searched per frame for --min-face (default: enough to "
        "search the whole frame every 8 frames)",
    )
    g.add_argument(
        "--detect-every",
        dest="detect_every",
        type=int,
        default=d.detect_every,
        metavar="N",
        help="detect faces on one frame in N (and on the first frame and every scene cut); the "
        "tracker covers them in between. A file holds the N-1 frames between two detections "
        "and covers a face first found at the next one back on them; a live stream keeps its "
        "frame rate and may cover a face that walks in up to N-1 frames late. mask, swap and "
        "ida draw only on detected frames: between them their faces get the fallback "
        "(default: %(default)s, every frame)",
    )
    g.add_argument(
        "--orientations",
        default="auto",
        metavar="ANGLES",
        help="also detect faces on the frame turned clockwise by these angles: 0,180 finds "
        "upside-down faces (a camera mounted upside down), all (= 0,90,180,270) faces at any "
        "roll (people lying down, body cameras); each angle costs one more detection per frame. "
        "auto: probe the turned frames at the start and one every 16 detections, add a turn "
        "where it shows faces the upright detector misses; 0: upright faces only (and those "
        "rolled up to ~45 degrees) (default: %(default)s)",
    )
    g.add_argument(
        "--coast",
        dest="coast_s",
        type=float,
        default=d.coast_s,
        metavar="SECONDS",
        help="keep covering a lost face this long (default: %(default)s)",
    )
    g = p.add_argument_group("license plates (docs/plates.md)")
    g.add_argument(
        "--objects",
        metavar="LIST",
        help=f"what to anonymize, comma-separated: {STAGES.help()} (default: face;"
        " face,plate with --dashcam)",
    )
    g.add_argument(
        "--dashcam",
        action="store_true",
        help="driving footage preset: anonymize license plates as well as faces",
    )
    g.add_argument(
        "--plate-model",
        metavar="FILE",
        help="your YOLOv9 plate detector (.onnx, open-image-models format) instead of the"
        " shipped one",
    )
    g.add_argument(
        "--plate-detector",
        choices=plate_detector_choices(),
        default=d.plate_detector,
        help="shipped plate detector: net (trained here), ssd (HyperLPR) or auto (the one that"
        " scores best on the held-out photos; docs/plates.md) (default: %(default)s)",
    )
    g.add_argument(
        "--plate-thresh",
        type=float,
        default=d.plate_thresh,
        help="plate detection score threshold (default: the detector's own: ssd 0.2, net its"
        " threshold chosen on the tuning photos)",
    )
    g.add_argument(
        "--plate-levels",
        metavar="PX,PX",
        help="shipped plate detector: image pyramid as longest sides (default: ssd"
        " 320,640,1280; net 320,640 plus high-resolution windows on large frames)",
    )
    g.add_argument(
        "--plate-every",
        type=int,
        default=d.plate_every,
        metavar="N",
        help="run the plate detector every N frames, the tracker predicts the frames between"
        " (default: %(default)s)",
    )
    g = p.add_argument_group("output encoding")
    g.add_argument("--codec", help="video encoder (default: libx264 for mp4/mkv/mov, vp9 for webm)")
    g.add_argument(
        "--crf", type=int, default=20, help="x264/x265 quality, lower = better (default: 20)"
    )
    g.add_argument("--preset", default="veryfast", help="x264/x265 preset (default: veryfast)")
    g.add_argument("--bitrate", help="target bit rate, e.g. 4M (overrides --crf)")
    g.add_argument(
        "--keep-codec",
        action="store_true",
        help="re-encode with the input's codec and bit rate where an encoder exists",
    )
    g.add_argument(
        "--codec-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="pass an option to the encoder (repeatable)",
    )
    g.add_argument(
        "--no-audio", action="store_true", help="drop audio streams (default: copy them)"
    )
    g.add_argument(
        "--keep-metadata",
        action="store_true",
        help="keep identifying metadata (GPS, device serials, comments); stripped by default",
    )
    g = p.add_argument_group("live streams (rtsp://, rtmp://, srt://, webcam:N); see docs/live.md")
    g.add_argument(
        "--rtsp-transport",
        choices=("tcp", "udp", "udp_multicast", "http", "https"),
        default="tcp",
        help="RTSP transport for input and push output (default: %(default)s)",
    )
    g.add_argument(
        "--listen",
        action="store_true",
        default=None,
        help="wait for the camera to push to the input URL (default: when its host is 0.0.0.0)",
    )
    g.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        metavar="SECONDS",
        help="the source counts as lost after this long without data (default: %(default)s)",
    )
    g.add_argument(
        "--no-reconnect",
        dest="reconnect",
        action="store_false",
        help="end the run when the source is lost (default: reconnect with backoff)",
    )
    g.add_argument(
        "--max-outage",
        type=float,
        default=None,
        metavar="SECONDS",
        help="give up when the source stays down this long (default: never)",
    )
    g.add_argument(
        "--segment-time",
        type=float,
        default=None,
        metavar="SECONDS",
        help="record into a new file every SECONDS (file outputs)",
    )
    g.add_argument(
        "--serve",
        action="store_true",
        default=None,
        help="serve an rtsp:// output to clients (default: when its host is 0.0.0.0)",
    )
    g.add_argument(
        "--fill",
        choices=("repeat", "black"),
        default="repeat",
        help="what to send while the source is down (default: %(default)s)",
    )
    g.add_argument(
        "--gop",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="keyframe interval of the live output (default: %(default)s)",
    )
    g.add_argument(
        "--latency-report",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="log throughput and latency every SECONDS, 0 = never (default: %(default)s)",
    )
    g.add_argument(
        "--input-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FFmpeg option for the live input (repeatable)",
    )
    g.add_argument(
        "--output-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="FFmpeg muxer option for the live output (repeatable)",
    )
    g = p.add_argument_group("run")
    g.add_argument("--report", metavar="JSON", help="write a run summary here")
    g.add_argument("--preview", action="store_true", help="show the anonymized frames in a window")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or messages")
    g.add_argument("-v", "--verbose", action="store_true", help="log details")
    g.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads")
    g.add_argument("--version", action="version", version=f"streamanon {__version__}")
    return p


def _parse_bitrate(text: str | None) -> int | None:
    if not text:
        return None
    mult = {"k": 1e3, "m": 1e6, "g": 1e9}.get(text[-1].lower())
    try:
        rate = int(float(text[:-1]) * mult) if mult else int(text)
    except (ValueError, OverflowError):
        raise InputError(f"--bitrate {text!r}: expected a number like 4M or 800k") from None
    if rate <= 0:
        raise InputError(f"--bitrate {text!r}: must be more than 0")
    return rate


def default_method() -> str:
    """ida when the shipped generator is present, else blur."""
    return "ida" if generator_available() else "blur"


# (flag, attribute, lowest, highest, lowest allowed itself): numbers outside these ranges are
# refused before any work (None = no bound on that side; unset optional flags are skipped).
RANGES: tuple[tuple[str, str, float | None, float | None, bool], ...] = (
    ("--thresh", "thresh", 0.0, 1.0, True),
    ("--plate-thresh", "plate_thresh", 0.0, 1.0, True),
    ("--mask-scale", "mask_scale", 0.0, 10.0, False),
    ("--epsilon", "epsilon", 0.0, None, False),
    ("--neighbours", "neighbours", 1, None, True),
    ("--k-classes", "k_classes", 1, None, True),
    ("--scale", "input_size", 0, 16384, True),
    ("--min-face", "min_face", 0.0, None, True),
    ("--tiles-per-frame", "tiles_per_frame", 1, None, True),
    ("--detect-every", "detect_every", 1, 12, True),
    ("--coast", "coast_s", 0.0, None, True),
    ("--plate-every", "plate_every", 1, None, True),
    ("--threads", "threads", 1, 1024, True),
    ("--crf", "crf", 0, 63, True),  # the widest encoder range; each encoder's own: io.video
    ("--timeout", "timeout", 0.0, None, False),
    ("--max-outage", "max_outage", 0.0, None, False),
    ("--segment-time", "segment_time", 0.0, None, False),
    ("--gop", "gop", 0.0, None, False),
    ("--latency-report", "latency_report", 0.0, None, True),
)


def check_ranges(args: argparse.Namespace) -> None:
    """One line naming the flag and its range for a number no stage could use (``--crf 999``)."""
    for flag, attr, low, high, low_ok in RANGES:
        value = getattr(args, attr, None)
        if value is None:
            continue
        if value != value or (low is not None and (value < low or (value == low and not low_ok))):
            bad = True
        else:
            bad = high is not None and value > high
        if bad:
            lo = "" if low is None else f"{'>=' if low_ok else '>'} {low:g}"
            hi = "" if high is None else f"<= {high:g}"
            raise InputError(f"{flag} {value:g}: must be {' and '.join(x for x in (lo, hi) if x)}")


def _orientations(text: str) -> str | tuple[int, ...]:
    """``--orientations`` checked now (one line for a bad value), "auto" kept as a word."""
    turns = parse_orientations(text)
    return "auto" if is_auto(text) else turns


def _options(args: argparse.Namespace):
    check_ranges(args)
    return Options(
        method=args.method or default_method(),
        detector=args.detector,
        thresh=args.thresh,
        input_size=args.input_size or None,
        min_face=args.min_face,
        tiles_per_frame=args.tiles_per_frame,
        detect_every=args.detect_every,
        orientations=_orientations(args.orientations),
        mask_scale=args.mask_scale,
        coast_s=args.coast_s,
        threads=args.threads,
        epsilon=args.epsilon,
        neighbours=args.neighbours,
        k_classes=args.k_classes,
        seed=args.seed,
        keep_appearance=args.keep_appearance,
        keep_geometry=args.keep_geometry,
        **_plate_options(args),
        fallback=args.fallback,
    )


def _plate_options(args: argparse.Namespace) -> dict:
    """--objects / --dashcam / --plate-*: plates are on with --dashcam or when asked for."""
    objects = args.objects or ("face,plate" if args.dashcam else "face")
    levels = None
    if args.plate_levels:
        try:
            levels = tuple(int(v) for v in args.plate_levels.split(","))
        except ValueError:
            msg = f"--plate-levels {args.plate_levels!r}: expected sizes like 320,640"
            raise InputError(msg) from None
    return dict(
        objects=",".join(parse_objects(objects)),
        plate_model=args.plate_model,
        plate_thresh=args.plate_thresh,
        plate_levels=levels,
        plate_detector=args.plate_detector,
        plate_every=args.plate_every,
    )


def _key_values(items: list[str], flag: str) -> dict[str, str]:
    out = {}
    for item in items:
        if "=" not in item:
            raise InputError(f"{flag} {item!r}: expected KEY=VALUE")
        k, v = item.split("=", 1)
        out[k] = v
    return out


def _live_options(args: argparse.Namespace) -> dict:
    return dict(
        rtsp_transport=args.rtsp_transport, listen=args.listen, timeout=args.timeout,
        reconnect=args.reconnect, max_outage=args.max_outage, segment_time=args.segment_time,
        serve=args.serve, fill=args.fill, gop=args.gop, latency_report=args.latency_report,
        input_options=_key_values(args.input_option, "--input-option") or None,
        output_options=_key_values(args.output_option, "--output-option") or None,
        overwrite=args.overwrite,
    )  # fmt: skip


def _encode_options(args: argparse.Namespace):
    check_ranges(args)

    opts = _key_values(args.codec_option, "--codec-option")
    return EncodeOptions(
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        bit_rate=_parse_bitrate(args.bitrate),
        keep_codec=args.keep_codec,
        keep_metadata=args.keep_metadata,
        audio=not args.no_audio,
        codec_options=opts,
    )
