import pytest
from django.db import connection
from django.urls import reverse
from django_scopes import scopes_disabled

from tasks.models import ApiToken
from tests.factories import api_token

pytestmark = pytest.mark.django_db


def bearer(raw_key: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw_key}"}


def test_token_reads_its_own_organization_only(client, acme, globex):
    _, key = api_token(acme.organization)
    listing = client.get("/api/v1/projects/", **bearer(key))
    assert listing.status_code == 200
    assert [p["id"] for p in listing.json()["results"]] == [acme.project.pk]
    assert client.get(f"/api/v1/projects/{acme.project.pk}/", **bearer(key)).status_code == 200
    assert client.get(f"/api/v1/projects/{globex.project.pk}/", **bearer(key)).status_code == 404


def test_revoked_token_is_refused(client, acme):
    token, key = api_token(acme.organization)
    with scopes_disabled():
        ApiToken.objects.filter(pk=token.pk).update(revoked_at="2026-01-01T00:00Z")
    response = client.get("/api/v1/projects/", **bearer(key))
    assert response.status_code == 401
    assert response.json()["errors"][0]["message"] == "Invalid or revoked API token."
    assert response["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer chs_not-a-real-token", "Bearer ", "Token abc"])
def test_wrong_token_is_refused(client, acme, header):
    response = client.get("/api/v1/projects/", HTTP_AUTHORIZATION=header)
    assert response.status_code == 401


def test_token_is_not_stored_in_clear_text(acme):
    token, key = api_token(acme.organization)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM tasks_apitoken WHERE id = %s", [token.pk])
        row = cursor.fetchone()
    assert all(key not in str(value) for value in row)
    secret = key.removeprefix(ApiToken.PREFIX)
    assert all(secret[4:] not in str(value) for value in row)
    assert token.key_digest == ApiToken.digest(key)


def test_token_records_when_it_was_last_used(client, acme):
    token, key = api_token(acme.organization)
    assert token.last_used_at is None
    client.get("/api/v1/projects/", **bearer(key))
    with scopes_disabled():
        token.refresh_from_db()
    assert token.last_used_at is not None


def test_token_opens_neither_the_admin_nor_the_annotator_pages(client, acme):
    _, key = api_token(acme.organization)
    assert client.get("/admin/", **bearer(key)).status_code in (302, 403)
    assert client.get(f"/projects/{acme.project.pk}/", **bearer(key)).status_code == 302


def test_bearer_scheme_is_case_insensitive(client, acme):
    _, key = api_token(acme.organization)
    response = client.get("/api/v1/projects/", HTTP_AUTHORIZATION=f"bearer {key}")
    assert response.status_code == 200


def test_lead_creates_token_in_admin_and_sees_it_once(acme, as_user):
    client = as_user(acme.lead)
    response = client.post(reverse("admin:tasks_apitoken_add"), {"name": "training pipeline"})
    assert response.status_code == 200
    page = response.content.decode()
    with scopes_disabled():
        token = ApiToken.objects.get(name="training pipeline")
    assert token.organization == acme.organization and token.created_by == acme.lead
    raw = page.split('id="new-token" class="vTextField" readonly value="')[1].split('"')[0]
    assert raw.startswith("chs_") and ApiToken.digest(raw) == token.key_digest
    assert "will not be shown again" in page
    later = client.get(reverse("admin:tasks_apitoken_change", args=[token.pk])).content.decode()
    assert raw not in later
    assert client.get("/api/v1/projects/", **bearer(raw)).status_code == 200


def test_lead_revokes_token_in_admin(acme, as_user):
    token, key = api_token(acme.organization)
    as_user(acme.lead).post(
        reverse("admin:tasks_apitoken_changelist"),
        {"action": "revoke", "_selected_action": [token.pk]},
    )
    with scopes_disabled():
        token.refresh_from_db()
    assert token.revoked_at is not None
    from django.test import Client

    assert Client().get("/api/v1/projects/", **bearer(key)).status_code == 401


def test_annotator_cannot_create_tokens(acme, as_user):
    response = as_user(acme.annotator).post(reverse("admin:tasks_apitoken_add"), {"name": "x"})
    assert response.status_code == 403
    with scopes_disabled():
        assert not ApiToken.objects.exists()
