"""Restore a backup made by `manage.py backup` into an empty database (project.backup)."""

import os
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from project.backup import BackupRefused, restore_backup


class Command(BaseCommand):
    help = (
        "Restore a backup folder into the database of DATABASE_URL, which must be empty, and "
        "its media files into MEDIA_ROOT (never overwriting a different file). Every file is "
        "checked against the manifest and the schema version against this code before "
        "anything is written. Run it as the database owner; with DATABASE_APP_USER set, the "
        "application's role gets its rights again."
    )

    def add_arguments(self, parser):
        parser.add_argument("source", metavar="DIR", help="The backup folder.")
        parser.add_argument(
            "--app-role",
            default=os.environ.get("DATABASE_APP_USER", ""),
            help="The application's role to grant its rights (default: DATABASE_APP_USER).",
        )

    def handle(self, *args, source, app_role, **_):
        try:
            report = restore_backup(
                source=Path(source),
                app_role=app_role or None,
                app_password=os.environ.get("DATABASE_APP_PASSWORD") or None,
                say=self.say,
            )
        except BackupRefused as exc:
            raise CommandError(str(exc)) from exc
        if not report.ok:
            raise CommandError(
                "The backup was restored, but it does not match its manifest:\n  "
                + "\n  ".join(report.problems)
            )
        self.say(self.style.SUCCESS(f"Restored {source}."))

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
