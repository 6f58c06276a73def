"""`streamanon INPUT... [options]` and its subcommands.

Errors we expect (bad input, unwritable output, missing model file) end the run with one line
on stderr and a non-zero exit; a traceback means a bug.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from pathlib import Path

from streamanon.anonymizer import Anonymizer
from streamanon.cli_args import (  # noqa: F401 - re-exported: the flags live in cli_args
    EPILOG,
    SUBCOMMAND_EXTRAS,
    SUBCOMMANDS,
    _encode_options,
    _key_values,
    _live_options,
    _options,
    _parse_bitrate,
    _plate_options,
    build_parser,
    default_method,
)
from streamanon.errors import InputError, StreamanonError
from streamanon.io.atomic import check_name_lengths, check_output, write_text_atomic
from streamanon.io.images import IMAGE_EXTS
from streamanon.io.sources import VIDEO_EXTS, is_live_source
from streamanon.io.video import VideoReader
from streamanon.pipeline import Cancelled
from streamanon.registry import EXTRAS, require_extra
from streamanon.run import (
    anonymize_folder,
    anonymize_image,
    anonymize_video,
    default_output,
    input_kind,
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
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO,
        format="streamanon: %(message)s",
    )
    opts = _options(args)
    encode = _encode_options(args)
    if args.output:
        check_name_lengths(args.output)
    if args.report:  # refused before the work, not after it
        check_output(None, args.report, overwrite=True)
    many = len(args.inputs) > 1
    if many and args.output and _names_a_file(args.output):
        raise InputError(
            f"-o {args.output}: several inputs need an output folder, not a file name "
            f"(end it with / to make a folder of that name)"
        )
    if many and args.output:
        Path(args.output).mkdir(parents=True, exist_ok=True)
    kinds = [(src, input_kind(src)) for src in args.inputs]  # fail on a bad input before any work
    stop = threading.Event()
    _install_signal_handlers(stop)
    ctrl_c = _catch_sigint()
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

    if any(kind != "stream" for _, kind in kinds):
        anonymizer()  # models load (and a bad --plate-model is refused) before any work
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
                if ctrl_c.is_set():  # the live output was closed cleanly; still an interrupt
                    print("streamanon: interrupted; the live output was closed", file=sys.stderr)
                    return 130
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
        write_text_atomic(args.report, json.dumps(data, indent=2, default=str))
    return 1 if failures else 0


def _names_a_file(output: str) -> bool:
    """True when ``-o`` is a file name (an existing file, or a media extension not ending in
    a separator and not an existing folder): it cannot take several inputs."""
    p = Path(output)
    if is_live_source(output) or p.is_dir() or output.endswith(("/", os.sep)):
        return False
    return p.is_file() or p.suffix.lower() in VIDEO_EXTS | IMAGE_EXTS


def _catch_sigint() -> threading.Event:
    """Ctrl-C still raises KeyboardInterrupt, and is remembered: a live run that ends on it
    returns normally (its output closed cleanly), yet the command must exit 130."""
    hit = threading.Event()
    if threading.current_thread() is threading.main_thread():

        def handler(signum, frame) -> None:
            hit.set()
            raise KeyboardInterrupt

        signal.signal(signal.SIGINT, handler)
    return hit


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
    except OSError as exc:
        # The file system refused a name or a path (too long, permission, full disk) somewhere
        # we did not expect it: still one line, never a traceback.
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"streamanon: error: {where}{exc.strerror or exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
