"""Celery jobs of the QC app (autodiscovered as ``jobs``)."""

from project.celery import app
from qc import services
from qc.models import Leaderboard, QCReport
from tasks.jobs import ORGANIZATION_JOB


@app.task(**ORGANIZATION_JOB, job_model=QCReport)
def run_qc_report(self, organization_id: int, report_id: int) -> str:
    return services.run_report(report_id).status


@app.task
def refresh_qc_reports() -> int:
    """Beat: a fresh report for every active project with judgments since its last one."""
    return services.refresh_all()


@app.task(**ORGANIZATION_JOB, job_model=Leaderboard)
def run_leaderboard(self, organization_id: int, leaderboard_id: int) -> str:
    return services.run_leaderboard(leaderboard_id).status
