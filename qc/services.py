"""Making QC reports: queued, computed by a job, stored."""

import logging

from django.db.models import Max
from django.utils import timezone
from django_scopes import scope, scopes_disabled

from annotation.models import Judgment
from qc.models import QCReport
from qc.report import compute_report
from tasks.models import Project

logger = logging.getLogger(__name__)


def request_report(project: Project, created_by=None) -> QCReport:
    from qc.jobs import run_qc_report

    report = QCReport.objects.create(
        organization=project.organization, project=project, created_by=created_by
    )
    run_qc_report.delay_on_commit(project.organization_id, report.pk)
    return report


def run_report(report_id: int) -> QCReport:
    report = QCReport.objects.select_related("project").get(pk=report_id)
    report.status, report.started_at = QCReport.Status.RUNNING, timezone.now()
    report.save(update_fields=["status", "started_at"])
    try:
        report.data = compute_report(report.project)
        report.status = QCReport.Status.SUCCEEDED
    except Exception:
        logger.exception("QC report %s failed", report.pk)
        report.status, report.error = QCReport.Status.FAILED, "The report could not be computed."
    report.finished_at = timezone.now()
    report.save(update_fields=["data", "status", "error", "finished_at"])
    return report


def latest(project: Project) -> QCReport | None:
    return (
        QCReport.objects.filter(project=project, status=QCReport.Status.SUCCEEDED)
        .order_by("-finished_at")
        .first()
    )


def refresh_all() -> int:
    """Queue a report for each active project whose judgments changed since its last one."""
    queued = 0
    with scopes_disabled():
        projects = list(Project.objects.filter(status=Project.Status.ACTIVE))
    for project in projects:
        with scope(organization=project.organization):
            newest = Judgment.objects.filter(project=project).aggregate(m=Max("updated_at"))["m"]
            last = latest(project)
            if newest and (last is None or last.started_at < newest):
                request_report(project)
                queued += 1
    return queued
