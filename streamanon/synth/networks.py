"""Generator G = (appearance encoder E, conditional translator T) and the pair discriminator D.

Sec. 3.3 of the paper: E stacks six ResBlocks and sum-pools them into f_a; T is a U-Net of
ResBlocks whose decoder is modulated by AdaIN from Z_c = FC(concat(Z_id, f_a)); D scores
(image, structure) pairs (hinge loss). Widths are small on purpose: the product target is
<= ~30 ms per 128² face on a 2-core CPU through ONNX Runtime (see benchmarks/bench_generator.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class GeneratorConfigError(ValueError):
    """A generator configuration that cannot build a network."""


@dataclass(frozen=True)
class GeneratorConfig:
    """Shape of the generator; stored with every checkpoint and ONNX file."""

    size: int = 128  # crop side: 128 (default) or 256
    geometry_channels: int = 10  # Z_g: streamanon.visual.GEOMETRY_CHANNELS
    id_dim: int = 128  # Z_id: Ψ's 128-D embedding
    appearance_dim: int = 128  # f_a; equal to id_dim so cos(f_a, f_x) is defined (L4)
    cond_dim: int = 256  # Z_c
    widths: tuple[int, ...] = (16, 32, 64, 96, 128)  # U-Net widths, full res -> bottleneck
    encoder_widths: tuple[int, ...] = (16, 32, 64, 96, 128, 128)  # six ResBlocks of E
    bottleneck_blocks: int = 2
    disc_widths: tuple[int, ...] = (32, 64, 128, 128)
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.size not in (128, 256):
            raise GeneratorConfigError(f"size must be 128 or 256, got {self.size}")
        if len(self.encoder_widths) != 6:
            raise GeneratorConfigError(
                "the appearance encoder has exactly six ResBlocks (paper sec. 3.3)"
            )
        if self.encoder_widths[-1] != self.appearance_dim:
            raise GeneratorConfigError("encoder_widths[-1] must equal appearance_dim")
        if self.appearance_dim != self.id_dim:
            raise GeneratorConfigError(
                "appearance_dim must equal id_dim (L4 compares them by cosine)"
            )
        down = len(self.widths) - 1
        if self.size % (2**down) != 0:
            raise GeneratorConfigError(f"size {self.size} is not divisible by 2**{down}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["encoder_widths"] = list(self.encoder_widths)
        d["disc_widths"] = list(self.disc_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> GeneratorConfig:
        d = dict(d)
        for k in ("widths", "encoder_widths", "disc_widths"):
            if k in d:
                d[k] = tuple(d[k])
        unknown = set(d) - set(cls.__dataclass_fields__)
        if unknown:
            raise GeneratorConfigError(f"unknown generator config keys: {sorted(unknown)}")
        return cls(**d)


class ResBlock(nn.Module):
    """Pre-activation residual block; stride 2 halves the resolution (average-pool shortcut)."""

    def __init__(self, cin: int, cout: int, down: bool = False, norm: bool = True) -> None:
        super().__init__()
        self.down = down
        self.n1 = nn.InstanceNorm2d(cin, affine=True) if norm else nn.Identity()
        # Striding the first conv keeps the expensive second conv at the lower resolution.
        self.c1 = nn.Conv2d(cin, cout, 3, 2 if down else 1, 1)
        self.n2 = nn.InstanceNorm2d(cout, affine=True) if norm else nn.Identity()
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.leaky_relu(self.n1(x), 0.2))
        h = self.c2(F.leaky_relu(self.n2(h), 0.2))
        s = F.avg_pool2d(x, 2) if self.down else x
        return h + self.skip(s)


class AdaIN(nn.Module):
    """Instance norm whose scale and shift come from the condition Z_c (Huang & Belongie)."""

    def __init__(self, channels: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.fc = nn.Linear(cond_dim, 2 * channels)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.fc(c).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.norm(x) * (1 + gamma) + beta


class AdaResBlock(nn.Module):
    """Decoder ResBlock: AdaIN-modulated; with ``up`` the first conv runs before the 2x upsampling."""

    def __init__(self, cin: int, cout: int, cond_dim: int, up: bool = False) -> None:
        super().__init__()
        self.up = up
        self.n1 = AdaIN(cin, cond_dim)
        self.c1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.n2 = AdaIN(cout, cond_dim)
        self.c2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.c1(F.leaky_relu(self.n1(x, c), 0.2))
        s = self.skip(x)
        if self.up:
            # Convolving at the low resolution first costs a quarter of the MACs.
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            s = F.interpolate(s, scale_factor=2.0, mode="nearest")
        h = self.c2(F.leaky_relu(self.n2(h, c), 0.2))
        return h + s


class AppearanceEncoder(nn.Module):
    """E: six downsampling ResBlocks, then sum pooling over space -> f_a (B, appearance_dim)."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        w = cfg.encoder_widths
        self.stem = nn.Conv2d(3, w[0], 3, 1, 1)
        blocks, cin = [], w[0]
        for cout in w:
            blocks.append(ResBlock(cin, cout, down=True, norm=False))
            cin = cout
        self.blocks = nn.Sequential(*blocks)

    def forward(self, z_a: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(z_a))
        # Sum pooling (not mean) as in the paper; the spatial map is 2x2 (128²) or 4x4 (256²).
        return F.leaky_relu(h, 0.2).sum(dim=(2, 3))


