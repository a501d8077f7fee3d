"""Making QC reports and leaderboards: queued, computed by a job, stored."""

from dataclasses import dataclass

from django.db import transaction
from django.db.models import F, Max
from django_scopes import scope, scopes_disabled

from annotation.models import Judgment
from qc.leaderboard import compute_leaderboard
from qc.models import Leaderboard, QCReport
from qc.report import build_report
from tasks.audit import Action, record
from tasks.lifecycle import run_job, send
from tasks.models import JobStatus, Project

AUDIT_OBJECT = "qc_report"  # a report's object_type on the trail


@transaction.atomic
def request_report(project: Project, created_by=None) -> QCReport:
    """Queue a report; on the trail as asked for by whoever asked (a lead, a token, or the
    periodic refresh: "system")."""
    from qc.jobs import run_qc_report  # qc.jobs imports this module

    # On the trail as qc_report.created, and later succeeded or failed (tasks.audit.connect_job).
    report = QCReport.objects.create(
        organization=project.organization, project=project, created_by=created_by
    )
    send(run_qc_report, report)
    return report


def record_download(report: QCReport, fmt: str) -> None:
    """A report's figures handed out: a CSV or JSON file from the dashboard, or the API's
    answer ("api"). Each one is on the trail, as export files are."""
    record(
        Action.QC_REPORT_DOWNLOADED,
        organization=report.organization_id,
        obj=report,
        object_type=AUDIT_OBJECT,
        data={"project": report.project_id, "format": fmt},
    )


def run_report(report_id: int) -> QCReport:
    """Compute a queued report and store its numbers, or its failure and why."""

    def work(report: QCReport) -> None:
        previous = latest(report.project)
        report.data, report.tally = build_report(
            report.project, getattr(previous, "data", None), getattr(previous, "tally", None)
        )

    return run_job(
        QCReport.objects.select_related("project"),
        report_id,
        work,
        outcome="The report could not be computed",
        fields=["data", "tally"],
    )


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
    finished, pending = _standing(QCReport.objects.filter(project=project))
    if finished is not None and finished.status == QCReport.Status.FAILED:
        return Reports(shown=latest(project), failed=finished, pending=pending)
    return Reports(shown=finished, failed=None, pending=pending)


def _standing(jobs):
    """The newest finished job of ``jobs`` (succeeded or failed) and the newest pending one."""
    finished = (
        jobs.filter(status__in=[JobStatus.SUCCEEDED, JobStatus.FAILED])
        .order_by(F("finished_at").desc(nulls_last=True), "-pk")
        .first()
    )
    pending = (
        jobs.filter(status__in=[JobStatus.QUEUED, JobStatus.RUNNING])
        .order_by("-created_at", "-pk")
        .first()
    )
    return finished, pending


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


# Leaderboards (qc.leaderboard): queued by a lead or the API, computed by a job, stored.


@transaction.atomic
def request_leaderboard(
    *,
    organization,
    project: Project | None = None,
    source_kind: str = Leaderboard.SourceKind.MODEL,
    length_control: bool = False,
    created_by=None,
) -> Leaderboard:
    """Queue a leaderboard of ``project``, or of every project of ``organization`` when
    ``project`` is None. On the trail as leaderboard.created (qc.models connects it)."""
    from qc.jobs import run_leaderboard  # qc.jobs imports this module

    if source_kind not in Leaderboard.SourceKind.values:
        raise ValueError(f"Unknown source kind {source_kind!r}.")
    board = Leaderboard.objects.create(
        organization=organization,
        project=project,
        source_kind=source_kind,
        length_control=length_control,
        created_by=created_by,
    )
    send(run_leaderboard, board)
    return board


def run_leaderboard(board_id: int) -> Leaderboard:
    """Compute a queued leaderboard and store its table, or its failure and why. A rerun
    computes the same table again (a fixed bootstrap seed: the job's id)."""

    def work(board: Leaderboard) -> None:
        board.data = compute_leaderboard(
            board.organization,
            board.project,
            kind=board.source_kind,
            length_control=board.length_control,
            seed=board.pk,
        )

    return run_job(
        Leaderboard.objects.select_related("project", "organization"),
        board_id,
        work,
        outcome="The leaderboard could not be computed",
        fields=["data"],
    )


@dataclass
class Leaderboards:
    """Where the leaderboards of a project (or of the organization) stand, as for reports:
    the newest successful one (``shown``), the newest finished attempt if it failed, and
    one being computed."""

    shown: Leaderboard | None
    failed: Leaderboard | None
    pending: Leaderboard | None


def leaderboards_of(organization, project: Project | None) -> Leaderboards:
    boards = Leaderboard.objects.filter(organization=organization, project=project)
    finished, pending = _standing(boards)
    if finished is not None and finished.status == Leaderboard.Status.FAILED:
        shown = (
            boards.filter(status=Leaderboard.Status.SUCCEEDED)
            .order_by(F("finished_at").desc(nulls_last=True), "-pk")
            .first()
        )
        return Leaderboards(shown=shown, failed=finished, pending=pending)
    return Leaderboards(shown=finished, failed=None, pending=pending)


def record_leaderboard_download(board: Leaderboard, fmt: str) -> None:
    """A leaderboard's table handed out (CSV, JSON or the API's answer), on the trail."""
    record(
        Action.LEADERBOARD_DOWNLOADED,
        organization=board.organization_id,
        obj=board,
        object_type="leaderboard",
        data={"project": board.project_id, "format": fmt},
    )
