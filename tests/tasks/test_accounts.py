import re

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret, hotp_value
from django.core import mail
from django.urls import reverse

from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db


def log_in(client, email, password=PASSWORD):
    return client.post(reverse("account_login"), {"login": email, "password": password})


def test_member_logs_in_with_email_and_password(client, acme):
    response = log_in(client, acme.annotator.email)
    assert response.status_code == 302 and response["Location"] == "/"
    assert acme.project.name in client.get("/").content.decode()


def test_sign_up_is_closed(client):
    response = client.get(reverse("account_signup"))
    assert "Sign Up Closed" in response.content.decode()
    client.post(
        reverse("account_signup"),
        {"email": "new@example.com", "password1": "x" * 12, "password2": "x" * 12},
    )
    from django.contrib.auth import get_user_model

    assert not get_user_model().objects.filter(email="new@example.com").exists()


def set_password_through_link(client, mail_body: str, password: str) -> None:
    """Follow the e-mailed link and choose a password, as the recipient would."""
    link = re.search(r"http://testserver(/accounts/password/reset/key/\S+)", mail_body)
    assert link, mail_body
    form = client.get(link.group(1), follow=True)
    assert form.status_code == 200 and "password1" in form.content.decode()
    done = client.post(form.redirect_chain[-1][0], {"password1": password, "password2": password})
    assert done.status_code == 302


def test_password_reset_mails_a_working_link(client, acme):
    client.post(reverse("account_reset_password"), {"email": acme.annotator.email})
    assert len(mail.outbox) == 1
    set_password_through_link(client, mail.outbox[0].body, "a new long passphrase")
    client.logout()
    assert log_in(client, acme.annotator.email, "a new long passphrase").status_code == 302


def test_repeated_failed_logins_are_rate_limited(client, acme):
    """Five wrong passwords lock the account for a while: the sixth attempt is refused even
    with the right password, from this browser or a fresh one (the limit is per account,
    not per session); another account logging in from the same address is unaffected."""
    from django.test import Client

    for _ in range(5):
        failed = log_in(client, acme.lead.email, "wrong password")
        assert failed.status_code == 200 and "_auth_user_id" not in client.session
    for browser in (client, Client()):
        blocked = log_in(browser, acme.lead.email, PASSWORD)
        assert blocked.status_code in (200, 429)
        assert "Too many failed login attempts" in blocked.content.decode()
        assert "_auth_user_id" not in browser.session
        assert browser.get("/")["Location"].startswith(reverse("account_login"))
    other = Client()
    assert log_in(other, acme.annotator.email).status_code == 302
    assert other.session["_auth_user_id"] == str(acme.annotator.pk)


