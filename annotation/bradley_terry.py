"""Bradley–Terry strengths of candidate sources, from battles (one judgment ordering two
candidates of different sources): the maximum-likelihood fit, 95% bootstrap intervals,
the win-rate matrix, the length control, and how uncertain a pair's outcome is.

Pure numpy, no database: the allocator (``annotation.allocator``, the ``uncertain``
policy) and the leaderboard (``qc.leaderboard``) both use it, so it lives on floor 2.

The model (Bradley & Terry 1952; as in FastChat's arena, ``compute_mle_elo``): source i
beats source j with probability ``sigmoid(θ_i − θ_j)``. θ is fitted by Newton's method on
the log-likelihood of a logistic regression whose features are ``e_i − e_j``; the
battles are aggregated first (one row per pair of sources and outcome, with its count),
so a fit over a million judgments costs as much as one over a few hundred distinct rows.

Ties count as half a win for each side (row weight y = ½: ½·log p + ½·log(1 − p)). This is
FastChat's choice; Davidson's model would add a tie parameter, but a leaderboard only
ranks, and half-wins rank exactly as Davidson does when tie rates do not differ much
between sources, need no extra parameter and keep the fit a plain logistic regression
that an independent implementation can check. Both-bad judgments are no battle at all.

A weak ridge prior ``alpha·Σθ²`` (``DEFAULT_ALPHA``, choix's penalty) keeps θ finite for a
source that never lost or never won; it is negligible against a few battles' likelihood.
θ has mean zero; ratings are on FastChat's Elo-like scale ``1000 + 400·θ/ln 10``.

Intervals: the percentile bootstrap over battles (FastChat's ``get_bootstrap_result``):
each round draws as many battles as there are, with replacement, i.e. a multinomial over
the outcome table's rows, from a seeded ``numpy.random.Generator``: same seed, same
intervals.

Length control (FastChat's style control, Li et al. 2024, "Does style matter?"): the same
logistic regression with one more covariate, the battle's normalized length difference
``(len_a − len_b) / (len_a + len_b)`` scaled to a root mean square of 1 (``standardized``);
the strengths are then those with length held equal, and the coefficient says how much a
typical length difference sways a judgment (in log-odds).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import erfc, log

from project.lazy import lazy_module

np = lazy_module("numpy")  # loaded by the first fit

DEFAULT_ALPHA = 1e-3
SCALE = 400 / log(10)  # θ to Elo points
BASE = 1000.0
DEFAULT_ROUNDS = 200


@dataclass
class Table:
    """Battles between ``size`` sources, aggregated: row r says that ``count[r]`` battles
    of source ``a[r]`` against ``b[r]`` ended with ``y[r]`` (1: a won, 0: b won, ½: tie).
    With ``z`` (the length covariate, one value per row) rows are single battles."""

    size: int
    a: np.ndarray
    b: np.ndarray
    y: np.ndarray
    count: np.ndarray
    z: np.ndarray | None = None

    @classmethod
    def from_battles(cls, size: int, a, b, y, z=None) -> Table:
        """A table from battles as sequences (a, b, y[, raw length difference]); without
        ``z`` identical battles are counted into one row."""
        a, b, y = (np.asarray(v) for v in (a, b, y))
        if z is not None:
            return cls(size, a.astype(int), b.astype(int), y.astype(float), np.ones(len(a)), z)
        # one code per (a, b, outcome): outcomes are 0, ½, 1 → 0, 1, 2
        code = (a.astype(np.int64) * size + b) * 3 + np.rint(np.asarray(y) * 2).astype(np.int64)
        keys, counts = np.unique(code, return_counts=True)
        pair, outcome = np.divmod(keys, 3)
        first, second = np.divmod(pair, size)
        return cls(size, first, second, outcome / 2.0, counts.astype(float))

    @property
    def battles(self) -> int:
        return int(self.count.sum())


def standardized(length_a, length_b) -> np.ndarray:
    """The length covariate: ``(len_a − len_b) / (len_a + len_b)``, divided by its root mean
    square. Not centred, unlike FastChat's: there a battle's sides are the screen's random
    left and right, here ``a`` is often the chosen one, and a covariate that is odd in the
    battle's orientation must stay odd (swapping a and b flips it and the outcome)."""
    la, lb = np.asarray(length_a, float), np.asarray(length_b, float)
    diff = np.divide(la - lb, la + lb, out=np.zeros_like(la), where=(la + lb) > 0)
    spread = np.sqrt(np.mean(diff**2)) if len(diff) else 0.0
    return diff / spread if spread > 0 else diff


