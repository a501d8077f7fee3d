"""Give the application's PostgreSQL role its rights (tasks.dbroles); docker compose runs
it as the owner after the migrations."""

import os

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from tasks.dbroles import grant_app_role


class Command(BaseCommand):
    help = (
        "Create the application's PostgreSQL role if needed and grant it row access to every "
        "table (the audit trail: SELECT and INSERT only). Run as the database owner, after "
        "each migrate. The role and password default to DATABASE_APP_USER and "
        "DATABASE_APP_PASSWORD."
    )

    def add_arguments(self, parser):
        parser.add_argument("--role", default=os.environ.get("DATABASE_APP_USER", ""))

    def handle(self, *args, role, **_):
        if not role:
            raise CommandError("Name the role: --role NAME or DATABASE_APP_USER.")
        if role == connection.settings_dict["USER"]:
            raise CommandError(
                f"{role!r} is the role this command connects as (the owner); the application "
                "needs a role of its own."
            )
        grant_app_role(role, password=os.environ.get("DATABASE_APP_PASSWORD") or None)
        self.stdout.write(f"Role {role} may read and write rows; the audit trail only grows.")
