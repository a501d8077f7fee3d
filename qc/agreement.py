"""Inter-annotator agreement statistics: plain functions, no Django.

Ratings are category labels (any hashable; numbers for the weighted and metric variants);
``None`` marks a missing rating. Where a statistic is undefined (no unit rated twice, or
chance agreement equal to 1 because only one category occurs) the functions return
``None`` rather than raising or returning NaN, so a report can say "n/a".

Formulas and the worked examples the tests reproduce:
- percent agreement: the mean over units rated at least twice of the share of agreeing
  rater pairs (Gwet, *Handbook of Inter-Rater Reliability*, 4th ed., 2014, p. 120);
- Cohen's kappa: Cohen (1960), "A coefficient of agreement for nominal scales"; weighted:
  Cohen (1968), with linear 1 - |i-j|/(q-1) or quadratic 1 - (i-j)^2/(q-1)^2 weights;
- Fleiss' kappa: Fleiss (1971), "Measuring nominal scale agreement among many raters",
  generalized to a varying number of ratings per subject;
- Krippendorff's alpha: Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability",
  the coincidence-matrix method with the nominal, ordinal, interval and ratio metrics;
- Gwet's AC1: Gwet (2008), "Computing inter-rater reliability and its variance in the
  presence of high agreement", in its multi-rater form with missing ratings (Gwet 2014).
"""

from collections import Counter
from collections.abc import Hashable, Iterable, Mapping, Sequence
from itertools import permutations

Rating = Hashable | None
# Units by their ratings: how many units were rated exactly so (the ratings in any order).
# Every statistic here is a sum over units, so a data set of a million units with a few
# dozen distinct rating patterns is computed from those patterns (qc.tally keeps them).
Profiles = Mapping[tuple, int]

WEIGHTS = (None, "linear", "quadratic")
LEVELS = ("nominal", "ordinal", "interval", "ratio")


def _rated(unit: Iterable[Rating]) -> list:
    return [r for r in unit if r is not None]


def _counts(unit: Iterable[Rating]) -> Counter:
    counts = Counter(unit)
    counts.pop(None, None)
    return counts


def pattern(unit: Iterable[Rating]) -> tuple:
    """A unit's ratings in a fixed order, missing ones left out: the key of ``Profiles``."""
    return tuple(sorted(_rated(unit), key=_sort_key))


def profiles(units: Iterable[Iterable[Rating]]) -> Profiles:
    """How many units carry each pattern of ratings."""
    return Counter(map(pattern, units))


def _ordered(found: Profiles) -> list[tuple[tuple, int]]:
    """The patterns in a fixed order: the sums come out the same however they were tallied."""
    return sorted(
        ((unit, n) for unit, n in found.items() if n), key=lambda kv: [_sort_key(r) for r in kv[0]]
    )


def percent_agreement(units: Iterable[Iterable[Rating]]) -> float | None:
    """Share of agreeing pairs of ratings, averaged over units with two ratings or more.

    ``units``: one sequence of ratings per unit (item), e.g. ``zip(rater_a, rater_b)``.
    """
    return percent_agreement_of(profiles(units))


def percent_agreement_of(found: Profiles) -> float | None:
    """``percent_agreement`` from the units' rating patterns."""
    total, paired = 0.0, 0
    for unit, n in _ordered(found):
        share = _pair_share(unit)
        if share is not None:
            total += share * n
            paired += n
    return total / paired if paired else None


def _pair_share(unit) -> float | None:
    """A unit's share of agreeing rating pairs; None below two ratings."""
    if isinstance(unit, list | tuple) and len(unit) == 2 and None not in unit:
        return 1.0 if unit[0] == unit[1] else 0.0  # the common case, without a Counter
    counts = _counts(unit)
    r = sum(counts.values())
    if r < 2:
        return None
    return sum(n * (n - 1) for n in counts.values()) / (r * (r - 1))


def _weight(i: int, j: int, q: int, weights: str | None) -> float:
    if weights is None:
        return 1.0 if i == j else 0.0
    if q == 1:
        return 1.0
    if weights == "linear":
        return 1 - abs(i - j) / (q - 1)
    if weights == "quadratic":
        return 1 - (i - j) ** 2 / (q - 1) ** 2
    raise ValueError(f"weights must be one of {WEIGHTS}")


