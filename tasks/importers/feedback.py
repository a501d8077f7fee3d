"""Importing preference signal the enterprise already has: chat feedback logs (ours and Open
WebUI's export), A/B test results, graded reviews and expert corrections.

Every row becomes one ``FeedbackSignal`` (a feedback-log row with both a regeneration and
an edit becomes two), its conversation one ``Prompt`` and its texts ``Candidate`` rows of
that prompt (source ``feedback_log``). Nothing else is built: no items. Which pairs and
KTO rows the signals make, and which of them experts verify, is the pair builder's work
(``tasks.feedback.pairs``).

Formats (the kind is given: ``kind=`` / ``--kind``; ``auto`` reads each file's first row:
Open WebUI's shape, else ``variant_a`` → A/B, ``grade`` → grade, ``corrected`` →
correction, else a feedback log). Files are JSONL, JSON (a list of rows) or CSV; in CSV a
``messages`` cell holds the conversation as JSON.

``feedback`` — our feedback log, one reply the user reacted to per row; every signal
field is optional, but a row needs at least one::

    {"id": "ev-1", "messages": [{"role": "user", "content": "How do I reset my password?"}],
     "reply": "Open Settings › Security…", "model": "support-7b",
     "timestamp": "2025-03-01T10:15:00Z", "user": "u-8812", "thumbs": "down", "rating": 2,
     "regenerated_from": "<the reply this one replaced>", "kept": "reply",
     "edited": "<the user's edit of reply>", "complaint": true}

  ``messages`` ends with the user turn (or give ``prompt``, a text); ``thumbs`` is
  ``up``/``down``/``1``/``-1``; ``rating`` 1..5 (score (rating-1)/4); ``kept`` is
  ``reply`` or ``regenerated_from`` (stored as ``data.kept`` = ``reply``/``other``);
  ``timestamp`` ISO 8601 or epoch seconds (or milliseconds).

``open_webui`` — the file Open WebUI's Admin › Evaluations › Feedback "Export" downloads
(``feedback-history-export-<ms>.json``), read unchanged: a JSON list of
``{"id", "user_id", "type": "rating", "data": {"rating": 1|0|-1, "model_id",
"sibling_model_ids"?, "reason"?, "comment"?, "tags"?, "details": {"rating": 1..10}?},
"meta": {"chat_id", "message_id", "message_index", "arena"?, "model_id", "base_models"},
"snapshot": {"chat": {"id", "title", "chat": {"history": {"messages": {<id>: {"id",
"parentId", "childrenIds", "role", "content", "model"?}}, "currentId"}}}},
"created_at", "updated_at"}``. The rated message is found in the snapshot's history
by ``meta.message_id``; the conversation is its chain of parents; ``rating`` is the thumbs
(0, an arena draw, is ``data.draw``); ``details.rating`` is the score ((r-1)/9); the first
sibling reply (a regeneration, or the other arena model) is ``other`` with
``data.relation = "sibling"``.

``ab_test`` — one A/B test per row: ``prompt`` (or ``messages``, or ``prompt_id``: the id
of a prompt already in the project), ``variant_a``, ``variant_b``, and either ``wins_a``
and ``wins_b`` (optional ``impressions_a``, ``impressions_b``) or ``winner`` (``a``/``b``);
optional ``id``, ``model_a``, ``model_b``::

    prompt,variant_a,variant_b,wins_a,wins_b,impressions_a,impressions_b
    "Summarize the refund policy","Refunds within 30 days…","You may return…",412,388,1000,1000

``grade`` — ``prompt``, ``output``, ``grade``, optional ``reviewer``, ``comment``, ``id``,
``model``. The scale is the import's (``scale=`` / ``--scale``): numeric ``1 5`` (the
default) or ordinal ``poor fair good excellent``; score = the grade's position on it,
mapped onto 0..1::

    {"prompt": "Explain VAT", "output": "VAT is…", "grade": "good", "reviewer": "r-17"}

``correction`` — ``prompt``, ``original``, ``corrected``, optional ``expert``, ``comment``,
``id``, ``model``::

    {"prompt": "Translate 'Kündigung'", "original": "Cancellation", "corrected": "Notice of
     termination", "expert": "legal-3"}

Identity, and why re-importing adds nothing twice:

- a prompt is its conversation: ``conversation_key`` = ``Prompt.content_hash`` = SHA-256
  of the normalized conversation before the reply (the text for one user turn, else the
  messages as prompt imports hash them), so thumbs on replies to the same question from
  different users land on one prompt; a new one gets the external id ``fb-<its id>``
  (``fb-<key[:24]>`` in a project that holds such an id of its own, see ``_Writer``),
  and a prompt already in the project with that content is reused;
- a candidate is its text within its prompt (``candidate_hash``, as for prompt imports);
- a signal is its content: ``data.digest`` = SHA-256 of its kind, prompt, texts, fields
  and ``data`` (the row's own ``id`` included), so the same file (or an export that
  repeats rows) adds no signal twice, while a row whose content changed is a new signal.

Privacy: user and reviewer ids are stored only as ``pseudonym(organization, id)``; with
``redact`` every text (conversation, replies, edits, comments, reasons) goes through
``Redactor`` before it is hashed or stored, and the report counts what was replaced.

All or nothing by default, every bad row listed (file, line, key); ``skip_invalid``
imports the valid rows, as prompt imports do.
"""

import contextlib
import json
import math
import queue
import re
import threading
from bisect import bisect_right
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from typing import IO, Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from psycopg import sql

from tasks import dbstats
from tasks.feedback.privacy import Redactor, UnsafePattern, pseudonym
from tasks.importers.ahead import import_mode
from tasks.importers.limits import too_many_rows_message
from tasks.importers.prompts import ImportFailed, ImportReport
from tasks.importers.rows import (
    FileProblem,
    RawRow,
    RowProblem,
    _check_messages,
    _check_text,
    _Invalid,
    _unstorable_json,
    candidate_hash,
    read_rows,
)
from tasks.models import Candidate, FeedbackSignal, Project, Prompt
from tasks.sqlrows import array
from tasks.text import content_hash

KINDS = ("auto", "feedback", "open_webui", "ab_test", "grade", "correction")
SIGNAL_KIND = {
    "feedback": FeedbackSignal.Kind.FEEDBACK,
    "open_webui": FeedbackSignal.Kind.FEEDBACK,
    "ab_test": FeedbackSignal.Kind.AB_TEST,
    "grade": FeedbackSignal.Kind.GRADE,
    "correction": FeedbackSignal.Kind.CORRECTION,
}
_LINE = re.compile(r"line (\d+)")
# What _check_text refuses in a text (a control character, a surrogate, NUL), in one pattern.
_UNSAFE = re.compile("[\x00-\x08\x0e-\x1f\ud800-\udfff]")
# What a signal's ``data`` holds, as JSON, when _unstorable_json could object to it: a
# surrogate, an escaped NUL, NaN or Infinity (or only text that looks like them).
_SUSPECT = re.compile(r"[\ud800-\udfff]|\\u0000|NaN|Infinity")


def _refuse(value):
    raise TypeError(f"{type(value).__name__} is not JSON")


# json.dumps(value, ensure_ascii=False), the same text, without the set-up json.dumps does
# on every call (a row is dumped two or three times): the C encoder, made once. No check for
# cycles: the values are fresh from the parser and the readers.
_ENCODER = json.encoder.c_make_encoder(
    None, _refuse, json.encoder.encode_basestring, None, ": ", ", ", False, False, True
)


def _dumps(value) -> str:
    return "".join(_ENCODER(value, 0))


