"""Every door into Chosen keeps organizations apart.

The URL tests enumerate the whole URL configuration and the admin registry: a new view or
admin with an object in its URL fails here until it is listed below, i.e. until someone
has checked that another organization's object is a 404 through it.
"""

import re

import pytest
from django.contrib import admin
from django.contrib.contenttypes.models import ContentType
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from django_scopes import scope, scopes_disabled

from exports.models import Export
from qc.models import QCReport
from tasks.models import (
    ApiToken,
    AuditEvent,
    GenerationJob,
    GenerationRecipe,
    ImportJob,
    Invitation,
    KTOExample,
    LLMEndpoint,
    Membership,
    Project,
    Prompt,
    SignalPair,
)
from tests.factories import ProjectFactory, PromptFactory, UserFactory, api_token

pytestmark = pytest.mark.django_db


# Reachable without logging in, and why that is safe.
PUBLIC = {
    "healthz": "database/broker status for probes; no tenant data",
    "api-schema": "the API's description; no tenant data",
    "api-docs": "renders the public schema",
}


def iter_urls(patterns=None, namespace="", admin=False):
    """(full name, pattern, kwarg names) of every named URL outside the admin (or inside
    it, given its patterns and ``admin=True``)."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            if entry.app_name == "admin" and not admin:
                continue
            ns = f"{namespace}{entry.namespace}:" if entry.namespace else namespace
            yield from iter_urls(entry.url_patterns, ns, admin)
        elif isinstance(entry, URLPattern) and entry.name:
            module = getattr(entry.callback, "__module__", "")
            yield f"{namespace}{entry.name}", entry, sorted(entry.pattern.regex.groupindex), module


def import_job(tenant):
    with scopes_disabled():
        job, _ = ImportJob.objects.get_or_create(
            organization=tenant.organization, project=tenant.project, files=[]
        )
    return job


def generation_job(tenant):
    endpoint, _ = LLMEndpoint.objects.get_or_create(
        name="shared", defaults={"base_url": "http://127.0.0.1:9/v1", "all_organizations": True}
    )
    with scopes_disabled():
        job, _ = GenerationJob.objects.get_or_create(
            organization=tenant.organization,
            project=tenant.project,
            endpoint=endpoint,
            defaults={"model": "m", "recipe_name": "r", "variants": []},
        )
    return job


def qc_report(tenant):
    from qc.report import compute_report

    with scope(organization=tenant.organization):
        report = QCReport.objects.filter(project=tenant.project).first()
        return report or QCReport.objects.create(
            organization=tenant.organization,
            project=tenant.project,
            status="succeeded",
            data=compute_report(tenant.project),
        )


def leaderboard(tenant):
    """A computed leaderboard of the tenant's project (the pages and downloads of one)."""
    from qc.leaderboard import compute_leaderboard
    from qc.models import Leaderboard

    with scope(organization=tenant.organization):
        board = Leaderboard.objects.filter(project=tenant.project).first()
        return board or Leaderboard.objects.create(
            organization=tenant.organization,
            project=tenant.project,
            status="succeeded",
            data=compute_leaderboard(tenant.organization, tenant.project, kind="model", seed=1),
        )


def recipe(tenant):
    with scopes_disabled():
        return GenerationRecipe.objects.get_or_create(
            organization=tenant.organization, name="mine", defaults={"variants": []}
        )[0]


def invitation(tenant):
    with scopes_disabled():
        return Invitation.objects.get_or_create(
            organization=tenant.organization, user=UserFactory(), defaults={"role": "annotator"}
        )[0]


def prompt(tenant):
    with scopes_disabled():
        return Prompt.objects.filter(project=tenant.project).first() or PromptFactory(
            project=tenant.project
        )


def signal_pair(tenant):
    """A pair built from a correction signal of the tenant's project (with its KTO row)."""
    from tests.tasks.test_feedback_pairs import build, reply, signal

    with scopes_disabled():
        found = SignalPair.objects.filter(project=tenant.project).first()
    if found:
        return found
    p = prompt(tenant)
    signal(p, kind="correction", reply=reply(p, "Old."), other=reply(p, "New."))
    signal(p, reply=reply(p, "Liked."), thumbs=1)
    build(tenant.project)
    with scopes_disabled():
        return SignalPair.objects.get(project=tenant.project)


