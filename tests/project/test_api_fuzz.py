"""Property-based fuzzing of the REST API against its own OpenAPI schema (schemathesis):
every operation, with generated valid and invalid input, as a lead's organization token
and as an annotator's session. No input may get a 5xx, and every answer must match what
the schema says. Bounded: a few examples per operation, so it runs in a minute or two."""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.test import Client
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    ignored_auth,
    negative_data_rejection,
    positive_data_acceptance,
)

from tasks.models import Role
from tests.exports.test_pairs import voted  # noqa: F401 (fixture)
from tests.factories import api_token, member

pytestmark = pytest.mark.django_db

EXAMPLES = 12  # per operation and caller


@pytest.fixture
def api(voted, acme, settings):  # noqa: F811
    """The schema, loaded through the app itself, and a project with judged items."""
    # Fuzzing sends hundreds of requests a minute; the throttle has its own tests.
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"user": "100000/min", "token": "100000/min"},
    }
    # Requests run inside the test's transaction, as Django's test client runs them: the
    # handler must not close the connection at the end of each one.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def lead_token(acme) -> dict:
    _, raw = api_token(acme.organization, name="fuzz")
    return {"Authorization": f"Bearer {raw}"}


@pytest.fixture
def annotator_session(acme) -> dict:
    client = Client()
    client.force_login(member(acme.organization, Role.ANNOTATOR, email="fuzz@x.org"))
    return {name: morsel.value for name, morsel in client.cookies.items()}


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same cases every run: a failure here is reproducible
    database=None,
    suppress_health_check=list(HealthCheck),
)


# A 400 for input the schema allows is right where validity depends on more than a schema
# can say: split ratios that must add up to 1, an upload's name and content, the project's
# state (a conversation a flat format refuses). What is checked: no 5xx, and every answer's
# status, media type and body as documented.
# Not checked either: that schema-breaking input is refused. The credentials given here
# replace the ones schemathesis breaks on purpose, so a case whose only fault is its
# Authorization header is rightly answered; and list filters ignore what they do not know.
SKIPPED = [positive_data_acceptance, negative_data_rejection]


def fuzz(schema, excluded=(), **credentials) -> list[str]:
    """Every operation of the schema, EXAMPLES cases each, called with ``credentials``
    and checked by schemathesis (no 5xx, status, content type and body as documented).
    Returns one line per operation that failed, with the first failure."""
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()
        # Valid input, then input that breaks the schema (wrong types, missing fields).
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @FUZZ
            @given(case=operation.as_strategy(generation_mode=mode))
            def run(case):
                case.call_and_validate(excluded_checks=[*SKIPPED, *excluded], **credentials)

            try:
                run()
            except (Exception, BaseExceptionGroup) as failure:  # schemathesis's failure group
                failures.append(f"{operation.method.upper()} {operation.path} ({mode}): {failure}")
    return failures


def test_no_input_gets_a_server_error_as_a_lead_token(api, lead_token):
    failures = fuzz(api, headers=lead_token)
    assert not failures, "\n\n".join(failures)


def test_no_input_gets_a_server_error_as_an_annotator_session(api, annotator_session):
    # The session cookie is sent with every call, so schemathesis's check that a call
    # without the schema's credentials is refused cannot apply here (the token run has it).
    failures = fuzz(api, excluded=[ignored_auth], cookies=annotator_session)
    assert not failures, "\n\n".join(failures)
