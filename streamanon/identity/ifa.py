"""IFA: identity feature anonymization by intrinsic attention distraction (paper eqs. 1-5).

A is Ψ's last feature map (B, C, H, W). For each of the top-K codebook classes c_i:

    α^{c_i}  = (1/Z) Σ_kl ∂y^{c_i}/∂A_kl                        (eq. 2, spatial mean)
    H        = ReLU(α^{c_i} · A)                                (eq. 1, Grad-CAM)
    Φ^{c_i}  = -(α^{c_i} · A) / (α^{c_i} · α^{c_i})             (eq. 4, a (B, H, W) map)
    Â        = A + Σ_i w_i (α^{c_i})^T Φ^{c_i}                  (eq. 5)

and f_x = head(Â). With K = 1 and w = 1, α·Â = 0 at every position (eq. 3).

The class score y^c. A cosine score about the origin is scale-invariant in f = head(A), so
∂y/∂f ⟂ f; since Ψ's head is a mean pool and a linear map, α·mean(A) ∝ (∂y/∂f)·f = 0 and Φ has
zero spatial mean: Â has the same spatial mean as A and f_x == f exactly, whatever K and w
(measured: ‖f_x − f‖ = 0.000 on 520 photos) while the Grad-CAM maps vanish. About the codebook
centre the cosine moves f_x only by the small (∂y/∂f)·center term (median 0.11 for K = 1). So
y^c is the codebook's un-normalized score scale·ĉ·(f − center) (``Codebook.class_scores``: a
linear classifier whose weights are the unit class directions, as a softmax face classifier's
last layer scores classes); classes are still ranked by cosine.

Two measured choices (ablation in docs/identity.md, 520 identity photos, SFHQ codebook):
- With K > 1, eq. 5 as written does not satisfy eq. 3 (α^{c_1}·Â picks up -w_i (α^{c_1}·α^{c_i})
  terms), so the top class keeps CAM energy on ~15% of faces. We orthogonalize the α^{c_i} in
  rank order (Gram-Schmidt; α^{c_1} unchanged) before eqs. 4-5, which makes eq. 3 hold for every
  distracted class when all w_i = 1 and for c_1 whatever w_2..w_K are.
- Removing the attention of a few classes (all w_i = 1) moves f_x too little: with K = 5 it
  stays within dlib's 0.6 of the same person for 55% of pairs. So w_1 = 1 (c_1's attention
  exactly removed) and w_{2..K} = 2.5 (the evidence for the next classes is reversed, not just
  removed): K = 5 then gives a 1.7% re-identification rate.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from streamanon.errors import InputError
from streamanon.identity.codebook import Codebook
from streamanon.identity.recognizer import Recognizer

DEFAULT_K = 5
DEFAULT_WEIGHT_TOP = 1.0  # w_1: c_1's attention exactly removed
DEFAULT_WEIGHT_REST = 2.5  # w_2..w_K

_EPS = 1e-12


def spatial_alpha(grad: torch.Tensor) -> torch.Tensor:
    """Eq. 2: (B, C, H, W) gradients ∂y^c/∂A -> (B, C) neuron importance weights."""
    return grad.mean(dim=(2, 3))


def grad_cam(a: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """Eq. 1: H = ReLU(Σ_j α_j A^j), (B, C, H, W) and (B, C) -> (B, H, W)."""
    return torch.relu(torch.einsum("bc,bchw->bhw", alpha, a))


def phi(alpha: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Eq. 4: Φ = -(α·A) / (α·α), (B, C) and (B, C, H, W) -> (B, H, W)."""
    num = torch.einsum("bc,bchw->bhw", alpha, a)
    den = (alpha * alpha).sum(dim=1).clamp_min(_EPS)
    return -num / den[:, None, None]


def orthogonalize(alphas: torch.Tensor) -> torch.Tensor:
    """Gram-Schmidt over the K classes in rank order: (B, K, C) -> orthonormal (B, K, C).

    Each α^{c_i} keeps only what the higher-ranked classes do not already explain; Φ and ξ
    (eqs. 4-5) do not depend on α's length, so normalizing changes nothing else.
    """
    out: list[torch.Tensor] = []
    for i in range(alphas.shape[1]):
        v = alphas[:, i]
        for u in out:
            v = v - (v * u).sum(dim=1, keepdim=True) * u
        out.append(v / v.norm(dim=1, keepdim=True).clamp_min(_EPS))
    return torch.stack(out, dim=1) if out else alphas


def default_weights(k: int) -> torch.Tensor:
    """w_1 = 1, w_2..w_K = 2.5 (see the module docstring)."""
    w = torch.full((k,), DEFAULT_WEIGHT_REST)
    if k:
        w[0] = DEFAULT_WEIGHT_TOP
    return w


