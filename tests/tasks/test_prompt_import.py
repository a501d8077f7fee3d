"""Importing prompt rows (JSON, JSONL, CSV) into a project, as a lead does."""

import io
import json

import pytest
from django_scopes import scope, scopes_disabled

from tasks.importers.prompts import ImportFailed, import_prompts
from tasks.models import Candidate, Item, Project, Prompt
from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def row(n, **extra):
    return {
        "id": f"p{n}",
        "text": f"Prompt number {n}?",
        "response_a": f"Answer one to {n}.",
        "response_b": f"Answer two to {n}.",
        **extra,
    }


def run(project, files: dict[str, bytes], **options):
    with scope(organization=project.organization):
        return import_prompts(
            project=project, files=[(n, io.BytesIO(b)) for n, b in files.items()], **options
        )


def counts(project):
    with scopes_disabled():
        return (
            Prompt.objects.filter(project=project).count(),
            Candidate.objects.filter(prompt__project=project).count(),
            Item.objects.filter(project=project).count(),
        )


def failure(project, files, **options):
    before = counts(project)
    with pytest.raises(ImportFailed) as info:
        run(project, files, **options)
    assert counts(project) == before, "a failed import must leave the database unchanged"
    return [str(p) for p in info.value.report.problems]


@pytest.fixture
def project(acme):
    return acme.project


def test_jsonl_rows_become_prompts_candidates_and_pairs(project):
    report = run(project, {"data.jsonl": jsonl(row(1), row(2))})
    assert (report.prompts_created, report.candidates_created, report.items_created) == (2, 4, 2)
    with scopes_disabled():
        prompt = Prompt.objects.get(project=project, external_id="p1")
        item = Item.objects.get(prompt=prompt)
        assert [c.source_key for c in prompt.candidates.all()] == ["response_a", "response_b"]
        assert sorted(item.candidates.values_list("id", flat=True)) == sorted(
            prompt.candidates.values_list("id", flat=True)
        )
        assert prompt.source == "data.jsonl"


def test_json_list_and_csv_import_the_same_rows(acme):
    as_json = ProjectFactory(organization=acme.organization)
    as_csv = ProjectFactory(organization=acme.organization)
    run(as_json, {"d.json": json.dumps([row(1), row(2)]).encode()})
    csv = (
        b"id,text,response_a,response_b,topic\n"
        b"p1,Prompt number 1?,Answer one to 1.,Answer two to 1.,science\n"
        b'p2,"Prompt number 2?","Answer one to 2.","Answer two to 2.",law\n'
    )
    run(as_csv, {"d.csv": csv})
    assert counts(as_json) == counts(as_csv) == (2, 4, 2)
    with scopes_disabled():
        assert Prompt.objects.get(project=as_csv, external_id="p1").metadata == {"topic": "science"}


def test_multi_turn_conversation_and_candidate_provenance(project):
    conversation = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "2+2?"},
    ]
    run(
        project,
        {
            "chat.jsonl": jsonl(
                {
                    "id": "c1",
                    "messages": conversation,
                    "metadata": {"dimension": "honest"},
                    "responses": [
                        {
                            "text": "4",
                            "model": "smol",
                            "parameters": {"temperature": 0.3},
                            "finish_reason": "stop",
                        },
                        {"text": "Five.", "finish_reason": "length"},
                    ],
                }
            )
        },
    )
    with scopes_disabled():
        prompt = Prompt.objects.get(external_id="c1")
        assert prompt.text == "2+2?" and prompt.messages == conversation
        assert prompt.metadata == {"dimension": "honest"}
        first, second = prompt.candidates.all()
        assert (first.model, first.parameters, second.truncated) == (
            "smol",
            {"temperature": 0.3},
            True,
        )


def test_reimporting_the_same_file_adds_nothing(project):
    data = {"data.jsonl": jsonl(row(1), row(2), row(3))}
    run(project, data)
    again = run(project, data)
    assert counts(project) == (3, 6, 3)
    assert (again.prompts_created, again.prompts_already_present) == (0, 3)
    assert again.candidates_already_present == 6 and again.items_created == 0


def test_new_candidates_for_a_known_prompt_extend_its_items(project):
    run(project, {"a.jsonl": jsonl(row(1))})
    report = run(project, {"b.jsonl": jsonl(row(1, response_c="A third answer."))})
    assert report.candidates_created == 1 and report.items_created == 2  # (a,c) and (b,c)
    assert counts(project) == (1, 3, 3)


def test_exact_duplicate_prompts_are_reported_and_skipped(project):
    twin = row(2, text="  PROMPT number 1? ")
    report = run(project, {"data.jsonl": jsonl(row(1), twin)})
    assert counts(project)[0] == 1
    assert report.duplicates == [
        {"file": "data.jsonl", "where": "line 2", "id": "p2", "duplicate_of": "p1"}
    ]
    assert (
        run(project, {"x.jsonl": jsonl(row(3, text="prompt NUMBER 1?"))}).duplicates[0][
            "duplicate_of"
        ]
        == "p1"
    )


def test_duplicates_can_be_kept_on_request(project):
    run(
        project,
        {"data.jsonl": jsonl(row(1), row(2, text="Prompt number 1?"))},
        allow_duplicates=True,
    )
    assert counts(project)[0] == 2


def test_identical_candidate_of_one_prompt_is_skipped(project):
    report = run(project, {"d.jsonl": jsonl(row(1, response_b="Answer one to 1."))})
    assert report.candidates_skipped_identical == 1
    assert counts(project) == (1, 1, 0)  # one candidate: nothing to compare yet


# --- bad input: a clear error naming file, line and key; nothing written -------------------