def fit(
    table: Table,
    *,
    alpha: float = DEFAULT_ALPHA,
    weights: np.ndarray | None = None,
    start: np.ndarray | None = None,
    tol: float = 1e-10,
    max_iter: int = 200,
) -> tuple[np.ndarray, float | None]:
    """θ (mean zero, natural-log odds) maximizing the (penalized) likelihood, and the length
    coefficient when the table has ``z``. ``weights`` replaces the row counts (bootstrap).

    Newton's method: the gradient is orthogonal to the all-ones direction along which the
    likelihood is flat, so adding ``11ᵀ`` to the θ block of the Hessian makes it invertible
    without moving the solution off mean zero."""
    n, k = table.size, 0 if table.z is None else 1
    w = table.count if weights is None else weights
    params = np.zeros(n + k) if start is None else start.astype(float).copy()
    for _ in range(max_iter):
        gradient, hessian = _derivatives(table, w, params, alpha)
        hessian[:n, :n] += 1.0
        step = np.linalg.solve(hessian, gradient)
        params += step
        if np.max(np.abs(step)) < tol:
            break
    theta = params[:n] - params[:n].mean()
    return theta, (float(params[n]) if k else None)


def _derivatives(table: Table, w, params, alpha):
    """Gradient of the log-likelihood minus ``alpha·Σθ²`` and its negated Hessian."""
    n = table.size
    logit = params[table.a] - params[table.b]
    if table.z is not None:
        logit = logit + params[n] * table.z
    p = 1.0 / (1.0 + np.exp(-logit))
    residual = w * (table.y - p)
    s = w * p * (1 - p)
    size = len(params)
    gradient = np.zeros(size)
    gradient[:n] = np.bincount(table.a, residual, n) - np.bincount(table.b, residual, n)
    gradient[:n] -= 2 * alpha * params[:n]
    hessian = np.zeros((size, size))
    diagonal = np.bincount(table.a, s, n) + np.bincount(table.b, s, n)
    cross = np.bincount(table.a * n + table.b, s, n * n).reshape(n, n)
    hessian[:n, :n] = np.diag(diagonal + 2 * alpha) - cross - cross.T
    if table.z is not None:
        # the prior holds the coefficient too: length that never varies apart from the
        # source (the long answers always one source's) leaves it at 0, not undefined
        gradient[n] = np.dot(residual, table.z) - 2 * alpha * params[n]
        sz = s * table.z
        column = np.bincount(table.a, sz, n) - np.bincount(table.b, sz, n)
        hessian[:n, n] = hessian[n, :n] = column
        hessian[n, n] = np.dot(sz, table.z) + 2 * alpha
    return gradient, hessian


@dataclass
class Strengths:
    theta: np.ndarray  # point estimates, natural-log odds, mean zero
    lower: np.ndarray  # 2.5% bootstrap percentile of θ
    upper: np.ndarray  # 97.5%
    length_coefficient: float | None = None
    length_interval: tuple[float, float] | None = None

    @property
    def ratings(self) -> np.ndarray:
        return rating(self.theta)


def rating(theta) -> np.ndarray:
    """θ on FastChat's Elo-like scale."""
    return BASE + SCALE * np.asarray(theta)


def bootstrap(
    table: Table, *, rounds: int = DEFAULT_ROUNDS, seed: int = 0, alpha: float = DEFAULT_ALPHA
) -> Strengths:
    """The point fit and 95% percentile intervals from ``rounds`` resamplings of the
    battles (a multinomial over the table's rows, drawn by ``numpy.random.default_rng(seed)``).
    Each round starts Newton from the point estimate, so it takes two or three steps."""
    theta, coefficient = fit(table, alpha=alpha)
    start = theta if coefficient is None else np.append(theta, coefficient)
    total = table.battles
    rng = np.random.default_rng(seed)
    shares = table.count / total if total else table.count
    draws = np.empty((rounds, table.size + (coefficient is not None)))
    for r in range(rounds):
        weights = rng.multinomial(total, shares).astype(float)
        t, c = fit(table, alpha=alpha, weights=weights, start=start)
        draws[r, : table.size] = t
        if c is not None:
            draws[r, table.size] = c
    if rounds:
        lower, upper = np.percentile(draws, [2.5, 97.5], axis=0)
    else:
        lower = upper = np.append(theta, [] if coefficient is None else [coefficient])
    n = table.size
    return Strengths(
        theta=theta,
        lower=np.minimum(lower[:n], theta),
        upper=np.maximum(upper[:n], theta),
        length_coefficient=coefficient,
        length_interval=None if coefficient is None else (float(lower[n]), float(upper[n])),
    )


