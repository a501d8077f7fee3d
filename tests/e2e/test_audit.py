"""A lead renames a project in the admin, then finds the change in the audit trail by its
filters and downloads it, in Chromium; a hostile name stays text."""

import csv
import io
import json
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-results"
HOSTILE = '<img src=x onerror="window.__xss=1"> " onmouseover="window.__xss=2" x="'


def test_lead_finds_a_change_in_the_trail_and_downloads_it(page, acme, tmp_path):
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto(f"/admin/tasks/project/{acme.project.pk}/change/")
    page.locator("#id_name").fill(HOSTILE)
    page.locator("input[name=_save]").click()
    page.wait_for_url("**/admin/tasks/project/")
    page.goto("/")
    page.get_by_role("link", name="Audit trail").click()
    page.wait_for_load_state()
    page.get_by_label("Action").select_option("project.updated")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    rows = page.locator("#audit-events tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(acme.lead.email)
    expect(rows.first).to_contain_text("Project changed")
    expect(rows.first).to_contain_text(f"name: Acme project → {HOSTILE[:59]}")
    rows.first.hover()
    page.locator("#audit-events td.changes").first.hover()
    assert page.evaluate("window.__xss") is None and dialogs == []
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "audit-trail.png"), full_page=True)
    with page.expect_download() as download:
        page.locator("#audit-csv").click()
    path = tmp_path / "audit.csv"
    download.value.save_as(path)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["action"], r["actor"]) for r in rows] == [("project.updated", acme.lead.email)]
    assert json.loads(rows[0]["changes"]) == {"name": ["Acme project", HOSTILE]}


def test_lead_verifies_the_chain_and_sees_where_it_was_broken(page, acme):
    """Verify says "Intact" with the newest hash; after someone with the owner's rights
    rewrites an entry in SQL, Verify names that entry."""
    from django.db import connection
    from django_scopes import scopes_disabled

    from tasks.models import AuditEvent

    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto("/audit/")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_load_state()
    expect(page.locator("#audit-intact")).to_contain_text("Intact.")
    head = page.locator("#audit-head-hash").inner_text()
    assert len(head) == 64
    expect(page.locator("#audit-events tbody tr").first).to_contain_text("Audit trail verified")
    with scopes_disabled():
        target = AuditEvent.objects.filter(organization=acme.organization).order_by("id")[1]
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE tasks_auditevent DISABLE TRIGGER tasks_auditevent_append_only")
        cursor.execute(
            "UPDATE tasks_auditevent SET actor_label = 'someone else' WHERE id = %s", [target.pk]
        )
        cursor.execute("ALTER TABLE tasks_auditevent ENABLE TRIGGER tasks_auditevent_append_only")
    page.get_by_role("button", name="Verify").click()
    page.wait_for_load_state()
    broken = page.locator("#audit-broken")
    expect(broken).to_contain_text(f"Broken at entry #{target.pk}")
    expect(broken).to_contain_text("changed after it was written")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "audit-verify-broken.png"), full_page=True)