class Scale:
    """A grade scale: numeric (``low``..``high``) or ordinal (labels, worst first)."""

    def __init__(self, values: Iterable[Any] = ("1", "5")):
        values = [str(v).strip() for v in values]
        if len(values) < 2 or any(not v for v in values):
            raise ValueError("a scale needs two numbers (1 5) or at least two labels")
        self.labels: list[str] | None = None
        if len(values) == 2 and all(_is_number(v) for v in values):
            self.low, self.high = float(values[0]), float(values[1])
            if not self.low < self.high:
                raise ValueError(f"the scale's first number must be below the second: {values}")
        elif any(_is_number(v) for v in values) and all(_is_number(v) for v in values):
            raise ValueError("a numeric scale is two numbers, its lowest and highest grade")
        else:
            if len({v.casefold() for v in values}) != len(values):
                raise ValueError(f"the scale repeats a label: {values}")
            self.labels = values
            self._position = {v.casefold(): i for i, v in enumerate(values)}

    def as_list(self) -> list:
        return list(self.labels) if self.labels else [_plain(self.low), _plain(self.high)]

    def score(self, grade: Any) -> float:
        """The grade's position on the scale, 0..1; _Invalid if it is not on it."""
        if self.labels is not None:
            position = self._position.get(str(grade).strip().casefold())
            if position is None:
                raise _Invalid(f"is not on the scale ({', '.join(self.labels)})", "grade")
            return position / (len(self.labels) - 1)
        number = _number(grade, "grade")
        if not self.low <= number <= self.high:
            raise _Invalid(
                f"{_plain(number)} is outside the scale {_plain(self.low)}..{_plain(self.high)}",
                "grade",
            )
        return (number - self.low) / (self.high - self.low)


def _is_number(value: str) -> bool:
    try:
        return math.isfinite(float(value))
    except ValueError:
        return False


def _plain(number: float):
    return int(number) if float(number).is_integer() else number


@dataclass(slots=True)
class Text:
    text: str
    source_key: str
    model: str = ""
    digest: str = ""
    columns: str = ""  # its COPY columns after prompt_id (``_candidate_columns``)
    seen: bool = True  # whether an earlier row of the import may have had it (same prompt)


@dataclass(slots=True)
class SignalRow:
    file: str
    where: str
    kind: str  # FeedbackSignal.Kind value
    prompt_key: str = ""
    prompt_text: str = ""
    messages: list | None = None
    prompt_ref: str | None = None  # an existing prompt's external id (A/B ``prompt_id``)
    reply: Text | None = None
    other: Text | None = None
    thumbs: int | None = None
    score: float | None = None
    complaint: bool = False
    model: str = ""
    occurred_at: datetime | None = None
    user_hash: str = ""
    data: dict = field(default_factory=dict)
    digest: str = ""
    row_id: str | None = None
    data_json: str = ""  # ``data`` with its digest, as stored
    messages_json: str | None = None
    when: str | None = None  # occurred_at in ISO 8601
    seen: bool = True  # whether an earlier row of the import may have had its prompt
    repeat: bool = True  # whether an earlier row of the import may have had its digest
    prompt_columns: str = ""  # its new prompt's last COPY columns (``_prompt_columns``)


@dataclass
class FeedbackImportReport(ImportReport):
    """What a feedback import did; ``problems`` as for prompt imports."""

    signals_created: int = 0
    signals_already_present: int = 0
    signals_by_kind: dict = field(default_factory=dict)
    redactions: dict | None = None
    options: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {
            "rows_read": self.rows_read,
            "signals_created": self.signals_created,
            "signals_already_present": self.signals_already_present,
            "signals_by_kind": self.signals_by_kind,
            "prompts_created": self.prompts_created,
            "prompts_already_present": self.prompts_already_present,
            "candidates_created": self.candidates_created,
            "candidates_already_present": self.candidates_already_present,
            "redactions": self.redactions,
            "options": self.options,
            "problems": [p.as_dict() for p in self.problems],
            "problems_not_listed": self.problems_not_listed,
            "warnings": self.warnings,
        }

    def summary(self) -> str:
        text = (
            f"{self.rows_read} rows: {self.signals_created} signals, {self.prompts_created} "
            f"prompts and {self.candidates_created} candidates created; "
            f"{self.signals_already_present} signals already present, "
            f"{self.problem_count} rows rejected"
        )
        if self.redactions is not None:
            counts = ", ".join(f"{n} {kind}" for kind, n in self.redactions.items())
            text += f"; redacted: {counts}"
        return text


class FeedbackOptionsInvalid(ValueError):
    """An option of the import itself (kind, scale, a redaction pattern) is wrong."""


def check_options(
    *, kind: str = "auto", scale=None, redact: bool = False, redact_patterns=()
) -> dict:
    """The options as stored with a job, checked; FeedbackOptionsInvalid says what is wrong."""
    if kind not in KINDS:
        raise FeedbackOptionsInvalid(f"unknown kind {kind!r}: use one of {', '.join(KINDS)}")
    try:
        parsed = Scale(scale) if scale else Scale()
    except ValueError as exc:
        raise FeedbackOptionsInvalid(f"scale: {exc}") from None
    patterns = list(redact_patterns or ())
    if patterns and not redact:
        redact = True  # a pattern asks for redaction
    try:
        Redactor(patterns)
    except UnsafePattern as exc:
        raise FeedbackOptionsInvalid(f"redaction pattern: {exc}") from None
    return {
        "kind": kind,
        "scale": parsed.as_list(),
        "redact": bool(redact),
        "redact_patterns": patterns,
    }


Progress = Callable[[int, int], None]


def import_feedback(
    *,
    project: Project,
    files: Iterable[tuple[str, IO[bytes]]],
    kind: str = "auto",
    scale=None,
    redact: bool = False,
    redact_patterns=(),
    skip_invalid: bool = False,
    job=None,
    progress: Progress | None = None,
    batch_size: int = 5000,
    max_rows: int | None = None,
) -> FeedbackImportReport:
    """Import feedback files, given as (name, binary stream) pairs, into ``project``.

    Returns the report; raises ImportFailed (nothing written) when a row or file has a
    problem and ``skip_invalid`` is false, or the files hold more than
    CHOSEN_IMPORT_MAX_ROWS rows (``max_rows``: the operator's own limit, which
    ``manage.py import_feedback --max-rows`` gives; uploads keep the setting);
    FeedbackOptionsInvalid for a bad kind, scale or pattern.
    """
    options = check_options(kind=kind, scale=scale, redact=redact, redact_patterns=redact_patterns)
    report = FeedbackImportReport(options=options)
    redactor = Redactor(options["redact_patterns"]) if options["redact"] else None
    # The writer thread waits on PostgreSQL with the GIL released, and must take it back to
    # hand over the next chunk while the reader parses (``import_mode``).
    try:
        with import_mode(), transaction.atomic():
            run = _Import(project, report, options, redactor, job, progress, batch_size)
            if max_rows is not None:
                run.max_rows = max_rows
            run.skip_invalid = skip_invalid
            try:
                for name, stream in files:
                    run.read_file(name, stream)
                run.finish()
            finally:
                run.abandon()  # the writer thread never outlives the transaction
            if redactor is not None:
                report.redactions = redactor.as_dict()
            report.signals_by_kind = dict(sorted(run.by_kind.items()))
            if report.problem_count and not skip_invalid:
                raise ImportFailed(report)
    except _TooManyRows as exc:
        raise ImportFailed(
            FeedbackImportReport(rows_read=report.rows_read, problems=[exc.problem])
        ) from None
    return report


