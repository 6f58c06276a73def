"""The refining generator G_r of `--method ida`: the swap render in, a natural face out.

It is the paper's conditional generator G (sec. 3.3) re-cast for what trains on two CPU cores
(docs/generator.md, "How this maps to the paper"): the visual-clue anonymization (VAA + GSA,
eqs. 6-8) already produces the anonymized face as an image — the appearance delegate warped
onto the geometry Ŝ_x over the person's background x_b — and G_r only has to turn that render
into a face that looks photographed: one tone with the person's scene, no seam, no plastic
skin, no blotches. Inputs, all in the canonical crop (S = 128):

    render   (B, 3, S, S)  the `swap` render (delegate on Ŝ_x, blended), RGB in [-1, 1]
    context  (B, 3, S, S)  the person's crop with the face interior zeroed (x_b of the paper)
    mask     (B, 1, S, S)  the face interior the render replaced, [0, 1]
    output   (B, 3, S, S)  the refined crop, RGB in [-1, 1]; only the mask is used

A small U-Net predicts a residual over the render at half resolution (pixel-unshuffle in,
pixel-shuffle out): the delegate's own detail passes through untouched, which keeps its
identity (the paper's L5 with Z_id = the delegate) and costs a quarter of the compute.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

INPUTS = ("render", "context", "mask")
OUTPUT = "refined"


@dataclass(frozen=True)
class RefinerConfig:
    size: int = 128
    widths: tuple[int, ...] = (32, 48, 96, 128)  # per level, from S/2 down
    res_from_level: int = 1  # residual blocks only at this level and below (cheap at S/2)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> RefinerConfig:
        d = dict(d)
        if "widths" in d:
            d["widths"] = tuple(int(w) for w in d["widths"])
        return cls(**d)


def _act() -> nn.Module:
    return nn.LeakyReLU(0.2, inplace=True)


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.a = nn.Conv2d(c, c, 3, padding=1)
        self.b = nn.Conv2d(c, c, 3, padding=1)
        self.act = _act()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.act(self.a(x)))


class Refiner(nn.Module):
    """G_r: (render, context, mask) -> refined crop (see the module doc)."""

    def __init__(self, cfg: RefinerConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RefinerConfig()
        w = cfg.widths
        self.stem = nn.Sequential(nn.Conv2d(7 * 4, w[0], 3, padding=1), _act())
        self.down = nn.ModuleList()
        for i in range(1, len(w)):
            layers: list[nn.Module] = [nn.Conv2d(w[i - 1], w[i], 3, stride=2, padding=1), _act()]
            if i >= cfg.res_from_level:
                layers.append(ResBlock(w[i]))
            self.down.append(nn.Sequential(*layers))
        self.mid = ResBlock(w[-1])
        self.up = nn.ModuleList()
        self.fuse = nn.ModuleList()
        for i in range(len(w) - 1, 0, -1):
            # Convolve before upsampling: a quarter of the multiply-adds at each level.
            self.up.append(nn.Sequential(nn.Conv2d(w[i], w[i - 1], 3, padding=1), _act()))
            self.fuse.append(nn.Sequential(nn.Conv2d(2 * w[i - 1], w[i - 1], 3, padding=1), _act()))
        self.head = nn.Conv2d(w[0], 3 * 4, 3, padding=1)
        nn.init.zeros_(self.head.weight)  # untrained: the render passes through unchanged
        nn.init.zeros_(self.head.bias)

    def forward(
        self, render: torch.Tensor, context: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        x = F.pixel_unshuffle(torch.cat([render, context, mask], 1), 2)
        x = self.stem(x)
        skips = [x]
        for d in self.down:
            x = d(x)
            skips.append(x)
        x = self.mid(skips.pop())
        for up, fuse in zip(self.up, self.fuse, strict=True):
            x = F.interpolate(up(x), scale_factor=2.0, mode="nearest")
            x = fuse(torch.cat([x, skips.pop()], 1))
        return torch.clamp(render + F.pixel_shuffle(self.head(x), 2), -1.0, 1.0)


class PatchDiscriminator(nn.Module):
    """A light patch critic on (image, mask): 4 spectral-norm stride-2 convs, 8² logits at 128²."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        c = [4, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for i in range(4):
            layers += [sn(nn.Conv2d(c[i], c[i + 1], 4, stride=2, padding=1)), _act()]
        layers.append(sn(nn.Conv2d(c[-1], 1, 3, padding=1)))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([image, mask], 1))