def kto_example(tenant):
    signal_pair(tenant)
    with scopes_disabled():
        return KTOExample.objects.get(project=tenant.project)


def open_assignment(tenant):
    """An open assignment of the tenant's annotator (items imported on first use)."""
    from annotation.allocator import next_assignment
    from annotation.models import Assignment
    from tests.tasks.test_prompt_import import jsonl, row, run

    with scopes_disabled():
        if not tenant.project.items.exists():
            run(tenant.project, {"d.jsonl": jsonl(*(row(i) for i in range(3)))})
        current = Assignment.objects.filter(annotator=tenant.annotator, status="active").first()
    if current:
        return current
    with scope(organization=tenant.organization):
        return next_assignment(project=tenant.project, annotator=tenant.annotator).assignment


def judgment(tenant):
    from annotation.services import submit_judgment

    with scope(organization=tenant.organization):
        return submit_judgment(
            project=tenant.project,
            assignment_id=open_assignment(tenant).pk,
            annotator=tenant.annotator,
            answers={"preference": "Response A is better"},
        )


def export(tenant):
    """A finished export of the tenant's project (run here, into MEDIA_ROOT; the isolation
    tests point it at a temporary folder)."""
    from exports.models import Export
    from exports.pairs import Options
    from exports.services import request_export, run_export

    with scopes_disabled():
        found = Export.objects.filter(project=tenant.project).first()
    if found:
        return found
    with scope(organization=tenant.organization):
        made = request_export(tenant.project, "trl", Options(policy="all"))
        return run_export(made.pk)


def discussed_item(tenant):
    """An item the tenant's annotator judged, in a project that shares its discussions."""
    item = judgment(tenant).item
    with scopes_disabled():
        Project.objects.filter(pk=tenant.project.pk).update(discussion_visible_to_annotators=True)
    return item


def chat_conversation(tenant):
    """A chat project of the tenant, with a conversation of its annotator."""
    from chat import services
    from chat.models import Conversation

    with scopes_disabled():
        found = Conversation.objects.filter(project__organization=tenant.organization).first()
        project = ProjectFactory(organization=tenant.organization) if not found else None
    if found:
        return found
    endpoint, _ = LLMEndpoint.objects.get_or_create(
        name="shared", defaults={"base_url": "http://127.0.0.1:9/v1", "all_organizations": True}
    )
    with scope(organization=tenant.organization):
        services.save_settings(
            project=project,
            endpoints=[endpoint],
            recipes=["Brief / thorough / flawed"],
            system_prompt="",
            replies_per_turn=2,
            max_turns=5,
            concurrent_replies=2,
        )
        project.refresh_from_db()
        return services.start_conversation(
            project=project,
            expert=tenant.annotator,
            endpoint_id=endpoint.pk,
            recipe_name="Brief / thorough / flawed",
        )


def chat_turn(tenant):
    """A turn of that conversation (its replies never asked for: no model is reached)."""
    from chat.models import ChatTurn, Message

    conversation = chat_conversation(tenant)
    with scopes_disabled():
        found = ChatTurn.objects.filter(conversation=conversation).first()
        if found:
            return found
        asked = Message.objects.create(
            organization=tenant.organization,
            conversation=conversation,
            parent=conversation.current,
            role="user",
            text="Hello",
            depth=1,
        )
        return ChatTurn.objects.create(
            organization=tenant.organization,
            conversation=conversation,
            user_message=asked,
            endpoint=conversation.endpoint,
            model="m",
            recipe_name="r",
            variants=[],
        )


def chat_project(tenant):
    return {"project_id": chat_conversation(tenant).project_id}


def in_chat(tenant):
    conversation = chat_conversation(tenant)
    return {"project_id": conversation.project_id, "conversation_id": conversation.pk}


def of_turn(tenant):
    turn = chat_turn(tenant)
    return {"project_id": turn.conversation.project_id, "turn_id": turn.pk}


