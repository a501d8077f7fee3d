"""Importing prompts with their candidate responses into a project.

All or nothing by default: every row is checked, every problem is reported with its file,
line and key, and if there is any, nothing is written. With ``skip_invalid`` the valid rows
go in and the rejected ones are reported. Re-importing a file adds nothing twice: a prompt
is known by its id, a candidate by its text within its prompt (``candidate_hash``: as
written, only line endings and trailing whitespace aside). A prompt whose text is another's
with a different case, Unicode form or spacing is a duplicate prompt (``content_hash``); two
candidates that differ only that way are both kept, and QC reports near-identical pairs.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import IO

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tasks import dbstats
from tasks.importers import bulk
from tasks.importers.ahead import import_mode, read_ahead
from tasks.importers.limits import too_many_rows_message
from tasks.importers.rows import (
    FileProblem,
    PromptRow,
    RawRow,
    RowProblem,
    normalize_row,
    read_rows,
)
from tasks.items import build_items, rebuild_items
from tasks.models import Candidate, Project, Prompt

MAX_LISTED_PROBLEMS = 1000


@dataclass
class ImportReport:
    rows_read: int = 0
    prompts_created: int = 0
    prompts_already_present: int = 0
    candidates_created: int = 0
    candidates_skipped_identical: int = 0
    candidates_already_present: int = 0
    items_created: int = 0
    duplicates: list[dict] = field(default_factory=list)
    problems: list[RowProblem] = field(default_factory=list)
    problems_not_listed: int = 0
    warnings: list[str] = field(default_factory=list)

    @property
    def problem_count(self) -> int:
        return len(self.problems) + self.problems_not_listed

    def add_problem(self, problem: RowProblem) -> None:
        if len(self.problems) < MAX_LISTED_PROBLEMS:
            self.problems.append(problem)
        else:
            self.problems_not_listed += 1

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "prompts_created": self.prompts_created,
            "prompts_already_present": self.prompts_already_present,
            "candidates_created": self.candidates_created,
            "candidates_skipped_identical": self.candidates_skipped_identical,
            "candidates_already_present": self.candidates_already_present,
            "items_created": self.items_created,
            "duplicates_skipped": self.duplicates,
            "problems": [p.as_dict() for p in self.problems],
            "problems_not_listed": self.problems_not_listed,
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        return (
            f"{self.rows_read} rows: {self.prompts_created} prompts, "
            f"{self.candidates_created} candidates and {self.items_created} items created; "
            f"{self.prompts_already_present} already present, "
            f"{len(self.duplicates)} duplicate prompts skipped, "
            f"{self.candidates_skipped_identical} identical candidates skipped, "
            f"{self.problem_count} rows rejected"
        )


class ImportFailed(Exception):
    """Nothing was written; ``report.problems`` says why."""

    def __init__(self, report: ImportReport):
        self.report = report
        super().__init__(f"{report.problem_count} problem(s); nothing was imported")


class _TooManyRows(Exception):
    def __init__(self, problem: RowProblem):
        self.problem = problem


Progress = Callable[[int, int], None]  # (rows read, bytes read)


def import_prompts(
    *,
    project: Project,
    files: Iterable[tuple[str, IO[bytes]]],
    skip_invalid: bool = False,
    allow_duplicates: bool = False,
    progress: Progress | None = None,
    batch_size: int = 2000,
) -> ImportReport:
    """Import rows from (name, binary stream) pairs into ``project``.

    Returns the report; raises ImportFailed (and writes nothing) when any row or file has a
    problem and ``skip_invalid`` is false, or when the files hold more than
    CHOSEN_IMPORT_MAX_ROWS rows (whatever ``skip_invalid`` says).
    """
    report = ImportReport()
    try:
        with import_mode(), transaction.atomic():
            run = _Import(project, report, allow_duplicates, progress, batch_size)
            for name, stream in files:
                run.read_file(
                    name, stream, stop_writing=lambda: report.problems and not skip_invalid
                )
            run.flush()
            if report.problem_count and not skip_invalid:
                raise ImportFailed(report)
    except _TooManyRows as exc:
        # Rolled back: the counts of what was written so far no longer hold.
        raise ImportFailed(
            ImportReport(rows_read=report.rows_read, problems=[exc.problem])
        ) from None
    return report


class _Import:
    def __init__(self, project, report, allow_duplicates, progress, batch_size):
        self.project, self.report = project, report
        self.allow_duplicates, self.progress, self.batch_size = (
            allow_duplicates,
            progress,
            batch_size,
        )
        self.limit = settings.CHOSEN_IMPORT_MAX_FIELD_CHARS
        self.max_rows = settings.CHOSEN_IMPORT_MAX_ROWS
        self.rows_seen = 0  # rows read, the unreadable ones included
        self.seen_ids: dict[str, str] = {}  # id → where it was first seen in this import
        self.pending: list[PromptRow] = []
        self.writing = True
        self.bytes_done = 0

    def read_file(self, name: str, stream: IO[bytes], stop_writing) -> None:
        start = _tell(stream)
        try:
            # Rows are read and checked in a thread of their own while this one writes the
            # batch before (``read_ahead``): pure Python, no database.
            for entry in read_ahead(self._checked(name, stream), chunk=self.batch_size // 4):
                if isinstance(entry, RowProblem):
                    self.report.add_problem(entry)
                    if stop_writing():
                        self.writing, self.pending = False, []
                    continue
                if self.writing:
                    self.pending.append(entry)
                    if len(self.pending) >= self.batch_size:
                        self.flush()
                        self._progress(stream, start)
        except FileProblem as exc:
            self.report.add_problem(exc.problem)
            if stop_writing():
                self.writing, self.pending = False, []
        self._progress(stream, start)
        self.bytes_done += max(_tell(stream) - start, 0)

    def _checked(self, name: str, stream: IO[bytes]) -> Iterator[PromptRow | RowProblem]:
        """Each row of the file, normalized and checked (a PromptRow), or its problem."""
        project = self.project
        for entry in read_rows(stream, name=name, id_key=project.id_key, text_key=project.text_key):
            self.rows_seen += 1
            if self.rows_seen > self.max_rows:
                raise _TooManyRows(
                    RowProblem(name, entry.where, too_many_rows_message(self.max_rows))
                )
            self.report.rows_read += isinstance(entry, RawRow)
            if isinstance(entry, RawRow):
                entry = normalize_row(
                    entry,
                    id_key=project.id_key,
                    text_key=project.text_key,
                    candidate_fields=project.candidate_fields,
                    limit=self.limit,
                )
            if isinstance(entry, PromptRow):
                entry = self._check_id(entry)
            yield entry

    def _progress(self, stream, start) -> None:
        if self.progress:
            self.progress(self.report.rows_read, self.bytes_done + max(_tell(stream) - start, 0))

    def _check_id(self, row: PromptRow) -> PromptRow | RowProblem:
        first = self.seen_ids.get(row.external_id)
        if first is not None:
            return RowProblem(
                row.file,
                row.where,
                f"duplicate id, first used at {first}",
                key=self.project.id_key,
                row_id=row.external_id,
            )
        self.seen_ids[row.external_id] = f"{row.file}, {row.where}"
        return row

    def flush(self) -> None:
        rows, self.pending = self.pending, []
        if not rows or not self.writing:
            return
        project = self.project
        existing = dict(
            dbstats.by_key_in_project(
                Prompt.objects.filter(external_id__in=[r.external_id for r in rows]), project.pk
            ).values_list("external_id", "id")
        )
        fresh = [r for r in rows if r.external_id not in existing]
        if not self.allow_duplicates:
            fresh = self._drop_duplicates(fresh)
        now = timezone.now()
        prompt_ids = bulk.insert(
            Prompt,
            [
                "organization_id",
                "project_id",
                "external_id",
                "text",
                "messages",
                "metadata",
                "source",
                "content_hash",
                "created_at",
            ],
            [
                (
                    project.organization_id,
                    project.pk,
                    r.external_id,
                    r.text,
                    r.messages,
                    r.metadata,
                    r.file[:300],
                    r.content_hash,
                    now,
                )
                for r in fresh
            ],
            json_columns=["messages", "metadata"],
        )
        self.report.prompts_created += len(prompt_ids)
        by_prompt = self._add_candidates(
            [(pid, r, set()) for pid, r in zip(prompt_ids, fresh, strict=True)]
        )
        self.report.items_created += build_items(project, by_prompt, fresh=True)
        if existing:
            self._update_existing([r for r in rows if r.external_id in existing], existing)

    def _drop_duplicates(self, rows: list[PromptRow]) -> list[PromptRow]:
        known = dict(
            dbstats.by_key_in_project(
                Prompt.objects.filter(content_hash__in={r.content_hash for r in rows}),
                self.project.pk,
            ).values_list("content_hash", "external_id")
        )
        kept = []
        for row in rows:
            original = known.get(row.content_hash)
            if original is not None:
                self.report.duplicates.append(
                    {
                        "file": row.file,
                        "where": row.where,
                        "id": row.external_id,
                        "duplicate_of": original,
                    }
                )
                continue
            known[row.content_hash] = row.external_id
            kept.append(row)
        return kept

    def _add_candidates(
        self, entries: list[tuple[int, PromptRow, set[str]]]
    ) -> dict[int, list[int]]:
        """Create each row's candidates that its prompt does not have yet (entries carry the
        digests already stored for the prompt)."""
        organization_id, now = self.project.organization_id, timezone.now()
        new, owners = [], []
        for prompt_id, row, stored in entries:
            seen: set[str] = set()
            for candidate in row.candidates:
                digest = candidate.digest
                if digest in stored:
                    self.report.candidates_already_present += 1
                    continue
                if digest in seen:
                    self.report.candidates_skipped_identical += 1
                    continue
                seen.add(digest)
                new.append(
                    (
                        organization_id,
                        prompt_id,
                        candidate.text,
                        Candidate.Source.IMPORTED.value,
                        candidate.source_key[:100],
                        candidate.model,
                        candidate.parameters,
                        candidate.finish_reason,
                        digest,
                        now,
                    )
                )
                owners.append(prompt_id)
        candidate_ids = bulk.insert(
            Candidate,
            [
                "organization_id",
                "prompt_id",
                "text",
                "source",
                "source_key",
                "model",
                "parameters",
                "finish_reason",
                "content_hash",
                "created_at",
            ],
            new,
            json_columns=["parameters"],
        )
        self.report.candidates_created += len(candidate_ids)
        by_prompt: dict[int, list[int]] = {prompt_id: [] for prompt_id, _, _ in entries}
        for prompt_id, candidate_id in zip(owners, candidate_ids, strict=True):
            by_prompt[prompt_id].append(candidate_id)
        return by_prompt

    def _update_existing(self, rows: list[PromptRow], existing: dict[str, int]) -> None:
        self.report.prompts_already_present += len(rows)
        ids = [existing[r.external_id] for r in rows]
        known: dict[int, set[str]] = {pid: set() for pid in ids}
        for prompt_id, digest in Candidate.objects.filter(prompt_id__in=ids).values_list(
            "prompt_id", "content_hash"
        ):
            known[prompt_id].add(digest)
        stored = dict(Prompt.objects.filter(pk__in=ids).values_list("id", "content_hash"))
        for row in rows:
            if stored[existing[row.external_id]] != row.content_hash:
                self.report.warnings.append(
                    f"{row.file}, {row.where}: id {row.external_id!r} is already imported with "
                    "another text; the stored text is kept"
                )
        added = self._add_candidates(
            [(existing[r.external_id], r, known[existing[r.external_id]]) for r in rows]
        )
        changed = [pid for pid, cids in added.items() if cids]
        if changed:
            self.report.items_created += rebuild_items(self.project, changed)


def _tell(stream) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError, AttributeError):
        return 0
