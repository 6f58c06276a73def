"""Convert HyperLPR's plate SSD (Caffe ``mininet_ssd_v1``) to the ONNX file in ``engines/``.

OpenCV 5 has no Caffe importer and Caffe itself does not install here, so this module reads
both Caffe files itself: the ``.prototxt`` (protobuf text format) with a small tokenizer, the
``.caffemodel`` (protobuf wire format) with a reader of the four messages that carry weights
(NetParameter.layer = 100, LayerParameter.name = 1 / blobs = 7, BlobProto.shape = 7 /
data = 5 / num..width = 1..4, BlobShape.dim = 1; field numbers from BVLC caffe.proto).

The ONNX graph keeps the network up to the SSD heads and leaves PriorBox and DetectionOutput
to numpy (`streamanon.detect.plates`), so it takes any input size:

- input ``image``: float32 (B, 3, H, W), **BGR 0..255** (the frame as decoded). The
  normalisation HyperLPR does in Python ((rgb/255 - mean)/std) is a Mul+Add at the start and
  the BGR->RGB swap is folded into the first convolution's weights (exact: zero padding is
  applied after the normalisation either way).
- outputs ``loc`` (B, N, 4) box offsets, ``conf`` (B, N, 2) softmax [background, plate], and
  ``fmap0..fmap5`` the (int64) shapes of the six feature maps that carry priors, from which
  the priors are computed for the actual input size.
- the PriorBox and DetectionOutput parameters are stored as JSON in the model's metadata
  (``ssd_priors``, ``ssd_detection``) so the runtime needs nothing but the .onnx file.

Run ``python -m streamanon.detect.plate_convert PROTOTXT CAFFEMODEL [OUT.onnx]``; the same
inputs give the same bytes.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np

from streamanon.protowire import fields, varint

# ImageNet statistics HyperLPR's detect_ssd applies to RGB/255 (hyperlpr 0.0.2, hyperlpr.py).
RGB_MEAN = (0.485, 0.456, 0.406)
RGB_STD = (0.229, 0.224, 0.225)
OPSET = 13


class CaffeFormatError(ValueError):
    """The files are not the Caffe SSD this converter knows."""


# -- prototxt (protobuf text format) ---------------------------------------------------------

_TOKEN = re.compile(r'\s*(?:#[^\n]*\n?)*\s*([{}:]|"(?:[^"\\]|\\.)*"|[^\s{}:"#]+)')


def _tokens(text: str) -> list[str]:
    out, pos = [], 0
    while True:
        m = _TOKEN.match(text, pos)
        if m is None or not m.group(1):
            rest = text[pos:].strip()
            if rest and not rest.startswith("#"):
                raise CaffeFormatError(f"prototxt: cannot read near {rest[:40]!r}")
            return out
        out.append(m.group(1))
        pos = m.end()


def _scalar(tok: str) -> str | int | float | bool:
    if tok.startswith('"'):
        return tok[1:-1]
    if tok in ("true", "false"):
        return tok == "true"
    try:
        return int(tok)
    except ValueError:
        pass
    try:
        return float(tok)
    except ValueError:
        return tok  # an enum name such as CENTER_SIZE


def parse_prototxt(text: str) -> dict:
    """Text-format message -> dict of field name -> list of values (nested dicts for messages)."""
    toks = _tokens(text)
    pos = 0

    def message(end: str | None) -> dict:
        nonlocal pos
        msg: dict = {}
        while pos < len(toks):
            key = toks[pos]
            if key == "}":
                if end != "}":
                    raise CaffeFormatError("prototxt: unbalanced '}'")
                pos += 1
                return msg
            pos += 1
            if pos < len(toks) and toks[pos] == ":":
                pos += 1
            if pos >= len(toks):
                raise CaffeFormatError(f"prototxt: field {key!r} has no value")
            if toks[pos] == "{":
                pos += 1
                value = message("}")
            else:
                value = _scalar(toks[pos])
                pos += 1
            msg.setdefault(key, []).append(value)
        if end is not None:
            raise CaffeFormatError("prototxt: missing '}'")
        return msg

    return message(None)


# -- caffemodel (protobuf wire format) -------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    return varint(buf, pos, CaffeFormatError)


def _fields(buf: bytes) -> list[tuple[int, int, bytes | int]]:
    """(field number, wire type, payload) of every field of one message, in order."""
    return list(fields(buf, CaffeFormatError))


def _blob(buf: bytes) -> np.ndarray:
    dims: list[int] = []
    legacy = {1: 0, 2: 0, 3: 0, 4: 0}  # num, channels, height, width
    chunks: list[np.ndarray] = []
    for num, wire, val in _fields(buf):
        if num == 7:  # BlobShape
            for n2, w2, v2 in _fields(val):
                if n2 != 1:
                    continue
                if w2 == 2:  # packed
                    p = 0
                    while p < len(v2):
                        d, p = _varint(v2, p)
                        dims.append(d)
                else:
                    dims.append(int(v2))
        elif num == 5:
            chunks.append(np.frombuffer(val, dtype="<f4"))  # packed, or one fixed32
        elif num == 8:
            chunks.append(np.frombuffer(val, dtype="<f8").astype(np.float32))
        elif num in legacy and wire == 0:
            legacy[num] = int(val)
    data = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if not dims:
        dims = [d for d in legacy.values() if d]
    if int(np.prod(dims)) != data.size:
        raise CaffeFormatError(f"caffemodel: blob of shape {dims} holds {data.size} values")
    return data.reshape(dims).astype(np.float32)


def read_caffemodel(data: bytes) -> dict[str, list[np.ndarray]]:
    """Layer name -> its weight blobs, from a NetParameter with (new-style) ``layer`` fields."""
    out: dict[str, list[np.ndarray]] = {}
    for num, wire, val in _fields(data):
        if num == 2 and wire == 2:
            raise CaffeFormatError("caffemodel: V1 'layers' format is not supported")
        if num != 100 or wire != 2:
            continue
        name, blobs = None, []
        for n2, w2, v2 in _fields(val):
            if n2 == 1 and w2 == 2:
                name = v2.decode()
            elif n2 == 7 and w2 == 2:
                blobs.append(_blob(v2))
        if name is not None and blobs:
            out[name] = blobs
    return out


# -- ONNX graph ------------------------------------------------------------------------------


def _one(param: dict, key: str, default=None):
    vals = param.get(key)
    return vals[0] if vals else default


def build_onnx(prototxt: str, weights: dict[str, list[np.ndarray]]):
    """The ONNX ModelProto of the SSD up to its heads (see the module docstring)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    net = parse_prototxt(prototxt)
    nodes, inits = [], []
    current: dict[str, str] = {}  # Caffe blob name -> ONNX tensor holding its latest value
    priors: list[dict] = []
    fmaps: list[str] = []
    detection: dict | None = None
    uid = iter(range(10**6))
    used_weights: set[str] = set()

    def fresh(base: str) -> str:
        return f"{base}__{next(uid)}"

    def const(name: str, arr: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(arr), name))
        return name

    # Normalisation of BGR 0..255 in the channel order the first convolution will see (BGR,
    # since its weights are flipped below).
    bgr_mean = np.array(RGB_MEAN[::-1], np.float32)
    bgr_std = np.array(RGB_STD[::-1], np.float32)
    scale = const("norm_scale", (1.0 / (255.0 * bgr_std)).reshape(1, 3, 1, 1))
    bias = const("norm_bias", (-bgr_mean / bgr_std).reshape(1, 3, 1, 1))
    nodes.append(helper.make_node("Mul", ["image", scale], ["image_scaled"]))
    nodes.append(helper.make_node("Add", ["image_scaled", bias], ["image_norm"]))
    first_conv = True

    for layer in net.get("layer", []):
        kind, name = _one(layer, "type"), _one(layer, "name")
        bottoms, tops = layer.get("bottom", []), layer.get("top", [])
        ins = [current[b] for b in bottoms if b in current]
        out = fresh(tops[0]) if tops else None
        if kind == "Input":
            current[tops[0]] = "image_norm"
            continue
        if kind == "Convolution":
            p = _one(layer, "convolution_param", {})
            blobs = weights.get(name)
            if not blobs:
                raise CaffeFormatError(f"no weights for convolution {name!r}")
            used_weights.add(name)
            w = blobs[0]
            if first_conv:
                if w.shape[1] != 3:
                    raise CaffeFormatError("the first convolution must take 3 channels")
                w = w[:, ::-1].copy()  # RGB network, BGR input
                first_conv = False
            k, s, pad = _one(p, "kernel_size", 1), _one(p, "stride", 1), _one(p, "pad", 0)
            group, dil = _one(p, "group", 1), _one(p, "dilation", 1)
            if w.shape[0] != _one(p, "num_output") or w.shape[2:] != (k, k):
                raise CaffeFormatError(f"{name}: weights {w.shape} do not match the prototxt")
            args = [ins[0], const(f"{name}.weight", w)]
            if _one(p, "bias_term", True):
                if len(blobs) < 2:
                    raise CaffeFormatError(f"{name}: bias_term but no bias blob")
                args.append(const(f"{name}.bias", blobs[1].reshape(-1)))
            nodes.append(
                helper.make_node(
                    "Conv", args, [out], name=name, kernel_shape=[k, k], strides=[s, s],
                    pads=[pad] * 4, group=group, dilations=[dil, dil],
                )
            )  # fmt: skip
        elif kind == "ReLU":
            p = _one(layer, "relu_param", {})
            if _one(p, "negative_slope", 0.0) != 0.0:
                raise CaffeFormatError(f"{name}: leaky ReLU not supported")
            nodes.append(helper.make_node("Relu", ins[:1], [out], name=name))
        elif kind == "Permute":
            order = _one(layer, "permute_param", {}).get("order", [])
            nodes.append(helper.make_node("Transpose", ins[:1], [out], name=name, perm=order))
        elif kind == "Flatten":
            p = _one(layer, "flatten_param", {})
            if _one(p, "axis", 1) != 1 or _one(p, "end_axis", -1) != -1:
                raise CaffeFormatError(f"{name}: only Flatten from axis 1 is supported")
            nodes.append(helper.make_node("Flatten", ins[:1], [out], name=name, axis=1))
        elif kind == "Concat":
            if name == "concat0" or all(b.endswith("priorbox") for b in bottoms):
                continue  # the priors' concat: done in numpy
            axis = _one(_one(layer, "concat_param", {}), "axis", 1)
            nodes.append(helper.make_node("Concat", ins, [out], name=name, axis=axis))
        elif kind == "Reshape":
            dims = _one(layer, "reshape_param", {})["shape"][0]["dim"]
            shape = const(f"{name}.shape", np.array(dims, np.int64))
            nodes.append(helper.make_node("Reshape", [ins[0], shape], [out], name=name))
        elif kind == "Softmax":
            axis = _one(_one(layer, "softmax_param", {}), "axis", 1)
            nodes.append(helper.make_node("Softmax", ins[:1], [out], name=name, axis=axis))
        elif kind == "PriorBox":
            p = _one(layer, "prior_box_param")
            if p.get("step") or p.get("step_h") or _one(p, "flip", True) or _one(p, "clip", False):
                raise CaffeFormatError(f"{name}: only flip=false, clip=false, no step supported")
            priors.append(
                {
                    "min_size": [float(v) for v in p["min_size"]],
                    "max_size": [float(v) for v in p.get("max_size", [])],
                    "aspect_ratio": [float(v) for v in p.get("aspect_ratio", [])],
                    "variance": [float(v) for v in p["variance"]],
                    "offset": float(_one(p, "offset", 0.5)),
                }
            )
            shape_out = f"fmap{len(fmaps)}"
            nodes.append(helper.make_node("Shape", [current[bottoms[0]]], [shape_out]))
            fmaps.append(shape_out)
            continue
        elif kind == "DetectionOutput":
            p = _one(layer, "detection_output_param")
            nms = _one(p, "nms_param", {})
            if _one(p, "code_type") != "CENTER_SIZE" or not _one(p, "share_location", True):
                raise CaffeFormatError(f"{name}: only shared CENTER_SIZE boxes are supported")
            detection = {
                "num_classes": int(_one(p, "num_classes")),
                "nms_threshold": float(_one(nms, "nms_threshold", 0.45)),
                "top_k": int(_one(nms, "top_k", 400)),
                "keep_top_k": int(_one(p, "keep_top_k", 100)),
                "confidence_threshold": float(_one(p, "confidence_threshold", 0.01)),
                "loc": bottoms[0],
                "conf": bottoms[1],
            }
            continue
        else:
            raise CaffeFormatError(f"layer {name!r}: unsupported type {kind!r}")
        for t in tops:
            current[t] = out

    if detection is None or not priors:
        raise CaffeFormatError("no PriorBox/DetectionOutput layers: not an SSD")
    unused = set(weights) - used_weights
    if unused:
        raise CaffeFormatError(f"weights of unknown layers: {sorted(unused)[:5]}")
    # loc: (B, N*4) -> (B, N, 4). conf: the softmax before its last Flatten is (B, N, 2).
    loc_shape = const("loc_shape", np.array([0, -1, 4], np.int64))
    nodes.append(helper.make_node("Reshape", [current[detection["loc"]], loc_shape], ["loc"]))
    conf_src = _softmax_input_of(nodes, current[detection["conf"]])
    nodes.append(helper.make_node("Identity", [conf_src], ["conf"]))
    nodes = _prune(nodes, ["loc", "conf", *fmaps])

    f32 = TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "plate_mininet_ssd",
        [helper.make_tensor_value_info("image", f32, ["B", 3, "H", "W"])],
        [
            helper.make_tensor_value_info("loc", f32, ["B", "N", 4]),
            helper.make_tensor_value_info("conf", f32, ["B", "N", detection["num_classes"]]),
            *[helper.make_tensor_value_info(f, TensorProto.INT64, [4]) for f in fmaps],
        ],
        inits,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="streamanon.detect.plate_convert",
    )
    model.ir_version = 8  # readable by ONNX Runtime >= 1.10
    del detection["loc"], detection["conf"]
    meta = {
        "ssd_priors": json.dumps(priors),
        "ssd_detection": json.dumps(detection),
        "input": "BGR 0..255 float32 NCHW, any size",
        "source": "HyperLPR mininet_ssd_v1 (Apache-2.0), see engines/README.md",
    }
    for k, v in meta.items():
        model.metadata_props.add(key=k, value=v)
    onnx.checker.check_model(model)
    return model


