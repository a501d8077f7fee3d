"""Backup and restore of a whole Chosen installation: the PostgreSQL database and the media
files (uploads, exports), with a manifest that lets a restore prove it got them back.

A backup is a folder:

- ``database.dump``: pg_dump's custom format, written from one snapshot. The snapshot is
  exported by a REPEATABLE READ transaction (``pg_export_snapshot``) that pg_dump then
  shares (``--snapshot``), so the schema version, the row counts and the audit chains' heads
  written to the manifest describe exactly the rows in the dump;
- ``media/``: every file under MEDIA_ROOT, copied after the dump was taken. In that order
  because an export writes its files before its row says it succeeded: every file a
  dumped row points at already exists when the copy starts (files that appear later are
  extra, harmless). Unfinished exports' work folders (``.export-*``) are left out;
- ``manifest.json``: the size and SHA-256 of every file, the applied migrations (the
  schema version), the PostgreSQL server and pg_dump versions, Chosen's version, the row
  count of every table and the newest hash of every audit chain.

The folder is written under a temporary name beside its destination and renamed at the
end, so a backup that fails leaves nothing behind. It holds everything the database holds
— password hashes, TOTP secrets, LLM endpoints' API keys — so it is readable by its owner
only (0700 / 0600).

A restore goes into an empty database only, and checks before it writes anything: every
file against the manifest, the schema version against this code's migrations, the server
and pg_restore versions, that the database has no tables, that no file in MEDIA_ROOT would
be overwritten by a different one. pg_restore then runs as one transaction (a failure
leaves the database empty), without owners and grants (``--no-owner --no-acl``: the
restoring role owns everything, whatever the roles were called where the backup was
made); the application's role gets its rights again from ``tasks.dbroles``. The audit
trail's triggers are created after its rows are copied (pg_restore's post-data section),
so the chain's hashes arrive as they were written; the restore checks every chain and
compares its head with the manifest's.

Roof floor: it reads every table and uses ``tasks`` (the audit chain, the database roles).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath

import psycopg
from django.conf import settings
from django.db import DatabaseError, connection
from django.db.migrations.loader import MigrationLoader
from django.utils.crypto import salted_hmac
from psycopg import pq
from psycopg.conninfo import make_conninfo

from project import pgtools
from tasks.audit.chain import Verification, chains, verify
from tasks.dbroles import grant_app_role
from tasks.models import AuditEvent

FORMAT = "chosen-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DUMP = "database.dump"
MEDIA = "media"
# Work folders that are not (yet) part of the media: an export being written, a restore
# being staged.
UNFINISHED = (".export-", ".chosen-restore-")
TICK_SECONDS = 5.0
CHUNK = 1024 * 1024

Say = Callable[[str], None]


class BackupRefused(Exception):
    """A backup or restore that was not done, and why; nothing was written."""


def _quiet(_: str) -> None:
    pass


# --- connecting ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """The database of Django's default connection, as libpq and the client programs take
    it: a connection string without the password, which goes in the environment so that it
    never shows on a command line."""

    conninfo: str
    password: str | None
    name: str
    where: str

    @classmethod
    def of_default(cls) -> Target:
        conf = connection.settings_dict
        keywords = {d.keyword.decode() for d in pq.Conninfo.get_defaults()} - {"password"}
        params = {
            "dbname": conf["NAME"],
            "user": conf.get("USER"),
            "host": conf.get("HOST"),
            "port": conf.get("PORT"),
        }
        for key, value in (conf.get("OPTIONS") or {}).items():
            if key in keywords and isinstance(value, str | int):
                params[key] = value
        params = {k: str(v) for k, v in params.items() if v not in (None, "")}
        password = conf.get("PASSWORD") or (conf.get("OPTIONS") or {}).get("password")
        where = params.get("host", "the local socket")
        return cls(make_conninfo(**params), password or None, conf["NAME"], where)

    def connect(self) -> psycopg.Connection:
        return psycopg.connect(self.conninfo, password=self.password)

    def environment(self) -> dict:
        env = {**os.environ, "PGAPPNAME": "chosen backup"}
        if self.password:
            env["PGPASSWORD"] = self.password
        return env


def _server_version(cursor) -> str:
    cursor.execute("SELECT current_setting('server_version_num')::int")
    number = cursor.fetchone()[0]
    return f"{number // 10000}.{number % 10000}"


def _find(name: str, outcome: str, **wanted) -> pgtools.Tool:
    try:
        return pgtools.find(name, configured=settings.CHOSEN_PG_BIN, **wanted)
    except pgtools.ToolMissing as exc:
        raise BackupRefused(f"{exc} {outcome}") from exc


def _run(argv: list, *, env: dict, say: Say, waiting: Callable[[float], str]) -> None:
    """Run a client program, printing ``waiting(seconds)`` every few seconds until it ends;
    its error output becomes the exception's message."""
    started = time.monotonic()
    process = subprocess.Popen(  # noqa: S603 (a found program and our own arguments)
        [str(a) for a in argv],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    while True:
        try:
            _, errors = process.communicate(timeout=TICK_SECONDS)
            break
        except subprocess.TimeoutExpired:
            say(waiting(time.monotonic() - started))
        except BaseException:
            process.kill()
            process.wait()
            raise
    if process.returncode:
        raise BackupRefused(
            f"{Path(argv[0]).name} failed (exit status {process.returncode}): {errors.strip()}"
        )


# --- files ---------------------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _copy(source: Path, destination: Path, mode: int = 0o666) -> tuple[int, str]:
    """Copy a file that must not exist yet, hashing it on the way; (size, sha256)."""
    digest, size = hashlib.sha256(), 0
    descriptor = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with source.open("rb") as reader, os.fdopen(descriptor, "wb") as writer:
        while chunk := reader.read(CHUNK):
            digest.update(chunk)
            writer.write(chunk)
            size += len(chunk)
        writer.flush()
        os.fsync(writer.fileno())
    return size, digest.hexdigest()


def _media_files(root: Path) -> list[Path]:
    """The regular files under MEDIA_ROOT, relative to it, sorted; unfinished work folders
    and symbolic links are left out."""
    if not root.is_dir():
        return []
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith(UNFINISHED))
        for name in files:
            path = Path(folder) / name
            if path.is_file() and not path.is_symlink():
                found.append(path.relative_to(root))
    return sorted(found)


