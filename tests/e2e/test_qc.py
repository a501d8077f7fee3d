"""A lead computes a project's QC report in the browser and reads the dashboard."""

import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from project.celery import app as celery_app
from tasks.models import Role
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD, member
from tests.qc.test_failed_report import break_display_orders
from tests.qc.test_report import Data

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.fixture
def eager():
    celery_app.conf.task_always_eager = True  # the report job runs in the request
    yield
    celery_app.conf.task_always_eager = False


def test_lead_computes_the_report_and_sees_the_charts(page, acme, eager):
    data = Data(acme.organization, 12)
    people = [member(acme.organization, Role.ANNOTATOR, email=f"ann{n}@x.org") for n in range(3)]
    for n in range(12):
        data.judge(people[0], n, n % 2, dimension="helpful" if n % 3 else "honest")
        data.judge(people[1], n, n % 2 if n % 4 else 1 - n % 2, swapped=bool(n % 2))
        if n < 6:
            data.judge(people[2], n, 0)  # always the first by id, i.e. left: biased
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{data.project.pk}/")
    page.get_by_role("link", name="Quality control").click()
    expect(page.locator("#qc-empty")).to_be_visible()
    page.get_by_role("button", name="Compute a fresh report").click()
    # the page reloads itself when the job ends (job-progress.js): measure the page after it
    expect(page.locator("#job-box")).to_have_count(0, timeout=60_000)
    page.wait_for_load_state("load")
    expect(page.locator("#qc-summary")).to_contain_text("30")
    expect(page.locator("#qc-kappa svg rect")).to_have_count(9)
    expect(page.locator("#qc-agreement")).to_contain_text("preference")
    # each statistic under a header of its own, the last two never run together
    headers = page.locator("#qc-agreement thead th")
    expect(headers).to_have_count(7)
    assert headers.all_inner_texts()[-2:] == ["Gwet's AC1", "Krippendorff's α (ordinal)"]
    # a gap between the two header texts: at least 8 px of padding (retried until styled)
    expect(headers.nth(6)).to_have_css("padding-left", re.compile(r"^([89]|[1-9]\d+)(\.\d+)?px$"))
    expect(page.locator("#qc-annotators")).to_contain_text("ann2@x.org")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "qc-dashboard.png"), full_page=True)
    with page.expect_download() as download:
        page.get_by_role("link", name="CSV").click()
    assert download.value.suggested_filename.endswith(".csv")
    expect(page.locator("#qc-computed")).to_have_text("(from every judgment)")

    # One more judgment: the next report carries the last one on, reading only its item.
    data.judge(people[2], 6, 1)
    page.get_by_role("button", name="Compute a fresh report").click()
    expect(page.locator("#job-box")).to_have_count(0, timeout=60_000)
    page.wait_for_load_state("load")
    expect(page.locator("#qc-summary")).to_contain_text("31")
    expect(page.locator("#qc-computed")).to_contain_text("the last report carried on")


def test_a_report_that_fails_says_failed_and_why_where_the_figures_would_be(page, acme, eager):
    data = Data(acme.organization, 2)
    people = [member(acme.organization, Role.ANNOTATOR, email=f"ann{n}@x.org") for n in range(2)]
    for n in range(2):
        data.judge(people[0], n, 0)
        data.judge(people[1], n, 1)
    break_display_orders(data.project)
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{data.project.pk}/qc/")
    page.get_by_role("button", name="Compute a fresh report").click()
    expect(page.locator("#qc-failed")).to_contain_text(
        "Failed: The report could not be computed: the database refused one of its queries"
    )
    expect(page.locator("#qc-failed")).to_have_class(re.compile(r"\bmessage error\b"))
    expect(page.get_by_text("No report yet")).to_have_count(0)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "qc-failed.png"), full_page=True)
