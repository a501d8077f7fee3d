"""What every background job of an organization records, and import jobs."""

import errno

from django.conf import settings
from django.db import DatabaseError, models
from django_scopes import ScopedManager

from tasks.models.organizations import Organization
from tasks.models.projects import Project


class JobStatus(models.TextChoices):
    """Where a job stands. A kind of job may add states (GenerationJob's cancelling and
    cancelled, see ``with_states``); these four every job has."""

    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"

    @classmethod
    def with_states(cls, name: str, *states: tuple[str, str, str]):
        """These states and ``states`` ((NAME, value, label), ...) as one TextChoices."""
        members = [(m.name, (m.value, m.label)) for m in cls]
        return models.TextChoices(name, members + [(n, (v, label)) for n, v, label in states])


class OrganizationJob(models.Model):
    """What every background job of an organization records: who started it, its state,
    when it ran and, if it failed, why. ``tasks.lifecycle.run_job`` runs a job through
    these states; each kind adds what it works on and what it produced.

    What keeps a job from being lost or run twice (``tasks.lifecycle``): when its message
    reached the job queue (``sent_at``), which message a worker runs it for and how many
    times a worker started it (``message_id``, ``attempts``: the claim that a worker which
    lost the job cannot finish it with), and the worker's sign of life while it runs
    (``heartbeat_at``); beat's sweeper sends again what the queue never got and queues
    again what a dead worker held."""

    Status = JobStatus
    # The states a job does not leave (a kind with more states extends this).
    FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED)
    # tasks.lifecycle.run_job runs this kind: a job its worker lost is queued again whole.
    # (GenerationJob says False: it resumes its own chunks, see tasks.generation.)
    RERUN_WHEN_LOST = True

    organization = models.ForeignKey(Organization, on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    sent_at = models.DateTimeField(
        null=True, blank=True, help_text="When its message reached the job queue; empty: not yet."
    )
    message_id = models.CharField(
        max_length=64, blank=True, help_text="The job queue's message the worker runs it for."
    )
    attempts = models.PositiveSmallIntegerField(default=0, help_text="Times a worker started it.")
    heartbeat_at = models.DateTimeField(
        null=True, blank=True, help_text="The last sign of life of the worker running it."
    )

    objects = ScopedManager(organization="organization")

    class Meta:
        abstract = True
        ordering = ["-created_at"]

    @property
    def finished(self) -> bool:
        return self.status in self.FINISHED

    def audit_facts(self) -> dict:
        """What the audit trail records about this job when it starts and ends, besides
        its state and error (each kind names its own)."""
        return {}

    @property
    def waiting_for_queue(self) -> bool:
        """Queued, but its message has not reached the job queue (it was unreachable when
        the job was asked for): beat's sweeper sends it once the queue is back."""
        return self.status == JobStatus.QUEUED and self.sent_at is None

    @property
    def status_note(self) -> str:
        """What its status alone does not say, for the person who started it (empty when
        nothing needs saying)."""
        if self.waiting_for_queue:
            return (
                "Waiting for the job queue, which cannot be reached just now; the job is "
                "kept and starts by itself once the queue is back."
            )
        return ""

    @property
    def failure(self) -> str:
        """For a failed job, "Failed: <reason>" (empty otherwise): what its page, the
        admin and the API show where the job's result would be, so that a failure is never
        mistaken for a result still to come."""
        if self.status != "failed":
            return ""
        return f"Failed: {self.failure_reason() or 'no reason was recorded.'}"

    def failure_reason(self) -> str:
        """Why the job failed, in words for the person who started it (no traceback: the
        worker's log has that)."""
        return self.error

    @staticmethod
    def reason_for(error: Exception, outcome: str) -> str:
        """What a job stores as its ``error`` when ``error`` stopped it: ``outcome`` ("The
        export could not be written") and the kind of fault, for the person who started it
        and the operator who fixes it; never the traceback or the data, which the worker's
        log has."""
        full = (errno.ENOSPC, errno.EDQUOT)
        refused = (errno.EACCES, errno.EPERM, errno.EROFS)
        if isinstance(error, DatabaseError):
            cause = "the database refused one of its queries"
        elif isinstance(error, OSError) and error.errno in full:
            cause = (
                f'the server\'s disk is full ("{error.strerror}"); run it again once space is freed'
            )
        elif isinstance(error, OSError) and error.errno in refused:
            cause = (
                f'the server may not write to its storage ("{error.strerror}"); the operator '
                "should check the media volume"
            )
        elif isinstance(error, OSError) and error.strerror:
            cause = f'the server\'s file system said "{error.strerror}"'
        else:
            cause = "an unexpected error"
        return f"{outcome}: {cause} (the worker's log has the details)."


class ImportJob(OrganizationJob):
    """An upload being imported in the background: prompts into a project, or a Potato
    config with its data files. Progress while it runs is in the cache (the import itself
    is one transaction, invisible until it commits); the outcome is stored here."""

    class Kind(models.TextChoices):
        PROMPTS = "prompts", "Prompts into a project"
        POTATO = "potato", "Potato config and data"
        FEEDBACK = "feedback", "Feedback logs, A/B tests, grades or corrections into a project"
        # Not an upload, but the same kind of work: one long all-or-nothing transaction on a
        # project with a report (tasks.imports.start_pair_build).
        PAIRS = "pairs", "Pairs built from a project's feedback signals"

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="import_jobs"
    )
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.PROMPTS)
    files = models.JSONField(default=list, help_text='[{"name", "path", "size"}] as uploaded')
    skip_invalid = models.BooleanField(default=False)
    allow_duplicates = models.BooleanField(default=False)
    total_bytes = models.BigIntegerField(default=0)
    report = models.JSONField(default=dict, blank=True)
    errors = models.JSONField(default=list, blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        names = ", ".join(f["name"] for f in self.files)
        return f"import {self.pk}: {names} ({self.get_status_display()})"

    def audit_facts(self) -> dict:
        return {
            "kind": self.kind,
            "files": [f.get("name") for f in self.files],
            "bytes": self.total_bytes,
            **({"report": self.report} if self.report else {}),
        }

    def failure_reason(self) -> str:
        """The first problem, and how many more there are (the admin lists them all)."""
        if not self.errors:
            return self.error
        first = self.errors[0]
        place = ", ".join(str(first[k]) for k in ("file", "where") if first.get(k))
        if first.get("key"):
            place += f", key '{first['key']}'"
        problem = f"{place}: {first['message']}" if place else first["message"]
        count = len(self.errors) + self.report.get("problems_not_listed", 0)
        if count == 1:
            return problem
        return f"{count} problems, nothing was imported; the first: {problem}"