def _size(n: float) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


# --- what the manifest records -------------------------------------------------------------


def chosen_version() -> str | None:
    """Chosen's version, from pyproject.toml (the image and a checkout both have it)."""
    try:
        project = tomllib.loads((settings.BASE_DIR / "pyproject.toml").read_text("utf-8"))
        return project["project"]["version"]
    except (OSError, KeyError, tomllib.TOMLDecodeError):
        return None


def secret_key_check() -> str:
    """A one-way fingerprint of SECRET_KEY (an HMAC keyed by it), so that a restore can say
    whether this installation runs with the key the backup was made under."""
    return salted_hmac("chosen.backup.secret-key", "backup", algorithm="sha256").hexdigest()[:16]


def code_migrations() -> set[str]:
    """The migrations this code has, as ``app.name``: the schema version it expects."""
    loader = MigrationLoader(None, ignore_no_migrations=True)
    return {f"{app}.{name}" for app, name in loader.graph.nodes}


def _tables(cursor) -> list[str]:
    cursor.execute(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') ORDER BY c.relname"
    )
    return [row[0] for row in cursor.fetchall()]


def _counts(cursor) -> dict[str, int]:
    counts = {}
    for table in _tables(cursor):
        cursor.execute(f'SELECT count(*) FROM "{table}"')  # noqa: S608 (a catalog name)
        counts[table] = cursor.fetchone()[0]
    return counts


def _audit_heads(cursor) -> dict[str, dict]:
    """Each audit chain's newest event: its number and hash ("none": no organization)."""
    cursor.execute(
        "SELECT DISTINCT ON (organization_id) organization_id, sequence, hash "  # noqa: S608
        f"FROM {AuditEvent._meta.db_table} ORDER BY organization_id, sequence DESC"
    )
    return {
        "none" if org is None else str(org): {"sequence": sequence, "hash": digest}
        for org, sequence, digest in cursor.fetchall()
    }


# --- backup --------------------------------------------------------------------------------


