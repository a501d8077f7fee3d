"""Celery jobs of the tasks app (autodiscovered as ``jobs``), and the base every
organization's job uses (OrganizationTask, ORGANIZATION_JOB). Jobs are thin doors: each
calls one service, which runs the job through ``tasks.lifecycle``. A job that runs one
row of a job model names it (``job_model``): beat's sweeper (``sweep_jobs``) then sends it
again when its message was lost, or its worker died."""

from celery.contrib.django.task import DjangoTask
from django.db import OperationalError
from django_scopes import scope

from project.celery import app
from tasks import generation, imports, lifecycle
from tasks.models import GenerationJob, ImportJob, Organization


class OrganizationTask(DjangoTask):
    """Base for jobs that work on one organization's rows.

    The first argument is the organization id; the job body runs inside that
    organization's scope, so scoped managers filter exactly as they do in a request.
    (pretix's EventTask does the same for events.) DjangoTask adds ``delay_on_commit``.
    """

    abstract = True
    acks_late = True

    def __call__(self, organization_id: int, *args, **kwargs):
        organization = Organization.objects.get(pk=organization_id)
        with scope(organization=organization):
            return super().__call__(organization_id, *args, **kwargs)


# A job on one organization's rows, tried again when the database is briefly unreachable.
# A job run through tasks.lifecycle adds ``"job_model": <its model>``.
ORGANIZATION_JOB = {
    "base": OrganizationTask,
    "bind": True,
    "autoretry_for": (OperationalError,),
    "retry_backoff": True,
    "max_retries": 5,
}


@app.task(**ORGANIZATION_JOB, job_model=ImportJob)
def run_import(self, organization_id: int, job_id: int) -> str:
    return imports.run_import_job(job_id).status


@app.task(**ORGANIZATION_JOB, job_model=GenerationJob)
def run_generation(self, organization_id: int, job_id: int) -> None:
    """Dispatch a generation job's missing work in chunks (also how a job is resumed)."""
    generation.dispatch(job_id)


@app.task(**ORGANIZATION_JOB)
def generate_chunk(
    self, organization_id: int, job_id: int, epoch: int, prompt_ids: list, index: int = 0
) -> None:
    """Generate the candidates a chunk of prompts lacks."""
    generation.run_chunk(job_id, epoch, prompt_ids, index)


@app.task
def sweep_jobs() -> dict:
    """Beat: jobs a dead worker or an unreachable job queue left behind are sent again
    (tasks.lifecycle.sweep), generation jobs resume the chunks a dead worker had."""
    app.loader.import_default_modules()  # every app's jobs, whichever were imported here
    jobs = [task for task in app.tasks.values() if getattr(task, "job_model", None)]
    forgot = lifecycle.broker_forgot(app)
    counts = lifecycle.sweep(jobs, broker_forgot=forgot)
    counts["resumed"] += generation.resume_stalled(broker_forgot=forgot)
    return {name: count for name, count in counts.items() if count}
