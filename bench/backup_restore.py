"""Backup and restore benchmark: a round trip of an installation with 100,000 judgments.

A database of its own (``<bench database>_backup``, made afresh) is migrated and filled with
SQL as bench/qc_report.py fills it: a project of 100,000 judgments (50,000 prompts, 100,000
candidates, 50,000 items, 100,000 assignments), one audit event per judgment (chained by
the trigger), and a TRL export of the project written under a temporary MEDIA_ROOT. Then,
as an operator runs them, each in its own process: ``manage.py backup --out DIR``, and
``manage.py restore DIR`` into a second fresh database (``<bench database>_restore``) and
an empty MEDIA_ROOT. The restored installation is compared with the original: every row of
every table (an order-independent sum of the rows' MD5), every sequence, every file's
SHA-256, and the audit chains (``verify`` of each).

Target (issue 18), on this 2-core machine: the round trip (backup + restore) under 60 s,
the restore identical. Both databases are dropped at the end (``--keep`` keeps them).

    .venv/bin/python bench/backup_restore.py [--judgments 100000] [--keep]
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from benchdb import DATABASE_URL  # noqa: E402
from preflight import require_postgres  # noqa: E402

TARGET_SECONDS = 60.0
SERVER, BASE = DATABASE_URL.rsplit("/", 1)
SOURCE, RESTORED = f"{BASE}_backup", f"{BASE}_restore"


def admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


def fresh(name: str) -> None:
    admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def manage(*args: str, database: str, media: Path) -> float:
    """A management command in its own process, as an operator runs it; its seconds."""
    env = {
        **os.environ,
        "DATABASE_URL": f"{SERVER}/{database}",
        "DJANGO_MEDIA_ROOT": str(media),
        "LOG_LEVEL": "WARNING",
    }
    started = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True
    )
    seconds = time.perf_counter() - started
    for line in result.stdout.splitlines():
        print(f"    {line}", flush=True)
    if result.returncode:
        sys.exit(f"manage.py {args[0]} failed:\n{result.stderr}")
    return seconds


def fill(judgments: int, media: Path) -> None:
    """The installation: 100k judgments (bench/qc_report.py's fill), an audit event per
    judgment, a TRL export of the project."""
    os.environ.update(
        DATABASE_URL=f"{SERVER}/{SOURCE}", DJANGO_MEDIA_ROOT=str(media), LOG_LEVEL="WARNING"
    )
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    from dataclasses import asdict

    from django.db import connection
    from django_scopes import scope
    from qc_report import fill as fill_judgments

    from exports.models import Export
    from exports.pairs import Options
    from exports.services import run_export
    from tasks.audit import Action

    project = fill_judgments(judgments, 20)
    # In two statements, with ANALYZE and a new session between them: the chain trigger's
    # "newest event of this organization" query is planned once per session, and planned on
    # an empty table it scans the table for every row (hours for 100k events).
    first = "(SELECT min(id) + 999 FROM annotation_judgment)"
    for part in (f"j.id <= {first}", f"j.id > {first}"):
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO tasks_auditevent (organization_id, at, actor_id, actor_label, "
                "action, object_type, object_id, object_repr, ip, user_agent, changes, data) "
                "SELECT j.organization_id, j.created_at, j.annotator_id, 'qc' || j.annotator_id "
                "|| '@bench', %s, 'judgment', j.id::text, 'Judgment ' || j.id, '10.0.0.1', "
                "'Mozilla/5.0', '{}', jsonb_build_object('project', j.project_id, 'item', "
                "j.item_id) FROM annotation_judgment j WHERE "  # noqa: S608
                f"{part} ORDER BY j.id",
                [Action.JUDGMENT_CREATED],
            )
            cursor.execute("ANALYZE tasks_auditevent")
        connection.close()
    with scope(organization=project.organization):
        export = Export.objects.create(
            organization=project.organization,
            project=project,
            format="trl",
            options=asdict(Options(policy="all", ratios=(0.8, 0.2), seed=1)),
        )
        export = run_export(export.pk)
    assert export.status == Export.Status.SUCCEEDED, export.error
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    connection.close()


def fingerprint(database: str) -> dict:
    """Every table's row count and an order-independent sum of its rows' MD5; every
    sequence's position."""
    import psycopg

    prints = {"tables": {}, "sequences": {}}
    with psycopg.connect(f"{SERVER}/{database}") as conn:
        tables = conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
        ).fetchall()
        for (table,) in tables:
            prints["tables"][table] = conn.execute(
                "SELECT count(*), coalesce(sum(('x' || substr(md5(t::text), 1, 16))::bit(64)"
                f'::bigint), 0)::text FROM "{table}" t'
            ).fetchone()
        sequences = conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
        ).fetchall()
        for (sequence,) in sequences:
            prints["sequences"][sequence] = conn.execute(
                f'SELECT last_value, is_called FROM "{sequence}"'
            ).fetchone()
    return prints


