"""`streamanon batch SRC -o OUT_DIR [--workers N] [--ray [ADDRESS]] [anonymize options]`."""

from __future__ import annotations

import argparse
import json
import logging
import re
import signal
import sys
from dataclasses import asdict
from pathlib import Path

from streamanon.batch.journal import Journal, fingerprint
from streamanon.batch.local import LocalBackend, cpu_count, default_workers
from streamanon.batch.lock import FolderLock
from streamanon.batch.plan import discover
from streamanon.batch.progress import format_table
from streamanon.batch.ray_backend import RayBackend
from streamanon.batch.runner import WorkerSetupError, run_batch, summary_rows
from streamanon.batch.worker import WorkerConfig
from streamanon.cli import _encode_options, _options
from streamanon.cli import build_parser as main_parser
from streamanon.errors import InputError, OutputError, StreamanonError
from streamanon.io.atomic import check_output, write_text_atomic
from streamanon.registry import get_spec

# The main command's option groups that do NOT apply to a batch (inputs/outputs, live streams,
# its run flags: batch has its own). Every other group (anonymization, detection, plates,
# encoding, ...) is taken from the main parser as is, so both commands take the same options.
MAIN_ONLY_GROUPS = ("positional arguments", "options", "optional arguments", "live streams", "run")

_ADDRESS = re.compile(r"^(auto|local|ray://.+|\[?[\w.:-]+\]?:\d+)$")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamanon batch",
        description="Anonymize every video and image under a folder (or listed in a manifest) "
        "into OUT_DIR, with the same relative paths. Resumable: a rerun skips finished files.",
        epilog="examples:\n"
        "  streamanon batch drives/ -o anon/                   local process pool\n"
        "  streamanon batch list.csv -o anon/ --workers 4      files from a manifest\n"
        "  streamanon batch drives/ -o anon/ --ray             a local Ray cluster\n"
        "  streamanon batch drives/ -o anon/ --ray=10.0.0.5:6379 --chunk-seconds 600\n",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "src",
        nargs="?",
        metavar="SRC",
        help="folder (searched recursively) or manifest (.txt: one path per line; "
        ".csv: a 'path' column, optional 'output' column)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs in OUT_DIR that this batch's journal did not write, or that "
        "were made with other options",
    )
    g = p.add_argument_group("batch")
    g.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes (default: one per CPU of this machine or the Ray cluster, "
        "fewer if its memory cannot hold ~1 GB each)",
    )
    g.add_argument(
        "--threads",
        type=int,
        default=None,
        metavar="N",
        help="threads per worker (default: the CPUs divided among the workers)",
    )
    g.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: alone, start a local cluster; with an address (host:port, auto, "
        'ray://...) join that cluster. Needs: pip install "streamanon[ray]"',
    )
    g.add_argument(
        "--gpus-per-worker",
        type=float,
        default=None,
        metavar="G",
        help="Ray: GPUs each worker asks for, fractions allowed (default: 1 for swap/ida "
        "when the cluster has GPUs, else 0)",
    )
    g.add_argument(
        "--retries",
        type=int,
        default=2,
        metavar="N",
        help="retry a file whose worker died (killed, out of memory) N times (default: 2)",
    )
    g.add_argument(
        "--chunk-seconds",
        type=float,
        default=None,
        metavar="S",
        help="split videos longer than 1.5*S into chunks of about S seconds at keyframes, "
        "run them in parallel and join them losslessly (default: 0 = whole files; "
        "600 with --ray)",
    )
    g.add_argument(
        "--chunk-overlap",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds tracked before each cut so faces in view are covered from the chunk's "
        "first frame (default: %(default)s)",
    )
    g.add_argument("--report", metavar="JSON", help="write the batch report here")
    g.add_argument("-q", "--quiet", action="store_true", help="no progress bar or table")
    g.add_argument("-v", "--verbose", action="store_true", help="log details")
    _copy_groups(main_parser(), p)
    return p


def _copy_groups(src: argparse.ArgumentParser, dst: argparse.ArgumentParser) -> None:
    """Put ``src``'s option groups (all but `MAIN_ONLY_GROUPS`) on ``dst``: the same Action
    objects, so each option is defined once (argparse's ``parents=`` does this for a whole
    parser; here only some groups apply)."""
    for group in src._action_groups:
        title = group.title or ""
        if any(title.startswith(t) for t in MAIN_ONLY_GROUPS):
            continue
        mine = dst.add_argument_group(title, group.description)
        for action in group._group_actions:
            mine._add_action(action)


def _parse(argv: list[str]) -> argparse.Namespace:
    p = build_parser()
    args = p.parse_args(argv)
    # `--ray SRC -o OUT`: argparse gives SRC to --ray; a path is not an address.
    if args.src is None and args.ray not in (None, "local") and not _ADDRESS.match(args.ray):
        args.src, args.ray = args.ray, "local"
    if args.src is None:
        p.error("the following arguments are required: SRC")
    if args.workers is not None and args.workers < 1:
        p.error("--workers must be at least 1")
    if args.retries < 0:
        p.error("--retries must be 0 or more")
    return args


