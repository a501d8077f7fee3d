"""The QC report tells how often experts agreed with each source of machine-made pairs."""

import pytest
from django_scopes import scope

from qc.models import QCReport
from qc.report import expert_agreement_by_source
from qc.services import run_report
from tasks.models import SignalPair
from tests.tasks.test_feedback_verify import judge, make_pair, queue, verification_project

pytestmark = pytest.mark.django_db


@pytest.fixture
def judged(acme):
    """Edits: 2 confirmed, 1 flipped, 1 rejected; thumbs: 1 flipped, 1 waiting; an A/B pair
    accepted without experts."""
    project = verification_project(acme.organization)
    for n in range(4):
        make_pair(project, n, rule="edit")
    make_pair(project, 4, rule="thumbs")
    make_pair(project, 9, rule="ab_test", confidence=0.99, status=SignalPair.Status.ACCEPTED)
    queue(project)
    verdicts = {"edit": ["agree", "agree", "flip", "reject"], "thumbs": ["flip"]}
    for _ in range(5):
        judge(project, acme.annotator, verdicts)
    make_pair(project, 5, rule="thumbs")
    queue(project)
    return project


def test_expert_agreement_per_source(judged):
    with scope(organization=judged.organization):
        rows = expert_agreement_by_source(judged)
    assert rows == [
        {
            "source": "edit",
            "verified": 4,
            "waiting": 0,
            "confirmed": 0.5,
            "flipped": 0.25,
            "rejected": 0.25,
        },
        {
            "source": "thumbs",
            "verified": 1,
            "waiting": 1,
            "confirmed": 0.0,
            "flipped": 1.0,
            "rejected": 0.0,
        },
    ]


def test_the_qc_page_and_json_show_it(judged, acme, as_user):
    with scope(organization=acme.organization):
        report = QCReport.objects.create(organization=acme.organization, project=judged)
        run_report(report.pk)
    client = as_user(acme.lead)
    page = client.get(f"/projects/{judged.pk}/qc/").content.decode()
    assert "Expert agreement with each source" in page
    assert (
        '<tr data-source="edit"><td>edit</td><td>4</td><td>50%</td><td>25%</td><td>25%</td>'
        "<td>0</td></tr>"
    ) in page
    as_json = client.get(f"/projects/{judged.pk}/qc/report.json").json()
    assert as_json["expert_agreement_by_source"][1]["flipped"] == 1.0
