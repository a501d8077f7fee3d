"""Importing preference signal (feedback logs, Open WebUI's export, A/B tests, grades,
corrections) into a project, as a lead does, with pseudonyms and redaction."""

import io
import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from tasks.feedback.privacy import Redactor, UnsafePattern, pseudonym
from tasks.importers.feedback import FeedbackOptionsInvalid, import_feedback
from tasks.importers.prompts import ImportFailed
from tasks.models import Candidate, FeedbackSignal, ImportJob, Item, Prompt
from tests.factories import OrganizationFactory, PromptFactory

pytestmark = pytest.mark.django_db

DATA = Path(__file__).parent / "data"


def jsonl(*rows) -> bytes:
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def run(project, files: dict[str, bytes], **options):
    with scope(organization=project.organization):
        return import_feedback(
            project=project, files=[(n, io.BytesIO(b)) for n, b in files.items()], **options
        )


def run_file(project, name: str, **options):
    return run(project, {name: (DATA / name).read_bytes()}, **options)


def signals(project):
    with scopes_disabled():
        return list(
            FeedbackSignal.objects.filter(project=project)
            .select_related("prompt", "reply", "other")
            .order_by("source", "line", "id")
        )


def counts(project):
    with scopes_disabled():
        return (
            Prompt.objects.filter(project=project).count(),
            Candidate.objects.filter(prompt__project=project).count(),
            FeedbackSignal.objects.filter(project=project).count(),
        )


def row(n, **extra):
    return {
        "id": f"ev-{n}",
        "prompt": f"Question {n}?",
        "reply": f"Answer {n}.",
        "thumbs": "up",
        **extra,
    }


# --- one file of each kind ------------------------------------------------------------------


def test_feedback_log_rows_become_signals_on_shared_prompts(acme):
    report = run_file(acme.project, "feedback-log.jsonl", kind="feedback")
    assert report.rows_read == 4 and report.problems == []
    found = signals(acme.project)
    # ev-4 has an edit and a rating; ev-3 a regeneration: four rows, four signals
    assert [s.data["id"] for s in found] == ["ev-1", "ev-2", "ev-3", "ev-4"]
    up, down, regenerated, edited = found
    # the same question in another case and spacing is the same prompt
    assert up.prompt_id == down.prompt_id and up.conversation_key == down.conversation_key
    assert up.conversation_key == up.prompt.content_hash
    assert (up.thumbs, down.thumbs, down.complaint) == (1, -1, True)
    assert up.reply.source == Candidate.Source.FEEDBACK_LOG and up.reply.model == "support-7b"
    assert down.occurred_at.isoformat() == "2025-03-01T10:15:00+00:00"
    assert (up.source, up.line, down.line) == ("feedback-log.jsonl", 1, 2)
    # the multi-turn conversation is the prompt's messages; its text the last user turn
    assert regenerated.prompt.text == "And downgrade mid-month?"
    assert [m["role"] for m in regenerated.prompt.messages] == [
        "system",
        "user",
        "assistant",
        "user",
    ]
    assert regenerated.other.text == "No, downgrades start next month."
    assert regenerated.data["relation"] == "regeneration" and regenerated.data["kept"] == "reply"
    assert regenerated.score == 1.0
    assert edited.data["relation"] == "edit" and edited.score == 0.25
    assert edited.other.text == "Welcome aboard! We are glad you are here."
    # a user is the same pseudonym in every row, and never stored as given
    assert up.user_hash == regenerated.user_hash == pseudonym(acme.organization, "employee-4711")
    assert up.user_hash != down.user_hash
    with scopes_disabled():
        assert Item.objects.filter(project=acme.project).count() == 0  # pairs make items


def test_a_row_with_a_regeneration_and_an_edit_gives_two_signals(acme):
    report = run(
        acme.project,
        {"d.jsonl": jsonl(row(1, regenerated_from="Old answer.", edited="Edited answer."))},
    )
    regeneration, edit = signals(acme.project)
    assert report.signals_created == 2
    assert (regeneration.data["relation"], regeneration.thumbs) == ("regeneration", 1)
    assert (edit.data["relation"], edit.thumbs, edit.reply_id) == (
        "edit",
        None,
        regeneration.reply_id,
    )


