from django.db import models

from tasks.models import OrganizationJob, Project


class QCReport(OrganizationJob):
    """A stored, timestamped quality report of a project (qc.report.compute_report), made
    by a Celery job on demand or periodically."""

    project = models.ForeignKey(Project, on_delete=models.CASCADE, related_name="qc_reports")
    data = models.JSONField(default=dict, blank=True)
    # What the figures were computed from (qc.tally): the next report carries it on,
    # reading only the judgments changed since. Never shown.
    tally = models.JSONField(null=True, blank=True, editable=False)

    class Meta(OrganizationJob.Meta):
        verbose_name = "QC report"

    def __str__(self) -> str:
        return f"QC report {self.pk} of {self.project_id} ({self.status})"


class Leaderboard(OrganizationJob):
    """Bradley–Terry strengths of a project's candidate sources (or of every project of the
    organization when ``project`` is empty), computed by a job (qc.leaderboard) and stored
    as the table the page, the downloads and the API show."""

    class SourceKind(models.TextChoices):
        MODEL = "model", "Model"
        VARIANT = "variant", "Variant (model and parameters)"
        RECIPE = "recipe", "Generation recipe"

    project = models.ForeignKey(
        Project, null=True, blank=True, on_delete=models.CASCADE, related_name="leaderboards"
    )
    source_kind = models.CharField(
        max_length=16, choices=SourceKind.choices, default=SourceKind.MODEL
    )
    length_control = models.BooleanField(
        default=False, help_text="Also fit with the length difference as a covariate."
    )
    data = models.JSONField(default=dict, blank=True)

    class Meta(OrganizationJob.Meta):
        pass

    def __str__(self) -> str:
        where = f"project {self.project_id}" if self.project_id else "organization"
        return f"leaderboard {self.pk} of {where} by {self.source_kind} ({self.status})"

    def audit_facts(self) -> dict:
        return {
            "project": self.project_id,
            "source_kind": self.source_kind,
            "length_control": self.length_control,
        }
