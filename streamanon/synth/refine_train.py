"""`streamanon train configs/refiner_128.toml`: train the refiner G_r (see `synth.refiner`).

Built to run for hours in the background on a shared 2-core machine and be killed at any
moment: one torch thread (``train.threads``), a checkpoint every ``checkpoint_minutes``
(atomic; networks, optimisers, step, numpy and torch RNG states) and on SIGTERM/SIGINT;
re-running the same command resumes exactly where the checkpoint was (the log rows written
after it are dropped). Files in ``train.out_dir``: ``ckpt.pt``, ``log.csv`` (every step's
losses), ``heldout.csv`` (held-out metrics every ``eval_every`` steps: the render's and the
refiner's ℓ1 and SSIM to the real face, inside the face mask), ``samples/step_*.png``
(rows: real face, render, refined, |refined - real| × 4) and ``refiner.onnx`` at the end.

Held out: the faces whose source name hashes into ``data.holdout_percent`` (a split by file,
hence by identity for the synthetic faces; video frames are never held out, all frames of a
clip stay on one side). The evaluation of the method on real video is `synth.ida_eval`.
"""

from __future__ import annotations

import csv
import hashlib
import json
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
import tomllib
import torch
import torch.nn.functional as F

from streamanon.synth.data import FaceSet, load_or_build
from streamanon.synth.refine_data import Degrade, make_pairs
from streamanon.synth.refiner import (
    PatchDiscriminator,
    Refiner,
    RefinerConfig,
    export_refiner,
    gradient_l1,
    masked_mean,
    ssim_map,
)
from streamanon.synth.train import (
    DataSettings,
    TrainConfigError,
    config_section,
    data_spec,
    save_checkpoint,
)
from streamanon.visual import from_signed_rgb


@dataclass
class RefineTrainSettings:
    out_dir: str = ".train/refiner"
    steps: int = 12000
    batch_size: int = 8
    lr: float = 4e-4
    lr_d: float = 2e-4
    seed: int = 0
    threads: int = 1
    checkpoint_minutes: float = 3.0
    eval_every: int = 250
    sample_every: int = 500
    heldout_batch: int = 32
    w_l1: float = 1.0
    w_ssim: float = 0.5
    w_grad: float = 0.5
    w_adv: float = 0.03
    adv_from_step: int = 1500


@dataclass
class RefineRun:
    model: RefinerConfig
    train: RefineTrainSettings
    data: DataSettings
    degrade: Degrade
    holdout_percent: float = 6.0
    extra: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "kind": "refiner",
            "model": self.model.to_dict(),
            "train": asdict(self.train),
            "data": asdict(self.data),
            "degrade": self.degrade.to_dict(),
            "holdout_percent": self.holdout_percent,
        }


def is_refiner_config(path: str | Path) -> bool:
    p = Path(path)
    try:
        return p.suffix == ".toml" and tomllib.loads(p.read_text()).get("kind") == "refiner"
    except (OSError, tomllib.TOMLDecodeError):
        return False


def load_refine_config(path: str | Path, base: Path | None = None) -> RefineRun:
    p = Path(path)
    if not p.is_file():
        raise TrainConfigError(f"config {p} does not exist")
    try:
        raw = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TrainConfigError(f"cannot parse {p}: {e}") from None
    unknown = set(raw) - {"kind", "model", "train", "data", "degrade", "holdout_percent"}
    if unknown:
        raise TrainConfigError(f"unknown sections in {p}: {sorted(unknown)}")
    base = base or Path.cwd()
    data = config_section(DataSettings, dict(raw.get("data", {})), "data")
    data.faces = [str((base / f).resolve()) for f in data.faces]
    data.videos = [str((base / v).resolve()) for v in data.videos]
    if not data.faces and not data.videos:
        raise TrainConfigError("[data] needs at least one of faces = [...] or videos = [...]")
    return RefineRun(
        model=RefinerConfig.from_dict(raw.get("model", {})),
        train=config_section(RefineTrainSettings, dict(raw.get("train", {})), "train"),
        data=data,
        degrade=config_section(Degrade, dict(raw.get("degrade", {})), "degrade"),
        holdout_percent=float(raw.get("holdout_percent", 6.0)),
    )


