from django.db import models

from tasks.models import OrganizationJob, Project


class QCReport(OrganizationJob):
    """A stored, timestamped quality report of a project (qc.report.compute_report), made
    by a Celery job on demand or periodically."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="qc_reports")
    data = models.JSONField(default=dict, blank=True)

    class Meta(OrganizationJob.Meta):
        verbose_name = "QC report"

    def __str__(self) -> str:
        return f"QC report {self.pk} of {self.project_id} ({self.status})"
