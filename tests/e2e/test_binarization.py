"""A lead previews a binarization in the export form: the figures appear, nothing is
written, and the export then carries the margin column."""

import json

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from exports.models import Export
from tests.conftest import log_in_through_the_form
from tests.e2e.test_exports import eager  # noqa: F401 (fixture)
from tests.exports.test_binarization import Board
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_lead_previews_a_binarization_then_exports_it(page, acme, eager, tmp_path):  # noqa: F811
    board = Board(acme.organization)
    board.prompt("p0", {"a": 10, "b": 4, "c": 20, "d": 7})
    board.prompt("p1", {"u": 3, "v": 3})
    board.judge("r1@x.org", "p0", "abcd", order="cadb")
    board.judge("r1@x.org", "p1", "uv", order="uv")
    board.judge("r2@x.org", "p1", "uv", order="vu")  # a tie: p1 keeps no pair
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{board.project.pk}/exports/")
    page.get_by_label("Pairs", exact=True).select_option("best_vs_others")
    page.get_by_label("Minimum margin").fill("0.5")
    page.get_by_role("button", name="Preview").click()
    preview = page.locator("#export-preview")
    expect(preview).to_contain_text("Nothing was written")
    expect(page.locator("#preview-pairs")).to_have_text("2")
    expect(page.locator("#preview-prompts")).to_have_text("1 of 2 (0.5)")
    # c−d = 13, c−b = 16 characters; shown a, b, c, d: c before d only
    expect(page.locator("#preview-length")).to_have_text("14.5 / 14.5")
    expect(page.locator("#preview-position")).to_have_text("0.5")
    with scopes_disabled():
        assert Export.objects.count() == 0
    # the form keeps the choices: exporting now writes what was previewed
    expect(page.get_by_label("Minimum margin")).to_have_value("0.5")
    page.get_by_label("Format").select_option("trl")
    page.get_by_role("button", name="Export").click()
    expect(page.locator("#exports tbody tr").first).to_contain_text("Succeeded")
    with scopes_disabled():
        export = Export.objects.get()
    assert export.options["binarize"] == "best_vs_others" and sum(export.counts.values()) == 2
    with page.expect_download() as download:
        page.locator("#exports tbody tr").first.get_by_role(
            "link",
            name=next(
                f["name"]
                for f in export.files
                if f["name"].endswith(".jsonl") and "provenance" not in f["name"]
            ),
            exact=True,
        ).click()
    saved = tmp_path / "pairs.jsonl"
    download.value.save_as(saved)
    margins = sorted(json.loads(line)["margin"] for line in saved.read_text().splitlines())
    assert margins and set(margins) <= {0.6667, 1.0}
