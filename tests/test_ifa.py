"""IFA (paper eqs. 1-5): the maths on small tensors, then what it does to real faces."""

from __future__ import annotations

import cv2
import dlib
import numpy as np
import pytest
import torch

from streamanon.errors import InputError
from streamanon.identity import ifa
from streamanon.identity.align import align_chip
from streamanon.identity.codebook import Codebook, default_codebook
from streamanon.identity.embed import chips_to_tensor
from streamanon.identity.recognizer import load_recognizer
from tests.conftest import needs_shared


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)  # ~10x faster than two contended threads on the shared CPU
    yield
    torch.set_num_threads(n)


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _dot(alpha: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    return torch.einsum("bc,bchw->bhw", alpha, a)


# ---- the maths, small tensors ------------------------------------------------------------


def test_phi_closed_form_eq4():
    a, alpha = _rand(2, 6, 3, 4), _rand(2, 6, seed=1)
    got = ifa.phi(alpha, a)
    for b in range(2):
        for k in range(3):
            for col in range(4):
                want = -sum(alpha[b, j] * a[b, j, k, col] for j in range(6)) / (alpha[b] @ alpha[b])
                assert torch.isclose(got[b, k, col], want)


def test_eq3_single_class_attention_vanishes():
    a, alpha = _rand(3, 8, 2, 2), _rand(3, 8, seed=1)
    a_hat = ifa.distract(a, alpha[:, None], torch.ones(1))
    assert _dot(alpha, a).abs().max() > 0.5
    assert _dot(alpha, a_hat).abs().max() < 1e-10
    # ξ only moves A along α: the part of A orthogonal to α is untouched.
    assert torch.allclose(
        (a_hat - a) - alpha[:, :, None, None] * ifa.phi(alpha, a)[:, None], torch.zeros_like(a)
    )


def test_eq5_literal_breaks_eq3_for_correlated_classes_orthogonalized_does_not():
    a = _rand(2, 8, 2, 2)
    base = _rand(2, 8, seed=1)
    alphas = torch.stack([base, base + 0.5 * _rand(2, 8, seed=2), _rand(2, 8, seed=3)], dim=1)
    literal = ifa.distract(a, alphas, torch.ones(3))
    assert _dot(alphas[:, 0], literal).abs().max() > 1e-2  # eq. 5 as written, K > 1
    ortho = ifa.distract(a, ifa.orthogonalize(alphas), torch.ones(3))
    for i in range(3):
        assert _dot(alphas[:, i], ortho).abs().max() < 1e-10
    # With w_1 = 1 the top class vanishes exactly whatever the other weights are.
    mixed = ifa.distract(a, ifa.orthogonalize(alphas), torch.tensor([1.0, 2.5, 2.5]))
    assert _dot(alphas[:, 0], mixed).abs().max() < 1e-10
    assert _dot(alphas[:, 1], mixed).abs().max() > 1e-2


def test_orthogonalize_keeps_rank_order_and_span():
    alphas = _rand(2, 3, 8)
    q = ifa.orthogonalize(alphas)
    gram = q @ q.transpose(1, 2)
    assert torch.allclose(gram, torch.eye(3, dtype=q.dtype).expand(2, 3, 3), atol=1e-12)
    assert torch.allclose(q[:, 0], alphas[:, 0] / alphas[:, 0].norm(dim=1, keepdim=True))


def test_k0_gives_a_hat_equal_a():
    a = _rand(2, 8, 2, 2)
    assert torch.equal(ifa.distract(a, a.new_zeros(2, 0, 8), torch.ones(0)), a)


def test_grad_cam_is_relu_of_weighted_maps_eq1():
    a, alpha = _rand(1, 4, 2, 2), _rand(1, 4, seed=5)
    cam = ifa.grad_cam(a, alpha)
    assert torch.allclose(cam, torch.clamp(_dot(alpha, a), min=0))
    assert (cam >= 0).all()


class _LinearHead:
    """Ψ's head shape (mean pool + linear) with small random weights."""

    def __init__(self) -> None:
        self.w = _rand(128, 8, seed=7).float()

    def head(self, a: torch.Tensor) -> torch.Tensor:
        return a.mean(dim=(2, 3)) @ self.w.T


def _small_codebook(centered: bool) -> Codebook:
    emb = _rand(10, 128, seed=8).float().numpy()
    return Codebook.from_embeddings(emb, [f"id{i}" for i in range(10)], centered=centered)


def test_alpha_is_spatial_mean_of_gradient_eq2():
    head, cb = _LinearHead(), _small_codebook(centered=True)
    a = _rand(2, 8, 3, 3, seed=9).float()
    classes = torch.tensor([[3, 1], [0, 7]])
    alphas = ifa.class_alphas(head, a, cb, classes)
    chat = torch.nn.functional.normalize(torch.as_tensor(cb.centroids - cb.center), dim=1)
    # y^c = s ĉ·(W mean(A) - μ)  =>  ∂y/∂A_kl = s W^T ĉ / Z at every position, whose mean is s W^T ĉ / Z
    want = cb.scale * (chat[classes] @ head.w) / 9
    assert torch.allclose(alphas, want, atol=1e-5)


def test_cosine_score_leaves_the_feature_unchanged():
    """Why IFA differentiates the un-normalized score: the cosine one gives f_x == f."""
    head, cb = _LinearHead(), _small_codebook(centered=False)
    a = _rand(4, 8, 2, 2, seed=10).float()
    classes = cb.topk(head.head(a), 3)[0]
    for score, moved in (("cosine", False), ("linear", True)):
        alphas = ifa.class_alphas(head, a, cb, classes, score=score)
        f_x = head.head(ifa.distract(a, ifa.orthogonalize(alphas), torch.ones(3)))
        change = (f_x - head.head(a)).norm(dim=1).max()
        assert (change > 1e-2) == moved, (score, change)


def test_bad_options_raise():
    model, cb = load_recognizer(), default_codebook()
    x = torch.zeros(1, 3, 150, 150)
    with pytest.raises(InputError, match="weights"):
        ifa.recast_identity(model, x, cb, k=3, weights=[1.0, 2.0])
    with pytest.raises(InputError, match="k must be"):
        ifa.recast_identity(model, x, cb, k=len(cb) + 1)
    with pytest.raises(InputError, match="score"):
        ifa.recast_identity(model, x, cb, k=2, score="softmax")


# ---- real faces ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def identity_faces() -> dict:
    """Up to 4 photos each of 24 people: chips, labels, original embeddings, IFA result."""
    root = needs_shared("faces", "identities")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    folders = [f for f in folders if not f.name.startswith("orl")] + [
        f for f in folders if f.name.startswith("orl")
    ][::6]
    det = dlib.get_frontal_face_detector()
    chips, labels = [], []
    for folder in folders[:24]:
        for path in sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:4]:
            image = cv2.imread(str(path))
            s = min(1.0, 320 / max(image.shape[:2]))
            small = cv2.resize(image, None, fx=s, fy=s) if s < 1 else image
            rects = det(np.ascontiguousarray(small[:, :, ::-1]), int(max(small.shape[:2]) < 200))
            if rects:
                r = max(rects, key=lambda r: r.area())
                box = np.array([r.left(), r.top(), r.right() + 1, r.bottom() + 1]) / s
                chips.append(align_chip(image, box)[0])
                labels.append(folder.name)
    model, cb = load_recognizer(), default_codebook()
    x = chips_to_tensor(np.stack(chips))
    f_x, info = ifa.recast_identity(model, x, cb)
    return {"labels": np.array(labels), "f_x": f_x, "info": info, "x": x, "cb": cb}