def test_row_without_id(project):
    bad = row(2)
    del bad["id"]
    assert failure(project, {"d.jsonl": jsonl(row(1), bad)}) == [
        "d.jsonl, line 2, key 'id': missing"
    ]


def test_row_without_text(project):
    bad = row(1)
    del bad["text"]
    assert failure(project, {"d.jsonl": jsonl(bad)}) == [
        "d.jsonl, line 1 (id 'p1'), key 'text': missing"
    ]


def test_duplicate_ids(project):
    problems = failure(project, {"d.jsonl": jsonl(row(1), row(2), row(1, text="Other"))})
    assert problems == [
        "d.jsonl, line 3 (id 'p1'), key 'id': duplicate id, first used at d.jsonl, line 1"
    ]


def test_non_utf8_bytes(project):
    data = (
        jsonl(row(1)) + b'{"id": "p2", "text": "caf\xe9", "response_a": "x", "response_b": "y"}\n'
    )
    assert failure(project, {"d.jsonl": data}) == [
        "d.jsonl, line 2 (id 'p2'), key 'text': not valid UTF-8 (byte 0xe9); save the file as UTF-8"
    ]


def test_empty_response(project):
    assert failure(project, {"d.jsonl": jsonl(row(1, response_b="   "))}) == [
        "d.jsonl, line 1 (id 'p1'), key 'response_b': is empty"
    ]


def test_field_over_the_size_limit(project, settings):
    settings.CHOSEN_IMPORT_MAX_FIELD_CHARS = 50
    assert failure(project, {"d.jsonl": jsonl(row(1, response_a="x" * 51))}) == [
        "d.jsonl, line 1 (id 'p1'), key 'response_a': is 51 characters; the limit is 50"
    ]


def test_csv_with_the_wrong_header(project):
    assert failure(project, {"d.csv": b"prompt,answer\nHello,Hi\n"}) == [
        "d.csv, line 1: the header lacks 'id', 'text' (found: prompt, answer)"
    ]


def test_malformed_json_line(project):
    assert failure(project, {"d.jsonl": jsonl(row(1)) + b'{"id": "p2", "text": }\n'}) == [
        "d.jsonl, line 2: not valid JSON (Expecting value at column 22)"
    ]


def test_broken_json_list_names_the_line(project):
    data = (
        b'[\n {"id": "p1", "text": "a", "response_a": "x", "response_b": "y"},\n {"id": "p2", \n]'
    )
    problems = failure(project, {"d.json": data})
    assert problems[0].startswith("d.json, line 4: not valid JSON")


def test_json_file_that_is_not_a_list(project):
    assert failure(project, {"d.json": b'{"id": "p1"}'}) == [
        "d.json, line 1: a .json file must hold a list of objects ([{…}, {…}]); use .jsonl "
        "for one per line"
    ]


def test_every_problem_is_listed_not_only_the_first(project):
    bad_id, bad_text = row(2), row(3, text="")
    del bad_id["id"]
    problems = failure(project, {"d.jsonl": jsonl(row(1), bad_id, bad_text)})
    assert problems == [
        "d.jsonl, line 2, key 'id': missing",
        "d.jsonl, line 3 (id 'p3'), key 'text': is empty",
    ]


def test_skip_invalid_imports_the_valid_rows_and_reports_the_rest(project):
    bad = row(2, response_a="")
    report = run(project, {"d.jsonl": jsonl(row(1), bad, row(3))}, skip_invalid=True)
    assert counts(project) == (2, 4, 2)
    assert [str(p) for p in report.problems] == [
        "d.jsonl, line 2 (id 'p2'), key 'response_a': is empty"
    ]


# --- items per comparison mode ---------------------------------------------------------------


def three(n=1):
    return row(n, response_c=f"Answer three to {n}.")


def test_pairwise_with_three_candidates_makes_every_pair(project):
    run(project, {"d.jsonl": jsonl(three())})
    assert counts(project) == (1, 3, 3)


def test_pairwise_can_sample_pairs(acme):
    project = ProjectFactory(organization=acme.organization, pairs_per_prompt=2)
    run(project, {"d.jsonl": jsonl(row(1, response_c="c", response_d="d"))})
    assert counts(project) == (1, 4, 2)


@pytest.mark.parametrize("mode", ["best_worst", "ranking"])
def test_n_way_modes_make_one_item_of_all_candidates(acme, mode):
    project = ProjectFactory(organization=acme.organization, mode=mode)
    run(project, {"d.jsonl": jsonl(three())})
    assert counts(project) == (1, 3, 1)
    run(project, {"d.jsonl": jsonl(three() | {"response_d": "A fourth."})})
    with scopes_disabled():
        item = Item.objects.get(project=project)
        assert item.candidates.count() == 4  # the unstarted item was rebuilt with all four


def test_agreement_sample_gets_more_annotations(acme):
    project = ProjectFactory(
        organization=acme.organization,
        annotations_per_item=1,
        agreement_sample_percent=20,
        agreement_sample_annotations=2,
    )
    run(project, {"d.jsonl": jsonl(*(row(n) for n in range(500)))})
    with scopes_disabled():
        doubled = Item.objects.filter(project=project, target_annotations=2).count()
        assert Item.objects.filter(project=project, target_annotations=1).count() == 500 - doubled
    assert 60 <= doubled <= 140  # 20% of 500 = 100, drawn at random


def test_mode_is_kept_on_the_item(acme):
    project = ProjectFactory(organization=acme.organization, mode=Project.Mode.RANKING)
    run(project, {"d.jsonl": jsonl(three())})
    with scopes_disabled():
        assert Item.objects.get(project=project).mode == "ranking"
