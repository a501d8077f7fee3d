"""Changing a project's questions never rewrites a judgment: each keeps the schema version
it was made under, and the version goes up only when what annotators answer changes."""

import pytest
from django_scopes import scope, scopes_disabled

from annotation.models import Judgment
from tasks.models import Project
from tests.annotation.test_workspace import FRAGMENT, current, page, with_items
from tests.factories import api_token

pytestmark = pytest.mark.django_db

TONE = {"name": "tone", "kind": "choice", "options": ["formal", "casual"], "required": False}


def submit(client, project, annotator, answers):
    page(client, project)
    assignment = current(annotator)
    response = client.post(
        f"/projects/{project.pk}/annotate/{assignment.pk}/submit/", answers, **FRAGMENT
    )
    assert response.status_code == 200, response.content
    with scopes_disabled():
        return Judgment.objects.get(assignment=assignment)


def saved(project, **changes) -> Project:
    with scope(organization=project.organization):
        fresh = Project.objects.get(pk=project.pk)
        for name, value in changes.items():
            setattr(fresh, name, value)
        fresh.full_clean()
        fresh.save()
        return fresh


def test_judgments_keep_the_version_they_were_made_under(acme, as_user, client):
    with_items(acme.project)
    annotator = as_user(acme.annotator)
    first = submit(annotator, acme.project, acme.annotator, {"preference": "Response A is better"})
    assert first.schema_version == 1

    project = saved(acme.project, name="Renamed", guidelines="New words.")
    assert project.schema_version == 1  # nothing an annotator answers changed
    project = saved(project, questions=[*project.questions, TONE])
    assert project.schema_version == 2
    project = saved(project, html_layout="<div>{{text}}</div>")
    assert project.schema_version == 3
    project.status = Project.Status.PAUSED
    project.save(update_fields=["status"])  # not what annotators answer: no new version
    *others, tone = project.questions
    project.questions = others
    project.save(update_fields=["questions"])
    assert project.schema_version == 4
    project.questions = [*others, tone]
    project.save(update_fields=["questions"])
    project.status = Project.Status.ACTIVE
    project.save(update_fields=["status"])
    assert project.schema_version == 5
    project.refresh_from_db()
    assert project.schema_version == 5

    second = submit(annotator, project, acme.annotator, {"preference": "Tie", "tone": "casual"})
    first.refresh_from_db()
    assert (first.schema_version, second.schema_version) == (1, 5)

    token, raw = api_token(acme.organization)
    listed = client.get(
        f"/api/v1/projects/{project.pk}/judgments", HTTP_AUTHORIZATION=f"Bearer {raw}"
    ).json()
    versions = {row["id"]: row["schema_version"] for row in listed["results"]}
    assert versions == {first.pk: 1, second.pk: 5}


def test_an_edit_is_made_under_the_current_version_and_the_revision_keeps_the_old(acme, as_user):
    with_items(acme.project)
    annotator = as_user(acme.annotator)
    judgment = submit(
        annotator, acme.project, acme.annotator, {"preference": "Response A is better"}
    )
    saved(acme.project, questions=[*acme.project.questions, TONE])
    response = annotator.post(
        f"/projects/{acme.project.pk}/history/{judgment.pk}/",
        {"preference": "Tie", "tone": "formal"},
    )
    assert response.status_code == 302
    judgment.refresh_from_db()
    with scopes_disabled():
        (revision,) = judgment.revisions.all()
    assert judgment.schema_version == 2 and judgment.answers["tone"] == "formal"
    assert revision.snapshot["schema_version"] == 1
