"""A pair build as a job (tasks.imports.start_pair_build): the API answers 202 for a large
project and the job finishes with the counts, a failing build is a failed job saying why,
a style-rules recipe's generation job builds its pairs when it succeeds; and two feedback
imports of one file into one project at once add its rows once."""

import io
import json
import threading

import pytest
from django.db import connection
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from project.celery import app as celery_app
from tasks import generation
from tasks.feedback.rules import rules_recipe
from tasks.importers.feedback import import_feedback
from tasks.models import AuditEvent, FeedbackSignal, ImportJob, Prompt, SignalPair
from tests.factories import ProjectFactory, PromptFactory
from tests.tasks.test_feedback_pairs import _seed
from tests.tasks.test_style_rules import RULES, job_for, store

SEEDED = {"correction": {"accepted": 1}, "edit": {"to_verify": 1}}


@pytest.fixture
def eager():
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def test_large_project_build_answers_202_and_the_job_finishes_with_the_counts(
    acme, as_user, settings, eager, django_capture_on_commit_callbacks
):
    settings.CHOSEN_PAIR_BUILD_SYNC_MAX_SIGNALS = 1  # the two seeded signals are "many"
    _seed(acme)
    client = as_user(acme.lead)

    with django_capture_on_commit_callbacks(execute=True):  # the worker runs it here
        response = client.post(f"/api/v1/projects/{acme.project.pk}/signal-pairs/build")

    assert response.status_code == 202
    job = response.json()
    assert job["kind"] == "pairs" and job["status"] == "queued"
    assert response["Location"] == f"/api/v1/imports/{job['id']}"
    polled = client.get(f"/api/v1/imports/{job['id']}").json()
    assert polled["status"] == "succeeded", polled
    assert polled["report"]["pairs"]["pairs"] == SEEDED
    with scopes_disabled():
        assert SignalPair.objects.filter(project=acme.project).count() == 2
        asked = AuditEvent.objects.get(action="import.created", object_id=str(job["id"]))
        done = AuditEvent.objects.get(action="import.succeeded", object_id=str(job["id"]))
    assert asked.actor == acme.lead and asked.data["kind"] == "pairs"
    assert done.data["report"]["pairs"]["pairs"] == SEEDED


def test_small_project_is_built_at_once_and_names_its_job(acme, as_user):
    _seed(acme)

    response = as_user(acme.lead).post(f"/api/v1/projects/{acme.project.pk}/signal-pairs/build")

    assert response.status_code == 200 and response.json()["pairs"] == SEEDED
    with scopes_disabled():
        job = ImportJob.objects.get(pk=response.json()["job"])
    assert (job.kind, job.status, job.project_id) == ("pairs", "succeeded", acme.project.pk)


def test_the_admin_page_of_a_build_shows_what_it_built(acme, as_user):
    _seed(acme)
    client = as_user(acme.lead)
    job = client.post(f"/api/v1/projects/{acme.project.pk}/signal-pairs/build").json()["job"]

    page = client.get(reverse("admin:tasks_importjob_change", args=[job])).content.decode()

    assert "Pairs built from the project" in page
    assert 'id="import-summary"' not in page  # a build creates no prompts: no import table
    assert "<tr><th>Created</th><td>2</td></tr>" in page
    assert "<tr><th>Queued for expert verification</th><td>1</td></tr>" in page
    assert "<tr><td>correction</td><td>accepted: 1</td></tr>" in page
    assert "<tr><td>edit</td><td>to_verify: 1</td></tr>" in page


