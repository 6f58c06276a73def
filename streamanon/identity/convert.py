"""Convert dlib's 128-D face ResNet (``dlib_face_recognition_resnet_model_v1.dat``) to tensors.

The reader follows dlib's own serialization code (dlib 20.0.1 sources: ``dnn/core.h`` for the
``add_layer``/``add_tag_layer``/``add_skip_layer`` wrappers, ``dnn/layers.h`` for ``con_``,
``affine_``, ``fc_``, pooling and ``add_prev_``, ``cuda/tensor.h`` for tensors and
``serialize.h`` for integers, bools and floats). A dlib network serializes recursively with
the sub-network first, so the file is: the loss layer, one version integer per wrapper from
the output inwards, the input layer, then each layer's details from the input outwards.

streamanon runs this at first use (`streamanon.models.recognizer_state_dict`) into its model
cache; ``python -m streamanon.identity.weights [DAT] [OUT.safetensors]`` does it by hand. The
conversion is deterministic (same input bytes, same output bytes).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from streamanon import models

DAT_NAME = "dlib_face_recognition_resnet_model_v1.dat"

# The network of dlib's examples/dnn_face_recognition_ex.cpp, from the input outwards:
# stem = con7x7/2 -> affine -> relu -> max_pool3x3/2, then residual blocks (channels, down).
BLOCKS: tuple[tuple[int, bool], ...] = (
    (32, False), (32, False), (32, False),
    (64, True), (64, False), (64, False), (64, False),
    (128, True), (128, False), (128, False),
    (256, True), (256, False), (256, False),
    (256, True),
)  # fmt: skip


class DlibFormatError(ValueError):
    """The file is not the dlib network this converter knows."""


def default_dat_path() -> Path:
    """The installed dlib ResNet (`streamanon.models` finds the file)."""
    return models.dlib_file(DAT_NAME)


class _Reader:
    """dlib's primitive encodings over an in-memory byte string."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise DlibFormatError(f"truncated dlib file at byte {self.pos}")
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def int(self) -> int:
        # Control byte: low 4 bits = byte count, 0x80 = negative; then little-endian bytes.
        ctrl = self._take(1)[0]
        size = ctrl & 0x0F
        if size > 8 or ctrl & 0x70:
            raise DlibFormatError(f"bad integer control byte {ctrl:#x} at byte {self.pos - 1}")
        value = int.from_bytes(self._take(size), "little")
        return -value if ctrl & 0x80 else value

    def bool(self) -> bool:
        ch = self._take(1)
        if ch not in (b"0", b"1"):
            raise DlibFormatError(f"bad bool {ch!r} at byte {self.pos - 1}")
        return ch == b"1"

    def float(self) -> float:
        # float_details: value = mantissa * 2**exponent (int64, int16); no inf/nan expected.
        mantissa = self.int()
        exponent = self.int()
        return float(np.ldexp(np.float64(mantissa), exponent))

    def string(self) -> str:
        n = self.int()
        return self._take(n).decode("ascii")

    def expect_int(self, value: int, what: str) -> None:
        got = self.int()
        if got != value:
            raise DlibFormatError(f"expected {what} version {value}, got {got}")

    def tensor(self) -> np.ndarray:
        self.expect_int(2, "tensor")
        shape = tuple(self.int() for _ in range(4))
        n = int(np.prod(shape))
        # Since tensor format 2, values are raw little-endian IEEE float32.
        arr = np.frombuffer(self._take(4 * n), dtype="<f4").astype(np.float32)
        return arr.reshape(shape)

    def alias(self) -> tuple[int, ...]:
        self.expect_int(1, "alias_tensor")
        return tuple(self.int() for _ in range(4))


@dataclass
class _Parsed:
    avg_rgb: tuple[float, float, float] = (0.0, 0.0, 0.0)
    layers: list[tuple[str, dict]] = field(default_factory=list)


