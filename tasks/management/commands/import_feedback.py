from pathlib import Path

from django.core.management.base import BaseCommand
from django_scopes import scope

from tasks.importers.feedback import KINDS, FeedbackOptionsInvalid, import_feedback
from tasks.management.commands.import_prompts import import_files, print_problems
from tasks.management.refs import project_from_ref


class Command(BaseCommand):
    help = (
        "Import preference signal (feedback logs, Open WebUI's feedback export, A/B test "
        "results, graded reviews, expert corrections) from JSON, JSONL or CSV into a project. "
        "The formats are described in tasks/importers/feedback.py."
    )

    def add_arguments(self, parser):
        parser.add_argument("project", help="ORG/PROJECT: organization slug and project name or id")
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument(
            "--kind",
            choices=KINDS,
            default="auto",
            help="what the files hold; auto tells Open WebUI's export and the others by the "
            "first row's fields",
        )
        parser.add_argument(
            "--scale",
            nargs="+",
            metavar="GRADE",
            help="the grade scale of graded reviews: two numbers (1 5, the default) or the "
            "labels from worst to best (poor fair good excellent)",
        )
        parser.add_argument(
            "--redact",
            action="store_true",
            help="replace e-mail addresses and phone numbers in every text before storing it",
        )
        parser.add_argument(
            "--redact-pattern",
            action="append",
            default=[],
            metavar="REGEX",
            help="also replace what this regular expression matches (repeatable; implies --redact)",
        )
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid rows and report the rejected ones",
        )

    def handle(self, *args, project, files, kind, scale, redact, redact_pattern, skip_invalid, **_):
        target = project_from_ref(project)
        with scope(organization=target.organization):
            report = import_files(
                self,
                files,
                lambda streams, progress: import_feedback(
                    project=target,
                    files=streams,
                    kind=kind,
                    scale=scale,
                    redact=redact,
                    redact_patterns=redact_pattern,
                    skip_invalid=skip_invalid,
                    progress=progress,
                ),
                refused=(FeedbackOptionsInvalid,),
            )
        print_problems(self.stderr, report.problems, rejected=True)
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(self.style.SUCCESS(f"{target.name}: {report.summary()}."))
