"""Membership by consent: a lead who adds someone's e-mail invites them; the person, once
logged in, accepts or declines. Until they accept, the inviting organization sees nothing
of them. And a person's log-ins belong to the one organization they work in."""

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from tasks.audit import Action
from tasks.models import AuditEvent, Invitation, Membership, Role
from tests.factories import PASSWORD, api_token, member
from tests.tasks.test_accounts import log_in, set_password_through_link

pytestmark = pytest.mark.django_db

AUTH_ACTIONS = {Action.LOGIN, Action.LOGOUT, Action.LOGIN_FAILED}


def invite(client, email, role="annotator"):
    return client.post(reverse("admin:tasks_membership_add"), {"email": email, "role": role})


def memberships(user):
    with scopes_disabled():
        return {m.organization.name: m.role for m in Membership.objects.filter(user=user)}


def trail_about(organization, user):
    """Every event of the organization that the person did or that is about their account
    (their log-ins, log-outs and failed log-ins)."""
    with scopes_disabled():
        events = AuditEvent.objects.filter(organization=organization)
        return [
            e.action
            for e in events.order_by("id")
            if e.actor_id == user.pk or (e.object_type == "user" and e.object_id == str(user.pk))
        ]


def answer(client, answer_, organization):
    with scopes_disabled():
        invitation = Invitation.objects.get(organization=organization)
    return client.post(
        reverse("tasks:invitations"), {"invitation": invitation.pk, "answer": answer_}
    )


def result_rows(html: str) -> str:
    """The admin changelist's table of members (not the invitations below it)."""
    match = re.search(r'<table id="result_list".*?</table>', html, re.S)
    return match.group(0) if match else ""


@pytest.fixture
def invited(acme, globex, as_user, django_capture_on_commit_callbacks):
    """Acme's lead has added Globex's annotator by e-mail."""
    with django_capture_on_commit_callbacks(execute=True):
        response = invite(as_user(acme.lead), globex.annotator.email)
    assert response.status_code == 302
    return globex.annotator


def test_adding_another_organizations_user_invites_them_instead(acme, globex, invited):
    assert memberships(invited) == {"Globex": Role.ANNOTATOR}
    with scopes_disabled():
        invitation = Invitation.objects.get(user=invited)
    assert (invitation.organization, invitation.role) == (acme.organization, Role.ANNOTATOR)
    assert invitation.invited_by == acme.lead and invitation.accepted_at is None
    assert [m.to for m in mail.outbox] == [[invited.email]]
    body = mail.outbox[0].body
    assert "http://testserver/invitations/" in body and "Acme" in body
    assert "password/reset" not in body  # their account is theirs: no link to reset it


def test_invited_person_logs_in_and_sees_the_invitation(client, invited):
    assert log_in(client, invited.email).status_code == 302
    home = client.get("/").content.decode()
    assert 'id="invitations-link"' in home and "Invitations (1)" in home
    page = client.get(reverse("tasks:invitations")).content.decode()
    assert "Acme" in page and 'value="accept"' in page and 'value="decline"' in page
    assert "csrfmiddlewaretoken" in page


def test_before_accepting_the_inviting_organization_sees_nothing_of_the_person(
    client, acme, invited, as_user
):
    log_in(client, invited.email, "a wrong password")
    log_in(client, invited.email)
    client.post(reverse("account_logout"))
    lead = as_user(acme.lead)
    members = lead.get(reverse("admin:tasks_membership_changelist")).content.decode()
    assert acme.annotator.email in result_rows(members)
    assert invited.email not in result_rows(members)
    assert invited.email not in lead.get(reverse("tasks:organization_security")).content.decode()
    assert trail_about(acme.organization, invited) == []
    shown = lead.get(reverse("tasks:audit")).content.decode()
    rows = re.findall(r'<tr data-event="\d+" data-action="([^"]+)">(.*?)</tr>', shown, re.S)
    assert [action for action, row in rows if invited.email in row] == [Action.INVITATION_SENT]
    _, key = api_token(acme.organization)
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}").get("/api/v1/audit-events/").json()
    about_them = [
        e for e in api["results"] if e["actor"] == invited.email or e["action"] in AUTH_ACTIONS
    ]
    # Only the lead's own log-in (as_user) is Acme's; the invitation is the one mention.
    assert {(e["action"], e["actor"]) for e in about_them} == {(Action.LOGIN, acme.lead.email)}
    mentions = [e["action"] for e in api["results"] if e["object"] == invited.email]
    assert mentions == [Action.INVITATION_SENT]


