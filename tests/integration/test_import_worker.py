"""A large API upload imported by a real Celery worker through the real Redis broker."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django_scopes import scopes_disabled

from project.celery import app as celery_app
from tasks.models import Prompt
from tests.tasks.test_prompt_import import jsonl, row

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(transactional_db, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path / "media"
    celery_app.control.purge()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
    }
    log = (tmp_path / "worker.log").open("w")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "project",
            "worker",
            "--pool=solo",
            "--without-mingle",
            "--without-gossip",
            "--loglevel=INFO",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while "ready." not in (tmp_path / "worker.log").read_text():
        assert process.poll() is None and time.monotonic() < deadline, (
            tmp_path / "worker.log"
        ).read_text()
        time.sleep(0.2)
    yield tmp_path / "worker.log"
    process.terminate()
    process.wait(timeout=30)
    log.close()


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
        assert time.monotonic() < deadline, worker.read_text()
        time.sleep(0.3)
    assert job["status"] == "succeeded", job["errors"]
    assert job["report"]["prompts_created"] == 3000 and job["report"]["items_created"] == 3000
    assert job["progress"]["fraction"] == 1.0
    with scopes_disabled():
        assert Prompt.objects.filter(project=acme.project).count() == 3000
    assert "tasks.jobs.run_import" in worker.read_text()
