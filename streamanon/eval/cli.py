"""`streamanon eval ORIGINAL ANONYMIZED`: privacy and utility of an anonymized output."""

from __future__ import annotations

import argparse
import sys

from streamanon.eval.evaluate import EvalConfig, evaluate
from streamanon.eval.pairs import folder_labels, make_pairs, read_labels
from streamanon.eval.recognizers import available_recognizers
from streamanon.eval.report import plot_thresholds, to_markdown, write_json


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="streamanon eval",
        description="Compare anonymized output with its original: re-identification and "
        "identity-swap rates per recognizer and threshold, detection rate, background "
        "SSIM/PSNR, pose/expression agreement, and for videos identity consistency, flicker "
        "and leaked frames.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("original", help="original video, image or folder of images")
    p.add_argument("anonymized", help="its anonymized version (same kind; folders paired by name)")
    p.add_argument(
        "--labels",
        metavar="CSV",
        help="identity labels: 'file,identity' rows (file relative to ORIGINAL), or 'folders' "
        "to use each image's folder name; adds ReID vs other photos of the same person",
    )
    p.add_argument(
        "--recognizer",
        action="append",
        default=[],
        metavar="MODEL.onnx",
        help="an ArcFace-style ONNX model (112x112 aligned input); repeatable",
    )
    p.add_argument("--norm-mean", type=float, default=127.5, help="ONNX input: (x - mean) / std")
    p.add_argument("--norm-std", type=float, default=127.5, help="ONNX input: (x - mean) / std")
    p.add_argument("--bgr", action="store_true", help="ONNX model takes BGR (default RGB)")
    p.add_argument("--detector", default="centerface", help="face detector for the reference")
    p.add_argument("--thresh", type=float, default=0.5, help="detection score threshold")
    p.add_argument("--scale", type=int, default=640, help="detector input size, 0 = native")
    p.add_argument("--stride", type=int, default=1, help="videos: every N-th frame")
    p.add_argument("--max-frames", type=int, default=None, help="videos: at most this many frames")
    p.add_argument("--limit", type=int, default=None, help="folders: at most this many images")
    p.add_argument("--json", metavar="OUT.json", help="write the full result here")
    p.add_argument("--markdown", metavar="OUT.md", help="write the tables here")
    p.add_argument("--plot", metavar="OUT.png", help="ReID/IDS vs threshold (needs matplotlib)")
    p.add_argument("--name", default="anonymized", help="row name in the tables")
    return p


def eval_main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    labels = None
    if args.labels == "folders":
        labels = folder_labels(args.original)
    elif args.labels:
        labels = read_labels(args.labels)
    recs = available_recognizers(
        args.recognizer, mean=args.norm_mean, std=args.norm_std, rgb=not args.bgr
    )
    config = EvalConfig(detector=args.detector, thresh=args.thresh, input_size=args.scale or None)
    pairs = make_pairs(args.original, args.anonymized, args.stride, args.max_frames, args.limit)
    result = evaluate(pairs, recs, labels, config)
    results = {args.name: result}
    md = to_markdown(results)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    if args.json:
        write_json(result, args.json)
    if args.plot and not plot_thresholds(results, args.plot):
        print("streamanon eval: matplotlib is not installed; no plot written", file=sys.stderr)
    return 0