class _TooManyRows(Exception):
    def __init__(self, problem: RowProblem):
        self.problem = problem


class _Import:
    def __init__(self, project, report, options, redactor, job, progress, batch_size):
        self.project, self.report, self.options = project, report, options
        self.organization = project.organization
        self.scale = Scale(options["scale"])
        self.clean = redactor or (lambda text: text)
        self.job_id = job.pk if job is not None else None
        self.progress, self.batch_size = progress, batch_size
        self.limit = settings.CHOSEN_IMPORT_MAX_FIELD_CHARS
        self.max_rows = settings.CHOSEN_IMPORT_MAX_ROWS
        self.rows_seen = 0
        self.bytes_done = 0
        self.rows: list[SignalRow] = []  # checked rows not yet handed to the writer
        self.tails: list[str] = []  # and their signals' own columns
        self.references = False  # whether they name prompts by id (A/B ``prompt_id``)
        self.writer: _Writer | None = None
        self.turn: threading.Event | None = None  # set while the writer waits (``_Writer``)
        # What the import has handed to the writer so far: conversations, texts (with their
        # conversation) and signal digests; and whether rows named prompts by id.
        self.prompt_keys, self.text_keys, self.signal_keys = _KeySet(), _KeySet(), _KeySet()
        self.named_prompts = False
        self.writing = True
        self.skip_invalid = False
        self.by_kind: Counter = Counter()
        self.pseudonyms: dict[str, str] = {}

    # --- reading ---------------------------------------------------------------------------

    def read_file(self, name: str, stream: IO[bytes]) -> None:
        start = _tell(stream)
        reader = None if self.options["kind"] == "auto" else self.options["kind"]
        try:
            for entry in read_rows(stream, name=name, id_key=None):
                turn = self.turn
                if turn is not None and not turn.is_set():
                    turn.wait()  # the writer is in Python: PostgreSQL waits for it
                self.rows_seen += 1
                if self.rows_seen > self.max_rows:
                    raise _TooManyRows(
                        RowProblem(name, entry.where, too_many_rows_message(self.max_rows))
                    )
                if isinstance(entry, RawRow):
                    self.report.rows_read += 1
                    if reader is None:
                        reader = detect_kind(entry.data)
                    entry = self._normalize(reader, entry)
                if isinstance(entry, RowProblem):
                    self._problem(entry)
                    continue
                if self.writing:
                    self.stage(entry)
                    if len(self.rows) >= self.batch_size:
                        self.flush()
                        self._progress(stream, start)
        except FileProblem as exc:
            self._problem(exc.problem)
        self._progress(stream, start)
        self.bytes_done += max(_tell(stream) - start, 0)

    def _problem(self, problem: RowProblem) -> None:
        self.report.add_problem(problem)
        if not self.skip_invalid:  # all or nothing: stop writing, go on checking
            self.writing, self.rows, self.tails = False, [], []

    def _progress(self, stream, start) -> None:
        if self.progress:
            self.progress(self.report.rows_read, self.bytes_done + max(_tell(stream) - start, 0))

    def _normalize(self, reader: str, raw: RawRow) -> list[SignalRow] | RowProblem:
        data = raw.data
        row_id = None
        try:
            if data.get("id") not in (None, ""):
                row_id = _check_text(data["id"], "id", 200, is_id=True).strip()
            rows = READERS[reader](self, raw, row_id)
            for row in rows:
                row.row_id = row_id
                self._finish(row)
        except _Invalid as problem:
            return RowProblem(raw.file, raw.where, problem.message, key=problem.key, row_id=row_id)
        return rows

    def _finish(self, row: SignalRow) -> None:
        """Hash what identifies the row, once its texts are final (redacted)."""
        if row.messages:
            row.messages_json = _dumps(row.messages)
        if row.prompt_ref is None:
            # conversation_key, without dumping the messages twice
            row.prompt_key = content_hash(row.messages_json or row.prompt_text)
        for text in (row.reply, row.other):
            if text is not None:
                text.digest = candidate_hash(text.text)
        if row.row_id is not None:
            row.data["id"] = row.row_id
        data_json = _dumps(row.data)
        if _SUSPECT.search(data_json) is not None:
            problem = _unstorable_json(row.data)
            if problem:
                raise _Invalid(problem)
        if row.occurred_at is not None:
            row.when = row.occurred_at.isoformat()
        identity = [
            row.kind,
            row.prompt_key or row.prompt_ref,
            row.reply.digest if row.reply else None,
            row.other.digest if row.other else None,
            row.thumbs,
            row.score,
            row.complaint,
            row.model,
            row.when,
            row.user_hash,
        ]
        # No sort_keys: the readers build ``data`` in a fixed order. The digest is of
        # json.dumps([*identity, data]), assembled so that ``data`` is dumped once.
        head = _dumps(identity)
        whole = f"{head[:-1]}, {data_json}]"
        row.digest = digest = sha256(whole.encode()).hexdigest()
        row.data["digest"] = digest
        if data_json == "{}":
            row.data_json = f'{{"digest": "{digest}"}}'
        else:
            row.data_json = f'{data_json[:-1]}, "digest": "{digest}"}}'

    # --- helpers the readers share ---------------------------------------------------------

    def text(self, value: Any, key: str, *, allow_empty: bool = False) -> str:
        if (
            type(value) is str
            and len(value) <= self.limit
            and _UNSAFE.search(value) is None
            and (allow_empty or not value.isspace() and value)
        ):
            return self.clean(value)  # what _check_text would accept, in one scan
        return self.clean(_check_text(value, key, self.limit, allow_empty=allow_empty))

    def optional_text(self, data: dict, key: str, limit: int | None = None) -> str:
        value = data.get(key)
        if value in (None, ""):
            return ""
        return self.clean(_check_text(value, key, limit or self.limit, allow_empty=True))

    def label(self, data: dict, key: str) -> str:
        """A short name (a model): checked, never redacted."""
        value = data.get(key)
        if value in (None, ""):
            return ""
        return _check_text(value, key, 200, allow_empty=True).strip()

    def user(self, value: Any, key: str) -> str:
        """The pseudonym of a user id; the id itself is never kept (nor echoed in errors)."""
        if value in (None, ""):
            return ""
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise _Invalid("must be text or a number", key)
        value = str(value)
        if len(value) > 500:
            raise _Invalid("is longer than 500 characters", key)
        found = self.pseudonyms.get(value)
        if found is None:
            if len(self.pseudonyms) > 100_000:
                self.pseudonyms.clear()
            found = self.pseudonyms[value] = pseudonym(self.organization, value)
        return found

    def conversation(self, data: dict) -> tuple[str, list | None]:
        """(prompt text, messages or None) from ``messages`` or ``prompt``."""
        messages = data.get("messages")
        if messages is not None:
            if not isinstance(messages, list):
                raise _Invalid("must be a list of {role, content} turns", "messages")
            return self.turns(messages, "messages")
        if data.get("prompt") in (None, ""):
            raise _Invalid("missing (give 'prompt' or 'messages')", "prompt")
        return self.text(data["prompt"], "prompt"), None

    def turns(self, messages: list, key: str) -> tuple[str, list | None]:
        checked = _check_messages(messages, key, self.limit, self.text)
        if len(checked) == 1:
            return checked[0]["content"], None
        return checked[-1]["content"], checked

    def when(self, value: Any, key: str) -> datetime | None:
        if value in (None, ""):
            return None
        return parse_when(value, key)

    # --- writing ---------------------------------------------------------------------------
    #
    # Checked rows are handed, a chunk at a time, to a writer thread that writes them with
    # COPY straight into tasks_prompt, tasks_candidate and tasks_feedbacksignal. Which
    # prompts, candidates and signals a chunk already has in the project (earlier chunks,
    # earlier imports) is asked per chunk with one index probe per key: all keys of
    # prompts that were in the project before the import, and of the import's own only
    # those it may have had before (``_KeySet``: a fixed 8 MB each, where the keys
    # themselves would grow with the file). The new ones get their ids reserved from the
    # tables' own sequences (``nextval`` for as many as are needed), so candidates and
    # signals can name them in the same COPY. COPY inserts rows in batches: no staging
    # table, no INSERT ... SELECT re-reading it. PostgreSQL works on one chunk while Python
    # parses the next; the writer thread's own Python work (PostgreSQL waits for it) has
    # the interpreter to itself (``_Writer.turn``).

    def stage(self, rows: list[SignalRow]) -> None:
        """Queue a row's signals for the writer, with their own columns encoded for COPY
        (and its texts' and new prompt's: this thread waits on PostgreSQL less than the
        writer, whose Python work PostgreSQL waits for)."""
        self.rows.extend(rows)
        tails = self.tails
        prompt_keys, text_keys, signal_keys = self.prompt_keys, self.text_keys, self.signal_keys
        for row in rows:
            key = row.prompt_key
            if row.prompt_ref is not None:
                self.references = self.named_prompts = True
            elif not prompt_keys.add(key):
                row.seen = False  # the import's first row of this conversation
                row.prompt_columns = _prompt_columns(row)
            for text in (row.reply, row.other):
                if text is not None:
                    text.columns = _candidate_columns(text)
                    if row.prompt_ref is None:
                        text.seen = text_keys.add((key, text.digest))
            row.repeat = signal_keys.add(row.digest)
            # The signal's own columns, after prompt_id, reply_id, other_id and
            # conversation_key (which the writer learns from the database).
            tails.append(
                "\t".join(
                    (
                        row.kind,
                        r"\N" if row.thumbs is None else str(row.thumbs),
                        r"\N" if row.score is None else repr(row.score),
                        "t" if row.complaint else "f",
                        _esc(row.model),
                        r"\N" if row.when is None else row.when,
                        row.user_hash,
                        _esc(row.data_json),
                        _esc(row.file[:300]),
                        str(_line(row.where)),
                    )
                )
            )

    def flush(self) -> None:
        rows, self.rows = self.rows, []
        tails, self.tails = self.tails, []
        if not rows or not self.writing:
            return
        if self.writer is None:
            self.writer = _Writer(self)
        references, self.references = self.references, False
        self.writer.put((rows, tails, references))

    def abandon(self) -> None:
        if self.writer is not None:
            writer, self.writer = self.writer, None
            self.writing = False
            with contextlib.suppress(Exception):  # the error on its way out is the one to see
                writer.close()

    def finish(self) -> None:
        """Write what is left and wait for the writer; its problems join the report."""
        self.flush()
        if self.writer is not None:
            writer, self.writer = self.writer, None
            writer.close()
            for problem in writer.problems:
                self._problem(problem)
            report = self.report
            report.prompts_created += writer.prompts_created
            report.prompts_already_present += len(writer.prompts_present)
            report.candidates_created += writer.candidates_created
            report.candidates_already_present += writer.candidates_present
            report.signals_created += writer.signals_created
            report.signals_already_present += writer.signals_present
            for model, rows in (
                (Prompt, writer.prompts_created),
                (Candidate, writer.candidates_created),
                (FeedbackSignal, writer.signals_created),
            ):
                dbstats.wrote(model, rows)  # the writer's COPYs ran on this connection
            # keyed by FeedbackSignal.Kind, as the rows were
            self.by_kind.update({FeedbackSignal.Kind(k): n for k, n in writer.by_kind.items()})


