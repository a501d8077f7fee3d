"""Chosen against a peer product's security advisories (issue 8): one behaviour each,
observed from the outside as a tenant or an attacker would.

- CVE-2023-47117: ORM lookups smuggled through filter or ordering parameters.
- CVE-2023-47115, CVE-2024-23633: uploads served back as HTML from our origin.
- CVE-2023-47116, CVE-2025-25297: LLM endpoint SSRF and the echo of internal bodies.
- CVE-2023-43791: a built-in secret key or default credentials in production (see also
  tests/project/test_settings.py and tests/integration/test_deployment_files.py).
- Response headers and ``check --deploy`` (CSP, nosniff, framing, HSTS).
- allauth's log-in rate limits: tests/tasks/test_accounts.py,
  test_repeated_failed_logins_are_rate_limited.
"""

import csv
import inspect
import io
import json
import re
from pathlib import Path
from urllib.parse import urlencode

import pytest
from django.contrib.auth import get_user_model
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django_scopes import scope, scopes_disabled

from exports.models import Export
from project.celery import app as celery_app
from tasks.models import GenerationJob, ImportJob, LLMEndpoint
from tests.fake_llm import FakeLLM, LocalServer, QuietHandler
from tests.project.test_settings import GOOD_KEY, ROOT, run
from tests.tasks.test_generation import ONE_VARIANT, endpoint, prompts, run_job
from tests.tasks.test_prompt_import import jsonl, row
from tests.tasks.test_prompt_import import run as import_rows
from tests.tasks.test_tenant_isolation import (
    ADMIN_OBJECTS,
    OBJECT_URLS,
    caller,
    chat_turn,
    export,
    iter_urls,
    judgment,
    qc_report,
    scoped_admins,
)

pytestmark = pytest.mark.django_db


def stored_files(settings) -> list[Path]:
    root = Path(settings.MEDIA_ROOT)
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


# === CVE-2023-47117: ORM lookups through filter and ordering parameters ====================

# What an attacker tries: a lookup through a relation to a secret, and ordering by one.
SMUGGLED = [
    ("created_by__password__startswith", "p"),
    ("ordering", "created_by__password"),
    ("ordering", "-organization__apitoken__key_digest"),
    ("project__organization__name", "x"),
]
# Django's password hashes start with "pbkdf2_sha256$": a filter that worked would show rows
# for the first guess and none for the second.
GUESSES = ("pbkdf2", "zzz")


def api_list_routes() -> list[str]:
    """Every list endpoint of the API, from the URL configuration: a new one is covered
    here without anyone adding it."""
    return sorted(
        {
            name
            for name, pattern, kwargs, _ in iter_urls()
            if getattr(pattern.callback, "actions", {}).get("get") == "list"
            and "format" not in kwargs
        }
    )


API_LISTS = api_list_routes()


def list_url(name: str, tenant) -> str:
    """A list endpoint of the tenant (those under a project: OBJECT_URLS says how)."""
    return reverse(name, kwargs=OBJECT_URLS[name](tenant) if name in OBJECT_URLS else None)


def tenant_rows_created_by_the_lead(tenant) -> None:
    """Rows whose creator's password hash an injected lookup would reach."""
    from tasks.imports import create_import_job

    with scope(organization=tenant.organization):
        create_import_job(
            organization=tenant.organization,
            kind=ImportJob.Kind.PROMPTS,
            project=tenant.project,
            uploads=[SimpleUploadedFile("rows.jsonl", jsonl(row(1)))],
            created_by=tenant.lead,
        )
    with scopes_disabled():
        Export.objects.filter(pk=export(tenant).pk).update(created_by=tenant.lead)


def test_the_api_list_endpoints_are_found():
    assert {
        "project-list",
        "importjob-list",
        "generationjob-list",
        "llmendpoint-list",
        "auditevent-list",
        "project-judgments",
        "project-exports",
    } <= set(API_LISTS)


