"""int8 CenterFace for ONNX Runtime's CPU provider (issue 23, item 2), reproducibly.

    python scripts/quantize_centerface.py [-o engines/centerface_int8.onnx]
        [--method percentile|minmax] [--percentile 99.99] [--fp32-first 3] [--exclude-head]
        [--reduce-range] [--format qdq|qoperator]

Steps: the shipped fp32 graph (engines/centerface.onnx) is given dynamic spatial dimensions
(as the detector does at load), its three BatchNormalizations are folded into the
ConvTransposes before them (ONNX Runtime folds BN only into Conv, and an unfolded BN would
stay in float between two int8 ops), the opset is raised 9 -> 13 (per-channel QDQ needs it),
and `onnxruntime.quantization.quantize_static` writes static QDQ int8 (uint8 activations,
per-channel int8 weights, U8S8: the VNNI path of MLAS). The first FP32_FIRST convs stay in
float. Activation ranges: MinMax, then (default) each tensor's range clipped to the widest
99.99th percentile over the calibration inputs (`clipped_ranges`), fed back through ONNX
Runtime's calibration cache. Chosen on held-out photos (normal and darkened), never on the
coverage gate: docs/benchmarks.md, "int8 CenterFace".

Calibration split (never the coverage judge's clips or photos, nor the images the test and
the agreement check use; docs/benchmarks.md "int8 CenterFace"):
- CALIB_PHOTOS: ../shared/data/groups/ultralight_crowd/{2,3,5,6,8,9,10,12,13,16,17,18}.jpg
  (crowds; 1, 11, 15, 26, 27 make the crowd1080/crowd4k coverage clips: excluded) and
  groups/ultralight_masked/* (groups with masks);
- CALIB_VIDEOS: frames of videos/dlib_MOT20-05-raw_even_shorter.mp4 (tiny faces, night) and
  of the LivePortrait talking heads d3 and d10 (large faces).
Held out (agreement check, tests/test_centerface_int8.py): ultralight_crowd/{19..25},
groups/misc/*, groups/dlib_faces/*. The coverage gate's clips (crowd1080, crowd4k: photos
1, 11, 15, 26, 27; Hamilton; classroom) are used by neither.

Inputs are what `MultiScaleDetector` feeds the network: the base pass (longest side 640),
high-resolution tiles (the source at 16/24 = 0.667 of its size) and 160x160 refresh windows
around faces, each laid on a 640x384 canvas (`network_inputs`). Everything is deterministic
(sorted files, fixed frame indices and crops, no randomness): a rerun writes the same bytes.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
SRC = REPO / "engines" / "centerface.onnx"
OUT = REPO / "engines" / "centerface_int8.onnx"

CALIB_CROWD = ["2", "3", "5", "6", "8", "9", "10", "12", "13", "16", "17", "18"]
CALIB_MASKED = "ultralight_masked"
# (video, frame indices)
CALIB_VIDEOS = [
    ("dlib_MOT20-05-raw_even_shorter.mp4", [0, 40, 80, 120]),
    ("liveportrait_driving_d3.mp4", [0, 100]),
    ("liveportrait_driving_d10.mp4", [0, 100]),
]
# Used by the coverage gate (tests/crowd.py, tests/test_coverage.py): never calibrated on.
COVERAGE_CROWD = {"1", "11", "15", "26", "27"}

HIRES = 16.0 / 24.0  # multiscale.hires_scale() at the default min_face=24
WINDOW = 160
CANVAS = (384, 640)  # (h, w): every calibration input, see network_inputs
# The stem (3x3 conv, depthwise 3x3, linear 1x1 bottleneck) stays in float: quantized, it
# loses dark, low-contrast faces (held-out photos darkened to 15 %: 83.7 % of the fp32 faces
# kept with it in int8, 97.4 % with it in float, at no measurable cost in speed).
FP32_FIRST = 3
METHOD, PERCENTILE = "percentile", 99.99
# The three CenterFace heads (heatmap, scale, offset, landmarks) read layer 535's features.
HEAD_NODES = ("536", "538", "539", "540")


def calibration_images() -> list[np.ndarray]:
    """The calibration frames (BGR), in a fixed order."""
    paths = [SHARED / "groups" / "ultralight_crowd" / f"{n}.jpg" for n in CALIB_CROWD]
    paths += sorted((SHARED / "groups" / CALIB_MASKED).iterdir())
    assert not {p.stem for p in paths if "crowd" in p.parent.name} & COVERAGE_CROWD
    out = []
    for p in paths:
        im = cv2.imread(str(p))
        if im is None:
            raise SystemExit(f"error: cannot read calibration image {p}")
        out.append(im)
    for name, idx in CALIB_VIDEOS:
        cap = cv2.VideoCapture(str(SHARED / "videos" / name))
        frames = []
        ok, f = cap.read()
        while ok:
            frames.append(f)
            ok, f = cap.read()
        cap.release()
        if not frames:
            raise SystemExit(f"error: cannot read calibration video {name}")
        out += [frames[min(i, len(frames) - 1)] for i in idx]
    return out


def _pad32(im: np.ndarray) -> np.ndarray:
    h, w = im.shape[:2]
    return cv2.copyMakeBorder(im, 0, -h % 32, 0, -w % 32, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _scaled(im: np.ndarray, s: float) -> np.ndarray:
    h, w = im.shape[:2]
    interp = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(im, (max(1, round(w * s)), max(1, round(h * s))), interpolation=interp)


def _fit(im: np.ndarray) -> np.ndarray:
    """`im` on a CANVAS-sized black canvas (top left), shrunk to fit if larger."""
    h, w = im.shape[:2]
    s = min(1.0, CANVAS[0] / h, CANVAS[1] / w)
    if s < 1.0:
        im = _scaled(im, s)
    out = np.zeros((*CANVAS, 3), np.uint8)
    out[: im.shape[0], : im.shape[1]] = im[: CANVAS[0], : CANVAS[1]]
    return out


def network_inputs(images: list[np.ndarray], faces: list[np.ndarray]) -> list[np.ndarray]:
    """NCHW float blobs (RGB 0..255) of what the detector feeds the network, per image: the
    base pass (longest side 640), one high-resolution tile (the centre of a 1080p-like frame
    at 0.667) and the refresh windows (160 px around its faces at 0.667, 2x4 to a canvas).
    All are laid on one CANVAS (the base pass of a 16:9 frame): the histogram calibrators
    (percentile, entropy) need equal shapes, and convolutions are local, so a tile or a
    window on a black canvas gives the activations it gives alone."""
    blobs = []
    side = int(WINDOW / HIRES)  # a window's side in source pixels
    for im, boxes in zip(images, faces, strict=True):
        h, w = im.shape[:2]
        views = [_fit(_scaled(im, 640 / max(h, w)))]
        src = _scaled(im, 1920 / max(h, w)) if max(h, w) > 1920 else im
        hi = _scaled(src, HIRES)
        y0, x0 = max(0, (hi.shape[0] - CANVAS[0]) // 2), max(0, (hi.shape[1] - CANVAS[1]) // 2)
        views.append(_fit(hi[y0 : y0 + CANVAS[0], x0 : x0 + CANVAS[1]]))
        # Largest faces first; at most 8 windows (one canvas) per image.
        order = np.argsort(-(boxes[:, 3] - boxes[:, 1])) if len(boxes) else []
        wins = []
        for b in boxes[order][:8] if len(boxes) else []:
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
            x1 = int(np.clip(cx - side // 2, 0, max(w - side, 0)))
            y1 = int(np.clip(cy - side // 2, 0, max(h - side, 0)))
            crop = _scaled(im[y1 : y1 + side, x1 : x1 + side], HIRES)
            cell = np.zeros((WINDOW, WINDOW, 3), np.uint8)
            cell[: crop.shape[0], : crop.shape[1]] = crop[:WINDOW, :WINDOW]
            wins.append(cell)
        if wins:
            wins += [np.zeros_like(wins[0])] * (-len(wins) % 4)
            rows = [np.hstack(wins[i : i + 4]) for i in range(0, len(wins), 4)]
            views.append(_fit(np.vstack(rows)))
        blobs += [cv2.dnn.blobFromImage(v, 1.0, swapRB=True, crop=False) for v in views]
    return blobs


def prepared_fp32(dst: Path) -> None:
    """The fp32 graph with dynamic sizes, BN folded into ConvTranspose, opset 13."""
    import onnx
    from onnx import numpy_helper, version_converter

    sys.path.insert(0, str(REPO))
    from streamanon.detect.centerface import _dynamic_model_bytes

    model = onnx.load_from_string(_dynamic_model_bytes(SRC))
    g = model.graph
    inits = {i.name: i for i in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    for bn in [n for n in g.node if n.op_type == "BatchNormalization"]:
        ct = producer[bn.input[0]]
        assert ct.op_type == "ConvTranspose" and len(ct.input) == 2
        gamma, beta, mean, var = (numpy_helper.to_array(inits[x]) for x in bn.input[1:5])
        eps = next(a.f for a in bn.attribute if a.name == "epsilon")
        s = gamma / np.sqrt(var + eps)
        w = numpy_helper.to_array(inits[ct.input[1]])  # (C_in, C_out, kh, kw), group 1
        inits[ct.input[1]].CopyFrom(
            numpy_helper.from_array((w * s[None, :, None, None]).astype(np.float32), ct.input[1])
        )
        bias_name = ct.input[1] + ".bias"
        g.initializer.append(numpy_helper.from_array((beta - mean * s).astype(np.float32), bias_name))
        ct.input.append(bias_name)
        ct.output[0] = bn.output[0]
        g.node.remove(bn)
    for n in g.node:  # names, so that nodes can be excluded from quantization
        n.name = n.name or f"{n.op_type}_{n.output[0]}"
    used = {x for n in g.node for x in n.input}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    model = version_converter.convert_version(model, 13)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))


def fp32_faces(path: Path, images: list[np.ndarray]) -> list[np.ndarray]:
    """Faces (score >= 0.5, source px) found by the fp32 network, to place the windows."""
    import onnxruntime as ort

    from streamanon.detect.centerface import decode

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = []
    for im in images:
        s = min(1.0, 1280 / max(im.shape[:2]))
        blob = cv2.dnn.blobFromImage(_pad32(_scaled(im, s)), 1.0, swapRB=True, crop=False)
        heat, scale, off, lms = sess.run(None, {"input.1": blob})
        boxes, score, _ = decode(heat[0], scale[0], off[0], lms[0], 0.5)
        out.append(boxes / s)
    return out


def clipped_ranges(prep: Path, blobs: list[np.ndarray], names: list[str], pct: float) -> dict:
    """Per tensor, (low, high): the `pct` percentile of each input's values (100 - pct for the
    low end), the widest over the inputs. ONNX Runtime's own percentile calibrator keeps
    every activation of every input (it ran out of 23 GB here); this keeps two numbers."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(prep))
    have = {o.name for o in model.graph.output}
    model.graph.output.extend(onnx.ValueInfoProto(name=n) for n in names if n not in have)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    lo = {n: np.inf for n in names}
    hi = {n: -np.inf for n in names}
    for b in blobs:
        for n, v in zip(names, sess.run(names, {"input.1": b}), strict=True):
            q_lo, q_hi = np.percentile(v, [100 - pct, pct])
            lo[n], hi[n] = min(lo[n], float(q_lo)), max(hi[n], float(q_hi))
    return {n: (lo[n], hi[n]) for n in names}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=OUT)
    ap.add_argument("--method", choices=["minmax", "percentile"], default=METHOD)
    ap.add_argument("--percentile", type=float, default=PERCENTILE)
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--reduce-range", action="store_true", help="7-bit weights")
    ap.add_argument("--exclude-head", action="store_true", help="keep the head convs in fp32")
    ap.add_argument(
        "--fp32-first", type=int, default=FP32_FIRST, help="keep the first N convs in fp32"
    )
    ap.add_argument("--fp32-out", type=Path, help="also keep the prepared fp32 graph here")
    args = ap.parse_args(argv)
    if not SRC.is_file() or not SHARED.is_dir():
        print(f"error: need {SRC} and {SHARED}", file=sys.stderr)
        return 2

    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.calibrate import (
        TensorData,
        TensorsData,
        load_tensors_data,
        save_tensors_data,
    )

    t0 = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / "centerface_prep.onnx"
        prepared_fp32(prep)
        if args.fp32_out:
            args.fp32_out.write_bytes(prep.read_bytes())
        images = calibration_images()
        blobs = network_inputs(images, fp32_faces(prep, images))
        print(f"calibration: {len(images)} frames -> {len(blobs)} network inputs")

        class Reader(CalibrationDataReader):
            def __init__(self) -> None:
                self._it = iter(blobs)

            def get_next(self) -> dict | None:
                b = next(self._it, None)
                return None if b is None else {"input.1": b}

        nodes = onnx.load(str(prep)).graph.node
        exclude = []
        if args.exclude_head:
            exclude = [n.name for n in nodes if n.output[0] in HEAD_NODES]
        exclude += [n.name for n in nodes if n.op_type == "Conv"][: args.fp32_first]

        def quantize(out: Path, reader: Reader | None, cache: Path) -> None:
            quantize_static(
                str(prep), str(out), reader,
                quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
                per_channel=True, reduce_range=args.reduce_range,
                activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax, nodes_to_exclude=exclude,
                calibration_cache_path=str(cache),
            )  # fmt: skip

        tmp_out = args.out.with_suffix(".tmp.onnx")
        cache = Path(tmp) / "ranges.json"
        quantize(tmp_out, Reader(), cache)  # MinMax ranges, written to the cache
        if args.method == "percentile":
            # Outliers set MinMax's ranges (post-ReLU maxima far above the bulk): clip them.
            ranges = load_tensors_data(cache)
            names = [n for n in ranges.data if n != "input.1"]
            clipped = clipped_ranges(prep, blobs, names, args.percentile)
            data = {}
            for n, td in ranges.data.items():
                lo, hi = clipped.get(n, (-np.inf, np.inf))
                lo = max(float(np.min(td.range_value[0])), lo)
                hi = min(float(np.max(td.range_value[1])), hi)
                data[n] = TensorData(lowest=np.float32(lo), highest=np.float32(hi))
            save_tensors_data(TensorsData(CalibrationMethod.MinMax, data), cache)
            quantize(tmp_out, None, cache)
        tmp_out.replace(args.out)  # whole file or nothing
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
