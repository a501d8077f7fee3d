"""A lead opens a project's leaderboard from the QC dashboard, computes it in the browser
and reads the chart, the table and the win rates."""

from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import log_in_through_the_form
from tests.e2e.test_qc import eager  # noqa: F401 (the fixture: the job runs in the request)
from tests.factories import PASSWORD
from tests.qc.test_leaderboard import three_sources

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


def test_lead_computes_the_leaderboard_and_sees_chart_and_table(page, acme, eager):  # noqa: F811
    arena = three_sources(acme.organization)
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{arena.project.pk}/qc/")
    page.get_by_role("link", name="Leaderboard of candidate sources").click()
    expect(page.locator("#leaderboard-empty")).to_be_visible()
    page.get_by_label("Sources").select_option("model")
    page.get_by_label("Control for response length").check()
    page.get_by_role("button", name="Compute the leaderboard").click()
    expect(page.locator("#job-box")).to_have_count(0, timeout=60_000)
    page.wait_for_load_state("load")
    rows = page.locator("#leaderboard-table tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("alpha")
    expect(rows.nth(2)).to_contain_text("imported:response_c")
    expect(page.locator("#leaderboard-chart svg circle")).to_have_count(3)
    expect(page.locator("#leaderboard-chart svg line.whisker")).to_have_count(3)
    expect(page.locator("#leaderboard-win-rates svg rect")).to_have_count(9)
    expect(page.locator("#leaderboard-length")).to_contain_text("Length coefficient")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "leaderboard.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename.endswith(".csv")
