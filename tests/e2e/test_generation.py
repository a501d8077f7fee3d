"""A lead drafts candidates for selected prompts from the admin and watches the job's
progress bar finish, against the real model (SmolLM2 on llama.cpp's server)."""

from pathlib import Path

import pytest
from django_scopes import scope, scopes_disabled
from playwright.sync_api import expect

from project.celery import app as celery_app
from tasks.jobs import run_generation
from tasks.models import Candidate, GenerationJob, GenerationRecipe, LLMEndpoint
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD, PromptFactory

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.fixture
def eager_chunks():
    """The test plays the worker: the chunks a dispatch sends run in this process."""
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False
    celery_app.control.purge()  # the job's first message, sent to the broker by the page


def test_lead_generates_for_selected_prompts_and_watches_the_progress(
    page, acme, llama_server, eager_chunks
):
    LLMEndpoint.objects.create(
        name="SmolLM2 (llama.cpp)", base_url=llama_server, model="smollm2", all_organizations=True
    )
    with scopes_disabled():
        prompts = [
            PromptFactory(project=acme.project, external_id=f"q{n}", text=text)
            for n, text in enumerate(["What is 2 + 2?", "Name a fruit.", "Say hi."])
        ]
        GenerationRecipe.objects.create(
            organization=acme.organization,
            name="Quick pair",
            variants=[
                {"name": "calm", "temperature": 0.3, "max_tokens": 24, "seed": 1},
                {"name": "lively", "temperature": 1.0, "max_tokens": 24, "seed": 2},
            ],
        )
    celery_app.conf.task_always_eager = False  # the page only queues the job
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto("/admin/tasks/prompt/")
    for prompt in prompts[:2]:
        page.locator(f'input[name="_selected_action"][value="{prompt.pk}"]').check()
    page.locator('select[name="action"]').select_option("generate")
    page.get_by_role("button", name="Go").click()
    expect(page.get_by_text("2 selected prompts")).to_be_visible()
    page.get_by_label("Endpoint").select_option(label="SmolLM2 (llama.cpp) (smollm2)")
    page.get_by_label("Recipe").select_option("Quick pair")
    page.get_by_role("button", name="Start generating").click()

    expect(page.locator("#job-status")).to_have_text("Queued")
    expect(page.locator("#job-progress-text")).to_have_text("0 of 4 done, 0 failed")
    with scopes_disabled():
        job = GenerationJob.objects.get()
    celery_app.conf.task_always_eager = True
    run_generation(acme.organization.pk, job.pk)  # what the worker does
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=30_000)
    expect(page.locator("#job-progress-text")).to_have_text("4 of 4 done, 0 failed")
    assert page.locator("#job-progress").get_attribute("value") == "1.0"
    expect(page.locator("#job-variants")).to_contain_text("lively")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "generation-job.png"), full_page=True)
    with scope(organization=acme.organization):
        made = Candidate.objects.filter(prompt__in=prompts)
        assert sorted(made.values_list("prompt__external_id", flat=True)) == [
            "q0",
            "q0",
            "q1",
            "q1",
        ]
        assert all(text.strip() for text in made.values_list("text", flat=True))