@pytest.mark.parametrize("role", ["lead", "token"])
@pytest.mark.parametrize("name", API_LISTS)
def test_api_lists_refuse_orm_lookups_in_query_parameters(name, role, acme, as_user):
    """CVE-2023-47117: a lookup or an ordering through a relation is a 400 naming the
    parameter, on every list endpoint of the API."""
    client = caller(acme, role, as_user)
    url = list_url(name, acme)
    assert client.get(url).status_code == 200
    for param, value in SMUGGLED:
        response = client.get(url, {param: value})
        assert response.status_code == 400, (param, value, response.content)
        assert param in [error["field"] for error in response.json()["errors"]]


@pytest.mark.parametrize("name", API_LISTS)
def test_api_answers_do_not_depend_on_a_guessed_password_prefix(name, acme, as_user):
    """CVE-2023-47117: the answer to a guessed prefix of the creator's password hash is
    the same whatever the guess, so nothing can be learnt from it."""
    tenant_rows_created_by_the_lead(acme)
    client = caller(acme, "token", as_user)
    url = list_url(name, acme)
    answers = [client.get(url, {"created_by__password__startswith": g}) for g in GUESSES]
    assert answers[0].status_code == answers[1].status_code != 500
    assert answers[0].json() == answers[1].json()


# --- HTML pages that read GET parameters ---------------------------------------------------

HTML_PAGES = {
    "annotation:review": lambda t: [
        f"{reverse('annotation:review', args=[t.project.pk])}?{query}"
        for query in ("show=all", "show=all&q=Prompt", "show=open", "show=decided", "show=gold")
    ],
    "qc:dashboard": lambda t: [reverse("qc:dashboard", args=[t.project.pk])],
    "exports:page": lambda t: [reverse("exports:page", args=[t.project.pk])],
    "tasks:audit": lambda t: [reverse("tasks:audit"), f"{reverse('tasks:audit')}?action="],
    "tasks:audit_csv": lambda t: [reverse("tasks:audit_csv")],
    "tasks:audit_jsonl": lambda t: [reverse("tasks:audit_jsonl")],
    "chat:events": lambda t: lead_chat_events(t),
}


def lead_chat_events(tenant) -> list[str]:
    """The events of a chat turn of the lead's own, as the page polls them (``after``: the
    stream cursor, the one parameter the view reads)."""
    from chat import streaming
    from chat.models import Conversation

    turn = chat_turn(tenant)
    with scopes_disabled():
        Conversation.objects.filter(pk=turn.conversation_id).update(expert=tenant.lead)
    channel = streaming.Channel(turn.pk)
    channel.reset()
    channel.token(0, "Hello")
    channel.reply_done(0)
    url = reverse("chat:events", kwargs={"project_id": turn.project_id, "turn_id": turn.pk})
    return [url, f"{url}?after=0"]


def reads_query_parameters(view) -> bool:
    return "request.GET" in inspect.getsource(inspect.unwrap(view))


def test_every_page_reading_query_parameters_is_checked_here():
    """A new page that reads request.GET fails here until it is added to HTML_PAGES."""
    pages = {
        name
        for name, pattern, _, module in iter_urls()
        if not hasattr(pattern.callback, "cls")  # the API is checked above
        and not module.startswith(("allauth", "django.", "drf_spectacular"))
        and reads_query_parameters(pattern.callback)
    }
    assert pages - set(HTML_PAGES) == set()