def test_a_failing_build_is_a_failed_job_with_a_readable_error(
    acme, as_user, settings, eager, monkeypatch, django_capture_on_commit_callbacks
):
    def broken(**_):
        raise RuntimeError("the builder broke")

    monkeypatch.setattr("tasks.imports.build_and_queue", broken)
    _seed(acme)
    client = as_user(acme.lead)
    url = f"/api/v1/projects/{acme.project.pk}/signal-pairs/build"
    reason = (
        "The pair build stopped; no pair was changed: an unexpected error (the worker's log "
        "has the details)."
    )

    at_once = client.post(url)  # a small project: built (and failed) during the request
    assert at_once.status_code == 500
    assert at_once.json()["errors"][0]["message"] == f"Failed: {reason}"

    settings.CHOSEN_PAIR_BUILD_SYNC_MAX_SIGNALS = 1
    with django_capture_on_commit_callbacks(execute=True):
        queued = client.post(url)
    polled = client.get(f"/api/v1/imports/{queued.json()['id']}").json()
    assert (polled["status"], polled["error"]) == ("failed", reason)
    assert "the builder broke" not in json.dumps(polled)  # the log has it, not the user
    with scopes_disabled():
        assert not SignalPair.objects.filter(project=acme.project).exists()


def test_a_rules_recipe_job_builds_its_pairs_when_it_succeeds(acme):
    project = ProjectFactory(organization=acme.organization)
    with scope(organization=acme.organization):
        recipe = rules_recipe(organization=acme.organization, name="Support rules", rules=RULES)
    with scopes_disabled():
        prompt = PromptFactory(project=project, text="When will my order arrive?")
    job = job_for(project, recipe)
    with scopes_disabled():
        job.total = len(job.variants)
        job.save(update_fields=["total"])
    for variant in job.variants:
        store(job, prompt, variant["name"], f"Reply of {variant['name']}.")

    with scope(organization=acme.organization):
        generation._finish(job)  # what the last chunk's worker calls

    job.refresh_from_db()
    assert job.status == "succeeded", job.error
    with scopes_disabled():
        built = ImportJob.objects.get(project=project, kind="pairs")
        pairs = SignalPair.objects.filter(project=project, rule="style_rule").count()
    assert built.status == "succeeded" and built.report["pairs"]["pairs"] == {
        "style_rule": {"to_verify": len(RULES)}
    }
    assert pairs == len(RULES)


def test_an_ordinary_generation_job_builds_no_pairs(acme):
    project = ProjectFactory(organization=acme.organization)
    with scope(organization=acme.organization):
        recipe = rules_recipe(organization=acme.organization, name="Support rules", rules=RULES)
    with scopes_disabled():
        prompt = PromptFactory(project=project)
    job = job_for(project, recipe)
    with scopes_disabled():
        job.variants = [{k: v for k, v in job.variants[0].items() if k != "style_rules"}]
        job.save(update_fields=["variants"])
    store(job, prompt, job.variants[0]["name"], "A reply.")

    with scope(organization=acme.organization):
        generation._finish(job)

    with scopes_disabled():
        assert not ImportJob.objects.filter(project=project, kind="pairs").exists()


@pytest.mark.django_db(transaction=True)
def test_two_imports_of_one_file_at_once_add_its_rows_once(acme):
    data = "".join(
        json.dumps(
            {"id": f"ev-{n}", "prompt": f"Question {n % 7}?", "reply": f"A{n}.", "thumbs": "up"}
        )
        + "\n"
        for n in range(300)
    ).encode()
    reports, errors, start = [], [], threading.Barrier(2)

    def import_once():
        try:
            start.wait()
            with scope(organization=acme.organization):
                reports.append(
                    import_feedback(
                        project=acme.project, files=[("f.jsonl", io.BytesIO(data))], batch_size=50
                    )
                )
        except Exception as error:  # shown by the assertion below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=import_once) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    created = sorted((r.signals_created, r.prompts_created, r.candidates_created) for r in reports)
    assert created == [(0, 0, 0), (300, 7, 300)]
    assert sorted(r.signals_already_present for r in reports) == [0, 300]
    with scopes_disabled():
        assert FeedbackSignal.objects.filter(project=acme.project).count() == 300
        assert Prompt.objects.filter(project=acme.project).count() == 7
