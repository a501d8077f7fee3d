"""Celery jobs of the exports app (autodiscovered as ``jobs``)."""

from exports import services
from exports.models import Export
from project.celery import app
from tasks.jobs import ORGANIZATION_JOB


@app.task(**ORGANIZATION_JOB, job_model=Export)
def run_export(self, organization_id: int, export_id: int) -> str:
    return services.run_export(export_id).status
