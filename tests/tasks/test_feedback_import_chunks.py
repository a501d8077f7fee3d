"""A feedback import written a chunk at a time: what an earlier chunk wrote is found again
by a later one, whether the project had prompts before (every key probed) or not (probed
only when the import may have had it, tasks.importers.feedback._KeySet)."""

import io
import json
import secrets
from hashlib import sha256
from types import SimpleNamespace

import pytest
from django.db import IntegrityError, connection
from django_scopes import scope, scopes_disabled

from tasks.importers.feedback import _RESERVE, _KeySet, _Writer, import_feedback
from tasks.models import Candidate, FeedbackSignal, Prompt
from tasks.text import content_hash
from tests.factories import PromptFactory

pytestmark = pytest.mark.django_db


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def run(project, files: dict[str, bytes], batch_size=1, **options):
    with scope(organization=project.organization):
        return import_feedback(
            project=project,
            files=[(name, io.BytesIO(data)) for name, data in files.items()],
            batch_size=batch_size,
            **options,
        )


def stored(project):
    with scopes_disabled():
        prompts = dict(Prompt.objects.filter(project=project).values_list("text", "id"))
        candidates = sorted(
            Candidate.objects.filter(prompt__project=project).values_list("prompt_id", "text")
        )
        signals = FeedbackSignal.objects.filter(project=project).count()
    return prompts, candidates, signals


def feedback(n, prompt, reply, thumbs="up"):
    return {"id": f"ev-{n}", "prompt": prompt, "reply": reply, "thumbs": thumbs}


ROWS = [
    feedback(1, "How do I reset my password?", "Open Settings."),
    feedback(2, "What is the refund policy?", "Thirty days."),
    # a later chunk: the first conversation again (another case and spacing), its reply
    # again and a new one; the very first row again; another conversation with a reply
    # text the first one has
    feedback(3, "how do I  reset my password?", "Open Settings.", thumbs="down"),
    feedback(4, "How do I reset my password?", "Use the link in the e-mail."),
    feedback(1, "How do I reset my password?", "Open Settings."),
    feedback(5, "Can I change my plan?", "Open Settings."),
]


@pytest.mark.parametrize("had_prompts", [False, True], ids=["new project", "project had prompts"])
def test_what_an_earlier_chunk_wrote_is_found_again(acme, had_prompts):
    if had_prompts:
        PromptFactory(project=acme.project, text="Something else entirely")
    report = run(acme.project, {"log.jsonl": jsonl(*ROWS)})
    prompts, candidates, signals = stored(acme.project)
    password = prompts["How do I reset my password?"]
    assert set(prompts) - {"Something else entirely"} == {
        "How do I reset my password?",
        "What is the refund policy?",
        "Can I change my plan?",
    }
    assert candidates.count((password, "Open Settings.")) == 1
    assert (password, "Use the link in the e-mail.") in candidates
    assert (prompts["Can I change my plan?"], "Open Settings.") in candidates
    assert len(candidates) == 4
    assert signals == 5 and report.signals_created == 5
    assert report.signals_already_present == 1  # the first row, again
    assert (report.prompts_created, report.prompts_already_present) == (3, 0)
    assert (report.candidates_created, report.candidates_already_present) == (4, 2)

    again = run(acme.project, {"log.jsonl": jsonl(*ROWS)}, batch_size=4)
    assert (again.prompts_created, again.candidates_created, again.signals_created) == (0, 0, 0)
    assert again.signals_already_present == 6 and stored(acme.project)[2] == 5


def test_a_new_prompt_is_named_after_its_own_id(acme):
    run(acme.project, {"log.jsonl": jsonl(*ROWS)})
    with scopes_disabled():
        named = list(Prompt.objects.filter(project=acme.project).values_list("id", "external_id"))
    assert len(named) == 3 and all(external == f"fb-{pk}" for pk, external in named)


def test_a_project_holding_such_ids_of_its_own_keeps_content_derived_ones(acme):
    # fb-0 came from elsewhere (another deployment's export, say): a later fb-<id> could
    # be taken, so new prompts are named after their content, as before.
    PromptFactory(project=acme.project, external_id="fb-0", text="Copied")
    run(acme.project, {"log.jsonl": jsonl(*ROWS)})
    with scopes_disabled():
        names = dict(Prompt.objects.filter(project=acme.project).values_list("text", "external_id"))
    assert names.pop("Copied") == "fb-0"
    assert names == {text: "fb-" + content_hash(text)[:24] for text in names}


