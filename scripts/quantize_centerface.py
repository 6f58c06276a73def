"""int8 CenterFace for ONNX Runtime's CPU provider (issue 23, item 2), reproducibly.

    python scripts/quantize_centerface.py [-o engines/centerface_int8.onnx] [--method minmax]
        [--exclude-head] [--reduce-range] [--format qdq|qoperator]

Steps: the shipped fp32 graph (engines/centerface.onnx) is given dynamic spatial dimensions
(as the detector does at load), its three BatchNormalizations are folded into the
ConvTransposes before them (ONNX Runtime folds BN only into Conv, and an unfolded BN would
stay in float between two int8 ops), the opset is raised 9 -> 13 (per-channel QDQ needs it),
and `onnxruntime.quantization.quantize_static` writes static QDQ int8 (uint8 activations,
per-channel int8 weights, U8S8: the VNNI path of MLAS).

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

Inputs are made at the sizes `MultiScaleDetector` really feeds the network: the base pass
(longest side 640, padded to a multiple of 32: 640x384 for 16:9), high-resolution tiles (the
source at 16/24 = 0.667 of its size, cut to at most 704 px a side) and 160x160 refresh
windows around faces. Everything is deterministic (sorted files, fixed frame indices and
crops, no randomness); ONNX Runtime's calibration runs on one thread.
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
TILE = 704
WINDOW = 160
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


def network_inputs(images: list[np.ndarray], faces: list[np.ndarray]) -> list[np.ndarray]:
    """NCHW float blobs (RGB 0..255) at the detector's real sizes: per image the base pass,
    one high-resolution tile (its centre) and one refresh window around its largest face."""
    blobs = []
    for im, boxes in zip(images, faces, strict=True):
        h, w = im.shape[:2]
        views = [_pad32(_scaled(im, 640 / max(h, w)))]
        # A tile as seen by the sweep: a 1080p-like frame at 0.667, cut to TILE px.
        src = _scaled(im, 1920 / max(h, w)) if max(h, w) > 1920 else im
        hi = _scaled(src, HIRES)
        y0, x0 = max(0, (hi.shape[0] - TILE) // 2), max(0, (hi.shape[1] - TILE) // 2)
        views.append(_pad32(hi[y0 : y0 + TILE, x0 : x0 + TILE]))
        if len(boxes):
            b = boxes[np.argmax((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]))]
            side = int(WINDOW / HIRES)
            cx, cy = int((b[0] + b[2]) / 2), int((b[1] + b[3]) / 2)
            x1, y1 = int(np.clip(cx - side // 2, 0, max(w - side, 0))), int(
                np.clip(cy - side // 2, 0, max(h - side, 0))
            )
            crop = _scaled(im[y1 : y1 + side, x1 : x1 + side], HIRES)
            canvas = np.zeros((WINDOW, WINDOW, 3), np.uint8)
            canvas[: crop.shape[0], : crop.shape[1]] = crop[:WINDOW, :WINDOW]
            views.append(canvas)
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-o", "--out", type=Path, default=OUT)
    ap.add_argument("--method", choices=["minmax", "percentile", "entropy"], default="minmax")
    ap.add_argument("--format", choices=["qdq", "qoperator"], default="qdq")
    ap.add_argument("--reduce-range", action="store_true", help="7-bit weights")
    ap.add_argument("--exclude-head", action="store_true", help="keep the head convs in fp32")
    ap.add_argument("--fp32-out", type=Path, help="also keep the prepared fp32 graph here")
    args = ap.parse_args(argv)
    if not SRC.is_file() or not SHARED.is_dir():
        print(f"error: need {SRC} and {SHARED}", file=sys.stderr)
        return 2

    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
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

        method = {
            "minmax": CalibrationMethod.MinMax,
            "percentile": CalibrationMethod.Percentile,
            "entropy": CalibrationMethod.Entropy,
        }[args.method]
        import onnx

        exclude = []
        if args.exclude_head:
            exclude = [n.name for n in onnx.load(str(prep)).graph.node if n.output[0] in HEAD_NODES]
        tmp_out = args.out.with_suffix(".tmp.onnx")
        quantize_static(
            str(prep), str(tmp_out), Reader(),
            quant_format=QuantFormat.QDQ if args.format == "qdq" else QuantFormat.QOperator,
            per_channel=True, reduce_range=args.reduce_range,
            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
            calibrate_method=method, nodes_to_exclude=exclude,
            extra_options={"CalibMaxIntermediateOutputs": None, "CalibPercentile": 99.999},
        )  # fmt: skip
        tmp_out.replace(args.out)  # whole file or nothing
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes) in {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
