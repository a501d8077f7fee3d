"""The QC report of a graded project: agreement on the signed strength as an ordinal
variable, on hand-made judgments whose statistics are known."""

import pytest
from django_scopes import scope

from qc.models import QCReport
from qc.report import STRENGTH_ROW, compute_report
from qc.services import run_report
from tests.annotation.test_graded_preference import GradedData, annotators
from tests.conftest import client_for
from tests.qc.test_agreement import KRIPP_FOUR_CODERS

pytestmark = pytest.mark.django_db

# A signed strength as the label an annotator clicks with the item's order on screen.
LABEL = {-2: "B2", -1: "B1", 0: "tie", 1: "A1", 2: "A2", 3: "A3", -3: "B3"}


def report_of(data):
    with scope(organization=data.organization):
        return compute_report(data.project)


def test_ordinal_alpha_of_the_signed_strength_reproduces_krippendorffs_example(acme):
    """Krippendorff (2011)'s four coders rating twelve units on 1..5, shifted to the signed
    strengths -2..+2 (value - 3). Alpha depends on differences of ranks (ordinal) or of
    values (interval), so the shift keeps the published 0.815 ordinal and 0.743 nominal.
    Every second annotator sees the pair swapped on screen: the stored meaning is the
    item's."""
    data = GradedData(acme.organization, 12, overlap=4)
    people = annotators(acme.organization, 4)
    for coder, (person, ratings) in enumerate(zip(people, KRIPP_FOUR_CODERS, strict=True)):
        for n, value in enumerate(ratings):
            if value is None:
                continue
            signed = value - 3
            swapped = (coder + n) % 2 == 1
            data.judge(person, n, LABEL[-signed if swapped else signed], swapped=swapped)

    report = report_of(data)
    row = report["agreement"][STRENGTH_ROW]
    assert row["levels"] == 3
    assert row["units"] == 11  # the twelfth unit has one rating: unpairable
    assert row["krippendorff_alpha_ordinal"] == pytest.approx(0.815388, abs=1e-4)
    assert row["krippendorff_alpha"] == pytest.approx(0.743421, abs=1e-4)
    assert row["percent_agreement"] == pytest.approx(9 / 11, abs=1e-4)  # Gwet p.120
    # The nominal row on the preference is still there, beside it.
    assert "preference" in report["agreement"]


def test_weighted_kappa_per_pair_on_the_signed_strength(acme):
    """Two annotators on four items: +2/+2, +2/+1, -2/-2, -2/-2, on the scale -3..+3
    (seven categories, linear weights 1 - |i - j| / 6). By hand: p_o = (3 + 5/6) / 4 = 23/24;
    rows +2: 1/2, -2: 1/2; columns +2: 1/4, +1: 1/4, -2: 1/2; p_e = 1/2 (1/4 + 5/24 + 1/6)
    + 1/2 (1/12 + 1/8 + 1/2) = 2/3; kappa = (23/24 - 2/3) / (1/3) = 7/8."""
    data = GradedData(acme.organization, 4, overlap=2)
    a, b = annotators(acme.organization, 2)
    for n, (x, y) in enumerate([(2, 2), (2, 1), (-2, -2), (-2, -2)]):
        data.judge(a, n, LABEL[x])
        data.judge(b, n, LABEL[-y], swapped=True)

    report = report_of(data)
    matrix = report["kappa_matrix_strength"]
    assert matrix["annotators"] == ["g0@x.org", "g1@x.org"]
    assert matrix["scale"] == [-3, -2, -1, 0, 1, 2, 3]
    assert matrix["values"][0][1] == pytest.approx(0.875, abs=1e-4)
    assert matrix["values"][1][0] == matrix["values"][0][1]
    # on the chosen candidate alone (nominal) they never disagree
    assert report["kappa_matrix"]["values"][0][1] == 1.0


def test_both_bad_is_left_out_of_the_strength_agreement(acme):
    data = GradedData(acme.organization, 2, overlap=2)
    a, b = annotators(acme.organization, 2)
    data.judge(a, 0, "A1")
    data.judge(b, 0, "both_bad")
    data.judge(a, 1, "A1")
    data.judge(b, 1, "A2")
    row = report_of(data)["agreement"][STRENGTH_ROW]
    assert row["units"] == 1 and row["percent_agreement"] == 0.0


def test_an_ungraded_project_has_no_strength_row(acme):
    from tests.qc.test_report import Data

    data = Data(acme.organization, 1)
    a, b = annotators(acme.organization, 2)
    data.judge(a, 0, 0)
    data.judge(b, 0, None)
    with scope(organization=acme.organization):
        report = compute_report(data.project)
    assert STRENGTH_ROW not in report["agreement"]
    assert "kappa_matrix_strength" not in report


def test_dashboard_shows_the_strength_row_and_its_heatmap(acme):
    data = GradedData(acme.organization, 3, overlap=2)
    a, b = annotators(acme.organization, 2)
    for n, (x, y) in enumerate([(2, 2), (1, 2), (-1, -1)]):
        data.judge(a, n, LABEL[x])
        data.judge(b, n, LABEL[y])
    with scope(organization=acme.organization):
        report = QCReport.objects.create(organization=acme.organization, project=data.project)
        run_report(report.pk)
    page = client_for(acme.lead).get(f"/projects/{data.project.pk}/qc/").content.decode()
    assert 'id="qc-strength-agreement"' in page
    assert "preference (signed strength) <small>(\u22123..+3)</small>" in page
    assert 'id="qc-kappa-strength"' in page
    assert "Linear-weighted kappa on the signed strength" in page