def test_accepting_makes_a_member_with_the_role_and_works_there(
    client, acme, invited, as_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invite(as_user(acme.lead), invited.email, role="lead")  # sent again, as a lead now
    assert len(mail.outbox) == 2
    log_in(client, invited.email)
    response = answer(client, "accept", acme.organization)
    assert response.status_code == 302 and response["Location"] == "/"
    assert memberships(invited) == {"Globex": Role.ANNOTATOR, "Acme": Role.LEAD}
    assert acme.project.name in client.get("/").content.decode()
    assert "Invitations (" not in client.get("/").content.decode()
    with scopes_disabled():
        assert not Invitation.objects.pending().exists()
    assert trail_about(acme.organization, invited) == [
        Action.MEMBER_ADDED,
        Action.INVITATION_ACCEPTED,
    ]
    members = as_user(acme.lead).get(reverse("admin:tasks_membership_changelist"))
    assert invited.email in result_rows(members.content.decode())


def test_declining_leaves_no_membership_and_no_trace(client, acme, globex, invited, as_user):
    log_in(client, invited.email)
    response = answer(client, "decline", acme.organization)
    assert response.status_code == 302
    client.post(reverse("account_logout"))
    log_in(client, invited.email)
    assert memberships(invited) == {"Globex": Role.ANNOTATOR}
    with scopes_disabled():
        assert not Invitation.objects.filter(user=invited).exists()
        (declined,) = AuditEvent.objects.filter(
            organization=acme.organization, action=Action.INVITATION_DECLINED
        )
    assert (declined.actor_id, declined.ip, declined.user_agent) == (None, None, "")
    assert trail_about(acme.organization, invited) == []
    assert "Invitations (" not in client.get("/").content.decode()
    members = as_user(acme.lead).get(reverse("admin:tasks_membership_changelist"))
    assert invited.email not in members.content.decode()


def test_nobody_answers_another_persons_invitation(acme, invited, as_user):
    intruder = as_user(acme.annotator)
    assert answer(intruder, "accept", acme.organization).status_code == 404
    assert memberships(invited) == {"Globex": Role.ANNOTATOR}


def test_log_in_events_go_only_to_the_organization_in_use(client, acme, globex):
    both = globex.lead
    member(acme.organization)  # Acme sorts first by name: today's default
    with scopes_disabled():
        Membership.objects.create(user=both, organization=acme.organization, role=Role.LEAD)
    log_in(client, both.email)  # never chose one: the first by name, Acme
    client.post(reverse("tasks:switch_organization"), {"organization": globex.organization.pk})
    client.post(reverse("account_logout"))
    log_in(client, both.email, "a wrong password")
    assert trail_about(acme.organization, both) == [Action.LOGIN]
    assert trail_about(globex.organization, both) == [Action.LOGOUT, Action.LOGIN_FAILED]


def test_log_in_lands_in_the_organization_last_used(client, acme, globex):
    both = globex.annotator
    with scopes_disabled():
        Membership.objects.create(user=both, organization=acme.organization)
    log_in(client, both.email)
    assert acme.project.name in client.get("/").content.decode()  # first by name
    client.post(reverse("tasks:switch_organization"), {"organization": globex.organization.pk})
    client.post(reverse("account_logout"))
    fresh = Client()
    assert log_in(fresh, both.email, PASSWORD).status_code == 302
    home = fresh.get("/").content.decode()
    assert globex.project.name in home and acme.project.name not in home
    assert trail_about(globex.organization, both)[-1] == Action.LOGIN
    assert trail_about(acme.organization, both) == [Action.LOGIN]


def test_lead_opening_an_admins_membership_sees_it_read_only(acme, as_user):
    boss = member(acme.organization, Role.ADMIN)
    with scopes_disabled():
        membership = Membership.objects.get(user=boss)
    url = reverse("admin:tasks_membership_change", args=[membership.pk])
    response = as_user(acme.lead).get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert boss.email in html and 'name="role"' not in html


def test_a_new_address_is_invited_too_and_joins_on_accepting(
    acme, as_user, django_capture_on_commit_callbacks
):
    """A new address gets an account and a link to choose a password, and joins like
    anyone else: the lead cannot tell from the member list whether it had an account."""
    with django_capture_on_commit_callbacks(execute=True):
        invite(as_user(acme.lead), "newbie@example.com")
    with scopes_disabled():
        assert not Membership.objects.filter(user__email="newbie@example.com").exists()
    client = Client()
    set_password_through_link(client, mail.outbox[0].body, "my own passphrase 42")
    assert "http://testserver/invitations/" in mail.outbox[0].body
    log_in(client, "newbie@example.com", "my own passphrase 42")
    answer(client, "accept", acme.organization)
    assert acme.project.name in client.get("/").content.decode()


def withdraw_url(invitation) -> str:
    return reverse("admin:tasks_invitation_withdraw", args=[invitation.pk])


def test_a_lead_withdraws_a_waiting_invitation(client, acme, globex, invited, as_user):
    with scopes_disabled():
        invitation = Invitation.objects.get(user=invited)
    lead = as_user(acme.lead)
    listed = lead.get(reverse("admin:tasks_membership_changelist")).content.decode()
    assert f'action="{withdraw_url(invitation)}"' in listed
    assert lead.get(withdraw_url(invitation)).status_code == 405  # a link cannot do it
    response = lead.post(withdraw_url(invitation))
    assert response.status_code == 302
    with scopes_disabled():
        assert not Invitation.objects.filter(pk=invitation.pk).exists()
        (withdrawn,) = AuditEvent.objects.filter(action=Action.INVITATION_WITHDRAWN)
    assert (withdrawn.organization, withdrawn.actor, withdrawn.object_repr) == (
        acme.organization,
        acme.lead,
        invited.email,
    )
    log_in(client, invited.email)
    assert "Invitations (" not in client.get("/").content.decode()
    assert (
        client.post(
            reverse("tasks:invitations"), {"invitation": invitation.pk, "answer": "accept"}
        ).status_code
        == 404
    )
    assert memberships(invited) == {"Globex": Role.ANNOTATOR}
    assert lead.post(withdraw_url(invitation)).status_code == 404  # already gone


def test_withdrawing_is_for_the_inviting_organizations_leads_only(
    acme, globex, invited, as_user, django_capture_on_commit_callbacks
):
    with scopes_disabled():
        invitation = Invitation.objects.get(user=invited)
    assert as_user(globex.lead).post(withdraw_url(invitation)).status_code == 404
    assert as_user(acme.annotator).post(withdraw_url(invitation)).status_code in (302, 403)
    # A lead cannot take back an invitation to be an admin (they could not give it).
    admin = member(acme.organization, Role.ADMIN, email="boss@acme.test")
    with django_capture_on_commit_callbacks(execute=True):
        invite(as_user(admin), "new-admin@acme.test", role="admin")
    with scopes_disabled():
        as_admin = Invitation.objects.get(user__email="new-admin@acme.test")
    assert as_user(acme.lead).post(withdraw_url(as_admin)).status_code == 403
    with scopes_disabled():
        assert Invitation.objects.filter(pk__in=[invitation.pk, as_admin.pk]).count() == 2
        assert not AuditEvent.objects.filter(action=Action.INVITATION_WITHDRAWN).exists()
