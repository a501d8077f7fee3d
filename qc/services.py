"""Making QC reports: queued, computed by a job, stored."""

import logging
from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Max
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
    """Compute a queued report and store its numbers, or its failure and why."""
    report = QCReport.objects.select_related("project").get(pk=report_id)
    report.status, report.started_at = QCReport.Status.RUNNING, timezone.now()
    report.save(update_fields=["status", "started_at"])
    try:
        # A savepoint: a query the database refuses must not abort the transaction that
        # the failure is then written in (the caller may hold one).
        with transaction.atomic():
            report.data = compute_report(report.project)
        report.status = QCReport.Status.SUCCEEDED
    except Exception as error:
        logger.exception("QC report %s failed", report.pk)
        report.status = QCReport.Status.FAILED
        report.error = QCReport.reason_for(error, "The report could not be computed")
    report.finished_at = timezone.now()
    report.save(update_fields=["data", "status", "error", "finished_at"])
    return report


def latest(project: Project) -> QCReport | None:
    """The project's newest successful report: the figures the dashboard shows."""
    return (
        QCReport.objects.filter(project=project, status=QCReport.Status.SUCCEEDED)
        .order_by("-finished_at")
        .first()
    )


@dataclass
class Reports:
    """Where a project's reports stand: the figures to show (``shown``), the newest
    finished attempt if it failed (``failed``), and one being computed (``pending``)."""

    shown: QCReport | None
    failed: QCReport | None
    pending: QCReport | None


def reports_of(project: Project) -> Reports:
    """The project's reports as its dashboard and API show them: the newest finished one
    decides whether the last attempt failed; the figures are always a successful one's."""
    reports = QCReport.objects.filter(project=project)
    finished = (
        reports.filter(status__in=[QCReport.Status.SUCCEEDED, QCReport.Status.FAILED])
        .order_by(F("finished_at").desc(nulls_last=True), "-pk")
        .first()
    )
    pending = (
        reports.filter(status__in=[QCReport.Status.QUEUED, QCReport.Status.RUNNING])
        .order_by("-created_at", "-pk")
        .first()
    )
    if finished is not None and finished.status == QCReport.Status.FAILED:
        return Reports(shown=latest(project), failed=finished, pending=pending)
    return Reports(shown=finished, failed=None, pending=pending)


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
