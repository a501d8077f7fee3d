"""The agreement statistics reproduce published worked examples to three decimals (or
better), and give a defined result (None: undefined) in degenerate cases."""

import pytest

from qc.agreement import (
    cohen_kappa,
    cohen_kappa_table,
    fleiss_kappa,
    gwet_ac1,
    krippendorff_alpha,
    percent_agreement,
)

_ = None

# Gwet, Handbook of Inter-Rater Reliability (4th ed., 2014): two abstractors, 100 subjects,
# 3 categories; and 223 subjects, 4 diagnoses. Values as in the irrCAC package's tests.
ABSTRACTORS = [[13, 0, 0], [0, 20, 7], [0, 4, 56]]
DIAGNOSIS = [[40, 4, 4, 17], [6, 25, 2, 13], [4, 1, 21, 12], [15, 5, 9, 45]]
# A SAS example (statsmodels' test suite): 19 subjects, 3 categories.
TABLE10 = [[0, 4, 1], [0, 8, 0], [0, 1, 5]]
# R irr's "anxiety" data, raters 2 and 3 (irr::kappa2 values).
ANXIETY_R2 = [3, 6, 4, 6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4]
ANXIETY_R3 = [2, 1, 4, 4, 3, 2, 1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2]
# Fleiss (1971): 30 patients, 6 psychiatrists, 5 diagnoses (R irr's "diagnoses").
DIAGNOSES = [
    [4, 4, 4, 4, 4, 4], [2, 2, 2, 5, 5, 5], [2, 3, 3, 3, 3, 5], [5, 5, 5, 5, 5, 5],
    [2, 2, 2, 4, 4, 4], [1, 1, 3, 3, 3, 3], [3, 3, 3, 3, 5, 5], [1, 1, 3, 3, 3, 4],
    [1, 1, 4, 4, 4, 4], [5, 5, 5, 5, 5, 5], [1, 4, 4, 4, 4, 4], [1, 2, 4, 4, 4, 4],
    [2, 2, 2, 3, 3, 3], [1, 4, 4, 4, 4, 4], [2, 2, 4, 4, 4, 5], [3, 3, 3, 3, 3, 5],
    [1, 1, 1, 4, 5, 5], [1, 1, 1, 1, 1, 2], [2, 2, 4, 4, 4, 4], [1, 3, 3, 5, 5, 5],
    [5, 5, 5, 5, 5, 5], [2, 4, 4, 4, 4, 4], [2, 2, 4, 5, 5, 5], [1, 1, 4, 4, 4, 4],
    [1, 4, 4, 4, 4, 5], [2, 2, 2, 2, 2, 4], [1, 1, 1, 1, 5, 5], [2, 2, 4, 4, 4, 4],
    [1, 3, 3, 3, 3, 3], [5, 5, 5, 5, 5, 5],
]  # fmt: skip
# Wikipedia's Fleiss' kappa example: 10 subjects, 14 raters, 5 categories.
WIKIPEDIA_FLEISS = [
    [0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7],
]  # fmt: skip
# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability": rows are coders.
KRIPP_BINARY = [[0, 1, 0, 0, 0, 0, 0, 0, 1, 0], [1, 1, 1, 0, 0, 1, 0, 0, 0, 0]]
KRIPP_NOMINAL_2 = [list("aabbdcccedda"), list("babbbccceddd")]
KRIPP_FOUR_CODERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, _, _, _],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, _, 3],
    [_, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, _],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, _],
]


def units_of(coders):
    """Coders x units (Krippendorff's layout) as one list of ratings per unit."""
    return [list(unit) for unit in zip(*coders, strict=True)]


def test_percent_agreement():
    a, b = [0] * 40 + [1] * 60, [0] * 20 + [1] * 20 + [0] * 10 + [1] * 50
    assert percent_agreement(zip(a, b, strict=True)) == pytest.approx(0.70)
    assert percent_agreement(units_of(KRIPP_BINARY)) == pytest.approx(0.6)
    assert percent_agreement(units_of(KRIPP_FOUR_CODERS)) == pytest.approx(9 / 11)  # Gwet p.120
    abstractors = [(i, j) for i, row in enumerate(ABSTRACTORS) for j, n in enumerate(row)
                   for _ in range(n)]  # fmt: skip
    assert percent_agreement(abstractors) == pytest.approx(0.89)


@pytest.mark.parametrize(
    "table, weights, expected",
    [
        (ABSTRACTORS, None, 0.796409),  # Gwet 2014 / irrCAC
        (ABSTRACTORS, "linear", 0.842902),
        (ABSTRACTORS, "quadratic", 0.892157),
        (DIAGNOSIS, None, 0.431501),
        (DIAGNOSIS, "linear", 0.406811),
        (DIAGNOSIS, "quadratic", 0.383186),
        (TABLE10, None, 0.4842),  # SAS, as printed (4 decimals)
        (TABLE10, "linear", 0.4701),
    ],
)
def test_cohen_kappa_reproduces_published_tables(table, weights, expected):
    assert cohen_kappa_table(table, weights) == pytest.approx(expected, abs=5e-5)