def _prompt_columns(row: SignalRow) -> str:
    """A new prompt's COPY columns after its id, content_hash and external_id, up to
    those all of the import's prompts share."""
    messages = r"\N" if row.messages_json is None else _esc(row.messages_json)
    return f"\t{_esc(row.prompt_text)}\t{messages}\t{_esc(row.file[:300])}"


def _candidate_columns(text: Text) -> str:
    """A new candidate's COPY columns after its id and prompt_id, up to those all share."""
    return f"\t{text.digest}\t{_esc(text.text)}\t{text.source_key}\t{_esc(text.model)}"


class _KeySet:
    """Keys (digests, or tuples of them) an import has handed to its writer, as a Bloom
    filter: ``add`` says whether the key may have been added before. Never "no" for a key
    that was (so what the import wrote is always found), "yes" wrongly for about 1 in
    10,000 keys at a million and 1 in 20 at ten million (those only cost a probe). 8 MB
    whatever the file's size, where a set of the keys would hold ~80 MB a million. Bits by
    Python's own hash of the key (salted per process; the filter lives as long as the
    import), three from its two halves (Kirsch and Mitzenmacher's double hashing)."""

    BITS = 1 << 26

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS >> 3)

    def add(self, key: str | tuple) -> bool:
        bits, mask, present = self.bits, self.BITS - 1, True
        hashed = hash(key)
        low, step = hashed & 0xFFFFFFFF, (hashed >> 32) | 1
        for bit in (low & mask, (low + step) & mask, (low + 2 * step) & mask):
            byte, flag = bit >> 3, 1 << (bit & 7)
            if not bits[byte] & flag:
                bits[byte] |= flag
                present = False
        return present


def _esc(text: str) -> str:
    """A text as a field of COPY's text format."""
    if "\\" in text:
        text = text.replace("\\", "\\\\")
    if "\n" in text:
        text = text.replace("\n", "\\n")
    if "\r" in text:
        text = text.replace("\r", "\\r")
    if "\t" in text:
        text = text.replace("\t", "\\t")
    return text


