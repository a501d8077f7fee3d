"""The bad-input corpus (tests/bad_inputs/, described in its cases.yaml), posted as a lead
posts a file: through the API and, where the manifest says so, the management command.

Every file must be refused with a 4xx (or a command error) whose message says what to fix,
never a 500, and leave the database as it was. "As it was" counts the rows of every table
except two kinds of record that a refused import deliberately leaves behind: the failed
ImportJob (a lead's record of the attempt, with the errors the API showed; asserted below
to be failed and to hold the message) and the audit events of that job. A refusal before
anything is stored (the byte limit, a wrong file) leaves no job at all.
"""

import io
from pathlib import Path

import pytest
import yaml
from django.apps import apps
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django_scopes import scopes_disabled

from tasks.models import ImportJob
from tests.tasks.test_potato_import import SEED_DIR

pytestmark = pytest.mark.django_db

CORPUS = Path(__file__).resolve().parent.parent / "bad_inputs"
MANIFEST = CORPUS / "cases.yaml"
CASES = yaml.safe_load(MANIFEST.read_text())
# Records of the attempt, not of its data (see the module docstring).
RECORDS_OF_THE_ATTEMPT = {"tasks.importjob", "tasks.auditevent"}


def _params():
    files = sorted(p.name for p in CORPUS.iterdir() if p.is_file() and p != MANIFEST)
    params = []
    for name in sorted(set(files) | set(CASES)):
        doors = (CASES.get(name) or {}).get("doors") or [None]
        params.extend(pytest.param(name, door, id=f"{name}-{door}") for door in doors)
    return params


def row_counts() -> dict[str, int]:
    with scopes_disabled():
        return {
            model._meta.label_lower: model._default_manager.using("default").count()
            for model in apps.get_models(include_auto_created=True)
            if model._meta.label_lower not in RECORDS_OF_THE_ATTEMPT
            and not model._meta.proxy
            and model._meta.managed
        }


def job_ids() -> set[int]:
    with scopes_disabled():
        return set(ImportJob.objects.values_list("pk", flat=True))


def post(client, project, door: str, name: str, content: bytes):
    def upload(upload_name):
        return SimpleUploadedFile(upload_name, content, "application/octet-stream")

    if door == "prompts":
        return client.post(f"/api/v1/projects/{project.pk}/imports", {"file": [upload(name)]})
    if door == "potato-config":
        return client.post("/api/v1/projects/import-potato", {"config": upload(name)})
    assert door == "potato-data", f"unknown door {door!r} in cases.yaml"
    seed = (SEED_DIR / "config.yaml").read_bytes()
    return client.post(
        "/api/v1/projects/import-potato",
        {
            "config": SimpleUploadedFile("config.yaml", seed, "application/x-yaml"),
            "data": [upload("sample-data.json")],
        },
    )


def run_command(door: str, path: Path, project) -> str:
    """The command's error and what it printed on stderr; fails the test if it succeeds."""
    stderr = io.StringIO()
    with pytest.raises(CommandError) as failure:
        if door == "prompts":
            slug = project.organization.slug
            call_command("import_prompts", f"{slug}/{project.name}", str(path), stderr=stderr)
        else:
            call_command(
                "import_project", str(path), organization=project.organization.slug, stderr=stderr
            )
    return f"{stderr.getvalue()}\n{failure.value}"


@pytest.mark.parametrize(("name", "door"), _params())
def test_bad_input_is_refused_with_a_message_and_changes_nothing(
    name, door, acme, as_user, settings
):
    case = CASES.get(name)
    assert case, f"tests/bad_inputs/{name} has no entry in cases.yaml: say what it tests"
    path = CORPUS / name
    assert path.is_file(), f"cases.yaml lists {name}, which is not in tests/bad_inputs/"
    for setting, value in (case.get("settings") or {}).items():
        setattr(settings, setting, value)
    message = case["message"]
    client = as_user(acme.lead)  # logging in stores a session: before the counts
    before, jobs_before = row_counts(), job_ids()

    response = post(client, acme.project, door, name, path.read_bytes())

    assert response.status_code == case["status"], response.content[:2000]
    errors = response.json()["errors"]
    assert errors and all({"field", "message", "code"} <= set(e) for e in errors)
    assert any(message in e["message"] for e in errors), errors
    assert row_counts() == before
    with scopes_disabled():
        new_jobs = list(ImportJob.objects.exclude(pk__in=jobs_before))
    assert len(new_jobs) <= 1
    for job in new_jobs:  # kept as the record of the attempt, with what went wrong
        assert job.status == ImportJob.Status.FAILED
        assert response.json()["import"]["id"] == job.pk
        assert job.errors and len(job.errors) == len(errors)
        assert all(
            kept["message"] in shown["message"]
            for kept, shown in zip(job.errors, errors, strict=True)
        )
    stored = [p for p in (settings.MEDIA_ROOT / "imports").rglob("*") if p.is_file()]
    assert stored == [], "a refused upload must not stay on disk"

    if case.get("command") and door in ("prompts", "potato-config"):
        assert message in run_command(door, path, acme.project)
        assert row_counts() == before
