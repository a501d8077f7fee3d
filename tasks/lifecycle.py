"""One lifecycle for every background job — imports, exports, QC reports and generation
chunks: claimed (queued → running), worked, then finished as succeeded or failed with a
reason the person who started it can read. The states and fields are on
``tasks.models.OrganizationJob``; each kind brings only its work.

Nothing is lost or done twice when a worker dies or the job queue (the broker) is away:

- ``send`` hands a job's message to the queue after the transaction that made the job
  commits; a queue that cannot be reached leaves the job queued and unsent, not an error;
- ``claim`` takes a job for one worker and one message, with one conditional UPDATE: a
  second message for the same job (sent again, redelivered late) finds it held or
  finished and does nothing;
- while ``work`` runs, a thread marks the job alive (``heartbeat``); its result and its
  final state commit in one transaction, and only while this worker still holds it;
- ``sweep`` (beat, every CHOSEN_JOB_SWEEP_SECONDS) sends what never reached the queue and
  queues again a running job whose worker went silent for CHOSEN_JOB_STALE_SECONDS, so a
  killed worker's job runs again within about STALE + SWEEP seconds, not after the
  broker's visibility timeout.
"""

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from datetime import timedelta
from typing import TypeVar

from celery import current_task
from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone
from django_scopes import scopes_disabled
from kombu.exceptions import OperationalError as QueueUnreachable

from tasks.audit import record_job_requeued
from tasks.models import JobStatus, OrganizationJob

logger = logging.getLogger(__name__)

Job = TypeVar("Job", bound=OrganizationJob)


class JobRefused(Exception):
    """Raised by a job's work when what was asked cannot be done for a reason the person
    who asked can act on (their file, their choice): the job fails with this message as
    its error, and no traceback is logged, since nothing is broken."""


class _JobLost(Exception):
    """The job was taken from this worker (its heartbeat went silent and the sweeper queued
    it again): what this worker did is rolled back and the job left to its new holder."""


def gave_up(attempts: int) -> str:
    """The error of a job whose workers kept dying under it."""
    return (
        f"The worker running this job stopped {attempts} times before it could finish "
        "(killed, or out of memory); it was not tried again. The worker's log may say why."
    )


# --- sending -------------------------------------------------------------------------------


def send(task, job: OrganizationJob) -> None:
    """Send ``task`` (a Celery job taking the organization and the job's id) for ``job``
    once the current transaction commits, and note when it reached the queue. A queue that
    cannot be reached is logged, not raised: the job stays queued with no ``sent_at``
    (``waiting_for_queue``) and the sweeper sends it once the queue is back."""
    model, pk, organization = type(job), job.pk, job.organization_id

    def deliver() -> None:
        try:
            task.apply_async((organization, pk))
        except QueueUnreachable as error:
            logger.warning(
                "%s %s stays queued: the job queue is unreachable (%s); it is sent when "
                "the queue is back",
                model._meta.verbose_name,
                pk,
                error,
            )
            model._base_manager.filter(pk=pk, status=JobStatus.QUEUED).update(sent_at=None)
            return
        model._base_manager.filter(pk=pk, sent_at__isnull=True).update(sent_at=timezone.now())

    transaction.on_commit(deliver, robust=True)


# --- claiming, working, finishing ----------------------------------------------------------


def _message() -> tuple[str, bool]:
    """The id of the Celery message this code runs for, and whether the broker delivered
    it before (its worker died: the pool child, or the whole worker long ago); ("", False)
    outside a worker, e.g. a small import run during its request."""
    request = getattr(current_task, "request", None)
    if request is None or getattr(request, "called_directly", True) or not request.id:
        return "", False
    delivery = request.delivery_info or {}
    return request.id, bool(delivery.get("redelivered"))


