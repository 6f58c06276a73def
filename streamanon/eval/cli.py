"""`streamanon eval ORIGINAL ANONYMIZED`: privacy and utility of an anonymized output."""

from __future__ import annotations

import argparse
import sys

from streamanon.eval.evaluate import EvalConfig, Evaluator
from streamanon.eval.pairs import folder_labels, make_pairs, read_labels
from streamanon.eval.recognizers import available_recognizers
from streamanon.eval.report import plot_thresholds, to_markdown, write_json
from streamanon.eval.sheet import ab_rows, contact_sheet, face_crop, write_png
from streamanon.eval.sheet import write_json as write_sheet_json
from streamanon.registry import make_detector


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
    p.add_argument(
        "--coverage-mmod",
        type=int,
        default=None,
        metavar="N",
        help="coverage reference: add dlib's MMOD CNN upsampled N times (slow; default: "
        "RetinaFace + CenterFace at native resolution)",
    )
    p.add_argument("--json", metavar="OUT.json", help="write the full result here")
    p.add_argument("--markdown", metavar="OUT.md", help="write the tables here")
    p.add_argument("--plot", metavar="OUT.png", help="ReID/IDS vs threshold (needs matplotlib)")
    p.add_argument("--name", default="anonymized", help="row name in the tables")
    p.add_argument(
        "--sheet", metavar="OUT.png", help="contact sheet: original | anonymized face crops"
    )
    p.add_argument(
        "--ab",
        metavar="OTHER",
        help="a second anonymized version (another method) of ORIGINAL: writes a blind A/B "
        "sheet (sides shuffled per row) to --ab-sheet, its key to --ab-sheet + .json",
    )
    p.add_argument("--ab-sheet", metavar="OUT.png", default="ab_sheet.png", help="see --ab")
    return p


def _write_sheets(args, ev: Evaluator, config: EvalConfig) -> None:
    rows = ev.sheet_rows
    if args.sheet and rows:
        write_png(
            contact_sheet([[o, a] for _, o, a in rows], [[k, args.name] for k, _, _ in rows], 2),
            args.sheet,
        )
    if args.ab:
        # The same reference faces, cropped from the second version.
        det = make_detector(config.detector, thresh=config.thresh, input_size=config.input_size,
                            landmarks=False, low_thresh=config.thresh)  # fmt: skip
        orig, a, b = [], [], []
        pairs = make_pairs(args.original, args.ab, args.stride, args.max_frames, args.limit)
        firsts = make_pairs(
            args.original, args.anonymized, args.stride, args.max_frames, args.limit
        )
        for p1, p2 in zip(firsts, pairs, strict=False):
            for box in det(p1.original).xyxy:
                orig.append(face_crop(p1.original, box))
                a.append(face_crop(p1.anonymized, box))
                b.append(face_crop(p2.anonymized, box))
                if len(orig) >= 48:
                    break
            if len(orig) >= 48:
                break
        if not orig:
            print("streamanon eval: no faces for the A/B sheet", file=sys.stderr)
            return
        ab, key = ab_rows(orig, a, b, (args.anonymized, args.ab))
        write_png(contact_sheet(ab, [["original", "left", "right"]] * len(ab), 2), args.ab_sheet)
        write_sheet_json({"sheet": args.ab_sheet, "rows": key}, args.ab_sheet + ".json")


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
    config = EvalConfig(
        detector=args.detector,
        thresh=args.thresh,
        input_size=args.scale or None,
        coverage_mmod=args.coverage_mmod,
    )
    pairs = make_pairs(args.original, args.anonymized, args.stride, args.max_frames, args.limit)
    ev = Evaluator(recs, labels, config)
    for pair in pairs:
        ev.add(pair)
    result = ev.result()
    _write_sheets(args, ev, config)
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
