"""Exporting a project's preference pairs to a folder: the split files of one format, their
provenance, and a manifest with counts, parameters and sha256 checksums."""

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path

from exports.formats import SplitWriter, dumps
from exports.pairs import Options, extract
from tasks.models import Project


def export_to_folder(project: Project, fmt: str, folder: Path, options: Options) -> dict:
    """Write the export into ``folder`` (created; must be empty or absent) and return its
    manifest. Files are written in a temporary folder beside it and moved in at the end, so
    a failure leaves nothing half-written."""
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        raise FileExistsError(f"{folder} is not empty")
    folder.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".export-", dir=folder.parent))
    try:
        writer = SplitWriter(work, fmt)
        try:
            for pair in extract(project, options):
                writer.add(pair)
        finally:
            files = writer.close()
        manifest = {
            "project": {"id": project.pk, "name": project.name},
            "format": fmt,
            "options": {
                k: list(v) if isinstance(v, tuple) else v for k, v in asdict(options).items()
            },
            "counts": dict(sorted(writer.counts.items())),
            "files": files,
        }
        (work / "manifest.json").write_text(dumps(manifest) + "\n", encoding="utf-8")
        if folder.exists():
            folder.rmdir()
        work.rename(folder)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
