"""An export whose volume cannot take it: made unwritable, or full in the middle of the
export. The job fails saying why, in words the lead and the operator can act on; no file
of it is listed, served or left on the volume; the next export, once the volume is fixed,
succeeds.

Both faults are real ones from the kernel: an unwritable folder (immutable for root, who
ignores permissions; read-only by its mode for anyone else), and a small tmpfs mounted over
the export volume in a mount namespace of the job's own process (the test's process and the
rest of the machine never see it)."""

import json
import os
import subprocess
import sys
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

import pytest
from django.db import connection
from django_scopes import scopes_disabled

from exports.models import Export
from exports.pairs import Options
from project.celery import app as celery_app
from tests.integration.conftest import ROOT
from tests.integration.recovery import judged_project

BODY = {"format": "trl", "options": {"policy": "all", "ratios": [0.8, 0.2], "seed": 1}}


@contextmanager
def unwritable(folder: Path):
    """``folder`` refuses new entries for everyone, root included, until the block ends."""
    folder.mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:
        subprocess.run(["chattr", "+i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
    try:
        yield
    finally:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        else:
            folder.chmod(0o755)


@pytest.fixture
def jobs_here(django_capture_on_commit_callbacks):
    """Jobs run in the test as soon as their request commits (as tests/exports do)."""
    celery_app.conf.task_always_eager = True
    yield lambda: django_capture_on_commit_callbacks(execute=True)
    celery_app.conf.task_always_eager = False


def test_an_export_to_an_unwritable_volume_fails_saying_so_and_the_next_succeeds(
    db, acme, as_user, jobs_here, settings
):
    project = judged_project(acme.organization, 40)
    client = as_user(acme.lead)
    url = f"/api/v1/projects/{project.pk}/exports"
    volume = Path(settings.MEDIA_ROOT) / "exports"
    with unwritable(volume), jobs_here():
        failed = client.post(url, BODY, content_type="application/json").json()
    failed = client.get(f"/api/v1/exports/{failed['id']}").json()
    assert failed["status"] == "failed"
    assert failed["failure"].startswith(
        "Failed: The export could not be written: the server may not write to its storage ("
    )
    assert "the operator should check the media volume" in failed["failure"]
    assert failed["files"] == []
    for name in ("manifest.json", "train.jsonl"):
        assert client.get(f"/api/v1/exports/{failed['id']}/files/{name}").status_code == 404
    assert list(volume.iterdir()) == []

    with jobs_here():  # the operator fixed the volume
        done = client.post(url, BODY, content_type="application/json").json()
    done = client.get(f"/api/v1/exports/{done['id']}").json()
    assert done["status"] == "succeeded" and sum(done["counts"].values()) == 40
    assert client.get(f"/api/v1/exports/{done['id']}/files/train.jsonl").status_code == 200


# Run in a mount namespace of its own, over a 16 KiB tmpfs on the export volume: export
# `first` (which needs more than that), list what is left on the volume, give it room, run
# export `second`, list again; print both lists as JSON.
JOB_ON_A_SMALL_VOLUME = """
import json, os, subprocess, sys
import django
django.setup()
from exports.jobs import run_export

volume, organization, first, second = sys.argv[1], *map(int, sys.argv[2:])

def files():
    return sorted(os.path.relpath(os.path.join(d, f), volume)
                  for d, _, names in os.walk(volume) for f in names)

run_export.apply((organization, first))
after_failure = files()
subprocess.run(["mount", "-o", "remount,size=4m", volume], check=True)
run_export.apply((organization, second))
print(json.dumps({"after_failure": after_failure, "after_success": files()}))
"""


def test_an_export_that_fills_the_volume_fails_saying_so_and_leaves_nothing(
    transactional_db, acme, settings, tmp_path
):
    project = judged_project(acme.organization, 400)
    with scopes_disabled():
        first, second = (
            Export.objects.create(
                organization=acme.organization,
                project=project,
                format="trl",
                options=asdict(Options(policy="all", ratios=(0.8, 0.2), seed=1)),
            )
            for _ in range(2)
        )
    volume = Path(settings.MEDIA_ROOT) / "exports"
    volume.mkdir(parents=True)
    db = connection.settings_dict
    namespace = ["unshare", "--mount", "--propagation", "private"]
    if os.geteuid() != 0:
        namespace[1:1] = ["--user", "--map-root-user"]
    script = tmp_path / "job.py"
    script.write_text(JOB_ON_A_SMALL_VOLUME)
    child = subprocess.run(
        [
            *namespace,
            "sh",
            "-c",
            'mount -t tmpfs -o size=16k tmpfs "$1" && shift && exec "$@"',
            "sh",
            str(volume),
            sys.executable,
            str(script),
            str(volume),
            str(acme.organization.pk),
            str(first.pk),
            str(second.pk),
        ],
        cwd=ROOT,
        env={
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "PYTHONPATH": str(ROOT),
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "REDIS_URL": settings.REDIS_URL,
            "DJANGO_MEDIA_ROOT": str(settings.MEDIA_ROOT),
            "LOG_LEVEL": "CRITICAL",
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    seen = json.loads(child.stdout.strip().splitlines()[-1])

    with scopes_disabled():
        first.refresh_from_db()
        second.refresh_from_db()
    assert first.status == "failed"
    assert first.failure == (
        "Failed: The export could not be written: the server's disk is full (\"No space left "
        "on device\"); run it again once space is freed (the worker's log has the details)."
    )
    assert first.files == [] and first.counts == {}
    assert seen["after_failure"] == []  # not a byte of it left on the full volume

    assert second.status == "succeeded" and sum(second.counts.values()) == 400
    folder = f"{acme.organization.pk}/{project.pk}/{second.pk}"
    listed = sorted(f"{folder}/{f['name']}" for f in second.files)
    assert seen["after_success"] == sorted([*listed, f"{folder}/manifest.json"])
