"""The generator's losses L1-L6 (paper eqs. 9-13) as pure functions of tensors, and their weights.

Hinge GAN convention: the discriminator minimises E[max(0, 1 - D(real))] + E[max(0, 1 + D(fake))]
and the generator minimises E[-D(fake)]. (The paper's eq. 10 names the two terms L_G and L_D
the other way round; the maths is the standard hinge loss of [20, 61].)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class LossWeights:
    """λ1-λ6 and β1-β3 of the paper (sec. 4.1 defaults), plus an optional pixel ℓ1 term.

    ``pixel`` is not in the paper (default 0): a short CPU training run converges far faster
    with a direct reconstruction term on x̂ (reconstruction) and x̄ (cycle).
    """

    adversarial: float = 1.0  # λ1
    feature_matching: float = 1.0  # λ2
    perceptual: float = 1.0  # λ3
    appearance: float = 1.0  # λ4
    identity: float = 2.0  # λ5
    background: float = 2.0  # λ6
    beta1: float = 0.6  # adversarial weight of ŷ in the swap
    beta2: float = 2.0  # identity weight of ŷ towards y in the swap
    beta3: float = 0.8  # perceptual weight of ŷ in the swap
    pixel: float = 0.0

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def is_cycle_step(step: int) -> bool:
    """The 1:1 schedule: even steps reconstruct (Z_id = f_x), odd steps swap (x -> y -> x)."""
    return step % 2 == 1


def d_hinge(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator hinge loss."""
    return F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean()


def g_hinge(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator's adversarial loss (L1 term)."""
    return -fake_logits.mean()


def feature_matching(
    real_feats: Sequence[torch.Tensor], fake_feats: Sequence[torch.Tensor]
) -> torch.Tensor:
    """L2: ℓ1 between D's features of the real and the generated pair, summed over layers."""
    if len(real_feats) != len(fake_feats):
        raise ValueError(f"feature lists differ in length: {len(real_feats)} vs {len(fake_feats)}")
    return sum(F.l1_loss(f, r.detach()) for r, f in zip(real_feats, fake_feats, strict=True))


def perceptual(a_feats: Sequence[torch.Tensor], b_feats: Sequence[torch.Tensor]) -> torch.Tensor:
    """ρ: ℓ1 between a fixed CNN's feature maps of two images, summed over layers."""
    if len(a_feats) != len(b_feats):
        raise ValueError(f"feature lists differ in length: {len(a_feats)} vs {len(b_feats)}")
    return sum(F.l1_loss(a, b) for a, b in zip(a_feats, b_feats, strict=True))


def appearance_decorrelation(f_a: torch.Tensor, f_x: torch.Tensor) -> torch.Tensor:
    """d_e = max(0, cos(f_a, f_x)): keeps identity out of the appearance encoder."""
    return F.relu(F.cosine_similarity(f_a, f_x.detach(), dim=1)).mean()


def appearance(f_a_x: torch.Tensor, f_a_out: torch.Tensor, f_x: torch.Tensor) -> torch.Tensor:
    """L4 = E[ℓ1(f_a(x), f_a(x̂))] + E[max(0, cos(f_a(x), f_x))] (eq. 12).

    The ℓ1 compares unit vectors: G sees f_a only through its direction (Z_c normalises it),
    and on raw sum-pooled features E could grow or shrink the term at will (measured: it grew
    from 0.1 to 12 in 70 steps and dominated L_All).
    """
    a, b = F.normalize(f_a_out, dim=1), F.normalize(f_a_x.detach(), dim=1)
    return (a - b).abs().sum(1).mean() + appearance_decorrelation(f_a_x, f_x)


def identity_distance(f_out: torch.Tensor, f_target: torch.Tensor) -> torch.Tensor:
    """d_f: mean ℓ2 distance between identity features (eq. 13)."""
    return (f_out - f_target.detach()).norm(dim=1).mean()


def background_l1(x: torch.Tensor, g: torch.Tensor, face_mask: torch.Tensor) -> torch.Tensor:
    """L6 = E|x_b - g_b|: ℓ1 outside the face mask, averaged over background pixels."""
    if face_mask.dim() == 3:
        face_mask = face_mask.unsqueeze(1)
    bg = 1.0 - face_mask
    denom = (bg.sum() * x.shape[1]).clamp_min(1.0)
    return ((x - g).abs() * bg).sum() / denom


def total(terms: dict[str, torch.Tensor], w: LossWeights) -> torch.Tensor:
    """L_All = Σ λ_i L_i (eq. 9) over the terms present (missing ones count as 0)."""
    lam = {
        "adversarial": w.adversarial,
        "feature_matching": w.feature_matching,
        "perceptual": w.perceptual,
        "appearance": w.appearance,
        "identity": w.identity,
        "background": w.background,
        "pixel": w.pixel,
    }
    unknown = set(terms) - set(lam)
    if unknown:
        raise ValueError(f"unknown loss terms: {sorted(unknown)}")
    out = None
    for k, v in terms.items():
        out = lam[k] * v if out is None else out + lam[k] * v
    if out is None:
        raise ValueError("no loss terms")
    return out