def test_open_webui_export_is_read_unchanged(acme):
    """The fixture follows Open WebUI's own code: the feedback row of
    backend/open_webui/models/feedbacks.py (id, user_id, version, type, data, meta, snapshot,
    created_at, updated_at), what the chat's rating handler sends (feedbackHandler in
    src/lib/components/chat/Chat.svelte: data = the message's annotation + model_id +
    sibling_model_ids, meta = arena, model_id, message_id, message_index, chat_id,
    base_models, snapshot = {chat: getChatById(…)}), the chat of
    backend/open_webui/models/chats.py (ChatResponse: chat.history.messages with parentId /
    childrenIds) and the export of src/lib/components/admin/Evaluations/Feedbacks.svelte
    (JSON.stringify of the list, newest first)."""
    report = run_file(acme.project, "open-webui-feedback-export.json", kind="auto")
    assert report.problems == [] and report.signals_by_kind == {"feedback": 3}
    by_id = {s.data["feedback_id"][-4:]: s for s in signals(acme.project)}
    arena, regenerated, single = by_id["0003"], by_id["0002"], by_id["0001"]
    assert single.thumbs == -1 and single.other is None
    assert single.data["reason"] == "Not Accurate" and single.score == pytest.approx(2 / 9)
    assert single.reply.text.startswith("Go to Settings")
    assert single.prompt.text.startswith("How do I reset my password?")
    assert regenerated.thumbs == 1 and regenerated.data["relation"] == "sibling"
    assert regenerated.other.text == "Team costs 12 euros per seat per month."
    assert regenerated.prompt.messages[-1]["content"] == "What does Team cost per seat?"
    assert len(regenerated.prompt.messages) == 3
    assert arena.data["arena"] is True and arena.model == "support-7b"
    assert arena.other.text.startswith("Our refund policy")
    assert arena.data["sibling_models"] == ["support-13b"]
    assert arena.occurred_at.timestamp() == 1740825000
    assert arena.user_hash == single.user_hash != regenerated.user_hash


def test_text_postgresql_cannot_store_in_a_signals_data_is_a_row_problem(acme):
    """Open WebUI's feedback and chat ids go into the signal's ``data`` as given: one with a
    NUL or a lone surrogate is that row's problem, not a database error; a comment that only
    reads like one (NaN, Infinity, a backslash-u0000 typed as text) imports."""
    export = json.loads((DATA / "open-webui-feedback-export.json").read_text())
    export[0]["id"] = "fb\x00-1"
    export[1]["meta"]["chat_id"] = "chat-\ud800"
    export[2]["data"]["comment"] = "NaN and Infinity, typed as \\u0000"
    body = json.dumps(export).encode()
    with pytest.raises(ImportFailed) as failed:
        run(acme.project, {"export.json": body}, kind="open_webui")
    assert [(p.where, p.message) for p in failed.value.report.problems] == [
        ("item 1 (line 1)", "contains a NUL character"),
        ("item 2 (line 1)", "holds a lone surrogate (\\ud800), which is not valid Unicode"),
    ]
    assert counts(acme.project) == (0, 0, 0)
    export[0]["id"], export[1]["meta"]["chat_id"] = "fb-1", "chat-2"
    report = run(acme.project, {"export.json": json.dumps(export).encode()}, kind="open_webui")
    assert report.problems == [] and report.signals_created == 3
    comments = [s.data.get("comment") for s in signals(acme.project)]
    assert "NaN and Infinity, typed as \\u0000" in comments


def test_ab_test_results_keep_their_counts_or_winner(acme):
    report = run_file(acme.project, "ab-tests.csv", kind="ab_test")
    assert report.problems == []
    counted, declared = signals(acme.project)
    assert counted.kind == "ab_test"
    assert (counted.reply.text, counted.other.text) == (
        "Refunds within 30 days, receipt required.",
        "You may return items; see the policy page.",
    )
    assert {k: counted.data[k] for k in ("wins_a", "wins_b", "impressions_a")} == {
        "wins_a": 412,
        "wins_b": 388,
        "impressions_a": 1000,
    }
    assert declared.data["winner"] == "b" and "wins_a" not in declared.data


