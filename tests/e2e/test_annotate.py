"""An annotator's session in the real browser, keyboard only."""

import re
from pathlib import Path

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from annotation.models import Assignment, Judgment, JudgmentRevision
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD, ProjectFactory
from tests.tasks.test_potato_import import SEED_DIR, import_dir
from tests.tasks.test_prompt_import import jsonl, row, run

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


def on_screen(page) -> dict:
    """What the annotator sees: the assignment and which candidate is Response A / B."""
    form = page.locator("#judge-form")
    return {
        "assignment": int(form.get_attribute("data-assignment")),
        "A": int(page.locator('.candidate[data-position="1"]').get_attribute("data-candidate-id")),
        "B": int(page.locator('.candidate[data-position="2"]').get_attribute("data-candidate-id")),
    }


def test_annotator_judges_skips_and_edits_with_the_keyboard(page, acme):
    project, *_ = import_dir(acme.organization, SEED_DIR)
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/annotate/")
    expect(page.locator("#progress-text")).to_have_text("0 of 10")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "annotate-page.png"), full_page=True)

    judged = []
    for key, dimension, means in (("a", "1", "A"), ("b", "2", "B"), ("a", "3", "A")):
        screen = on_screen(page)
        page.keyboard.press(key)
        page.keyboard.press(dimension)
        page.keyboard.press("Tab")  # focus follows the last choice: on to the reasoning box
        page.keyboard.type(f"Response {means} is clearer.")
        page.keyboard.press("Control+Enter")
        expect(page.locator("#judge-form")).not_to_have_attribute(
            "data-assignment", str(screen["assignment"])
        )
        # a confirmation, drawn as one (not in the error colour)
        expect(page.locator("#flash")).to_have_text("Saved.")
        expect(page.locator("#flash")).to_have_class(re.compile(r"\bsuccess\b"))
        judged.append((screen, means, dimension))
    expect(page.locator("#progress-text")).to_have_text("3 of 10")

    skipped = on_screen(page)["assignment"]
    page.keyboard.press("Shift+S")
    expect(page.locator("#judge-form")).not_to_have_attribute("data-assignment", str(skipped))

    with scopes_disabled():
        stored = {j.assignment_id: j for j in Judgment.objects.filter(annotator=acme.annotator)}
        assert Assignment.objects.get(pk=skipped).status == "skipped"
    assert set(stored) == {screen["assignment"] for screen, _, _ in judged}
    dimensions = {"1": "Helpful", "2": "Harmless", "3": "Honest"}
    for screen, means, dimension in judged:
        judgment = stored[screen["assignment"]]
        other = "B" if means == "A" else "A"
        assert (judgment.chosen_id, judgment.rejected_id) == (screen[means], screen[other])
        assert judgment.answers["alignment_dimension"] == dimensions[dimension]
        assert judgment.reasoning == f"Response {means} is clearer."
        assert judgment.time_spent_ms > 0

    page.get_by_role("link", name="History").click()
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(3)
    edited = stored[judged[0][0]["assignment"]]
    page.locator(f'tr[data-judgment="{edited.pk}"]').get_by_role("link", name="Open / edit").click()
    page.wait_for_load_state("load")  # the page's script is attached
    page.keyboard.press("x")  # Both Bad
    page.keyboard.press("Enter")
    expect(page.locator("#history")).to_be_visible()
    expect(page.locator(".messages .message.success")).to_have_text("Your changes were saved.")
    with scopes_disabled():
        edited.refresh_from_db()
        assert (edited.outcome, edited.version, edited.chosen_id) == ("both_bad", 2, None)
        assert JudgmentRevision.objects.get(judgment=edited).snapshot["chosen"] == judged[0][0]["A"]
        assert Judgment.objects.filter(annotator=acme.annotator).count() == 3


def test_a_hostile_response_renders_inert(page, acme):
    project = ProjectFactory(organization=acme.organization)
    hostile = (
        '<script>window.__xss = 1</script><img src="x" onerror="window.__xss = 2">'
        "\n\n```\nprint('code stays monospaced')\n```"
    )
    run(project, {"x.jsonl": jsonl(row(1, response_a=hostile, response_b=hostile + " (B)"))})
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/annotate/")
    expect(page.locator(".candidate").first).to_contain_text("<script>window.__xss = 1</script>")
    assert page.evaluate("window.__xss") is None
    assert page.locator(".candidate img").count() == 0
    font = page.locator(".candidate pre code").first.evaluate("e => getComputedStyle(e).fontFamily")
    assert "mono" in font.lower()


def test_shortcut_overlay_lists_the_projects_keys(page, acme):
    project, *_ = import_dir(acme.organization, SEED_DIR)
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/annotate/")
    page.keyboard.press("?")
    overlay = page.locator("dialog#help")
    expect(overlay).to_be_visible()
    expect(overlay).to_contain_text("Both Bad")
    page.keyboard.press("Escape")
    expect(overlay).to_be_hidden()