# A/B rows that name their prompt by id (rare).
_REFERENCES = """
SELECT external_id, id, content_hash FROM tasks_prompt
WHERE external_id = ANY(%s) AND project_id + 0 = %s
"""
# The lookups are LATERAL ... LIMIT 1 (or min) over unnest(): one index probe per key,
# whatever the statistics say (they predate the import, and a hash join would read the
# project's whole table for every chunk). Nor may a probe lean on the project's own index
# while the statistics still describe the project as it was before the import
# (``tasks.dbstats.by_key_in_project`` says why): each probe is led by its key's own index,
# and the project is a filter no index serves (``project_id + 0``) or implied. (Led by the
# project's index, a second 200,000-row import into a database holding an earlier one ran
# for minutes where the first took 28 s: every probe read every row written so far.)
#
# A conversation's prompt: the oldest of the project with its content (prompt_hash_idx,
# content_hash first).
_PROMPTS = """
SELECT k.key, p.id FROM unnest(%s::text[]) k(key)
CROSS JOIN LATERAL (
    SELECT min(id) AS id FROM tasks_prompt
    WHERE content_hash = k.key AND project_id + 0 = %s
) p
WHERE p.id IS NOT NULL
"""
# A candidate is its text within its prompt (candidate_once).
_CANDIDATES = """
SELECT c.prompt_id, c.content_hash, c.id FROM unnest(%s::bigint[], %s::text[]) k(prompt, hash)
CROSS JOIN LATERAL (
    SELECT prompt_id, content_hash, id FROM tasks_candidate
    WHERE prompt_id = k.prompt AND content_hash = k.hash
    LIMIT 1
) c
"""
# The digests of the signals among these, by their prompt (the project's own: a signal's
# project is its prompt's).
_SIGNALS = """
SELECT k.digest FROM unnest(%s::text[], %s::bigint[], %s::text[]) k(kind, prompt, digest)
WHERE EXISTS (
    SELECT FROM (
        SELECT FROM tasks_feedbacksignal
        WHERE prompt_id = k.prompt AND kind = k.kind AND data ->> 'digest' = k.digest
        LIMIT 1
    ) found
)
"""
# Ids for the new rows: as many values of the table's sequence as it needs (concurrent
# inserts elsewhere take other values, so nothing is ever handed out twice).
# They come back as a range when they follow each other (as they do unless another
# session takes values meanwhile), else as a list.
_RESERVE = """
SELECT min(id), max(id), CASE WHEN max(id) - min(id) + 1 <> count(*) THEN array_agg(id) END
FROM (SELECT nextval(%s::regclass) AS id FROM generate_series(1, %s)) ids
"""
_COPY_PROMPTS = (
    "COPY tasks_prompt (id, content_hash, external_id, text, messages, source, "
    "organization_id, project_id, metadata, created_at) FROM STDIN"
)
_COPY_CANDIDATES = (
    "COPY tasks_candidate (id, prompt_id, content_hash, text, source_key, model, "
    "organization_id, source, parameters, finish_reason, created_at) FROM STDIN"
)
_COPY_SIGNALS = (
    "COPY tasks_feedbacksignal (prompt_id, reply_id, other_id, conversation_key, kind, "
    "thumbs, score, complaint, model, occurred_at, user_hash, data, source, line, "
    "organization_id, project_id, job_id, created_at) FROM STDIN"
)
# Feedback imports into one project take turns (the lock is the transaction's): a second
# import of the same file waits, then finds every row of the first and adds nothing, where
# two at once would each miss the other's uncommitted rows. (Two ints: the first says what
# is locked, as the audit chain's lock does with its own.)
_LOCK = "SELECT pg_advisory_xact_lock(1717986918, (%s %% 2147483647)::int)"

# Whether the project has prompts, and none named fb-<number> but its own id's.
_PROJECT_BEFORE = """
SELECT EXISTS (SELECT FROM tasks_prompt WHERE project_id = %s),
    NOT EXISTS (SELECT FROM tasks_prompt WHERE project_id = %s
        AND external_id ~ '^fb-[0-9]+$' AND external_id <> 'fb-' || id)
"""

_FOREIGN_KEYS = """
SELECT n.nspname, c.conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
WHERE c.contype = 'f' AND c.condeferrable AND c.condeferred
    AND c.conrelid IN ('tasks_prompt'::regclass, 'tasks_candidate'::regclass,
        'tasks_feedbacksignal'::regclass)
"""