def test_ab_test_may_name_a_prompt_already_in_the_project(acme):
    prompt = PromptFactory(project=acme.project, external_id="p-7", text="Say hi")
    run(
        acme.project,
        {
            "ab.jsonl": jsonl(
                {"prompt_id": "p-7", "variant_a": "Hi", "variant_b": "Hey", "winner": "a"}
            )
        },
        kind="ab_test",
    )
    (signal,) = signals(acme.project)
    assert signal.prompt_id == prompt.pk and signal.conversation_key == prompt.content_hash


def test_ab_test_naming_an_unknown_prompt_is_a_row_problem(acme):
    with pytest.raises(ImportFailed) as failed:
        run(
            acme.project,
            {
                "ab.jsonl": jsonl(
                    {"prompt_id": "nope", "variant_a": "Hi", "variant_b": "Hey", "winner": "a"}
                )
            },
            kind="ab_test",
        )
    assert str(failed.value.report.problems[0]) == (
        "ab.jsonl, line 1, key 'prompt_id': no prompt of this project has this id"
    )
    assert counts(acme.project) == (0, 0, 0)


def test_grades_on_an_ordinal_scale_map_onto_0_to_1(acme):
    report = run_file(
        acme.project, "grades.jsonl", kind="grade", scale=["poor", "fair", "good", "excellent"]
    )
    assert report.problems == []
    excellent, poor, good = signals(acme.project)
    assert (excellent.score, poor.score, good.score) == (1.0, 0.0, pytest.approx(2 / 3))
    assert excellent.data["grade"] == "excellent" and excellent.data["scale"][0] == "poor"
    assert excellent.prompt_id == poor.prompt_id == good.prompt_id
    assert excellent.user_hash == pseudonym(acme.organization, "reviewer-17")


def test_numeric_grade_outside_the_scale_is_refused(acme):
    rows = jsonl({"prompt": "P", "output": "O", "grade": 7})
    with pytest.raises(ImportFailed) as failed:
        run(acme.project, {"g.jsonl": rows}, kind="grade", scale=["1", "5"])
    assert str(failed.value.report.problems[0]) == (
        "g.jsonl, line 1, key 'grade': 7 is outside the scale 1..5"
    )


def test_expert_corrections(acme):
    report = run_file(acme.project, "corrections.csv", kind="auto")
    (signal,) = signals(acme.project)
    assert report.signals_by_kind == {"correction": 1}
    assert (signal.reply.text, signal.other.text) == ("Cancellation", "Notice of termination")
    assert signal.user_hash == pseudonym(acme.organization, "legal-3")


# --- errors, all or nothing, idempotency ----------------------------------------------------


def test_bad_rows_are_each_listed_and_nothing_is_written(acme):
    rows = jsonl(
        row(1),
        row(2, thumbs="sideways"),
        {"id": "ev-3", "prompt": "Q", "reply": "A"},
        row(4, rating=9),
        {
            "id": "ev-5",
            "messages": [{"role": "assistant", "content": "Hi"}],
            "reply": "A",
            "thumbs": 1,
        },
        row(6, timestamp="yesterday"),
    )
    with pytest.raises(ImportFailed) as failed:
        run(acme.project, {"d.jsonl": rows + b"{not json\n"})
    assert [str(p) for p in failed.value.report.problems] == [
        "d.jsonl, line 2 (id 'ev-2'), key 'thumbs': must be 'up', 'down', 1 or -1",
        "d.jsonl, line 3 (id 'ev-3'), key 'reply': holds no signal: give thumbs, rating, "
        "regenerated_from, edited or complaint",
        "d.jsonl, line 4 (id 'ev-4'), key 'rating': must be from 1 to 5",
        "d.jsonl, line 5 (id 'ev-5'), key 'messages': the conversation must end with a user turn",
        "d.jsonl, line 6 (id 'ev-6'), key 'timestamp': must be an ISO 8601 time "
        "(2025-03-01T10:15:00Z) or epoch seconds",
        "d.jsonl, line 7: not valid JSON (Expecting property name enclosed in double quotes "
        "at column 2)",
    ]
    assert counts(acme.project) == (0, 0, 0)