def cohen_kappa_table(table: Sequence[Sequence[float]], weights: str | None = None):
    """Cohen's kappa from a q x q contingency table (rows: rater A, columns: rater B, the
    categories in their order): (p_o - p_e) / (1 - p_e) with weighted p_o and p_e."""
    q = len(table)
    if any(len(row) != q for row in table):
        raise ValueError("The contingency table must be square.")
    n = sum(sum(row) for row in table)
    if n == 0:
        return None
    rows = [sum(row) / n for row in table]
    cols = [sum(table[i][j] for i in range(q)) / n for j in range(q)]
    po = sum(_weight(i, j, q, weights) * table[i][j] / n for i in range(q) for j in range(q))
    pe = sum(_weight(i, j, q, weights) * rows[i] * cols[j] for i in range(q) for j in range(q))
    if abs(1 - pe) < 1e-12:
        return None  # one category only: chance agreement is certain, kappa is undefined
    return (po - pe) / (1 - pe)


def cohen_kappa(
    a: Sequence[Rating],
    b: Sequence[Rating],
    weights: str | None = None,
    categories: Sequence[Hashable] | None = None,
) -> float | None:
    """Cohen's kappa of two raters over the same units (pairs with a missing rating are
    left out). ``categories`` gives the order for weights; by default the sorted ratings
    that occur."""
    if len(a) != len(b):
        raise ValueError("Both raters must rate the same units.")
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    pairs = Counter((x, y) for x, y in zip(a, b, strict=True) if x is not None and y is not None)
    return cohen_kappa_of(pairs, weights, categories)


def cohen_kappa_of(
    pairs: Mapping[tuple, int],
    weights: str | None = None,
    categories: Sequence[Hashable] | None = None,
) -> float | None:
    """``cohen_kappa`` from how many units got each pair of ratings (A's, B's)."""
    if weights not in WEIGHTS:
        raise ValueError(f"weights must be one of {WEIGHTS}")
    pairs = {pair: n for pair, n in pairs.items() if n}
    if not pairs:
        return None
    if categories is None:
        categories = sorted({x for pair in pairs for x in pair}, key=_sort_key)
    index = {c: i for i, c in enumerate(categories)}
    unknown = {x for pair in pairs for x in pair} - set(index)
    if unknown:
        raise ValueError(f"Ratings outside the categories: {sorted(map(str, unknown))}")
    table = [[0] * len(categories) for _ in categories]
    for (x, y), n in pairs.items():
        table[index[x]][index[y]] += n
    return cohen_kappa_table(table, weights)


def fleiss_kappa(counts: Sequence[Sequence[int]]) -> float | None:
    """Fleiss' kappa from a subjects x categories table of how many raters chose each
    category for each subject. Subjects rated fewer than twice are left out; the number of
    ratings may vary between subjects (P_i uses each subject's own n_i)."""
    return _fleiss([(list(row), 1) for row in counts])


def fleiss_kappa_of(found: Profiles) -> float | None:
    """``fleiss_kappa`` from the units' rating patterns."""
    patterns = _ordered(found)
    categories = sorted({r for unit, _ in patterns for r in unit}, key=_sort_key)
    if not categories:
        return None
    return _fleiss([([unit.count(c) for c in categories], n) for unit, n in patterns])


def _fleiss(rows: list[tuple[list, int]]) -> float | None:
    """Fleiss' kappa from (subject's row of counts, how many subjects have that row)."""
    rows = [(row, n) for row, n in rows if sum(row) >= 2]
    if not rows:
        return None
    total = sum(sum(row) * n for row, n in rows)
    p = [sum(row[j] * n for row, n in rows) / total for j in range(len(rows[0][0]))]
    agreement = sum(
        (sum(x * x for x in row) - sum(row)) / (sum(row) * (sum(row) - 1)) * n for row, n in rows
    )
    p_bar = agreement / sum(n for _, n in rows)
    pe = sum(x * x for x in p)
    if abs(1 - pe) < 1e-12:
        return None
    return (p_bar - pe) / (1 - pe)


def _sort_key(value):
    return (0, value) if isinstance(value, int | float) else (1, str(value))


