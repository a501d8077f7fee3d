"""Fresh planner statistics after bulk writes.

PostgreSQL plans a query from the statistics ANALYZE gathers, and autovacuum refreshes them
only once a table has changed by 10% (plus 50 rows). An import of a new project into a
table that already holds others leaves statistics in which the new project does not
exist: the allocator's query then expects one item, reads and sorts all of them and
checks each against every assignment the annotator ever had (183 ms per submit+next at
10k items, issue 23) instead of walking ``item_allocation_idx`` (about 1 ms). This is
exactly when a team starts on a new project.

So every bulk writer reports what it wrote (``wrote``), and a transaction that wrote at
least ``CHOSEN_ANALYZE_AFTER_ROWS`` rows into a table analyzes that table once it has
committed: once per table and transaction, however many chunks it wrote, nothing when it
rolled back, and never inside the writing transaction (ANALYZE there would hold its lock
until the commit and queue the next import behind it).

The application's role owns no table (``tasks.dbroles``), and PostgreSQL 15 lets only a
table's owner analyze it: the owner's ``SECURITY DEFINER`` function
``chosen_analyze(text[])`` (migration ``tasks/0019_analyze_function``) analyzes Chosen's
own tables and nothing else, and ``grant_app_role`` lets the application's role call it.
Statistics are an optimization: a failure to refresh them (a lock held too long, the
database gone after the commit) is logged and the write that was committed stays.

While the writing transaction runs, though, the statistics still describe the project as
it was before (empty, for a new one): PostgreSQL rates "project_id = X" as one row and walks
the project's own index, the smallest, which by then holds every row the import wrote, to
find a few keys among them. Lookups by key inside a bulk writer therefore keep the project
as a filter the planner cannot take an index for (``by_key_in_project``), so that the key's
own index leads whatever the statistics say.
"""

import logging
from collections import Counter

from django.conf import settings
from django.db import DatabaseError, connection, models, transaction
from django.db.models import F

log = logging.getLogger(__name__)

# How long the ANALYZE may wait for a table's lock (another ANALYZE or a VACUUM holds it).
LOCK_TIMEOUT = "5s"


class _PendingAnalyze:
    """The on-commit callback of one transaction: the rows it wrote per table."""

    def __init__(self) -> None:
        self.rows: Counter[str] = Counter()
        self.ran = False

    def __call__(self) -> None:
        self.ran = True
        threshold = settings.CHOSEN_ANALYZE_AFTER_ROWS
        tables = sorted(table for table, rows in self.rows.items() if rows >= threshold)
        if tables:
            analyze(tables)


def wrote(model: type[models.Model] | str, rows: int) -> None:
    """Count ``rows`` written into ``model``'s table (or a table name) by the current
    transaction; its tables that got enough are analyzed after it commits."""
    if rows <= 0:
        return
    table = model if isinstance(model, str) else model._meta.db_table
    # One callback per transaction: Django keeps the pending ones in run_on_commit (and drops
    # them, with their counts, on a rollback). One that ran is no longer pending (tests run
    # callbacks inside the transaction they leave open).
    pending = next(
        (
            func
            for _, func, _ in connection.run_on_commit
            if isinstance(func, _PendingAnalyze) and not func.ran
        ),
        None,
    )
    if pending is None:
        pending = _PendingAnalyze()
        pending.rows[table] += rows
        transaction.on_commit(pending)  # outside a transaction: runs now
    else:
        pending.rows[table] += rows


def analyze(tables: list[str]) -> None:
    """ANALYZE these tables of Chosen's now, through ``chosen_analyze``."""
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL lock_timeout = %s", [LOCK_TIMEOUT])
            cursor.execute("SELECT chosen_analyze(%s::text[])", [tables])
    except DatabaseError as error:
        log.warning("Planner statistics of %s not refreshed: %s", ", ".join(tables), error)


def by_key_in_project(queryset: models.QuerySet, project_id: int) -> models.QuerySet:
    """``queryset`` (already filtered by a selective key) within one project, with the
    project as ``project_id + 0``: a filter no index serves, so the key's index leads."""
    return queryset.alias(_in_project=F("project_id") + 0).filter(_in_project=project_id)
