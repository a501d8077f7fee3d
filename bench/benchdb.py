"""The benchmarks' database: BENCH_DATABASE_URL (default chosen_bench on this machine's
PostgreSQL), created when missing and migrated before a run; and their Redis (cache and
broker): BENCH_REDIS_URL, default db 13 of this machine's Redis, unless REDIS_URL is set
(without either, the settings would look for `make run`'s private Redis)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@localhost:5432/chosen_bench"
)
os.environ.setdefault("REDIS_URL", os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/13"))


def prepare_database(*commands: list[str]) -> None:
    """Create the database if needed, then run ``manage.py migrate`` and any further
    management ``commands`` (e.g. ["collectstatic", "--noinput"]) against it."""
    import psycopg

    name = DATABASE_URL.rsplit("/", 1)[1]
    with psycopg.connect(DATABASE_URL.rsplit("/", 1)[0] + "/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')
    for command in (["migrate"], *commands):
        subprocess.run(
            [sys.executable, "manage.py", *command, "-v0"],
            cwd=ROOT,
            check=True,
            env={**os.environ, "DATABASE_URL": DATABASE_URL},
        )
