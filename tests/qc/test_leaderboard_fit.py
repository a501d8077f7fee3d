"""The Bradley–Terry fit of annotation.bradley_terry against independent implementations:
choix (another author's code, for battles without ties), a minorization–maximization fit
written here (ties as half wins), and a direct likelihood maximization by scipy (length
control). Plus the bootstrap's determinism and the win-rate matrix."""

import choix
import numpy as np
import pytest
from scipy.optimize import minimize

from annotation import bradley_terry as bt


def random_battles(rng, n_sources=6, n_battles=2000, tie_share=0.0):
    truth = rng.normal(scale=0.8, size=n_sources)
    a, b, y = [], [], []
    for _ in range(n_battles):
        i, j = rng.choice(n_sources, 2, replace=False)
        if rng.random() < tie_share:
            outcome = 0.5
        else:
            outcome = float(rng.random() < 1 / (1 + np.exp(truth[j] - truth[i])))
        a.append(int(i)), b.append(int(j)), y.append(outcome)
    return truth, np.array(a), np.array(b), np.array(y)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_fit_matches_choix_without_ties(seed):
    rng = np.random.default_rng(seed)
    _, a, b, y = random_battles(rng)
    pairs = [(i, j) if outcome == 1.0 else (j, i) for i, j, outcome in zip(a, b, y, strict=True)]
    table = bt.Table.from_battles(6, a, b, y)

    theta, _ = bt.fit(table, alpha=0.0)
    reference = choix.ilsr_pairwise(6, pairs, alpha=0.0, tol=1e-13, max_iter=10_000)
    assert np.max(np.abs(theta - (reference - reference.mean()))) < 1e-6

    # With a prior: choix's penalty alpha·Σθ² is the same objective.
    theta, _ = bt.fit(table, alpha=0.05)
    reference = choix.opt_pairwise(6, pairs, alpha=0.05, method="BFGS", tol=1e-12)
    assert np.max(np.abs(theta - (reference - reference.mean()))) < 1e-6


def half_win_mm(n, a, b, y, iterations=100_000):
    """Hunter's (2004) MM updates with ties as half a win each: p_i = W_i / Σ_j N_ij/(p_i+p_j)."""
    wins = np.zeros(n)
    games = np.zeros((n, n))
    for i, j, outcome in zip(a, b, y, strict=True):
        wins[i] += outcome
        wins[j] += 1 - outcome
        games[i, j] += 1
        games[j, i] += 1
    p = np.ones(n)
    for _ in range(iterations):
        new = wins / (games / (p[:, None] + p[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        if np.max(np.abs(new - p)) < 1e-15:
            break
        p = new
    return np.log(p) - np.log(p).mean()


def test_fit_with_ties_matches_an_independent_half_win_fit():
    rng = np.random.default_rng(7)
    _, a, b, y = random_battles(rng, n_sources=5, n_battles=1500, tie_share=0.25)
    assert (y == 0.5).sum() > 300
    theta, _ = bt.fit(bt.Table.from_battles(5, a, b, y), alpha=0.0)
    assert np.max(np.abs(theta - half_win_mm(5, a, b, y))) < 1e-6


def test_ties_pull_strengths_together():
    # 6 wins to 2 with and without 8 ties: the ties make the sources closer.
    plain = bt.fit(bt.Table.from_battles(2, [0] * 8, [1] * 8, [1.0] * 6 + [0.0] * 2), alpha=0)[0]
    tied = bt.fit(
        bt.Table.from_battles(2, [0] * 16, [1] * 16, [1.0] * 6 + [0.0] * 2 + [0.5] * 8), alpha=0
    )[0]
    assert plain[0] - plain[1] == pytest.approx(np.log(3), abs=1e-9)  # 6:2 odds
    assert tied[0] - tied[1] == pytest.approx(np.log(10 / 6), abs=1e-9)  # 10:6 with halves


def test_a_source_that_never_lost_stays_finite():
    theta, _ = bt.fit(bt.Table.from_battles(2, [0] * 30, [1] * 30, [1.0] * 30))
    assert np.all(np.isfinite(theta)) and theta[0] > theta[1] + 2


def test_bootstrap_is_deterministic_with_a_seed_and_covers_the_estimate():
    rng = np.random.default_rng(11)
    _, a, b, y = random_battles(rng, n_battles=800, tie_share=0.1)
    table = bt.Table.from_battles(6, a, b, y)
    first = bt.bootstrap(table, rounds=100, seed=42)
    again = bt.bootstrap(table, rounds=100, seed=42)
    other = bt.bootstrap(table, rounds=100, seed=43)
    assert np.array_equal(first.lower, again.lower) and np.array_equal(first.upper, again.upper)
    assert not np.array_equal(first.lower, other.lower)
    assert np.all(first.lower <= first.theta) and np.all(first.theta <= first.upper)
    assert np.all(first.upper - first.lower > 0.05)  # 800 battles leave real uncertainty
    point, _ = bt.fit(table)
    assert np.allclose(first.theta, point)


def test_length_control_recovers_a_planted_length_bias():
    rng = np.random.default_rng(5)
    n, battles = 5, 20_000
    truth = np.array([0.6, 0.3, 0.0, -0.3, -0.6])
    a = rng.integers(0, n, battles)
    b = (a + rng.integers(1, n, battles)) % n
    length_a, length_b = rng.integers(100, 1500, battles), rng.integers(100, 1500, battles)
    z = bt.standardized(length_a, length_b)
    planted = 0.5  # log-odds per root mean square of the length difference
    p = 1 / (1 + np.exp(-(truth[a] - truth[b] + planted * z)))
    y = (rng.random(battles) < p).astype(float)
    table = bt.Table(n, a, b, y, np.ones(battles), z)

    theta, coefficient = bt.fit(table, alpha=0.0)
    assert coefficient == pytest.approx(planted, abs=0.05)
    assert np.max(np.abs(theta - truth)) < 0.06

    # The same likelihood maximized by scipy from scratch: the same numbers.
    def negative_log_likelihood(params):
        logit = params[a] - params[b] + params[n] * z
        return np.sum(np.logaddexp(0, -logit) * y + np.logaddexp(0, logit) * (1 - y))

    reference = minimize(negative_log_likelihood, np.zeros(n + 1), method="BFGS", tol=1e-12).x
    assert coefficient == pytest.approx(reference[n], abs=1e-4)
    assert np.max(np.abs(theta - (reference[:n] - reference[:n].mean()))) < 1e-4


def test_win_matrix_counts_ties_as_half():
    table = bt.Table.from_battles(3, [0, 0, 1, 2, 0], [1, 1, 0, 0, 2], [1.0, 0.5, 1.0, 0.0, 1.0])
    wins, games = bt.win_matrix(table)
    assert games[0, 1] == games[1, 0] == 3
    assert wins[0, 1] == 1.5 and wins[1, 0] == 1.5
    assert wins[0, 2] == 2 and wins[2, 0] == 0 and games[0, 2] == 2


def test_uncertain_pairs_come_first():
    counts = {("strong", "weak", 1.0): 60, ("weak", "strong", 1.0): 2}
    counts |= {("a", "b", 1.0): 30, ("b", "a", 1.0): 29, ("a", "strong", 1.0): 5}
    fitted = bt.fit_strengths(counts)
    options = [["strong", "weak"], ["a", "b"], ["a", "a"]]
    assert bt.most_uncertain_first(options, fitted) == [1, 0, 2]
    assert bt.outcome_uncertainty(fitted, ["x", "x"]) == 0.0  # one source: nothing to learn
    assert bt.outcome_uncertainty(None, ["x", "y"]) == 0.5