def batch_main(argv: list[str]) -> int:
    args = _parse(argv)
    level = logging.DEBUG if args.verbose else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=level, format="streamanon batch: %(message)s")
    log = logging.getLogger("streamanon.batch")
    opts = _options(args)
    encode = _encode_options(args)
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: not a folder")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out_dir}: cannot create ({exc.strerror})") from None
    if args.report:  # refused before the work, not after it
        check_output(None, args.report, overwrite=True)
    if Path(args.src).resolve() == out_dir.resolve():
        raise OutputError(f"{out_dir}: the output folder is the source folder")
    # One batch per output folder: a second one is refused before it touches anything.
    with FolderLock(out_dir):
        return _run(args, out_dir, opts, encode, log, level)


def _run(args, out_dir: Path, opts, encode, log: logging.Logger, level: int) -> int:
    """The batch itself, run while this process holds ``out_dir``'s lock."""
    plan = discover(args.src, out_dir)
    if not plan.items:
        raise InputError(f"{args.src}: no videos or images found")
    journal = Journal(out_dir)
    fp = fingerprint(opts, encode)
    if not args.overwrite:
        other = journal.other_options(fp)
        if other:
            raise OutputError(
                f"{out_dir / sorted(other)[0]}: made with other options than this batch's"
                + (f" (and {len(other) - 1} more file(s))" if len(other) > 1 else "")
                + "; use another output folder, or --overwrite to redo them"
            )
        foreign = [
            i.rel for i in plan.items if (out_dir / i.rel).exists() and i.rel not in journal.entries
        ]
        if foreign:
            raise OutputError(
                f"{out_dir / foreign[0]}: already exists and this batch's journal does not list "
                f"it ({len(foreign)} such file(s); use --overwrite to replace them)"
            )
    config = WorkerConfig(opts, encode, log_level=logging.WARNING if not args.verbose else level)
    chunk_seconds = args.chunk_seconds
    if args.ray is not None:
        backend = RayBackend(
            config, args.ray, workers=args.workers, threads=args.threads,
            gpus=args.gpus_per_worker, wants_gpu=get_spec(opts.method).extra == "torch",
        )  # fmt: skip
        if chunk_seconds is None:
            chunk_seconds = 600.0
        where = backend.describe()
    else:
        cpus = cpu_count()
        workers = args.workers or default_workers(cpus)
        config.threads = args.threads or max(1, cpus // workers)
        backend = LocalBackend(config, workers)
        where = f"local: {workers} worker(s) x {config.threads} thread(s)"
    if not args.quiet:
        n_done = sum(1 for i in plan.items if journal.is_done(i, fp, out_dir))
        print(
            f"streamanon batch: {len(plan.items)} file(s) ({_hours(plan.total_seconds)} of "
            f"video), {n_done} done earlier, {len(plan.skipped)} not media; {where}",
            file=sys.stderr,
        )
    previous = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        res = run_batch(
            plan, out_dir, backend, journal, fp, encode=encode, retries=args.retries,
            chunk_seconds=chunk_seconds or 0.0, chunk_overlap=args.chunk_overlap,
            quiet=args.quiet,
        )  # fmt: skip
    except WorkerSetupError as exc:
        err = StreamanonError(f"workers cannot start: {exc}")
        err.exit_code = 4
        raise err from None
    finally:
        backend.close()
        journal.close()
        signal.signal(signal.SIGTERM, previous)
    rows = summary_rows(res)
    hours = res.media_seconds / 3600
    rate = res.media_seconds / res.seconds if res.seconds else 0.0
    if args.report:
        data = {
            "source": str(args.src),
            "output": str(out_dir),
            "backend": where,
            "options": asdict(opts),
            "encode": asdict(encode),
            "interrupted": res.interrupted,
            "totals": {
                "files": len(plan.items),
                "done": len(res.done),
                "failed": len(res.failed),
                "done_earlier": len(res.earlier),
                "not_media": len(res.skipped),
                "frames": res.frames,
                "video_hours": round(hours, 4),
                "seconds": round(res.seconds, 2),
                "fps": round(res.frames / res.seconds, 2) if res.seconds else 0.0,
                "video_hours_per_hour": round(rate, 3),
            },
            "files": res.done + res.failed,
            "done_earlier": res.earlier,
            "not_media": [{"file": f, "reason": r} for f, r in res.skipped],
        }
        write_text_atomic(args.report, json.dumps(data, indent=2, default=str))
    if not args.quiet:
        table = format_table(rows)
        if table:
            print(table, file=sys.stderr)
        print(
            f"streamanon batch: {len(res.done)} done, {len(res.failed)} failed, "
            f"{len(res.earlier)} done earlier, {len(res.skipped)} not media; {res.frames} "
            f"frames in {res.seconds:.1f} s ({res.frames / max(res.seconds, 1e-9):.1f} fps, "
            f"{rate:.2f} h of video per hour)",
            file=sys.stderr,
        )
    for line in res.failed:
        print(f"streamanon batch: FAILED {line['file']}: {line.get('error')}", file=sys.stderr)
    if res.interrupted:
        print(
            "streamanon batch: interrupted; finished files are kept, rerun the same command "
            "to do the rest",
            file=sys.stderr,
        )
        return 130
    log.debug("journal: %s", journal.path)
    return 1 if res.failed else 0


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _raise_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt
