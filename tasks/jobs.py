"""Celery jobs of the tasks app (autodiscovered as ``jobs``)."""

from django.db import OperationalError

from project.celery import OrganizationTask, app

# A job on one organization's rows, tried again when the database is briefly unreachable.
ORGANIZATION_JOB = {
    "base": OrganizationTask,
    "bind": True,
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "max_retries": 5,
}


@app.task(**ORGANIZATION_JOB)
def run_import(self, organization_id: int, job_id: int) -> str:
    from tasks.imports import run_import_job

    return run_import_job(job_id).status


@app.task(**ORGANIZATION_JOB)
def run_generation(self, organization_id: int, job_id: int) -> None:
    """Dispatch a generation job's missing work in chunks (also how a job is resumed)."""
    from tasks.generation import dispatch

    dispatch(job_id)


@app.task(**ORGANIZATION_JOB)
def generate_chunk(
    self, organization_id: int, job_id: int, epoch: int, prompt_ids: list, index: int = 0
) -> None:
    """Generate the candidates a chunk of prompts lacks."""
    from tasks.generation import run_chunk

    run_chunk(job_id, epoch, prompt_ids, index)


@app.task
def resume_stalled_generations() -> int:
    """Beat: resume generation jobs whose worker died (no sign of life for a while)."""
    from tasks.generation import resume_stalled

    return resume_stalled()
