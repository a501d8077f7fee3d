"""Celery jobs of the annotation app (autodiscovered as ``jobs``): thin doors into a service."""

from annotation import judge
from annotation.models import JudgeRun
from project.celery import app
from tasks.jobs import ORGANIZATION_JOB


@app.task(**ORGANIZATION_JOB, job_model=JudgeRun)
def run_judge(self, organization_id: int, run_id: int) -> str:
    """Ask the AI judge for a run's missing verdicts, then aggregate and route
    (annotation.judge.run)."""
    return judge.run(run_id).status