def _layer_details(r: _Reader) -> tuple[str, dict]:
    kind = r.string()
    if kind in ("con_4", "con_5", "con_6"):
        params = r.tensor().reshape(-1)
        num_filters = r.int()
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        fshape = r.alias()
        bshape = r.alias()
        for _ in range(4):  # learning-rate / weight-decay multipliers
            r.float()
        use_bias = r.bool() if kind in ("con_5", "con_6") else True
        if kind == "con_6":
            r.bool()  # use_relu: a fused relu only used when training; we keep relu layers
        nw = int(np.prod(fshape))
        if fshape[0] != num_filters or fshape[2:] != (nr, nc):
            raise DlibFormatError(
                f"con_ filter shape {fshape} does not match {num_filters}x{nr}x{nc}"
            )
        w = params[:nw].reshape(fshape)
        b = params[nw : nw + num_filters] if use_bias else np.zeros(num_filters, np.float32)
        if use_bias and int(np.prod(bshape)) != num_filters:
            raise DlibFormatError(f"con_ bias shape {bshape} for {num_filters} filters")
        return "con", {"weight": w, "bias": b, "stride": (sy, sx), "padding": (py, px)}
    if kind in ("affine_", "affine_2"):
        params = r.tensor().reshape(-1)
        g = r.alias()
        r.alias()  # beta has gamma's shape
        mode = r.int()
        if kind == "affine_2":
            r.bool()  # disabled
        k = int(np.prod(g))
        if mode != 0:  # 0 = CONV_MODE: one gamma/beta per channel
            raise DlibFormatError(f"affine_ mode {mode} is not conv mode")
        return "affine", {"gamma": params[:k].copy(), "beta": params[k : 2 * k].copy()}
    if kind == "relu_":
        return "relu", {}
    if kind == "relu_2":
        r.bool()
        return "relu", {}
    if kind in ("max_pool_2", "avg_pool_2"):
        nr, nc, sy, sx, py, px = (r.int() for _ in range(6))
        return kind[:-2], {"size": (nr, nc), "stride": (sy, sx), "padding": (py, px)}
    if kind == "add_prev_":
        return "add_prev", {}
    if kind in ("fc_2", "fc_3"):
        n_out = r.int()
        n_in = r.int()
        params = r.tensor().reshape(-1)
        wshape = r.alias()
        r.alias()
        bias_mode = r.int()
        for _ in range(4):
            r.float()
        if kind == "fc_3":
            r.bool()
        if bias_mode != 1 or wshape[:2] != (n_in, n_out):  # 1 = FC_NO_BIAS
            raise DlibFormatError(f"fc_ layer with bias mode {bias_mode}, shape {wshape}")
        # dlib computes out = x @ W with W (num_inputs, num_outputs); torch wants W^T.
        w = params[: n_in * n_out].reshape(n_in, n_out).T.copy()
        return "fc", {"weight": w}
    raise DlibFormatError(f"unknown dlib layer {kind!r}")


def _trailing(r: _Reader, bottom: bool) -> None:
    # add_layer's training state: 3 bools, x_grad, cached_output, params_grad / grad_final.
    for _ in range(3):
        r.bool()
    r.tensor()
    r.tensor()
    r.tensor()
    if bottom:
        r.int()  # _sample_expansion_factor (add_layer version 3)


def _expected_sequence() -> tuple[list[str], list[str]]:
    """Wrapper order from the output inwards ('L' layer, 'T' tag/skip) and layer kinds inwards."""
    wrappers = ["L", "L"]  # fc, avg_pool_everything
    kinds = ["fc", "avg_pool"]
    for _, down in reversed(BLOCKS):
        if down:  # relu<add_prev2<avg_pool<skip1<tag2<block<tag1<...>>>>>>>
            wrappers += ["L", "L", "L", "T", "T"]
            kinds += ["relu", "add_prev", "avg_pool"]
        else:  # relu<add_prev1<block<tag1<...>>>>
            wrappers += ["L", "L"]
            kinds += ["relu", "add_prev"]
        wrappers += ["L"] * 5 + ["T"]  # affine<con<relu<affine<con<...>>>>> then tag1
        kinds += ["affine", "con", "relu", "affine", "con"]
    wrappers += ["L"] * 4  # max_pool, relu, affine, con (on the input layer)
    kinds += ["max_pool", "relu", "affine", "con"]
    return wrappers, kinds