def shown(response, *smuggled: tuple[str, str]) -> str:
    """What a page shows, without what differs on every request (nonces, CSRF tokens) and
    without the echo of the smuggled parameter in its own links. For the audit trail's
    downloads: the events, less the download's own "audit exported" entry."""
    body = response.getvalue().decode() if response.streaming else response.content.decode()
    if response["Content-Type"].startswith("text/csv"):
        rows = list(csv.DictReader(io.StringIO(body)))
        return json.dumps([r["id"] for r in rows if r["action"] != "audit.exported"])
    if response["Content-Type"].startswith("application/x-ndjson"):
        rows = [json.loads(line) for line in body.splitlines() if line]
        return json.dumps([r["id"] for r in rows if r["action"] != "audit.exported"])
    body = re.sub(r'nonce="[^"]*"', "", body)
    body = re.sub(r'name="csrfmiddlewaretoken" value="[^"]*"', "", body)
    for param, value in smuggled:
        encoded = urlencode({param: value})
        body = body.replace(f"&amp;{encoded}", "").replace(f"&{encoded}", "")
        body = body.replace(encoded, "")
    return body


@pytest.fixture
def busy(acme):
    """Acme with something on every page: judged items, a QC report, an export, events."""
    judgment(acme)
    qc_report(acme)
    tenant_rows_created_by_the_lead(acme)
    return acme


def page_cases():
    for name, urls in HTML_PAGES.items():
        yield pytest.param(urls, id=name)


@pytest.mark.parametrize("urls", list(page_cases()))
def test_html_pages_ignore_orm_lookups_in_query_parameters(urls, busy, as_user):
    """CVE-2023-47117: a smuggled lookup or ordering changes nothing on a page (the same
    rows as without it, never a 500), and a guessed password prefix cannot be told apart
    from a wrong one."""
    client = as_user(busy.lead)
    for url in urls(busy):
        plain = client.get(url)
        assert plain.status_code == 200, url
        expected = shown(plain)  # a download's stream is read once
        assert expected not in ("", "[]"), url  # something a filter could hide
        joiner = "&" if "?" in url else "?"
        for param, value in SMUGGLED:
            response = client.get(f"{url}{joiner}{urlencode({param: value})}")
            assert response.status_code == 200, (url, param)
            assert shown(response, (param, value)) == expected, (url, param)
        first, second = (
            client.get(f"{url}{joiner}{urlencode({'created_by__password__startswith': g})}")
            for g in GUESSES
        )
        assert shown(first, ("created_by__password__startswith", GUESSES[0])) == shown(
            second, ("created_by__password__startswith", GUESSES[1])
        )


def admin_changelists():
    for model, _ in scoped_admins():
        yield pytest.param(model, id=model.__name__)


def admin_rows(response) -> set[str]:
    html = response.content.decode()
    return set(re.findall(r'name="_selected_action" value="(\d+)"', html)) | set(
        re.findall(r'<th class="field-[^"]*"><a href="([^"]+)"', html)
    )


@pytest.mark.parametrize("model", list(admin_changelists()))
def test_admin_changelists_refuse_orm_lookups_as_a_lead(model, busy, globex, as_user):
    """CVE-2023-47117 in the admin: Django refuses a lookup through a relation that is not
    a list filter (400) and sends an unknown field back to the plain list (?e=1); either
    way no row is selected by the smuggled parameter, and a guessed password prefix gives
    the same answer as a wrong one."""
    ADMIN_OBJECTS[model](busy)
    ADMIN_OBJECTS[model](globex)
    client = as_user(busy.lead)
    meta = model._meta
    url = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
    plain = client.get(url)
    assert plain.status_code == 200
    assert admin_rows(plain)
    for param, value in SMUGGLED:
        response = client.get(url, {param: value})
        assert response.status_code in (200, 302, 400), (param, response.status_code)
        if response.status_code == 302:
            assert response["Location"] == f"{url}?e=1"
        if response.status_code == 200:
            assert admin_rows(response) == admin_rows(plain), param
    first, second = (client.get(url, {"created_by__password__startswith": g}) for g in GUESSES)
    assert first.status_code == second.status_code
    assert first.status_code != 200 or admin_rows(first) == admin_rows(second)