def test_texts_of_a_prompt_named_by_id_are_found_by_later_rows(acme):
    # An A/B row names a prompt the same import wrote (by the id the import gave it) and
    # adds its variants; a later chat row of that conversation has one of them as its
    # reply: one candidate, not a second that the database would refuse.
    PromptFactory(project=acme.project, external_id="fb-0", text="Copied")  # names by content
    question = "How do I reset my password?"
    named = "fb-" + content_hash(question)[:24]
    ab = {"prompt_id": named, "variant_a": "Open Settings.", "variant_b": "Ask IT.", "winner": "a"}
    report = run(
        acme.project,
        {
            "1.jsonl": jsonl(feedback(1, question, "Call support.")),
            "2.jsonl": jsonl(ab),
            "3.jsonl": jsonl(feedback(2, question, "Ask IT.")),
        },
    )
    prompts, candidates, signals = stored(acme.project)
    assert sorted(prompts) == ["Copied", question] and signals == 3
    assert sorted(text for _, text in candidates) == ["Ask IT.", "Call support.", "Open Settings."]
    assert (report.candidates_created, report.candidates_already_present) == (3, 1)


def test_a_failure_while_writing_ends_the_import_with_nothing_written(acme):
    # A prompt imported before holds the id the feedback import gives the conversation of
    # its third row, with other text: PostgreSQL refuses that row's prompt in the writer
    # thread, while the reading thread is still reading. The error reaches the caller
    # (nothing hangs), and the rows of the chunks written before are gone with it.
    question = "What is the refund policy?"
    PromptFactory(project=acme.project, external_id="fb-0", text="Copied")  # names by content
    PromptFactory(
        project=acme.project, external_id="fb-" + content_hash(question)[:24], text="Other"
    )
    rows = [feedback(n, f"Question {n}?", f"Answer {n}.") for n in range(1, 40)]
    rows.insert(2, feedback(99, question, "Thirty days."))
    with pytest.raises(IntegrityError):
        run(acme.project, {"log.jsonl": jsonl(*rows)})
    prompts, candidates, signals = stored(acme.project)
    assert sorted(prompts) == ["Copied", "Other"] and candidates == [] and signals == 0
    # and the connection is usable again
    report = run(acme.project, {"log.jsonl": jsonl(*rows[:2])})
    assert report.signals_created == 2


def test_the_key_set_never_forgets_a_key_and_rarely_invents_one():
    keys = _KeySet()
    digests = [sha256(secrets.token_bytes(16)).hexdigest() for _ in range(100_000)]
    assert sum(keys.add(d) for d in digests) < 10  # ~1e-6 a key at this size
    assert all(keys.add(d) for d in digests)
    pairs = _KeySet()
    assert not pairs.add((digests[0], digests[1]))
    assert pairs.add((digests[0], digests[1]))
    assert not pairs.add((digests[0], digests[2]))  # same conversation, another text
    assert not pairs.add((digests[1], digests[0]))


def test_reserved_ids_come_back_as_a_range_or_as_they_are():
    writer = SimpleNamespace()

    def ask(cursor, statement, params):
        cursor.execute(statement, params)
        return cursor.fetchall()

    writer._ask = ask
    with connection.cursor() as cursor:
        cursor.execute("CREATE TEMPORARY SEQUENCE one_by_one")
        cursor.execute("CREATE TEMPORARY SEQUENCE two_by_two INCREMENT BY 2")
        cursor.execute("SELECT nextval('one_by_one')")
        assert _Writer._reserve(writer, cursor, "one_by_one", 4) == range(2, 6)
        # values taken by others in between (here: every other one) come back as a list
        assert list(_Writer._reserve(writer, cursor, "two_by_two", 3)) == [1, 3, 5]
        assert _Writer._reserve(writer, cursor, "one_by_one", 0) == []
        cursor.execute(_RESERVE, ["one_by_one", 1])
        assert cursor.fetchall() == [(6, 6, None)]


def test_the_writer_knows_which_prompts_it_wrote():
    # A prompt another import committed meanwhile (here 25, between this import's ranges)
    # is not the import's own: its texts and signals are looked for in the database.
    writer = SimpleNamespace(own=[])
    _Writer._wrote(writer, range(10, 20))
    _Writer._wrote(writer, [])
    _Writer._wrote(writer, [33, 30])  # values taken by others in between
    _Writer._wrote(writer, range(40, 41))
    assert _Writer._own(writer, {5, 10, 19, 20, 25, 30, 31, 33, 40, 41}) == {10, 19, 30, 33, 40}
