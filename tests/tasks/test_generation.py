"""Candidate generation: recipes, faults (against a fake server: the only thing it is for),
idempotency in the database, cancelling, the API and the admin. The real model and a real
worker are in tests/integration/test_generation_worker.py."""

import threading
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from project.celery import app as celery_app
from tasks import generation
from tasks.models import Candidate, GenerationFailure, GenerationJob, Item, LLMEndpoint
from tests.factories import ProjectFactory, PromptFactory, UserFactory
from tests.fake_llm import INTERNAL_BODY, FakeLLM
from tests.llm_server import free_port

ONE_VARIANT = [{"name": "plain", "temperature": 0.7, "seed": 7}]


@pytest.fixture
def fake():
    server = FakeLLM()
    yield server
    server.close()


@pytest.fixture
def eager(transactional_db, settings):
    """Jobs run in this process as they are sent (the worker is tested in integration/)."""
    settings.CHOSEN_LLM_BACKOFF_SECONDS = 0.01
    settings.CHOSEN_LLM_RETRIES = 2
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


def endpoint(url, **fields):
    return LLMEndpoint.objects.create(
        name=fields.pop("name", f"e {url}"),
        base_url=url,
        model="fake-model",
        all_organizations=fields.pop("all_organizations", True),
        timeout_seconds=fields.pop("timeout_seconds", 5),
        **fields,
    )


def prompts(project, n):
    with scopes_disabled():
        return [PromptFactory(project=project) for _ in range(n)]


def run_job(project, url, variants=ONE_VARIANT, **endpoint_fields) -> GenerationJob:
    with scope(organization=project.organization):
        job = generation.create_job(
            project=project,
            endpoint=endpoint(url, **endpoint_fields),
            variants=variants,
            recipe_name="test",
        )
        generation.start(job)  # eager: dispatch and every chunk run here
        job.refresh_from_db()
    return job


# --- recipes ---------------------------------------------------------------------------------


def test_variants_are_completed_and_checked():
    [variant] = generation.validate_variants([{"name": "x", "temperature": 0.3}])
    assert variant == {
        "name": "x",
        "system_prompt": "",
        "temperature": 0.3,
        "top_p": 0.95,
        "max_tokens": 512,
        "seed": 1,
    }
    for bad, message in [
        ([], "non-empty list"),
        ([{"name": "x", "temperature": 3}], "temperature must be between 0 and 2"),
        ([{"name": "x", "temperature": "hot"}], "temperature must be a number"),
        ([{"name": "x", "temperature": 1, "max_tokens": 0}], "max_tokens must be a whole"),
        ([{"name": "x", "temperature": 1, "n": 3}], "unknown key(s) n"),
        ([{"name": "", "temperature": 1}], "a name of 1 to 60"),
        ([{"name": "x", "temperature": 1}, {"name": "x", "temperature": 1}], "used twice"),
    ]:
        with pytest.raises(ValidationError, match=message.replace("(", r"\(").replace(")", r"\)")):
            generation.validate_variants(bad)


def test_the_default_recipe_is_the_seeds():
    variants = generation.validate_variants(generation.DEFAULT_VARIANTS)
    assert 3 <= len(variants) <= 5
    assert {v["temperature"] for v in variants} == {0.3, 0.7, 1.0}
    prompts_used = {v["system_prompt"] for v in variants}
    assert prompts_used == {generation.BRIEF, generation.THOROUGH, generation.FLAWED}
    assert len({v["seed"] for v in variants}) == len(variants)


def test_a_variant_key_names_model_and_exact_parameters_not_the_label():
    [v] = generation.validate_variants(ONE_VARIANT)
    key = generation.variant_key("m", v)
    assert generation.variant_key("m", {**v, "name": "renamed"}) == key
    assert generation.variant_key("m", {**v, "temperature": 0.71}) != key
    assert generation.variant_key("other", v) != key
    assert len(key) <= 100


# --- faults ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, message, attempts",
    [
        ("timeout", "did not answer within 0.5 s", 3),
        ("500", "answered with a server error (HTTP 500)", 3),
        ("malformed", "malformed reply", 3),
        ("refused", "Could not connect to the LLM server", 3),
        ("shapeless", "reply without a completion", 3),
        ("empty", "reply without a completion", 3),
    ],
)
def test_faults_are_retried_then_recorded_with_a_clear_message(
    eager, acme, fault, message, attempts
):
    server = FakeLLM(mode=fault if fault != "refused" else "ok", hang=3)
    url = server.url if fault != "refused" else f"http://127.0.0.1:{free_port()}/v1"
    try:
        project = ProjectFactory(organization=acme.organization)
        prompts(project, 2)
        job = run_job(project, url, timeout_seconds=0.5, max_concurrent_requests=2)
        if fault != "refused":
            assert server.requests == 2 * attempts  # every request tried 1 + 2 retries
    finally:
        server.close()
    assert job.status == GenerationJob.Status.FAILED
    assert (job.done, job.failed, job.total) == (0, 2, 2)
    with scopes_disabled():
        failures = list(GenerationFailure.objects.filter(job=job))
        assert Candidate.objects.filter(prompt__project=project).count() == 0
    assert len(failures) == 2
    for failure in failures:
        assert message in failure.message and failure.attempts == attempts
        assert f"Gave up after {attempts} attempts." in failure.message
        assert "hunter2" not in failure.message and INTERNAL_BODY not in failure.message


