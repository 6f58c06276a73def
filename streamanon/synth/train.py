"""`streamanon train CONFIG`: train the generator (paper sec. 3.4) on faces and video frames.

One run = one folder (``train.out_dir``): ``ckpt.pt`` (resumable: networks, optimisers, step,
RNG states), ``log.csv`` (every loss of every step), ``samples/step_XXXXXX.png`` grids,
``config.json`` (the resolved config) and, at the end, ``metrics.json`` and ``generator.onnx``.
Re-running the same command resumes from ``ckpt.pt``. Same code on CPU and CUDA (``device``).
"""

from __future__ import annotations

import csv
import json
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path

import cv2
import numpy as np
import tomllib
import torch

from streamanon.synth import losses as L
from streamanon.synth.data import Augment, FaceSet, load_or_build, make_batch, split_holdout
from streamanon.synth.networks import (  # noqa: F401 - load_generator re-exported
    Generator,
    GeneratorConfig,
    PairDiscriminator,
    load_generator,
)
from streamanon.visual import from_signed_rgb

STRUCTURE = slice(0, 7)  # Z_g channels D sees as the structure S_x: landmark edges + face mask
MASK = 6
BACKGROUND = slice(7, 10)


class TrainConfigError(ValueError):
    """A training config that cannot be used."""


@dataclass
class TrainSettings:
    out_dir: str = ".train/run"
    steps: int = 20000
    batch_size: int = 8
    lr_g: float = 2e-4
    lr_d: float = 2e-4
    betas: tuple[float, float] = (0.0, 0.99)
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int = 0  # torch CPU threads (0 = torch's default)
    psi: str = "auto"  # auto | on | off: Ψ for L3/L5 (off when streamanon.identity is absent)
    psi_from_step: int = 0  # curriculum: L3/L5 join after this step (Ψ triples a CPU step's cost)
    log_every: int = 1
    sample_every: int = 200
    checkpoint_every: int = 100
    eval_faces: int = 0  # held-out faces for the final evaluation (0 = all held out)


@dataclass
class DataSettings:
    faces: list[str] = field(default_factory=list)
    videos: list[str] = field(default_factory=list)
    frame_step: int = 10
    max_frames_per_video: int = 60
    holdout: int = 40
    patch: int = 192
    cache_dir: str = ".train/cache"


@dataclass
class RunConfig:
    model: GeneratorConfig
    loss: L.LossWeights
    train: TrainSettings
    data: DataSettings
    augment: Augment

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return {
            "model": self.model.to_dict(),
            "loss": self.loss.to_dict(),
            "train": asdict(self.train),
            "data": asdict(self.data),
            "augment": asdict(self.augment),
        }


def config_section(cls, d: dict, name: str):
    """``cls(**d)`` for config section ``[name]``; unknown keys are a `TrainConfigError`."""
    known = {f.name for f in fields(cls)}
    unknown = set(d) - known
    if unknown:
        raise TrainConfigError(f"unknown keys in [{name}]: {sorted(unknown)}")
    if "betas" in d:
        d = {**d, "betas": tuple(d["betas"])}
    return cls(**d)


def load_config(path: str | Path, base: Path | None = None) -> RunConfig:
    """Read a TOML or JSON training config; data paths are resolved against ``base`` (the cwd)."""
    p = Path(path)
    if not p.is_file():
        raise TrainConfigError(f"config {p} does not exist")
    try:
        raw = tomllib.loads(p.read_text()) if p.suffix == ".toml" else json.loads(p.read_text())
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as e:
        raise TrainConfigError(f"cannot parse {p}: {e}") from None
    unknown = set(raw) - {"model", "loss", "train", "data", "augment"}
    if unknown:
        raise TrainConfigError(f"unknown sections in {p}: {sorted(unknown)}")
    base = base or Path.cwd()
    data = config_section(DataSettings, raw.get("data", {}), "data")
    data.faces = [str((base / f).resolve()) for f in data.faces]
    data.videos = [str((base / v).resolve()) for v in data.videos]
    if not data.faces and not data.videos:
        raise TrainConfigError("[data] needs at least one of faces = [...] or videos = [...]")
    return RunConfig(
        model=GeneratorConfig.from_dict(raw.get("model", {})),
        loss=config_section(L.LossWeights, raw.get("loss", {}), "loss"),
        train=config_section(TrainSettings, raw.get("train", {}), "train"),
        data=data,
        augment=config_section(Augment, raw.get("augment", {}), "augment"),
    )


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainConfigError("device = 'cuda' but torch sees no CUDA GPU")
    return torch.device(name)