def win_matrix(table: Table) -> tuple[np.ndarray, np.ndarray]:
    """(wins, games): ``wins[i, j]`` is what i scored against j (ties as ½), ``games[i, j]``
    how many battles they had. The win rate is their ratio where games > 0."""
    n = table.size
    won = np.bincount(table.a * n + table.b, table.count * table.y, n * n).reshape(n, n)
    lost = np.bincount(table.a * n + table.b, table.count * (1 - table.y), n * n).reshape(n, n)
    played = np.bincount(table.a * n + table.b, table.count, n * n).reshape(n, n)
    return won + lost.T, played + played.T


def win_probability(theta_a: float, theta_b: float) -> float:
    return float(1.0 / (1.0 + np.exp(theta_b - theta_a)))


@dataclass
class Fit:
    """A quick fit for choosing pairs: θ by source and the covariance of θ (the inverse
    of the penalized Fisher information), so that a pair's uncertainty counts both how
    close the two sources are and how little is known about them yet."""

    index: dict[str, int]
    theta: np.ndarray
    covariance: np.ndarray

    def uncertainty(self, x: str, y: str) -> float:
        """The probability that the fit orders x and y wrongly, ``Φ(−|θx − θy| / sd)``:
        ½ for an unknown or even pair, near 0 for a pair whose order is settled. A source
        the fit has not seen counts as unknown (½)."""
        i, j = self.index.get(x), self.index.get(y)
        if i is None or j is None:
            return 0.5
        variance = self.covariance[i, i] + self.covariance[j, j] - 2 * self.covariance[i, j]
        spread = np.sqrt(max(variance, 1e-12))
        return float(0.5 * erfc(abs(self.theta[i] - self.theta[j]) / spread / np.sqrt(2)))


def outcome_uncertainty(fitted: Fit | None, sources: Sequence[str]) -> float:
    """How uncertain the order of these sources is under the fit: the mean of
    ``Fit.uncertainty`` over the pairs of different sources (0 when all come from one
    source: no battle to learn from; ½ for every pair before any fit)."""
    pairs = [
        (x, y) for i, x in enumerate(sources) for y in sources[i + 1 :] if x != y
    ]  # candidates of one item: at most a handful
    if not pairs:
        return 0.0
    if fitted is None:
        return 0.5
    return sum(fitted.uncertainty(x, y) for x, y in pairs) / len(pairs)


def most_uncertain_first(options: Sequence[Sequence[str]], fitted: Fit | None) -> list:
    """Indexes of ``options`` (each the sources of one item's candidates), most uncertain
    order first; equally uncertain ones keep their given order (the allocator's own
    least-covered order). The allocator and bench/active_scheduling.py both choose by it."""
    scores = [outcome_uncertainty(fitted, sources) for sources in options]
    return sorted(range(len(options)), key=lambda i: -scores[i])


def fit_strengths(counts: dict[tuple[str, str, float], int], *, alpha: float = 0.1) -> Fit | None:
    """A ``Fit`` from battle counts {(a, b, outcome): how many}: the allocator's quick fit
    (None without battles). A firmer prior than the leaderboard's (``alpha`` 0.1) keeps a
    source with a handful of battles from looking decided."""
    names = sorted({name for a, b, _ in counts for name in (a, b)})
    if not names:
        return None
    index = {name: i for i, name in enumerate(names)}
    keys = list(counts)
    table = Table(
        len(names),
        np.array([index[a] for a, _, _ in keys], dtype=int),
        np.array([index[b] for _, b, _ in keys], dtype=int),
        np.array([y for _, _, y in keys], dtype=float),
        np.array([counts[k] for k in keys], dtype=float),
    )
    theta, _ = fit(table, alpha=alpha)
    _, information = _derivatives(table, table.count, theta, alpha)
    return Fit(index, theta, np.linalg.pinv(information))
