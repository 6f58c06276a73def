"""`streamanon train CONFIG`: train the generator, then evaluate and (optionally) ship it.

The command sits above both `train` (the loop) and `evaluate` (held-out metrics), so neither
of those imports the other.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from streamanon.synth.evaluate import evaluate_run
from streamanon.synth.networks import load_generator
from streamanon.synth.refine_train import (
    is_refiner_config,
    load_refine_config,
    run_refiner_training,
)
from streamanon.synth.train import RunConfig, load_config, run_training


def train_main(argv: list[str] | None = None) -> int:
    """Entry point of ``streamanon train CONFIG``."""
    ap = argparse.ArgumentParser(
        prog="streamanon train", description="train the face generator from a config"
    )
    ap.add_argument("config", help="TOML or JSON training config (see configs/)")
    ap.add_argument(
        "--max-minutes", type=float, default=None, help="stop (resumably) after this long"
    )
    ap.add_argument("--steps", type=int, default=None, help="override train.steps")
    ap.add_argument(
        "--eval-only", action="store_true", help="evaluate the run's checkpoint and export"
    )
    ap.add_argument("--ship", type=Path, default=None, help="after evaluation, copy the model here")
    args = ap.parse_args(argv)
    if is_refiner_config(args.config):
        return _train_refiner(args)
    cfg = load_config(args.config)
    if args.steps is not None:
        cfg.train.steps = args.steps
    out = Path(cfg.train.out_dir)
    if not args.eval_only:
        out = run_training(cfg, None if args.max_minutes is None else 60 * args.max_minutes)
        ck = torch.load(str(out / "ckpt.pt"), map_location="cpu", weights_only=False)
        if ck["step"] < cfg.train.steps:
            print(f"stopped at step {ck['step']} of {cfg.train.steps}; run again to resume")
            return 0
    metrics = evaluate_run(cfg, out)
    print(json.dumps(metrics, indent=2))
    if args.ship:
        ship(cfg, out, args.ship)
    return 0


def _train_refiner(args: argparse.Namespace) -> int:
    """The refiner of `--method ida` (configs/refiner_128.toml): train/resume, then ship."""
    import shutil

    run = load_refine_config(args.config)
    if args.steps is not None:
        run.train.steps = args.steps
    out = Path(run.train.out_dir)
    if not args.eval_only:
        out = run_refiner_training(run, None if args.max_minutes is None else 60 * args.max_minutes)
    onnx = out / "refiner.onnx"
    if not onnx.is_file():
        ck = torch.load(str(out / "ckpt.pt"), map_location="cpu", weights_only=False)
        if not args.eval_only:
            print(f"stopped at step {ck['step']} of {run.train.steps}; run again to resume")
            return 0
        from streamanon.synth.refine_train import load_refiner
        from streamanon.synth.refiner import export_refiner

        export_refiner(load_refiner(out / "ckpt.pt"), onnx)
    if args.ship:
        args.ship.mkdir(parents=True, exist_ok=True)
        shutil.copy(onnx, args.ship / "refiner_128.onnx")
        print(f"shipped {args.ship / 'refiner_128.onnx'}")
    return 0


def ship(cfg: RunConfig, out: Path, engines: Path, name: str = "generator_128") -> list[Path]:
    """Copy a evaluated run into ``engines/``: ONNX, safetensors of G, config+metrics, grids."""
    import shutil

    from safetensors.torch import save_file

    engines.mkdir(parents=True, exist_ok=True)
    G = load_generator(out / "ckpt.pt")
    files = [engines / f"{name}.onnx", engines / f"{name}.safetensors", engines / f"{name}.json"]
    shutil.copy(out / "generator.onnx", files[0])
    save_file({k: v.contiguous() for k, v in G.state_dict().items()}, str(files[1]))
    info = {"config": cfg.to_dict(), "metrics": json.loads((out / "metrics.json").read_text())}
    files[2].write_text(json.dumps(info, indent=2))
    for src, dst in (
        ("eval_grid.png", f"{name}_eval_swap.png"),
        ("eval_grid_ifa.png", f"{name}_eval_ifa.png"),
    ):
        if (out / src).is_file():
            shutil.copy(out / src, engines / dst)
            files.append(engines / dst)
    return files


if __name__ == "__main__":
    raise SystemExit(train_main())