def data_spec(d: DataSettings) -> dict:
    spec: dict = {"faces": d.faces}
    if d.videos:  # keeps the cache key of face-only specs independent of the video settings
        spec.update(
            videos=d.videos, frame_step=d.frame_step, max_frames_per_video=d.max_frames_per_video
        )
    return spec


def load_faces(cfg: RunConfig) -> tuple[FaceSet, FaceSet]:
    fs = load_or_build(data_spec(cfg.data), Path(cfg.data.cache_dir), cfg.data.patch)
    tr, ho = split_holdout(len(fs), cfg.data.holdout, cfg.train.seed)
    return fs.subset(tr), fs.subset(ho)


def _t(batch: dict[str, np.ndarray], dev: torch.device) -> dict[str, torch.Tensor]:
    return {k: torch.from_numpy(v).to(dev) for k, v in batch.items() if k != "landmarks"}


class Trainer:
    """Owns G, D, the optimisers, Ψ and one step of the 1:1 reconstruction / cycle schedule."""

    def __init__(self, cfg: RunConfig, psi: torch.nn.Module | None, device: torch.device) -> None:
        self.cfg, self.w, self.dev = cfg, cfg.loss, device
        self.G = Generator(cfg.model).to(device)
        self.D = PairDiscriminator(cfg.model, structure_channels=STRUCTURE.stop).to(device)
        t = cfg.train
        self.opt_g = torch.optim.Adam(self.G.parameters(), lr=t.lr_g, betas=t.betas)
        self.opt_d = torch.optim.Adam(self.D.parameters(), lr=t.lr_d, betas=t.betas)
        self.psi = psi
        self.step = 0

    def generator_terms(self, b: dict[str, torch.Tensor], y_id: torch.Tensor, cycle: bool):
        """Loss terms for G and the fakes D needs; see eqs. 10-13."""
        w = self.w
        x, z_g, z_a, f_x = b["x"], b["z_g"], b["z_a"], b["z_id"]
        s_x, mask = z_g[:, STRUCTURE], z_g[:, MASK : MASK + 1]
        real_logits, real_feats = self.D(x, s_x)
        terms: dict[str, torch.Tensor] = {}
        if not cycle:
            x_hat, f_a_x = self.G.generate(z_g, f_x, z_a)
            fake_logits, fake_feats = self.D(x_hat, s_x)
            terms["adversarial"] = L.g_hinge(fake_logits)
            terms["feature_matching"] = L.feature_matching(real_feats, fake_feats)
            f_a_out = self.G.encoder(x_hat * mask)
            terms["appearance"] = L.appearance(f_a_x, f_a_out, f_x)
            terms["background"] = L.background_l1(x, x_hat, mask)
            if w.pixel:
                terms["pixel"] = (x_hat - x).abs().mean()
            if self.psi is not None:
                with torch.no_grad():
                    a_x, _ = self.psi(x)
                a_hat, e_hat = self.psi(x_hat)
                terms["perceptual"] = L.perceptual([a_x], [a_hat])
                terms["identity"] = L.identity_distance(e_hat, f_x)
            return terms, [(x_hat, 1.0)], real_logits
        # Cycle: ŷ = G(f_y, Z_a(x), Z_g(x)); x̄ = G(f_x, Z_a(ŷ), Z_g(ŷ)); same structure S_x.
        y_hat, f_a_x = self.G.generate(z_g, y_id, z_a)
        z_g_y = torch.cat([z_g[:, : BACKGROUND.start], y_hat * (1.0 - mask)], dim=1)
        x_bar = self.G(z_g_y, f_x, y_hat * mask)
        ly, fy = self.D(y_hat, s_x)
        lx, fx = self.D(x_bar, s_x)
        terms["adversarial"] = w.beta1 * L.g_hinge(ly) + L.g_hinge(lx)
        terms["feature_matching"] = w.beta1 * L.feature_matching(
            real_feats, fy
        ) + L.feature_matching(real_feats, fx)
        terms["appearance"] = L.appearance(f_a_x, self.G.encoder(y_hat * mask), f_x)
        terms["background"] = L.background_l1(x, y_hat, mask) + L.background_l1(x, x_bar, mask)
        if w.pixel:
            terms["pixel"] = (x_bar - x).abs().mean()
        if self.psi is not None:
            with torch.no_grad():
                a_x, _ = self.psi(x)
            a_y, e_y = self.psi(y_hat)
            a_b, e_b = self.psi(x_bar)
            terms["perceptual"] = w.beta3 * L.perceptual([a_x], [a_y]) + L.perceptual([a_x], [a_b])
            terms["identity"] = w.beta2 * L.identity_distance(e_y, y_id) + L.identity_distance(
                e_b, f_x
            )
        return terms, [(y_hat, w.beta1), (x_bar, 1.0)], real_logits

    def train_step(self, b: dict[str, torch.Tensor], y_id: torch.Tensor) -> dict[str, float]:
        cycle = L.is_cycle_step(self.step)
        self.G.train()
        psi = self.psi
        if self.step < self.cfg.train.psi_from_step:
            self.psi = None
        try:
            terms, fakes, _ = self.generator_terms(b, y_id, cycle)
        finally:
            self.psi = psi
        loss_g = L.total(terms, self.w)
        self.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.opt_g.step()
        # Discriminator on the same fakes, detached.
        s_x = b["z_g"][:, STRUCTURE]
        real_logits, _ = self.D(b["x"], s_x)
        loss_d = sum(
            wt * L.d_hinge(real_logits, self.D(f.detach(), s_x)[0]) for f, wt in fakes
        ) / sum(wt for _, wt in fakes)
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()
        self.step += 1
        out = {k: float(v.detach()) for k, v in terms.items()}
        out.update(total_g=float(loss_g.detach()), d=float(loss_d.detach()), cycle=int(cycle))
        return out

    # -- checkpoints ------------------------------------------------------------------------
    def state(self, rng: np.random.Generator) -> dict:
        return {
            "step": self.step,
            "G": self.G.state_dict(),
            "D": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "model": self.cfg.model.to_dict(),
            "rng": rng.bit_generator.state,
            "torch_rng": torch.get_rng_state(),
        }

    def load(self, ck: dict, rng: np.random.Generator) -> None:
        self.G.load_state_dict(ck["G"])
        self.D.load_state_dict(ck["D"])
        self.opt_g.load_state_dict(ck["opt_g"])
        self.opt_d.load_state_dict(ck["opt_d"])
        self.step = int(ck["step"])
        rng.bit_generator.state = ck["rng"]
        torch.set_rng_state(ck["torch_rng"])


