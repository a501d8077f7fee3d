"""The demo's feedback project: a support team's chat feedback (thumbs, ratings,
regenerations, edits, complaints), two A/B tests and two expert corrections, imported with
redaction, its pairs built and the weak ones waiting for the annotators to verify.
Idempotent: imports add nothing twice and the builder keeps what experts decided."""

from pathlib import Path

from django_scopes import scope

from tasks.feedback.verify import build_and_queue
from tasks.importers.feedback import import_feedback
from tasks.models import Organization, Project
from tasks.project_templates import VERIFY_PAIRS

FEEDBACK_PROJECT_NAME = "Support chat feedback (pairs to verify)"
DATA = Path(__file__).resolve().parent / "data" / "feedback"
FILES = [
    ("support-chat-feedback.jsonl", "feedback"),
    ("ab-tests.csv", "ab_test"),
    ("corrections.csv", "correction"),
]


def build_feedback_project(*, organization: Organization) -> Project:
    with scope(organization=organization):
        project, _ = Project.objects.get_or_create(
            organization=organization,
            name=FEEDBACK_PROJECT_NAME,
            defaults={
                "description": "Pairs built from what our support assistant's users did: "
                "experts check the ones the signal is unsure of.",
                "status": Project.Status.ACTIVE,
                "mode": VERIFY_PAIRS.mode,
                "questions": VERIFY_PAIRS.questions,
                "guidelines": VERIFY_PAIRS.guidelines,
            },
        )
        for name, kind in FILES:
            with (DATA / name).open("rb") as stream:
                import_feedback(project=project, files=[(name, stream)], kind=kind, redact=True)
        build_and_queue(project=project)
    return project