def parse_dat(data: bytes) -> _Parsed:
    """Parse the dlib file into the input means and the layers from the input outwards."""
    r = _Reader(data)
    r.expect_int(1, "add_loss_layer")
    loss = r.string()
    if loss != "loss_metric_2":
        raise DlibFormatError(f"expected a loss_metric network, found {loss!r}")
    r.float()  # margin
    r.float()  # distance threshold
    wrappers, kinds = _expected_sequence()
    for i, w in enumerate(wrappers):
        if w == "T":
            r.expect_int(1, "tag/skip layer")
        else:
            r.expect_int(3 if i == len(wrappers) - 1 else 2, "add_layer")
    inp = r.string()
    if inp != "input_rgb_image_sized":
        raise DlibFormatError(f"expected input_rgb_image_sized, found {inp!r}")
    parsed = _Parsed(avg_rgb=(r.float(), r.float(), r.float()))
    if (r.int(), r.int()) != (150, 150):
        raise DlibFormatError("the input layer is not 150x150")
    for i, expected in enumerate(reversed(kinds)):
        kind, tensors = _layer_details(r)
        if kind != expected:
            raise DlibFormatError(f"layer {i}: expected {expected}, found {kind}")
        _trailing(r, bottom=i == 0)
        parsed.layers.append((kind, tensors))
    if r.pos != len(data):
        raise DlibFormatError(f"{len(data) - r.pos} unread bytes at the end of the dlib file")
    return parsed


def convert(data: bytes) -> dict[str, np.ndarray]:
    """dlib file bytes -> the state dict of :class:`streamanon.identity.recognizer.Recognizer`."""
    parsed = parse_dat(data)
    cons = [t for k, t in parsed.layers if k == "con"]
    affs = [t for k, t in parsed.layers if k == "affine"]
    pools = [t for k, t in parsed.layers if k in ("avg_pool", "max_pool")]
    fc = [t for k, t in parsed.layers if k == "fc"][0]
    # Our module hard-codes dlib's paddings (0 for strided layers, 1 otherwise): check them.
    for c in cons:
        want = (0, 0) if c["stride"] != (1, 1) else (1, 1)
        if c["padding"] != want:
            raise DlibFormatError(
                f"unexpected conv padding {c['padding']} for stride {c['stride']}"
            )
    if any(p["padding"] != (0, 0) for p in pools if p["size"] != (0, 0)):
        raise DlibFormatError("unexpected pooling padding")
    sd: dict[str, np.ndarray] = {
        "mean_rgb": np.asarray(parsed.avg_rgb, np.float32),
        "stem.conv.weight": cons[0]["weight"],
        "stem.conv.bias": cons[0]["bias"],
        "stem.affine.gamma": affs[0]["gamma"],
        "stem.affine.beta": affs[0]["beta"],
        "fc.weight": fc["weight"],
    }
    for b in range(len(BLOCKS)):
        for j in (0, 1):
            c, a = cons[1 + 2 * b + j], affs[1 + 2 * b + j]
            sd[f"blocks.{b}.conv{j + 1}.weight"] = c["weight"]
            sd[f"blocks.{b}.conv{j + 1}.bias"] = c["bias"]
            sd[f"blocks.{b}.affine{j + 1}.gamma"] = a["gamma"]
            sd[f"blocks.{b}.affine{j + 1}.beta"] = a["beta"]
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in sd.items()}


def convert_file(dat: Path, out: Path) -> str:
    """Convert ``dat`` to safetensors at ``out``; returns the sha256 of the source file."""
    from safetensors.numpy import save_file

    data = Path(dat).read_bytes()
    sd = convert(data)
    sha = hashlib.sha256(data).hexdigest()
    # One metadata key only: safetensors writes its metadata map in hash order.
    save_file(sd, str(out), metadata={"provenance": f"{DAT_NAME} sha256:{sha} CC0"})
    return sha