# How to name the other organization's object in each URL that takes one.
OBJECT_URLS = {
    "project-judgments": lambda t: {"project_id": t.project.pk},
    "annotation:annotate": lambda t: {"project_id": t.project.pk},
    "annotation:history": lambda t: {"project_id": t.project.pk},
    "annotation:undo": lambda t: {"project_id": t.project.pk},
    "annotation:submit": lambda t: {
        "project_id": t.project.pk,
        "assignment_id": open_assignment(t).pk,
    },
    "annotation:skip": lambda t: {
        "project_id": t.project.pk,
        "assignment_id": open_assignment(t).pk,
    },
    "annotation:edit": lambda t: {"project_id": t.project.pk, "judgment_id": judgment(t).pk},
    "annotation:review": lambda t: {"project_id": t.project.pk},
    "annotation:review_item": lambda t: {
        "project_id": t.project.pk,
        "item_id": open_assignment(t).item_id,
    },
    "annotation:discussion": lambda t: {
        "project_id": t.project.pk,
        "item_id": discussed_item(t).pk,
    },
    "tasks:project_detail": lambda t: {"project_id": t.project.pk},
    "project-exports": lambda t: {"project_id": t.project.pk},
    "export-detail": lambda t: {"pk": export(t).pk},
    "export-files": lambda t: {"pk": export(t).pk, "name": "README.md"},
    "exports:page": lambda t: {"project_id": t.project.pk},
    "exports:download": lambda t: {
        "project_id": t.project.pk,
        "export_id": export(t).pk,
        "name": "README.md",
    },
    "project-detail": lambda t: {"pk": t.project.pk},
    "project-signal-pairs": lambda t: {"project_id": t.project.pk},
    "project-signal-pairs-build": lambda t: {"project_id": t.project.pk},
    "project-imports": lambda t: {"pk": t.project.pk},
    "project-feedback-imports": lambda t: {"pk": t.project.pk},
    "importjob-detail": lambda t: {"pk": import_job(t).pk},
    "project-generation-jobs": lambda t: {"pk": t.project.pk},
    "generationjob-detail": lambda t: {"pk": generation_job(t).pk},
    "generationjob-cancel": lambda t: {"pk": generation_job(t).pk},
    "generationjob-resume": lambda t: {"pk": generation_job(t).pk},
    "project-qc-report": lambda t: {"project_id": qc_report(t).project_id},
    "qcreport-detail": lambda t: {"pk": qc_report(t).pk},
    "qc:dashboard": lambda t: {"project_id": qc_report(t).project_id},
    "qc:recompute": lambda t: {"project_id": qc_report(t).project_id},
    "qc:download": lambda t: {"project_id": qc_report(t).project_id, "fmt": "json"},
    "project-leaderboard": lambda t: {"project_id": leaderboard(t).project_id},
    "leaderboard-detail": lambda t: {"pk": leaderboard(t).pk},
    "qc:leaderboard": lambda t: {"project_id": leaderboard(t).project_id},
    "qc:compute_leaderboard": lambda t: {"project_id": leaderboard(t).project_id},
    "qc:download_leaderboard": lambda t: {"project_id": leaderboard(t).project_id, "fmt": "json"},
    "project-judge": lambda t: {"project_id": t.project.pk},
    "annotation:judge": lambda t: {"project_id": t.project.pk},
    "annotation:judge_run": lambda t: {"project_id": t.project.pk},
    "chat:home": chat_project,
    "chat:start": chat_project,
    "chat:conversation": in_chat,
    "chat:send": in_chat,
    "chat:judge": in_chat,
    "chat:retry": in_chat,
    "chat:branch": in_chat,
    "chat:end": in_chat,
    "chat:events": of_turn,
    "chat:stop": of_turn,
    "chat:conversations": chat_project,
    "chat:settings": chat_project,
    "chat:tree_export": chat_project,
}
# The method and the status the URL gives for one's own object (GET 200 unless listed).
OWN_RESPONSE = {
    "project-imports": ("post", {"lead": 400, "annotator": 403}),  # 400: no file sent
    "project-feedback-imports": ("post", {"lead": 400, "annotator": 403}),  # 400: no file
    "importjob-detail": ("get", {"lead": 200, "annotator": 403}),
    "project-signal-pairs": ("get", {"lead": 200, "annotator": 403}),
    "project-signal-pairs-build": ("post", {"lead": 200, "annotator": 403}),
    "project-generation-jobs": ("post", {"lead": 400, "annotator": 403}),  # 400: no endpoint
    "generationjob-detail": ("get", {"lead": 200, "annotator": 403}),
    "generationjob-cancel": ("post", {"lead": 200, "annotator": 403}),
    "generationjob-resume": ("post", {"lead": 202, "annotator": 403}),
    "project-qc-report": ("get", {"lead": 200, "annotator": 403}),
    "qcreport-detail": ("get", {"lead": 200, "annotator": 403}),
    "qc:dashboard": ("get", {"lead": 200, "annotator": 403}),
    "qc:recompute": ("post", {"lead": 302, "annotator": 403}),
    "qc:download": ("get", {"lead": 200, "annotator": 403}),
    "project-leaderboard": ("get", {"lead": 200, "annotator": 403}),
    "leaderboard-detail": ("get", {"lead": 200, "annotator": 403}),
    "qc:leaderboard": ("get", {"lead": 200, "annotator": 403}),
    "qc:compute_leaderboard": ("post", {"lead": 302, "annotator": 403}),
    "qc:download_leaderboard": ("get", {"lead": 200, "annotator": 403}),
    "annotation:undo": ("post", {"lead": 302, "annotator": 302}),
    "annotation:review": ("get", {"lead": 200, "annotator": 403}),
    "project-exports": ("get", {"lead": 200, "annotator": 403}),
    "export-detail": ("get", {"lead": 200, "annotator": 403}),
    "export-files": ("get", {"lead": 200, "annotator": 403}),
    "exports:page": ("get", {"lead": 200, "annotator": 403}),
    "exports:download": ("get", {"lead": 200, "annotator": 403}),
    "annotation:review_item": ("get", {"lead": 200, "annotator": 403}),
    "project-judge": ("get", {"lead": 200, "annotator": 403}),
    "annotation:judge": ("get", {"lead": 200, "annotator": 403}),
    "annotation:judge_run": ("post", {"lead": 302, "annotator": 403}),  # 302: no judge yet
    # the annotator's own assignment: an empty answer is a 400; a lead may not submit it (409)
    "annotation:submit": ("post", {"lead": 409, "annotator": 400}),
    "annotation:skip": ("post", {"lead": 409, "annotator": 302}),
    # the annotator's judgment: the lead cannot edit someone else's
    "annotation:edit": ("get", {"lead": 404, "annotator": 200}),
    # chat: an expert's conversation is theirs alone (a lead reads it on the lead's pages);
    # an empty form is refused in words (400 / 409), ending one's own conversation works
    "chat:start": ("post", {"lead": 400, "annotator": 400}),
    "chat:conversation": ("get", {"lead": 404, "annotator": 200}),
    "chat:send": ("post", {"lead": 404, "annotator": 409}),
    "chat:judge": ("post", {"lead": 404, "annotator": 409}),
    "chat:retry": ("post", {"lead": 404, "annotator": 409}),
    "chat:branch": ("post", {"lead": 404, "annotator": 409}),
    "chat:end": ("post", {"lead": 404, "annotator": 302}),
    "chat:events": ("get", {"lead": 404, "annotator": 200}),
    "chat:stop": ("post", {"lead": 404, "annotator": 200}),
    "chat:conversations": ("get", {"lead": 200, "annotator": 403}),
    "chat:settings": ("get", {"lead": 200, "annotator": 403}),
    "chat:tree_export": ("get", {"lead": 200, "annotator": 403}),
}


