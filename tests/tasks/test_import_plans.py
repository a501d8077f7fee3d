"""Lookups by key inside an import, planned with the statistics an import runs under: they
still describe the project as it was before (empty, for a new one), in a database that
holds an older, analyzed project. PostgreSQL then rates "project_id = X" as one row and
would walk the project's own index, which by then holds every row the import wrote, for
each key (tasks.dbstats.by_key_in_project). Every lookup must be led by its key's index."""

import re

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django_scopes import scopes_disabled

from tasks.importers import feedback
from tasks.models import Prompt
from tests.annotation.test_allocator import project_with_items
from tests.factories import ProjectFactory
from tests.tasks.test_feedback_import import row as feedback_row
from tests.tasks.test_feedback_import import run as run_feedback
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.django_db
OLDER = 3000
# An index on the project alone (Django's for the foreign key). (A sequential scan of a
# table this small is the planner's fair choice for a chunk's keys, and not the trap.)
PROJECT_ONLY = re.compile(r"using tasks_\w+_project_id_\w+")


def explain(statement: str, params=None) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN {statement}", params)
        return "\n".join(line for (line,) in cursor.fetchall())


@pytest.fixture
def older_project(acme, settings):
    """An analyzed project of OLDER prompts with feedback; the statistics are not refreshed
    after anything the test imports (as inside an import's own transaction)."""
    project = project_with_items(acme.organization, OLDER)
    run_feedback(ProjectFactory(organization=acme.organization), {"f.jsonl": _feedback(OLDER)})
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE tasks_prompt; ANALYZE tasks_item; ANALYZE tasks_feedbacksignal")
    settings.CHOSEN_ANALYZE_AFTER_ROWS = 10**9
    return project


def _feedback(n: int) -> bytes:
    return jsonl(*(feedback_row(i, thumbs="up") for i in range(n)))


def test_a_prompt_import_looks_prompts_and_items_up_by_key(acme, older_project):
    new = project_with_items(acme.organization, 300)
    again = [row(i, response_a=f"another answer {i}") for i in range(250, 350)]  # old and new
    with CaptureQueriesContext(connection) as queries:
        report = run(new, {"again.jsonl": jsonl(*again)})
    assert report.prompts_created == 50 and report.prompts_already_present == 50

    lookups = [
        q["sql"]
        for q in queries.captured_queries
        if q["sql"].startswith("SELECT") and re.search(r"FROM \"tasks_(prompt|item)\"", q["sql"])
    ]
    assert len(lookups) >= 3, queries.captured_queries  # by id, by content, the items
    for statement in lookups:
        plan = explain(statement)
        assert not PROJECT_ONLY.search(plan), f"{statement}\n{plan}"


def test_the_feedback_importers_probes_are_led_by_their_keys(acme, older_project):
    new = ProjectFactory(organization=acme.organization)
    with scopes_disabled():
        prompt = Prompt.objects.filter(project=older_project).first()
    keys = [prompt.content_hash, "0" * 64]
    for statement, params in (
        (feedback._PROMPTS, [keys, new.pk]),
        (feedback._REFERENCES, [["p-1", "p-2"], new.pk]),
        (feedback._SIGNALS, [["feedback"], [prompt.pk], ["0" * 64]]),
    ):
        plan = explain(statement, params)
        assert not PROJECT_ONLY.search(plan), f"{statement}\n{plan}"


def test_led_by_the_project_the_same_probe_reads_the_project(acme, older_project):
    """The trap itself (and the proof the tests above can fail): the probe as it was."""
    new = ProjectFactory(organization=acme.organization)
    before = feedback._PROMPTS.replace(
        "content_hash = k.key AND project_id + 0 = %s", "project_id = %s AND content_hash = k.key"
    )
    assert before != feedback._PROMPTS
    assert PROJECT_ONLY.search(explain(before, [["0" * 64], new.pk]))
