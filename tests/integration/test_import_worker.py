"""A large API upload imported by a real Celery worker through the real Redis broker."""

import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django_scopes import scopes_disabled

from tasks.models import Prompt
from tests.tasks.test_prompt_import import jsonl, row

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(start_worker):
    return start_worker()


def test_large_upload_is_imported_by_the_worker(worker, acme, as_user, settings):
    settings.CHOSEN_IMPORT_SYNC_MAX_BYTES = 100  # everything bigger goes to the worker
    client = as_user(acme.lead)
    data = jsonl(*(row(n) for n in range(3000)))
    response = client.post(
        f"/api/v1/projects/{acme.project.pk}/imports",
        {"file": [SimpleUploadedFile("big.jsonl", data)]},
    )
    assert response.status_code == 202
    url = response["Location"]
    deadline = time.monotonic() + 120
    while (job := client.get(url).json())["status"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, worker.output()
        time.sleep(0.3)
    assert job["status"] == "succeeded", job["errors"]
    assert job["report"]["prompts_created"] == 3000 and job["report"]["items_created"] == 3000
    assert job["progress"]["fraction"] == 1.0
    with scopes_disabled():
        assert Prompt.objects.filter(project=acme.project).count() == 3000
    assert "tasks.jobs.run_import" in worker.output()
