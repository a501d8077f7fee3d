import re

import pytest
from playwright.sync_api import expect

from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD, MembershipFactory

pytestmark = pytest.mark.e2e


def test_lead_logs_in_and_sees_only_own_projects(page, acme, globex):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    expect(page.get_by_role("heading", name=re.compile("Projects"))).to_be_visible()
    expect(page.get_by_role("link", name=acme.project.name)).to_be_visible()
    expect(page.get_by_text(globex.project.name)).to_have_count(0)
    page.get_by_role("link", name=acme.project.name).click()
    expect(page.get_by_text("Pick the more helpful response.")).to_be_visible()


def test_lead_opens_the_admin_scoped_to_their_organization(page, acme, globex):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.get_by_role("link", name="Admin").click()
    expect(page.locator("#site-name")).to_contain_text("Acme")
    page.goto("/admin/tasks/project/")
    expect(page.get_by_role("link", name=acme.project.name)).to_be_visible()
    expect(page.get_by_text(globex.project.name)).to_have_count(0)


def test_annotator_has_no_admin_link_and_is_refused_there(page, acme):
    log_in_through_the_form(page, acme.annotator.email, PASSWORD)
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    response = page.goto("/admin/")
    assert response.status == 403
    page.problems.clear()  # the browser logs the 403 itself


def test_member_of_two_organizations_switches_in_the_header(page, acme, globex):
    MembershipFactory(user=acme.lead, organization=globex.organization)
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    expect(page.get_by_role("link", name=acme.project.name)).to_be_visible()
    page.get_by_label("Organization").select_option(label="Globex (Annotator)")
    page.get_by_role("button", name="Switch").click()
    expect(page.get_by_role("link", name=globex.project.name)).to_be_visible()
    expect(page.get_by_text(acme.project.name)).to_have_count(0)


def test_api_docs_render_from_local_assets_under_the_csp(page, acme):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto("/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Chosen API")
    expect(page.get_by_text("/api/v1/projects/", exact=True).first).to_be_visible()


def test_wrong_password_shows_an_error_and_stays_logged_out(page, acme):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(acme.lead.email)
    page.get_by_label("Password").fill("not it")
    page.get_by_role("button", name="Sign In").click()
    expect(page.get_by_text(re.compile("not correct"))).to_be_visible()
