"""The admin's "view on site" redirect, ``/admin/r/<content type>/<id>/``, must not tell a
lead whether another organization's object exists: Django's own view looks the object up
unscoped, and with DEBUG on said "has no get_absolute_url()" for an existing id but
"doesn't exist" for a missing one."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.contenttypes.models import ContentType
from django.urls import reverse
from django_scopes import scopes_disabled

from tasks.models import Membership, Project

pytestmark = pytest.mark.django_db


def shortcut_url(model, object_id) -> str:
    content_type = ContentType.objects.get_for_model(model)
    return reverse("admin:view_on_site", args=[content_type.pk, object_id])


def answer(client, url: str) -> tuple[int, str]:
    """Status and body, with the requested path (which a DEBUG page repeats) blanked."""
    response = client.get(url)
    return response.status_code, response.content.decode().replace(url.lstrip("/"), "<path>")


def missing_id(model) -> int:
    with scopes_disabled():
        return max(model._base_manager.values_list("pk", flat=True), default=0) + 1000


THEIRS = {
    "Project": (Project, lambda t: t.project.pk),
    "Membership": (
        Membership,
        lambda t: Membership.objects.with_scopes_disabled().get(user=t.lead).pk,
    ),
    "User": (get_user_model(), lambda t: t.lead.pk),
}


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
@pytest.mark.parametrize("model_name", sorted(THEIRS))
def test_another_organizations_id_answers_as_a_missing_id(
    model_name, debug, acme, globex, as_user, settings
):
    settings.DEBUG = debug
    model, their_id = THEIRS[model_name]
    client = as_user(acme.lead)
    theirs = answer(client, shortcut_url(model, their_id(globex)))
    missing = answer(client, shortcut_url(model, missing_id(model)))
    assert theirs[0] == 404
    assert theirs == missing


@pytest.mark.parametrize("debug", [True, False], ids=["debug", "production"])
def test_odd_content_types_and_ids_answer_as_a_missing_id(debug, acme, globex, as_user, settings):
    settings.DEBUG = debug
    client = as_user(acme.lead)
    project_type = ContentType.objects.get_for_model(Project).pk
    missing = answer(client, shortcut_url(Project, missing_id(Project)))
    for url in (
        reverse("admin:view_on_site", args=[project_type, "not-a-number"]),
        reverse("admin:view_on_site", args=[project_type, 10**30]),
        reverse("admin:view_on_site", args=[10**6, globex.project.pk]),
        reverse("admin:view_on_site", args=["x", globex.project.pk]),
    ):
        assert answer(client, url) == missing, url


def test_own_object_goes_on_to_djangos_view(acme, as_user, settings):
    """The lead's own project reaches Django's view, which finds it (projects have no page
    of their own to redirect to)."""
    settings.DEBUG = True
    response = as_user(acme.lead).get(shortcut_url(Project, acme.project.pk))
    assert response.status_code == 404
    assert "get_absolute_url" in response.content.decode()


def test_annotator_is_refused_whatever_the_id(acme, as_user):
    client = as_user(acme.annotator)
    assert client.get(shortcut_url(Project, acme.project.pk)).status_code == 403
    assert client.get(shortcut_url(Project, missing_id(Project))).status_code == 403
