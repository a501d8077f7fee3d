"""The audit trail: every door writes an event, nobody can change one, leads read and
download their organization's. Also the abuse limits around it: MFA required per
organization and API throttling per token."""

import csv
import io
import json

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from annotation.models import Judgment
from tasks.audit import Action
from tasks.models import ApiToken, AuditEvent, AuditTrailIsAppendOnly, Membership, Project, Role
from tests.annotation.test_adjudication import disputed  # noqa: F401 (fixture)
from tests.annotation.test_workspace import FRAGMENT, current, page, with_items
from tests.exports.test_api import jobs_here  # noqa: F401 (fixture)
from tests.factories import PASSWORD, UserFactory, api_token, member
from tests.tasks.test_accounts import log_in

pytestmark = pytest.mark.django_db


def events(organization=None, **filters):
    with scopes_disabled():
        found = AuditEvent.objects.filter(**filters).order_by("id")
        if organization is not None:
            found = found.filter(organization=organization)
        return list(found)


def actions(organization, **filters):
    return [e.action for e in events(organization, **filters)]


# --- what is recorded ------------------------------------------------------------------------


def test_log_in_log_out_and_failed_log_in_are_recorded_with_the_address(client, acme, globex):
    client.post(
        reverse("account_login"),
        {"login": acme.lead.email, "password": "wrong password"},
        REMOTE_ADDR="10.1.2.3",
    )
    log_in(client, "nobody@example.com", "whatever")
    log_in(client, acme.lead.email)
    client.post(reverse("account_logout"))
    mine = events(acme.organization, object_type="user", object_id=str(acme.lead.pk))
    assert [e.action for e in mine] == [Action.LOGIN_FAILED, Action.LOGIN, Action.LOGOUT]
    failed = mine[0]
    assert (failed.actor_id, failed.actor_label, failed.ip) == (None, acme.lead.email, "10.1.2.3")
    assert "wrong password" not in json.dumps([failed.changes, failed.data])
    assert (mine[1].actor_id, mine[1].ip) == (acme.lead.pk, "127.0.0.1")
    # an unknown address belongs to no organization: no lead sees it
    (unknown,) = events(object_repr="nobody@example.com")
    assert unknown.organization_id is None and unknown.action == Action.LOGIN_FAILED
    assert Action.LOGIN_FAILED not in actions(globex.organization)


def test_members_and_roles_through_the_admin(acme, as_user):
    admin = as_user(acme.lead)
    added = admin.post(
        reverse("admin:tasks_membership_add"),
        {"organization": acme.organization.pk, "email": "new@acme.org", "role": "annotator"},
    )
    assert added.status_code == 302, added.content
    # Adding invites; the person becomes a member by accepting (tests/tasks/test_invitations).
    (invited,) = events(acme.organization, action=Action.INVITATION_SENT)
    assert (invited.actor_id, invited.object_repr) == (acme.lead.pk, "new@acme.org")
    newcomer = as_user(UserFactory._meta.model.objects.get(email="new@acme.org"))
    newcomer.post(
        reverse("tasks:invitations"), {"invitation": invited.object_id, "answer": "accept"}
    )
    with scopes_disabled():
        membership = Membership.objects.get(user__email="new@acme.org")
    change = reverse("admin:tasks_membership_change", args=[membership.pk])
    assert admin.post(change, {"role": "lead"}).status_code == 302
    delete = reverse("admin:tasks_membership_delete", args=[membership.pk])
    assert admin.post(delete, {"post": "yes"}).status_code == 302
    trail = events(acme.organization, object_type="membership", object_id=str(membership.pk))
    assert [(e.action, e.changes, e.actor_id) for e in trail] == [
        (Action.MEMBER_ADDED, {"role": [None, "annotator"]}, membership.user_id),
        (Action.MEMBER_ROLE_CHANGED, {"role": ["annotator", "lead"]}, acme.lead.pk),
        (Action.MEMBER_REMOVED, {"role": ["lead", None]}, acme.lead.pk),
    ]
    assert all(e.object_repr == "new@acme.org" for e in trail)