def held_out(name: str, percent: float) -> bool:
    """A face file is held out when its name hashes below ``percent`` (video frames never)."""
    if "#" in name:
        return False
    h = int(hashlib.sha1(Path(name).name.encode()).hexdigest()[:8], 16)
    return (h % 10000) < percent * 100


def split_faces(fs: FaceSet, percent: float) -> tuple[FaceSet, FaceSet]:
    mask = np.array([held_out(str(n), percent) for n in fs.names])
    return fs.subset(np.nonzero(~mask)[0]), fs.subset(np.nonzero(mask)[0])


def _t(b: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v) for k, v in b.items()}


def loss_terms(
    refined: torch.Tensor, b: dict[str, torch.Tensor], s: RefineTrainSettings
) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor]:
    """(total, terms, composite): ℓ1 + (1 - SSIM) + gradient ℓ1 inside the (grown) face mask."""
    x, m = b["x"], b["mask"]
    comp = refined * m + x * (1.0 - m)
    region = F.max_pool2d(m, 5, stride=1, padding=2)  # the seam just outside counts too
    terms = {
        "l1": masked_mean((comp - x).abs(), region),
        "ssim": 1.0 - masked_mean(ssim_map(comp, x), region),
        "grad": gradient_l1(comp, x, region),
    }
    total = s.w_l1 * terms["l1"] + s.w_ssim * terms["ssim"] + s.w_grad * terms["grad"]
    return total, terms, comp


def heldout_metrics(G: Refiner, b: dict[str, torch.Tensor]) -> dict[str, float]:
    """The render's and the refiner's ℓ1 (grey levels) and SSIM to the real face, in the mask."""
    G.eval()
    with torch.no_grad():
        ref = G(b["render"], b["context"], b["mask"])
    G.train()
    x, m = b["x"], b["mask"]
    out = {}
    for name, img in (("render", b["render"]), ("refined", ref)):
        comp = img * m + x * (1 - m)
        out[f"{name}_l1"] = float(masked_mean((comp - x).abs(), m)) * 127.5
        out[f"{name}_ssim"] = float(masked_mean(ssim_map(comp, x), m))
    return out


def sample_grid(G: Refiner, b: dict[str, torch.Tensor], n: int = 8) -> np.ndarray:
    G.eval()
    with torch.no_grad():
        ref = G(b["render"][:n], b["context"][:n], b["mask"][:n])
    G.train()
    m = b["mask"][:n]
    comp = ref * m + b["x"][:n] * (1 - m)
    diff = ((comp - b["x"][:n]).abs() * 4 - 1).clamp(-1, 1)
    rows = [b["x"][:n], b["render"][:n], comp, diff]
    return np.concatenate(
        [np.concatenate([from_signed_rgb(t) for t in r.numpy()], axis=1) for r in rows], axis=0
    )


