"""Import jobs: uploads stored, imported by a Celery job (or during the request for small
API uploads), progress and outcome reported. The importing itself is in tasks/importers/."""

import uuid
from pathlib import PurePath

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.utils import timezone

from tasks.importers.potato import PotatoImportFailed, import_potato_project
from tasks.importers.prompts import ImportFailed, import_prompts
from tasks.models import ImportJob, Organization

PROGRESS_KEY = "chosen:import-progress:{}"
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")


def check_data_uploads(uploads) -> list:
    """Refuse, by name, an uploaded data file that is not JSON, JSONL or CSV."""
    for upload in uploads:
        if not upload.name.lower().endswith(DATA_SUFFIXES):
            raise ValidationError(f"{upload.name}: use .json, .jsonl or .csv")
    return uploads


def check_config_upload(upload):
    if not upload.name.lower().endswith((".yaml", ".yml")):
        raise ValidationError(f"{upload.name}: the config must be a .yaml file")
    return upload


def store_uploads(organization: Organization, uploads) -> list[dict]:
    """Save uploaded files under imports/<organization>/<random>/ and describe them."""
    folder = f"imports/{organization.pk}/{uuid.uuid4().hex}"
    stored = []
    for upload in uploads:
        name = PurePath(upload.name).name or "upload"
        path = default_storage.save(f"{folder}/{name}", upload)
        stored.append({"name": name, "path": path, "size": upload.size})
    return stored


def create_import_job(
    *,
    organization: Organization,
    kind: str,
    uploads,
    project=None,
    skip_invalid=False,
    allow_duplicates=False,
    created_by=None,
) -> ImportJob:
    files = store_uploads(organization, uploads)
    return ImportJob.objects.create(
        organization=organization,
        project=project,
        kind=kind,
        files=files,
        skip_invalid=skip_invalid,
        allow_duplicates=allow_duplicates,
        total_bytes=sum(f["size"] for f in files),
        created_by=created_by,
    )


def enqueue(job: ImportJob) -> None:
    from tasks.jobs import run_import

    run_import.delay_on_commit(job.organization_id, job.pk)


def progress_of(job: ImportJob) -> dict:
    """Rows and bytes done so far, and the fraction of bytes (0..1)."""
    if job.finished:
        done = job.total_bytes
        rows = job.report.get("rows_read", 0)
    else:
        current = cache.get(PROGRESS_KEY.format(job.pk)) or {}
        done, rows = current.get("bytes", 0), current.get("rows", 0)
    fraction = (
        min(done / job.total_bytes, 1.0) if job.total_bytes else (1.0 if job.finished else 0.0)
    )
    return {
        "rows": rows,
        "bytes": done,
        "total_bytes": job.total_bytes,
        "fraction": round(fraction, 4),
    }


def run_import_job(job_id: int) -> ImportJob:
    """Run one import job to its end. Safe to call twice: a finished job is left alone, and
    a job whose worker died mid-way is re-run from the start (its import was one
    transaction, so nothing of the first run remains)."""
    claimed = ImportJob.objects.filter(
        pk=job_id, status__in=[ImportJob.Status.QUEUED, ImportJob.Status.RUNNING]
    ).update(status=ImportJob.Status.RUNNING, started_at=timezone.now())
    job = ImportJob.objects.select_related("project", "organization").get(pk=job_id)
    if not claimed:
        return job

    def progress(rows: int, done: int) -> None:
        cache.set(PROGRESS_KEY.format(job.pk), {"rows": rows, "bytes": done}, timeout=24 * 3600)

    streams = {f["name"]: default_storage.open(f["path"], "rb") for f in job.files}
    try:
        if job.kind == ImportJob.Kind.POTATO:
            config = next(n for n in streams if n.lower().endswith((".yaml", ".yml")))
            text = streams.pop(config).read().decode("utf-8", errors="strict")
            project, _, report, warnings = import_potato_project(
                organization=job.organization,
                config_text=text,
                config_name=config,
                data_files=streams,
                skip_invalid=job.skip_invalid,
                progress=progress,
            )
            job.project = project
            outcome = {**report.as_dict(), "warnings": warnings + report.warnings}
        else:
            report = import_prompts(
                project=job.project,
                files=list(streams.items()),
                skip_invalid=job.skip_invalid,
                allow_duplicates=job.allow_duplicates,
                progress=progress,
            )
            outcome = report.as_dict()
        job.status, job.report, job.errors = ImportJob.Status.SUCCEEDED, outcome, []
    except ImportFailed as exc:
        job.status, job.report = ImportJob.Status.FAILED, exc.report.as_dict()
        job.errors = [p.as_dict() for p in exc.report.problems]
    except PotatoImportFailed as exc:
        job.status = ImportJob.Status.FAILED
        job.report = exc.report.as_dict() if exc.report else {}
        job.errors = exc.as_list()
    except (UnicodeDecodeError, StopIteration) as exc:
        job.status = ImportJob.Status.FAILED
        job.errors = [
            {
                "file": None,
                "where": None,
                "key": None,
                "id": None,
                "message": "a Potato import needs one UTF-8 .yaml config"
                if isinstance(exc, StopIteration)
                else f"the config is not UTF-8 ({exc})",
            }
        ]
    finally:
        for stream in streams.values():
            stream.close()
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "report", "errors", "project", "finished_at"])
    cache.delete(PROGRESS_KEY.format(job.pk))
    for f in job.files:  # the uploads have served their purpose
        default_storage.delete(f["path"])
    return job


def run_now_or_enqueue(job: ImportJob) -> bool:
    """Small uploads are imported during the request; returns True if it ran."""
    if job.total_bytes <= settings.CHOSEN_IMPORT_SYNC_MAX_BYTES:
        run_import_job(job.pk)
        job.refresh_from_db()
        return True
    enqueue(job)
    return False
