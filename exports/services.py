"""Export jobs: requested (options checked, conversations a flat format must refuse
refused up front), run by a Celery job through the job lifecycle into one folder per
export, and their files served by name."""

import math
import shutil
from dataclasses import fields
from pathlib import Path

from django.conf import settings

from exports.models import Export
from exports.pairs import Options, check, options_record
from exports.writer import ALL_FORMATS, conversation_problem, export_to_folder, partial_folders
from tasks.lifecycle import run_job, send
from tasks.models import Project


def folder_of(export) -> Path:
    """MEDIA_ROOT/exports/<organization>/<project>/<export>: one folder per export, named by
    ids only, so no user string reaches a path."""
    return (
        Path(settings.MEDIA_ROOT)
        / "exports"
        / str(int(export.organization_id))
        / str(int(export.project_id))
        / str(int(export.pk))
    )


def options_from(data: dict) -> Options:
    """Options from a request's or a form's values: unknown keys, and values of the wrong
    type, are refused with a ValueError that names the option."""
    if not isinstance(data, dict):
        raise ValueError("options must be an object")
    known = {f.name: f for f in fields(Options)}
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise ValueError(f"unknown option(s): {', '.join(unknown)}")
    values = {name: _option_value(name, value, known[name].default) for name, value in data.items()}
    options = Options(**values)
    if options.problems():
        raise ValueError("; ".join(options.problems()))
    return options


def _option_value(name: str, value, default):
    """``value`` checked against the option's type, which its default shows (None: an
    optional number; a tuple: a list of the same kind as its first element)."""

    def number(v) -> bool:
        return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)

    if isinstance(default, tuple):
        kind = "numbers" if name == "ratios" else "strings"
        ok = isinstance(value, list | tuple) and all(
            number(v) if kind == "numbers" else isinstance(v, str) for v in value
        )
        if not ok:
            raise ValueError(f"{name} must be a list of {kind}")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false")
    elif isinstance(default, int) and not isinstance(default, bool):
        if not (isinstance(value, int) and not isinstance(value, bool)):
            raise ValueError(f"{name} must be a whole number")
    elif default is None or isinstance(default, float):
        if not (number(value) or (default is None and value is None)):
            raise ValueError(f"{name} must be a number")
    elif isinstance(default, str) and not isinstance(value, str):
        raise ValueError(f"{name} must be a string")
    return value


def request_export(project: Project, fmt: str, options: Options, created_by=None):
    """Queue an export job; ValueError (nothing queued) for a format or options that cannot
    be exported, e.g. conversations a flat format was told to refuse."""
    from exports.jobs import run_export  # exports.jobs imports this module

    if fmt not in ALL_FORMATS:
        raise ValueError(f"format must be one of {', '.join(ALL_FORMATS)}")
    if fmt != "judgments":
        check(project, options)
    refusal = conversation_problem(project, fmt, options)
    if refusal:
        raise ValueError(refusal)
    export = Export.objects.create(
        organization=project.organization,
        project=project,
        created_by=created_by,
        format=fmt,
        options=options_record(options),
    )
    send(run_export, export)
    return export


def run_export(export_id: int) -> Export:
    """Write a queued export into its folder and store its counts and files, or its failure
    and why (a conversation the lead chose to refuse: in their words; a full or unwritable
    disk: in the operator's). Its files are listed, and so served, only once it succeeded;
    a failed one leaves none behind."""

    def work(export: Export) -> None:
        folder = folder_of(export)
        # A job run again (its worker was killed) starts clean: no file of the earlier run
        # is kept, half-written or whole (it was never listed: the job had not succeeded).
        for leftover in [folder, *partial_folders(folder)]:
            shutil.rmtree(leftover, ignore_errors=True)
        options = options_from(export.options)
        manifest = export_to_folder(export.project, export.format, folder, options)
        export.counts, export.files = manifest["counts"], manifest["files"]

    return run_job(
        Export.objects.select_related("project"),
        export_id,
        work,
        outcome="The export could not be written",
        fields=["counts", "files"],
    )


def export_file(export, name: str) -> Path:
    """The path of one of the export's files, if ``name`` is exactly one of them (a name
    from the manifest, never a path): FileNotFoundError otherwise."""
    names = {entry["name"] for entry in export.files} | {"manifest.json"}
    if name not in names or "/" in name or "\\" in name or name.startswith("."):
        raise FileNotFoundError(name)
    path = folder_of(export) / name
    if not path.is_file():
        raise FileNotFoundError(name)
    return path