# Arguments that pick a file format, not an object ("fmt": the downloads of QC reports and
# leaderboards; the organization-wide leaderboard's download has no other).
FORMAT_ARGUMENTS = {"format", "fmt"}


def own_urls():
    return [(n, kw) for n, _, kw, module in iter_urls() if not module.startswith("allauth")]


def test_every_url_with_an_object_is_listed_here():
    unlisted = [
        name
        for name, kwargs in own_urls()
        if set(kwargs) - FORMAT_ARGUMENTS and name not in OBJECT_URLS
    ]
    assert unlisted == [], f"add these to OBJECT_URLS after checking their scoping: {unlisted}"


def caller(tenant, role: str, as_user):
    """A client acting in the tenant's organization as one role: its lead, annotator, an
    admin of the organization, or an organization API token (API URLs only)."""
    from django.test import Client

    from tasks.models import Role
    from tests.factories import member

    if role == "token":
        return Client(HTTP_AUTHORIZATION=f"Bearer {api_token(tenant.organization)[1]}")
    if role == "admin":
        return as_user(member(tenant.organization, Role.ADMIN))
    return as_user(getattr(tenant, role))


ROLES = ["lead", "annotator", "admin", "token"]


def role_cases():
    for name in sorted(OBJECT_URLS):
        for role in ROLES:
            # a token authenticates API calls only; pages want a person's session
            if role != "token" or reverse_is_api(name):
                yield name, role