def test_top_class_cam_energy_drops_below_5_percent(identity_faces):
    info = identity_faces["info"]
    before = info.cam_before.sum(dim=(1, 2))
    after = info.cam_after.sum(dim=(1, 2))
    assert len(before) >= 60 and (before > 0).all()
    ratio = after / before
    print(f"\nCAM energy after/before: max {ratio.max():.4f} over {len(ratio)} faces")
    assert (ratio <= 0.05).all()


def test_recast_feature_is_not_reidentified(identity_faces):
    """dlib threshold 0.6: f_x against every original embedding of the same person."""
    labels, f_x, f = identity_faces["labels"], identity_faces["f_x"], identity_faces["info"].f
    d = torch.cdist(f_x, f).numpy()
    same = labels[:, None] == labels[None]
    reid = (d[same] < 0.6).mean()
    own = (np.diag(d) < 0.6).mean()
    d_orig = torch.cdist(f, f).numpy()
    baseline = (d_orig[same & ~np.eye(len(f), dtype=bool)] < 0.6).mean()
    print(
        f"\nre-id of f_x: {reid:.3f} of {same.sum()} same-person pairs ({own:.3f} own photo); originals: {baseline:.3f}"
    )
    assert baseline > 0.9  # the originals do match each other
    assert reid <= 0.05


def test_recast_feature_stays_a_plausible_embedding(identity_faces):
    """f_x keeps the norm of a face embedding and its nearest codebook identity changes."""
    cb, f_x, info = identity_faces["cb"], identity_faces["f_x"], identity_faces["info"]
    ratio = (f_x.norm(dim=1) / info.f.norm(dim=1)).numpy()
    assert 0.8 < np.median(ratio) < 1.25
    top_fx, _ = cb.topk(f_x, 5)
    first_gone = (top_fx[:, :1] != info.classes[:, :1]).all(dim=1).float().mean()
    orig_top1_in_new_top5 = (top_fx == info.classes[:, :1]).any(dim=1).float().mean()
    print(
        f"\ntop-1 changed {first_gone:.3f}; original top-1 still in f_x's top-5 {orig_top1_in_new_top5:.3f}"
    )
    assert first_gone >= 0.95 and orig_top1_in_new_top5 <= 0.05
    # f_x has become someone else: it is nearer a codebook identity than the face it came from.
    d_near = torch.cdist(f_x, torch.as_tensor(cb.centroids)).min(dim=1).values
    d_own = (f_x - info.f).norm(dim=1)
    closer = (d_near < d_own).float().mean()
    print(
        f"nearest codebook identity at median {d_near.median():.3f}, own face {d_own.median():.3f}"
    )
    print(f"nearer a codebook identity than its own face: {closer:.3f}")
    assert closer >= 0.8  # measured 0.88 on this set


def test_k0_returns_the_original_embedding(identity_faces):
    model, cb, x = load_recognizer(), identity_faces["cb"], identity_faces["x"][:4]
    f_x, info = ifa.recast_identity(model, x, cb, k=0)
    assert torch.allclose(f_x, info.f, atol=1e-6)
    assert torch.allclose(info.f, model(x), atol=1e-5)
