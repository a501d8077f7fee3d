"""The next-item allocator on the real PostgreSQL."""

import threading
from collections import Counter
from datetime import timedelta

import pytest
from django.db import connection
from django.db.models import Count
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from annotation.allocator import next_assignment
from annotation.models import Assignment, Judgment
from annotation.services import AssignmentRefused, skip_assignment, submit_judgment
from tasks.models import Item, Project, Role
from tests.factories import ProjectFactory, member
from tests.tasks.test_prompt_import import jsonl, row, run

PREFERENCE = {"preference": "Response A is better"}


def project_with_items(organization, n: int, **settings) -> Project:
    project = ProjectFactory(organization=organization, questions=[], **settings)
    with scope(organization=organization):
        project.full_clean()  # the default pairwise schema
        project.save()
    run(project, {"d.jsonl": jsonl(*(row(i) for i in range(n)))})
    return project


def allocate(project, annotator):
    with scope(organization=project.organization):
        return next_assignment(project=project, annotator=annotator)


def submit(project, annotator, assignment, answers=PREFERENCE):
    with scope(organization=project.organization):
        return submit_judgment(
            project=project, assignment_id=assignment.pk, annotator=annotator, answers=answers
        )


@pytest.mark.django_db(transaction=True)
def test_parallel_annotators_never_exceed_overlap_nor_repeat_an_item(acme):
    project = project_with_items(acme.organization, 60, annotations_per_item=2)
    annotators = [member(acme.organization, Role.ANNOTATOR) for _ in range(10)]
    errors, done = [], Counter()

    def work(annotator):
        try:
            with scope(organization=acme.organization):
                while (
                    allocation := next_assignment(project=project, annotator=annotator)
                ).assignment:
                    submit_judgment(
                        project=project,
                        assignment_id=allocation.assignment.pk,
                        annotator=annotator,
                        answers=PREFERENCE,
                    )
                    done[annotator.pk] += 1
        except Exception as exc:  # collected: a failure in a thread must fail the test
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(a,)) for a in annotators]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    with scopes_disabled():
        per_item = Counter(
            Judgment.objects.filter(project=project).values_list("item_id", flat=True)
        )
        pairs = Judgment.objects.values_list("item_id", "annotator_id")
        assert len(pairs) == len(set(pairs)), "an annotator judged an item twice"
        assert len(per_item) == 60 and set(per_item.values()) == {2}
        assert set(
            Item.objects.filter(project=project).values_list("assignment_count", flat=True)
        ) == {2}
    assert sum(done.values()) == 120 and len([n for n in done.values() if n]) >= 8


@pytest.mark.django_db
def test_least_covered_items_come_first(acme):
    project = project_with_items(acme.organization, 3, annotations_per_item=2)
    first, second = member(acme.organization), member(acme.organization)
    a = allocate(project, first).assignment
    b = allocate(project, second).assignment
    assert a.item_id != b.item_id  # an untouched item before a second look at a's


@pytest.mark.django_db
def test_reloading_returns_the_same_open_assignment(acme):
    project = project_with_items(acme.organization, 5)
    a = allocate(project, acme.annotator).assignment
    assert allocate(project, acme.annotator).assignment.pk == a.pk
    assert sorted(a.display_order) == sorted(a.item.slots.values_list("candidate_id", flat=True))


@pytest.mark.django_db
def test_an_expired_assignment_is_reclaimed_and_its_late_submit_refused(acme):
    project = project_with_items(acme.organization, 1, assignment_timeout_minutes=5)
    late, other = acme.annotator, member(acme.organization)
    stale = allocate(project, late).assignment
    assert allocate(project, other).reason == "done"  # the only item is taken
    with scopes_disabled():
        Assignment.objects.filter(pk=stale.pk).update(
            expires_at=timezone.now() - timedelta(seconds=1)
        )
    taken = allocate(project, other).assignment
    assert taken.item_id == stale.item_id
    with pytest.raises(AssignmentRefused, match="handed to someone else after 5 minutes"):
        submit(project, late, stale)
    submit(project, other, taken)
    with scopes_disabled():
        assert Judgment.objects.get().annotator == other


@pytest.mark.django_db
def test_quota_stops_an_annotator(acme):
    project = project_with_items(acme.organization, 5, quota_per_annotator=2)
    for _ in range(2):
        submit(project, acme.annotator, allocate(project, acme.annotator).assignment)
    assert allocate(project, acme.annotator).reason == "quota"
    assert allocate(project, member(acme.organization)).assignment is not None


@pytest.mark.django_db
def test_a_skipped_item_goes_to_someone_else_never_back(acme):
    project = project_with_items(acme.organization, 1)
    skipped = allocate(project, acme.annotator).assignment
    with scope(organization=acme.organization):
        skip_assignment(
            project=project, assignment_id=skipped.pk, annotator=acme.annotator, reason="unsure"
        )
    assert allocate(project, acme.annotator).reason == "done"
    assert allocate(project, member(acme.organization)).assignment.item_id == skipped.item_id


@pytest.mark.django_db
def test_a_double_submit_stores_one_judgment(acme):
    project = project_with_items(acme.organization, 2)
    a = allocate(project, acme.annotator).assignment
    first, second = submit(project, acme.annotator, a), submit(project, acme.annotator, a)
    assert first.pk == second.pk
    with scopes_disabled():
        assert Judgment.objects.count() == 1


@pytest.mark.django_db
def test_someone_elses_assignment_is_refused(acme):
    project = project_with_items(acme.organization, 2)
    a = allocate(project, acme.annotator).assignment
    with pytest.raises(AssignmentRefused, match="not assigned to you"):
        submit(project, member(acme.organization), a)


@pytest.mark.django_db
def test_preference_is_stored_as_candidate_ids_through_the_display_order(acme):
    project = project_with_items(acme.organization, 1)
    a = allocate(project, acme.annotator).assignment
    judgment = submit(project, acme.annotator, a, {"preference": "Response B is better"})
    assert (judgment.chosen_id, judgment.rejected_id) == (a.display_order[1], a.display_order[0])
    assert judgment.label == "Response B is better" and judgment.outcome == "preferred"


@pytest.mark.django_db
def test_answers_are_checked_against_the_schema(acme):
    project = project_with_items(
        acme.organization, 1, reasoning_required=True, reasoning_min_length=20
    )
    a = allocate(project, acme.annotator).assignment
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as info:
        submit(project, acme.annotator, a, {"preference": "nope", "reasoning": "short"})
    assert info.value.message_dict == {
        "preference": ["Choose one of the labels."],
        "reasoning": ["Write at least 20 characters (5 so far)."],
    }
    with scopes_disabled():
        assert not Judgment.objects.exists()


@pytest.mark.django_db
def test_allocation_uses_the_index_not_a_scan(acme):
    project = project_with_items(acme.organization, 300)
    with scopes_disabled(), connection.cursor() as cursor:
        sql, params = (
            Item.objects.filter(project=project)
            .order_by("assignment_count", "random_order", "id")
            .values("id")[:1]
            .query.sql_with_params()
        )
        cursor.execute("ANALYZE tasks_item")
        cursor.execute(f"EXPLAIN {sql}", params)
        plan = "\n".join(r[0] for r in cursor.fetchall())
    assert "item_allocation_idx" in plan, plan
    with scopes_disabled():
        assert Item.objects.filter(project=project).aggregate(n=Count("id"))["n"] == 300