def test_admin_lists_cannot_be_filtered_by_a_tokens_digest(acme, as_user):
    """CVE-2023-47117 on a model's own secret-derived field: guessing the first characters
    of an API token's digest gives the same list as a wrong guess."""
    from tests.factories import api_token

    token, _ = api_token(acme.organization)
    client = as_user(acme.lead)
    url = reverse("admin:tasks_apitoken_changelist")
    right, wrong = (
        client.get(url, {"key_digest__startswith": guess})
        for guess in (token.key_digest[:2], "not-a-digest")
    )
    assert right.status_code == wrong.status_code
    assert admin_rows(right) == admin_rows(wrong)


# === CVE-2023-47115, CVE-2024-23633: uploads never served back as HTML ======================

HTML = "<html><body><script>alert(document.cookie)</script></body></html>"


def test_no_url_serves_the_media_root(acme, as_user, settings):
    """A stored import upload (and an export's file) exists under MEDIA_ROOT, yet nothing
    answers for it under MEDIA_URL, logged in or not."""
    tenant_rows_created_by_the_lead(acme)
    files = stored_files(settings)
    assert any(p.parts[-4] == "imports" for p in files)
    assert any("exports" in p.parts for p in files)
    for path in files:
        url = f"/{settings.MEDIA_URL}{path.relative_to(settings.MEDIA_ROOT).as_posix()}"
        assert Client().get(url).status_code == 404, url
        assert as_user(acme.lead).get(url).status_code == 404, url


@pytest.mark.parametrize("name", ["page.html", "image.svg", "page.htm", "image.SVG"])
def test_html_and_svg_data_uploads_are_refused(name, acme, as_user, settings):
    """CVE-2023-47115: an upload named like a web page or an SVG is refused, in the API
    and in the admin, and nothing is stored."""
    client = as_user(acme.lead)
    api = client.post(
        f"/api/v1/projects/{acme.project.pk}/imports",
        {"file": [SimpleUploadedFile(name, HTML.encode())]},
    )
    assert api.status_code == 400 and name in json.dumps(api.json())
    potato = client.post(
        "/api/v1/projects/import-potato", {"config": SimpleUploadedFile(name, HTML.encode())}
    )
    assert potato.status_code == 400 and name in json.dumps(potato.json())
    page = client.post(
        reverse("admin:tasks_project_import", args=[acme.project.pk]),
        {"files": [SimpleUploadedFile(name, HTML.encode())]},
    )
    assert page.status_code == 200 and name in page.content.decode()
    assert stored_files(settings) == []
    assert ImportJob.objects.with_scopes_disabled().count() == 0


POTATO_CONFIG = b"""
annotation_task_name: Security
data_files: [page.html]
item_properties: {id_key: id, text_key: text}
annotation_schemes:
  - annotation_type: pairwise
    name: preference
    description: Which is better?
    labels: [A, B]
"""


def test_html_data_files_of_a_potato_import_are_refused(acme, as_user, settings):
    """CVE-2023-47115: the data files sent with a Potato config are refused by name too."""
    client = as_user(acme.lead)
    api = client.post(
        "/api/v1/projects/import-potato",
        {
            "config": SimpleUploadedFile("config.yaml", POTATO_CONFIG),
            "data": [SimpleUploadedFile("page.html", HTML.encode())],
        },
    )
    page = client.post(
        reverse("admin:tasks_project_import_potato"),
        {
            "config": SimpleUploadedFile("config.yaml", POTATO_CONFIG),
            "data": [SimpleUploadedFile("page.html", HTML.encode())],
        },
    )
    assert api.status_code == 400 and "page.html" in json.dumps(api.json())
    assert page.status_code == 200 and "page.html" in page.content.decode()
    assert ImportJob.objects.with_scopes_disabled().count() == 0
    assert stored_files(settings) == []


def html_export(tenant) -> Export:
    """A finished export whose prompts and responses are HTML with a script."""
    rows = [row(i, text=f"{HTML} {i}", response_a=HTML, response_b=f"{HTML}!") for i in range(3)]
    import_rows(tenant.project, {"html.jsonl": jsonl(*rows)})
    judgment(tenant)
    return export(tenant)


