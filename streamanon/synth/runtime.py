"""Generator runtimes behind one interface: ``Runtime.run(z_g, z_id, z_a) -> x̂``.

All faces of a frame go in one call (dynamic batch). Inputs are float32 numpy arrays
(B, 10, S, S), (B, 128), (B, 3, S, S); the output is (B, 3, S, S) RGB in [-1, 1].

Backends, in the order ``backend="auto"`` tries them:

1. ``tensorrt``: TensorRT FP16 engine built from the ONNX file (ONNX parser -> FP16 builder
   config -> dynamic-batch optimisation profile 1..16) and cached on disk per GPU name +
   TensorRT version + model hash. Optional extra (``pip install streamanon[tensorrt]``).
2. ``ort-cuda``: ONNX Runtime with the CUDA execution provider, when that build is installed.
3. ``ort-cpu``: ONNX Runtime on the CPU (the default on machines without a GPU).
4. ``torch``: eager torch from a checkpoint (training, debugging, parity tests).

A backend named explicitly that cannot run is an error with a one-line reason, never a silent
fallback; ``auto`` moves down the list and says which backend it picked (``Runtime.name``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from streamanon.errors import ModelMissingError
from streamanon.models import cache_dir, onnx_session

INPUTS = ("z_g", "z_id", "z_a")
OUTPUT = "x_hat"
MAX_BATCH = 16
OPT_BATCH = 4
DEFAULT_MODEL = Path(__file__).resolve().parents[2] / "engines" / "generator_128.onnx"
BACKENDS = ("tensorrt", "ort-cuda", "ort-cpu", "torch")


class RuntimeUnavailable(RuntimeError):
    """A generator backend that cannot run here (library, GPU or model file missing)."""


class RuntimeInputError(ValueError):
    """Inputs whose shapes do not fit the generator."""


@runtime_checkable
class Runtime(Protocol):
    name: str
    size: int

    def run(self, z_g: np.ndarray, z_id: np.ndarray, z_a: np.ndarray) -> np.ndarray: ...


def check_inputs(
    z_g: np.ndarray, z_id: np.ndarray, z_a: np.ndarray, size: int, geometry_channels: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Contiguous float32 inputs with consistent batch and shapes, or RuntimeInputError."""
    z_g, z_id, z_a = (np.ascontiguousarray(v, dtype=np.float32) for v in (z_g, z_id, z_a))
    b = z_g.shape[0] if z_g.ndim == 4 else -1
    if z_g.shape != (b, geometry_channels, size, size):
        raise RuntimeInputError(
            f"z_g must be (B, {geometry_channels}, {size}, {size}), got {z_g.shape}"
        )
    if z_id.shape != (b, 128):
        raise RuntimeInputError(f"z_id must be ({b}, 128), got {z_id.shape}")
    if z_a.shape != (b, 3, size, size):
        raise RuntimeInputError(f"z_a must be ({b}, 3, {size}, {size}), got {z_a.shape}")
    if b == 0:
        raise RuntimeInputError("empty batch")
    return z_g, z_id, z_a


# -- ONNX export ----------------------------------------------------------------------------
def export_onnx(G, path: str | Path, opset: int = 17) -> Path:  # G: networks.Generator
    """Export G with a dynamic batch axis; the generator config goes into the metadata."""
    import onnx
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    cfg = G.cfg
    G = G.eval()
    s = cfg.size
    args = (
        torch.zeros(1, cfg.geometry_channels, s, s),
        torch.zeros(1, cfg.id_dim),
        torch.zeros(1, 3, s, s),
    )
    tmp = path.with_suffix(".tmp.onnx")
    dyn = {k: {0: "batch"} for k in (*INPUTS, OUTPUT)}
    with warnings.catch_warnings():
        # The TorchScript exporter's tracer warnings are about Python-side shape checks, and
        # instance norm always uses input statistics (train=True is what we want).
        warnings.simplefilter("ignore")
        torch.onnx.export(
            G, args, str(tmp), input_names=list(INPUTS), output_names=[OUTPUT],
            dynamic_axes=dyn, opset_version=opset, dynamo=False,
        )  # fmt: skip
    model = onnx.load(str(tmp))
    meta = model.metadata_props.add()
    meta.key, meta.value = "streamanon.generator", json.dumps(cfg.to_dict())
    onnx.save(model, str(tmp))
    tmp.replace(path)
    return path


def onnx_config(path: Path) -> dict:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    for p in model.metadata_props:
        if p.key == "streamanon.generator":
            return json.loads(p.value)
    raise RuntimeUnavailable(f"{path} has no streamanon.generator metadata (not exported by us)")