def make_backup(*, out: Path, say: Say = _quiet) -> dict:
    """Write a backup of the default database and MEDIA_ROOT into the new folder ``out``
    (refused if it exists and is not empty); returns the manifest. The folder appears only
    once it is complete."""
    out = Path(out).absolute()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BackupRefused(
            f"{out} already exists and is not empty: a backup goes into a new folder, it "
            "never overwrites one. Nothing was written."
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        manifest = _write_backup(work, say)
        try:
            if out.exists():
                out.rmdir()
            work.rename(out)
        except OSError as exc:
            raise BackupRefused(
                f"The backup was complete but could not be moved to {out} ({exc.strerror}). "
                "If that folder is a mount point, name a new folder inside it. Nothing was kept."
            ) from exc
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    total = sum(entry["size"] for entry in manifest["files"])
    say(f"Backup complete: {out} ({_size(total)}, {len(manifest['files'])} files + {MANIFEST}).")
    return manifest


def _write_backup(work: Path, say: Say) -> dict:
    target = Target.of_default()
    started = time.monotonic()
    with target.connect() as snapshot:
        snapshot.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        snapshot.read_only = True
        cursor = snapshot.cursor()
        server = _server_version(cursor)
        server_major = pgtools.major_of(server)
        pg_dump = _find(
            "pg_dump",
            "Nothing was written.",
            prefer=server_major,
            minimum=server_major,
            why=f"the server is PostgreSQL {server}, and pg_dump refuses a server newer than "
            "itself.",
        )
        if pg_dump.major > server_major:
            say(
                f"Note: {pg_dump} is newer than the PostgreSQL {server_major} server. Restoring "
                f"this backup will need pg_restore {pg_dump.major} and a PostgreSQL "
                f"{pg_dump.major} server or newer; install the PostgreSQL {server_major} client "
                "programs to keep restores on this version."
            )
        cursor.execute("SELECT pg_export_snapshot()")
        snapshot_id = cursor.fetchone()[0]
        if "django_migrations" not in _tables(cursor):
            raise BackupRefused(
                f"The database {target.name} has no Chosen schema (no django_migrations "
                "table): nothing to back up."
            )
        cursor.execute("SELECT app, name FROM django_migrations ORDER BY app, name")
        migrations = [f"{app}.{name}" for app, name in cursor.fetchall()]
        counts = _counts(cursor)
        heads = _audit_heads(cursor)
        say(
            f"Dumping the database {target.name} (PostgreSQL {server}, {len(counts)} tables, "
            f"{sum(counts.values()):,} rows) with {pg_dump} …"
        )
        dump = work / DUMP
        _run(
            [
                pg_dump.path,
                "--format=custom",
                f"--snapshot={snapshot_id}",
                f"--file={dump}",
                "--no-password",
                f"--dbname={target.conninfo}",
            ],
            env=target.environment(),
            say=say,
            waiting=lambda s: (
                f"  … {_size(dump.stat().st_size if dump.exists() else 0)} written, {s:.0f} s"
            ),
        )
        snapshot.rollback()
    dump.chmod(0o600)
    files = [{"path": DUMP, "size": dump.stat().st_size, "sha256": _sha256(dump)}]
    say(f"  database dumped: {_size(files[0]['size'])} in {time.monotonic() - started:.1f} s")
    files += _copy_media(Path(settings.MEDIA_ROOT), work / MEDIA, say)
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "chosen_version": chosen_version(),
        "secret_key_check": secret_key_check(),
        "database": {
            "name": target.name,
            "server_version": server,
            "pg_dump_version": pg_dump.version,
            "tables": counts,
            "audit_heads": heads,
        },
        "schema": {"migrations": migrations},
        "files": files,
    }
    path = work / MANIFEST
    path.write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", "utf-8")
    path.chmod(0o600)
    return manifest


def _copy_media(root: Path, into: Path, say: Say) -> list[dict]:
    names = _media_files(root)
    say(f"Copying {len(names):,} media files from {root} …")
    entries, total, last = [], 0, time.monotonic()
    for number, name in enumerate(names, 1):
        destination = into / name
        destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        size, digest = _copy(root / name, destination, 0o600)
        entries.append({"path": f"{MEDIA}/{name.as_posix()}", "size": size, "sha256": digest})
        total += size
        if time.monotonic() - last > TICK_SECONDS:
            say(f"  … {number:,} of {len(names):,} files, {_size(total)}")
            last = time.monotonic()
    if names:
        say(f"  media copied: {len(names):,} files, {_size(total)}")
    return entries


