"""The AI judge on the QC dashboard: its agreement with the human majority beside each
annotator's agreement with the majority of the others, asserted exactly."""

import pytest
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.models import Assignment, JudgeConfig, JudgeDecision, JudgeRun, Judgment
from qc.judge import judge_agreement
from qc.services import request_report, run_report
from tasks.models import LLMEndpoint, Role
from tests.annotation.test_judge import make_pairs
from tests.factories import ProjectFactory, member

FIRST, SECOND = 0, 1


def judge_item(project, person, item, pick):
    with scopes_disabled():
        pair = sorted(item.candidates.all(), key=lambda c: c.pk)
        assignment = Assignment.objects.create(
            organization=project.organization,
            project=project,
            item=item,
            annotator=person,
            status="submitted",
            display_order=[c.pk for c in pair],
            expires_at="2030-01-01T00:00:00Z",
        )
        Judgment.objects.create(
            organization=project.organization,
            project=project,
            item=item,
            assignment=assignment,
            annotator=person,
            outcome="preferred",
            chosen=pair[pick],
            rejected=pair[1 - pick],
        )


@pytest.fixture
def judged_project(acme):
    project = ProjectFactory(organization=acme.organization, annotations_per_item=3)
    items = make_pairs(project, [(f"a{n}", f"b{n}") for n in range(4)])
    people = {
        "a@x.org": [FIRST, FIRST, SECOND, SECOND],
        "b@x.org": [FIRST, SECOND, SECOND, FIRST],
        "c@x.org": [FIRST, FIRST, SECOND, SECOND],
    }
    for email, picks in people.items():
        person = member(acme.organization, Role.ANNOTATOR, email=email)
        for item, pick in zip(items, picks, strict=True):
            judge_item(project, person, item, pick)
    with scopes_disabled():
        endpoint = LLMEndpoint.objects.create(
            name="judge", base_url="http://127.0.0.1:9/v1", model="tiny", all_organizations=True
        )
        JudgeConfig.objects.create(
            organization=acme.organization, project=project, endpoint=endpoint
        )
        run = JudgeRun.objects.create(
            organization=acme.organization,
            project=project,
            endpoint=endpoint,
            model="tiny",
            status="succeeded",
            finished_at="2030-01-01T00:00:00Z",
            figures={"flip_rate": 0.25, "length_bias": 0.1, "gold_items": 0},
        )
        for item, pick in zip(items, [FIRST, SECOND, FIRST, SECOND], strict=True):
            pair = sorted(item.candidates.all(), key=lambda c: c.pk)
            JudgeDecision.objects.create(
                organization=acme.organization,
                run=run,
                item=item,
                outcome="preferred",
                chosen=pair[pick],
                rejected=pair[1 - pick],
            )
    return project


def test_the_judge_is_held_to_the_majority_and_each_person_to_the_others(judged_project, acme):
    with scope(organization=acme.organization):
        found = judge_agreement(judged_project)
    rows = {r["rater"]: (r["items"], r["percent"], r["kappa"]) for r in found["rows"]}
    # Majority of all three: first, first, second, second; the judge says F, S, F, S.
    assert rows["AI judge (tiny)"] == (4, 0.5, 0.0)
    # a and c agree with the other two wherever those two agree (items 0 and 2);
    # b against a and c: right on 0 and 2, wrong on 1 and 3.
    assert rows["a@x.org"] == (2, 1.0, 1.0)
    assert rows["c@x.org"] == (2, 1.0, 1.0)
    assert rows["b@x.org"] == (4, 0.5, 0.0)
    assert found["rows"][0]["judge"] is True


def test_no_judge_run_no_judge_rows(acme):
    with scope(organization=acme.organization):
        assert judge_agreement(acme.project) is None


def test_the_dashboard_shows_the_judge_beside_the_annotators(judged_project, acme, as_user):
    with scope(organization=acme.organization):
        run_report(request_report(judged_project).pk)
    page = as_user(acme.lead).get(reverse("qc:dashboard", args=[judged_project.pk]))
    text = page.content.decode()
    assert 'id="judge-agreement"' in text
    assert "AI judge (tiny)" in text and "b@x.org" in text
    assert "position-flip rate is 0.25" in text