def krippendorff_alpha(data: Sequence[Sequence[Rating]], level: str = "nominal") -> float | None:
    """Krippendorff's alpha: 1 - D_o / D_e from the coincidence matrix.

    ``data``: rows are coders, columns are units, ``None`` where a coder did not rate a unit.
    Units with fewer than two ratings are unpairable and left out. ``level`` chooses the
    difference function: nominal, ordinal (ranks by the values' order), interval, ratio.
    """
    if not data:
        if level not in LEVELS:
            raise ValueError(f"level must be one of {LEVELS}")
        return None
    width = len(data[0])
    if any(len(row) != width for row in data):
        raise ValueError("Every coder's row must cover the same units.")
    return krippendorff_alpha_units(([row[u] for row in data] for u in range(width)), level)


def krippendorff_alpha_units(
    units: Iterable[Iterable[Rating]], level: str = "nominal"
) -> float | None:
    """``krippendorff_alpha`` from one sequence of ratings per unit (no coder identity is
    needed), for data sets where most coders rate few units."""
    return krippendorff_alpha_of(profiles(units), level)


def krippendorff_alpha_of(found: Profiles, level: str = "nominal") -> float | None:
    """``krippendorff_alpha_units`` from the units' rating patterns."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    coincidences: Counter = Counter()
    for values, n in _ordered(found):
        m = len(values)
        if m < 2:
            continue
        for c, k in permutations(values, 2):
            coincidences[(c, k)] += n / (m - 1)
    if not coincidences:
        return None
    totals: Counter = Counter()
    for (c, _), o in coincidences.items():
        totals[c] += o
    n = sum(totals.values())
    values = sorted(totals, key=_sort_key)
    delta = _difference(level, values, totals)
    observed = sum(o * delta(c, k) for (c, k), o in coincidences.items())
    expected = sum(totals[c] * totals[k] * delta(c, k) for c in values for k in values)
    if expected == 0:
        return None  # a single value: no disagreement is possible, alpha is undefined
    return 1 - (n - 1) * observed / expected


def _difference(level: str, values: list, totals: Counter):
    if level == "nominal":
        return lambda c, k: 0.0 if c == k else 1.0
    if level == "interval":
        return lambda c, k: float(c - k) ** 2
    if level == "ratio":
        return lambda c, k: 0.0 if c == k else ((c - k) / (c + k)) ** 2
    rank = {v: i for i, v in enumerate(values)}
    ordered = [totals[v] for v in values]

    def ordinal(c, k):
        i, j = sorted((rank[c], rank[k]))
        return (sum(ordered[i : j + 1]) - (ordered[i] + ordered[j]) / 2) ** 2

    return ordinal


def gwet_ac1(
    units: Iterable[Iterable[Rating]], categories: Sequence[Hashable] | None = None
) -> float | None:
    """Gwet's AC1 for any number of raters, with missing ratings.

    ``units``: one sequence of ratings per unit. p_a is the percent agreement (units rated
    twice or more); pi_k the mean share of category k among each unit's ratings (units rated
    at least once); p_e = sum pi_k (1 - pi_k) / (q - 1), q the number of categories (given,
    or those that occur).
    """
    return gwet_ac1_of(profiles(units), categories)


def gwet_ac1_of(found: Profiles, categories: Sequence[Hashable] | None = None) -> float | None:
    """``gwet_ac1`` from the units' rating patterns."""
    agreement, paired, rated = 0.0, 0, 0
    shares: Counter = Counter()
    for unit, times in _ordered(found):
        counts = _counts(unit)
        r = sum(counts.values())
        if r == 0:
            continue
        rated += times
        for rating, n in counts.items():
            shares[rating] += n / r * times
        if r >= 2:
            paired += times
            agreement += sum(n * (n - 1) for n in counts.values()) / (r * (r - 1)) * times
    if not paired:
        return None
    if categories is None:
        categories = sorted(shares, key=_sort_key)
    q = len(categories)
    if q < 2:
        return None
    pa = agreement / paired
    pi = [shares[c] / rated for c in categories]
    pe = sum(p * (1 - p) for p in pi) / (q - 1)
    if abs(1 - pe) < 1e-12:
        return None
    return (pa - pe) / (1 - pe)