def test_wrong_types_and_huge_fields_are_clear_errors(acme, settings):
    settings.CHOSEN_IMPORT_MAX_FIELD_CHARS = 100
    rows = jsonl(
        row(1, reply=["a list"]),
        row(2, reply="x" * 101),
        row(3, user={"id": 1}),
        row(4, complaint="maybe"),
    )
    with pytest.raises(ImportFailed) as failed:
        run(acme.project, {"d.jsonl": rows})
    assert [(p.key, p.message) for p in failed.value.report.problems] == [
        ("reply", "must be text, not list"),
        ("reply", "is 101 characters; the limit is 100"),
        ("user", "must be text or a number"),
        ("complaint", "must be true or false"),
    ]


def test_skip_invalid_imports_the_valid_rows(acme):
    report = run(
        acme.project, {"d.jsonl": jsonl(row(1), row(2, thumbs="x"), row(3))}, skip_invalid=True
    )
    assert report.signals_created == 2 and report.problem_count == 1
    assert counts(acme.project) == (2, 2, 2)


def test_importing_the_same_file_twice_adds_no_signal_twice(acme):
    first = run_file(acme.project, "feedback-log.jsonl")
    again = run_file(acme.project, "feedback-log.jsonl")
    assert first.signals_created == 4
    assert (again.signals_created, again.signals_already_present) == (0, 4)
    assert (again.prompts_created, again.candidates_created) == (0, 0)
    assert counts(acme.project) == (3, 6, 4)


def test_a_repeated_row_in_one_file_is_one_signal(acme):
    report = run(acme.project, {"d.jsonl": jsonl(row(1), row(1))})
    assert (report.signals_created, report.signals_already_present) == (1, 1)


def test_feedback_reuses_a_prompt_imported_before(acme):
    prompt = PromptFactory(project=acme.project, text="Question 1?")
    with scopes_disabled():
        Prompt.objects.filter(pk=prompt.pk).update(
            content_hash=__import__("tasks.text").text.content_hash("Question 1?")
        )
    report = run(acme.project, {"d.jsonl": jsonl(row(1))})
    (signal,) = signals(acme.project)
    assert signal.prompt_id == prompt.pk and report.prompts_already_present == 1


def test_bad_options_are_refused_before_reading(acme):
    with pytest.raises(FeedbackOptionsInvalid, match="unknown kind"):
        run(acme.project, {"d.jsonl": jsonl(row(1))}, kind="tweets")
    with pytest.raises(FeedbackOptionsInvalid, match="first number must be below"):
        run(acme.project, {"d.jsonl": jsonl(row(1))}, scale=["5", "1"])
    with pytest.raises(FeedbackOptionsInvalid, match="running time can explode"):
        run(acme.project, {"d.jsonl": jsonl(row(1))}, redact_patterns=[r"(\w+\s?)+$"])
    with pytest.raises(FeedbackOptionsInvalid, match="not a valid regular expression"):
        run(acme.project, {"d.jsonl": jsonl(row(1))}, redact_patterns=["[a-"])


# --- privacy --------------------------------------------------------------------------------


def test_pseudonyms_are_equal_within_an_organization_and_differ_across(acme, globex):
    same = pseudonym(acme.organization, "u-1")
    assert same == pseudonym(acme.organization, "u-1") != pseudonym(acme.organization, "u-2")
    assert same != pseudonym(globex.organization, "u-1")
    assert len(same) == 64 and "u-1" not in same