def _softmax_input_of(nodes, flat_name: str) -> str:
    """The Softmax output that `flat_name` flattens (conf keeps its (B, N, classes) shape)."""
    for n in nodes:
        if n.output[0] == flat_name and n.op_type == "Flatten":
            return n.input[0]
    return flat_name


def _prune(nodes, outputs: list[str]):
    """Drop nodes no output depends on (the flattened conf)."""
    needed, keep = set(outputs), []
    for n in reversed(nodes):
        if any(o in needed for o in n.output):
            keep.append(n)
            needed.update(n.input)
    return keep[::-1]


def convert(prototxt: Path, caffemodel: Path, out: Path) -> str:
    """Write the ONNX file; returns its sha256."""
    model = build_onnx(prototxt.read_text(), read_caffemodel(caffemodel.read_bytes()))
    data = model.SerializeToString()
    out.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) not in (2, 3):
        print(__doc__.strip().splitlines()[-2], file=sys.stderr)
        return 2
    repo_engines = Path(__file__).resolve().parents[2] / "engines"
    out = Path(args[2]) if len(args) == 3 else repo_engines / "plate_mininet_ssd.onnx"
    sha = convert(Path(args[0]), Path(args[1]), out)
    src = hashlib.sha256(Path(args[1]).read_bytes()).hexdigest()
    print(f"{out}: sha256 {sha} (from caffemodel sha256 {src})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
