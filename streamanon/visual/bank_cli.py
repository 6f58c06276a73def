"""``streamanon bank ...``: build and inspect delegate banks.

    streamanon bank build FACES_DIR -o engines/bank.npz --license "MIT (SFHQ)"
    streamanon bank info engines/bank.npz

``bank_main`` takes the arguments after ``bank`` and returns the exit status.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from streamanon.visual.align import GEN_SIZE
from streamanon.visual.bank import BankError, DelegateBank, build_bank


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamanon bank",
        description="Build or inspect a delegate bank for visual clue anonymization.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser(
        "build",
        help="detect, landmark, embed and align every face image in a folder",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    b.add_argument(
        "faces_dir", metavar="FACES_DIR", help="folder of face images (searched recursively)"
    )
    b.add_argument("-o", "--output", required=True, help="bank file to write (.npz)")
    b.add_argument(
        "--license",
        required=True,
        help="licence of the images, recorded per image (ship only faces you may redistribute)",
    )
    b.add_argument("--size", type=int, default=GEN_SIZE, help="aligned crop side in pixels")
    b.add_argument("--jpeg-quality", type=int, default=90, help="JPEG quality of the stored crops")
    b.add_argument(
        "--hires-size", type=int, default=2 * GEN_SIZE,
        help="also store the crops at this side for large faces (0: none)",
    )  # fmt: skip
    b.add_argument("--limit", type=int, default=None, help="use only the first N images (sorted)")
    b.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    i = sub.add_parser("info", help="summarise a bank file")
    i.add_argument("bank", help="bank file (.npz)")
    return p


def _info(bank: DelegateBank) -> str:
    yaw, pitch = bank.pose[:, 0], bank.pose[:, 1]
    licences = ", ".join(
        f"{lic} ({n})" for lic, n in zip(*np.unique(bank.licenses, return_counts=True), strict=True)
    )
    return (
        f"{len(bank)} faces, crops {bank.size}px, {bank.jpeg.nbytes / 1e6:.1f} MB of JPEG"
        + (
            f"; {bank.hires_size}px, {bank.hires_jpeg.nbytes / 1e6:.1f} MB\n"
            if bank.hires_jpeg is not None
            else "\n"
        )
        + f"yaw {yaw.min():.0f}..{yaw.max():.0f} deg (median {np.median(yaw):.0f}), "
        f"pitch {pitch.min():.0f}..{pitch.max():.0f} deg (median {np.median(pitch):.0f})\n"
        f"licences: {licences}"
    )


def bank_main(argv: list[str]) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "info":
            print(_info(DelegateBank.load(args.bank)))
            return 0
        if not 1 <= args.jpeg_quality <= 100:
            raise BankError(f"--jpeg-quality must be 1..100, got {args.jpeg_quality}")
        t0 = time.perf_counter()

        def progress(n: int, total: int) -> None:
            if not args.quiet and (n % 50 == 0):
                print(f"\r{n}/{total} images", end="", file=sys.stderr, flush=True)

        report = build_bank(
            args.faces_dir, args.output, args.license, size=args.size,
            jpeg_quality=args.jpeg_quality, hires_size=max(args.hires_size, 0), limit=args.limit,
            progress=progress,
        )  # fmt: skip
    except BankError as e:
        print(f"streamanon bank: error: {e}", file=sys.stderr)
        return 2
    if not args.quiet:
        print(file=sys.stderr)
    for line in report.skipped:
        print(f"skipped {line}", file=sys.stderr)
    print(
        f"wrote {args.output}: {len(report.bank)} faces "
        f"({report.hog_misses} without a HOG box, {len(report.skipped)} skipped) "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    print(_info(report.bank))
    return 0


if __name__ == "__main__":
    raise SystemExit(bank_main(sys.argv[1:]))
