"""Generator throughput (faces/s) per backend and batch size: ONNX Runtime CPU, torch CPU, and
on a GPU machine ONNX Runtime CUDA, TensorRT FP16 and torch CUDA (FP32 and FP16 autocast).

    python benchmarks/bench_generator.py [--model engines/generator_128.onnx] [--threads 2]

Inputs are real-shaped random tensors (the generator's cost does not depend on the values).
Prints one line per (backend, batch) and, with --json, writes the table.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout


def inputs(batch: int, size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(-1, 1, (batch, 10, size, size)).astype(np.float32),
        rng.normal(0, 0.1, (batch, 128)).astype(np.float32),
        rng.uniform(-1, 1, (batch, 3, size, size)).astype(np.float32),
    )


def time_runtime(run, batch: int, seconds: float, size: int) -> dict:
    x = inputs(batch, size)
    run(*x)  # warm-up (and TensorRT/ORT lazy init)
    n, t0 = 0, time.perf_counter()
    lat = []
    while time.perf_counter() - t0 < seconds or n < 3:
        t = time.perf_counter()
        run(*x)
        lat.append(time.perf_counter() - t)
        n += 1
    med = float(np.median(lat))
    return {
        "batch": batch,
        "ms_per_call": 1000 * med,
        "ms_per_face": 1000 * med / batch,
        "faces_per_s": batch / med,
    }


def main(argv: list[str] | None = None) -> int:
    from streamanon.synth import runtime as R

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=R.DEFAULT_MODEL)
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (ORT intra-op, torch)")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--seconds", type=float, default=3.0, help="timing per (backend, batch)")
    ap.add_argument(
        "--backends",
        nargs="+",
        default=["ort-cpu", "torch-cpu", "ort-cuda", "tensorrt", "torch-cuda", "torch-cuda-fp16"],
    )
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    size = int(R.onnx_config(args.model)["size"])
    weights = args.model.with_suffix(".safetensors")

    def torch_gen(device: str, half: bool):
        from safetensors.torch import load_file

        from streamanon.synth.networks import Generator, GeneratorConfig

        if device == "cuda" and not torch.cuda.is_available():
            raise R.RuntimeUnavailable("no CUDA GPU")
        g = Generator(GeneratorConfig.from_dict(R.onnx_config(args.model)))
        g.load_state_dict(load_file(str(weights)))
        g = g.to(device).eval()

        def run(z_g, z_id, z_a):
            with torch.inference_mode(), torch.autocast(device, torch.float16, enabled=half):
                t = [torch.from_numpy(v).to(device) for v in (z_g, z_id, z_a)]
                out = g(*t)
                return out.float().cpu().numpy()

        return run

    makers = {
        "ort-cpu": lambda: R.OrtRuntime(args.model, "cpu", args.threads).run,
        "ort-cuda": lambda: R.OrtRuntime(args.model, "cuda").run,
        "tensorrt": lambda: R.TensorRTRuntime(args.model).run,
        "torch-cpu": lambda: torch_gen("cpu", False),
        "torch-cuda": lambda: torch_gen("cuda", False),
        "torch-cuda-fp16": lambda: torch_gen("cuda", True),
    }
    rows = []
    for name in args.backends:
        try:
            run = makers[name]()
        except (R.RuntimeUnavailable, ImportError) as e:
            print(f"{name:16s} skipped: {e}")
            continue
        for b in args.batches:
            r = {"backend": name, **time_runtime(run, b, args.seconds, size)}
            rows.append(r)
            print(
                f"{name:16s} batch {b:2d}: {r['ms_per_face']:7.2f} ms/face  {r['faces_per_s']:8.1f} faces/s"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
