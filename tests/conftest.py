import pytest
from django.core.cache import cache
from django.test import Client

from tasks.models import Role
from tests.factories import OrganizationFactory, ProjectFactory, member


@pytest.fixture(autouse=True)
def _fresh_cache():
    """allauth's rate limits and TOTP replay protection live in the (Redis) cache."""
    cache.clear()
    yield
    cache.clear()


class Tenant:
    """One organization with a lead, an annotator and a project."""

    def __init__(self, name: str):
        self.organization = OrganizationFactory(name=name, slug=name.lower())
        self.lead = member(self.organization, Role.LEAD)
        self.annotator = member(self.organization, Role.ANNOTATOR)
        self.project = ProjectFactory(organization=self.organization, name=f"{name} project")


@pytest.fixture
def acme(db):
    return Tenant("Acme")


@pytest.fixture
def globex(db):
    return Tenant("Globex")


def client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def as_user():
    return client_for