def save_checkpoint(path: Path, state: dict) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    tmp.replace(path)  # atomic: a kill mid-save never corrupts the last checkpoint


def sample_grid(G: Generator, b: dict[str, torch.Tensor], y_id: torch.Tensor) -> np.ndarray:
    """Rows: x, Z_a, Z_g background + edges, reconstruction x̂, swap ŷ (Z_id of another face)."""
    G.eval()
    with torch.no_grad():
        rec = G(b["z_g"], b["z_id"], b["z_a"])
        swp = G(b["z_g"], y_id, b["z_a"])
    G.train()
    edges = b["z_g"][:, :6].amax(1, keepdim=True)
    geo = torch.maximum(b["z_g"][:, BACKGROUND], edges * 2 - 1)
    rows = []
    for t in (b["x"], b["z_a"], geo, rec, swp):
        rows.append(np.concatenate([from_signed_rgb(im) for im in t.cpu().numpy()], axis=1))
    return np.concatenate(rows, axis=0)


def _shuffle_other(rng: np.random.Generator, n: int) -> np.ndarray:
    """A permutation with no fixed point (y != x within the batch)."""
    if n < 2:
        return np.zeros(n, np.int64)
    return (np.arange(n) + rng.integers(1, n)) % n


def run_training(cfg: RunConfig, max_seconds: float | None = None) -> Path:
    """Train (or resume) until ``train.steps``; returns the run folder."""
    out = Path(cfg.train.out_dir)
    (out / "samples").mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2))
    dev = pick_device(cfg.train.device)
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.train.seed)
    rng = np.random.default_rng(cfg.train.seed)
    psi = None
    if cfg.train.psi != "off":
        try:
            from streamanon.synth.psi import load_psi

            psi = load_psi(cfg.model.size, dev)
        except (ImportError, RuntimeError) as e:
            if cfg.train.psi == "on":
                raise
            print(f"Ψ unavailable ({e}); training without L3/L5", file=sys.stderr)
    train_fs, hold_fs = load_faces(cfg)
    tr = Trainer(cfg, psi, dev)
    ckpt = out / "ckpt.pt"
    if ckpt.is_file():
        tr.load(torch.load(str(ckpt), map_location=dev, weights_only=False), rng)
        print(f"resumed from {ckpt} at step {tr.step}", file=sys.stderr)
    fixed = _t(make_batch(hold_fs, np.arange(min(8, len(hold_fs))), None, None), dev)
    fixed_y = fixed["z_id"][_shuffle_other(np.random.default_rng(1), len(fixed["z_id"]))]
    log_path = out / "log.csv"
    cols = ["step", "time", "sec", "cycle", "total_g", "d", "adversarial", "feature_matching"]
    cols += ["perceptual", "appearance", "identity", "background", "pixel"]
    if log_path.is_file():  # drop rows logged after the checkpoint we resume from
        lines = log_path.read_text().splitlines(keepends=True)
        keep = [ln for ln in lines[1:] if int(ln.split(",", 1)[0]) <= tr.step]
        log_path.write_text("".join(lines[:1] + keep))
    new_log = not log_path.is_file()
    t0 = time.time()
    with log_path.open("a", newline="") as fh:
        wr = csv.DictWriter(fh, fieldnames=cols, restval="")
        if new_log:
            wr.writeheader()
        while tr.step < cfg.train.steps:
            if max_seconds is not None and time.time() - t0 > max_seconds:
                break
            ts = time.time()
            idx = rng.integers(0, len(train_fs), cfg.train.batch_size)
            b = _t(make_batch(train_fs, idx, rng, cfg.augment), dev)
            y_id = b["z_id"][_shuffle_other(rng, len(idx))]
            rec = tr.train_step(b, y_id)
            if tr.step % cfg.train.log_every == 0:
                wr.writerow(
                    {
                        "step": tr.step,
                        "time": round(time.time(), 1),
                        "sec": round(time.time() - ts, 3),
                        **rec,
                    }
                )
                fh.flush()
            if tr.step % cfg.train.sample_every == 0:
                grid = sample_grid(tr.G, fixed, fixed_y)
                cv2.imwrite(str(out / "samples" / f"step_{tr.step:06d}.png"), grid)
            if tr.step % cfg.train.checkpoint_every == 0:
                save_checkpoint(ckpt, tr.state(rng))
    save_checkpoint(ckpt, tr.state(rng))
    return out