class _Writer:
    """The writer thread: chunks of checked rows in, prompts, candidates and signals out. It
    uses the import's own connection (inside its transaction); the reading thread leaves
    the connection alone until ``close``."""

    def __init__(self, run: "_Import"):
        connection.ensure_connection()
        self.conn = connection.connection  # the psycopg connection under Django's
        self.run = run
        self.project_id = run.project.pk
        self.problems: list[RowProblem] = []
        self.prompts_created = self.candidates_created = self.candidates_present = 0
        self.signals_created = self.signals_present = 0
        self.prompts_present: set[int] = set()
        self.by_kind: Counter = Counter()
        self.error: BaseException | None = None
        with self.conn.cursor() as cursor:
            cursor.execute(_LOCK, [self.project_id])
            # The probes' row estimates are unnest()'s guess; JIT-compiling for that guess
            # cost more than the statements themselves.
            cursor.execute(
                "SELECT current_setting('jit'), set_config('jit', 'off', true), "
                "pg_get_serial_sequence('tasks_prompt', 'id'), "
                "pg_get_serial_sequence('tasks_candidate', 'id')"
            )
            self.jit, _, self.prompt_ids, self.candidate_ids = cursor.fetchone()
            # The ids of the prompts this import wrote (not "already present"), as the
            # ranges it reserved, in order
            self.own: list[range] = []
            # In a project that had no prompts, a conversation is looked for only when the
            # import has had it before (``_KeySet``): a third of PostgreSQL's probing
            # time, per the benchmark, was spent not finding new ones. (A prompt import
            # committing the same text into the project meanwhile is then not reused.)
            #
            # A new prompt's external id is its own id, fb-<id>: ids the sequence gives in
            # order, which PostgreSQL adds to prompt_id_per_project side by side (the
            # content-derived fb-<key[:24]> it replaced went to a random page of that index
            # for every prompt: 3 s of a 1,000,000-row import, 8% of its time). Another
            # import may have brought in ids of that shape that are not their own prompt's
            # (a copy of another project or deployment): a project holding one keeps the
            # content-derived ids, which no sequence value can take.
            cursor.execute(_PROJECT_BEFORE, [self.project_id] * 2)
            self.had_prompts, self.own_ids = cursor.fetchone()
            # The foreign keys of the three tables are checked as each chunk is written,
            # while the reader parses the next one, not all at once when the import commits
            # (their deferred checks were ~25% of an import, run with nothing overlapping).
            cursor.execute(_FOREIGN_KEYS)
            self.foreign_keys = sql.SQL(", ").join(
                sql.Identifier(schema, name) for schema, name in cursor.fetchall()
            )
            cursor.execute(sql.SQL("SET CONSTRAINTS {} IMMEDIATE").format(self.foreign_keys))
        organization = run.project.organization_id
        now = timezone.now().isoformat()
        job = r"\N" if run.job_id is None else run.job_id
        self.prompt_columns = f"\t{organization}\t{self.project_id}\t{{}}\t{now}\n"
        source = Candidate.Source.FEEDBACK_LOG.value
        self.candidate_columns = f"\t{organization}\t{source}\t{{}}\t\t{now}\n"
        self.signal_columns = f"\t{organization}\t{self.project_id}\t{job}\t{now}\n"
        self.chunks: queue.Queue = queue.Queue(maxsize=1)
        # Set while this thread waits (on PostgreSQL, or for a chunk): only then does the
        # reading thread read. While this one is in Python, PostgreSQL waits for it, and the
        # two threads taking turns at the interpreter's lock made it wait twice as long (a
        # 1,000,000-row import: 13,000 -> 15,000 rows/s with nothing else changed).
        self.turn = threading.Event()
        self.turn.set()
        run.turn = self.turn
        self.thread = threading.Thread(target=self._work, name="feedback-writer", daemon=True)
        self.thread.start()

    def put(self, chunk: tuple[list[SignalRow], list[str], bool]) -> None:
        while True:
            if self.error is not None:
                self.close()
            try:
                self.chunks.put(chunk, timeout=0.5)
                return
            except queue.Full:
                continue

    def close(self) -> None:
        if self.thread.is_alive() and self.error is None:
            self.chunks.put(None)
        self.thread.join()
        self.run.turn = None
        if self.error is not None:
            error, self.error = self.error, None
            with connection.wrap_database_errors:
                raise error
        with self.conn.cursor() as cursor:
            cursor.execute("SELECT set_config('jit', %s, true)", [self.jit])
            cursor.execute(sql.SQL("SET CONSTRAINTS {} DEFERRED").format(self.foreign_keys))

    def _work(self) -> None:
        turn = self.turn
        try:
            while True:
                turn.set()
                chunk = self.chunks.get()
                turn.clear()
                if chunk is None:
                    break
                if self.run.writing:
                    self._write(*chunk)
        except BaseException as exc:  # handed to the reading thread
            self.error = exc
            while True:  # unblock a reader waiting to put
                try:
                    self.chunks.get_nowait()
                except queue.Empty:
                    break
        finally:
            turn.set()

    def _ask(self, cursor, statement: str, params: list) -> list[tuple]:
        """A query's rows; the reading thread's turn while PostgreSQL answers."""
        self.turn.set()
        try:
            cursor.execute(statement, params)
            return cursor.fetchall()
        finally:
            self.turn.clear()

    def _reserve(self, cursor, sequence: str, count: int) -> Sequence[int]:
        if not count:
            return []
        ((low, high, ids),) = self._ask(cursor, _RESERVE, [sequence, count])
        return range(low, high + 1) if ids is None else ids

    def _wrote(self, prompt_ids: Sequence[int]) -> None:
        ranges = (
            [prompt_ids]
            if isinstance(prompt_ids, range)
            else [range(pk, pk + 1) for pk in sorted(prompt_ids)]
        )
        self.own.extend(ranges)

    def _own(self, prompt_ids) -> set[int]:
        """Those of these prompts the import wrote (whose texts and signals are all its own:
        ``_KeySet`` knows them). Not those another import committed meanwhile."""
        own = self.own
        mine = set()
        for pk in prompt_ids:
            at = bisect_right(own, pk, key=lambda ids: ids.start) - 1
            if at >= 0 and pk in own[at]:
                mine.add(pk)
        return mine

    def _write(self, rows: list[SignalRow], tails: list[str], references: bool) -> None:
        none = r"\N"
        with self.conn.cursor() as cursor:
            # Each row's prompt: named by id (A/B prompt_id), found by content, or new.
            prompt_of: dict[str, int] = {}
            keys: dict[str, SignalRow] = {}  # the chunk's conversations, first row first
            referenced: dict[str, tuple[int, str]] = {}
            if references:
                names = list({row.prompt_ref for row in rows if row.prompt_ref is not None})
                found = self._ask(cursor, _REFERENCES, [names, self.project_id])
                referenced = {name: (pk, key) for name, pk, key in found}
                missing = False
                for row in rows:
                    if row.prompt_ref is not None and row.prompt_ref not in referenced:
                        missing = True
                        self.problems.append(
                            RowProblem(
                                row.file,
                                row.where,
                                "no prompt of this project has this id",
                                key="prompt_id",
                                row_id=row.row_id,
                            )
                        )
                if missing and not self.run.skip_invalid:
                    self.run.writing = False  # all or nothing: the import will fail
                    return
            for row in rows:
                if row.prompt_ref is None and row.prompt_key not in keys:
                    keys[row.prompt_key] = row
            asked = keys if self.had_prompts else [k for k, first in keys.items() if first.seen]
            if asked:
                prompt_of = dict(self._ask(cursor, _PROMPTS, [array(asked), self.project_id]))
            # Prompts that were there before the chunk (only they can have its candidates
            # and signals already), and those of them this import wrote.
            old_prompts = {*prompt_of.values(), *(pk for pk, _ in referenced.values())}
            mine = self._own(old_prompts)
            self.prompts_present.update(pk for pk in prompt_of.values() if pk not in mine)
            new = [key for key in keys if key not in prompt_of]
            end = self.prompt_columns
            reserved = self._reserve(cursor, self.prompt_ids, len(new))
            self._wrote(reserved)
            own_ids = self.own_ids
            with _Copy(cursor, _COPY_PROMPTS, self.turn) as lines:
                for key, pk in zip(new, reserved, strict=True):
                    prompt_of[key] = pk
                    first = keys[key]
                    rest = first.prompt_columns or _prompt_columns(first)
                    name = pk if own_ids else key[:24]
                    lines.append(f"{pk}\t{key}\tfb-{name}{rest}{end}")
            self.prompts_created += len(new)

            # Their candidates: a text once per prompt, the first row's source key and
            # model; only prompts that were there before can have them already.
            pids: list[int | None] = []
            texts: dict[tuple[int, str], Text] = {}
            for row in rows:
                if row.prompt_ref is None:
                    pid = prompt_of[row.prompt_key]
                else:
                    found = referenced.get(row.prompt_ref)
                    pid = found[0] if found else None
                pids.append(pid)
                if pid is None:
                    continue
                for text in (row.reply, row.other):
                    if text is not None and (pid, text.digest) not in texts:
                        texts[pid, text.digest] = text
            candidate_of: dict[tuple[int, str], int] = {}
            # A prompt this import wrote has only the texts the import gave it: asked for
            # only when an earlier row may have had them (and always when rows named
            # prompts by id, whose texts are not in ``text_keys``).
            named = self.run.named_prompts
            asked = [
                pair
                for pair in texts
                if pair[0] in old_prompts and (pair[0] not in mine or named or texts[pair].seen)
            ]
            if asked:
                found = self._ask(
                    cursor,
                    _CANDIDATES,
                    [array(pid for pid, _ in asked), array(digest for _, digest in asked)],
                )
                candidate_of = {(pid, digest): pk for pid, digest, pk in found}
            new_texts = [pair for pair in texts if pair not in candidate_of]
            reserved = self._reserve(cursor, self.candidate_ids, len(new_texts))
            end = self.candidate_columns
            with _Copy(cursor, _COPY_CANDIDATES, self.turn) as lines:
                for pair, pk in zip(new_texts, reserved, strict=True):
                    candidate_of[pair] = pk
                    lines.append(f"{pk}\t{pair[0]}{texts[pair].columns}{end}")
            self.candidates_created += len(new_texts)
            self.candidates_present += len(texts) - len(new_texts)

            # The signals: new unless the project has one with the digest (earlier chunks,
            # earlier imports; asked only for prompts that were there before), or an
            # earlier row of the chunk has it.
            asked = [
                (row.kind, pid, row.digest)
                for row, pid in zip(rows, pids, strict=True)
                if pid in old_prompts and (pid not in mine or row.repeat)
            ]
            seen: set[str] = set()
            if asked:
                found = self._ask(
                    cursor, _SIGNALS, [array(column) for column in zip(*asked, strict=True)]
                )
                seen = {digest for (digest,) in found}
            made, end = Counter(), self.signal_columns
            with _Copy(cursor, _COPY_SIGNALS, self.turn) as lines:
                for row, pid, tail in zip(rows, pids, tails, strict=True):
                    if pid is None:
                        continue
                    if row.digest in seen:
                        self.signals_present += 1
                        continue
                    seen.add(row.digest)
                    made[row.kind] += 1
                    reply = none if row.reply is None else candidate_of[pid, row.reply.digest]
                    other = none if row.other is None else candidate_of[pid, row.other.digest]
                    if row.prompt_ref is None:
                        key = row.prompt_key
                    else:
                        key = referenced[row.prompt_ref][1]
                    lines.append(f"{pid}\t{reply}\t{other}\t{key}\t{tail}{end}")
        self.signals_created += sum(made.values())
        self.by_kind.update(made)