def assert_downloaded_not_rendered(response) -> bytes:
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    content_type = response["Content-Type"].split(";")[0].strip().lower()
    assert "html" not in content_type and "svg" not in content_type and "xml" not in content_type
    assert content_type in ("application/octet-stream", "application/json", "text/csv")
    assert response["X-Content-Type-Options"] == "nosniff"
    return b"".join(response.streaming_content) if response.streaming else response.content


def test_stored_files_are_downloads_never_pages(acme, as_user):
    """CVE-2024-23633: every door to a stored file answers it as an attachment of a
    non-HTML type with nosniff, even when the file holds HTML and script."""
    made = html_export(acme)
    names = [entry["name"] for entry in made.files] + ["manifest.json"]
    client = as_user(acme.lead)
    token = caller(acme, "token", as_user)
    bodies = []
    for name in names:
        bodies.append(
            assert_downloaded_not_rendered(
                client.get(reverse("exports:download", args=[acme.project.pk, made.pk, name]))
            )
        )
        for who in (client, token):
            assert_downloaded_not_rendered(who.get(f"/api/v1/exports/{made.pk}/files/{name}"))
    assert any(b"<script>" in body for body in bodies)  # the files really hold HTML
    report = qc_report(acme)
    for fmt in ("json", "csv"):
        assert_downloaded_not_rendered(
            client.get(reverse("qc:download", args=[report.project_id, fmt]))
        )


# === CVE-2023-47116, CVE-2025-25297: LLM endpoint SSRF and body echo =========================
# Already covered in tests/tasks/test_generation.py and referenced, not repeated:
# - test_an_endpoint_not_enabled_for_the_organization_cannot_be_used (another
#   organization's endpoint: hidden from the list, 400 for a job);
# - test_only_superusers_configure_endpoints (a lead GETs the admin's list/add: 403);
# - test_faults_are_retried_then_recorded_with_a_clear_message (a 500's body is not in the
#   failure message).

SECRET = "INTERNAL-SECRET-42"