def reverse_is_api(name: str) -> bool:
    return "-" in name and ":" not in name  # the API router's names: "project-detail", …


@pytest.mark.parametrize(("name", "role"), list(role_cases()))
def test_other_organizations_object_is_404_for_every_url(name, role, acme, globex, as_user):
    url = reverse(name, kwargs=OBJECT_URLS[name](globex))
    own = reverse(name, kwargs=OBJECT_URLS[name](acme))
    client = caller(acme, role, as_user)
    method, expected = OWN_RESPONSE.get(name, ("get", {}))
    # an organization's admin and its token manage it as its leads do
    role = "lead" if role in ("admin", "token") else role
    call = getattr(client, method)
    assert call(own).status_code == expected.get(role, 200)
    # Refused by role before the lookup (403) is fine; otherwise another org's object is 404.
    refused_anyway = expected.get(role) == 403
    assert call(url).status_code == (403 if refused_anyway else 404)


# Rows that change because the caller is active, not because another organization's data
# was touched: its session, the trail of its own requests, its token's last use.
CALLERS_OWN_TRACES = {"sessions.session", "tasks.auditevent"}
CALLERS_OWN_FIELDS = {"last_used_at", "last_login"}
# What a write carries: every field a project, judgment, job, export or token could take.
HOSTILE_BODY = {
    "name": "taken over",
    "status": "archived",
    "guidelines": "taken over",
    "choice": "A",
    "revoked": True,
    "format": "trl",
}


def database_snapshot() -> dict[str, list[tuple]]:
    """Every row of every table, but the caller's own traces."""
    from django.apps import apps

    snapshot = {}
    with scopes_disabled():
        for model in apps.get_models():
            label = model._meta.label_lower
            if label in CALLERS_OWN_TRACES or model._meta.proxy or not model._meta.managed:
                continue
            fields = [
                f.attname for f in model._meta.concrete_fields if f.name not in CALLERS_OWN_FIELDS
            ]
            rows = model._default_manager.order_by("pk").values_list(*fields)
            snapshot[label] = list(rows)
    return snapshot


@pytest.mark.parametrize(("name", "role"), list(role_cases()))
def test_writes_to_another_organizations_object_change_nothing(name, role, acme, globex, as_user):
    """Update and delete as well as read: every write method, sent to another organization's
    object through every URL that takes one, is refused (404; 403 or 405 when the role or
    the method is refused first) and leaves every row of the database as it was."""
    url = reverse(name, kwargs=OBJECT_URLS[name](globex))
    client = caller(acme, role, as_user)
    before = database_snapshot()
    for method in ("post", "put", "patch", "delete"):
        if url.startswith("/api/"):
            response = getattr(client, method)(url, HOSTILE_BODY, content_type="application/json")
        else:
            response = getattr(client, method)(url, HOSTILE_BODY)
        assert response.status_code in (403, 404, 405), (method, response.status_code)
    assert database_snapshot() == before


