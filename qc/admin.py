from django.contrib import admin
from django.urls import reverse
from django.utils.html import format_html

from qc.models import QCReport
from tasks.admin.base import OrganizationJobAdmin


@admin.register(QCReport)
class QCReportAdmin(OrganizationJobAdmin):
    """QC reports with their outcome; they are computed from the project's Quality control
    page, the API or beat, and read on that page."""

    list_display = ["__str__", "project", "state", "created_by", "created_at", "finished_at"]
    list_filter = ["status"]
    list_select_related = ["project", "created_by"]
    fields = ["project", "state", "result", "created_by", "created_at", "started_at", "finished_at"]
    readonly_fields = fields

    @admin.display(description="Result")
    def result(self, report):
        if report.failure:
            return report.failure
        if report.status != QCReport.Status.SUCCEEDED:
            return "Being computed."
        return format_html(
            '{} judgments by {} annotators · <a href="{}">open the dashboard</a>',
            report.data.get("judgments", 0),
            report.data.get("annotators", 0),
            reverse("qc:dashboard", args=[report.project_id]),
        )
