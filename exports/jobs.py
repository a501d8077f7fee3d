"""Celery jobs of the exports app (autodiscovered as ``jobs``)."""

from project.celery import app
from tasks.jobs import ORGANIZATION_JOB


@app.task(**ORGANIZATION_JOB)
def run_export(self, organization_id: int, export_id: int) -> str:
    from exports.services import run_export as run

    return run(export_id).status
