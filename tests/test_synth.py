"""Generator networks, losses, data, Ψ bridge and evaluation maths (streamanon/synth)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from streamanon.synth import losses as L
from streamanon.synth.data import FLIP68, build_faceset, make_batch, make_sample, split_holdout
from streamanon.synth.evaluate import paste, ssim
from streamanon.synth.networks import (
    Generator,
    GeneratorConfig,
    GeneratorConfigError,
    PairDiscriminator,
)
from tests.conftest import needs_shared

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def faces(tmp_path_factory):
    """Four real (synthetic, MIT) SFHQ faces through the real preprocessing."""
    src = needs_shared("faces", "synthetic", "sfhq")
    d = tmp_path_factory.mktemp("faces")
    for f in sorted(src.glob("*.jpg"))[:4]:
        shutil.copy(f, d)
    return build_faceset({"faces": [str(d)]}, 192, progress=False)


# -- networks -------------------------------------------------------------------------------
@pytest.mark.parametrize("size", [128, 256])
def test_generator_shapes_and_range(size):
    torch.manual_seed(0)
    g = Generator(GeneratorConfig(size=size)).eval()
    b = 2
    out = g(torch.randn(b, 10, size, size), torch.randn(b, 128), torch.randn(b, 3, size, size))
    assert out.shape == (b, 3, size, size)
    assert out.abs().max() <= 1.0


def test_generator_uses_identity_and_appearance_conditions():
    torch.manual_seed(0)
    g = Generator().eval()
    for p in g.parameters():  # AdaIN starts at identity (zero init): perturb it to see the path
        torch.nn.init.normal_(p, std=0.05) if p.dim() > 1 else None
    zg, za = torch.randn(1, 10, 128, 128), torch.randn(1, 3, 128, 128)
    zid = torch.randn(1, 128)
    base = g(zg, zid, za)
    assert (g(zg, torch.randn(1, 128), za) - base).abs().max() > 1e-4
    assert (g(zg, zid, torch.randn(1, 3, 128, 128)) - base).abs().max() > 1e-4


def test_discriminator_returns_patch_logits_and_features():
    d = PairDiscriminator(structure_channels=7)
    logits, feats = d(torch.randn(2, 3, 128, 128), torch.randn(2, 7, 128, 128))
    assert logits.shape == (2, 1, 8, 8)
    assert len(feats) == 4


@pytest.mark.parametrize(
    "kwargs, msg",
    [
        ({"size": 96}, "size must be 128 or 256"),
        ({"encoder_widths": (8, 16, 128)}, "six ResBlocks"),
        ({"appearance_dim": 64, "encoder_widths": (8, 8, 8, 8, 8, 64)}, "must equal id_dim"),
    ],
)
def test_generator_config_rejects_bad_shapes(kwargs, msg):
    with pytest.raises(GeneratorConfigError, match=msg):
        GeneratorConfig(**kwargs)


def test_generator_config_roundtrip():
    cfg = GeneratorConfig(size=256)
    assert GeneratorConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(GeneratorConfigError, match="unknown"):
        GeneratorConfig.from_dict({"sizee": 128})


# -- losses ---------------------------------------------------------------------------------
def test_paper_weights_are_the_defaults():
    w = L.LossWeights()
    assert (w.adversarial, w.feature_matching, w.perceptual, w.appearance) == (1, 1, 1, 1)
    assert (w.identity, w.background, w.beta2) == (2, 2, 2)
    assert (w.beta1, w.beta3, w.pixel) == (0.6, 0.8, 0)


def test_schedule_alternates_one_to_one():
    kinds = [L.is_cycle_step(s) for s in range(10)]
    assert kinds.count(True) == kinds.count(False) == 5
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))


@pytest.mark.parametrize(
    "real, fake, expected",
    [(2.0, -2.0, 0.0), (0.0, 0.0, 2.0), (1.0, -1.0, 0.0), (-1.0, 1.0, 4.0)],
)
def test_discriminator_hinge(real, fake, expected):
    assert float(L.d_hinge(torch.tensor([real]), torch.tensor([fake]))) == pytest.approx(expected)


def test_generator_hinge_rewards_higher_scores():
    assert float(L.g_hinge(torch.tensor([3.0, 1.0]))) == pytest.approx(-2.0)


def test_feature_matching_and_perceptual():
    a = [torch.ones(1, 2, 4, 4), torch.zeros(1, 3, 2, 2)]
    b = [torch.ones(1, 2, 4, 4) * 1.5, torch.zeros(1, 3, 2, 2)]
    assert float(L.feature_matching(a, a)) == 0.0
    assert float(L.feature_matching(a, b)) == pytest.approx(0.5)
    assert float(L.perceptual(a, b)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in length"):
        L.feature_matching(a, b[:1])


def test_feature_matching_does_not_train_the_real_branch():
    r = torch.ones(1, 4, requires_grad=True)
    f = torch.zeros(1, 4, requires_grad=True)
    L.feature_matching([r], [f]).backward()
    assert r.grad is None and f.grad is not None


def test_appearance_decorrelation_is_hinged_cosine():
    e = torch.tensor([[1.0, 0.0]])
    assert float(L.appearance_decorrelation(e, e)) == pytest.approx(1.0)
    assert float(L.appearance_decorrelation(e, torch.tensor([[0.0, 1.0]]))) == 0.0
    assert float(L.appearance_decorrelation(e, -e)) == 0.0  # anti-correlated: no penalty
    # L4 = l1(f_a(x), f_a(x̂)) + d_e, the l1 on directions (scale-free, as G uses f_a)
    y = torch.tensor([[0.0, 1.0]])
    assert float(L.appearance(e, e * 3, y)) == 0.0
    assert float(L.appearance(e, y, y)) == pytest.approx(2.0)
    assert float(L.appearance(e, y, e)) == pytest.approx(3.0)


def test_identity_distance_is_mean_l2():
    a = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    assert float(L.identity_distance(a, torch.zeros(2, 2))) == pytest.approx(2.5)


def test_background_l1_ignores_the_face():
    x = torch.zeros(1, 3, 4, 4)
    g = torch.zeros(1, 3, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[:, 1:3, 1:3] = 1.0
    g[:, :, 1:3, 1:3] = 5.0  # a different face: no background loss
    assert float(L.background_l1(x, g, mask)) == 0.0
    g[:, :, 0, 0] = 1.2  # one background pixel off by 1.2 over 12 background pixels
    assert float(L.background_l1(x, g, mask)) == pytest.approx(1.2 / 12)


def test_total_weights_terms():
    w = L.LossWeights(pixel=10.0)
    t = {"identity": torch.tensor(1.0), "background": torch.tensor(0.5), "pixel": torch.tensor(0.1)}
    assert float(L.total(t, w)) == pytest.approx(2 * 1 + 2 * 0.5 + 10 * 0.1)
    with pytest.raises(ValueError, match="unknown loss terms"):
        L.total({"style": torch.tensor(1.0)}, w)


# -- data on real faces ---------------------------------------------------------------------
def test_flip_permutation_is_an_involution():
    assert sorted(FLIP68) == list(range(68))
    assert (FLIP68[FLIP68] == np.arange(68)).all()


def test_faceset_from_real_faces(faces):
    assert len(faces) == 4
    assert faces.patches.shape == (4, 192, 192, 3)
    # dlib's descriptor of a face and of its mirror image: same person (< 0.6)
    d = np.linalg.norm(faces.embeddings - faces.embeddings_flip, axis=1)
    assert (d < 0.4).all()
    # four different synthetic people: not the same person
    other = np.linalg.norm(faces.embeddings[0] - faces.embeddings[1])
    assert other > d.max()


def test_sample_inputs_follow_the_visual_contract(faces):
    s = make_sample(faces, 0, None, None)
    assert s["x"].shape == (3, 128, 128) and s["z_g"].shape == (10, 128, 128)
    assert s["z_a"].shape == (3, 128, 128) and s["z_id"].shape == (128,)
    mask = s["z_g"][6]
    # Z_a is the face only, Z_g's background has the face erased
    assert np.abs(s["z_a"][:, mask == 0]).max() == 0
    assert np.abs(s["z_g"][7:, mask == 1]).max() == 0
    # the landmarks sit on the template: eyes above the mouth, left eye on the left
    lm = s["landmarks"]
    assert lm[36:42, 0].mean() < lm[42:48, 0].mean() and lm[36:48, 1].mean() < lm[48:68, 1].mean()


def test_augmented_flip_keeps_left_on_the_left(faces):
    rng = np.random.default_rng(0)
    from streamanon.synth.data import Augment

    for _ in range(6):
        s = make_sample(faces, 1, rng, Augment(flip=1.0))
        lm = s["landmarks"]
        assert lm[36:42, 0].mean() < lm[42:48, 0].mean()
        assert np.allclose(s["z_id"], faces.embeddings_flip[1])


def test_batches_are_seeded(faces):
    from streamanon.synth.data import Augment

    a = make_batch(faces, np.array([0, 2]), np.random.default_rng(3), Augment())
    b = make_batch(faces, np.array([0, 2]), np.random.default_rng(3), Augment())
    assert all(np.array_equal(a[k], b[k]) for k in a)


def test_holdout_split_is_disjoint_and_deterministic():
    tr, ho = split_holdout(50, 10, 0)
    assert len(set(tr) & set(ho)) == 0 and len(tr) + len(ho) == 50
    assert np.array_equal(ho, split_holdout(50, 10, 0)[1])


# -- Ψ on crops -----------------------------------------------------------------------------
def test_psi_on_canonical_crops_matches_dlib(faces):
    from streamanon.synth.psi import load_psi

    psi = load_psi()  # built from the installed dlib model: always there with torch
    b = make_batch(faces, np.arange(4), None, None)
    with torch.no_grad():
        a, emb = psi(torch.from_numpy(b["x"]))
    assert a.shape == (4, 256, 2, 2)
    d = np.linalg.norm(emb.numpy() - faces.embeddings, axis=1)
    # Same person as dlib's own alignment + descriptor (< 0.6), in fact much closer.
    assert d.max() < 0.2, d


# -- evaluation maths -----------------------------------------------------------------------
def test_ssim_identity_and_degradation(faces):
    img = faces.patches[0]
    assert ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img + np.random.default_rng(0).normal(0, 25, img.shape), 0, 255).astype(
        np.uint8
    )
    assert 0.1 < ssim(img, noisy) < 0.9
    with pytest.raises(ValueError, match="equal shapes"):
        ssim(img, img[:10])


def test_paste_changes_only_the_face(faces):
    s = make_sample(faces, 0, None, None)
    black = np.zeros((128, 128, 3), np.uint8)
    out = paste(faces.patches[0], black, s["landmarks"])
    diff = np.abs(out.astype(int) - faces.patches[0]).sum(2) > 0
    assert diff[96, 96]  # face centre replaced
    assert not diff[:20].any() and not diff[:, :20].any()  # patch margin untouched
