"""A lead brings preference signal in through the admin, in a real browser: a chat
feedback log with personal data (redacted), the job's outcome with the pairs it built, and
a generation recipe made from style rules."""

from pathlib import Path

import pytest
from django_scopes import scope, scopes_disabled
from playwright.sync_api import expect

from tasks.imports import run_import_job
from tasks.models import Candidate, GenerationRecipe, ImportJob, SignalPair
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e
DATA = Path(__file__).resolve().parents[1] / "tasks" / "data"


def test_lead_imports_a_feedback_log_with_redaction_and_sees_the_pairs(page, acme):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/admin/tasks/project/{acme.project.pk}/change/")
    page.get_by_role("link", name="Import feedback").click()
    page.get_by_label("Files").set_input_files(str(DATA / "feedback-log.jsonl"))
    page.get_by_label("Kind").select_option("feedback")
    page.get_by_label("Redact", exact=True).check()
    page.get_by_role("button", name="Upload and import").click()
    expect(page.locator("#job-status")).to_have_text("Queued")
    with scopes_disabled():
        job = ImportJob.objects.get()
    with scope(organization=acme.organization):
        run_import_job(job.pk)  # what the worker does
    expect(page.locator("#job-status")).to_have_text("Succeeded", timeout=10_000)
    with scopes_disabled():
        texts = " ".join(Candidate.objects.values_list("text", flat=True))
        rules = set(SignalPair.objects.filter(project=acme.project).values_list("rule", flat=True))
    assert "help@acme.example" not in texts and "555-123-4567" not in texts
    assert {"edit", "regeneration", "thumbs"} <= rules


def test_lead_makes_a_recipe_from_style_rules(page, acme):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto("/admin/tasks/generationrecipe/")
    page.get_by_role("link", name="Add from rules").click()
    page.get_by_label("Name").fill("Support rules")
    page.get_by_label("Rules").fill("Never promise delivery dates\nAlways name the help page")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("body")).to_contain_text("Support rules")
    with scopes_disabled():
        recipe = GenerationRecipe.objects.get(organization=acme.organization, name="Support rules")
    assert [v["name"] for v in recipe.variants] == [
        "rules:follows",
        "rules:violates:1",
        "rules:violates:2",
    ]
