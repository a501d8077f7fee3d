"""One lifecycle for every background job — imports, exports, QC reports and generation
chunks: claimed (queued → running), worked, then finished as succeeded or failed with a
reason the person who started it can read. The states and fields are on
``tasks.models.OrganizationJob``; each kind brings only its work."""

import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from tasks.models import JobStatus, OrganizationJob

logger = logging.getLogger(__name__)

Job = TypeVar("Job", bound=OrganizationJob)


class JobRefused(Exception):
    """Raised by a job's work when what was asked cannot be done for a reason the person
    who asked can act on (their file, their choice): the job fails with this message as
    its error, and no traceback is logged, since nothing is broken."""


def claim(jobs: QuerySet, job_id: int) -> bool:
    """Mark the job running, if it is queued or was running when its worker died (a
    redelivered message); False when it has finished, so a second delivery does nothing.
    One conditional UPDATE: two workers cannot both see it queued and both start it."""
    return bool(
        jobs.filter(pk=job_id, status__in=[JobStatus.QUEUED, JobStatus.RUNNING]).update(
            status=JobStatus.RUNNING, started_at=timezone.now()
        )
    )


def finish(job: OrganizationJob, status: str, *, error: str = "", fields: Iterable[str] = ()):
    """Store the job's final state, its error (empty when it succeeded) and the time, with
    ``fields`` the work set (its results)."""
    job.status, job.error, job.finished_at = status, error, timezone.now()
    job.save(update_fields=["status", "error", "finished_at", *fields])


def run_job(
    jobs: QuerySet,
    job_id: int,
    work: Callable[[Job], None],
    *,
    outcome: str,
    fields: Iterable[str] = (),
) -> Job:
    """Run job ``job_id`` of ``jobs`` (a queryset of one job model, with what ``work``
    needs selected): claim it, call ``work(job)``, which sets the job's result fields
    (``fields``), and finish it as succeeded; or as failed when ``work`` raises:
    JobRefused with its message, anything else with ``outcome`` ("The export could not be
    written") and the kind of fault (``OrganizationJob.reason_for``), the traceback going
    to the log. Returns the job; a finished one is returned untouched.

    ``work`` runs in a savepoint: a query the database refuses must not abort the
    transaction the failure is then written in (the caller may hold one)."""
    claimed = claim(jobs, job_id)
    job = jobs.get(pk=job_id)
    if not claimed:
        return job
    try:
        with transaction.atomic():
            work(job)
    except JobRefused as refused:
        finish(job, JobStatus.FAILED, error=str(refused), fields=fields)
    except Exception as error:
        logger.exception("%s %s failed", job._meta.verbose_name, job.pk)
        finish(job, JobStatus.FAILED, error=job.reason_for(error, outcome), fields=fields)
    else:
        finish(job, JobStatus.SUCCEEDED, fields=fields)
    return job