def test_totp_two_factor_is_asked_after_the_password(client):
    user = UserFactory()
    secret = generate_totp_secret()
    TOTP.activate(user, secret)
    response = log_in(client, user.email)
    assert response["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session
    counter = int(__import__("time").time()) // 30
    code = f"{hotp_value(secret, counter):06d}"
    done = client.post(reverse("mfa_authenticate"), {"code": code})
    assert done.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_user_can_set_up_totp(client, acme):
    log_in(client, acme.lead.email)
    page = client.get(reverse("mfa_activate_totp"), follow=True)
    if page.redirect_chain:  # allauth asks for the password again before security changes
        assert "Confirm Access" in page.content.decode()
        page = client.post(
            page.redirect_chain[-1][0],
            {"password": PASSWORD, "next": reverse("mfa_activate_totp")},
            follow=True,
        )
    assert page.status_code == 200
    assert "data:image/svg+xml" in page.content.decode()  # the QR code, inline


def test_member_of_two_organizations_switches_between_them(client, acme, globex):
    from tasks.models import Role
    from tests.factories import MembershipFactory

    MembershipFactory(user=acme.lead, organization=globex.organization, role=Role.ANNOTATOR)
    log_in(client, acme.lead.email)
    first = client.get("/").content.decode()
    assert 'id="org-select"' in first and acme.project.name in first
    client.post(reverse("tasks:switch_organization"), {"organization": globex.organization.pk})
    second = client.get("/").content.decode()
    assert globex.project.name in second and acme.project.name not in second
    api = client.get("/api/v1/projects/").json()["results"]
    assert [p["name"] for p in api] == [globex.project.name]


def test_switching_to_an_organization_one_is_not_in_is_404(client, acme, globex):
    log_in(client, acme.lead.email)
    response = client.post(
        reverse("tasks:switch_organization"), {"organization": globex.organization.pk}
    )
    assert response.status_code == 404


def test_user_without_organization_is_told_whom_to_ask(client):
    user = UserFactory()
    log_in(client, user.email)
    response = client.get("/")
    assert response.status_code == 403
    assert "Ask your project lead" in response.content.decode()
    assert client.get("/api/v1/projects/").status_code == 403


# --- e-mail letter case ---------------------------------------------------------------------
# allauth lower-cases what is typed and looks it up exactly, so an address stored with
# capitals (invite_member keeps the local part's case) could not log in at all, in any case.


@pytest.mark.parametrize(
    ("stored", "typed"),
    [
        ("Ada.Lovelace@Example.org", "ada.lovelace@example.org"),
        ("Ada.Lovelace@Example.org", "Ada.Lovelace@Example.org"),
        ("ada.lovelace@example.org", "Ada.Lovelace@Example.org"),
        ("ADA.LOVELACE@EXAMPLE.ORG", "ada.Lovelace@example.ORG"),
    ],
)
def test_log_in_works_with_any_letter_case_of_the_email(client, stored, typed):
    user = UserFactory(email=stored)
    response = log_in(client, typed)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(user.pk)


def test_person_invited_with_capitals_logs_in_and_resets_in_any_case(client, acme):
    """The real path: a lead invites ``Ada.Lovelace@Example.org``; she sets her password
    through the e-mailed link and logs in typing it in lower case, and in capitals; a
    password reset asked in another case reaches her too."""
    from tasks.models import Role
    from tasks.services import invite_member

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("django.db.transaction.on_commit", lambda func, using=None: func())
        invitation = invite_member(
            organization=acme.organization,
            email="Ada.Lovelace@Example.org",
            role=Role.ANNOTATOR,
            base_url="http://testserver",
        )
    assert len(mail.outbox) == 1
    hers = "a long passphrase of hers"
    set_password_through_link(client, mail.outbox[0].body, hers)
    client.logout()
    assert log_in(client, "ada.lovelace@example.org", hers).status_code == 302
    assert client.session["_auth_user_id"] == str(invitation.user_id)
    client.logout()
    assert log_in(client, "ADA.LOVELACE@example.org", hers).status_code == 302
    client.logout()
    client.post(reverse("account_reset_password"), {"email": "ada.LOVELACE@EXAMPLE.ORG"})
    assert len(mail.outbox) == 2 and "password/reset/key/" in mail.outbox[1].body


def test_a_wrong_password_in_another_case_still_fails(client):
    UserFactory(email="Grace.Hopper@Example.org")
    response = log_in(client, "grace.hopper@example.org", "not the password")
    assert response.status_code == 200 and "_auth_user_id" not in client.session


def test_log_in_stores_the_address_lower_case_once(client):
    """The account's twin rows (allauth adds a lower-case one when it makes a password-reset
    token) become one, keeping primary and verified; User.email follows."""
    from allauth.account.models import EmailAddress

    user = UserFactory(email="Ada.Lovelace@Example.org")
    EmailAddress.objects.create(user=user, email="ada.lovelace@example.org", verified=False)
    assert log_in(client, "ada.lovelace@example.org").status_code == 302
    assert list(
        EmailAddress.objects.filter(user=user).values_list("email", "primary", "verified")
    ) == [("ada.lovelace@example.org", True, True)]
    user.refresh_from_db()
    assert user.email == "ada.lovelace@example.org"


def test_an_address_two_accounts_hold_in_different_cases_is_left_alone(client):
    from allauth.account.models import EmailAddress

    from tasks.accounts import store_lower_case

    UserFactory(email="Ada@Example.org")
    UserFactory(email="ADA@example.org")
    assert store_lower_case("ada@example.org") is False
    assert sorted(EmailAddress.objects.values_list("email", flat=True)) == [
        "ADA@example.org",
        "Ada@Example.org",
    ]
    assert log_in(client, "ada@example.org").status_code == 200


def test_migration_lowers_every_stored_address():
    """Migration 0010 runs ``store_lower_case`` for every address stored in another case."""
    import importlib

    from allauth.account.models import EmailAddress
    from django.apps import apps
    from django.contrib.auth import get_user_model

    migration = importlib.import_module("tasks.migrations.0010_email_addresses_lower_case")
    ada = UserFactory(email="Ada.Lovelace@Example.org")
    grace = UserFactory(email="GRACE@example.org")
    EmailAddress.objects.filter(user=grace).delete()  # as createsuperuser leaves it
    plain = UserFactory(email="plain@example.org")
    migration.lower_case_addresses(apps, None)
    assert set(EmailAddress.objects.values_list("user_id", "email")) == {
        (ada.pk, "ada.lovelace@example.org"),
        (plain.pk, "plain@example.org"),
    }
    assert get_user_model().objects.get(pk=grace.pk).email == "grace@example.org"