class Translator(nn.Module):
    """T: U-Net of ResBlocks; Z_g in, AdaIN(Z_c) in the decoder, x̂ in [-1, 1] out."""

    def __init__(self, cfg: GeneratorConfig) -> None:
        super().__init__()
        w = cfg.widths
        self.stem = nn.Conv2d(cfg.geometry_channels, w[0], 3, 1, 1)
        self.down = nn.ModuleList(ResBlock(w[i], w[i + 1], down=True) for i in range(len(w) - 1))
        self.mid = nn.ModuleList(
            AdaResBlock(w[-1], w[-1], cfg.cond_dim) for _ in range(cfg.bottleneck_blocks)
        )
        ups = []
        for i in range(len(w) - 1, 0, -1):
            # Input: upsampled deeper features concatenated with the skip at this resolution.
            ups.append(AdaResBlock(w[i], w[i - 1], cfg.cond_dim, up=True))
        self.up = nn.ModuleList(ups)
        self.fuse = nn.ModuleList(
            nn.Conv2d(2 * w[i - 1], w[i - 1], 1) for i in range(len(w) - 1, 0, -1)
        )
        self.out = nn.Conv2d(w[0], 3, 3, 1, 1)

    def forward(self, z_g: torch.Tensor, z_c: torch.Tensor) -> torch.Tensor:
        h = self.stem(z_g)
        skips = [h]
        for blk in self.down:
            h = blk(h)
            skips.append(h)
        skips.pop()
        for blk in self.mid:
            h = blk(h, z_c)
        for blk, fuse in zip(self.up, self.fuse, strict=True):
            h = blk(h, z_c)
            h = fuse(torch.cat([h, skips.pop()], dim=1))
        return torch.tanh(self.out(F.leaky_relu(h, 0.2)))


class Generator(nn.Module):
    """G(z_g, z_id, z_a) -> x̂: E encodes Z_a, FC fuses (Z_id, f_a) into Z_c, T renders."""

    def __init__(self, cfg: GeneratorConfig | None = None) -> None:
        super().__init__()
        self.cfg = cfg or GeneratorConfig()
        self.encoder = AppearanceEncoder(self.cfg)
        self.fuse = nn.Sequential(
            nn.Linear(self.cfg.id_dim + self.cfg.appearance_dim, self.cfg.cond_dim),
            nn.LeakyReLU(0.2),
            nn.Linear(self.cfg.cond_dim, self.cfg.cond_dim),
        )
        self.translator = Translator(self.cfg)

    def condition(self, z_id: torch.Tensor, f_a: torch.Tensor) -> torch.Tensor:
        # f_a is a sum over space, so its scale grows with resolution; normalise both parts so
        # neither dominates the FC.
        return self.fuse(torch.cat([F.normalize(z_id, dim=1), F.normalize(f_a, dim=1)], dim=1))

    def forward(self, z_g: torch.Tensor, z_id: torch.Tensor, z_a: torch.Tensor) -> torch.Tensor:
        return self.translator(z_g, self.condition(z_id, self.encoder(z_a)))

    def generate(
        self, z_g: torch.Tensor, z_id: torch.Tensor, z_a: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x̂ and f_a(Z_a) (training needs both)."""
        f_a = self.encoder(z_a)
        return self.translator(z_g, self.condition(z_id, f_a)), f_a


class PairDiscriminator(nn.Module):
    """D(image, structure): patch logits plus the intermediate features (for L2)."""

    def __init__(self, cfg: GeneratorConfig | None = None, structure_channels: int = 1) -> None:
        super().__init__()
        cfg = cfg or GeneratorConfig()
        w = cfg.disc_widths
        layers, cin = [], 3 + structure_channels
        for cout in w:
            layers.append(
                nn.Sequential(
                    nn.utils.spectral_norm(nn.Conv2d(cin, cout, 4, 2, 1)), nn.LeakyReLU(0.2)
                )
            )
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.head = nn.utils.spectral_norm(nn.Conv2d(cin, 1, 3, 1, 1))

    def forward(
        self, image: torch.Tensor, structure: torch.Tensor
    ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        h = torch.cat([image, structure], dim=1)
        feats = []
        for layer in self.layers:
            h = layer(h)
            feats.append(h)
        return self.head(h), feats


def load_generator(ckpt: str | Path, device: str | torch.device = "cpu") -> Generator:
    """The trained G from a checkpoint (``ckpt.pt``), eval mode."""
    ck = torch.load(str(ckpt), map_location=device, weights_only=False)
    g = Generator(GeneratorConfig.from_dict(ck["model"]))
    g.load_state_dict(ck["G"])
    return g.to(device).eval()
