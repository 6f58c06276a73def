"""Ψ (streamanon.identity's torch port of dlib's ResNet) applied to generator crops, differentiably.

The generator works on the canonical 128² crop of ``streamanon.visual``; Ψ wants dlib's 150²
chip. Because every crop is aligned to the same template, one fixed affine map (computed once
from the template with dlib's own chip geometry) takes a crop to its chip; ``grid_sample`` makes
it differentiable, so L3 (Ψ's feature map as the fixed perceptual CNN) and L5 (Ψ's embedding)
can back-propagate into G.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from streamanon.identity.align import PADDING, chip_matrix
from streamanon.visual import TEMPLATE68

CHIP = 150


@lru_cache(maxsize=4)
def crop_to_chip_matrix(size: int = 128) -> np.ndarray:
    """(2, 3) map crop pixels -> dlib chip pixels for a face on the canonical template."""
    import dlib

    pts = TEMPLATE68 * size
    rect = dlib.rectangle(0, 0, size - 1, size - 1)
    shape = dlib.full_object_detection(rect, [dlib.point(round(x), round(y)) for x, y in pts])
    return chip_matrix(dlib.get_face_chip_details(shape, CHIP, PADDING))


def chip_theta(size: int = 128) -> torch.Tensor:
    """affine_grid theta (1, 2, 3): normalised chip coords -> normalised crop coords."""
    m = np.vstack([crop_to_chip_matrix(size), [0, 0, 1]])
    inv = np.linalg.inv(m)  # chip px -> crop px

    def norm(n: int) -> np.ndarray:  # px -> [-1, 1] (align_corners=False)
        return np.array([[2.0 / n, 0, 1.0 / n - 1], [0, 2.0 / n, 1.0 / n - 1], [0, 0, 1]])

    theta = norm(size) @ inv @ np.linalg.inv(norm(CHIP))
    return torch.tensor(theta[:2], dtype=torch.float32)[None]


class PsiOnCrops(nn.Module):
    """Ψ features A and embedding of signed-RGB crops (B, 3, S, S) in [-1, 1]."""

    def __init__(self, recognizer: nn.Module, size: int = 128) -> None:
        super().__init__()
        self.psi = recognizer
        self.register_buffer("theta", chip_theta(size))

    def chips(self, x: torch.Tensor) -> torch.Tensor:
        grid = F.affine_grid(
            self.theta.expand(x.shape[0], 2, 3), [x.shape[0], 3, CHIP, CHIP], align_corners=False
        )
        chip = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
        return self.psi.preprocess((chip + 1.0) * 127.5)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        a = self.psi.features(self.chips(x))
        return a, self.psi.head(a)


def load_psi(size: int = 128, device: str | torch.device = "cpu") -> PsiOnCrops:
    """Ψ on crops; raises ModelMissingError / ImportError when the identity module is absent."""
    from streamanon.identity.recognizer import load_recognizer

    return PsiOnCrops(load_recognizer(device), size).to(device)
