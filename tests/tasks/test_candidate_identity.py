"""When two candidates of one prompt are the same one (issue 15): as written, only line
endings and whitespace at the very end aside. Case, Unicode form, tabs and inner line breaks
make another candidate, stored byte for byte as it came in, through every door that adds
candidates. Prompts keep their folded identity (case, Unicode form and spacing aside)."""

import csv
import importlib
import io

import pytest
from django.apps import apps
from django_scopes import scopes_disabled

from tasks.importers.rows import candidate_hash
from tasks.models import Candidate, GenerationFailure, Prompt
from tasks.text import content_hash
from tests.factories import ProjectFactory
from tests.tasks.test_generation import eager, fake, prompts, run_job  # noqa: F401 (fixtures)
from tests.tasks.test_import_api import post_import, upload
from tests.tasks.test_prompt_import import counts, jsonl, run

pytestmark = pytest.mark.django_db

# Pairs the importer once merged as "identical": NFKC, case and whitespace folding.
DISTINCT = [
    pytest.param("a\tb\r\nc", "a b c", id="tab-and-crlf"),
    pytest.param("𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "UNICODE", id="unicode-form-and-case"),
]


def prompt_row(n, *responses) -> dict:
    return {"id": f"p{n}", "text": f"Prompt number {n}?", "responses": list(responses)}


def stored_texts(project, external_id="p1") -> list[str]:
    with scopes_disabled():
        return list(
            Candidate.objects.filter(
                prompt__project=project, prompt__external_id=external_id
            ).values_list("text", flat=True)
        )


def as_bytes(texts) -> list[bytes]:
    return [text.encode("utf-8") for text in texts]


@pytest.fixture
def project(acme):
    return acme.project


@pytest.mark.parametrize(("first", "second"), DISTINCT)
def test_candidates_once_folded_together_are_both_kept_byte_for_byte(project, first, second):
    report = run(project, {"d.jsonl": jsonl(prompt_row(1, first, second))})
    assert (report.candidates_created, report.candidates_skipped_identical) == (2, 0)
    assert report.items_created == 1
    assert as_bytes(stored_texts(project)) == as_bytes([first, second])


def test_a_csv_cell_keeps_its_tab_and_crlf(project):
    data = io.StringIO(newline="")
    writer = csv.writer(data, lineterminator="\r\n")
    writer.writerow(["id", "text", "response_a", "response_b"])
    writer.writerow(["p1", "Prompt number 1?", "a\tb\r\nc", "a b c"])
    report = run(project, {"d.csv": data.getvalue().encode("utf-8")})
    assert report.candidates_created == 2
    assert as_bytes(stored_texts(project)) == [b"a\tb\r\nc", b"a b c"]


def test_an_exact_copy_is_skipped_and_counted(project):
    report = run(project, {"d.jsonl": jsonl(prompt_row(1, "Same.", "Other.", "Same."))})
    assert (report.candidates_created, report.candidates_skipped_identical) == (2, 1)
    assert stored_texts(project) == ["Same.", "Other."]


def test_a_copy_with_other_line_endings_or_a_final_newline_is_the_same_candidate(project):
    report = run(
        project,
        {"d.jsonl": jsonl(prompt_row(1, "one\r\ntwo", "one\ntwo\n", "one\rtwo \t", "one\ntwo"))},
    )
    assert (report.candidates_created, report.candidates_skipped_identical) == (1, 3)
    assert as_bytes(stored_texts(project)) == [b"one\r\ntwo"]  # the first, as written


def test_leading_whitespace_counts(project):
    report = run(project, {"d.jsonl": jsonl(prompt_row(1, "    return x", "return x"))})
    assert report.candidates_created == 2


def test_reimporting_the_same_file_adds_nothing(project):
    data = {
        "d.jsonl": jsonl(prompt_row(1, "a\tb\r\nc", "a b c"), prompt_row(2, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "UNICODE"))
    }
    run(project, data)
    again = run(project, data)
    assert (again.candidates_created, again.candidates_already_present) == (0, 4)
    assert again.items_created == 0
    assert counts(project) == (2, 4, 2)


def test_reimporting_the_file_saved_with_crlf_adds_nothing(project):
    run(project, {"d.jsonl": jsonl(prompt_row(1, "Step 1.\nStep 2.", "Step 2.\nStep 1."))})
    again = run(
        project,
        {"d.jsonl": jsonl(prompt_row(1, "Step 1.\r\nStep 2.\r\n", "Step 2.\r\nStep 1.\r\n"))},
    )
    assert (again.candidates_created, again.candidates_already_present) == (0, 2)
    assert as_bytes(stored_texts(project)) == [b"Step 1.\nStep 2.", b"Step 2.\nStep 1."]


def test_prompts_still_match_whatever_their_case_unicode_form_and_spacing(project):
    report = run(
        project,
        {
            "d.jsonl": jsonl(
                {**prompt_row(1, "x", "y"), "text": "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 please"},
                {**prompt_row(2, "x", "y"), "text": "UNICODE\t please"},
            )
        },
    )
    assert [d["duplicate_of"] for d in report.duplicates] == ["p1"]
    assert counts(project)[0] == 1


def test_the_upload_api_keeps_both_and_stores_them_as_sent(acme, as_user):
    client = as_user(acme.lead)
    data = jsonl(prompt_row(1, "a\tb\r\nc", "a b c"), prompt_row(2, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "UNICODE"))
    response = post_import(client, acme.project, upload("d.jsonl", data))
    assert response.status_code == 201, response.content
    report = response.json()["report"]
    assert (report["candidates_created"], report["candidates_skipped_identical"]) == (4, 0)
    assert as_bytes(stored_texts(acme.project, "p1")) == [b"a\tb\r\nc", b"a b c"]
    assert as_bytes(stored_texts(acme.project, "p2")) == as_bytes(["𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "UNICODE"])

    again = post_import(client, acme.project, upload("d.jsonl", data)).json()["report"]
    assert (again["candidates_created"], again["candidates_already_present"]) == (0, 4)


def test_generation_compares_as_the_importer_does(eager, acme, fake):  # noqa: F811
    """A generated answer that differs from an imported one only in case is kept; one that
    differs only in its line endings is the model repeating it, recorded and not stored."""
    project = ProjectFactory(organization=acme.organization)
    kept, repeated = prompts(project, 2)
    run_job(project, fake.url)  # learn what the (deterministic) server answers each prompt
    with scopes_disabled():
        answer = dict(
            Candidate.objects.filter(prompt__project=project).values_list("prompt", "text")
        )
        Candidate.objects.filter(prompt__project=project).delete()
    rows = [
        {"id": kept.external_id, "text": kept.text, "responses": [answer[kept.pk].upper()]},
        {
            "id": repeated.external_id,
            "text": repeated.text,
            "responses": [answer[repeated.pk] + "\r\n"],
        },
    ]
    run(project, {"d.jsonl": jsonl(*rows)})

    job = run_job(project, fake.url, name="again")
    assert (job.done, job.failed) == (2, 0)
    with scopes_disabled():
        assert sorted(stored_texts(project, kept.external_id)) == sorted(
            [answer[kept.pk].upper(), answer[kept.pk]]
        )
        assert stored_texts(project, repeated.external_id) == [answer[repeated.pk] + "\r\n"]
        assert GenerationFailure.objects.get(job=job).prompt_id == repeated.pk


def test_the_migration_rehashes_candidates_stored_with_the_folded_hash(project):
    """Rows written before the change carry the prompt-style hash; after the migration a
    re-import recognises them, and a text the old hash merged with them can be added."""
    run(project, {"d.jsonl": jsonl(prompt_row(1, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Other.\r\n"))})
    with scopes_disabled():
        for candidate in Candidate.objects.filter(prompt__project=project):
            candidate.content_hash = content_hash(candidate.text)  # as the old code stored it
            candidate.save(update_fields=["content_hash"])
        migration = importlib.import_module(
            "tasks.migrations.0008_candidate_hash_keeps_case_and_unicode"
        )
        migration.forwards(apps, None)
        assert [c.content_hash for c in Candidate.objects.filter(prompt__project=project)] == [
            candidate_hash("𝔘𝔫𝔦𝔠𝔬𝔡𝔢"),
            candidate_hash("Other."),
        ]
        assert Prompt.objects.get(project=project).content_hash == content_hash("Prompt number 1?")
    again = run(project, {"d.jsonl": jsonl(prompt_row(1, "𝔘𝔫𝔦𝔠𝔬𝔡𝔢", "Other.\r\n", "UNICODE"))})
    assert (again.candidates_already_present, again.candidates_created) == (2, 1)