def test_a_request_that_fails_once_succeeds_on_retry(eager, acme):
    server = FakeLLM(mode="500")
    original = server.server.RequestHandlerClass.do_POST

    def flaky(handler):
        server.mode = "ok" if server.requests >= 1 else "500"
        return original(handler)

    server.server.RequestHandlerClass.do_POST = flaky
    try:
        project = ProjectFactory(organization=acme.organization)
        prompts(project, 1)
        job = run_job(project, server.url)
    finally:
        server.close()
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert (job.done, job.failed) == (1, 0)
    assert server.requests == 2


# --- idempotency, items, cancelling ------------------------------------------------------------


def test_candidates_items_and_parameters_are_stored_and_a_rerun_asks_for_nothing(eager, acme, fake):
    project = ProjectFactory(organization=acme.organization)
    prompts(project, 3)
    variants = [
        {"name": "a", "temperature": 0.3, "seed": 1},
        {"name": "b", "temperature": 1.0, "seed": 2, "max_tokens": 64},
    ]
    job = run_job(project, fake.url, variants=variants)
    assert job.status == GenerationJob.Status.SUCCEEDED
    assert (job.total, job.done, job.failed) == (6, 6, 0)
    with scopes_disabled():
        candidate = Candidate.objects.filter(
            prompt__project=project, parameters__variant="b"
        ).first()
        assert candidate.source == "generated" and candidate.model == "fake-model"
        assert candidate.finish_reason == "stop"
        assert candidate.parameters["temperature"] == 1.0
        assert candidate.parameters["max_tokens"] == 64
        assert candidate.parameters["generation_job"] == job.pk
        assert Item.objects.filter(project=project).count() == 3  # a pair per prompt
    assert fake.requests == 6

    again = run_job(project, fake.url, variants=variants, name="same server again")
    assert again.status == GenerationJob.Status.SUCCEEDED and again.done == 6
    assert fake.requests == 6  # nothing asked twice
    with scopes_disabled():
        assert Candidate.objects.filter(prompt__project=project).count() == 6


def test_the_database_refuses_a_second_candidate_for_a_prompt_and_variant(acme):
    project = ProjectFactory(organization=acme.organization)
    [prompt] = prompts(project, 1)
    fields = {
        "organization": acme.organization,
        "prompt": prompt,
        "source": "generated",
        "source_key": "gen:abc",
    }
    with scopes_disabled():
        Candidate.objects.create(text="one", content_hash="1", **fields)
        with pytest.raises(IntegrityError), transaction.atomic():
            Candidate.objects.create(text="two", content_hash="2", **fields)


def test_cancel_stops_a_running_job(eager, acme):
    server = FakeLLM(delay=0.3)
    project = ProjectFactory(organization=acme.organization)
    prompts(project, 8)
    with scope(organization=acme.organization):
        job = generation.create_job(
            project=project,
            endpoint=endpoint(server.url, max_concurrent_requests=1),
            variants=ONE_VARIANT,
            recipe_name="slow",
        )

    def run():
        try:
            generation.start(job)
        finally:
            connection.close()  # this thread's own database connection

    runner = threading.Thread(target=run)
    try:
        runner.start()
        deadline = time.monotonic() + 30
        while GenerationJob.objects.with_scopes_disabled().get(pk=job.pk).done < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with scope(organization=acme.organization):
            assert generation.cancel(job).status == GenerationJob.Status.CANCELLING
        runner.join(timeout=30)
    finally:
        server.close()
    job = GenerationJob.objects.with_scopes_disabled().get(pk=job.pk)
    assert job.status == GenerationJob.Status.CANCELLED
    assert 2 <= job.done < 8
    with scopes_disabled():
        assert Candidate.objects.filter(prompt__project=project).count() == job.done


# --- API -------------------------------------------------------------------------------------


