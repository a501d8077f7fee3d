"""Tenant keys (tasks.models.prompts): the database refuses a prompt, candidate, item or
feedback signal whose project or organization is not its parent's, whatever code wrote it,
and checks each such row with one composite foreign key rather than one per column."""

import pytest
from django.db import IntegrityError, connection, transaction
from django_scopes import scopes_disabled

from tasks.models import Candidate, FeedbackSignal, Item, Project, Prompt
from tests.factories import OrganizationFactory, ProjectFactory, PromptFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_tenants():
    with scopes_disabled():
        ours = PromptFactory()
        theirs = PromptFactory(project=ProjectFactory(organization=OrganizationFactory()))
        sibling = ProjectFactory(organization=ours.organization)  # same organization
        yield ours, theirs, sibling


def refused(write) -> None:
    """``write`` fails when its constraints are checked (they are deferred to the commit)."""
    with pytest.raises(IntegrityError), transaction.atomic(), scopes_disabled():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        write()


def accepted(write) -> None:
    with transaction.atomic(), scopes_disabled():
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        write()


def test_a_prompt_is_in_its_projects_organization(two_tenants):
    ours, theirs, _ = two_tenants
    fields = {"external_id": "x", "text": "t", "content_hash": "h"}
    refused(
        lambda: Prompt.objects.create(
            project=ours.project, organization=theirs.organization, **fields
        )
    )
    refused(
        lambda: Prompt.objects.create(project_id=10**9, organization=ours.organization, **fields)
    )
    accepted(
        lambda: Prompt.objects.create(
            project=ours.project, organization=ours.organization, **fields
        )
    )


def test_a_candidate_is_in_its_prompts_organization(two_tenants):
    ours, theirs, _ = two_tenants
    refused(
        lambda: Candidate.objects.create(
            prompt=ours, organization=theirs.organization, text="a", content_hash="a"
        )
    )
    refused(
        lambda: Candidate.objects.create(
            prompt_id=10**9, organization=ours.organization, text="a", content_hash="a"
        )
    )
    accepted(
        lambda: Candidate.objects.create(
            prompt=ours, organization=ours.organization, text="a", content_hash="a"
        )
    )


@pytest.mark.parametrize("model", [Item, FeedbackSignal])
def test_items_and_signals_have_their_prompts_project_and_organization(two_tenants, model):
    ours, theirs, sibling = two_tenants
    extra = (
        {"mode": Project.Mode.PAIRWISE, "candidate_key": "1-2"}
        if model is Item
        else {"kind": FeedbackSignal.Kind.FEEDBACK}
    )

    def make(prompt, project, organization):
        return lambda: model.objects.create(
            prompt=prompt, project=project, organization=organization, **extra
        )

    # Another organization's prompt, a prompt of another project of ours, a wrong
    # organization on our own project's prompt.
    refused(make(theirs, ours.project, ours.organization))
    refused(make(ours, sibling, ours.organization))
    refused(make(ours, ours.project, theirs.organization))
    accepted(make(ours, ours.project, ours.organization))


def test_one_key_per_row_to_prompt_project_and_organization():
    """Per-column keys beside the composite ones would double the checks every import pays."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT conrelid::regclass::text, confrelid::regclass::text, array_length(conkey, 1)
            FROM pg_constraint
            WHERE contype = 'f' AND conrelid = ANY(%s::regclass[])
                AND confrelid = ANY(%s::regclass[])
            ORDER BY 1
            """,
            [
                ["tasks_prompt", "tasks_candidate", "tasks_item", "tasks_feedbacksignal"],
                ["tasks_prompt", "tasks_project", "tasks_organization"],
            ],
        )
        keys = cursor.fetchall()
    assert keys == [
        ("tasks_candidate", "tasks_prompt", 2),
        ("tasks_feedbacksignal", "tasks_prompt", 3),
        ("tasks_item", "tasks_prompt", 3),
        ("tasks_prompt", "tasks_project", 2),
    ]


def test_deleting_a_project_still_takes_its_rows(two_tenants):
    ours, theirs, _ = two_tenants
    with scopes_disabled():
        Candidate.objects.create(
            prompt=ours, organization=ours.organization, text="a", content_hash="a"
        )
        FeedbackSignal.objects.create(
            prompt=ours,
            project=ours.project,
            organization=ours.organization,
            kind=FeedbackSignal.Kind.FEEDBACK,
        )
        with transaction.atomic():
            ours.project.delete()
            with connection.cursor() as cursor:
                cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        assert not Prompt.objects.filter(pk=ours.pk).exists()
        assert not Candidate.objects.filter(prompt_id=ours.pk).exists()
        assert Prompt.objects.filter(pk=theirs.pk).exists()
