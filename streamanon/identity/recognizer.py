"""Ψ: dlib's 128-D face ResNet as a torch module, with its last feature map reachable.

Input convention (dlib's ``input_rgb_image_sized<150>``): a float tensor (B, 3, 150, 150),
channels R, G, B, each pixel ``(value - mean_rgb) / 256`` with value in 0..255 and
``mean_rgb = (122.782, 117.001, 104.298)``; :func:`preprocess` does this. The chip must be
aligned the way dlib aligns it (:func:`streamanon.identity.align.align_chip`).

The network (dlib's examples/dnn_face_recognition_ex.cpp) has no padding on its strided
layers, so in the down-sampling blocks the conv branch comes out one pixel smaller than the
average-pooled shortcut; dlib's ``add_prev`` then adds the two zero-padded at the bottom and
right. We reproduce that exactly. ``features(x)`` is the output of the last residual block,
A of shape (B, 256, 2, 2); ``head(A)`` is dlib's global average pool and the 128x256 linear
layer. The output is dlib's descriptor: not normalized, same person when the Euclidean
distance is below 0.6.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from streamanon import models
from streamanon.errors import ModelMissingError
from streamanon.identity.align import CHIP_SIZE
from streamanon.identity.convert import BLOCKS
from streamanon.identity.weights import recognizer_state_dict

DLIB_THRESHOLD = 0.6


class _Affine(nn.Module):
    """dlib's affine_ layer (a frozen batch norm): x * gamma + beta per channel."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma[:, None, None] + self.beta[:, None, None]


def _add_padded(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """dlib's add_prev: the sum over the larger shape, the smaller tensor zero-padded."""
    c = max(a.shape[1], b.shape[1])
    h = max(a.shape[2], b.shape[2])
    w = max(a.shape[3], b.shape[3])

    def pad(t: torch.Tensor) -> torch.Tensor:
        return F.pad(t, (0, w - t.shape[3], 0, h - t.shape[2], 0, c - t.shape[1]))

    return pad(a) + pad(b)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, down: bool) -> None:
        super().__init__()
        self.down = down
        stride = 2 if down else 1
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, padding=0 if down else 1)
        self.affine1 = _Affine(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, padding=1)
        self.affine2 = _Affine(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.affine2(self.conv2(F.relu(self.affine1(self.conv1(x)))))
        if self.down:
            return F.relu(_add_padded(y, F.avg_pool2d(x, 2, 2)))
        return F.relu(y + x)


class _Stem(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 7, 2, padding=0)
        self.affine = _Affine(32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(F.relu(self.affine(self.conv(x))), 3, 2)


class Recognizer(nn.Module):
    """Ψ = head ∘ features; ``forward`` returns dlib's 128-D descriptor."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean_rgb", torch.tensor([122.782, 117.001, 104.298]))
        self.stem = _Stem()
        blocks, cin = [], 32
        for cout, down in BLOCKS:
            blocks.append(_Block(cin, cout, down))
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.fc = nn.Linear(256, 128, bias=False)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """A: the last convolutional feature map (B, 256, 2, 2), before the global pool."""
        if x.ndim != 4 or x.shape[1:] != (3, CHIP_SIZE, CHIP_SIZE):
            raise ValueError(f"recognizer input must be (B, 3, 150, 150), got {tuple(x.shape)}")
        return self.blocks(self.stem(x))

    def head(self, a: torch.Tensor) -> torch.Tensor:
        """The rest of Ψ: global average pool, then the 128x256 linear layer."""
        return self.fc(a.mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def preprocess(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, 3, 150, 150) RGB in 0..255 (float, differentiable) -> dlib's input convention."""
        return (rgb - self.mean_rgb[:, None, None]) / 256.0


def load_recognizer(device: str | torch.device = "cpu", weights: Path | None = None) -> Recognizer:
    """The converted dlib ResNet in eval mode, gradients off for its parameters (cached).

    Without ``weights`` the port is built from the installed dlib file at first use (see
    `streamanon.identity.weights`); nothing of it ships in git.
    """

    def build() -> Recognizer:
        if weights is None:
            state = {k: torch.tensor(v) for k, v in recognizer_state_dict().items()}
        else:
            if not Path(weights).is_file():
                raise ModelMissingError(f"recognizer weights {weights} are missing")
            from safetensors.torch import load_file

            state = load_file(str(weights))
        model = Recognizer()
        model.load_state_dict(state)
        return model.eval().requires_grad_(False).to(device)

    return models.cached(f"psi/{weights or 'installed'}/{device}", build)