class _Copy:
    """One COPY, its lines sent ``PIECE`` at a time as they are made: PostgreSQL inserts
    a piece while Python makes the next (the reading thread's turn while it waits). No
    statement at all when there is no line."""

    PIECE = 1000

    def __init__(self, cursor, statement: str, turn: threading.Event):
        self.cursor, self.statement, self.turn = cursor, statement, turn
        self.lines: list[str] = []
        self.copying = self.copy = None  # psycopg's Copy, once the first piece goes

    def __enter__(self) -> "_Copy":
        return self

    def append(self, line: str) -> None:
        self.lines.append(line)
        if len(self.lines) >= self.PIECE:
            self._send()

    def _send(self) -> None:
        data = "".join(self.lines).encode("utf-8", "surrogatepass")
        self.lines = []
        self.turn.set()
        try:
            if self.copying is None:
                self.copying = self.cursor.copy(self.statement)
                self.copy = self.copying.__enter__()
            self.copy.write(data)
        finally:
            self.turn.clear()

    def __exit__(self, kind, error, trace) -> None:
        if kind is None and self.lines:
            self._send()
        if self.copying is not None:
            self.turn.set()
            try:
                # an error ends the COPY as failed: nothing of it is written
                self.copying.__exit__(kind, error, trace)
            finally:
                self.turn.clear()


# --- the readers: one raw row → its signals ------------------------------------------------

THUMBS = {"up": 1, "down": -1, "1": 1, "-1": -1, "+1": 1, 1: 1, -1: -1}


def _feedback_log(run: _Import, raw: RawRow, row_id) -> list[SignalRow]:
    data = raw.data
    text, messages = run.conversation(data)
    model = run.label(data, "model")
    base = SignalRow(raw.file, raw.where, FeedbackSignal.Kind.FEEDBACK)
    base.prompt_text, base.messages, base.model = text, messages, model
    base.occurred_at = run.when(data.get("timestamp"), "timestamp")
    base.user_hash = run.user(data.get("user"), "user")
    reply = Text(run.text(data.get("reply"), "reply"), "reply", model)
    fields = {"format": "feedback_log"}
    thumbs = data.get("thumbs")
    if thumbs not in (None, ""):
        key = thumbs.strip().lower() if isinstance(thumbs, str) else thumbs
        if isinstance(thumbs, bool) or key not in THUMBS:
            raise _Invalid("must be 'up', 'down', 1 or -1", "thumbs")
        base.thumbs = THUMBS[key]
    rating = data.get("rating")
    if rating not in (None, ""):
        number = _number(rating, "rating")
        if not 1 <= number <= 5:
            raise _Invalid("must be from 1 to 5", "rating")
        base.score = (number - 1) / 4
        fields["rating"] = _plain(number)
    complaint = data.get("complaint")
    if complaint not in (None, ""):
        base.complaint = _flag(complaint, "complaint")
    comment = run.optional_text(data, "comment")
    if comment:
        fields["comment"] = comment
    regenerated = data.get("regenerated_from")
    edited = data.get("edited")
    kept = data.get("kept")
    if kept not in (None, "") and kept not in ("reply", "regenerated_from"):
        raise _Invalid("must be 'reply' or 'regenerated_from'", "kept")
    if kept not in (None, "") and regenerated in (None, ""):
        raise _Invalid("says which reply was kept, but there is no 'regenerated_from'", "kept")
    if (
        base.thumbs is None
        and base.score is None
        and not base.complaint
        and regenerated in (None, "")
        and edited in (None, "")
    ):
        raise _Invalid(
            "holds no signal: give thumbs, rating, regenerated_from, edited or complaint",
            "reply",
        )
    rows = []
    first = base
    first.reply, first.data = reply, dict(fields)
    if regenerated not in (None, ""):
        first.other = Text(run.text(regenerated, "regenerated_from"), "regenerated_from", model)
        first.data["relation"] = "regeneration"
        if kept:
            first.data["kept"] = "reply" if kept == "reply" else "other"
    rows.append(first)
    if edited not in (None, ""):
        edit_text = Text(run.text(edited, "edited"), "edited", "")
        if first.other is None and len(rows) == 1:
            first.other, first.data["relation"] = edit_text, "edit"
        else:
            second = SignalRow(raw.file, raw.where, FeedbackSignal.Kind.FEEDBACK)
            second.prompt_text, second.messages, second.model = text, messages, model
            second.occurred_at, second.user_hash = base.occurred_at, base.user_hash
            second.reply, second.other = reply, edit_text
            second.data = {"format": "feedback_log", "relation": "edit"}
            rows.append(second)
    return rows


def _open_webui(run: _Import, raw: RawRow, row_id) -> list[SignalRow]:
    data = raw.data
    if data.get("type") not in (None, "rating"):
        raise _Invalid(
            f"only 'rating' feedback is read, not {str(data.get('type'))[:40]!r}", "type"
        )
    rating_data = data.get("data") if isinstance(data.get("data"), dict) else None
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else None
    if rating_data is None:
        raise _Invalid("missing (the rating itself)", "data")
    if meta is None:
        raise _Invalid("missing (which message was rated)", "meta")
    snapshot = data.get("snapshot")
    chat = snapshot.get("chat") if isinstance(snapshot, dict) else None
    if not isinstance(chat, dict):
        raise _Invalid(
            "holds no chat: export the feedback with its snapshot (Admin › Evaluations › "
            "Feedback › Export)",
            "snapshot",
        )
    body = chat.get("chat") if isinstance(chat.get("chat"), dict) else chat
    history = body.get("history") if isinstance(body.get("history"), dict) else {}
    messages = history.get("messages")
    if not isinstance(messages, dict):
        messages = {m.get("id"): m for m in body.get("messages") or [] if isinstance(m, dict)}
    message_id = meta.get("message_id")
    message = messages.get(message_id) if isinstance(message_id, str) else None
    if not isinstance(message, dict):
        raise _Invalid("the rated message is not in the snapshot of the chat", "meta.message_id")
    if message.get("role") != "assistant":
        raise _Invalid("the rated message is not an assistant reply", "meta.message_id")
    chain, seen, parent = [], {message_id}, message.get("parentId")
    while parent is not None:
        turn = messages.get(parent)
        if not isinstance(turn, dict) or parent in seen or len(chain) > 1000:
            raise _Invalid("the chat's history is broken (a missing or looping parent)", "snapshot")
        seen.add(parent)
        chain.append(turn)
        parent = turn.get("parentId")
    chain.reverse()
    text, conversation = run.turns(
        [{"role": t.get("role"), "content": t.get("content")} for t in chain],
        "snapshot.chat.history",
    )
    model = run.label(rating_data, "model_id") or run.label(message, "model")
    row = SignalRow(raw.file, raw.where, FeedbackSignal.Kind.FEEDBACK)
    row.prompt_text, row.messages, row.model = text, conversation, model
    row.reply = Text(run.text(message.get("content"), "snapshot.message.content"), "reply", model)
    row.user_hash = run.user(data.get("user_id"), "user_id")
    created = data.get("created_at")
    row.occurred_at = run.when(created, "created_at")
    fields: dict[str, Any] = {"format": "open_webui", "feedback_id": str(data.get("id", ""))[:100]}
    rating = rating_data.get("rating")
    if rating not in (None, ""):
        value = _number(rating, "data.rating")
        if value not in (1, 0, -1):
            raise _Invalid("must be 1, 0 or -1", "data.rating")
        if value == 0:
            fields["draw"] = True
        else:
            row.thumbs = int(value)
    details = rating_data.get("details")
    if isinstance(details, dict) and details.get("rating") not in (None, ""):
        score = _number(details["rating"], "data.details.rating")
        if not 1 <= score <= 10:
            raise _Invalid("must be from 1 to 10", "data.details.rating")
        row.score = (score - 1) / 9
        fields["rating"] = _plain(score)
    for key in ("reason", "comment"):
        value = run.optional_text(rating_data, key)
        if value:
            fields[key] = value
    tags = rating_data.get("tags")
    if isinstance(tags, list) and tags:
        fields["tags"] = [run.clean(_check_text(t, "data.tags", 200)) for t in tags[:20]]
    if meta.get("arena"):
        fields["arena"] = True
    if isinstance(meta.get("chat_id"), str):
        fields["chat_id"] = meta["chat_id"][:100]
    parent_turn = messages.get(message.get("parentId")) or {}
    siblings = [
        messages[i]
        for i in parent_turn.get("childrenIds") or []
        if i != message_id and isinstance(messages.get(i), dict)
    ]
    if siblings:
        sibling = siblings[0]
        sibling_model = run.label(sibling, "model")
        row.other = Text(
            run.text(sibling.get("content"), "snapshot.sibling.content"), "sibling", sibling_model
        )
        fields["relation"] = "sibling"
        fields["sibling_models"] = [
            str(m)[:200] for m in rating_data.get("sibling_model_ids") or [] if m
        ][:10]
    if row.thumbs is None and row.score is None and not fields.get("draw"):
        raise _Invalid("holds no rating", "data.rating")
    row.data = fields
    return [row]