@pytest.mark.parametrize(
    "text",
    [
        "version 1.2.3 and v10.4.1234",
        "on 2024-01-15, 15.01.2024 or 01/15/2024 at 12:30",
        "price $1,234.56 or 1 234,56 € or 10 000 000 users",
        "server 192.168.1.1, order 123456789, ISBN 978-3-16-148410-0",
        "pi is 3.14159265; year 2023",
    ],
)
def test_numbers_that_are_not_phone_numbers_are_kept(text):
    redact = Redactor()
    assert redact(text) == text and redact.as_dict() == {"email": 0, "phone": 0, "pattern": 0}


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 (555) 123-4567",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
        "01 23 45 67 89",
        "020 7946 0958",
        "030 12345678",
        "+49 30 12345678",
    ],
)
def test_phone_numbers_are_replaced(phone):
    redact = Redactor()
    assert redact(f"call {phone} today") == "call [phone] today"
    assert redact.counts["phone"] == 1


def test_redaction_replaces_emails_phones_and_patterns_and_counts_them(acme):
    rows = jsonl(
        row(
            1,
            prompt="I am jane.doe@example.com, ticket ACME-123456",
            reply="Call +1 (555) 123-4567 or mail help@acme.example",
            comment="my number is 020 7946 0958",
        )
    )
    report = run(acme.project, {"d.jsonl": rows}, redact_patterns=[r"ACME-\d{6}"])
    assert report.redactions == {"email": 2, "phone": 2, "pattern": 1}
    (signal,) = signals(acme.project)
    assert signal.prompt.text == "I am [email], ticket [redacted]"
    assert signal.reply.text == "Call [phone] or mail [email]"
    assert signal.data["comment"] == "my number is [phone]"


def test_nothing_personal_is_stored_anywhere_after_a_redacted_import(acme):
    """Every text and JSON column of every row the import wrote (and the job's report) is
    searched for the raw e-mail addresses, phone numbers and user ids of the files."""
    from django.apps import apps

    run_file(acme.project, "open-webui-feedback-export.json", redact=True)
    run_file(acme.project, "feedback-log.jsonl", redact=True)
    secrets = [
        "jane.doe@example.com",
        "help@acme.example",
        "7946 0958",
        "555-123-4567",
        "5b7c2d7e-8a51-4f3e-9d61-7a0c9e2f1a11",
        "9d0e4f3a-2b6c-4d8e-8f1a-3c5e7a9b0c22",
        "employee-4711",
        "employee-0815",
    ]
    dump = []
    with scopes_disabled():
        for model in apps.get_models():
            if model._meta.app_label in ("tasks", "annotation", "qc", "exports"):
                dump.extend(json.dumps(list(model._default_manager.values()), default=str))
    text = "".join(dump)
    assert "support-7b" in text  # the dump does hold what was imported
    assert [s for s in secrets if s in text] == []


def test_a_pattern_is_checked_for_catastrophic_backtracking():
    for pattern in [r"(a+)+$", r"(a|ab)*c", r"(x)\1"]:
        with pytest.raises(UnsafePattern):
            Redactor([pattern])
    assert Redactor([r"[A-Z]{2}\d{6,}"])("id AB1234567") == "id [redacted]"


# --- the doors: command, API, admin ---------------------------------------------------------


def test_command_imports_and_reports(acme, capsys):
    call_command(
        "import_feedback",
        f"{acme.organization.slug}/{acme.project.name}",
        str(DATA / "grades.jsonl"),
        "--kind",
        "grade",
        "--scale",
        "poor",
        "fair",
        "good",
        "excellent",
        "--redact",
    )
    out = capsys.readouterr().out
    assert "3 rows: 3 signals, 1 prompts and 3 candidates created" in out
    assert "redacted: 0 email, 0 phone, 0 pattern" in out


def test_command_lists_problems_and_writes_nothing(acme, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(jsonl(row(1), row(2, thumbs="x")))
    with pytest.raises(CommandError, match="Nothing was imported"):
        call_command("import_feedback", f"{acme.organization.slug}/{acme.project.pk}", str(bad))
    assert "line 2 (id 'ev-2'), key 'thumbs'" in capsys.readouterr().err
    assert counts(acme.project) == (0, 0, 0)


def test_command_refuses_an_unsafe_pattern(acme):
    with pytest.raises(CommandError, match="running time can explode"):
        call_command(
            "import_feedback",
            f"{acme.organization.slug}/{acme.project.pk}",
            str(DATA / "feedback-log.jsonl"),
            "--redact-pattern",
            r"(\d+)+x",
        )


def upload(name: str, content: bytes) -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="application/octet-stream")


