from django.db import models

from tasks.models import OrganizationJob, Project


class Export(OrganizationJob):
    """A dataset export of a project: format and options, run by a Celery job into
    MEDIA_ROOT/exports/<organization>/<project>/<export>/, with counts and checksums."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="exports")
    format = models.CharField(max_length=32)
    options = models.JSONField(default=dict, help_text="exports.pairs.Options as run")
    counts = models.JSONField(default=dict, blank=True, help_text="Rows per split.")
    files = models.JSONField(default=list, blank=True, help_text='[{"name", "rows", "sha256"}]')

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        return f"export {self.pk} of {self.project_id} ({self.format}, {self.status})"

    def audit_facts(self) -> dict:
        return {"format": self.format, "options": self.options, "counts": self.counts}