def _ab_test(run: _Import, raw: RawRow, row_id) -> list[SignalRow]:
    data = raw.data
    row = SignalRow(raw.file, raw.where, FeedbackSignal.Kind.AB_TEST)
    if data.get("prompt") in (None, "") and data.get("messages") is None:
        if data.get("prompt_id") in (None, ""):
            raise _Invalid("missing (give 'prompt', 'messages' or 'prompt_id')", "prompt")
        row.prompt_ref = _check_text(data["prompt_id"], "prompt_id", 200, is_id=True).strip()
    else:
        row.prompt_text, row.messages = run.conversation(data)
    row.reply = Text(
        run.text(data.get("variant_a"), "variant_a"), "variant_a", run.label(data, "model_a")
    )
    row.other = Text(
        run.text(data.get("variant_b"), "variant_b"), "variant_b", run.label(data, "model_b")
    )
    counts = {}
    for key in ("wins_a", "wins_b", "impressions_a", "impressions_b"):
        if data.get(key) not in (None, ""):
            counts[key] = _count(data[key], key)
    winner = data.get("winner")
    if winner not in (None, ""):
        if not isinstance(winner, str) or winner.strip().lower() not in ("a", "b"):
            raise _Invalid("must be 'a' or 'b'", "winner")
        if "wins_a" in counts or "wins_b" in counts:
            raise _Invalid("give either the wins of each variant or a winner, not both", "winner")
        counts["winner"] = winner.strip().lower()
    elif "wins_a" not in counts or "wins_b" not in counts:
        missing = "wins_a" if "wins_a" not in counts else "wins_b"
        raise _Invalid("missing (give wins_a and wins_b, or winner)", missing)
    for side in ("a", "b"):
        shown = counts.get(f"impressions_{side}")
        if shown is not None and counts.get(f"wins_{side}", 0) > shown:
            raise _Invalid(f"more wins than impressions_{side}", f"wins_{side}")
    if run.optional_text(data, "comment"):
        counts["comment"] = run.optional_text(data, "comment")
    row.data = counts
    return [row]


def _grade(run: _Import, raw: RawRow, row_id) -> list[SignalRow]:
    data = raw.data
    row = SignalRow(raw.file, raw.where, FeedbackSignal.Kind.GRADE)
    row.prompt_text, row.messages = run.conversation(data)
    row.model = run.label(data, "model")
    row.reply = Text(run.text(data.get("output"), "output"), "output", row.model)
    if data.get("grade") in (None, ""):
        raise _Invalid("missing", "grade")
    row.score = run.scale.score(data["grade"])
    grade = data["grade"]
    shown = grade.strip() if isinstance(grade, str) else grade
    row.data = {"grade": shown, "scale": run.scale.as_list()}
    row.user_hash = run.user(data.get("reviewer"), "reviewer")
    comment = run.optional_text(data, "comment")
    if comment:
        row.data["comment"] = comment
    row.occurred_at = run.when(data.get("timestamp"), "timestamp")
    return [row]


def _correction(run: _Import, raw: RawRow, row_id) -> list[SignalRow]:
    data = raw.data
    row = SignalRow(raw.file, raw.where, FeedbackSignal.Kind.CORRECTION)
    row.prompt_text, row.messages = run.conversation(data)
    row.model = run.label(data, "model")
    row.reply = Text(run.text(data.get("original"), "original"), "original", row.model)
    row.other = Text(run.text(data.get("corrected"), "corrected"), "corrected", "")
    if candidate_hash(row.reply.text) == candidate_hash(row.other.text):
        raise _Invalid("is the same as the original", "corrected")
    row.user_hash = run.user(data.get("expert"), "expert")
    row.data = {}
    comment = run.optional_text(data, "comment")
    if comment:
        row.data["comment"] = comment
    row.occurred_at = run.when(data.get("timestamp"), "timestamp")
    return [row]


READERS = {
    "feedback": _feedback_log,
    "open_webui": _open_webui,
    "ab_test": _ab_test,
    "grade": _grade,
    "correction": _correction,
}


def detect_kind(row: dict) -> str:
    """The kind a row's shape says (``auto``)."""
    if isinstance(row.get("snapshot"), dict) or (
        isinstance(row.get("data"), dict) and isinstance(row.get("meta"), dict)
    ):
        return "open_webui"
    if "variant_a" in row:
        return "ab_test"
    if "grade" in row:
        return "grade"
    if "corrected" in row:
        return "correction"
    return "feedback"


def conversation_key(text: str, messages: list | None) -> str:
    """SHA-256 of the normalized conversation before the reply: ``Prompt.content_hash`` as
    prompt imports compute it (the text for one user turn, else the messages as JSON)."""
    if messages:
        return content_hash(json.dumps(messages, ensure_ascii=False))
    return content_hash(text)


def parse_when(value: Any, key: str) -> datetime:
    """An aware datetime from ISO 8601 (UTC when no offset) or epoch seconds/milliseconds."""
    if isinstance(value, bool):
        raise _Invalid("must be an ISO 8601 time or epoch seconds", key)
    if isinstance(value, str) and _is_number(value.strip()):
        value = float(value.strip())
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise _Invalid("must be an ISO 8601 time or epoch seconds", key)
        seconds = value / 1000 if abs(value) > 1e11 else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise _Invalid("is not a possible time", key) from None
    if not isinstance(value, str) or len(value) > 64:
        raise _Invalid("must be an ISO 8601 time or epoch seconds", key)
    try:
        parsed = parse_datetime(value.strip().replace("Z", "+00:00"))
    except ValueError:
        parsed = None
    if parsed is None:
        raise _Invalid("must be an ISO 8601 time (2025-03-01T10:15:00Z) or epoch seconds", key)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _number(value: Any, key: str) -> float:
    if isinstance(value, bool):
        raise _Invalid("must be a number", key)
    if isinstance(value, str):
        value = value.strip()
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise _Invalid("must be a number", key) from None
    if not math.isfinite(number):
        raise _Invalid("must be a number", key)
    return number


def _count(value: Any, key: str) -> int:
    number = _number(value, key)
    if number < 0 or not number.is_integer() or number > 10**12:
        raise _Invalid("must be a whole number, 0 or more", key)
    return int(number)


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise _Invalid("must be true or false", key)


def _tell(stream) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError, AttributeError):
        return 0


def _line(where: str) -> int:
    if where.startswith("line "):  # a JSONL or CSV row
        return int(where[5:])
    found = _LINE.search(where)
    return int(found.group(1)) if found else 0
