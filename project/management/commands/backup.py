"""Back up the database and the media files into a new folder (project.backup)."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from project.backup import BackupRefused, make_backup


class Command(BaseCommand):
    help = (
        "Write a backup into a new folder: a consistent PostgreSQL dump (pg_dump, one "
        "snapshot), the media files (uploads, exports) and manifest.json with every file's "
        "size and SHA-256 and the schema version. Refuses a folder that exists and is not "
        "empty; a failed backup leaves nothing. Run it as the database owner."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--out", required=True, metavar="DIR", help="The new folder to write the backup to."
        )

    def handle(self, *args, out, **_):
        try:
            make_backup(out=Path(out), say=self.say)
        except BackupRefused as exc:
            raise CommandError(str(exc)) from exc

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
