"""A lead names an AI judge (a fake endpoint that picks the response marked GOOD), runs it,
watches the run finish, and sees its figures and which items it keeps from people."""

import pytest
from django.urls import reverse
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from annotation.jobs import run_judge
from annotation.models import JudgeRun
from project.celery import app as celery_app
from tasks.models import Item, LLMEndpoint
from tests.annotation.test_judge import TEMPLATE, RuleLLM, good_wins, make_pairs
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


@pytest.fixture
def judge_server():
    server = RuleLLM(good_wins)
    yield server
    server.close()
    celery_app.control.purge()  # the run's message, sent to the broker by the page


def test_lead_configures_runs_the_judge_and_sees_figures_and_routing(page, acme, judge_server):
    LLMEndpoint.objects.create(
        name="Local judge",
        base_url=judge_server.url,
        model="fake-judge",
        all_organizations=True,
        timeout_seconds=5,
    )
    texts = [("GOOD first", "weak"), ("poor", "GOOD second"), ("GOOD gold", "wrong")]
    items = make_pairs(acme.project, texts, gold={2})
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(reverse("annotation:judge", args=[acme.project.pk]))
    page.get_by_label("Endpoint").select_option(label="Local judge (fake-judge)")
    page.get_by_label("Prompt template").fill(TEMPLATE)
    page.get_by_label("Samples per order").fill("2")
    page.get_by_label("Routing").check()
    page.get_by_label("Audit percent").fill("0")
    page.locator("#judge-save").click()
    expect(page.get_by_text("The judge's settings are saved.")).to_be_visible()

    page.locator("#judge-start").click()
    expect(page.locator("#job-status")).to_have_text("queued")
    with scopes_disabled():
        run = JudgeRun.objects.get()
    run_judge(acme.organization.pk, run.pk)  # what the worker does
    expect(page.locator("#judge-flip-rate")).to_have_text("0.0", timeout=30_000)
    expect(page.locator("#judge-length-bias")).to_be_visible()
    expect(page.locator("#judge-gold")).to_have_text("1.0 of 1 items")
    rows = page.locator("#judge-items-table tbody tr")
    expect(rows).to_have_count(3)
    for item in items[:2]:
        expect(page.locator(f'tr[data-item="{item.pk}"] .routed')).to_have_text("judge decides")
    expect(page.locator(f'tr[data-item="{items[2].pk}"] .routed')).to_have_text(
        "to people (gold check)"
    )
    expect(page.locator(f'tr[data-item="{items[0].pk}"] .rationale')).to_have_text("It says GOOD.")
    with scopes_disabled():
        assert [Item.objects.get(pk=i.pk).target_annotations for i in items[:2]] == [0, 0]
    expect(page.locator("#judge-runs")).to_contain_text("12 of 12")