def count_parameters(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


# -- losses (pure functions of tensors) ------------------------------------------------------
def _gauss_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    g = torch.exp(-(x * x) / (2 * sigma * sigma))
    g = g / g.sum()
    return (g[:, None] * g[None, :])[None, None]


def ssim_map(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel SSIM of two (B, C, H, W) images in [-1, 1] (Gaussian 11x11, σ 1.5), mean over C."""
    c = a.shape[1]
    win = _gauss_window().to(a).expand(c, 1, 11, 11)
    a, b = (a + 1) / 2, (b + 1) / 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(t, (5, 5, 5, 5), mode="replicate"), win, groups=c)

    mu_a, mu_b = blur(a), blur(b)
    va = blur(a * a) - mu_a**2
    vb = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (va + vb + c2))
    return s.mean(1, keepdim=True)


def masked_mean(t: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``t`` (B, C, H, W) weighted by ``mask`` (B, 1, H, W)."""
    w = mask.expand_as(t)
    return (t * w).sum() / w.sum().clamp_min(1.0)


def gradient_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """ℓ1 between the horizontal and vertical finite differences of ``a`` and ``b`` in the mask."""
    dx = (a[..., :, 1:] - a[..., :, :-1]) - (b[..., :, 1:] - b[..., :, :-1])
    dy = (a[..., 1:, :] - a[..., :-1, :]) - (b[..., 1:, :] - b[..., :-1, :])
    return masked_mean(dx.abs(), mask[..., :, 1:]) + masked_mean(dy.abs(), mask[..., 1:, :])


def weights_to_fp16(m) -> None:
    """Store the large float32 initializers of an ONNX model as float16, each behind a Cast
    back to float32 (ONNX Runtime folds the casts at load: the CPU computes in float32). The
    shipped file is half the size; outputs move by ~1e-3 (test: parity with fp16-rounded
    torch weights)."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    g = m.graph
    casts = []
    for init in list(g.initializer):
        if init.data_type != TensorProto.FLOAT or int(np.prod(init.dims)) < 256:
            continue
        half = numpy_helper.from_array(numpy_helper.to_array(init).astype(np.float16),
                                       init.name + "_fp16")  # fmt: skip
        g.initializer.remove(init)
        g.initializer.append(half)
        casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT))
    for node in reversed(casts):
        g.node.insert(0, node)


def export_refiner(model: Refiner, path, opset: int = 17, fp16_weights: bool = True) -> None:
    """ONNX with a dynamic batch axis; the config goes into the model's metadata."""
    import json

    import onnx

    s = model.cfg.size
    model = model.eval()
    dummy = (torch.zeros(1, 3, s, s), torch.zeros(1, 3, s, s), torch.zeros(1, 1, s, s))
    axes = {n: {0: "batch"} for n in (*INPUTS, OUTPUT)}
    torch.onnx.export(
        model, dummy, str(path), input_names=list(INPUTS), output_names=[OUTPUT],
        dynamic_axes=axes, opset_version=opset, dynamo=False,
    )  # fmt: skip
    m = onnx.load(str(path))
    if fp16_weights:
        weights_to_fp16(m)
    entry = m.metadata_props.add()
    entry.key, entry.value = "streamanon_refiner", json.dumps(model.cfg.to_dict())
    onnx.save(m, str(path))
