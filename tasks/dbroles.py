"""The PostgreSQL role the application runs as in production.

Two roles (README, "Database roles"): the **owner** owns the schema and runs the
migrations; the **application role** (web, worker, beat) owns nothing and may only read and
write rows: SELECT, INSERT, UPDATE and DELETE on the application's tables, except the audit
trail, where it may only SELECT and INSERT. Owning nothing, it cannot TRUNCATE, ALTER or
DROP a table, nor disable the trigger that refuses UPDATE and DELETE of audit events, so
whoever holds the application's credentials cannot rewrite the trail, and whoever holds
the owner's cannot do it unseen (``tasks.audit.chain``).
"""

from django.db import connections
from psycopg import sql

from tasks.models import AuditEvent

ROW_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"
APPEND_ONLY_TABLES = (AuditEvent._meta.db_table,)
LATER = "ALTER DEFAULT PRIVILEGES IN SCHEMA public"  # tables the owner creates from now on


def grant_app_role(role: str, *, password: str | None = None, using: str = "default") -> None:
    """Create ``role`` if it does not exist (a login role with no other rights), set its
    password if one is given, and grant it the rows of every table in the schema (again
    after each migration: new tables, and ``ALTER DEFAULT PRIVILEGES`` for tables the
    owner creates later). Run as the owner."""
    name = sql.Identifier(role)
    connection = connections[using]
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        if cursor.fetchone() is None:
            cursor.execute(
                sql.SQL(
                    "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION"
                ).format(name)
            )
        if password:
            cursor.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(name, sql.Literal(password)))
        database = sql.Identifier(connection.settings_dict["NAME"])
        for statement in (
            "GRANT CONNECT ON DATABASE {database} TO {role}",
            "GRANT USAGE ON SCHEMA public TO {role}",
            f"GRANT {ROW_PRIVILEGES} ON ALL TABLES IN SCHEMA public TO {{role}}",
            "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
            f"{LATER} GRANT {ROW_PRIVILEGES} ON TABLES TO {{role}}",
            f"{LATER} GRANT USAGE, SELECT ON SEQUENCES TO {{role}}",
            # Planner statistics after bulk writes (tasks.dbstats): the owner's function.
            "GRANT EXECUTE ON FUNCTION chosen_analyze(text[]) TO {role}",
        ):
            cursor.execute(sql.SQL(statement).format(database=database, role=name))
        for table in APPEND_ONLY_TABLES:
            cursor.execute(
                sql.SQL(
                    "REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER ON {} FROM {}"
                ).format(sql.Identifier(table), name)
            )
