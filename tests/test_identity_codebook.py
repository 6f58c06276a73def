"""The identity codebook: centroids, cosine logits, top-K, folders, the shipped SFHQ codebook."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from streamanon.identity.codebook import DEFAULT_CODEBOOK, Codebook, CodebookError, default_codebook
from tests.conftest import needs_shared


def test_centroids_are_label_means_and_logits_are_scaled_cosines():
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(6, 128)).astype(np.float32)
    cb = Codebook.from_embeddings(emb, ["b", "a", "b", "c", "a", "c"], scale=10.0, centered=False)
    assert list(cb.labels) == ["a", "b", "c"]
    np.testing.assert_allclose(cb.centroids[0], (emb[1] + emb[4]) / 2, atol=1e-6)
    f = torch.from_numpy(emb[:2])
    logits = cb.logits(f)
    c = torch.from_numpy(cb.centroids)
    want = 10.0 * torch.nn.functional.cosine_similarity(f[:, None], c[None], dim=-1)
    torch.testing.assert_close(logits, want)
    idx, vals = cb.topk(f, 2)
    assert idx.shape == (2, 2) and (vals[:, 0] >= vals[:, 1]).all()
    # The un-normalized score ranks the classes like the cosine for each face.
    assert torch.equal(cb.class_scores(f).argsort(dim=1), logits.argsort(dim=1))


def test_centered_codebook_measures_cosine_about_the_mean():
    emb = np.random.default_rng(1).normal(size=(4, 128)).astype(np.float32) + 5.0
    cb = Codebook.from_embeddings(emb, list("abcd"))
    np.testing.assert_allclose(cb.center, emb.mean(0), atol=1e-5)
    f = torch.from_numpy(emb)
    # About the mean, each face is its own best class.
    assert list(cb.topk(f, 1)[0][:, 0].numpy()) == [0, 1, 2, 3]


@pytest.mark.parametrize(
    "emb, labels, match",
    [
        (np.zeros((3, 64)), ["a", "b", "c"], "128"),
        (np.zeros((3, 128)), ["a", "b"], "labels"),
        (np.zeros((0, 128)), [], "128"),
    ],
)
def test_bad_codebook_inputs(emb, labels, match):
    with pytest.raises(CodebookError, match=match):
        Codebook.from_embeddings(emb, labels)


def test_save_load_roundtrip(tmp_path):
    cb = Codebook.from_embeddings(np.eye(128, dtype=np.float32)[:3], ["x", "y", "z"], scale=4.0)
    cb.save(tmp_path / "cb.npz")
    back = Codebook.load(tmp_path / "cb.npz")
    np.testing.assert_array_equal(back.centroids, cb.centroids)
    np.testing.assert_array_equal(back.center, cb.center)
    assert list(back.labels) == ["x", "y", "z"] and back.scale == 4.0
    with pytest.raises(CodebookError, match="not found"):
        Codebook.load(tmp_path / "missing.npz")


def test_shipped_codebook_is_the_sfhq_folder_codebook(tmp_path):
    """Rebuilding from a few SFHQ images gives the shipped centroids for those identities."""
    sfhq = needs_shared("faces", "synthetic", "sfhq")
    shipped = default_codebook()
    assert DEFAULT_CODEBOOK.is_file() and len(shipped) == 521
    names = sorted(p.name for p in sfhq.glob("*.jpg"))[::200][:3]
    for n in names:
        shutil.copy(sfhq / n, tmp_path / n)
    rebuilt = Codebook.from_folder(tmp_path)
    assert list(rebuilt.labels) == [n[:-4] for n in names]
    for label, centroid in zip(rebuilt.labels, rebuilt.centroids, strict=True):
        i = list(shipped.labels).index(label)
        np.testing.assert_allclose(shipped.centroids[i], centroid, atol=1e-4)
    # Each face's own identity is its best class in the full codebook.
    assert list(shipped.nearest(rebuilt.centroids)) == list(rebuilt.labels)


def test_folder_of_identity_subfolders(tmp_path):
    root = needs_shared("faces", "identities")
    for person in ("dlib_John_Salley", "dlib_John_Savage"):
        (tmp_path / person).mkdir()
        for p in sorted((root / person).glob("*.jpg"))[:2]:
            shutil.copy(p, tmp_path / person / p.name)
    (tmp_path / "notes.txt").write_text("not an image")
    cb = Codebook.from_folder(tmp_path)
    assert list(cb.labels) == ["dlib_John_Salley", "dlib_John_Savage"]
    # Two photos of one person average to one centroid, far from the other person's.
    assert np.linalg.norm(cb.centroids[0] - cb.centroids[1]) > 0.6


def test_folder_without_faces(tmp_path):
    with pytest.raises(CodebookError, match="no faces"):
        Codebook.from_folder(tmp_path)
    with pytest.raises(CodebookError, match="not a folder"):
        Codebook.from_folder(tmp_path / "nope")
