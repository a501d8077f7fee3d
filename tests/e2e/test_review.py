"""A lead settles a disagreement in the browser, from the keyboard."""

from pathlib import Path

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from annotation.models import Adjudication, ItemNote, Judgment
from tasks.models import Role
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD, member
from tests.qc.test_report import Data

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


def test_lead_discusses_and_decides_a_disputed_item_with_the_keyboard(page, acme):
    data = Data(acme.organization, 3)
    a = member(acme.organization, Role.ANNOTATOR, email="ann-a@x.org")
    b = member(acme.organization, Role.ANNOTATOR, email="ann-b@x.org")
    for n in range(3):
        data.judge(a, n, 0)
        data.judge(b, n, 0 if n == 0 else 1, swapped=True)
    first, pair = data.items[1]
    with scopes_disabled():
        Judgment.objects.filter(annotator=b).update(
            reasoning='Safer. <img src=x onerror="window.__xss=1">'
            "</script><script>window.__xss=2</script>"
        )

    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{data.project.pk}/")
    page.get_by_role("link", name="Review disagreements").click()
    rows = page.locator("#review-queue tbody tr")
    expect(rows).to_have_count(2)  # item 0 was agreed
    page.get_by_role("link", name=f"#{first.pk}").click()
    page.wait_for_load_state()  # the page's script (deferred) listens for the keys
    expect(page.locator(".judgment-card")).to_have_count(2)
    expect(page.locator('.judgment-card[data-annotator="ann-b@x.org"]')).to_contain_text(
        '<img src=x onerror="window.__xss=1">'
    )

    page.keyboard.press("n")
    expect(page.locator("#note-text")).to_be_focused()
    page.keyboard.type("The second one refuses to guess the dosage.")
    page.keyboard.press("Control+Enter")
    expect(page.locator("#discussion .note")).to_have_count(1)
    page.wait_for_load_state()

    page.keyboard.press("2")
    expect(page.locator(f'#decision-form input[value="{pair[1].pk}"]')).to_be_checked()
    page.locator("#decision-note").focus()
    page.keyboard.type("Safety wins over completeness for dosage questions.")
    page.keyboard.press("Control+Enter")
    # saved, and on to the next open disagreement
    expect(page.locator("h1")).to_contain_text(f"#{data.items[2][0].pk}")

    page.goto(f"/projects/{data.project.pk}/review/{first.pk}/")
    expect(page.locator("#decision-summary")).to_contain_text("Candidate 2 over 1")
    expect(page.locator("#candidate-2.decided")).to_be_visible()
    assert page.evaluate("window.__xss") is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "review-item.png"), full_page=True)

    with scopes_disabled():
        decision = Adjudication.objects.get(item=first)
        assert (decision.chosen_id, decision.rejected_id) == (pair[1].pk, pair[0].pk)
        assert decision.note == "Safety wins over completeness for dosage questions."
        assert ItemNote.objects.get(item=first).text.startswith("The second one refuses")
        assert Adjudication.objects.count() == 1
