"""Benchmark Ψ (dlib ResNet port) and IFA on CPU: faces/s for torch vs ONNX Runtime, ms per IFA.

    python benchmarks/bench_identity.py [--repeat 20] [--threads N]

Uses real aligned chips when ../shared/data is present (random chips otherwise; speed does
not depend on content). Prints one table; numbers depend on the machine's load.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from streamanon.identity.codebook import default_codebook
from streamanon.identity.embed import chips_to_tensor, embed_chips, onnx_embedder
from streamanon.identity.ifa import recast_identity
from streamanon.identity.recognizer import load_recognizer

SHARED = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "faces" / "synthetic" / "sfhq"
)


def _chips(n: int) -> np.ndarray:
    files = sorted(SHARED.glob("*.jpg"))[:n] if SHARED.is_dir() else []
    if len(files) >= n:
        import cv2
        import dlib

        from streamanon.identity.align import align_chip

        det = dlib.get_frontal_face_detector()
        out = []
        for f in files:
            img = cv2.imread(str(f))
            r = det(np.ascontiguousarray(img[:, :, ::-1]), 1)[0]
            out.append(align_chip(img, [r.left(), r.top(), r.right() + 1, r.bottom() + 1])[0])
        return np.stack(out)
    return np.random.default_rng(0).integers(0, 256, (n, 150, 150, 3), dtype=np.uint8)


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    t = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t) / repeat


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="torch/ORT threads (0: default)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    chips = _chips(8)
    model, ort, cb = load_recognizer(), onnx_embedder(), default_codebook()
    rows = []
    for batch in (1, 8):
        c = chips[:batch]
        t_torch = _time(lambda c=c, b=batch: embed_chips(c, batch_size=b), args.repeat)
        t_ort = _time(lambda c=c, b=batch: ort(c, batch_size=b), args.repeat)
        rows.append((f"Ψ forward, batch {batch}", batch / t_torch, batch / t_ort))
    x1 = chips_to_tensor(chips[:1])
    x8 = chips_to_tensor(chips)
    t_ifa1 = _time(lambda: recast_identity(model, x1, cb), args.repeat)
    t_ifa8 = _time(lambda: recast_identity(model, x8, cb), args.repeat)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'':28s} {'torch faces/s':>14s} {'ORT faces/s':>12s}")
    for name, a, b in rows:
        print(f"{name:28s} {a:14.1f} {b:12.1f}")
    print(
        f"IFA (K=5, torch) batch 1: {1000 * t_ifa1:.1f} ms/face; batch 8: {1000 * t_ifa8 / 8:.1f} ms/face"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