def test_api_starts_a_job_and_reports_its_progress(acme, as_user, fake):
    e = endpoint(fake.url)
    prompt_ids = [p.pk for p in prompts(acme.project, 2)]
    client = as_user(acme.lead)
    response = client.post(
        f"/api/v1/projects/{acme.project.pk}/generation-jobs",
        {"endpoint": e.pk, "prompts": prompt_ids[:1]},
        content_type="application/json",
    )
    assert response.status_code == 202, response.content
    assert response["Location"] == f"/api/v1/generation-jobs/{response.json()['id']}"
    job = client.get(response["Location"]).json()
    assert job["status"] == "queued" and job["recipe_name"] == generation.DEFAULT_RECIPE_NAME
    n = len(generation.DEFAULT_VARIANTS)
    assert job["progress"] == {"total": n, "done": 0, "failed": 0, "fraction": 0.0}
    assert job["endpoint"] == e.name and "base_url" not in str(job)
    assert client.post(f"{response['Location']}/cancel").json()["status"] == "cancelled"
    assert client.post(f"{response['Location']}/resume").status_code == 409


def test_a_failed_job_says_failed_and_why_in_the_api_and_the_admin(eager, acme, as_user):
    # Nothing listens on the endpoint's port: every request is refused, as by a server
    # that is down.
    project = ProjectFactory(organization=acme.organization)
    prompts(project, 2)
    job = run_job(project, f"http://127.0.0.1:{free_port()}/v1")
    failure = "Failed: No candidate was generated; see the failures for why."
    assert job.failure == failure
    client = as_user(acme.lead)
    assert client.get(f"/api/v1/generation-jobs/{job.pk}").json()["failure"] == failure
    listing = client.get(reverse("admin:tasks_generationjob_changelist")).content.decode()
    assert failure in listing
    page = client.get(reverse("admin:tasks_generationjob_change", args=[job.pk])).content.decode()
    assert f'<p class="errornote" id="job-failure">{failure}</p>' in page
    assert 'id="job-failures"' in page  # and the refused requests, each with its reason


@pytest.mark.parametrize(
    "body, field, message",
    [
        ({"endpoint": 999999}, "endpoint", "No such LLM endpoint"),
        ({"recipe": "nope"}, "recipe", "No recipe named 'nope'"),
        ({"variants": [{"name": "x", "temperature": 9}]}, "variants", "between 0 and 2"),
        ({"prompts": [999999]}, "prompts", "Not prompts of this project"),
    ],
)
def test_api_refuses_bad_requests_with_the_field_named(acme, as_user, fake, body, field, message):
    e = endpoint(fake.url)
    prompts(acme.project, 1)
    response = as_user(acme.lead).post(
        f"/api/v1/projects/{acme.project.pk}/generation-jobs",
        {"endpoint": e.pk, **body},
        content_type="application/json",
    )
    assert response.status_code == 400
    [error] = response.json()["errors"]
    assert error["field"] == field and message in error["message"]
    assert GenerationJob.objects.with_scopes_disabled().count() == 0


def test_an_endpoint_not_enabled_for_the_organization_cannot_be_used(acme, globex, as_user, fake):
    theirs = endpoint(fake.url, all_organizations=False)
    theirs.organizations.set([globex.organization])
    prompts(acme.project, 1)
    client = as_user(acme.lead)
    listed = client.get("/api/v1/llm-endpoints").json()["results"]
    assert listed == []
    response = client.post(
        f"/api/v1/projects/{acme.project.pk}/generation-jobs",
        {"endpoint": theirs.pk},
        content_type="application/json",
    )
    assert response.status_code == 400
    assert as_user(globex.lead).get("/api/v1/llm-endpoints").json()["results"] == [
        {"id": theirs.pk, "name": theirs.name, "model": "fake-model", "max_concurrent_requests": 2}
    ]


# --- admin -----------------------------------------------------------------------------------


@pytest.fixture
def superuser(db):
    return UserFactory(is_superuser=True, is_staff=True)


