"""Issue 17, item 4: the doors an attack run found without an event. Each test does what a
person does (the page, the admin, the API, the account pages) and reads the event back:
its action, who, which organization, which object and what it says (never a secret)."""

import json

import pytest
from django.core import mail
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from qc.models import QCReport
from qc.services import run_report
from tasks.audit import Action
from tasks.models import ApiToken, GenerationRecipe, Project, Role
from tests.annotation.test_adjudication import disputed  # noqa: F401 (fixture)
from tests.factories import PASSWORD, MembershipFactory, UserFactory, api_token, member
from tests.qc.test_report import Data
from tests.tasks.test_accounts import set_password_through_link
from tests.tasks.test_audit import events
from tests.tasks.test_schema import admin_form_data

pytestmark = pytest.mark.django_db


# --- a. a discussion note ---------------------------------------------------------------------


def test_a_discussion_note_on_an_item_is_recorded(disputed, acme, as_user):  # noqa: F811
    item, _ = disputed.items[1]
    url = reverse("annotation:review_item", args=[disputed.project.pk, item.pk])
    response = as_user(acme.lead).post(url, {"action": "note", "text": "B leaks the address."})
    assert response.status_code == 302
    (noted,) = events(action=Action.NOTE_ADDED)
    assert noted.organization_id == acme.organization.pk
    assert (noted.actor_id, noted.actor_label) == (acme.lead.pk, acme.lead.email)
    assert (noted.object_type, noted.object_id) == ("item", str(item.pk))
    assert noted.data["project"] == disputed.project.pk
    assert noted.data["text"] == "B leaks the address."
    assert noted.data["note"] is not None


# --- b. a project's annotators, text_key and id_key -------------------------------------------


