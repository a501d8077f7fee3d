import pytest
from django_scopes import scope, scopes_disabled
from playwright.sync_api import expect

from tasks.imports import run_import_job
from tasks.models import ImportJob
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD
from tests.tasks.test_prompt_import import jsonl, row

pytestmark = pytest.mark.e2e


def upload_in_admin(page, project, name: str, content: bytes):
    page.goto(f"/admin/tasks/project/{project.pk}/change/")
    page.get_by_role("link", name="Import prompts").click()
    page.get_by_label("Files").set_input_files(
        {"name": name, "mimeType": "application/octet-stream", "buffer": content}
    )
    page.get_by_role("button", name="Upload and import").click()


def test_lead_imports_prompts_and_watches_the_job_finish(page, acme):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    upload_in_admin(page, acme.project, "batch.jsonl", jsonl(*(row(n) for n in range(20))))
    # No worker runs in this test: the job waits, and the page follows it.
    expect(page.locator("#job-status")).to_have_text("Queued")
    with scopes_disabled():
        job = ImportJob.objects.get()
    with scope(organization=acme.organization):
        run_import_job(job.pk)  # what the worker does
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=10_000)
    created = page.locator("#import-summary tr", has_text="Prompts created").locator("td")
    expect(created).to_have_text("20")
    assert page.locator("#job-progress").get_attribute("value") == "1.0"


def test_a_bad_file_shows_every_problem_in_the_admin(page, acme):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    bad = row(2, response_b="")
    upload_in_admin(page, acme.project, "bad.jsonl", jsonl(row(1), bad))
    with scope(organization=acme.organization):
        run_import_job(ImportJob.objects.get().pk)
    expect(page.locator("#job-status")).to_have_text("Failed", timeout=10_000)
    expect(page.locator("#job-failure")).to_have_text(
        "Failed: bad.jsonl, line 2, key 'response_b': is empty"
    )
    expect(page.get_by_text("1 problem: nothing was imported")).to_be_visible()
    expect(page.locator("#import-errors")).to_contain_text("response_b")
    expect(page.locator("#import-errors")).to_contain_text("is empty")
