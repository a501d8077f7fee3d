"""Celery jobs of the tasks app (autodiscovered as ``jobs``)."""

from django.db import OperationalError

from project.celery import OrganizationTask, app


@app.task(
    base=OrganizationTask,
    bind=True,
    autoretry_for=(OperationalError,),
    retry_backoff=True,
    max_retries=5,
)
def run_import(self, organization_id: int, job_id: int) -> str:
    from tasks.imports import run_import_job

    return run_import_job(job_id).status