def post_feedback(client, project, *files, **fields):
    return client.post(
        f"/api/v1/projects/{project.pk}/feedback-imports", {"file": list(files), **fields}
    )


def test_api_imports_with_options(acme, as_user):
    response = post_feedback(
        as_user(acme.lead),
        acme.project,
        upload("grades.jsonl", (DATA / "grades.jsonl").read_bytes()),
        kind="grade",
        scale=["poor", "fair", "good", "excellent"],
        redact="true",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "feedback" and body["report"]["signals_created"] == 3
    assert body["report"]["options"]["scale"] == ["poor", "fair", "good", "excellent"]
    assert body["report"]["redactions"] == {"email": 0, "phone": 0, "pattern": 0}


def test_api_lists_row_problems_as_a_400(acme, as_user):
    response = post_feedback(
        as_user(acme.lead), acme.project, upload("d.jsonl", jsonl(row(1), row(2, rating="ten")))
    )
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["message"] == "d.jsonl, line 2, id 'ev-2', key 'rating': must be a number"
    assert counts(acme.project) == (0, 0, 0)


def test_api_refuses_a_bad_pattern(acme, as_user):
    response = post_feedback(
        as_user(acme.lead),
        acme.project,
        upload("d.jsonl", jsonl(row(1))),
        redact_pattern=r"(a+)+",
    )
    assert response.status_code == 400
    assert "running time can explode" in json.dumps(response.json())


def test_api_is_for_leads_and_another_organizations_project_is_a_404(acme, globex, as_user):
    file = jsonl(row(1))
    assert (
        post_feedback(as_user(acme.annotator), acme.project, upload("d.jsonl", file)).status_code
        == 403
    )
    other = post_feedback(as_user(acme.lead), globex.project, upload("d.jsonl", file))
    assert other.status_code == 404
    assert counts(globex.project) == (0, 0, 0)
    with scopes_disabled():
        assert ImportJob.objects.count() == 0


def test_admin_upload_starts_a_feedback_job_the_worker_runs(acme, as_user):
    from tasks.imports import run_import_job

    client = as_user(acme.lead)
    page = client.get(reverse("admin:tasks_project_change", args=[acme.project.pk]))
    assert "Import feedback" in page.content.decode()
    url = reverse("admin:tasks_project_import_feedback", args=[acme.project.pk])
    sent = client.post(
        url,
        {
            "files": [upload("ab.csv", (DATA / "ab-tests.csv").read_bytes())],
            "kind": "ab_test",
            "redact_patterns": "ACME-\\d{6}",
        },
    )
    assert sent.status_code == 302
    with scopes_disabled():
        job = ImportJob.objects.get()
    assert (job.kind, job.status, job.report["options"]["redact"]) == ("feedback", "queued", True)
    with scope(organization=acme.organization):  # as the worker's OrganizationTask runs it
        job = run_import_job(job.pk)
    assert job.status == "succeeded", job.error
    assert job.report["signals_created"] == 2 and job.report["signals_by_kind"] == {"ab_test": 2}
    assert len(signals(acme.project)) == 2


def test_admin_form_shows_a_bad_pattern(acme, as_user):
    url = reverse("admin:tasks_project_import_feedback", args=[acme.project.pk])
    page = as_user(acme.lead).post(
        url,
        {"files": [upload("d.jsonl", jsonl(row(1)))], "kind": "auto", "redact_patterns": "(a+)+"},
    )
    assert page.status_code == 200 and "running time can explode" in page.content.decode()


def test_admin_page_of_another_organizations_project_is_a_404(acme, globex, as_user):
    url = reverse("admin:tasks_project_import_feedback", args=[globex.project.pk])
    assert as_user(acme.lead).get(url).status_code in (302, 404)


def test_pseudonym_salt_differs_per_organization():
    assert OrganizationFactory().pseudonym_salt != OrganizationFactory().pseudonym_salt
