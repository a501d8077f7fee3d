"""A lead exports the project's pairs from the browser and downloads the TRL file."""

import hashlib
import json
from pathlib import Path

import pytest
from django_scopes import scopes_disabled
from playwright.sync_api import expect

from exports.models import Export
from project.celery import app as celery_app
from tasks.models import Role
from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD, member
from tests.qc.test_report import Data

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"


@pytest.fixture
def eager():
    celery_app.conf.task_always_eager = True  # the export job runs in the request
    yield
    celery_app.conf.task_always_eager = False


def test_lead_exports_and_downloads_a_trl_file(page, acme, eager, tmp_path):
    data = Data(acme.organization, 10)
    a = member(acme.organization, Role.ANNOTATOR, email="a@x.org")
    b = member(acme.organization, Role.ANNOTATOR, email="b@x.org")
    for n in range(10):
        data.judge(a, n, 0)
        data.judge(b, n, 0 if n < 8 else 1, swapped=True)
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/projects/{data.project.pk}/")
    page.get_by_role("link", name="Exports").click()
    expect(page.locator(".empty")).to_contain_text("No exports yet")
    page.get_by_label("Format").select_option("trl")
    page.get_by_label("Across annotators").select_option("unanimous")
    page.get_by_label("Split by prompt").select_option("70/30")
    page.get_by_role("button", name="Export").click()
    row = page.locator("#exports tbody tr").first
    expect(row).to_contain_text("Succeeded")
    with scopes_disabled():
        export = Export.objects.get()
    # 8 unanimous items; 70/30 of the 10 judged prompts (7 and 3) decides where each goes
    assert sum(export.counts.values()) == 8 and set(export.counts) == {"train", "validation"}
    shown = ", ".join(f"{split} {n}" for split, n in export.counts.items())
    expect(row).to_contain_text(shown)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "exports-page.png"), full_page=True)
    with page.expect_download() as download:
        row.get_by_role("link", name="train.jsonl", exact=True).click()
    saved = tmp_path / "train.jsonl"
    download.value.save_as(saved)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(lines) == export.counts["train"] and set(lines[0]) == {
        "prompt",
        "chosen",
        "rejected",
    }
    entry = next(f for f in export.files if f["name"] == "train.jsonl")
    assert hashlib.sha256(saved.read_bytes()).hexdigest() == entry["sha256"]
