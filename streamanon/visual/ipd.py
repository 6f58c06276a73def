"""Instance-level probabilistic delegate (IPD) sampling, the paper's eq. 6, as pure functions.

For a query q with candidate set M_q (its k nearest bank faces) and utilities u(q, X_i) in
[0, 1], a delegate is drawn with the exponential mechanism

    P(X_i) = exp(eps * u_i / (2 du)) / sum_j exp(eps * u_j / (2 du)),   du = 1 (sensitivity).

What epsilon means for a user
-----------------------------
epsilon is the privacy budget of the draw. Because utilities lie in [0, 1], the most and the
least useful candidate differ in probability by at most a factor e^(eps/2), and changing the
query (another person, another photo of the same person) changes the probability of any
outcome by at most a factor e^eps. So:

- ``eps = 0``: every one of the k neighbours is equally likely: the most private choice, the
  delegate carries nothing about where the face sits among its neighbours, but the kept
  attributes (age, skin tone) match only as well as the k-th neighbour does.
- ``eps = 2`` (default): the best candidate is at most e ~ 2.7 times as likely as the worst.
- ``eps`` large (>= 20): practically always the arg-max: the appearance delegate is the nearest
  neighbour, a deterministic function of the face, which someone holding the bank could invert.

k (``--neighbours``) bounds what is possible at all: the delegate is always one of the k.

Draws are made with a ``numpy.random.Generator`` seeded from (seed, track id, purpose), so one
track always gets the same delegate within a run, and different tracks draw independently.
"""

from __future__ import annotations

import zlib

import numpy as np

DEFAULT_EPSILON = 2.0
DEFAULT_NEIGHBOURS = 10


class SamplingError(ValueError):
    """Bad IPD inputs: non-finite utilities, negative epsilon, empty candidate sets."""


def knn(embeddings: np.ndarray, query: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and l2 distances of the k rows of ``embeddings`` nearest to ``query``, nearest first.

    Ties break by index (stable), so the result is deterministic.
    """
    emb = np.asarray(embeddings, dtype=np.float32)
    q = np.asarray(query, dtype=np.float32).reshape(-1)
    if emb.ndim != 2 or emb.shape[1] != q.shape[0]:
        raise SamplingError(f"embeddings {emb.shape} and query {q.shape} do not match")
    if k < 1:
        raise SamplingError(f"k must be >= 1, got {k}")
    if not np.isfinite(q).all():
        raise SamplingError("query embedding contains NaN or inf")
    d = np.sqrt(np.maximum(((emb - q) ** 2).sum(1), 0.0))
    k = min(k, len(d))
    idx = np.argsort(d, kind="stable")[:k]
    return idx, d[idx]


def _checked(d: np.ndarray) -> tuple[np.ndarray, float]:
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if d.size == 0:
        raise SamplingError("empty candidate set")
    if not np.isfinite(d).all():
        raise SamplingError("distances contain NaN or inf")
    return d, float(d.max() - d.min())


def appearance_utility(distances: np.ndarray) -> np.ndarray:
    """Eq. 7: u_a = (max d - d_i) / (max d - min d): the nearest neighbour scores 1.

    When all distances are equal, eq. 7 is 0/0; every candidate is then equally useful (1).
    """
    d, span = _checked(distances)
    return np.ones_like(d) if span <= 1e-12 else (d.max() - d) / span


def geometry_utility(distances: np.ndarray) -> np.ndarray:
    """Eq. 8: u_g = (d_i - min d) / (max d - min d): the most distinct geometry scores 1."""
    d, span = _checked(distances)
    return np.ones_like(d) if span <= 1e-12 else (d - d.min()) / span


def exponential_mechanism_probs(
    utilities: np.ndarray, epsilon: float, sensitivity: float = 1.0
) -> np.ndarray:
    """Eq. 6: P_i = softmax(epsilon * u_i / (2 * sensitivity)), float64, sums to 1."""
    u = np.asarray(utilities, dtype=np.float64).reshape(-1)
    if u.size == 0:
        raise SamplingError("empty candidate set")
    if not np.isfinite(u).all():
        raise SamplingError("utilities contain NaN or inf")
    if not np.isfinite(epsilon) or epsilon < 0:
        raise SamplingError(f"epsilon must be a finite number >= 0, got {epsilon}")
    if not np.isfinite(sensitivity) or sensitivity <= 0:
        raise SamplingError(f"sensitivity must be > 0, got {sensitivity}")
    logits = epsilon * u / (2.0 * sensitivity)
    logits -= logits.max()  # stable for any epsilon
    p = np.exp(logits)
    return p / p.sum()


def sample_delegate(
    rng: np.random.Generator, utilities: np.ndarray, epsilon: float, sensitivity: float = 1.0
) -> int:
    """Draw one candidate position with eq. 6's probabilities."""
    p = exponential_mechanism_probs(utilities, epsilon, sensitivity)
    return int(rng.choice(len(p), p=p))


def track_rng(seed: int, track_id: int, purpose: str) -> np.random.Generator:
    """Generator for one track and one purpose ("appearance", "geometry"): reproducible per run.

    The purpose is hashed (crc32, stable across processes unlike ``hash``) into the seed so the
    appearance and geometry draws of a track are independent.
    """
    if seed < 0 or track_id < 0:
        raise SamplingError(f"seed and track_id must be >= 0, got {seed}, {track_id}")
    ss = np.random.SeedSequence([int(seed), int(track_id), zlib.crc32(purpose.encode())])
    return np.random.Generator(np.random.PCG64(ss))