def test_a_projects_annotators_and_import_keys_changed_in_the_admin(acme, as_user):
    other = member(acme.organization, Role.ANNOTATOR, email="other@acme.org")
    client = as_user(acme.lead)
    change = reverse("admin:tasks_project_change", args=[acme.project.pk])
    data = admin_form_data(client.get(change))
    data.update(
        annotator_access=Project.AnnotatorAccess.CHOSEN,
        annotators=[acme.annotator.pk, other.pk],
        id_key="row_id",
        text_key="question",
    )
    response = client.post(change, data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    # then one of the two is taken off the project
    data["annotators"] = [other.pk]
    assert client.post(change, data).status_code == 302

    trail = events(acme.organization, object_type="project", object_id=str(acme.project.pk))
    (updated,) = [e for e in trail if e.action == Action.PROJECT_UPDATED]
    assert updated.actor_id == acme.lead.pk
    assert updated.changes["id_key"] == ["id", "row_id"]
    assert updated.changes["text_key"] == ["text", "question"]
    chosen = [e for e in trail if e.action == Action.PROJECT_ANNOTATORS_CHANGED]
    assert [e.changes["annotators"] for e in chosen] == [
        [[], sorted([acme.annotator.email, "other@acme.org"])],
        [sorted([acme.annotator.email, "other@acme.org"]), ["other@acme.org"]],
    ]
    assert chosen[0].data == {
        "added": sorted([acme.annotator.pk, other.pk]),
        "removed": [],
    }
    assert chosen[1].data == {"added": [], "removed": [acme.annotator.pk]}
    assert all(e.actor_id == acme.lead.pk for e in chosen)
    assert all(e.organization_id == acme.organization.pk for e in chosen)


# --- c. generation recipes --------------------------------------------------------------------


def test_generation_recipes_created_changed_and_deleted_in_the_admin(acme, as_user):
    client = as_user(acme.lead)
    first = [{"name": "terse", "temperature": 0.2, "system_prompt": "Answer briefly."}]
    added = client.post(
        reverse("admin:tasks_generationrecipe_add"),
        {"name": "Careful", "variants": json.dumps(first)},
    )
    assert added.status_code == 302, added.content
    with scopes_disabled():
        recipe = GenerationRecipe.objects.get(name="Careful")
    change = reverse("admin:tasks_generationrecipe_change", args=[recipe.pk])
    second = [{**first[0], "temperature": 0.9}]
    changed = client.post(change, {"name": "Careful", "variants": json.dumps(second)})
    assert changed.status_code == 302, changed.content
    delete = reverse("admin:tasks_generationrecipe_delete", args=[recipe.pk])
    assert client.post(delete, {"post": "yes"}).status_code == 302

    trail = events(acme.organization, object_type="generationrecipe", object_id=str(recipe.pk))
    assert [e.action for e in trail] == [
        Action.RECIPE_CREATED,
        Action.RECIPE_UPDATED,
        Action.RECIPE_DELETED,
    ]
    assert all(e.actor_id == acme.lead.pk and e.object_repr == "Careful" for e in trail)
    created, updated, deleted = trail
    assert created.changes["name"] == [None, "Careful"]
    assert created.changes["variants"][1][0]["system_prompt"] == "Answer briefly."
    assert [v[0]["temperature"] for v in updated.changes["variants"]] == [0.2, 0.9]
    assert "name" not in updated.changes
    assert deleted.changes["name"] == ["Careful", None]


# --- d. an API token renamed ------------------------------------------------------------------


def test_an_api_token_renamed_in_the_admin(acme, as_user):
    token, raw = api_token(acme.organization, "pipeline")
    change = reverse("admin:tasks_apitoken_change", args=[token.pk])
    response = as_user(acme.lead).post(change, {"name": "nightly export"})
    assert response.status_code == 302
    (renamed,) = events(acme.organization, action=Action.TOKEN_RENAMED)
    assert renamed.actor_id == acme.lead.pk
    assert (renamed.object_type, renamed.object_id) == ("apitoken", str(token.pk))
    assert renamed.changes == {"name": ["pipeline", "nightly export"]}
    assert renamed.data == {"prefix": token.key_prefix}
    with scopes_disabled():
        digest = ApiToken.objects.get(pk=token.pk).key_digest
    assert raw not in json.dumps([renamed.changes, renamed.data])
    assert digest not in json.dumps([renamed.changes, renamed.data])


# --- e. QC reports requested and downloaded --------------------------------------------------


@pytest.fixture
def reported(acme):
    """A project with two judged items and a computed report."""
    data = Data(acme.organization, 2)
    a, b = (member(acme.organization, Role.ANNOTATOR, email=e) for e in ("a@x.org", "b@x.org"))
    data.judge(a, 0, 0)
    data.judge(b, 0, 1)
    with scope(organization=acme.organization):
        report = QCReport.objects.create(organization=acme.organization, project=data.project)
        run_report(report.pk)
    data.report = report
    return data


def test_qc_reports_requested_on_the_dashboard_and_through_the_api(reported, acme, as_user):
    project = reported.project
    client = as_user(acme.lead)
    assert client.post(reverse("qc:recompute", args=[project.pk])).status_code == 302
    token, raw = api_token(acme.organization)
    api = client.post(
        f"/api/v1/projects/{project.pk}/qc-report", HTTP_AUTHORIZATION=f"Bearer {raw}"
    )
    assert api.status_code == 202
    requested = [
        e
        for e in events(acme.organization, action=Action.QC_REPORT_CREATED)
        if e.object_id != str(reported.report.pk)  # the fixture's own, by "system"
    ]
    assert [(e.actor_id, e.actor_label) for e in requested] == [
        (acme.lead.pk, acme.lead.email),
        (None, f"token:{token.key_prefix}"),
    ]
    with scopes_disabled():
        made = list(
            QCReport.objects.filter(project=project).exclude(pk=reported.report.pk).order_by("pk")
        )
    assert [(e.object_type, e.object_id) for e in requested] == [
        ("qc_report", str(report.pk)) for report in made
    ]
    assert all(e.data == {"project": project.pk} for e in requested)


def test_qc_reports_downloaded_as_csv_json_and_through_the_api(reported, acme, as_user):
    project, report = reported.project, reported.report
    client = as_user(acme.lead)
    for fmt in ("csv", "json"):
        assert client.get(reverse("qc:download", args=[project.pk, fmt])).status_code == 200
    assert client.get(f"/api/v1/projects/{project.pk}/qc-report").status_code == 200
    assert client.get(f"/api/v1/qc-reports/{report.pk}").status_code == 200
    downloaded = events(acme.organization, action=Action.QC_REPORT_DOWNLOADED)
    assert [e.data for e in downloaded] == [
        {"project": project.pk, "format": "csv"},
        {"project": project.pk, "format": "json"},
        {"project": project.pk, "format": "api"},
        {"project": project.pk, "format": "api"},
    ]
    assert all(e.actor_id == acme.lead.pk for e in downloaded)
    assert all((e.object_type, e.object_id) == ("qc_report", str(report.pk)) for e in downloaded)
    # an annotator is refused, and a refusal downloads nothing
    assert (
        as_user(acme.annotator).get(reverse("qc:download", args=[project.pk, "csv"])).status_code
        == 403
    )
    assert len(events(acme.organization, action=Action.QC_REPORT_DOWNLOADED)) == 4


# --- f. reading the trail through the API -----------------------------------------------------


def test_reading_the_trail_through_the_api_is_recorded_once_per_request(acme, as_user, client):
    lead = as_user(acme.lead)
    before = len(events(acme.organization))
    assert before > 1
    listing = lead.get("/api/v1/audit-events/", {"object_type": "project"})
    assert listing.status_code == 200 and len(listing.json()["results"]) >= 1
    token, raw = api_token(acme.organization, "siem")
    assert (
        client.get("/api/v1/audit-events/", HTTP_AUTHORIZATION=f"Bearer {raw}").status_code == 200
    )
    reads = events(acme.organization, action=Action.AUDIT_READ)
    assert [(e.actor_id, e.actor_label) for e in reads] == [
        (acme.lead.pk, acme.lead.email),
        (None, f"token:{token.key_prefix}"),
    ]
    assert reads[0].object_type == "audit"
    assert reads[0].data["filters"] == {"object_type": "project"}
    assert reads[0].data["count"] == len(listing.json()["results"])
    # a refused read is no read
    assert as_user(acme.annotator).get("/api/v1/audit-events/").status_code == 403
    assert len(events(acme.organization, action=Action.AUDIT_READ)) == 2


# --- g. passwords ------------------------------------------------------------------------------
# A password is the person's: its change is recorded where their log-ins are (the
# organization they are working in, tasks.audit.receivers._record_for_user), never in every
# organization they belong to, and never with the password.

NEW_PASSWORD = "a new long passphrase"


@pytest.fixture
def person_in_two(acme, globex):
    """An annotator of Acme who is also a lead in Globex."""
    person = member(acme.organization, Role.ANNOTATOR, email="two@x.org")
    MembershipFactory(organization=globex.organization, user=person, role=Role.LEAD)
    return person


def working_in(as_user, organization, person):
    """A browser of the person, working in this organization (chosen in the header)."""
    browser = as_user(person)
    switched = browser.post(reverse("tasks:switch_organization"), {"organization": organization.pk})
    assert switched.status_code == 302
    return browser


def assert_recorded_once_in(action, person, tenant, elsewhere):
    (event,) = events(action=action)
    assert event.organization_id == tenant.organization.pk
    assert not events(elsewhere.organization, action=action)
    assert (event.actor_id, event.actor_label) == (person.pk, person.email)
    assert (event.object_type, event.object_id) == ("user", str(person.pk))
    assert event.object_repr == person.email
    assert event.ip == "127.0.0.1"
    written = json.dumps([event.changes, event.data])
    assert NEW_PASSWORD not in written and PASSWORD not in written


def test_a_password_change_is_recorded_where_the_person_works(person_in_two, acme, globex, as_user):
    browser = working_in(as_user, globex.organization, person_in_two)
    response = browser.post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    assert response.status_code == 302, response.content
    assert_recorded_once_in(Action.PASSWORD_CHANGED, person_in_two, globex, acme)


def test_a_password_set_is_recorded_where_the_person_works(person_in_two, acme, globex, as_user):
    browser = working_in(as_user, globex.organization, person_in_two)
    person_in_two.set_unusable_password()
    person_in_two.save()
    browser.force_login(person_in_two)  # the session outlives the new password hash
    response = browser.post(
        reverse("account_set_password"), {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD}
    )
    assert response.status_code == 302, response.content
    assert_recorded_once_in(Action.PASSWORD_SET, person_in_two, globex, acme)


def test_a_password_reset_is_recorded_where_the_person_last_worked(
    person_in_two, acme, globex, client, as_user
):
    working_in(as_user, globex.organization, person_in_two)  # the organization they last used
    client.post(reverse("account_reset_password"), {"email": person_in_two.email})
    set_password_through_link(client, mail.outbox[0].body, NEW_PASSWORD)
    assert_recorded_once_in(Action.PASSWORD_RESET, person_in_two, globex, acme)


def test_someone_in_no_organization_changing_a_password_is_recorded_without_one(as_user):
    loner = UserFactory(email="loner@x.org")
    as_user(loner).post(
        reverse("account_change_password"),
        {"oldpassword": PASSWORD, "password1": NEW_PASSWORD, "password2": NEW_PASSWORD},
    )
    (event,) = events(action=Action.PASSWORD_CHANGED, actor_id=loner.pk)
    assert event.organization_id is None