def distract(a: torch.Tensor, alphas: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Eq. 5: Â = A + Σ_i w_i (α^{c_i})^T Φ^{c_i}; alphas (B, K, C), weights (K,) or (B, K)."""
    b, k, c = alphas.shape
    if a.shape[:2] != (b, c):
        raise InputError(f"alphas {tuple(alphas.shape)} do not match feature map {tuple(a.shape)}")
    w = torch.as_tensor(weights, dtype=a.dtype, device=a.device)
    w = w.expand(b, k) if w.ndim <= 1 else w
    a_hat = a
    for i in range(k):  # Φ of every class from the original A, as in eq. 5
        xi = alphas[:, i, :, None, None] * phi(alphas[:, i], a)[:, None]
        a_hat = a_hat + w[:, i, None, None, None] * xi
    return a_hat


def class_alphas(
    recognizer: Recognizer,
    a: torch.Tensor,
    codebook: Codebook,
    classes: torch.Tensor,
    score: str = "linear",
) -> torch.Tensor:
    """α^{c_i} for each face and class: (B, C, H, W), (B, K) -> (B, K, C) via autograd.

    ``score``: "linear" differentiates ``codebook.class_scores`` (the default, see above),
    "cosine" the cosine logits (for which IFA provably leaves f_x = f).
    """
    if score not in ("linear", "cosine"):
        raise InputError(f"score must be 'linear' or 'cosine', got {score!r}")
    a = a.detach().requires_grad_(True)
    with torch.enable_grad():
        f = recognizer.head(a)
        scores = codebook.class_scores(f) if score == "linear" else codebook.logits(f)
        out = []
        for i in range(classes.shape[1]):
            y = scores.gather(1, classes[:, i : i + 1]).sum()  # faces are independent
            (g,) = torch.autograd.grad(y, a, retain_graph=i + 1 < classes.shape[1])
            out.append(spatial_alpha(g))
    if not out:
        return a.new_zeros(a.shape[0], 0, a.shape[1])
    return torch.stack(out, dim=1).detach()


@dataclass
class IFAInfo:
    """What the distraction did, per face."""

    classes: torch.Tensor  # (B, K) codebook indices c_1..c_K of the original face
    logits: torch.Tensor  # (B, K) their cosine logits
    alphas: torch.Tensor  # (B, K, C)
    a: torch.Tensor  # (B, C, H, W) original feature map
    a_hat: torch.Tensor  # (B, C, H, W) distracted feature map
    f: torch.Tensor  # (B, 128) original embedding
    cam_before: torch.Tensor  # (B, H, W) Grad-CAM of c_1 on A
    cam_after: torch.Tensor  # (B, H, W) Grad-CAM of c_1 on Â (gradients taken at Â)


def recast_identity(
    recognizer: Recognizer,
    chip_tensor: torch.Tensor,
    codebook: Codebook,
    k: int = DEFAULT_K,
    weights: float | list[float] | torch.Tensor | None = None,
    orthogonal: bool = True,
    score: str = "linear",
) -> tuple[torch.Tensor, IFAInfo]:
    """Recast identity feature f_x = head(Â) for chips (B, 3, 150, 150) in dlib's convention.

    ``weights``: one w for all K classes, K values, or None for :func:`default_weights`.
    ``orthogonal``: Gram-Schmidt the α^{c_i} first (:func:`orthogonalize`); False is eq. 5
    literally. ``score``: see :func:`class_alphas`.
    """
    if not 0 <= k <= len(codebook):
        raise InputError(f"k must be in 0..{len(codebook)}, got {k}")
    w = default_weights(k) if weights is None else torch.as_tensor(weights, dtype=torch.float32)
    w = w.expand(k) if w.ndim == 0 else w
    if w.shape != (k,) or not torch.isfinite(w).all():
        raise InputError(f"weights must be one number or {k} finite numbers, got {tuple(w.shape)}")
    with torch.no_grad():
        a = recognizer.features(chip_tensor)
        f = recognizer.head(a)
        classes, logits = codebook.topk(f, max(k, 1))
    alphas = class_alphas(recognizer, a, codebook, classes, score)
    used = orthogonalize(alphas[:, :k]) if orthogonal else alphas[:, :k]
    a_hat = distract(a, used, w.to(a))
    with torch.no_grad():
        f_x = recognizer.head(a_hat)
    alpha_hat = class_alphas(recognizer, a_hat, codebook, classes[:, :1], score)
    info = IFAInfo(
        classes=classes[:, :k],
        logits=logits[:, :k],
        alphas=alphas[:, :k],
        a=a,
        a_hat=a_hat,
        f=f,
        cam_before=grad_cam(a, alphas[:, 0]),
        cam_after=grad_cam(a_hat, alpha_hat[:, 0]),
    )
    return f_x, info