# --- reading a backup ----------------------------------------------------------------------


def read_manifest(source: Path) -> dict:
    source = Path(source)
    if not source.is_dir():
        raise BackupRefused(f"There is no backup folder at {source}. Nothing was restored.")
    path = source / MANIFEST
    if not path.is_file():
        raise BackupRefused(
            f"{source} has no {MANIFEST}: it is not a Chosen backup, or one that did not "
            "finish (a finished backup always has one). Nothing was restored."
        )
    try:
        manifest = json.loads(path.read_text("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BackupRefused(f"{path} is damaged ({exc}). Nothing was restored.") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupRefused(f"{path} is not the manifest of a Chosen backup. Nothing was restored.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BackupRefused(
            f"{path} has backup format {manifest.get('format_version')!r}; this Chosen reads "
            f"format {FORMAT_VERSION}. Restore it with the Chosen version that made it "
            f"({manifest.get('chosen_version')}). Nothing was restored."
        )
    for entry in manifest.get("files", []):
        name = PurePosixPath(entry["path"])
        inside = name.as_posix() == DUMP or (name.parts[:1] == (MEDIA,) and len(name.parts) > 1)
        if name.is_absolute() or ".." in name.parts or not inside:
            raise BackupRefused(
                f"{path} names the file {entry['path']!r}, which is not part of a backup. "
                "Nothing was restored."
            )
    if not any(entry["path"] == DUMP for entry in manifest.get("files", [])):
        raise BackupRefused(f"{path} lists no {DUMP}. Nothing was restored.")
    return manifest


def check_files(source: Path, manifest: dict, say: Say = _quiet) -> None:
    """Every file of the manifest is there, with its size and SHA-256; refused with the
    names of the missing and damaged ones otherwise."""
    problems, total = [], sum(entry["size"] for entry in manifest["files"])
    say(f"Checking {len(manifest['files']):,} files ({_size(total)}) against the manifest …")
    for entry in manifest["files"]:
        path = Path(source) / entry["path"]
        if not path.is_file():
            problems.append(f"{entry['path']}: missing")
        elif path.stat().st_size != entry["size"]:
            problems.append(
                f"{entry['path']}: damaged ({path.stat().st_size} bytes, the manifest says "
                f"{entry['size']})"
            )
        elif _sha256(path) != entry["sha256"]:
            problems.append(f"{entry['path']}: damaged (its SHA-256 differs from the manifest)")
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise BackupRefused(
            f"The backup in {source} is incomplete or damaged:\n  {shown}{more}\n"
            "Restore from another backup. Nothing was restored."
        )


def check_schema(manifest: dict) -> None:
    """The backup's applied migrations are exactly this code's; refused naming those that
    differ otherwise."""
    backup = set(manifest["schema"]["migrations"])
    code = code_migrations()
    if backup == code:
        return
    lines = []
    if backup - code:
        lines.append("in the backup, not in this code: " + ", ".join(sorted(backup - code)))
    if code - backup:
        lines.append("in this code, not in the backup: " + ", ".join(sorted(code - backup)))
    made_by = manifest.get("chosen_version") or "unknown"
    raise BackupRefused(
        f"The backup's schema version does not match this version of Chosen "
        f"({chosen_version()}; the backup was made by {made_by}). Migrations\n  "
        + "\n  ".join(lines)
        + "\nRestore it with the Chosen version that made it, then upgrade as usual "
        "(install the new version, `manage.py migrate`); a backup from a newer Chosen needs "
        "that version installed first. Nothing was restored."
    )


# --- restore -------------------------------------------------------------------------------


@dataclass
class Restored:
    """What a restore did and what it checked afterwards."""

    tables: int = 0
    rows: int = 0
    files: int = 0
    files_present: int = 0
    seconds: float = 0.0
    chains: list[tuple[int | None, Verification]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    app_role: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def restore_backup(
    *,
    source: Path,
    app_role: str | None = None,
    app_password: str | None = None,
    say: Say = _quiet,
) -> Restored:
    """Restore the backup in ``source`` into the default database, which must be empty, and
    its media into MEDIA_ROOT. Refused (BackupRefused, nothing written) when a check before
    the restore fails; afterwards the rows, the audit chains and the manifest are compared
    and any difference is in ``problems``. ``app_role``: the application's role, given its
    rights again (tasks.dbroles)."""
    source = Path(source).absolute()
    manifest = read_manifest(source)
    check_files(source, manifest, say)
    check_schema(manifest)
    target = Target.of_default()
    try:
        connection.ensure_connection()
    except DatabaseError as exc:
        raise BackupRefused(
            f"Cannot reach the database {target.name} on {target.where}: {exc}\nCreate it "
            "(empty, owned by the role restore connects as) first. Nothing was restored."
        ) from exc
    with connection.cursor() as cursor:
        server = _server_version(cursor)
        # Tables first: they are what an operator recognizes (sequences, views… count too).
        cursor.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f', 'S') AND n.nspname NOT IN "
            "('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg\\_%' "
            "ORDER BY c.relkind NOT IN ('r', 'p'), c.relname"
        )
        present = [row[0] for row in cursor.fetchall()]
    if present:
        raise BackupRefused(
            f"The database {target.name} on {target.where} is not empty: it has "
            f"{len(present)} tables and other relations ({', '.join(present[:5])}"
            f"{', …' if len(present) > 5 else ''}). A restore goes only into an empty "
            "database: create a new one (createdb) or drop and recreate this one, then run "
            "restore again — before `migrate`, which would fill it. Nothing was restored."
        )
    source_major = pgtools.major_of(manifest["database"]["server_version"])
    dump_major = pgtools.major_of(manifest["database"]["pg_dump_version"])
    server_major = pgtools.major_of(server)
    if server_major < max(source_major, dump_major):
        raise BackupRefused(
            f"The backup comes from PostgreSQL {manifest['database']['server_version']} "
            f"(written by pg_dump {manifest['database']['pg_dump_version']}); this server is "
            f"PostgreSQL {server}. PostgreSQL restores a dump into the same major version or "
            "a newer one, never an older one: restore into a PostgreSQL "
            f"{max(source_major, dump_major)} server or newer. Nothing was restored."
        )
    pg_restore = _find(
        "pg_restore",
        "Nothing was restored.",
        prefer=server_major,
        minimum=dump_major,
        maximum=server_major,
        why=f"the backup was written by pg_dump {manifest['database']['pg_dump_version']} "
        "(an older pg_restore cannot read it) and the server is PostgreSQL "
        f"{server} (a newer pg_restore sends it settings it does not know).",
    )
    media_root = Path(settings.MEDIA_ROOT).absolute()
    media = [entry for entry in manifest["files"] if entry["path"] != DUMP]
    to_copy = _media_to_copy(media, media_root)
    report = Restored(files=len(media), files_present=len(media) - len(to_copy))

    # Media first, into a staging folder inside MEDIA_ROOT (same file system: moving the
    # files into place afterwards is a rename), so that a failed pg_restore leaves nothing.
    staging = None
    if to_copy:
        media_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=UNFINISHED[1], dir=media_root))
    try:
        if staging:
            _stage_media(source, to_copy, staging, say)
        say(
            f"Restoring into the database {target.name} on {target.where} (PostgreSQL "
            f"{server}) with {pg_restore}, as one transaction …"
        )
        started = time.monotonic()
        _run(
            [
                pg_restore.path,
                "--no-owner",
                "--no-acl",
                "--single-transaction",
                "--exit-on-error",
                "--no-password",
                f"--dbname={target.conninfo}",
                source / DUMP,
            ],
            env=target.environment(),
            say=say,
            waiting=lambda s: f"  … restoring, {s:.0f} s",
        )
        report.seconds = time.monotonic() - started
        say(f"  database restored in {report.seconds:.1f} s")
        if staging:
            for entry in to_copy:
                name = PurePosixPath(entry["path"]).relative_to(MEDIA)
                destination = media_root / name
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / name, destination)
    except BackupRefused as exc:
        raise BackupRefused(
            f"{exc}\nThe restore ran as one transaction: the database is left empty, and no "
            "media file was written."
        ) from exc
    finally:
        if staging:
            shutil.rmtree(staging, ignore_errors=True)
    if media:
        say(
            f"  media: {len(to_copy):,} files written to {media_root}"
            + (f", {report.files_present:,} already there" if report.files_present else "")
        )
    # pg_restore leaves the planner without statistics (its documentation says to ANALYZE
    # afterwards); plans made without them (the audit chain trigger's among them, cached per
    # session) can scan whole tables.
    started = time.monotonic()
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    say(f"  statistics gathered (ANALYZE) in {time.monotonic() - started:.1f} s")
    _after_restore(manifest, report, app_role, app_password, say)
    return report


