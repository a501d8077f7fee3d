import pytest
from django.contrib.auth import get_user_model
from django.core import mail
from django.test import Client
from django.urls import reverse
from django_scopes import scopes_disabled

from tasks.models import Invitation, Membership, Role
from tests.factories import member
from tests.tasks.test_accounts import log_in, set_password_through_link

pytestmark = pytest.mark.django_db
User = get_user_model()


def add_member(client, **data):
    return client.post(reverse("admin:tasks_membership_add"), {"role": "annotator", **data})


def test_lead_adds_a_new_annotator_who_gets_an_invitation(
    acme, as_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = add_member(as_user(acme.lead), email="newbie@example.com", first_name="Ada")
    assert response.status_code == 302
    user = User.objects.get(email="newbie@example.com")
    assert not user.has_usable_password() and user.first_name == "Ada"
    with scopes_disabled():
        assert not Membership.objects.filter(user=user).exists()  # not before accepting
        invitation = Invitation.objects.get(user=user)
    assert len(mail.outbox) == 1 and "newbie@example.com" in mail.outbox[0].to
    client = Client()
    set_password_through_link(client, mail.outbox[0].body, "my own passphrase 42")
    assert log_in(client, "newbie@example.com", "my own passphrase 42").status_code == 302
    client.post(reverse("tasks:invitations"), {"invitation": invitation.pk, "answer": "accept"})
    assert acme.project.name in client.get("/").content.decode()


def test_adding_an_existing_account_invites_it_and_changes_nothing_of_it(
    acme, globex, as_user, django_capture_on_commit_callbacks
):
    password = globex.annotator.password
    with django_capture_on_commit_callbacks(execute=True):
        response = add_member(
            as_user(acme.lead), email=globex.annotator.email, first_name="Renamed"
        )
    assert response.status_code == 302
    assert [m.to for m in mail.outbox] == [[globex.annotator.email]]
    globex.annotator.refresh_from_db()
    assert globex.annotator.password == password and globex.annotator.first_name == ""
    with scopes_disabled():
        assert Membership.objects.filter(user=globex.annotator).count() == 1
        assert Invitation.objects.filter(user=globex.annotator).count() == 1


def test_adding_a_member_twice_is_a_form_error(acme, as_user):
    response = add_member(as_user(acme.lead), email=acme.annotator.email)
    assert response.status_code == 200
    assert "already a member" in response.content.decode()


def test_lead_cannot_make_an_admin(acme, as_user):
    response = add_member(as_user(acme.lead), email="boss@example.com", role="admin")
    assert response.status_code == 200  # the form refuses the choice
    assert not User.objects.filter(email="boss@example.com").exists()


def test_lead_cannot_change_or_remove_an_admin(acme, as_user):
    boss = member(acme.organization, Role.ADMIN)
    with scopes_disabled():
        membership = Membership.objects.get(user=boss)
    client = as_user(acme.lead)
    url = reverse("admin:tasks_membership_change", args=[membership.pk])
    client.post(url, {"role": "annotator"})
    client.post(reverse("admin:tasks_membership_delete", args=[membership.pk]), {"post": "yes"})
    with scopes_disabled():
        assert Membership.objects.get(pk=membership.pk).role == Role.ADMIN


def test_admin_can_invite_an_admin(acme, as_user):
    boss = member(acme.organization, Role.ADMIN)
    response = add_member(as_user(boss), email="second@example.com", role="admin")
    assert response.status_code == 302
    with scopes_disabled():
        assert Invitation.objects.get(user__email="second@example.com").role == Role.ADMIN


def test_a_new_link_can_be_sent_to_members_without_a_password(acme, as_user):
    late = member(acme.organization)  # added before invitations needed accepting
    late.set_unusable_password()
    late.save()
    with scopes_disabled():
        ids = [Membership.objects.get(user=u).pk for u in (late, acme.annotator)]
    as_user(acme.lead).post(
        reverse("admin:tasks_membership_changelist"),
        {"action": "resend_invitation", "_selected_action": ids},
    )
    assert [m.to for m in mail.outbox] == [[late.email]]


def test_resending_says_the_same_whether_or_not_the_person_logged_in(acme, as_user):
    never = member(acme.organization)
    never.set_unusable_password()
    never.save()
    acme.annotator.last_login = "2026-01-01T00:00Z"
    acme.annotator.save()
    client = as_user(acme.lead)
    shown = []
    for person in (never, acme.annotator):
        with scopes_disabled():
            pk = Membership.objects.get(user=person).pk
        response = client.post(
            reverse("admin:tasks_membership_changelist"),
            {"action": "resend_invitation", "_selected_action": [pk]},
            follow=True,
        )
        shown.append([str(m) for m in response.context["messages"]])
    assert shown[0] == shown[1] and len(shown[0]) == 1


def test_adding_reports_the_same_words_for_known_and_new_addresses(acme, globex, as_user):
    client = as_user(acme.lead)
    words = []
    for email in (globex.annotator.email, "fresh@example.com"):
        response = add_member(client, email=email)
        shown = [str(m) for m in client.get(response["Location"]).context["messages"]]
        words.append(shown[0].replace(email, "X"))
    assert words[0] == words[1]


def test_lead_admin_password_change_goes_to_allauth(acme, as_user):
    response = as_user(acme.lead).get("/admin/password_change/")
    assert response.status_code == 302 and response["Location"] == "/accounts/password/change/"
