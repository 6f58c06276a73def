"""Generator runtimes: ONNX export parity, backend choice, TensorRT cache keys and profiles."""

from __future__ import annotations

import importlib.util
import shutil

import numpy as np
import pytest
import torch

from streamanon.synth import runtime as R
from streamanon.synth.data import build_faceset, make_batch
from streamanon.synth.networks import Generator, GeneratorConfig
from tests.conftest import needs_shared

torch.set_num_threads(1)
SHIPPED_WEIGHTS = R.DEFAULT_MODEL.with_suffix(".safetensors")


@pytest.fixture(scope="module")
def real_inputs(tmp_path_factory):
    """Generator inputs (Z_g, Z_id, Z_a) of three real SFHQ faces."""
    src = needs_shared("faces", "synthetic", "sfhq")
    d = tmp_path_factory.mktemp("rt_faces")
    for f in sorted(src.glob("*.jpg"))[10:13]:
        shutil.copy(f, d)
    b = make_batch(
        build_faceset({"faces": [str(d)]}, 192, progress=False), np.arange(3), None, None
    )
    return b["z_g"], b["z_id"], b["z_a"]


@pytest.fixture(scope="module")
def generator():
    """The shipped generator when present, else a seeded one (export fidelity does not need training)."""
    if SHIPPED_WEIGHTS.is_file():
        from safetensors.torch import load_file

        from streamanon.synth.runtime import onnx_config

        g = Generator(GeneratorConfig.from_dict(onnx_config(R.DEFAULT_MODEL)))
        g.load_state_dict(load_file(str(SHIPPED_WEIGHTS)))
        return g.eval()
    torch.manual_seed(0)
    return Generator().eval()


@pytest.fixture(scope="module")
def onnx_file(generator, tmp_path_factory):
    return R.export_onnx(generator, tmp_path_factory.mktemp("onnx") / "g.onnx")


@pytest.mark.parametrize("batch", [1, 3])
def test_onnx_runtime_matches_torch(generator, onnx_file, real_inputs, batch):
    z_g, z_id, z_a = (v[:batch] for v in real_inputs)
    ort_out = R.OrtRuntime(onnx_file, "cpu", threads=1).run(z_g, z_id, z_a)
    torch_out = R.TorchRuntime(generator).run(z_g, z_id, z_a)
    assert ort_out.shape == (batch, 3, 128, 128)
    assert np.abs(ort_out - torch_out).max() <= 1e-3


def test_batched_equals_one_by_one(onnx_file, real_inputs):
    rt = R.OrtRuntime(onnx_file, "cpu", threads=1)
    together = rt.run(*real_inputs)
    single = np.concatenate([rt.run(*(v[i : i + 1] for v in real_inputs)) for i in range(3)])
    assert np.abs(together - single).max() <= 1e-4


def test_onnx_carries_the_generator_config(onnx_file, generator):
    assert GeneratorConfig.from_dict(R.onnx_config(onnx_file)) == generator.cfg


def test_bad_inputs_are_rejected(onnx_file, real_inputs):
    rt = R.OrtRuntime(onnx_file, "cpu", threads=1)
    z_g, z_id, z_a = real_inputs
    with pytest.raises(R.RuntimeInputError, match="z_id must be"):
        rt.run(z_g, z_id[:2], z_a)
    with pytest.raises(R.RuntimeInputError, match="z_g must be"):
        rt.run(z_g[:, :4], z_id, z_a)


def test_missing_model_is_a_clear_error(tmp_path):
    from streamanon.errors import ModelMissingError

    with pytest.raises(ModelMissingError, match="not found"):
        R.OrtRuntime(tmp_path / "nope.onnx")


def test_profile_shapes_cover_batch_1_to_16():
    p = R.profile_shapes(128, 10)
    assert p["z_g"] == ((1, 10, 128, 128), (4, 10, 128, 128), (16, 10, 128, 128))
    assert p["z_id"] == ((1, 128), (4, 128), (16, 128))
    assert p["z_a"][2] == (16, 3, 128, 128)
    with pytest.raises(R.RuntimeInputError):
        R.profile_shapes(128, 10, max_batch=4, opt_batch=8)


def test_engine_cache_key_separates_gpu_trt_model_and_precision():
    k = R.engine_cache_key("NVIDIA H100 80GB HBM3", "10.3.0", "abc123", True, 16)
    assert k == "generator_abc123_NVIDIA_H100_80GB_HBM3_trt10.3.0_fp16_b16"
    assert "/" not in R.engine_cache_key("a/b c", "10", "h", True, 16)
    others = [
        R.engine_cache_key("NVIDIA A100", "10.3.0", "abc123", True, 16),
        R.engine_cache_key("NVIDIA H100 80GB HBM3", "10.4.0", "abc123", True, 16),
        R.engine_cache_key("NVIDIA H100 80GB HBM3", "10.3.0", "def456", True, 16),
        R.engine_cache_key("NVIDIA H100 80GB HBM3", "10.3.0", "abc123", False, 16),
    ]
    assert len({k, *others}) == 5


def test_backend_order():
    assert R.backend_order("auto") == ("tensorrt", "ort-cuda", "ort-cpu")
    assert R.backend_order("torch") == ("torch",)
    with pytest.raises(R.RuntimeInputError, match="unknown generator backend"):
        R.backend_order("openvino")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT installed")
def test_auto_falls_back_and_explicit_tensorrt_says_why(onnx_file):
    rt = R.load_runtime(onnx_file, "auto", threads=1)
    assert rt.name in ("ort-cuda", "ort-cpu")
    with pytest.raises(R.RuntimeUnavailable, match="streamanon\\[tensorrt\\]"):
        R.load_runtime(onnx_file, "tensorrt")
    assert R.engine_main(["build", "--model", str(onnx_file)]) == 4


@pytest.mark.gpu
def test_tensorrt_fp16_psnr_against_fp32(onnx_file, real_inputs, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT not installed")
    if not torch.cuda.is_available():
        pytest.skip("needs an NVIDIA GPU")
    fp32 = R.OrtRuntime(onnx_file, "cpu").run(*real_inputs)
    fp16 = R.TensorRTRuntime(onnx_file, cache_dir=tmp_path).run(*real_inputs)
    mse = float(np.mean(((fp16 - fp32) / 2.0) ** 2))  # images in [-1, 1]: peak-to-peak 2
    assert 10 * np.log10(1.0 / max(mse, 1e-12)) >= 40.0