def _media_to_copy(media: list[dict], root: Path) -> list[dict]:
    """The media files to write; refused if MEDIA_ROOT holds a different file of the same
    name (an identical one is left as it is)."""
    to_copy, conflicts = [], []
    for entry in media:
        existing = root / PurePosixPath(entry["path"]).relative_to(MEDIA)
        if not existing.exists():
            to_copy.append(entry)
        elif not existing.is_file() or _sha256(existing) != entry["sha256"]:
            conflicts.append(str(existing))
    if conflicts:
        shown = "\n  ".join(conflicts[:10])
        raise BackupRefused(
            f"MEDIA_ROOT ({root}) already holds {len(conflicts)} files that differ from the "
            f"backup's:\n  {shown}\nRestore never overwrites a file: move them away (or point "
            "DJANGO_MEDIA_ROOT at an empty folder) and run restore again. Nothing was restored."
        )
    return to_copy


def _stage_media(source: Path, entries: list[dict], staging: Path, say: Say) -> None:
    say(f"Copying {len(entries):,} media files …")
    last = time.monotonic()
    for number, entry in enumerate(entries, 1):
        name = PurePosixPath(entry["path"]).relative_to(MEDIA)
        destination = staging / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        _, digest = _copy(source / entry["path"], destination)
        if digest != entry["sha256"]:
            raise BackupRefused(f"{entry['path']} changed while it was being restored.")
        if time.monotonic() - last > TICK_SECONDS:
            say(f"  … {number:,} of {len(entries):,} files")
            last = time.monotonic()


