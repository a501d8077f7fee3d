"""``manage.py import_feedback``: the operator's door for feedback files, including the
ones too large to upload. The web and API uploads keep ``CHOSEN_IMPORT_MAX_BYTES`` and
``CHOSEN_IMPORT_MAX_ROWS`` (abuse limits for files anyone with a lead's role may send);
an operator on the server who imports a year of chat logs (a million rows is ~1 GB of
JSONL) says so with ``--max-bytes`` / ``--max-rows`` for this one import, without
changing the limits of everyone's uploads."""

import re
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django.test.utils import override_settings
from django_scopes import scope

from tasks.importers.feedback import KINDS, FeedbackOptionsInvalid, import_feedback
from tasks.management.commands.import_prompts import import_files, print_problems
from tasks.management.refs import project_from_ref

_SIZE = re.compile(r"(\d+)\s*([kmg]?)i?b?", re.IGNORECASE)


def size(value: str) -> int:
    """A size in bytes from "1500000000", "1500M", "2G" or "2GiB" (K, M, G are 1024s)."""
    found = _SIZE.fullmatch(value.strip())
    if not found or int(found.group(1)) <= 0:
        raise CommandError(f"--max-bytes: {value!r} is not a size (e.g. 2G, 1500M or bytes)")
    return int(found.group(1)) * 1024 ** " kmg".index(found.group(2).lower() or " ")


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
        parser.add_argument(
            "--max-bytes",
            metavar="SIZE",
            help="the files of this import may total SIZE (2G, 1500M or bytes) instead of "
            "CHOSEN_IMPORT_MAX_BYTES, which stays the limit of uploads through the web and API",
        )
        parser.add_argument(
            "--max-rows",
            type=int,
            metavar="N",
            help="this import may hold N rows instead of CHOSEN_IMPORT_MAX_ROWS",
        )

    def handle(
        self,
        *args,
        project,
        files,
        kind,
        scale,
        redact,
        redact_pattern,
        skip_invalid,
        max_bytes=None,
        max_rows=None,
        **_,
    ):
        target = project_from_ref(project)
        if max_rows is not None and max_rows <= 0:
            raise CommandError("--max-rows must be 1 or more")
        limits = {"CHOSEN_IMPORT_MAX_BYTES": size(max_bytes)} if max_bytes else {}
        # The byte limit is the one check_total_bytes reads (through import_files): raised
        # for this command's run only, never for the server's uploads.
        with scope(organization=target.organization), override_settings(**limits):
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
                    max_rows=max_rows,
                ),
                refused=(FeedbackOptionsInvalid,),
            )
        print_problems(self.stderr, report.problems, rejected=True)
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(self.style.SUCCESS(f"{target.name}: {report.summary()}."))
