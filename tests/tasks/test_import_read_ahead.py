"""Rows are read and checked a few chunks ahead, in a thread of their own, while the import
writes the batch before: the same rows in the same order, its problems where they were, and
nothing left running when an import stops."""

import io
import json
import threading

import pytest
from django_scopes import scope, scopes_disabled

from tasks.importers import prompts as prompt_importer
from tasks.importers.ahead import read_ahead
from tasks.importers.prompts import ImportFailed, import_prompts
from tasks.models import Candidate, Item, Prompt


def test_items_come_in_order_with_what_the_source_raised_after_them():
    def source():
        yield from range(1234)
        raise ValueError("line 1235 is broken")

    got = []
    with pytest.raises(ValueError, match="1235"):
        for item in read_ahead(source(), chunk=100, depth=2):
            got.append(item)
    assert got == list(range(1234))
    assert list(read_ahead(iter(range(10_001)), chunk=7)) == list(range(10_001))
    assert list(read_ahead(iter([]))) == []


def test_a_caller_that_stops_early_stops_the_reading_thread():
    produced = []
    closed = threading.Event()

    def source():
        try:
            for n in range(1_000_000):
                produced.append(n)
                yield n
        finally:
            closed.set()

    before = threading.active_count()
    reader = read_ahead(source(), chunk=10, depth=2)
    assert [next(reader) for _ in range(5)] == [0, 1, 2, 3, 4]
    reader.close()
    assert threading.active_count() == before
    assert len(produced) < 100  # it stopped a few chunks ahead, not at the end
    assert not any(t.name == "import-reader" for t in threading.enumerate())


def test_the_reading_thread_checks_while_this_one_writes(acme, monkeypatch):
    """A real import of 5,000 rows in batches of 400: every row is checked in the reading
    thread, every batch written by the caller's, and the result is the whole file."""
    checked_in, written_in = set(), set()
    normalize = prompt_importer.normalize_row
    flush = prompt_importer._Import.flush

    def normalize_row(*args, **kwargs):
        checked_in.add(threading.current_thread().name)
        return normalize(*args, **kwargs)

    def counted_flush(self):
        written_in.add(threading.current_thread().name)
        return flush(self)

    monkeypatch.setattr(prompt_importer, "normalize_row", normalize_row)
    monkeypatch.setattr(prompt_importer._Import, "flush", counted_flush)
    rows = [
        {"id": f"p{n}", "text": f"Question {n}?", "response_a": f"A{n}", "response_b": f"B{n}"}
        for n in range(5000)
    ]
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    project = acme.project
    with scope(organization=project.organization):
        report = import_prompts(
            project=project, files=[("big.jsonl", io.BytesIO(data))], batch_size=400
        )
    assert checked_in == {"import-reader"}
    assert written_in == {threading.current_thread().name}
    assert (report.rows_read, report.prompts_created, report.items_created) == (5000, 5000, 5000)
    with scopes_disabled():
        assert Prompt.objects.filter(project=project).count() == 5000
        assert Candidate.objects.filter(prompt__project=project).count() == 10_000
        assert Item.objects.filter(project=project).count() == 5000
        last = Prompt.objects.get(project=project, external_id="p4999")
        assert sorted(last.candidates.values_list("text", flat=True)) == ["A4999", "B4999"]


def test_a_bad_row_late_in_a_large_file_writes_nothing_and_is_listed(acme):
    rows = [
        {"id": f"p{n}", "text": f"Question {n}?", "response_a": f"A{n}", "response_b": f"B{n}"}
        for n in range(3000)
    ]
    rows[2718]["text"] = ""
    data = "".join(json.dumps(r) + "\n" for r in rows).encode()
    project = acme.project
    before = threading.active_count()
    with scope(organization=project.organization), pytest.raises(ImportFailed) as failed:
        import_prompts(project=project, files=[("big.jsonl", io.BytesIO(data))], batch_size=400)
    [problem] = failed.value.report.problems
    assert problem.where == "line 2719" and problem.key == "text"
    assert failed.value.report.rows_read == 3000  # every row was still checked
    assert threading.active_count() == before
    with scopes_disabled():
        assert not Prompt.objects.filter(project=project).exists()
