import pytest
from django.test import Client

from tests.factories import ProjectFactory

pytestmark = pytest.mark.django_db


def test_project_detail_has_the_fields_a_pipeline_needs(acme, as_user):
    data = as_user(acme.lead).get(f"/api/v1/projects/{acme.project.pk}/").json()
    assert data["name"] == "Acme project"
    assert data["status"] == "active"
    assert data["guidelines"] == "Pick the more helpful response."


def test_projects_are_paginated(acme, as_user):
    for n in range(3):
        ProjectFactory(organization=acme.organization, name=f"Extra {n}")
    page = as_user(acme.lead).get("/api/v1/projects/?page_size=2&ordering=name").json()
    assert page["count"] == 4 and len(page["results"]) == 2 and page["next"]


def test_projects_filter_by_declared_fields(acme, as_user):
    ProjectFactory(organization=acme.organization, name="Paused one", status="paused")
    names = [
        p["name"]
        for p in as_user(acme.lead).get("/api/v1/projects/?status=paused").json()["results"]
    ]
    assert names == ["Paused one"]


@pytest.mark.parametrize(
    "query", ["organization__slug=globex", "name__startswith=A", "guidelines__regex=.*"]
)
def test_undeclared_filter_is_a_400_naming_it(acme, as_user, query):
    response = as_user(acme.lead).get(f"/api/v1/projects/?{query}")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["field"] == query.split("=")[0]
    assert "Accepted:" in error["message"] and "status" in error["message"]


@pytest.mark.parametrize("ordering", ["organization__name", "--name", ""])
def test_ordering_by_an_undeclared_field_is_a_400(acme, as_user, ordering):
    response = as_user(acme.lead).get(f"/api/v1/projects/?ordering={ordering}")
    assert response.status_code == 400
    assert response.json()["errors"][0]["field"] == "ordering"


def test_session_api_write_needs_csrf(acme):
    client = Client(enforce_csrf_checks=True)
    client.force_login(acme.lead)
    response = client.post("/api/v1/projects/", {"name": "x"})
    assert response.status_code == 403
    assert "CSRF" in response.json()["errors"][0]["message"]


def test_openapi_schema_and_docs_are_served_locally(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    body = schema.content.decode()
    assert "/api/v1/projects/" in body and "organizationToken" in body
    docs = client.get("/api/docs/").content.decode()
    assert "swagger-ui" in docs
    assert "http://" not in docs and "https://" not in docs and "//cdn" not in docs
