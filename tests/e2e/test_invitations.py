"""A lead adds another organization's annotator in the admin; the annotator logs in,
finds the invitation in the header and accepts it, in Chromium."""

import pytest
from playwright.sync_api import expect

from tests.conftest import log_in_through_the_form
from tests.factories import PASSWORD

pytestmark = pytest.mark.e2e


def test_an_invited_person_accepts_and_works_in_the_organization(page, acme, globex):
    log_in_through_the_form(page, acme.lead.email, PASSWORD)
    page.goto("/admin/tasks/membership/add/")
    page.locator("#id_email").fill(globex.annotator.email)
    page.locator("input[name=_save]").click()
    page.wait_for_url("**/admin/tasks/membership/")
    expect(page.locator("#result_list")).not_to_contain_text(globex.annotator.email)
    expect(page.locator("#waiting-invitations")).to_contain_text(globex.annotator.email)
    page.goto("/")
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/accounts/login/")

    log_in_through_the_form(page, globex.annotator.email, PASSWORD)
    page.get_by_role("link", name="Invitations (1)").click()
    invitation = page.locator("#invitations li")
    expect(invitation).to_contain_text("Acme invites you as annotator")
    invitation.get_by_role("button", name="Accept").click()
    page.wait_for_url(lambda url: "/invitations/" not in url)
    expect(page.locator("main")).to_contain_text("You are a member of Acme now")
    expect(page.locator("main")).to_contain_text(acme.project.name)
