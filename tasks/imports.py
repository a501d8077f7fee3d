"""Import jobs: uploads stored, imported by a Celery job (or during the request for small
API uploads), progress and outcome reported. The importing itself is in tasks/importers/.

A build of a project's pairs from its feedback signals (``start_pair_build``) is an
import job too (kind ``pairs``, no files): like an import it is one long transaction on a
project whose outcome is a report, so it shares their job row, their worker job, the
sweeper's rescue, the admin's job page, the audit trail and ``/api/v1/imports/<id>``."""

import logging
import uuid
from pathlib import PurePath

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.core.files.storage import default_storage
from django.core.files.uploadhandler import FileUploadHandler

from tasks.feedback.verify import build_and_queue
from tasks.importers.feedback import import_feedback
from tasks.importers.limits import (
    MAX_CONFIG_BYTES,
    ImportTooLarge,
    check_total_bytes,
    config_too_large_message,
    max_bytes,
)
from tasks.importers.potato import PotatoImportFailed, import_potato_project
from tasks.importers.prompts import ImportFailed, import_prompts
from tasks.lifecycle import JobRefused, run_job, send
from tasks.models import FeedbackSignal, ImportJob, Organization

logger = logging.getLogger(__name__)
PROGRESS_KEY = "chosen:import-progress:{}"
DATA_SUFFIXES = (".json", ".jsonl", ".ndjson", ".csv")


def check_data_uploads(uploads) -> list:
    """Refuse, by name, an uploaded data file that is not JSON, JSONL or CSV, and two files
    of one name (the import knows its files by name: one would hide the other)."""
    seen = set()
    for upload in uploads:
        if not upload.name.lower().endswith(DATA_SUFFIXES):
            raise ValidationError(f"{upload.name}: use .json, .jsonl or .csv")
        name = PurePath(upload.name).name
        if name in seen:
            raise ValidationError(f"{name}: two files have this name; rename one")
        seen.add(name)
    return uploads


def check_config_upload(upload):
    if not upload.name.lower().endswith((".yaml", ".yml")):
        raise ValidationError(f"{upload.name}: the config must be a .yaml file")
    if upload.size > MAX_CONFIG_BYTES:
        raise ValidationError(f"{upload.name}: {config_too_large_message(upload.size)}")
    return upload


def check_upload_size(uploads) -> None:
    """Raise ImportTooLarge when the uploads together exceed CHOSEN_IMPORT_MAX_BYTES."""
    check_total_bytes(upload.size for upload in uploads)


class ImportUploadLimit(FileUploadHandler):
    """Counts an import's file bytes as the request body arrives and stops the request at
    CHOSEN_IMPORT_MAX_BYTES, so an oversized upload is refused before it is spooled to disk
    (Django's own limits leave file parts unbounded). Raises ImportTooLarge."""

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        # Besides the files an import form holds a few flags, which Django bounds with
        # DATA_UPLOAD_MAX_MEMORY_SIZE: a body larger than both together cannot be accepted.
        if content_length > max_bytes() + settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
            raise ImportTooLarge(content_length, max_bytes())
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > max_bytes():
            raise ImportTooLarge(None, max_bytes())
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler makes the file


def limit_upload(request) -> None:
    """Put ImportUploadLimit first on a Django request whose body is not read yet."""
    if not hasattr(request, "_files"):
        request.upload_handlers.insert(0, ImportUploadLimit(request))


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
    options: dict | None = None,
) -> ImportJob:
    """Store the uploads and record the job; raises ImportTooLarge, storing nothing, when
    they exceed CHOSEN_IMPORT_MAX_BYTES. ``options`` of a feedback import (as
    ``tasks.importers.feedback.check_options`` returns them) wait in ``report["options"]``
    until the job runs, and stay in its report."""
    check_upload_size(uploads)
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
        report={"options": options} if options else {},
    )


def enqueue(job: ImportJob) -> None:
    from tasks.jobs import run_import  # tasks.jobs imports this module

    send(run_import, job)


def progress_of(job: ImportJob) -> dict:
    """Rows and bytes done so far, and the fraction of bytes (0..1)."""
    if job.finished:
        done = job.total_bytes
        rows = job.report.get("rows_read", 0)
    else:
        current = _progress_cache("get", PROGRESS_KEY.format(job.pk)) or {}
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
    jobs = ImportJob.objects.select_related("project", "organization")
    builds = jobs.filter(pk=job_id, kind=ImportJob.Kind.PAIRS).exists()
    job = run_job(
        jobs,
        job_id,
        _import,
        outcome=(
            "The pair build stopped; no pair was changed"
            if builds
            else "The import stopped; nothing was imported"
        ),
        fields=["report", "errors", "project"],
    )
    if job.finished:
        _progress_cache("delete", PROGRESS_KEY.format(job.pk))
        for f in job.files:  # the uploads have served their purpose
            default_storage.delete(f["path"])
    return job


