"""`streamanon INPUT... [options]` and its subcommands.

Errors we expect (bad input, unwritable output, missing model file) end the run with one line
on stderr and a non-zero exit; a traceback means a bug.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from streamanon import __version__
from streamanon.errors import InputError, StreamanonError

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
    from streamanon.anonymize.classic import METHODS as CLASSIC
    from streamanon.anonymize.registry import method_help, method_names
    from streamanon.anonymizer import Options

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
        choices=CLASSIC,
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
        help="centerface (default), dlib-hog, dlib-mmod, scrfd (your insightface model file)",
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
        "search the whole frame every 4 frames)",
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
        help="what to anonymize: face, plate or face,plate (default: face; face,plate with"
        " --dashcam)",
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
        "--plate-thresh",
        type=float,
        default=d.plate_thresh,
        help="plate detection score threshold (default: %(default)s)",
    )
    g.add_argument(
        "--plate-levels",
        metavar="PX,PX",
        help="shipped plate detector: image pyramid as longest sides (default: 320,640,1280;"
        " 640 alone is ~5x faster and finds fewer plates)",
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
        return int(float(text[:-1]) * mult) if mult else int(text)
    except ValueError:
        raise InputError(f"--bitrate {text!r}: expected a number like 4M or 800k") from None


def default_method() -> str:
    """ida when the shipped generator is present, else blur."""
    try:
        from streamanon.anonymize.generative import generator_available
    except ImportError:
        return "blur"
    return "ida" if generator_available() else "blur"


def _options(args: argparse.Namespace):
    from streamanon.anonymizer import Options

    return Options(
        method=args.method or default_method(),
        detector=args.detector,
        thresh=args.thresh,
        input_size=args.input_size or None,
        min_face=args.min_face,
        tiles_per_frame=args.tiles_per_frame,
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
    from streamanon.anonymize.objects import parse_objects

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
    from streamanon.run import EncodeOptions

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


class _Progress:
    """tqdm bar over frames with faces/s in the postfix; silent when quiet."""

    def __init__(self, total: int | None, desc: str, quiet: bool) -> None:
        self.bar = None
        if not quiet:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total or None,
                desc=desc,
                unit="f",
                dynamic_ncols=True,
                leave=True,
                file=sys.stderr,
            )
        self.faces = 0

    def __call__(self, frame) -> None:
        if self.bar is None:
            return
        self.faces += len(frame.faces)
        self.bar.update(1)
        if self.bar.n % 10 == 0:
            self.bar.set_postfix(faces=self.faces, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _preview_fn(enabled: bool):
    if not enabled:
        return None
    if not (
        os.environ.get("DISPLAY")
        or os.environ.get("WAYLAND_DISPLAY")
        or sys.platform in ("win32", "darwin")
    ):
        logging.getLogger("streamanon").warning("--preview: no display found; preview disabled")
        return None
    import cv2

    def show(frame) -> None:
        try:
            cv2.imshow("streamanon (anonymized)", frame.image)
            cv2.waitKey(1)
        except cv2.error:
            logging.getLogger("streamanon").warning("--preview: this OpenCV build has no GUI")

    return show


def anonymize_main(argv: list[str]) -> int:
    from streamanon.anonymizer import Anonymizer
    from streamanon.pipeline import Cancelled
    from streamanon.run import (
        anonymize_folder,
        anonymize_image,
        anonymize_video,
        default_output,
        input_kind,
    )

    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="streamanon: %(message)s",
    )
    opts = _options(args)
    encode = _encode_options(args)
    many = len(args.inputs) > 1
    if many and args.output and Path(args.output).is_file():
        raise InputError(f"-o {args.output}: several inputs need an output folder")
    if many and args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
    kinds = [(src, input_kind(src)) for src in args.inputs]  # fail on a bad input before any work
    stop = threading.Event()
    _install_signal_handlers(stop)
    reports = []
    failures = 0
    shared: list[Anonymizer] = []

    def anonymizer() -> Anonymizer:
        """One Anonymizer for all file inputs (models built once), reset between inputs."""
        if not shared:
            shared.append(Anonymizer(opts))
        else:
            shared[0].reset()
        return shared[0]

    for src, kind in kinds:
        try:
            if kind == "stream":
                from streamanon.live import run_live

                reports.append(
                    run_live(
                        src,
                        args.output,
                        opts,
                        encode,
                        quiet=args.quiet,
                        preview=_preview_fn(args.preview),
                        stop=stop,
                        **_live_options(args),
                    )
                )
                continue
            dst = default_output(src, args.output, many)
            if kind == "image":
                r = anonymize_image(
                    src,
                    dst,
                    anonymizer(),
                    overwrite=args.overwrite,
                    keep_metadata=args.keep_metadata,
                )
            elif kind == "folder":
                r = anonymize_folder(
                    src,
                    dst,
                    anonymizer,
                    overwrite=args.overwrite,
                    encode=encode,
                    stop=stop,
                )
                failures += len(r.errors)
            else:
                from streamanon.io.video import VideoReader

                with VideoReader(src, audio=False) as probe:
                    total = probe.info.frames
                bar = _Progress(total, Path(src).name, args.quiet)
                try:
                    r = anonymize_video(
                        src,
                        dst,
                        anonymizer(),
                        encode=encode,
                        overwrite=args.overwrite,
                        progress=bar,
                        stop=stop,
                        preview=_preview_fn(args.preview),
                    )
                finally:
                    bar.close()
            reports.append(r)
            if not args.quiet:
                print(
                    f"{src} -> {r.output}: {r.frames} frame(s), {r.faces} face(s) anonymized"
                    + (
                        f", {r.corrupt_packets} corrupt packet(s) skipped"
                        if r.corrupt_packets
                        else ""
                    )
                    + (
                        f", {r.missing_frames} frame(s) missing (file ends early)"
                        if r.missing_frames > 1
                        else ""
                    ),
                    file=sys.stderr,
                )
        except Cancelled:
            print(
                "streamanon: interrupted; no output written for the current input", file=sys.stderr
            )
            return 130
        except StreamanonError as exc:
            if not many:
                raise
            failures += 1
            print(f"streamanon: error: {exc}", file=sys.stderr)
    failed = [e for r in reports for e in getattr(r, "errors", [])]
    if failed:
        print(f"streamanon: {len(failed)} file(s) not anonymized:", file=sys.stderr)
        for e in failed:
            print(f"  {e['input']}: {e['error']}", file=sys.stderr)
    if args.report:
        data = {
            "method": opts.method,
            "options": asdict(opts),
            "inputs": [asdict(r) for r in reports],
            "failures": failures,
        }
        Path(args.report).write_text(json.dumps(data, indent=2, default=str))
    return 1 if failures else 0


def _install_signal_handlers(stop: threading.Event) -> None:
    def handler(signum, _frame) -> None:
        stop.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        if hasattr(signal, "SIGHUP"):  # a closed terminal: stop cleanly, leave no temp file
            signal.signal(signal.SIGHUP, handler)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            module, func, _ = SUBCOMMANDS[argv[0]]
            extra = SUBCOMMAND_EXTRAS.get(argv[0])
            if extra is not None:
                from streamanon.anonymize.registry import require_extra

                require_extra(extra, f"streamanon {argv[0]}")
            try:
                fn = getattr(importlib.import_module(module), func)
            except ModuleNotFoundError as exc:
                print(
                    f"streamanon {argv[0]}: needs {exc.name}, which is not installed",
                    file=sys.stderr,
                )
                return 4
            return int(fn(argv[1:]) or 0)
        return anonymize_main(argv)
    except StreamanonError as exc:
        print(f"streamanon: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        # A lazily imported optional dependency: name the extra that brings it.
        from streamanon.anonymize.registry import EXTRAS

        extra = next((e for e, mods in EXTRAS.items() if exc.name in mods), None)
        if extra is None:
            raise
        print(
            f'streamanon: error: {exc.name} is not installed: pip install "streamanon[{extra}]"',
            file=sys.stderr,
        )
        return 4
    except KeyboardInterrupt:
        print("streamanon: interrupted; no output written for the current input", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 141


if __name__ == "__main__":
    sys.exit(main())
