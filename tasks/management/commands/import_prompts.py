import sys
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError
from django_scopes import scope

from tasks.importers.limits import ImportTooLarge, check_total_bytes
from tasks.importers.prompts import ImportFailed, import_prompts
from tasks.management.refs import project_from_ref


def print_problems(stream, problems, *, rejected: bool = False) -> None:
    for problem in problems:
        stream.write(f"{'rejected' if rejected else 'error'}: {problem}")


def progress_printer(stream, every: float = 2.0):
    """Progress on stderr for long imports (only when it is a terminal)."""
    if not getattr(stream, "isatty", lambda: False)() and not sys.stderr.isatty():
        return None
    last = [time.monotonic()]

    def show(rows: int, done_bytes: int) -> None:
        if time.monotonic() - last[0] >= every:
            last[0] = time.monotonic()
            stream.write(f"… {rows:,} rows read ({done_bytes / 1e6:.1f} MB)")

    return show


def import_files(command: BaseCommand, files: list[Path], run, *, refused=()):
    """What an import command does around its importer: refuses missing files and an
    upload over the limit, opens the files, calls ``run(streams, progress)`` and turns
    ImportFailed (its problems listed on stderr) or one of ``refused`` (bad options) into a
    CommandError saying nothing was imported. Returns the importer's report."""
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise CommandError(f"File not found: {', '.join(missing)}")
    try:
        check_total_bytes(f.stat().st_size for f in files)
    except ImportTooLarge as exc:
        raise CommandError(f"{exc} Nothing was imported.") from None
    streams = [(str(f), f.open("rb")) for f in files]
    try:
        return run(streams, progress_printer(command.stderr))
    except refused as exc:
        raise CommandError(f"{exc}. Nothing was imported.") from None
    except ImportFailed as exc:
        print_problems(command.stderr, exc.report.problems)
        if exc.report.problems_not_listed:
            command.stderr.write(f"… and {exc.report.problems_not_listed} more")
        raise CommandError("Nothing was imported.") from None
    finally:
        for _, stream in streams:
            stream.close()


class Command(BaseCommand):
    help = "Import prompts (and candidate responses) from JSON, JSONL or CSV into a project."

    def add_arguments(self, parser):
        parser.add_argument("project", help="ORG/PROJECT: organization slug and project name or id")
        parser.add_argument("files", nargs="+", type=Path)
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="import the valid rows and report the rejected ones",
        )
        parser.add_argument(
            "--allow-duplicates",
            action="store_true",
            help="keep prompts whose text repeats another prompt's (ignoring case, Unicode "
            "form and spacing); candidates are never folded: only an exact copy (line endings "
            "and trailing whitespace aside) is skipped",
        )

    def handle(
        self,
        *args,
        project: str,
        files: list[Path],
        skip_invalid: bool,
        allow_duplicates: bool,
        **options,
    ):
        target = project_from_ref(project)
        with scope(organization=target.organization):
            report = import_files(
                self,
                files,
                lambda streams, progress: import_prompts(
                    project=target,
                    files=streams,
                    skip_invalid=skip_invalid,
                    allow_duplicates=allow_duplicates,
                    progress=progress,
                ),
            )
        print_problems(self.stderr, report.problems, rejected=True)
        for duplicate in report.duplicates:
            self.stderr.write(
                f"duplicate skipped: {duplicate['file']}, {duplicate['where']} "
                f"(id {duplicate['id']!r}) repeats {duplicate['duplicate_of']!r}"
            )
        for warning in report.warnings:
            self.stderr.write(f"warning: {warning}")
        self.stdout.write(self.style.SUCCESS(f"{target.name}: {report.summary()}."))