def test_the_endpoint_key_is_never_shown_back_and_kept_when_left_empty(superuser, as_user):
    client = as_user(superuser)
    add = reverse("admin:tasks_llmendpoint_add")
    response = client.post(
        add,
        {
            "name": "ollama",
            "base_url": "http://ollama:11434/v1/",
            "model": "smollm2:135m",
            "api_key": "sk-very-secret",
            "timeout_seconds": 60,
            "max_concurrent_requests": 2,
            "enabled": "on",
            "all_organizations": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    e = LLMEndpoint.objects.get(name="ollama")
    assert e.api_key == "sk-very-secret" and e.base_url == "http://ollama:11434/v1"
    change = reverse("admin:tasks_llmendpoint_change", args=[e.pk])
    assert "sk-very-secret" not in client.get(change).content.decode()
    client.post(
        change,
        {
            "name": "ollama",
            "base_url": "http://ollama:11434/v1",
            "model": "llama3",
            "api_key": "",
            "timeout_seconds": 60,
            "max_concurrent_requests": 2,
            "enabled": "on",
            "all_organizations": "on",
        },
    )
    e.refresh_from_db()
    assert e.model == "llama3" and e.api_key == "sk-very-secret"


def test_only_superusers_configure_endpoints(acme, as_user):
    client = as_user(acme.lead)
    assert client.get(reverse("admin:tasks_llmendpoint_changelist")).status_code == 403
    assert client.get(reverse("admin:tasks_llmendpoint_add")).status_code == 403


def test_test_connection_lists_the_servers_models(superuser, as_user, fake):
    e = endpoint(fake.url)
    down = endpoint(f"http://127.0.0.1:{free_port()}/v1", name="down")
    response = as_user(superuser).post(
        reverse("admin:tasks_llmendpoint_changelist"),
        {"action": "test_connection", "_selected_action": [e.pk, down.pk]},
        follow=True,
    )
    page = response.content.decode()
    assert "models fake-model" in page, page[:3000]
    assert "Down: Could not connect to the LLM server." in page  # capitalized by the admin


def test_lead_starts_a_job_from_the_project_admin_and_sees_its_progress(acme, as_user, fake):
    e = endpoint(fake.url)
    prompts(acme.project, 2)
    client = as_user(acme.lead)
    changelist = reverse("admin:tasks_project_changelist")
    form = client.post(
        changelist, {"action": "generate_candidates", "_selected_action": [acme.project.pk]}
    )
    assert form.status_code == 200 and "Start generating" in form.content.decode()
    response = client.post(
        changelist,
        {
            "action": "generate_candidates",
            "_selected_action": [acme.project.pk],
            "apply": "1",
            "endpoint": e.pk,
            "recipe": generation.DEFAULT_RECIPE_NAME,
        },
    )
    with scopes_disabled():
        job = GenerationJob.objects.get(project=acme.project)
    assert response.status_code == 302
    assert response["Location"] == reverse("admin:tasks_generationjob_change", args=[job.pk])
    page = client.get(response["Location"]).content.decode()
    assert 'id="job-progress"' in page and f"0 of {job.total} done" in page


def test_job_controls_of_another_organization_are_404(acme, globex, as_user, fake):
    e = endpoint(fake.url)
    with scopes_disabled():
        theirs = GenerationJob.objects.create(
            organization=globex.organization,
            project=globex.project,
            endpoint=e,
            model="m",
            recipe_name="r",
            variants=[],
        )
    url = reverse("admin:tasks_generationjob_control", args=[theirs.pk, "cancel"])
    assert as_user(acme.lead).post(url).status_code == 404
    theirs.refresh_from_db()
    assert theirs.status == GenerationJob.Status.QUEUED


def test_a_chunk_delivered_twice_counts_once(transactional_db, acme, fake, settings):
    """With acks_late a chunk message can come twice (a worker lost after its last write):
    the job must not count it twice and finish before its other chunks ran."""
    settings.CHOSEN_GENERATION_CHUNK_PROMPTS = 1
    project = ProjectFactory(organization=acme.organization)
    first, second = prompts(project, 2)
    with scope(organization=acme.organization):
        job = generation.create_job(
            project=project, endpoint=endpoint(fake.url), variants=ONE_VARIANT, recipe_name="t"
        )
        try:
            generation.dispatch(job.pk)  # sends two chunk messages; no worker takes them
            job.refresh_from_db()
            assert (job.status, job.chunks_left, job.epoch) == ("running", 2, 1)
            generation.run_chunk(job.pk, 1, [first.pk], 0)
            generation.run_chunk(job.pk, 1, [first.pk], 0)  # delivered again
            job.refresh_from_db()
            assert (job.status, job.chunks_left, job.done) == ("running", 1, 1)
            generation.run_chunk(job.pk, 1, [second.pk], 1)
            job.refresh_from_db()
            assert (job.status, job.chunks_left, job.done) == ("succeeded", 0, 2)
            generation.run_chunk(job.pk, 0, [second.pk], 1)  # an older epoch: nothing
        finally:
            celery_app.control.purge()
    assert fake.requests == 2
    with scopes_disabled():
        assert Candidate.objects.filter(prompt__project=project).count() == 2


def test_setup_llm_endpoint_never_reopens_a_restricted_endpoint(acme, globex):
    from django.core.management import call_command

    call_command("setup_llm_endpoint", url="http://ollama:11434/v1", model="m")
    e = LLMEndpoint.objects.get(name="default")
    assert e.all_organizations and e.base_url == "http://ollama:11434/v1"
    call_command("setup_llm_endpoint", url="http://ollama:11434/v1", organizations=["acme"])
    e.refresh_from_db()
    assert not e.all_organizations and list(e.organizations.all()) == [acme.organization]
    call_command("setup_llm_endpoint", url="http://ollama:11434/v1", model="m2")  # a restart
    e.refresh_from_db()
    assert not e.all_organizations and e.model == "m2"