def test_project_and_question_schema_changes_keep_before_and_after(acme):
    before = acme.project.questions
    with scope(organization=acme.organization):
        project = Project.objects.get(pk=acme.project.pk)
        project.name = "Renamed"
        project.save()
        project.questions = [*before, {"name": "tone", "kind": "choice", "options": ["a", "b"]}]
        project.save()
        project.save()  # nothing changed: nothing recorded
    trail = events(acme.organization, object_type="project", object_id=str(acme.project.pk))
    assert [e.action for e in trail] == [
        Action.PROJECT_CREATED,
        Action.PROJECT_UPDATED,
        Action.PROJECT_SCHEMA_CHANGED,
    ]
    assert trail[1].changes == {"name": ["Acme project", "Renamed"]}
    assert trail[2].changes["questions"][0] == before
    assert trail[2].changes["questions"][1][-1]["name"] == "tone"
    assert trail[2].changes["schema_version"] == [1, 2]


def test_tokens_created_used_and_revoked(acme, client, as_user):
    token, raw = api_token(acme.organization)
    headers = {"HTTP_AUTHORIZATION": f"Bearer {raw}", "REMOTE_ADDR": "10.9.8.7"}
    for _ in range(3):
        assert client.get("/api/v1/projects/", **headers).status_code == 200
    as_user(acme.lead).post(
        reverse("admin:tasks_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    trail = events(acme.organization, object_type="apitoken")
    # used once, not three times: a use is recorded once an hour, last_used_at each minute
    assert [e.action for e in trail] == [
        Action.TOKEN_CREATED,
        Action.TOKEN_USED,
        Action.TOKEN_REVOKED,
    ]
    used = trail[1]
    assert (used.actor_label, used.ip) == (f"token:{token.key_prefix}", "10.9.8.7")
    assert trail[2].actor_id == acme.lead.pk
    with scopes_disabled():
        assert ApiToken.objects.get(pk=token.pk).last_used_at is not None


def test_imports_and_generation_jobs(acme, as_user, settings):
    from tests.tasks.test_tenant_isolation import generation_job

    client = as_user(acme.lead)
    upload = io.BytesIO(b'{"id": "p1", "text": "Hello?"}\n')
    upload.name = "prompts.jsonl"
    response = client.post(f"/api/v1/projects/{acme.project.pk}/imports", {"file": [upload]})
    assert response.status_code == 201, response.content
    assert actions(acme.organization, object_type="import") == [
        Action.IMPORT_STARTED,
        Action.IMPORT_SUCCEEDED,
    ]
    started = events(acme.organization, action=Action.IMPORT_STARTED)[0]
    assert started.actor_id == acme.lead.pk and started.data["files"] == ["prompts.jsonl"]
    job = generation_job(acme)
    assert client.post(f"/api/v1/generation-jobs/{job.pk}/cancel").status_code == 200
    assert client.post(f"/api/v1/generation-jobs/{job.pk}/cancel").status_code == 200  # again
    assert actions(acme.organization, object_type="generation") == [
        Action.GENERATION_STARTED,
        Action.GENERATION_CANCELLED,
    ]


def test_judgment_submit_edit_and_undo_with_before_and_after(acme, as_user):
    with_items(acme.project)
    client = as_user(acme.annotator)
    page(client, acme.project)
    first = current(acme.annotator)
    client.post(
        f"/projects/{acme.project.pk}/annotate/{first.pk}/submit/",
        {"preference": "Response A is better", "reasoning": "first"},
        **FRAGMENT,
    )
    with scopes_disabled():
        judgment = Judgment.objects.get()
    edit = f"/projects/{acme.project.pk}/history/{judgment.pk}/"
    assert client.post(edit, {"preference": "Tie", "reasoning": "second"}).status_code == 302
    client.post(f"/projects/{acme.project.pk}/annotate/undo/", **FRAGMENT)
    trail = events(acme.organization, object_type="judgment")
    assert [e.action for e in trail] == [
        Action.JUDGMENT_CREATED,
        Action.JUDGMENT_EDITED,
        Action.JUDGMENT_UNDONE,
    ]
    assert all(e.actor_id == acme.annotator.pk for e in trail)
    assert trail[0].changes["reasoning"] == [None, "first"]
    assert trail[1].changes["reasoning"] == ["first", "second"]
    assert trail[1].changes["outcome"] == ["preferred", "tie"]
    assert trail[2].changes["reasoning"] == ["second", None]


def test_adjudication_and_exports_with_every_download(disputed, acme, as_user, jobs_here):  # noqa: F811
    data = disputed
    item, pair = data.items[1]
    client = as_user(acme.lead)
    url = reverse("annotation:review_item", args=[data.project.pk, item.pk])
    client.post(url, {"action": "decide", "decision": pair[1].pk, "note": "B is right."})
    (decided,) = events(acme.organization, action=Action.ADJUDICATION_DECIDED)
    assert decided.object_id == str(item.pk) and decided.changes["chosen"] == [None, pair[1].pk]
    with jobs_here.run():
        response = client.post(
            f"/api/v1/projects/{data.project.pk}/exports",
            {"format": "trl", "options": {"policy": "all", "ratios": [1.0]}},
            content_type="application/json",
        )
    export_id = response.json()["id"]
    for _ in range(2):
        assert client.get(f"/api/v1/exports/{export_id}/files/train.jsonl").status_code == 200
    page_download = reverse("exports:download", args=[data.project.pk, export_id, "README.md"])
    assert client.get(page_download).status_code == 200
    trail = events(acme.organization, object_type="export")
    assert [e.action for e in trail] == [
        Action.EXPORT_CREATED,
        Action.EXPORT_SUCCEEDED,
        Action.EXPORT_DOWNLOADED,
        Action.EXPORT_DOWNLOADED,
        Action.EXPORT_DOWNLOADED,
    ]
    assert [e.data.get("file") for e in trail[2:]] == ["train.jsonl", "train.jsonl", "README.md"]


# --- append-only -----------------------------------------------------------------------------


def test_nobody_can_change_or_delete_an_event_through_the_orm_or_sql(acme):
    with scopes_disabled():
        event = AuditEvent.objects.filter(organization=acme.organization).first()
        event.action = "forged"
        with pytest.raises(AuditTrailIsAppendOnly):
            event.save()
        with pytest.raises(AuditTrailIsAppendOnly):
            event.delete()
        with pytest.raises(AuditTrailIsAppendOnly):
            AuditEvent.objects.filter(pk=event.pk).update(action="forged")
        with pytest.raises(AuditTrailIsAppendOnly):
            AuditEvent.objects.filter(pk=event.pk).delete()
    for sql in (
        "UPDATE tasks_auditevent SET action = 'forged' WHERE id = %s",
        "DELETE FROM tasks_auditevent WHERE id = %s",
    ):
        with (
            pytest.raises(DatabaseError, match="append-only"),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(sql, [event.pk])
    assert events(pk=event.pk)[0].action == Action.PROJECT_CREATED


def test_nobody_can_change_or_delete_an_event_through_the_admin_or_the_api(acme, as_user):
    event = events(acme.organization)[0]
    root = UserFactory(is_superuser=True, is_staff=True)
    for user in (acme.lead, root):
        admin = as_user(user)
        change = reverse("admin:tasks_auditevent_change", args=[event.pk])
        page_html = admin.get(change)
        assert page_html.status_code == 200 and 'name="_save"' not in page_html.content.decode()
        assert admin.post(change, {"action": "forged"}).status_code == 403
        delete = reverse("admin:tasks_auditevent_delete", args=[event.pk])
        assert admin.post(delete, {"post": "yes"}).status_code == 403
        assert admin.get(reverse("admin:tasks_auditevent_add")).status_code == 403
    api = as_user(acme.lead)
    assert api.post("/api/v1/audit-events/", {"action": "x"}).status_code == 405
    assert api.delete(f"/api/v1/audit-events/{event.pk}/").status_code == 404  # no such route
    assert events(pk=event.pk)[0].action == event.action


# --- reading the trail -----------------------------------------------------------------------


@pytest.fixture
def trail(acme, globex, client):
    """Log-ins of both organizations' leads and a project change in Acme."""
    for tenant in (acme, globex):
        log_in(client, tenant.lead.email)
        client.post(reverse("account_logout"))
    with scope(organization=acme.organization):
        project = Project.objects.get(pk=acme.project.pk)
        project.name = '=HYPERLINK("http://evil")'
        project.save()
    return acme


def test_leads_browse_and_filter_their_organizations_trail(trail, acme, globex, as_user):
    client = as_user(acme.lead)
    html = client.get(reverse("tasks:audit")).content.decode()
    assert acme.lead.email in html and globex.lead.email not in html
    assert "Logged in" in html and "Project changed" in html
    shown = client.get(reverse("tasks:audit"), {"action": Action.LOGIN}).content.decode()
    logins = len(events(acme.organization, action=Action.LOGIN))  # as_user logs in too
    assert shown.count("<tr data-event=") == shown.count('data-action="auth.login"') == logins
    by_object = client.get(
        reverse("tasks:audit"), {"object_type": "project", "object_id": acme.project.pk}
    ).content.decode()
    assert 'data-action="project.updated"' in by_object
    assert 'data-action="auth.login"' not in by_object
    by_actor = client.get(reverse("tasks:audit"), {"actor": acme.lead.email[:6]}).content.decode()
    assert 'data-action="auth.logout"' in by_actor
    future = client.get(reverse("tasks:audit"), {"since": "2999-01-01"}).content.decode()
    assert 'id="audit-empty"' in future
    bad = client.get(reverse("tasks:audit"), {"since": "yesterday"})
    assert bad.status_code == 200 and "Enter a valid date." in bad.content.decode()
    api = client.get("/api/v1/audit-events/", {"action": Action.LOGIN}).json()
    assert {e["actor"] for e in api["results"]} == {acme.lead.email}
    assert len(api["results"]) == logins
    smuggled = client.get("/api/v1/audit-events/", {"actor__password__startswith": "p"})
    assert smuggled.status_code == 400
    assert as_user(acme.annotator).get(reverse("tasks:audit")).status_code == 403
    assert as_user(acme.annotator).get(reverse("tasks:audit_csv")).status_code == 403


def test_leads_download_the_trail_as_csv_and_jsonl(trail, acme, globex, as_user):
    client = as_user(acme.lead)
    response = client.get(reverse("tasks:audit_csv"), {"object_type": "project"})
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["action"] for r in rows] == [Action.PROJECT_CREATED, Action.PROJECT_UPDATED]
    # a cell a spreadsheet would run as a formula is plain text
    assert rows[1]["object"].startswith("'=HYPERLINK")
    lines = b"".join(client.get(reverse("tasks:audit_jsonl")).streaming_content).splitlines()
    records = [json.loads(line) for line in lines]
    assert {r["actor"] for r in records if r["action"] == "auth.login"} == {acme.lead.email}
    assert all(globex.lead.email not in json.dumps(r) for r in records)
    # the download itself is on the record
    assert actions(acme.organization, action=Action.AUDIT_EXPORTED) == [Action.AUDIT_EXPORTED] * 2


# --- abuse limits ----------------------------------------------------------------------------


def test_an_organization_can_require_two_factor(acme, client, as_user):
    admin = member(acme.organization, Role.ADMIN)
    security = reverse("tasks:organization_security")
    assert as_user(acme.lead).post(security, {"require_mfa": "on"}).status_code == 403
    assert as_user(admin).post(security, {"require_mfa": "on"}).status_code == 302
    (changed,) = events(acme.organization, action=Action.ORGANIZATION_UPDATED)
    assert changed.changes == {"require_mfa": [False, True]}
    annotator = as_user(acme.annotator)
    blocked = annotator.get(reverse("annotation:home"))
    assert blocked.status_code == 302 and blocked["Location"] == reverse("mfa_activate_totp")
    api = annotator.get("/api/v1/projects/")
    assert api.status_code == 403 and api.json()["errors"][0]["code"] == "mfa_required"
    assert annotator.get(reverse("mfa_activate_totp")).status_code in (200, 302)
    # an organization token is not a person: unaffected
    raw = api_token(acme.organization)[1]
    assert client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    TOTP.activate(acme.annotator, generate_totp_secret())
    assert annotator.get(reverse("annotation:home")).status_code == 200
    assert as_user(admin).get(security).status_code == 302  # the admin needs one too
    TOTP.activate(admin, generate_totp_secret())
    listing = as_user(admin).get(security).content.decode()
    assert acme.lead.email in listing and "set up" in listing


def test_api_calls_are_throttled_per_token(acme, client, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"token": "3/min", "user": "2/min"},
    }
    first = {"HTTP_AUTHORIZATION": f"Bearer {api_token(acme.organization, 'a')[1]}"}
    second = {"HTTP_AUTHORIZATION": f"Bearer {api_token(acme.organization, 'b')[1]}"}
    assert [client.get("/api/v1/projects/", **first).status_code for _ in range(4)] == [
        200,
        200,
        200,
        429,
    ]
    refused = client.get("/api/v1/projects/", **first)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert "Request was throttled" in refused.json()["errors"][0]["message"]
    assert client.get("/api/v1/projects/", **second).status_code == 200  # its own budget
    log_in(client, acme.lead.email, PASSWORD)
    statuses = [client.get("/api/v1/projects/").status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
