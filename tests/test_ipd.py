"""IPD sampling (eq. 6-8): the exponential mechanism, its limits, and per-track reproducibility."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from streamanon.visual.ipd import (
    SamplingError,
    appearance_utility,
    exponential_mechanism_probs,
    geometry_utility,
    knn,
    sample_delegate,
    track_rng,
)

ALPHA = 0.001  # significance of the chi-square goodness-of-fit tests
DISTANCES = np.array([0.31, 0.35, 0.36, 0.40, 0.42, 0.47, 0.49, 0.52, 0.55, 0.60])


def test_closed_form_matches_eq6():
    u = appearance_utility(DISTANCES)
    p = exponential_mechanism_probs(u, epsilon=3.0, sensitivity=1.0)
    expected = np.exp(1.5 * u) / np.exp(1.5 * u).sum()
    np.testing.assert_allclose(p, expected, rtol=1e-12)
    assert p.sum() == pytest.approx(1.0)
    # eps/2 bounds the log-ratio of any two candidates (utilities in [0, 1]).
    assert np.log(p.max() / p.min()) == pytest.approx(1.5)


def _draws(p: np.ndarray, utilities: np.ndarray, epsilon: float, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    picks = np.array([sample_delegate(rng, utilities, epsilon) for _ in range(n)])
    return np.bincount(picks, minlength=len(p))


@pytest.mark.parametrize("epsilon", [0.5, 2.0, 6.0])
@pytest.mark.parametrize("utility", [appearance_utility, geometry_utility])
def test_draw_frequencies_match_closed_form_chi_square(epsilon, utility):
    u = utility(DISTANCES)
    p = exponential_mechanism_probs(u, epsilon)
    n = 5_000
    counts = _draws(p, u, epsilon, n, seed=1234)
    _, p_value = stats.chisquare(counts, n * p)
    assert p_value > ALPHA, (counts, n * p)


def test_chi_square_has_power_against_a_wrong_distribution():
    # The same test rejects draws from eps=0 (uniform) when eps=4 is claimed.
    u = appearance_utility(DISTANCES)
    counts = _draws(np.ones(10), u, 0.0, 5_000, seed=5)
    _, p_value = stats.chisquare(counts, 5_000 * exponential_mechanism_probs(u, 4.0))
    assert p_value < ALPHA


def test_epsilon_zero_is_uniform():
    p = exponential_mechanism_probs(appearance_utility(DISTANCES), 0.0)
    np.testing.assert_allclose(p, np.full(10, 0.1))
    p_small = exponential_mechanism_probs(appearance_utility(DISTANCES), 1e-9)
    np.testing.assert_allclose(p_small, np.full(10, 0.1), atol=1e-9)


def test_large_epsilon_is_argmax():
    u_a = appearance_utility(DISTANCES)
    u_g = geometry_utility(DISTANCES)
    for u, best in ((u_a, 0), (u_g, 9)):
        p = exponential_mechanism_probs(u, 1e4)
        assert np.argmax(p) == best and p[best] == pytest.approx(1.0)
        rng = np.random.default_rng(0)
        assert {sample_delegate(rng, u, 1e4) for _ in range(200)} == {best}


def test_utilities_follow_eq7_and_eq8():
    u_a = appearance_utility(DISTANCES)
    u_g = geometry_utility(DISTANCES)
    assert u_a[0] == 1.0 and u_a[-1] == 0.0 and np.all(np.diff(u_a) < 0)
    assert u_g[0] == 0.0 and u_g[-1] == 1.0
    np.testing.assert_allclose(u_a + u_g, 1.0)
    # Equal distances: eq. 7/8 are 0/0; all candidates equally useful.
    np.testing.assert_array_equal(appearance_utility(np.full(4, 0.5)), np.ones(4))


def test_knn_is_sorted_and_exact():
    rng = np.random.default_rng(3)
    emb = rng.normal(size=(50, 128)).astype(np.float32)
    q = emb[7] + 0.01
    idx, d = knn(emb, q, 5)
    assert idx[0] == 7 and len(idx) == 5 and np.all(np.diff(d) >= 0)
    full = np.linalg.norm(emb - q, axis=1)
    np.testing.assert_allclose(d, np.sort(full)[:5], rtol=1e-5)
    assert len(knn(emb, q, 500)[0]) == 50


def test_track_rng_is_reproducible_and_independent():
    u = appearance_utility(DISTANCES)

    def draw(seed, track, purpose):
        rng = track_rng(seed, track, purpose)
        return [sample_delegate(rng, u, 1.0) for _ in range(20)]

    assert draw(7, 3, "appearance") == draw(7, 3, "appearance")
    assert draw(7, 3, "appearance") != draw(7, 4, "appearance")
    assert draw(7, 3, "appearance") != draw(7, 3, "geometry")
    assert draw(7, 3, "appearance") != draw(8, 3, "appearance")


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: exponential_mechanism_probs(np.array([0.1, np.nan]), 1.0), "NaN"),
        (lambda: exponential_mechanism_probs(np.array([0.1, 0.2]), -1.0), "epsilon"),
        (lambda: exponential_mechanism_probs(np.array([]), 1.0), "empty"),
        (lambda: exponential_mechanism_probs(np.array([0.1]), 1.0, sensitivity=0.0), "sensitivity"),
        (lambda: knn(np.zeros((4, 128)), np.zeros(64), 2), "match"),
        (lambda: knn(np.zeros((4, 128)), np.zeros(128), 0), "k must"),
        (lambda: track_rng(-1, 0, "appearance"), ">= 0"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, message):
    with pytest.raises(SamplingError, match=message):
        call()
