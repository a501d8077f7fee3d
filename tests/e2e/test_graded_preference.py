"""Graded preference in the browser: an annotator answers "B much better" with one key, and
the lead reads the strength, signed by the item's own order, on the review page."""

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from annotation.models import Judgment
from tasks.project_templates import DPO_GRADED
from tests.conftest import log_in_through_the_form, open_page
from tests.e2e.test_annotate import on_screen
from tests.factories import PASSWORD, ProjectFactory
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.e2e


def test_annotator_grades_with_the_keyboard_and_the_lead_sees_the_strength(
    page, acme, browser, live_server
):
    with scopes_disabled():
        project = ProjectFactory(
            organization=acme.organization,
            name="Graded study",
            questions=DPO_GRADED.questions,
            guidelines=DPO_GRADED.guidelines,
            annotations_per_item=1,
        )
    run(project, {"x.jsonl": jsonl(row(1))})

    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/annotate/")
    page.wait_for_load_state("load")  # the page's script listens for the keys
    # The shortcut help lists the scale, key by key.
    page.keyboard.press("?")
    help_rows = page.locator("#help tr")
    expect(help_rows.filter(has_text="A much better").locator("kbd")).to_have_text("1")
    expect(help_rows.filter(has_text="About the same").locator("kbd")).to_have_text("4")
    expect(help_rows.filter(has_text="B much better").locator("kbd")).to_have_text("7")
    page.keyboard.press("Escape")
    expect(page.locator("#help")).not_to_be_visible()

    screen = on_screen(page)
    page.keyboard.press("7")
    expect(page.locator('#judge-form input[value="B3"]')).to_be_checked()
    page.keyboard.press("Enter")
    expect(page.locator("#flash")).to_have_text("Saved.")

    with scopes_disabled():
        judgment = Judgment.objects.get(project=project)
        item = judgment.item
    assert (judgment.chosen_id, judgment.strength) == (screen["B"], 3)
    assert judgment.label == "B much better"
    # Candidate 1 is the item's first candidate: B on this screen may have been either.
    first = min(screen["A"], screen["B"])
    sign, number = ("+", 1) if screen["B"] == first else ("\u2212", 2)

    context, lead = open_page(browser, live_server.url)
    try:
        log_in_through_the_form(lead, acme.lead.email, PASSWORD)
        lead.goto(f"/projects/{project.pk}/review/?show=all")
        queue_row = lead.locator(f'#review-queue tr[data-item="{item.pk}"]')
        expect(queue_row.locator(".mean-strength")).to_have_text(f"{sign}3 of 3")
        queue_row.get_by_role("link", name=f"#{item.pk}").click()
        card = lead.locator(f'.judgment-card[data-annotator="{acme.annotator.email}"]')
        expect(card).to_contain_text("Label: B much better")
        expect(card.locator(".strength")).to_have_text(f"Strength: 3 of 3 · signed {sign}3")
        expect(lead.locator("#strength-summary")).to_contain_text(
            f"Candidate {number} much better, mean {sign}3 of 3 (1 judgment)"
        )
        assert lead.problems == [], lead.problems
    finally:
        context.close()