def test_every_page_needs_a_login_unless_declared_public(client, acme):
    for name, kwargs, module in [(n, kw, m) for n, _, kw, m in iter_urls()]:
        if module.startswith("allauth") or name in PUBLIC:
            continue  # allauth's own pages (log-in, reset) are public by design
        values = {
            "format": "json",
            "fmt": "json",
            **(OBJECT_URLS[name](acme) if name in OBJECT_URLS else {}),
        }
        url = reverse(name, kwargs={k: values[k] for k in kwargs})
        response = client.get(url)
        if url.startswith("/api/"):
            assert response.status_code == 401, (name, url, response.status_code)
        else:
            assert response.status_code in (302, 405), (name, url, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith(reverse("account_login")), name


def test_public_urls_are_really_public(client):
    for name in PUBLIC:
        assert client.get(reverse(name)).status_code == 200, name


def test_project_lists_show_only_own_organization(acme, globex, as_user):
    client = as_user(acme.lead)
    html = client.get(reverse("annotation:home")).content.decode()
    assert acme.project.name in html and globex.project.name not in html
    api = client.get("/api/v1/projects/").json()
    assert [p["name"] for p in api["results"]] == [acme.project.name]


def test_annotator_sees_only_projects_open_for_work(acme, as_user):
    with scopes_disabled():
        Project.objects.create(organization=acme.organization, name="Draft one", status="draft")
    names = [p["name"] for p in as_user(acme.annotator).get("/api/v1/projects/").json()["results"]]
    assert names == [acme.project.name]
    lead_names = [p["name"] for p in as_user(acme.lead).get("/api/v1/projects/").json()["results"]]
    assert lead_names == ["Acme project", "Draft one"]


def test_unauthenticated_api_is_401_and_html_redirects_to_login(client, acme):
    assert client.get("/api/v1/projects/").status_code == 401
    response = client.get(reverse("tasks:project_detail", args=[acme.project.pk]))
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- the admin -----------------------------------------------------------------------------

# An object of each organization-scoped model, made for the given tenant.
ADMIN_OBJECTS = {
    Project: lambda t: t.project,
    Membership: lambda t: Membership.objects.with_scopes_disabled().get(user=t.annotator),
    ApiToken: lambda t: api_token(t.organization)[0],
    ImportJob: import_job,
    GenerationJob: generation_job,
    GenerationRecipe: recipe,
    Prompt: prompt,
    Export: export,
    QCReport: qc_report,
    SignalPair: signal_pair,
    KTOExample: kto_example,
    AuditEvent: lambda t: (
        AuditEvent.objects.with_scopes_disabled().filter(organization=t.organization).first()
    ),
}
UNSCOPED_SUPERUSER_ONLY = {"Organization", "LLMEndpoint"}


def scoped_admins():
    return [
        (model, model_admin)
        for model, model_admin in admin.site._registry.items()
        if model._meta.app_label not in ("auth", "account", "mfa")
        and model.__name__ not in UNSCOPED_SUPERUSER_ONLY
    ]


def test_every_admin_of_ours_is_listed_here():
    assert {m for m, _ in scoped_admins()} == set(ADMIN_OBJECTS)


# Admin URLs taking an object beyond each model's change/delete/history, and how to name
# the tenant's object in them.
ADMIN_OBJECT_URLS = {
    "admin:tasks_project_import": lambda t: {"object_id": t.project.pk},
    "admin:tasks_project_import_feedback": lambda t: {"object_id": t.project.pk},
    "admin:tasks_generationjob_control": lambda t: {
        "object_id": generation_job(t).pk,
        "verb": "cancel",
    },
    "admin:tasks_invitation_withdraw": lambda t: {"pk": invitation(t).pk},
    "admin:view_on_site": lambda t: {
        "content_type_id": ContentType.objects.get_for_model(Project).pk,
        "object_id": t.project.pk,
    },
}
# Admin URLs with an argument that is not a tenant's object.
ADMIN_NOT_AN_OBJECT = {"admin:app_list": "an app label"}
# Further admin URLs of the superuser-only models (checked below).
SUPERUSER_ONLY_URLS = {"admin:auth_user_password_change"}
# Models of the admin that only superusers reach: people and their authenticators are
# managed by each organization through memberships.
SUPERUSER_ONLY_MODELS = {"Group", "User", "EmailAddress", "Authenticator", "Organization"}


def admin_urls_with_arguments():
    admin_resolver = next(
        e
        for e in get_resolver().url_patterns
        if isinstance(e, URLResolver) and e.app_name == "admin"
    )
    for entry in iter_urls(admin_resolver.url_patterns, "admin:", admin=True):
        name, _, kwargs, _ = entry
        if kwargs:
            yield name


def test_every_admin_url_with_an_object_is_covered():
    registered = {
        f"admin:{m._meta.app_label}_{m._meta.model_name}_{action}": m.__name__
        for m in admin.site._registry
        for action in ("change", "delete", "history")
    }
    uncovered = [
        name
        for name in admin_urls_with_arguments()
        if name not in ADMIN_OBJECT_URLS
        and name not in ADMIN_NOT_AN_OBJECT
        and name not in SUPERUSER_ONLY_URLS
        and registered.get(name)
        not in {m.__name__ for m in ADMIN_OBJECTS} | SUPERUSER_ONLY_MODELS | UNSCOPED_SUPERUSER_ONLY
    ]
    assert uncovered == [], f"check these admin URLs' scoping and list them: {uncovered}"


@pytest.mark.parametrize("name", sorted(ADMIN_OBJECT_URLS))
@pytest.mark.parametrize("role", ["lead", "admin"])
def test_admin_urls_with_another_organizations_object_are_404(name, role, acme, globex, as_user):
    client = caller(acme, role, as_user)
    theirs = reverse(name, kwargs=ADMIN_OBJECT_URLS[name](globex))
    method = client.post if name.endswith(("_control", "_withdraw")) else client.get
    assert method(theirs).status_code == 404
    with scopes_disabled():
        assert GenerationJob.objects.get(pk=generation_job(globex).pk).status == "queued"
        if name.endswith("_withdraw"):  # still waiting for its answer
            assert Invitation.objects.filter(organization=globex.organization).exists()


@pytest.mark.parametrize("role", ["lead", "admin", "annotator"])
def test_people_and_authenticators_of_any_organization_are_superuser_only(
    role, acme, globex, as_user
):
    from allauth.account.models import EmailAddress

    client = caller(acme, role, as_user)
    for user in (globex.lead, acme.annotator):
        address, _ = EmailAddress.objects.get_or_create(user=user, email=user.email)
        for url in (
            reverse("admin:auth_user_change", args=[user.pk]),
            reverse("admin:auth_user_delete", args=[user.pk]),
            reverse("admin:auth_user_password_change", args=[user.pk]),
            reverse("admin:auth_user_changelist"),
            reverse("admin:account_emailaddress_change", args=[address.pk]),
            reverse("admin:mfa_authenticator_changelist"),
        ):
            assert client.get(url).status_code == 403, url
        assert client.post(reverse("admin:auth_user_change", args=[user.pk]), {}).status_code == 403


def admin_url(obj, action):
    meta = obj._meta
    args = [] if action in ("changelist", "add") else [obj.pk]
    return reverse(f"admin:{meta.app_label}_{meta.model_name}_{action}", args=args)


@pytest.mark.parametrize("model", list(ADMIN_OBJECTS), ids=lambda m: m.__name__)
def test_lead_admin_lists_and_opens_only_own_organization(model, acme, globex, as_user):
    mine, theirs = ADMIN_OBJECTS[model](acme), ADMIN_OBJECTS[model](globex)
    client = as_user(acme.lead)
    changelist = client.get(admin_url(mine, "changelist"))
    assert changelist.status_code == 200
    html = changelist.content.decode()
    # rows show a checkbox when the admin has bulk actions, a link to the object always
    shown = {int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', html)} | {
        int(pk)
        for pk in re.findall(
            rf"/admin/{mine._meta.app_label}/{mine._meta.model_name}/(\d+)/change/", html
        )
    }
    assert mine.pk in shown and theirs.pk not in shown
    assert client.get(admin_url(mine, "change")).status_code == 200
    for action in ("change", "delete", "history"):
        assert client.get(admin_url(theirs, action)).status_code == 404, action


def test_lead_admin_import_page_is_404_for_other_organizations_project(acme, globex, as_user):
    client = as_user(acme.lead)
    assert (
        client.get(reverse("admin:tasks_project_import", args=[acme.project.pk])).status_code == 200
    )
    response = client.get(reverse("admin:tasks_project_import", args=[globex.project.pk]))
    assert response.status_code == 404


def test_lead_admin_cannot_post_changes_to_other_organization(acme, globex, as_user):
    response = as_user(acme.lead).post(
        admin_url(globex.project, "change"), {"name": "hijacked", "status": "active"}
    )
    assert response.status_code == 404
    with scopes_disabled():
        assert Project.objects.get(pk=globex.project.pk).name == "Globex project"


@pytest.mark.parametrize("model", list(ADMIN_OBJECTS), ids=lambda m: m.__name__)
@pytest.mark.parametrize("role", ["lead", "admin"])
def test_admin_change_and_delete_of_another_organizations_object_change_nothing(
    model, role, acme, globex, as_user
):
    theirs = ADMIN_OBJECTS[model](globex)
    client = caller(acme, role, as_user)
    before = database_snapshot()
    assert client.post(admin_url(theirs, "change"), HOSTILE_BODY).status_code in (403, 404)
    assert client.post(admin_url(theirs, "delete"), {"post": "yes"}).status_code in (403, 404)
    assert database_snapshot() == before


def test_lead_admin_foreign_key_choices_are_own_organization_only(acme, globex, as_user):
    html = as_user(acme.lead).get(reverse("admin:tasks_project_add")).content.decode()
    assert acme.organization.name in html
    assert globex.organization.name not in html
    # the annotators picker: this organization's people only
    assert acme.annotator.email in html and acme.lead.email in html
    assert globex.annotator.email not in html and globex.lead.email not in html


def test_lead_creates_project_in_own_organization_even_if_posting_another(acme, globex, as_user):
    response = as_user(acme.lead).post(
        reverse("admin:tasks_project_add"),
        {
            "organization": globex.organization.pk,
            "name": "New",
            "status": "draft",
            "mode": "pairwise",
            "annotations_per_item": 1,
            "agreement_sample_percent": 0,
            "agreement_sample_annotations": 2,
            "assignment_timeout_minutes": 30,
            "annotator_access": "all",
            "reasoning_min_length": 0,
            "gold_rate_percent": 0,
            "id_key": "id",
            "text_key": "text",
            "candidate_fields": "[]",
            "questions": "",
        },
    )
    assert response.status_code == 302
    with scopes_disabled():
        assert Project.objects.get(name="New").organization == acme.organization


def test_annotator_cannot_reach_the_admin(acme, as_user):
    client = as_user(acme.annotator)
    assert client.get("/admin/").status_code == 403
    assert client.get(reverse("admin:tasks_project_changelist")).status_code == 403


def test_anonymous_admin_goes_to_the_one_login_page(client):
    response = client.get("/admin/")
    assert response.status_code == 302
    login = client.get(response["Location"], follow=True)
    assert login.redirect_chain[-1][0].startswith("/accounts/login/")


def test_superuser_admin_sees_every_organization(acme, globex, as_user):
    from tests.factories import UserFactory

    root = UserFactory(is_superuser=True, is_staff=True)
    html = as_user(root).get(reverse("admin:tasks_project_changelist")).content.decode()
    assert acme.project.name in html and globex.project.name in html


def test_lead_cannot_see_or_edit_organizations_in_the_admin(acme, globex, as_user):
    client = as_user(acme.lead)
    assert client.get(reverse("admin:tasks_organization_changelist")).status_code == 403
    url = reverse("admin:tasks_organization_change", args=[globex.organization.pk])
    assert client.get(url).status_code == 403


def test_annotator_sees_a_project_for_chosen_annotators_only_when_chosen(acme, as_user):
    from tasks.models import Role
    from tests.factories import member

    chosen_one = member(acme.organization, Role.ANNOTATOR)
    with scopes_disabled():
        Project.objects.filter(pk=acme.project.pk).update(annotator_access="chosen")
        acme.project.annotators.add(chosen_one)

    def visible(user):
        return [p["name"] for p in as_user(user).get("/api/v1/projects/").json()["results"]]

    assert visible(chosen_one) == [acme.project.name]
    assert visible(acme.annotator) == []
    assert as_user(acme.annotator).get(f"/projects/{acme.project.pk}/").status_code == 404
    assert visible(acme.lead) == [acme.project.name]