def _after_restore(manifest, report: Restored, app_role, app_password, say: Say) -> None:
    user = connection.settings_dict.get("USER")
    if app_role and app_role != user:
        grant_app_role(app_role, password=app_password)
        report.app_role = app_role
        say(f"The application's role {app_role} has its rights again (grant_app_role).")
    else:
        say(
            "No application role given (DATABASE_APP_USER): the restore made no grants "
            "(--no-acl). If the application connects as a role of its own, run "
            "`python manage.py grant_app_role --role NAME` as the owner now "
            "(docker compose's migrate service does it on `up`)."
        )
    expected = manifest["database"]["tables"]
    with connection.cursor() as cursor:
        counts = _counts(cursor)
        heads = _audit_heads(cursor)
    report.tables, report.rows = len(counts), sum(counts.values())
    for table in sorted(set(expected) | set(counts)):
        if counts.get(table) != expected.get(table):
            report.problems.append(
                f"table {table}: {counts.get(table)} rows, the backup had {expected.get(table)}"
            )
    if heads != manifest["database"]["audit_heads"]:
        report.problems.append("the audit chains' newest hashes differ from the manifest's")
    for organization_id in chains():
        result = verify(organization_id)
        report.chains.append((organization_id, result))
        if not result.intact:
            report.problems.append(
                f"audit chain of organization {organization_id}: {result.broken}"
            )
    say(
        f"Checked: {report.tables} tables, {report.rows:,} rows "
        f"{'as in the manifest' if not report.problems else '(see the problems below)'}; "
        f"{len(report.chains)} audit chains, "
        f"{sum(r.events for _, r in report.chains):,} events, "
        f"{'intact, newest hashes as in the manifest' if not report.problems else 'checked'}."
    )
    if manifest.get("secret_key_check") not in (None, secret_key_check()):
        say(
            "Note: DJANGO_SECRET_KEY differs from the one the backup was made under. Everyone "
            "must log in again, and links already sent by e-mail (invitations to set a "
            "password, password resets, e-mail confirmations) no longer work; nothing stored "
            "is lost. Set the old key in .env to keep them."
        )
