"""An expert verifies machine-made pairs with the keyboard, then the lead exports them."""

import json
import re

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from exports.models import Export
from tasks.models import SignalPair
from tests.conftest import log_in_through_the_form
from tests.e2e.test_annotate import on_screen
from tests.e2e.test_exports import eager  # noqa: F401 (fixture)
from tests.factories import PASSWORD
from tests.tasks.test_feedback_verify import make_pair, queue, verification_project

pytestmark = pytest.mark.e2e


def test_expert_verifies_pairs_by_keyboard_and_the_export_follows(page, acme, eager, tmp_path):  # noqa: F811
    project = verification_project(acme.organization, name="Chat feedback")
    reasons = [f"Reason number {n}: the user rewrote the reply" for n in range(3)]
    for n, reason in enumerate(reasons):
        make_pair(project, n, confidence=0.5 + n / 10, reason=reason)
    queue(project)

    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/annotate/")
    reveal = page.locator("#reveal")
    verdicts = {}
    for verdict in ("confirm", "flip", "reject"):
        screen = on_screen(page)
        with scopes_disabled():
            pair = SignalPair.objects.get(item__assignments=screen["assignment"])
        # before the answer nothing of this pair's source is on the page (the previous
        # pair's stays told above it until this answer)
        if not verdicts:
            expect(reveal).to_be_hidden()
        expect(page.locator("body")).not_to_contain_text(pair.reason)
        expect(page.locator("body")).not_to_contain_text(f"{pair.confidence:.0%}")
        chosen = "A" if screen["A"] == pair.chosen_id else "B"
        key = {"confirm": chosen.lower(), "flip": "b" if chosen == "A" else "a", "reject": "x"}
        page.keyboard.press(key[verdict])
        page.keyboard.press("Enter")
        said = {
            "confirm": "you agreed.",
            "flip": "you flipped it.",
            "reject": "you rejected both, so the pair is dropped.",
        }[verdict]
        expect(reveal).to_be_visible()
        expect(reveal).to_have_text(
            f"The source said Response {chosen} is better (User edit over the original reply, "
            f"confidence {pair.confidence:.0%}: {pair.reason}); {said}"
        )
        expect(reveal).to_have_attribute("aria-live", "polite")
        verdicts[verdict] = pair.pk
        if verdict != "reject":  # the next item shows, its own source still hidden
            expect(page.locator("#judge-form")).not_to_have_attribute(
                "data-assignment", str(screen["assignment"])
            )
    expect(page.locator("#done")).to_contain_text("Nothing left")
    with scopes_disabled():
        settled = dict(SignalPair.objects.values_list("pk", "status"))
    assert settled == {
        verdicts["confirm"]: "confirmed",
        verdicts["flip"]: "flipped",
        verdicts["reject"]: "rejected",
    }

    page.context.clear_cookies()
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{project.pk}/exports/")
    page.get_by_label("Format").select_option("trl")
    page.get_by_role("button", name="Export").click()
    row = page.locator("#exports tbody tr").first
    expect(row).to_contain_text("Succeeded")
    with scopes_disabled():
        export = Export.objects.get()
        pairs = {p.pk: p for p in SignalPair.objects.select_related("chosen", "rejected")}
    assert export.counts == {"train": 2}
    files = {}
    for name in ("train.jsonl", "train.provenance.jsonl"):
        with page.expect_download() as download:
            row.get_by_role("link", name=name, exact=True).click()
        download.value.save_as(tmp_path / name)
        files[name] = [json.loads(x) for x in (tmp_path / name).read_text().splitlines()]
    exported = {
        (record["chosen"], record["rejected"]): (line["source"], line["confidence"], line["status"])
        for record, line in zip(files["train.jsonl"], files["train.provenance.jsonl"], strict=True)
    }
    confirmed, flipped = pairs[verdicts["confirm"]], pairs[verdicts["flip"]]
    assert exported == {
        (confirmed.chosen.text, confirmed.rejected.text): ("edit", 1.0, "confirmed"),
        (flipped.rejected.text, flipped.chosen.text): ("edit", 1.0, "flipped"),
    }
    rejected = pairs[verdicts["reject"]]
    assert not any(rejected.chosen.text in texts for texts in exported)
    card = page.request.get(f"/projects/{project.pk}/exports/{export.pk}/README.md")
    assert re.search(r"\| edit \| 2 \|", card.text())
