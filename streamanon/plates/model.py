"""`PlateNet`: a small anchor-free plate detector (CenterNet/FCOS-style), about 0.4 M parameters.

Backbone: two plain 3x3 stride-2 convolutions (stride 4), then depthwise-separable stages to
strides 8, 16 and 32 (the last with a dilated block for context: a close-up plate is as wide
as the image). A top-down path (FPN-like, additions of 1x1 laterals) brings strides 32..8 back
to stride 4, where two heads predict per cell:

- ``heatmap``: the probability that a plate's centre is in this cell (sigmoid, peaks kept by
  a 3x3 max-pool inside the graph, so the ONNX output is already "non-maximum suppressed");
- ``box``: the distances from the cell centre to the plate's left, top, right and bottom
  edges in input pixels (exp of the raw output, times the stride).

Input: BGR uint8 values as float (0-255), any H, W that are multiples of 32.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

STRIDE = 4


def _conv(
    cin: int, cout: int, k: int = 3, s: int = 1, groups: int = 1, dil: int = 1
) -> nn.Sequential:
    pad = dil * (k - 1) // 2
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, s, pad, dilation=dil, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class SepBlock(nn.Module):
    """Depthwise 3x3 (stride s, dilation d) + pointwise 1x1; residual when shapes allow."""

    def __init__(self, cin: int, cout: int, s: int = 1, dil: int = 1) -> None:
        super().__init__()
        self.dw = _conv(cin, cin, 3, s, groups=cin, dil=dil)
        self.pw = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.res = s == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return F.relu(y + x if self.res else y)


class PlateNet(nn.Module):
    """Stride-4 plate heatmap and box distances (see the module docstring)."""

    def __init__(
        self, width: tuple[int, int, int, int, int] = (16, 32, 64, 112, 160), fpn: int = 56
    ) -> None:
        super().__init__()
        c1, c2, c3, c4, c5 = width
        self.register_buffer("mean", torch.tensor([110.0, 115.0, 120.0]).view(1, 3, 1, 1))
        self.stem = nn.Sequential(_conv(3, c1, 3, 2), _conv(c1, c2, 3, 2))  # /4
        self.s8 = nn.Sequential(SepBlock(c2, c3, 2), SepBlock(c3, c3))
        self.s16 = nn.Sequential(SepBlock(c3, c4, 2), SepBlock(c4, c4), SepBlock(c4, c4))
        self.s32 = nn.Sequential(SepBlock(c4, c5, 2), SepBlock(c5, c5), SepBlock(c5, c5, dil=2))
        self.lat = nn.ModuleList(nn.Conv2d(c, fpn, 1) for c in (c2, c3, c4, c5))
        self.smooth = nn.ModuleList(SepBlock(fpn, fpn) for _ in range(3))
        self.head = nn.Sequential(SepBlock(fpn, fpn), SepBlock(fpn, fpn))
        self.hm = nn.Conv2d(fpn, 1, 1)
        self.box = nn.Conv2d(fpn, 4, 1)
        nn.init.constant_(self.hm.bias, -4.6)  # prior 1 %
        nn.init.constant_(self.box.bias, 1.0)
        nn.init.normal_(self.box.weight, std=0.01)

    def raw(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits of the heatmap (n, 1, h/4, w/4) and log box distances / stride (n, 4, ...)."""
        x = (x - self.mean) / 64.0
        f4 = self.stem(x)
        f8 = self.s8(f4)
        f16 = self.s16(f8)
        f32 = self.s32(f16)
        p = self.lat[3](f32)
        for lat, smooth, f in zip(
            (self.lat[2], self.lat[1], self.lat[0]), self.smooth, (f16, f8, f4), strict=True
        ):
            p = smooth(lat(f) + F.interpolate(p, size=f.shape[-2:], mode="nearest"))
        h = self.head(p)
        return self.hm(h), self.box(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Inference outputs: peak-only heatmap (n, 1, h/4, w/4) and box distances in px."""
        logit, box = self.raw(x)
        hm = torch.sigmoid(logit)
        peak = F.max_pool2d(hm, 3, 1, 1)
        hm = hm * (peak == hm).to(hm.dtype)
        return hm, torch.exp(box.clamp(max=6.0)) * STRIDE