class LeakyServer(LocalServer):
    """A real HTTP server standing for an internal service behind an LLM endpoint's URL:
    every request gets ``status`` and a body carrying SECRET."""

    def __init__(self, status: int, body: str, content_type: str):
        class Handler(QuietHandler):
            def _answer(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self._send(status, body.encode(), content_type)

            do_GET = do_POST = _answer

        self.serve(Handler)


@pytest.fixture
def eager(transactional_db, settings):
    """Generation jobs run in this process as they are sent, without retries."""
    settings.CHOSEN_LLM_RETRIES = 0
    celery_app.conf.task_always_eager = True
    yield
    celery_app.conf.task_always_eager = False


LEAKS = {
    "500": (500, json.dumps({"error": {"message": f"db 10.0.0.7 {SECRET}"}}), "application/json"),
    "400": (400, json.dumps({"error": {"message": f"bad request {SECRET}"}}), "application/json"),
    "200-html": (200, f"<html><body>{SECRET}</body></html>", "text/html"),
    "200-broken-json": (200, f'{{"choices": [{{"message": "{SECRET}', "application/json"),
    "200-wrong-shape": (200, json.dumps({"choices": SECRET, "model": 7}), "application/json"),
}


@pytest.mark.parametrize("leak", list(LEAKS))
def test_errors_never_echo_an_internal_response_body(leak, eager, acme, as_user):
    """CVE-2025-25297: whatever the server behind an endpoint answers, its words reach
    neither the job's error, its failures, the API nor the admin page."""
    server = LeakyServer(*LEAKS[leak])
    try:
        prompts(acme.project, 2)
        job = run_job(acme.project, server.url, timeout_seconds=5)
    finally:
        server.close()
    assert job.status == GenerationJob.Status.FAILED and job.failed == 2
    assert job.error and SECRET not in job.error
    with scopes_disabled():
        messages = list(job.failures.values_list("message", flat=True))
    assert len(messages) == 2 and all(SECRET not in m for m in messages)
    lead = as_user(acme.lead)
    token = caller(acme, "token", as_user)
    seen = [
        lead.get(f"/api/v1/generation-jobs/{job.pk}"),
        token.get(f"/api/v1/generation-jobs/{job.pk}"),
        token.get("/api/v1/generation-jobs"),
        lead.get(reverse("admin:tasks_generationjob_change", args=[job.pk])),
        lead.get(reverse("admin:tasks_generationjob_changelist")),
    ]
    assert [r.status_code for r in seen] == [200] * 5
    assert messages[0] in seen[0].content.decode()  # the failures are shown, in our words
    for response in seen:
        assert SECRET not in response.content.decode()


@pytest.mark.parametrize("role", ["lead", "admin", "token"])
def test_a_tenant_cannot_create_or_change_an_llm_endpoint(role, acme, as_user):
    """CVE-2023-47116: pointing Chosen at a URL is a superuser's act. Through the API an
    organization's lead, admin or token can only list endpoints."""
    shared = endpoint("http://ollama:11434/v1")
    client = caller(acme, role, as_user)
    target = {"name": "x", "base_url": "http://169.254.169.254/latest", "model": "m"}
    assert client.post(
        "/api/v1/llm-endpoints", target, content_type="application/json"
    ).status_code in (403, 405)
    for method in ("put", "patch", "delete", "post"):
        response = getattr(client, method)(
            f"/api/v1/llm-endpoints/{shared.pk}", target, content_type="application/json"
        )
        assert response.status_code in (403, 404, 405), (method, response.status_code)
    assert list(LLMEndpoint.objects.values_list("pk", "base_url", "name")) == [
        (shared.pk, "http://ollama:11434/v1", shared.name)
    ]


@pytest.mark.parametrize("role", ["lead", "admin"])
def test_a_tenant_cannot_add_or_change_an_llm_endpoint_in_the_admin(role, acme, as_user):
    """CVE-2023-47116 in the admin: posting the add, change or delete form is a 403."""
    shared = endpoint("http://ollama:11434/v1")
    client = caller(acme, role, as_user)
    form = {
        "name": "x",
        "base_url": "http://169.254.169.254/latest",
        "model": "m",
        "timeout_seconds": 60,
        "max_concurrent_requests": 2,
        "enabled": "on",
        "all_organizations": "on",
    }
    for url in (
        reverse("admin:tasks_llmendpoint_add"),
        reverse("admin:tasks_llmendpoint_change", args=[shared.pk]),
        reverse("admin:tasks_llmendpoint_delete", args=[shared.pk]),
    ):
        assert client.post(url, {**form, "post": "yes"}).status_code == 403, url
    assert list(LLMEndpoint.objects.values_list("pk", "base_url")) == [
        (shared.pk, "http://ollama:11434/v1")
    ]


@pytest.mark.parametrize("role", ["lead", "token"])
def test_a_generation_request_cannot_redirect_the_endpoint(role, eager, acme, as_user):
    """CVE-2023-47116: a job request carrying its own URL, key or model has no effect: the
    requests go to the chosen endpoint's server with its model, never to the URL sent.
    A variant carrying a URL is refused (400)."""
    chosen_server, elsewhere = FakeLLM(), FakeLLM()
    try:
        e = endpoint(chosen_server.url)
        [prompt] = prompts(acme.project, 1)
        client = caller(acme, role, as_user)
        url = f"/api/v1/projects/{acme.project.pk}/generation-jobs"
        response = client.post(
            url,
            {
                "endpoint": e.pk,
                "prompts": [prompt.pk],
                "variants": ONE_VARIANT,
                "base_url": elsewhere.url,
                "url": elsewhere.url,
                "api_key": "sk-attacker",
                "model": "attacker-model",
            },
            content_type="application/json",
        )
        refused = client.post(
            url,
            {
                "endpoint": e.pk,
                "prompts": [prompt.pk],
                "variants": [{**ONE_VARIANT[0], "base_url": elsewhere.url}],
            },
            content_type="application/json",
        )
    finally:
        chosen_server.close()
        elsewhere.close()
    if response.status_code != 400:  # refusing the extra fields would do as well
        assert response.status_code == 202, response.content
        job = GenerationJob.objects.with_scopes_disabled().get(pk=response.json()["id"])
        assert job.status == GenerationJob.Status.SUCCEEDED and job.model == "fake-model"
        assert chosen_server.requests == 1
    assert elsewhere.requests == 0
    assert refused.status_code == 400
    assert "base_url" in refused.json()["errors"][0]["message"]


def test_a_disabled_or_foreign_endpoint_cannot_be_used(acme, globex, as_user):
    """CVE-2023-47116: only endpoints enabled for this organization run jobs: another
    organization's (by API token and from the admin's generate form) and a disabled one
    are refused. (A lead's API call: test_an_endpoint_not_enabled_for_the_organization_
    cannot_be_used in tests/tasks/test_generation.py.)"""
    from tasks import generation

    theirs = endpoint("http://127.0.0.1:9/v1", name="theirs", all_organizations=False)
    theirs.organizations.set([globex.organization])
    disabled = endpoint("http://127.0.0.1:9/v1", name="off", enabled=False)
    [prompt] = prompts(acme.project, 1)
    token = caller(acme, "token", as_user)
    for e in (theirs, disabled):
        response = token.post(
            f"/api/v1/projects/{acme.project.pk}/generation-jobs",
            {"endpoint": e.pk, "prompts": [prompt.pk]},
            content_type="application/json",
        )
        assert response.status_code == 400
        assert response.json()["errors"][0]["field"] == "endpoint"
        page = as_user(acme.lead).post(
            reverse("admin:tasks_project_changelist"),
            {
                "action": "generate_candidates",
                "_selected_action": [acme.project.pk],
                "apply": "1",
                "endpoint": e.pk,
                "recipe": generation.DEFAULT_RECIPE_NAME,
            },
        )
        assert page.status_code == 200  # the form again, with its error
    assert GenerationJob.objects.with_scopes_disabled().count() == 0


# === CVE-2023-43791: no built-in secret, no default credentials ===============================
# The secret key: tests/project/test_settings.py (test_production_refuses_*). The database
# password: tests/integration/test_deployment_files.py
# (test_compose_refuses_to_start_without_a_database_password).


def test_the_demo_loader_refuses_to_run_in_production(transactional_db):
    """CVE-2023-43791: the demo's public passwords never reach a production database."""
    db = connection.settings_dict
    result = run(
        ["manage.py", "load_demo"],
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
    )
    assert result.returncode != 0
    assert "not loaded in production" in result.stderr
    assert not get_user_model().objects.filter(email__endswith="@demo.chosen.local").exists()


def test_nothing_creates_an_account_when_chosen_starts(settings):
    """CVE-2023-43791: the migrations and the start commands of the containers create no
    user, so there is no account with a known password to log in with."""
    from tests.integration.test_deployment_files import compose_config

    User = get_user_model()
    assert User.objects.count() == 0  # the test database is exactly what migrate made
    settings.CHOSEN_DEFAULT_LLM_URL = "http://ollama:11434/v1"
    call_command("setup_llm_endpoint", stdout=io.StringIO())  # web's start command
    assert User.objects.count() == 0
    services = compose_config()["services"]
    started = [ROOT.joinpath("Dockerfile").read_text()] + [
        json.dumps([s.get("command"), s.get("entrypoint"), s.get("environment")])
        for s in services.values()
    ]
    migrations = [p.read_text() for p in ROOT.glob("*/migrations/*.py")]
    for text in started + migrations:
        for word in ("createsuperuser", "create_superuser", "DJANGO_SUPERUSER", "load_demo"):
            assert word not in text
    for text in migrations:
        assert "set_password" not in text and "make_password" not in text


# === Response headers and HSTS ===============================================================


def csp_directives(header: str) -> dict[str, list[str]]:
    parts = (d.strip().split() for d in header.split(";") if d.strip())
    return {words[0]: words[1:] for words in parts}


def assert_hardened_headers(response) -> None:
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"
    csp = csp_directives(response["Content-Security-Policy"])
    assert csp["default-src"] == ["'self'"]
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["object-src"] == ["'none'"]
    assert "'unsafe-inline'" not in csp.get("script-src", [])
    assert "'unsafe-eval'" not in csp.get("script-src", [])
    for directive, sources in csp.items():
        for source in sources:  # nothing outside the deployment: no host, scheme or *
            assert source in ("'self'", "'none'", "data:") or re.fullmatch(
                r"'nonce-[A-Za-z0-9+/=_-]+'", source
            ), (directive, source)


def test_pages_api_and_log_in_send_the_hardening_headers(acme, as_user):
    """A page, an API answer and the log-in page (anonymous) carry a strict CSP and the
    other hardening headers."""
    responses = [
        as_user(acme.lead).get("/"),
        caller(acme, "token", as_user).get("/api/v1/projects"),
        Client().get(reverse("account_login")),
        as_user(acme.lead).get(reverse("admin:index")),
    ]
    for response in responses:
        assert response.status_code == 200
        assert_hardened_headers(response)


# Pages are rendered with plain static storage: production's manifest only exists after
# collectstatic, which has nothing to do with the headers checked here.
PROBE = """
import json
import django
django.setup()
from django.conf import settings
from django.test import Client, override_settings
plain = {**settings.STORAGES, "staticfiles": {
    "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
override_settings(STORAGES=plain).enable()
client = Client(HTTP_HOST="chosen.internal")
out = {}
for name, path, secure in [
    ("login_tls", "/accounts/login/", True),
    ("login_http", "/accounts/login/", False),
    ("api_http", "/api/v1/projects", False),
    ("healthz_http", "/healthz", False),
]:
    response = client.get(path, secure=secure)
    out[name] = {"status": response.status_code, "headers": dict(response.headers)}
print(json.dumps(out))
"""


def test_production_sends_hsts_over_tls_and_redirects_plain_http(transactional_db):
    """Under production settings (a fresh process: they are read once) a TLS request gets
    HSTS for at least a year and the hardening headers; plain HTTP is redirected to https,
    except the health probe."""
    db = connection.settings_dict
    result = run(
        ["-c", PROBE],
        DJANGO_SETTINGS_MODULE="project.settings",
        DJANGO_ENV="production",
        DJANGO_SECRET_KEY=GOOD_KEY,
        DJANGO_ALLOWED_HOSTS="chosen.internal",
        DATABASE_URL=f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        LOG_LEVEL="ERROR",
    )
    assert result.returncode == 0, result.stderr
    seen = json.loads(result.stdout.strip().splitlines()[-1])
    tls = seen["login_tls"]
    assert tls["status"] == 200
    hsts = tls["headers"]["Strict-Transport-Security"]
    assert int(re.search(r"max-age=(\d+)", hsts).group(1)) >= 365 * 24 * 3600
    for header in ("Content-Security-Policy", "X-Frame-Options", "Referrer-Policy"):
        assert header in tls["headers"]
    for name, path in (("login_http", "/accounts/login/"), ("api_http", "/api/v1/projects")):
        assert seen[name]["status"] == 301
        assert seen[name]["headers"]["Location"] == f"https://chosen.internal{path}"
    assert seen["healthz_http"]["status"] == 200
