"""The allocator's plan right after an import, as a team meets it (issue 23): statistics as
the import left them, in a database that already holds another project and an annotator
with earlier assignments. Without fresh statistics PostgreSQL expects the new project to
have about one item, reads and sorts all of them and checks each against the annotator's
assignments; with them it walks item_allocation_idx (tasks.dbstats)."""

import pytest
from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from annotation.allocator import _take_params, _take_sql
from annotation.models import Assignment
from tasks import dbstats
from tasks.dbroles import grant_app_role
from tasks.models import Item, Role
from tests.annotation.test_allocator import project_with_items
from tests.factories import member

ITEMS = 3000


def plan(project, annotator) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {_take_sql()}", _take_params(project, annotator))
        return "\n".join(row[0] for row in cursor.fetchall())


@pytest.fixture
def earlier_work(acme, django_capture_on_commit_callbacks):
    """A project of ITEMS items whose statistics are current, and an annotator who judged
    150 of them."""
    old = imported_project(acme, django_capture_on_commit_callbacks)
    annotator = member(acme.organization, Role.ANNOTATOR)
    with scopes_disabled():
        items = list(Item.objects.filter(project=old).values_list("id", flat=True)[:150])
        Assignment.objects.bulk_create(
            Assignment(
                organization=acme.organization,
                project=old,
                item_id=item_id,
                annotator=annotator,
                status=Assignment.Status.SUBMITTED,
                expires_at=timezone.now(),
            )
            for item_id in items
        )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_item; ANALYZE annotation_assignment")
    return annotator


def imported_project(acme, django_capture_on_commit_callbacks):
    # The import's commit runs its callbacks, as the worker's would.
    with django_capture_on_commit_callbacks(execute=True):
        return project_with_items(acme.organization, ITEMS)


def test_right_after_an_import_the_allocator_walks_its_index(
    acme, earlier_work, django_capture_on_commit_callbacks
):
    new = imported_project(acme, django_capture_on_commit_callbacks)

    shown = plan(new, earlier_work)

    assert "item_allocation_idx" in shown, shown
    assert "Seq Scan on tasks_item" not in shown, shown
    assert "Bitmap Heap Scan on tasks_item" not in shown, shown


def test_without_the_refresh_the_plan_reads_the_whole_project(
    acme, earlier_work, django_capture_on_commit_callbacks, settings
):
    """The case the refresh exists for (and the proof the test above can fail): with the
    threshold out of reach, the plan sorts the new project's items instead."""
    settings.CHOSEN_ANALYZE_AFTER_ROWS = 10**9
    new = imported_project(acme, django_capture_on_commit_callbacks)

    assert "item_allocation_idx" not in plan(new, earlier_work)


def test_a_transaction_analyzes_each_table_once_after_its_commit(
    acme, django_capture_on_commit_callbacks, monkeypatch, settings
):
    settings.CHOSEN_ANALYZE_AFTER_ROWS = 100
    analyzed = []
    monkeypatch.setattr(dbstats, "analyze", analyzed.append)
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        for _ in range(3):  # an import's chunks: 3 x 40 rows, over 100 together
            dbstats.wrote(Item, 40)
        dbstats.wrote("tasks_prompt", 99)  # under the threshold: left to autovacuum
        assert analyzed == []  # nothing inside the transaction
    assert len(callbacks) == 1
    assert analyzed == [["tasks_item"]]


@pytest.mark.django_db
def test_the_application_role_may_analyze_chosens_tables_only():
    """The owner's function analyzes through the application role's grant (PostgreSQL 15
    lets only a table's owner ANALYZE), refuses anything that is not Chosen's, and is not
    for roles without the grant."""
    grant_app_role("chosen_stats_test")
    with connection.cursor() as cursor:
        cursor.execute("CREATE ROLE chosen_stats_nobody")
        cursor.execute("SET LOCAL ROLE chosen_stats_test")
        cursor.execute("SELECT chosen_analyze(ARRAY['tasks_item', 'annotation_judgment'])")
        with pytest.raises(DatabaseError, match="not a table of Chosen"), transaction.atomic():
            cursor.execute("SELECT chosen_analyze(ARRAY['pg_class'])")
        with pytest.raises(DatabaseError, match="not a table of Chosen"), transaction.atomic():
            cursor.execute("SELECT chosen_analyze(ARRAY['tasks_item; DROP TABLE tasks_item'])")
        cursor.execute("RESET ROLE")
        cursor.execute("SET LOCAL ROLE chosen_stats_nobody")
        with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
            cursor.execute("SELECT chosen_analyze(ARRAY['tasks_item'])")
        cursor.execute("RESET ROLE")