def _progress_cache(operation: str, *args, **kwargs):
    """The progress kept in the (Redis) cache: only shown while the job runs, so a cache
    that cannot be reached costs the progress bar, never the import."""
    try:
        return getattr(cache, operation)(*args, **kwargs)
    except Exception as error:
        logger.warning("import progress not kept: the cache is unreachable (%s)", error)
        return None


def _import(job: ImportJob) -> None:
    """The import itself; a problem of the files is a JobRefused with ``errors`` listing
    them (the job's own account of why: ImportJob.failure_reason)."""

    def progress(rows: int, done: int) -> None:
        progress_now = {"rows": rows, "bytes": done}
        _progress_cache("set", PROGRESS_KEY.format(job.pk), progress_now, timeout=24 * 3600)

    def refuse(report: dict, errors: list) -> JobRefused:
        job.report, job.errors = report, errors
        return JobRefused("")

    if job.kind == ImportJob.Kind.PAIRS:
        job.report, job.errors = {"pairs": build_and_queue(project=job.project)}, []
        return
    streams = {f["name"]: default_storage.open(f["path"], "rb") for f in job.files}
    config = None
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
        elif job.kind == ImportJob.Kind.FEEDBACK:
            options = job.report.get("options") or {}
            report = import_feedback(
                project=job.project,
                files=list(streams.items()),
                kind=options.get("kind", "auto"),
                scale=options.get("scale"),
                redact=options.get("redact", False),
                redact_patterns=options.get("redact_patterns", ()),
                skip_invalid=job.skip_invalid,
                job=job,
                progress=progress,
            )
            outcome = {**report.as_dict(), "pairs": build_and_queue(project=job.project)}
        else:
            report = import_prompts(
                project=job.project,
                files=list(streams.items()),
                skip_invalid=job.skip_invalid,
                allow_duplicates=job.allow_duplicates,
                progress=progress,
            )
            outcome = report.as_dict()
        job.report, job.errors = outcome, []
    except ImportFailed as exc:
        raise refuse(exc.report.as_dict(), [p.as_dict() for p in exc.report.problems]) from exc
    except PotatoImportFailed as exc:
        raise refuse(exc.report.as_dict() if exc.report else {}, exc.as_list()) from exc
    except StopIteration as exc:
        raise refuse({}, [_job_error("a Potato import needs one UTF-8 .yaml config")]) from exc
    except UnicodeDecodeError as exc:
        message = (
            f"the config is not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at "
            f"position {exc.start}); save it as UTF-8"
        )
        raise refuse({}, [_job_error(message, file=config)]) from exc
    finally:
        for stream in streams.values():
            stream.close()


def _job_error(message: str, file: str | None = None) -> dict:
    """An error of the whole job, in the shape of a row's problem (RowProblem.as_dict)."""
    return {"file": file, "where": None, "key": None, "id": None, "message": message}


def run_now_or_enqueue(job: ImportJob) -> bool:
    """Small uploads are imported during the request; returns True if it ran."""
    if job.total_bytes <= settings.CHOSEN_IMPORT_SYNC_MAX_BYTES:
        run_import_job(job.pk)
        job.refresh_from_db()
        return True
    enqueue(job)
    return False


def start_pair_build(*, project, created_by=None) -> tuple[ImportJob, bool]:
    """Record a build of the project's pairs (``build_and_queue``) as a job, and run it now
    when the project is small, else send it to a worker. Returns the job and whether it
    ran; its report is ``{"pairs": <the build's counts>}``."""
    job = ImportJob.objects.create(
        organization=project.organization,
        project=project,
        kind=ImportJob.Kind.PAIRS,
        created_by=created_by,
    )
    # At most CHOSEN_PAIR_BUILD_SYNC_MAX_SIGNALS signals are built during the request (well
    # under a second); more in a job (a million signals take ~35 s).
    limit = settings.CHOSEN_PAIR_BUILD_SYNC_MAX_SIGNALS
    if not FeedbackSignal.objects.filter(project=project)[limit : limit + 1].exists():
        run_import_job(job.pk)
        job.refresh_from_db()
        return job, True
    enqueue(job)
    return job, False