def model_hash(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


# -- ONNX Runtime ---------------------------------------------------------------------------
class OrtRuntime:
    """ONNX Runtime; ``device='cuda'`` requires the CUDA execution provider."""

    def __init__(
        self, model: str | Path = DEFAULT_MODEL, device: str = "cpu", threads: int | None = None
    ):
        import onnxruntime as ort

        model = Path(model)
        if not model.is_file():
            raise ModelMissingError(f"generator model {model} not found")
        cfg = onnx_config(model)
        self.size, self.geometry_channels = int(cfg["size"]), int(cfg["geometry_channels"])
        if device == "cuda":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeUnavailable(
                    "ONNX Runtime has no CUDAExecutionProvider here (pip install onnxruntime-gpu)"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        elif device == "cpu":
            providers = ["CPUExecutionProvider"]
        else:
            raise RuntimeInputError(f"device must be 'cpu' or 'cuda', got {device!r}")
        self.session = onnx_session(
            model, f"generator ({device})", threads or None, providers=providers, fallback=False
        )
        self.name = f"ort-{device}"

    def run(self, z_g: np.ndarray, z_id: np.ndarray, z_a: np.ndarray) -> np.ndarray:
        z_g, z_id, z_a = check_inputs(z_g, z_id, z_a, self.size, self.geometry_channels)
        return self.session.run([OUTPUT], {"z_g": z_g, "z_id": z_id, "z_a": z_a})[0]


# -- eager torch ----------------------------------------------------------------------------
class TorchRuntime:
    """Eager torch from a training checkpoint or a Generator module."""

    def __init__(self, model, device: str = "cpu"):  # model: ckpt path or networks.Generator
        import torch

        from streamanon.synth.networks import load_generator

        if isinstance(model, str | Path):
            if not Path(model).is_file():
                raise ModelMissingError(f"generator checkpoint {model} not found")
            model = load_generator(model, device)
        self.G = model.to(device).eval()
        self.device = torch.device(device)
        self.size, self.geometry_channels = self.G.cfg.size, self.G.cfg.geometry_channels
        self.name = f"torch-{self.device.type}"

    def run(self, z_g: np.ndarray, z_id: np.ndarray, z_a: np.ndarray) -> np.ndarray:
        import torch

        z_g, z_id, z_a = check_inputs(z_g, z_id, z_a, self.size, self.geometry_channels)
        with torch.inference_mode():
            t = [torch.from_numpy(v).to(self.device) for v in (z_g, z_id, z_a)]
            return self.G(*t).float().cpu().numpy()


# -- TensorRT -------------------------------------------------------------------------------
def profile_shapes(
    size: int, geometry_channels: int, max_batch: int = MAX_BATCH, opt_batch: int = OPT_BATCH
) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """(min, opt, max) shape per input for the TensorRT optimisation profile (batch 1..max)."""
    if not 1 <= opt_batch <= max_batch:
        raise RuntimeInputError(f"need 1 <= opt_batch <= max_batch, got {opt_batch}, {max_batch}")
    per = {"z_g": (geometry_channels, size, size), "z_id": (128,), "z_a": (3, size, size)}
    return {k: ((1, *s), (opt_batch, *s), (max_batch, *s)) for k, s in per.items()}


def engine_cache_key(
    gpu_name: str, trt_version: str, onnx_hash: str, fp16: bool, max_batch: int
) -> str:
    """File-name-safe key: an engine only runs on the GPU model and TensorRT it was built with."""
    gpu = "".join(c if c.isalnum() else "_" for c in gpu_name.strip()).strip("_") or "gpu"
    return f"generator_{onnx_hash}_{gpu}_trt{trt_version}_{'fp16' if fp16 else 'fp32'}_b{max_batch}"


def gpu_name() -> str:
    try:
        import torch

        if torch.cuda.is_available():
            return torch.cuda.get_device_name(0)
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip().splitlines()[0]
    raise RuntimeUnavailable("no NVIDIA GPU found (torch.cuda and nvidia-smi see none)")


def _import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise RuntimeUnavailable(
            "TensorRT is not installed: pip install 'streamanon[tensorrt]' (needs an NVIDIA GPU)"
        ) from None
    return trt


def build_engine(onnx_path: Path, fp16: bool = True, max_batch: int = MAX_BATCH) -> bytes:
    """Serialized TensorRT engine for the ONNX generator (FP16, dynamic batch profile)."""
    trt = _import_tensorrt()
    cfg = onnx_config(onnx_path)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errs = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeUnavailable(f"TensorRT cannot parse {onnx_path}: {errs}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile_shapes(
        cfg["size"], cfg["geometry_channels"], max_batch
    ).items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    blob = builder.build_serialized_network(network, config)
    if blob is None:
        raise RuntimeUnavailable("TensorRT failed to build the generator engine")
    return bytes(blob)


def engine_path(
    onnx_path: Path, cache_dir: Path, fp16: bool = True, max_batch: int = MAX_BATCH
) -> Path:
    trt = _import_tensorrt()
    key = engine_cache_key(gpu_name(), trt.__version__, model_hash(onnx_path), fp16, max_batch)
    return Path(cache_dir) / f"{key}.engine"


def default_cache_dir() -> Path:
    return cache_dir() / "engines"  # the one model cache ($STREAMANON_CACHE)


def ensure_engine(
    onnx_path: Path, cache_dir: Path | None = None, fp16: bool = True, max_batch: int = MAX_BATCH
) -> Path:
    """The cached engine for this GPU/TensorRT/model, built (atomically) when missing."""
    path = engine_path(onnx_path, cache_dir or default_cache_dir(), fp16, max_batch)
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(build_engine(onnx_path, fp16, max_batch))
        tmp.replace(path)
    return path


class TensorRTRuntime:
    """TensorRT engine (FP16 by default) with torch CUDA tensors as I/O buffers."""

    def __init__(
        self, model: str | Path = DEFAULT_MODEL, cache_dir: Path | None = None, fp16: bool = True,
        max_batch: int = MAX_BATCH,
    ):  # fmt: skip
        trt = _import_tensorrt()
        import torch

        if not torch.cuda.is_available():
            raise RuntimeUnavailable("TensorRT needs a CUDA GPU; torch sees none")
        model = Path(model)
        if not model.is_file():
            raise ModelMissingError(f"generator model {model} not found")
        cfg = onnx_config(model)
        self.size, self.geometry_channels = int(cfg["size"]), int(cfg["geometry_channels"])
        self.max_batch = max_batch
        self.engine_file = ensure_engine(model, cache_dir, fp16, max_batch)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self.engine = self._runtime.deserialize_cuda_engine(self.engine_file.read_bytes())
        if self.engine is None:
            raise RuntimeUnavailable(f"cannot deserialize {self.engine_file}; delete it to rebuild")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream()
        self.name = "tensorrt-fp16" if fp16 else "tensorrt-fp32"

    def run(self, z_g: np.ndarray, z_id: np.ndarray, z_a: np.ndarray) -> np.ndarray:
        import torch

        z_g, z_id, z_a = check_inputs(z_g, z_id, z_a, self.size, self.geometry_channels)
        outs = []
        for i in range(0, len(z_g), self.max_batch):  # batches beyond the profile are split
            sl = slice(i, i + self.max_batch)
            with torch.cuda.stream(self.stream):
                ins = {
                    k: torch.from_numpy(v[sl]).cuda(non_blocking=True)
                    for k, v in zip(INPUTS, (z_g, z_id, z_a), strict=True)
                }
                out = torch.empty((len(ins["z_g"]), 3, self.size, self.size), device="cuda")
                for k, t in ins.items():
                    self.context.set_input_shape(k, tuple(t.shape))
                    self.context.set_tensor_address(k, t.data_ptr())
                self.context.set_tensor_address(OUTPUT, out.data_ptr())
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise RuntimeError("TensorRT execution failed")
            self.stream.synchronize()
            outs.append(out.cpu().numpy())
        return np.concatenate(outs)


# -- choosing a backend ---------------------------------------------------------------------
def backend_order(requested: str = "auto") -> tuple[str, ...]:
    """Backends to try, in order: all of them for ``auto``, else exactly the one requested."""
    if requested == "auto":
        return ("tensorrt", "ort-cuda", "ort-cpu")
    if requested not in BACKENDS:
        raise RuntimeInputError(
            f"unknown generator backend {requested!r}; choose from auto, {', '.join(BACKENDS)}"
        )
    return (requested,)


def _make(name: str, model: Path, threads: int | None) -> Runtime:
    if name == "tensorrt":
        return TensorRTRuntime(model)
    if name == "ort-cuda":
        return OrtRuntime(model, "cuda", threads)
    if name == "ort-cpu":
        return OrtRuntime(model, "cpu", threads)
    return TorchRuntime(model)


def load_runtime(
    model: str | Path = DEFAULT_MODEL, backend: str = "auto", threads: int | None = None
) -> Runtime:
    """The first backend of ``backend_order(backend)`` that runs here."""
    reasons = []
    for name in backend_order(backend):
        try:
            return _make(name, Path(model), threads)
        except RuntimeUnavailable as e:
            if backend != "auto":
                raise
            reasons.append(f"{name}: {e}")
    raise RuntimeUnavailable("no generator backend can run: " + " | ".join(reasons))


def engine_main(argv: list[str] | None = None) -> int:
    """``streamanon engine build [--model ONNX] [--cache-dir DIR] [--fp32] [--max-batch N]``."""
    ap = argparse.ArgumentParser(
        prog="streamanon engine", description="TensorRT engines for the generator"
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build and cache the TensorRT engine for this GPU")
    b.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="generator ONNX file")
    b.add_argument("--cache-dir", type=Path, default=default_cache_dir())
    b.add_argument("--fp32", action="store_true", help="build FP32 instead of FP16")
    b.add_argument("--max-batch", type=int, default=MAX_BATCH)
    args = ap.parse_args(argv)
    try:
        path = ensure_engine(args.model, args.cache_dir, not args.fp32, args.max_batch)
    except (RuntimeUnavailable, ModelMissingError) as e:
        print(f"streamanon engine build: {e}", file=sys.stderr)
        return 4
    print(path)
    return 0