def files(root: Path) -> dict[str, str]:
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def chains_intact(database: str) -> tuple[bool, int]:
    """verify() of every chain in ``database`` (Django's connection is pointed at it)."""
    from django.db import connection

    from tasks.audit.chain import chains, verify

    connection.close()
    connection.settings_dict["NAME"] = database
    results = [verify(organization) for organization in chains()]
    connection.close()
    return all(r.intact for r in results), sum(r.events for r in results)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--judgments", type=int, default=100_000)
    parser.add_argument("--keep", action="store_true", help="keep both databases")
    args = parser.parse_args()
    require_postgres(DATABASE_URL)
    work = Path(tempfile.mkdtemp(prefix="chosen-backup-bench-"))
    media, restored_media, folder = work / "media", work / "media-restored", work / "backups"
    try:
        print(f"Filling {SOURCE} with {args.judgments:,} judgments …", flush=True)
        started = time.perf_counter()
        fresh(SOURCE)
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "-v0"],
            cwd=ROOT,
            check=True,
            env={**os.environ, "DATABASE_URL": f"{SERVER}/{SOURCE}"},
        )
        fill(args.judgments, media)
        print(f"  filled in {time.perf_counter() - started:.0f} s", flush=True)

        print("manage.py backup …", flush=True)
        backup_seconds = manage(
            "backup", "--out", str(folder / "nightly"), database=SOURCE, media=media
        )
        size = sum(p.stat().st_size for p in (folder / "nightly").rglob("*") if p.is_file())
        dump_size = (folder / "nightly" / "database.dump").stat().st_size

        fresh(RESTORED)
        print(f"manage.py restore into {RESTORED} …", flush=True)
        restore_seconds = manage(
            "restore", str(folder / "nightly"), database=RESTORED, media=restored_media
        )

        print("Comparing …", flush=True)
        source_print, restored_print = fingerprint(SOURCE), fingerprint(RESTORED)
        rows = sum(count for count, _ in source_print["tables"].values())
        same_rows = source_print == restored_print
        source_files = files(media)
        same_files = source_files == files(restored_media)
        intact, events = chains_intact(RESTORED)
        identical = same_rows and same_files and intact
    finally:
        shutil.rmtree(work, ignore_errors=True)
        if not args.keep:
            admin(*(f'DROP DATABASE IF EXISTS "{n}" WITH (FORCE)' for n in (SOURCE, RESTORED)))

    round_trip = backup_seconds + restore_seconds
    judgments = source_print["tables"]["annotation_judgment"][0]
    print(
        f"\nBackup/restore round trip: {judgments:,} judgments, {rows:,} rows in "
        f"{len(source_print['tables'])} tables, {events:,} audit events, "
        f"{len(source_files)} media files; PostgreSQL, {os.cpu_count()} cores"
    )
    print(f"{'metric':<44} {'measured':>12} {'target':>10}  ok")
    print(f"{'backup: manage.py backup (s)':<44} {backup_seconds:>12.1f}")
    print(f"{'restore: manage.py restore (s)':<44} {restore_seconds:>12.1f}")
    ok_time = round_trip < TARGET_SECONDS
    print(
        f"{'round trip (s)':<44} {round_trip:>12.1f} {f'< {TARGET_SECONDS:g}':>10}  "
        f"{'yes' if ok_time else 'NO'}"
    )
    print(f"{'backup size (MB)':<44} {size / 1e6:>12.1f}")
    print(f"{'  of which the database dump (MB)':<44} {dump_size / 1e6:>12.1f}")
    print(f"{'rows and sequences identical':<44} {str(same_rows):>12}")
    print(f"{'media files identical':<44} {str(same_files):>12}")
    print(f"{'audit chains intact after restore':<44} {str(intact):>12}")
    print(
        f"{'restore identical':<44} {str(identical):>12} {'True':>10}  "
        f"{'yes' if identical else 'NO'}"
    )
    return 0 if ok_time and identical else 1


if __name__ == "__main__":
    sys.exit(main())
