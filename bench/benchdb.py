"""The benchmarks' database: BENCH_DATABASE_URL (default chosen_bench on this machine's
PostgreSQL), created when missing and migrated before a run; and their Redis (cache and
broker): BENCH_REDIS_URL, default db 13 of this machine's Redis, unless REDIS_URL is set
(without either, the settings would look for `make run`'s private Redis)."""

import os
import subprocess
import sys
from pathlib import Path

from preflight import require_postgres

ROOT = Path(__file__).resolve().parents[1]
DATABASE_URL = os.environ.get(
    "BENCH_DATABASE_URL", "postgres://postgres@localhost:5432/chosen_bench"
)
os.environ.setdefault("REDIS_URL", os.environ.get("BENCH_REDIS_URL", "redis://localhost:6379/13"))
REDIS_URL = os.environ["REDIS_URL"]


def prepare_database(*commands: list[str]) -> None:
    """Create the database if needed, then run ``manage.py migrate`` and any further
    management ``commands`` (e.g. ["collectstatic", "--noinput"]) against it."""
    import psycopg

    require_postgres(DATABASE_URL)  # a clear message, not a traceback, when it is not running
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


def fresh_database(*commands: list[str]) -> None:
    """``prepare_database`` on an empty database: the benchmark's own (a name starting with
    ``chosen_bench``; any other is refused) is dropped first, so that a run does not write
    into tables every earlier run made larger."""
    import psycopg

    require_postgres(DATABASE_URL)
    server, name = DATABASE_URL.rsplit("/", 1)
    if not name.startswith("chosen_bench"):
        raise SystemExit(f"{name} is not a benchmark's database: not dropping it")
    with psycopg.connect(server + "/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    prepare_database(*commands)


def fill_pairwise_items(cursor, organization_id: int, project_id: int, n: int) -> None:
    """``n`` prompts in a project, two candidates each and one pairwise item of them (target
    two judgments), written with SQL so that a million takes minutes, not an hour."""
    params = {"org": organization_id, "project": project_id, "n": n}
    cursor.execute(
        "INSERT INTO tasks_prompt (organization_id, project_id, external_id, text, metadata, "
        "source, content_hash, created_at) SELECT %(org)s, %(project)s, 'p' || g, "
        "'Prompt ' || g || ': which answer is better?', '{}', 'bench', md5(g::text), now() "
        "FROM generate_series(1, %(n)s) g",
        params,
    )
    cursor.execute(
        "INSERT INTO tasks_candidate (organization_id, prompt_id, text, source, "
        "source_key, model, parameters, finish_reason, content_hash, created_at) "
        "SELECT p.organization_id, p.id, "
        "'Answer ' || v.k || ' to ' || p.external_id || '. **Bold** and `code`.', 'imported', "
        "'response_' || v.k, '', '{}', 'stop', md5(p.id || v.k), now() FROM tasks_prompt p "
        "CROSS JOIN (VALUES ('a'), ('b')) v(k) WHERE p.project_id = %(project)s",
        params,
    )
    cursor.execute(
        "INSERT INTO tasks_item (organization_id, project_id, prompt_id, mode, candidate_key, "
        "target_annotations, assignment_count, random_order, created_at) SELECT %(org)s, "
        "%(project)s, c.prompt_id, 'pairwise', min(c.id) || '-' || max(c.id), 2, 0, "
        "(random() * 2147483647)::int, now() FROM tasks_candidate c JOIN tasks_prompt p "
        "ON p.id = c.prompt_id WHERE p.project_id = %(project)s GROUP BY c.prompt_id",
        params,
    )
    cursor.execute(
        "INSERT INTO tasks_itemcandidate (item_id, candidate_id, position) SELECT i.id, c.id, "
        "row_number() OVER (PARTITION BY i.id ORDER BY c.id) - 1 FROM tasks_item i "
        "JOIN tasks_candidate c ON c.prompt_id = i.prompt_id WHERE i.project_id = %(project)s",
        params,
    )