def test_cohen_kappa_from_ratings():
    # Artstein & Poesio (2008), as in scikit-learn's tests.
    a = [0] * 40 + [1] * 60
    assert cohen_kappa(a, [0] * 20 + [1] * 20 + [0] * 10 + [1] * 50) == pytest.approx(0.348, 1e-3)
    a = [0] * 46 + [1] * 44 + [2] * 10
    assert cohen_kappa(a, [0] * 52 + [1] * 32 + [2] * 16) == pytest.approx(0.8013, abs=5e-5)
    b = [0] * 50 + [1] * 40 + [2] * 10
    assert cohen_kappa(a, b) == pytest.approx(0.9315, abs=5e-5)
    assert cohen_kappa(a, b, "linear") == pytest.approx(0.9412, abs=5e-5)
    assert cohen_kappa(a, b, "quadratic") == pytest.approx(0.9541, abs=5e-5)
    # R irr::kappa2 on the anxiety data (irr ranks the categories that occur: 1,2,3,4,6).
    assert cohen_kappa(ANXIETY_R2, ANXIETY_R3) == pytest.approx(-0.006289308, abs=1e-7)
    assert cohen_kappa(ANXIETY_R2, ANXIETY_R3, "linear") == pytest.approx(0.1459075, abs=1e-7)
    assert cohen_kappa(ANXIETY_R2, ANXIETY_R3, "quadratic") == pytest.approx(0.2520325, abs=1e-7)


def test_fleiss_kappa_reproduces_fleiss_1971_and_wikipedia():
    counts = [[row.count(c) for c in range(1, 6)] for row in DIAGNOSES]
    assert [sum(col) for col in zip(*counts, strict=True)] == [26, 26, 30, 55, 43]
    assert fleiss_kappa(counts) == pytest.approx(0.4302445, abs=1e-7)
    assert fleiss_kappa(WIKIPEDIA_FLEISS) == pytest.approx(0.209931, abs=1e-6)


@pytest.mark.parametrize(
    "level, expected",
    [("nominal", 0.743421), ("ordinal", 0.815388), ("interval", 0.849107), ("ratio", 0.797403)],
)
def test_krippendorff_alpha_reproduces_the_four_coder_example(level, expected):
    assert krippendorff_alpha(KRIPP_FOUR_CODERS, level) == pytest.approx(expected, abs=1e-6)


def test_krippendorff_alpha_two_coder_examples():
    assert krippendorff_alpha(KRIPP_BINARY) == pytest.approx(0.095, abs=5e-4)  # 2/21
    assert krippendorff_alpha(KRIPP_NOMINAL_2) == pytest.approx(155 / 224, abs=1e-9)


def test_gwet_ac1_reproduces_gwet_2014():
    assert gwet_ac1(units_of(KRIPP_FOUR_CODERS)) == pytest.approx(0.775444, abs=1e-6)
    abstractors = [(i, j) for i, row in enumerate(ABSTRACTORS) for j, n in enumerate(row)
                   for _ in range(n)]  # fmt: skip
    assert gwet_ac1(abstractors) == pytest.approx(0.849331, abs=1e-6)
    diagnosis = [(i, j) for i, row in enumerate(DIAGNOSIS) for j, n in enumerate(row)
                 for _ in range(n)]  # fmt: skip
    assert gwet_ac1(diagnosis) == pytest.approx(0.456158, abs=1e-6)


def test_one_category_only_is_undefined_not_a_crash():
    same = ["a"] * 5
    assert cohen_kappa(same, same) is None
    assert fleiss_kappa([[3, 0], [3, 0]]) is None
    assert krippendorff_alpha([same, same]) is None
    assert gwet_ac1(zip(same, same, strict=True)) is None
    assert percent_agreement(zip(same, same, strict=True)) == 1.0


def test_no_pairable_units_is_undefined():
    assert cohen_kappa([1, _, 2], [_, 3, _]) is None
    assert cohen_kappa([], []) is None
    assert fleiss_kappa([[1, 0], [0, 1]]) is None
    assert krippendorff_alpha([[1, _], [_, 2]]) is None
    assert krippendorff_alpha([]) is None
    assert gwet_ac1([[1], [2, _]]) is None
    assert percent_agreement([[1], [_]]) is None


def test_bad_input_is_refused_clearly():
    with pytest.raises(ValueError, match="same units"):
        cohen_kappa([1, 2], [1])
    with pytest.raises(ValueError, match="weights must be"):
        cohen_kappa([1], [1], weights="cubic")
    with pytest.raises(ValueError, match="outside the categories"):
        cohen_kappa([1, 2], [1, 3], categories=[1, 2])
    with pytest.raises(ValueError, match="level must be"):
        krippendorff_alpha([[1]], "fancy")
    with pytest.raises(ValueError, match="square"):
        cohen_kappa_table([[1, 2]])