def claim(jobs: QuerySet, job_id: int) -> int | None:
    """Mark the job running for this worker and return its attempt number (the claim,
    which ``finish`` must still hold); None when it is finished, or held by a live worker,
    so a second message for it does nothing. One conditional UPDATE: two workers cannot
    both take it.

    A running job is taken over when its worker went silent (no heartbeat for
    CHOSEN_JOB_STALE_SECONDS), or when this very message comes back redelivered: the
    broker only does that when the worker that had it died."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CHOSEN_JOB_STALE_SECONDS)
    message, redelivered = _message()
    silent = Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    takeable = Q(status=JobStatus.QUEUED) | Q(silent, status=JobStatus.RUNNING)
    if redelivered:
        takeable |= Q(status=JobStatus.RUNNING, message_id=message)
    with transaction.atomic():
        taken = jobs.filter(takeable, pk=job_id).update(
            status=JobStatus.RUNNING,
            started_at=now,
            heartbeat_at=now,
            message_id=message,
            attempts=F("attempts") + 1,
        )
        if not taken:
            return None
        return jobs.filter(pk=job_id).values_list("attempts", flat=True).get()


def finish(job: OrganizationJob, status: str, *, error: str = "", fields: Iterable[str] = ()):
    """Store the job's final state, its error (empty when it succeeded) and the time, with
    ``fields`` the work set (its results)."""
    job.status, job.error, job.finished_at = status, error, timezone.now()
    job.save(update_fields=["status", "error", "finished_at", *fields])


def _finish_held(job: OrganizationJob, attempt: int, status: str, **kwargs) -> bool:
    """``finish`` the job if claim ``attempt`` still holds it (its row locked until the
    transaction ends); False, writing nothing, if it was taken from this worker."""
    with transaction.atomic():
        held = (
            type(job)
            ._base_manager.select_for_update()
            .filter(pk=job.pk, attempts=attempt, status=JobStatus.RUNNING)
        )
        if not list(held.values_list("pk", flat=True)):
            return False
        finish(job, status, **kwargs)
        return True


@contextmanager
def heartbeat(model, pk: int, **held):
    """While the block runs, a thread of its own marks job ``pk`` alive every
    CHOSEN_JOB_HEARTBEAT_SECONDS (as long as it matches ``held``, e.g. this worker's
    claim): the sweeper tells a busy job from one whose worker died by it. Nothing is
    started inside a transaction (a request's or a test's): another connection could not
    see the job, and no worker can lose a job that is not committed yet."""
    if connection.in_atomic_block:
        yield
        return
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.CHOSEN_JOB_HEARTBEAT_SECONDS):
                alive = model._base_manager.filter(pk=pk, **held)
                if not alive.update(heartbeat_at=timezone.now()):
                    return  # finished, cancelled or taken over: nothing to keep alive
        except Exception:
            logger.exception("%s %s: the heartbeat stopped", model._meta.verbose_name, pk)
        finally:
            connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{pk}")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def run_job(
    jobs: QuerySet,
    job_id: int,
    work: Callable[[Job], None],
    *,
    outcome: str,
    fields: Iterable[str] = (),
    prepare: Callable[[Job], None] | None = None,
) -> Job:
    """Run job ``job_id`` of ``jobs`` (a queryset of one job model, with what ``work``
    needs selected): claim it, call ``work(job)``, which sets the job's result fields
    (``fields``), and finish it as succeeded; or as failed when ``work`` raises:
    JobRefused with its message, anything else with ``outcome`` ("The export could not be
    written") and the kind of fault (``OrganizationJob.reason_for``), the traceback going
    to the log. Returns the job; a finished one, or one another worker holds, is returned
    untouched.

    ``work`` runs in a transaction (a savepoint if the caller holds one: a query the
    database refuses must not abort the transaction the failure is then written in), and
    the job is marked succeeded in that same transaction, only if this worker still holds
    it: a worker that lost the job (its heartbeat went silent, the sweeper queued it again)
    leaves nothing behind, and a worker killed before the commit left nothing either, so
    the job can simply run again. ``prepare(job)``, if given, runs first, outside that
    transaction, and fails the job as ``work`` does: for the long waits (a model writing
    its replies) a transaction must not be held open through. A job whose workers died
    CHOSEN_JOB_MAX_ATTEMPTS times fails instead of running once more."""
    attempt = claim(jobs, job_id)
    job = jobs.get(pk=job_id)
    if attempt is None:
        return job
    if attempt > settings.CHOSEN_JOB_MAX_ATTEMPTS:
        _finish_held(job, attempt, JobStatus.FAILED, error=gave_up(attempt - 1), fields=fields)
        return job
    with heartbeat(type(job), job.pk, attempts=attempt, status=JobStatus.RUNNING):
        try:
            if prepare is not None:
                prepare(job)
            with transaction.atomic():
                work(job)
                if not _finish_held(job, attempt, JobStatus.SUCCEEDED, fields=fields):
                    raise _JobLost
        except _JobLost:
            logger.warning("%s %s was taken over by another worker", job._meta.verbose_name, job.pk)
            job.refresh_from_db()
        except JobRefused as refused:
            _finish_held(job, attempt, JobStatus.FAILED, error=str(refused), fields=fields)
        except Exception as error:
            logger.exception("%s %s failed", job._meta.verbose_name, job.pk)
            error = job.reason_for(error, outcome)
            _finish_held(job, attempt, JobStatus.FAILED, error=error, fields=fields)
    return job


# --- the sweeper ---------------------------------------------------------------------------

# The sweeper's mark in the broker's Redis: when it is gone, the broker restarted without its
# data (or was flushed), and every message it held is gone with it.
BROKER_MARK = "chosen:broker-kept-its-messages"


def broker_forgot(app) -> bool:
    """True when the broker (Redis) lost the messages it held since the last sweep: the
    sweeper's mark is missing (and is set again). False for a broker that is not Redis, or
    cannot be reached (nothing can be sent then anyway)."""
    try:
        with app.connection_for_write() as broker:
            client = getattr(broker.default_channel, "client", None)
            return client is not None and bool(client.set(BROKER_MARK, "1", nx=True))
    except Exception as error:
        logger.warning("the job queue could not be checked: %s", error)
        return False


def sweep(tasks: Iterable, *, broker_forgot: bool = False) -> Counter:
    """Beat's rescue of jobs a dead worker or an unreachable queue left behind, for each
    Celery job in ``tasks`` that names its model (``job_model``, see tasks.jobs):

    - "sent": queued jobs whose message never reached the queue (it was unreachable when
      they were asked for, or when they were queued again), and those whose message was
      lost: the broker restarted without its data (``broker_forgot``), or the message has
      waited CHOSEN_JOB_LOST_SECONDS — a message sent twice runs the job once (``claim``);
    - "requeued": running jobs run by ``run_job`` whose worker has been silent for
      CHOSEN_JOB_STALE_SECONDS, queued again and sent (generation jobs resume their chunks
      instead: tasks.generation.resume_stalled);
    - "gave_up": such a job whose workers already died CHOSEN_JOB_MAX_ATTEMPTS times fails,
      saying so.

    Returns the counts. Safe to run twice at once: each step is a conditional UPDATE."""
    now = timezone.now()
    stale = now - timedelta(seconds=settings.CHOSEN_JOB_STALE_SECONDS)
    lost = now - timedelta(seconds=settings.CHOSEN_JOB_LOST_SECONDS)
    # A job is sent right after its transaction commits: give that a moment first.
    unsent = now - timedelta(seconds=settings.CHOSEN_JOB_SWEEP_SECONDS)
    counts = Counter()
    for task in tasks:
        model = task.job_model
        with scopes_disabled():
            lost_messages = Q(sent_at__isnull=False) if broker_forgot else Q(sent_at__lt=lost)
            waiting = model._base_manager.filter(
                Q(sent_at__isnull=True, created_at__lt=unsent) | lost_messages,
                status=JobStatus.QUEUED,
            )
            for job in waiting:
                # Taken for sending by a conditional UPDATE, so two sweeps send it once
                # (``send`` clears sent_at again if the queue is still unreachable).
                mine = model._base_manager.filter(
                    pk=job.pk, status=JobStatus.QUEUED, sent_at=job.sent_at
                ).update(sent_at=now)
                if mine:
                    logger.info("%s %s: sent to the job queue", model._meta.verbose_name, job.pk)
                    send(task, job)
                    counts["sent"] += 1
            if model.RERUN_WHEN_LOST:
                for job in model._base_manager.filter(
                    Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True, started_at__lt=stale),
                    status=JobStatus.RUNNING,
                ):
                    counts[_rescue(task, job, stale)] += 1
    counts.pop("", None)
    return counts


def _rescue(task, job: OrganizationJob, stale) -> str:
    """Queue again a running job whose worker went silent, or fail it when its workers
    died too often; "requeued", "gave_up", or "" when it came back to life meanwhile."""
    model = type(job)
    if job.attempts >= settings.CHOSEN_JOB_MAX_ATTEMPTS:
        if _finish_held(job, job.attempts, JobStatus.FAILED, error=gave_up(job.attempts)):
            logger.error("%s %s: %s", model._meta.verbose_name, job.pk, gave_up(job.attempts))
            return "gave_up"
        return ""
    silent = Q(heartbeat_at__lt=stale) | Q(heartbeat_at__isnull=True)
    held = {"pk": job.pk, "attempts": job.attempts, "status": JobStatus.RUNNING}
    requeued = model._base_manager.filter(silent, **held).update(
        status=JobStatus.QUEUED, sent_at=None, heartbeat_at=None
    )
    if not requeued:
        return ""
    logger.warning(
        "%s %s: its worker has been silent since %s; queued again (attempt %s of %s)",
        model._meta.verbose_name,
        job.pk,
        job.heartbeat_at,
        job.attempts + 1,
        settings.CHOSEN_JOB_MAX_ATTEMPTS,
    )
    record_job_requeued(job, attempt=job.attempts + 1, silent_since=job.heartbeat_at)
    send(task, job)
    return "requeued"
