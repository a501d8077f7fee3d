from django.db import models

from tasks.models import OrganizationJob, Project


class Export(OrganizationJob):
    """A dataset export of a project: format and options, run by a Celery job into
    MEDIA_ROOT/exports/<organization>/<project>/<export>/, with counts and checksums."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=32)
    options = models.JSONField(default=dict, help_text="exports.pairs.Options as run")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    counts = models.JSONField(default=dict, blank=True, help_text="Rows per split.")
    files = models.JSONField(default=list, blank=True, help_text='[{"name", "rows", "sha256"}]')
    error = models.TextField(blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        return f"export {self.pk} of {self.project_id} ({self.format}, {self.status})"

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.FAILED)
