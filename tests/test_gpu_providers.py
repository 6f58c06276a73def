"""GPU path (issue 23, item 5): the ONNX session factory prefers TensorRT (FP16, an engine
cache per card and onnxruntime version), then CUDA, then the CPU. No GPU has been available to
the project: the GPU-marked test runs on the first machine that has one."""

from __future__ import annotations

import onnxruntime as ort
import pytest

from streamanon import models

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"


def test_cpu_only_install_gets_the_cpu() -> None:
    assert models.gpu_providers({CPU, "AzureExecutionProvider"}) == [CPU]
    assert models.gpu_providers(set()) == [CPU]


def test_tensorrt_first_with_fp16_and_a_versioned_engine_cache() -> None:
    got = models.gpu_providers({CPU, CUDA, TRT})
    assert [p[0] if isinstance(p, tuple) else p for p in got] == [TRT, CUDA, CPU]
    opts = got[0][1]
    assert opts["trt_fp16_enable"] and opts["trt_engine_cache_enable"]
    path = opts["trt_engine_cache_path"]
    assert f"ort{ort.__version__}" in path and str(models.cache_dir()) in path
    assert models.gpu_providers({CPU, CUDA}) == [CUDA, CPU]


@pytest.mark.gpu
def test_detector_runs_on_the_gpu_when_there_is_one() -> None:
    if CUDA not in ort.get_available_providers():
        pytest.skip("needs an NVIDIA GPU (onnxruntime-gpu with CUDA)")
    from streamanon.detect.centerface import CenterFace

    assert CenterFace().session.get_providers()[0] in (TRT, CUDA)