class _Stop:
    """SIGTERM/SIGINT set a flag: the loop checkpoints and returns (no half-written state)."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, *_: object) -> None:
        self.requested = True


def run_refiner_training(run: RefineRun, max_seconds: float | None = None) -> Path:
    """Train (or resume) until ``train.steps``; returns the run folder."""
    s = run.train
    out = Path(s.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(run.to_dict(), indent=2))
    torch.set_num_threads(max(1, s.threads))
    cv2.setNumThreads(1)
    torch.manual_seed(s.seed)
    rng = np.random.default_rng(s.seed)
    fs = load_or_build(data_spec(run.data), Path(run.data.cache_dir), run.data.patch)
    train_fs, hold_fs = split_faces(fs, run.holdout_percent)
    if len(hold_fs) == 0 or len(train_fs) == 0:
        raise TrainConfigError(f"split left {len(train_fs)} train / {len(hold_fs)} held-out faces")
    G, D = Refiner(run.model), PatchDiscriminator()
    opt_g = torch.optim.Adam(G.parameters(), lr=s.lr, betas=(0.5, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), lr=s.lr_d, betas=(0.5, 0.99))
    step = 0
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():
        ck = torch.load(str(ckpt), map_location="cpu", weights_only=False)
        G.load_state_dict(ck["G"])
        D.load_state_dict(ck["D"])
        opt_g.load_state_dict(ck["opt_g"])
        opt_d.load_state_dict(ck["opt_d"])
        step = int(ck["step"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])
        print(f"resumed from {ckpt} at step {step}", file=sys.stderr)

    def state() -> dict:
        return {
            "step": step, "G": G.state_dict(), "D": D.state_dict(), "opt_g": opt_g.state_dict(),
            "opt_d": opt_d.state_dict(), "model": run.model.to_dict(),
            "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
        }  # fmt: skip

    hold_idx = np.arange(len(hold_fs))[: s.heldout_batch]
    fixed = _t(make_pairs(hold_fs, hold_idx, np.random.default_rng(12345), run.degrade))
    cols = ["step", "time", "sec", "total", "l1", "ssim", "grad", "adv", "d"]
    log_path, ho_path = out / "log.csv", out / "heldout.csv"
    for p in (log_path, ho_path):  # rows logged after the checkpoint we resume from
        if p.is_file():
            lines = p.read_text().splitlines(keepends=True)
            keep = [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= step]
            p.write_text("".join(lines[:1] + keep))
    stop = _Stop()
    old = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    t0 = last_ck = time.time()
    try:
        with log_path.open("a", newline="") as fh, ho_path.open("a", newline="") as fh2:
            wr = csv.DictWriter(fh, fieldnames=cols, restval="")
            ho_cols = ["step", "render_l1", "refined_l1", "render_ssim", "refined_ssim"]
            wr2 = csv.DictWriter(fh2, fieldnames=ho_cols)
            if fh.tell() == 0:
                wr.writeheader()
            if fh2.tell() == 0:
                wr2.writeheader()
            while step < s.steps and not stop.requested:
                if max_seconds is not None and time.time() - t0 > max_seconds:
                    break
                ts = time.time()
                idx = rng.integers(0, len(train_fs), s.batch_size)
                b = _t(make_pairs(train_fs, idx, rng, run.degrade))
                refined = G(b["render"], b["context"], b["mask"])
                total, terms, comp = loss_terms(refined, b, s)
                adv_on = s.w_adv > 0 and step >= s.adv_from_step
                if adv_on:
                    terms["adv"] = -D(comp, b["mask"]).mean()
                    total = total + s.w_adv * terms["adv"]
                opt_g.zero_grad(set_to_none=True)
                total.backward()
                opt_g.step()
                if adv_on:
                    real = D(b["x"], b["mask"])
                    fake = D(comp.detach(), b["mask"])
                    loss_d = F.relu(1 - real).mean() + F.relu(1 + fake).mean()
                    opt_d.zero_grad(set_to_none=True)
                    loss_d.backward()
                    opt_d.step()
                    terms["d"] = loss_d
                step += 1
                row = {k: round(float(v.detach()), 5) for k, v in terms.items()}
                wr.writerow({"step": step, "time": round(time.time(), 1),
                             "sec": round(time.time() - ts, 3), "total": round(float(total.detach()), 5),
                             **row})  # fmt: skip
                fh.flush()
                if step % s.eval_every == 0:
                    wr2.writerow({"step": step, **{k: round(v, 4) for k, v in
                                                   heldout_metrics(G, fixed).items()}})  # fmt: skip
                    fh2.flush()
                if step % s.sample_every == 0:
                    cv2.imwrite(
                        str(out / "samples" / f"step_{step:06d}.png"), sample_grid(G, fixed)
                    )
                if time.time() - last_ck > 60 * s.checkpoint_minutes:
                    save_checkpoint(ckpt, state())
                    last_ck = time.time()
    finally:
        save_checkpoint(ckpt, state())
        for sig, h in old.items():
            signal.signal(sig, h)
    if step >= s.steps:
        export_refiner(G, out / "refiner.onnx")
    return out


def load_refiner(ckpt_path: str | Path) -> Refiner:
    ck = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    G = Refiner(RefinerConfig.from_dict(ck["model"]))
    G.load_state_dict(ck["G"])
    return G.eval()
